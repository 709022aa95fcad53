"""The README's quickstart stays true: CI runs its test command word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_two_quickstart_commands_and_ci_runs_the_test_one() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    run_server, run_tests = commands
    assert "server.py" in run_server and "pytest" in run_tests
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert run_tests in ci_lines


def test_the_readme_settings_tables_are_the_settings_models() -> None:
    """The README's settings section is what ``python -m telephony.config`` prints from the
    models (names, defaults, meanings), group by group: edit the model, then regenerate."""
    from telephony.config import GROUPS
    from telephony.config.table import BEGIN, END, settings_markdown

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section.strip() == settings_markdown(GROUPS), "run: python -m telephony.config"


def test_configuration_table_lists_every_setting() -> None:
    from telephony.config import Settings

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}
