"""Configuration: defaults, malformed values and unknown keys name the variable, secrets never
print."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony.config import ConfigError, Settings, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "PUBLIC_URL", "PORT", "HOST", "OPENAI_REALTIME_MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.openai_realtime_model == "gpt-realtime" and s.port == 8000
    assert s.call_log_dir == Path("calls") and s.openai_api_key is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("PUBLIC_URL", "ftp://example.com"),
        ("PUBLIC_URL", "https://example.com/?x=1"),
        ("OPENAI_REALTIME_URL", "https://api.openai.com"),
        ("TWILIO_ACCOUNT_SID", "nope"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_unknown_dotenv_key_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=8001\nOPENAI_REALTIME_MODLE=typo\n")
    with pytest.raises(ConfigError, match="OPENAI_REALTIME_MODLE: unknown setting"):
        load_settings()
    (tmp_path / ".env").write_text("PORT=8001\n")
    assert load_settings().port == 8001


def test_secrets_do_not_print(tmp_path: Path) -> None:
    s = Settings(openai_api_key="sk-secret-value", twilio_auth_token="tok-secret-value")
    assert "secret-value" not in repr(s) and "secret-value" not in str(s.model_dump())
