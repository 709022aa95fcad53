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
    assert s.openai_realtime_model == "gpt-realtime-2.1" and s.port == 8000
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
    with pytest.raises(ConfigError, match="OPENAI_REALTIME_MODLE: unknown setting") as typo:
        load_settings()
    assert "did you mean OPENAI_REALTIME_MODEL?" in str(typo.value)
    (tmp_path / ".env").write_text("PORT=8001\n")
    assert load_settings().port == 8001


def test_secrets_do_not_print(tmp_path: Path) -> None:
    s = Settings(
        openai_api_key="sk-secret-value",
        twilio_auth_token="tok-secret-value",
        public_url="https://public.example",
    )
    assert "secret-value" not in repr(s) and "secret-value" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"TWILIO_AUTH_TOKEN": "t" * 32}, "PUBLIC_URL is required with TWILIO_AUTH_TOKEN"),
        (
            {"ALLOW_UNSIGNED": "true", "PUBLIC_URL": "https://abc.ngrok.app"},
            "cannot run with PUBLIC_URL",
        ),
        ({"DIAL_API_TOKEN": "short"}, "DIAL_API_TOKEN: must be at least 24 characters"),
        ({"STREAM_TOKEN_SECRET": "s" * 20}, "STREAM_TOKEN_SECRET: must be at least 32"),
        ({"METRICS_TOKEN": "m" * 10}, "METRICS_TOKEN: must be at least 24"),
        ({"DIAL_ALLOWED_PREFIXES": "+1,44"}, "DIAL_ALLOWED_PREFIXES"),
    ],
)
def test_unsafe_configurations_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PUBLIC_URL", "TWILIO_AUTH_TOKEN", "ALLOW_UNSIGNED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_dependency_floors_are_past_known_denial_of_service_fixes() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).resolve().parents[2]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for spec in map(Requirement, deps):
        lows = [Version(s.version) for s in spec.specifier if s.operator in (">=", "==")]
        floors[spec.name] = max(lows) if lows else None
    assert floors["starlette"] >= Version("1.3.1")  # CVE-2026-54283
    assert floors["python-multipart"] >= Version("0.0.31")  # CVE-2026-42561 and later
    assert floors["twilio"] >= Version("9.13")  # HMAC-SHA256 webhook signatures


def test_every_groups_checks_run_in_the_composed_settings() -> None:
    """Settings is composed of the groups; a check named like another group's would be
    shadowed in the composition and silently never run."""
    from telephony.config import GROUPS

    composed = Settings.__pydantic_decorators__
    for group in GROUPS:
        own = group.__pydantic_decorators__
        for kind in ("field_validators", "model_validators"):
            for name, decorator in getattr(own, kind).items():
                assert getattr(composed, kind)[name].info == decorator.info, (group, name)
    names = [name for group in GROUPS for name in group.model_fields]
    assert len(names) == len(set(names)) == len(Settings.model_fields)


@pytest.mark.parametrize(
    "name", ["OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "REDIS_URL", "CONSOLE_TOKEN", "DIAL_API_TOKEN"]
)
def test_an_empty_secret_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, "")
    assert getattr(load_settings(), name.lower()) is None
