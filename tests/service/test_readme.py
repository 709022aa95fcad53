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
    """The settings tables (docs/configuration.md) are what ``python -m telephony.config``
    prints from the models (names, defaults, meanings), group by group: edit the model, then
    regenerate."""
    from telephony.config import GROUPS
    from telephony.config.table import BEGIN, END, settings_markdown

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section.strip() == settings_markdown(GROUPS), "run: python -m telephony.config"


def test_configuration_table_lists_every_setting() -> None:
    from telephony.config import Settings

    table = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_docs_site_builds_strictly(tmp_path) -> None:
    """``mkdocs build --strict``: a broken link between pages, or to an image, fails."""
    import subprocess
    import sys

    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


def test_the_env_example_loads_as_it_is(tmp_path, monkeypatch) -> None:
    """A newcomer who copies .env.example to .env unchanged gets a server in trial mode, not
    an error; the settings it names exist."""
    from telephony.config import Settings, load_settings

    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    (tmp_path / ".env").write_text(example, encoding="utf-8")
    settings = load_settings()
    assert settings.twilio_auth_token is None and settings.openai_api_key is None
    named = set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.M))
    assert named <= {name.upper() for name in Settings.model_fields}
