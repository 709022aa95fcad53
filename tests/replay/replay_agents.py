"""Agents for the replay tests, loaded by ``server.py`` through ``AGENT=replay_agents:…``."""

from agents import function_tool
from agents.realtime import RealtimeAgent


@function_tool
def lookup_order(order: str) -> str:
    """Look up an order by its number."""
    return f"Order {order} ships tomorrow."


agent = RealtimeAgent(name="shop", instructions="Help with orders.", tools=[lookup_order])
without_the_tool = RealtimeAgent(name="shop", instructions="Help with orders.", tools=[])
