"""Agents for the GPT-Live call tests, loaded by ``server.py`` through
``AGENT=live_agents:…`` (``tests/bridge`` on ``PYTHONPATH``)."""

import asyncio

from agents import function_tool
from agents.realtime import RealtimeAgent

from telephony.agent.tools import call_control_tools


@function_tool
async def check_payment(order: str) -> str:
    """Check the payment of an order (slow: a payment provider)."""
    await asyncio.sleep(3.0)
    return f"order {order} is paid"


@function_tool
async def broken_lookup(order: str) -> str:
    """Look an order up (its backend is down)."""
    raise RuntimeError("backend down")


agent = RealtimeAgent(
    name="Shop",
    instructions="Help with orders.",
    tools=[check_payment, broken_lookup, *call_control_tools()],
)


@function_tool
async def refund(order: str) -> str:
    """Refund an order (the billing desk's tool)."""
    return f"refund for order {order} started"


billing = RealtimeAgent(name="Billing", instructions="You handle refunds.", tools=[refund])
front_desk = RealtimeAgent(
    name="Front desk",
    instructions="Greet callers; hand refunds to billing.",
    tools=[*call_control_tools()],
    handoffs=[billing],
)
