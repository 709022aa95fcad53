"""The GPT-Live backend as the service builds it once: the agent, the settings and one
``AsyncOpenAI`` client; each call asks it for its session's plan and a session."""

from __future__ import annotations

from typing import Any

from agents.realtime import RealtimeAgent
from openai import AsyncOpenAI

from ...config import Settings
from ..briefing import agent_for_leg
from .config import LiveOptions, LivePlan, plan_session
from .session import LiveSession

__all__ = ["LiveBackend"]


class LiveBackend:
    """Builds each call's GPT-Live session.

    Args:
        agent: the agent every call runs (its instructions and tools go to the delegate).
        options: model, voice, delegate model, frontend prompt.
        api_key: the OpenAI API key (never logged).
        base_url: OpenAI's REST base URL (``https://api.openai.com/v1`` when None); the
            socket is ``ws(s)://`` of it plus ``/live/sessions``, unless ``socket_url``.
        socket_url: the sockets' ``ws(s)://`` base, when not the REST host's.
        numbers: ``LIVE_NUMBERS``: the numbers whose calls run on GPT-Live when the
            service's backend is another.
    """

    def __init__(
        self,
        agent: RealtimeAgent[Any],
        options: LiveOptions,
        api_key: str,
        base_url: str | None = None,
        socket_url: str | None = None,
        numbers: frozenset[str] = frozenset(),
    ) -> None:
        self.agent = agent
        self.options = options
        self.numbers = numbers
        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url, websocket_base_url=socket_url)

    @classmethod
    def from_settings(cls, settings: Settings, agent: RealtimeAgent[Any]) -> LiveBackend:
        """From ``OPENAI_LIVE_MODEL``, ``VOICE``, ``OPENAI_LIVE_DELEGATE_MODEL``,
        ``LIVE_INSTRUCTIONS``, ``LIVE_ECHO_GATE``, ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``
        ``OPENAI_LIVE_URL`` and ``LIVE_NUMBERS``. Raises ValueError without a key. (Not
        pre-warmed while the phone rings: its active time is billed.)"""
        if settings.openai_api_key is None:
            raise ValueError(
                "GPT-Live (REALTIME_BACKEND=live or LIVE_NUMBERS) needs OPENAI_API_KEY"
            )
        options = LiveOptions(
            settings.openai_live_model,
            settings.voice,
            settings.openai_live_delegate_model,
            settings.live_instructions,
            settings.live_echo_gate,
        )
        key = settings.openai_api_key.get_secret_value()
        urls = (settings.openai_base_url, settings.openai_live_url)
        return cls(agent, options, key, *urls, numbers=settings.live_number_set)

    def takes(self, our_number: str | None) -> bool:
        """Whether the call of ``our_number`` (called, or dialled from) runs on GPT-Live
        (``LIVE_NUMBERS``)."""
        return (our_number or "").strip() in self.numbers

    async def plan(
        self,
        context: Any,
        history: list[tuple[str, str]],
        agent: RealtimeAgent[Any] | None = None,
    ) -> LivePlan:
        """The call's ``session.start`` config (see :func:`~.config.plan_session`) for
        ``agent`` (one a handoff moved the call to), else the service's: a warm transfer's
        person leg (its control holds the briefing) runs the briefing agent."""
        agent = agent or agent_for_leg(self.agent, getattr(context, "control", None))
        return await plan_session(agent, context, self.options, history)

    def session(self, plan: LivePlan) -> LiveSession:
        """A session for ``plan``, not yet opened."""
        return LiveSession(self.client, plan.config)
