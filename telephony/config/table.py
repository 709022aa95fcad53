"""The settings tables of docs/configuration.md, made from the settings models themselves (one
table per group of :data:`telephony.config.GROUPS`), so the two cannot drift: a test compares
them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["BEGIN", "END", "settings_markdown"]

BEGIN = "<!-- settings: made by `.venv/bin/python -m telephony.config`; a test checks it -->"
END = "<!-- end of settings -->"
LONG = 56  # characters of a default text shown before it is cut


def settings_markdown(groups: tuple[type[BaseModel], ...]) -> str:
    """Markdown: a ``####`` heading (the group's docstring up to a colon or a parenthesis)
    and a table (variable, default, meaning) per group, in order."""
    parts = []
    for group in groups:
        first = (group.__doc__ or group.__name__).strip().splitlines()[0]
        title = first.split(":")[0].split(" (")[0].rstrip(".")
        rows = [
            f"| `{name.upper()}` | {_default(info)} | {info.description} |"
            for name, info in group.model_fields.items()
        ]
        parts.append(
            "\n".join([f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"])
            + "\n"
            + "\n".join(rows)
        )
    return "\n\n".join(parts)


def _default(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value: Any = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, Path):
        return f"`./{value}`"
    if value == "":
        return "empty"
    if isinstance(value, str) and " " in value:
        if len(value) > LONG:
            value = value[:LONG].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
        return f'"{value}"'
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"
