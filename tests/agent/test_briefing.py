"""A warm transfer's briefing: the summary's bounds and fallback, the person's first words,
the briefing agent, the caller's note after a decline, and the settings that turn it on."""

from __future__ import annotations

import pytest
from agents.realtime import RealtimeAgent

from telephony.agent.briefing import (
    MAX_SUMMARY_CHARS,
    Briefing,
    briefing_agent,
    briefing_opening,
    briefing_summary,
)
from telephony.config import ConfigError, load_settings
from telephony.control.warm import declined_note

KEY = "k" * 24


def briefing(**fields: str) -> Briefing:
    return Briefing(
        key=KEY, caller_sid="CA" + "1" * 32, destination="sales", **{"summary": "x", **fields}
    )


def test_the_summary_is_the_agents_bounded_to_a_word_on_one_line() -> None:
    assert briefing_summary("  Dana wants\n a refund. ") == "Dana wants a refund."
    long = briefing_summary("word " * 200)
    assert len(long) <= MAX_SUMMARY_CHARS and long.endswith("word…")


def test_without_a_summary_the_callers_last_words_stand_in() -> None:
    text = briefing_summary("", ["", "I need to change my order", "to Friday please"])
    assert text == 'said: "I need to change my order to Friday please"'
    assert briefing_summary("", []) == "did not say what it is about"
    assert len(briefing_summary("", ["a" * 5000])) <= MAX_SUMMARY_CHARS


def test_a_briefing_refuses_keys_and_summaries_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        Briefing(key="short", caller_sid="CA1", destination="sales", summary="x")
    with pytest.raises(ValueError):
        Briefing(key="k" * 20 + "/../", caller_sid="CA1", destination="sales", summary="x")
    with pytest.raises(ValueError):
        briefing(summary="x" * (MAX_SUMMARY_CHARS + 1))


def test_the_opening_names_the_caller_the_request_and_how_to_answer() -> None:
    text = briefing_opening(briefing(summary="Dana wants a refund.", caller="+15551234567"))
    assert "+15551234567" in text and "In short: Dana wants a refund." in text
    assert "press 1" in text and "2 to decline" in text
    assert "a caller on hold" in briefing_opening(briefing())


def test_the_briefing_agent_keeps_the_voice_and_has_only_the_decision_tools() -> None:
    base = RealtimeAgent(name="Support", instructions="Be kind.", tools=[], handoffs=[])
    agent = briefing_agent(base, briefing(summary="Dana wants a refund."))
    assert agent.name == "Support (briefing)"
    assert sorted(t.name for t in agent.tools) == ["accept_transfer", "decline_transfer"]
    assert "is on hold" in str(agent.instructions) and "Dana wants a refund." in str(
        agent.instructions
    )
    assert base.instructions == "Be kind."  # the caller's agent is unchanged


@pytest.mark.parametrize(
    ("outcome", "why", "says"),
    [
        ("declined", "in a meeting", 'sales could not take the call. They said: "in a meeting"'),
        ("declined", "keypad", "sales could not take the call. The caller"),
        ("no_answer", "", "sales did not answer."),
        ("voicemail", "machine_end_beep", "their voicemail picked up"),
        ("timeout", "", "did not take the call in time"),
    ],
)
def test_the_note_after_a_decline_says_why_and_offers(outcome: str, why: str, says: str) -> None:
    note = declined_note("sales", outcome, why, "to take a message")
    assert says in note and note.endswith("Offer to take a message.")


def test_transfer_warm_names_only_numbers_of_transfer_targets(monkeypatch) -> None:
    monkeypatch.chdir("/")
    targets = "sales=+15551230000,help=sip:help@example.com"
    settings = load_settings(transfer_targets=targets, transfer_warm="*")
    assert settings.call_features().warm_targets == frozenset({"sales"})
    with pytest.raises(ConfigError, match="TRANSFER_TARGETS does not"):
        load_settings(transfer_targets=targets, transfer_warm="billing")
    with pytest.raises(ConfigError, match="sip: URIs"):
        load_settings(transfer_targets=targets, transfer_warm="help")
