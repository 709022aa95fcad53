"""The real GPT-Live server's strictness, for the fake (:mod:`.live_server`): the ``openai``
package's event unions, the fields each server event may carry, what a validated event holds
beyond its model (the real server rejects it; the models keep it as extras), and the commands
refused while fixture audio plays. Sources: ``../shared/reference/gpt_live.md``."""

from __future__ import annotations

from typing import Any

from openai.types.live import ClientEvent, ServerEvent
from pydantic import BaseModel, TypeAdapter

__all__ = ["CLIENT", "FIXTURE_BLOCKS", "SERVER", "SERVER_FIELDS", "unknown_fields"]

# refused while fixture audio plays (per the ``openai`` client's docs of each command)
FIXTURE_BLOCKS = frozenset({"session.output_audio.fixture.play", "session.commentary.append",
                            "session.thinking.append", "session.instructions.append"})  # fmt: skip
CLIENT = TypeAdapter(ClientEvent)
SERVER = TypeAdapter(ServerEvent)
# each server event type's fields, from the union's models
SERVER_FIELDS: dict[str, frozenset[str]] = {
    model.model_fields["type"].annotation.__args__[0]: frozenset(model.model_fields)
    for model in ServerEvent.__origin__.__args__  # type: ignore[attr-defined]
}


def unknown_fields(model: Any, path: str = "") -> list[str]:
    """Fields of a validated event that its model does not define (the real server rejects
    them; the ``openai`` models keep them as extras)."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}{name}" for name in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += unknown_fields(getattr(model, name), f"{path}{name}.")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += unknown_fields(item, f"{path}{i}.")
    return found
