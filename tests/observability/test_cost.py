"""What each call cost: the model's reported usage priced by kind, plus carrier minutes, in
``call.end``, per response in the log (and the timeline), and on ``/metrics``."""

from __future__ import annotations

import math

import httpx
import pytest
from audio_checks import ulaw_tone
from helpers import SILENCE, events, final_log, metric_samples

from telephony.config import Prices, Settings
from telephony.observability.cost import tokens_of, transcription_tokens_of
from telephony.observability.timeline import render_svg
from telephony.testing import tone

PAUSE = SILENCE * 8000 * 2


def priced(usage: list[dict], prices: Prices) -> float:
    """The loopback model's reported usage priced by hand, kind by kind."""
    total = 0.0
    previous = {"text": 0, "audio": 0}
    for u in usage:
        (text_in, audio_in), (text_out, audio_out) = u["input"], u["output"]
        total += (text_in - previous["text"]) * prices.text_input
        total += previous["text"] * prices.text_cached_input
        total += (audio_in - previous["audio"]) * prices.audio_input
        total += previous["audio"] * prices.audio_cached_input
        total += text_out * prices.text_output + audio_out * prices.audio_output
        previous = {"text": text_in, "audio": audio_in}
    return total / 1_000_000


async def test_call_end_cost_is_the_price_table_applied_to_the_reported_usage(
    live_server,
) -> None:
    overrides = {"greeting": "Hello.", "prices": {"audio_output": 20.0}}
    # 6 dB over the agent's tone: the first starts during the greeting, before the echo judge
    # has learned the line (within 3 dB of what played, it may be the agent's echo)
    caller = SILENCE * 4000 + (ulaw_tone(500, 0.6, 16000.0) + PAUSE) * 2
    cost_sample = ("telephony_call_cost_usd_total", (("outcome", "caller_hangup"),))
    async with live_server(overrides=overrides, reply=lambda _: tone(600, 1000)) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            before = metric_samples((await http.get("/metrics")).text).get(cost_sample, 0.0)
            result = await srv.call(caller, speed=2, tail_s=0.5)
            log = await final_log(srv, result.call_sid)
            after = metric_samples((await http.get("/metrics")).text)[cost_sample]
    usage = srv.model.connections[0].usage
    assert len(usage) == 3  # the greeting and two answers
    prices = Prices(audio_output=20.0)
    end = log[-1]
    # each caller transcript is billed apart (its own usage: gpt-4o-mini-transcribe's tokens)
    transcribed = events(log, "transcription.usage")
    assert len(transcribed) == 2
    assert all(
        r["tokens"] == {"transcription_input": 20, "transcription_output": 7} for r in transcribed
    )
    transcripts = 2 * (20 * prices.transcription_input + 7 * prices.transcription_output) / 1e6
    assert end["cost_usd"]["model"] == pytest.approx(priced(usage, prices) + transcripts, abs=1e-6)
    assert end["tokens"]["transcription_input"] == 40
    minutes = math.ceil(end["duration_s"] / 60)
    assert end["cost_usd"]["carrier"] == pytest.approx(minutes * prices.carrier_inbound_per_minute)
    assert end["cost_usd"]["total"] == pytest.approx(
        end["cost_usd"]["model"] + end["cost_usd"]["carrier"],
        abs=2e-6,  # each rounded
    )
    assert end["tokens"]["audio_cached_input"] > 0 and end["tokens"]["audio_output"] == 3 * 20
    # one model.usage record per response, summing to call.end's
    per_turn = events(log, "model.usage")
    assert len(per_turn) == 3
    # (each rounded to a millionth of a dollar)
    shares = [r["cost_usd"] for r in per_turn + transcribed]
    assert sum(shares) == pytest.approx(end["cost_usd"]["model"], abs=5e-6)
    assert " tok $" in render_svg(log)
    assert after - before == pytest.approx(end["cost_usd"]["total"], abs=1e-6)


def test_tokens_of_splits_openais_usage_by_kind() -> None:
    usage = {
        "input_token_details": {
            "text_tokens": 500,
            "audio_tokens": 300,
            "cached_tokens": 448,
            "cached_tokens_details": {"text_tokens": 320, "audio_tokens": 128},
        },
        "output_token_details": {"text_tokens": 40, "audio_tokens": 200},
    }
    assert tokens_of(usage) == {
        "text_input": 180,
        "text_cached_input": 320,
        "audio_input": 172,
        "audio_cached_input": 128,
        "text_output": 40,
        "audio_output": 200,
    }
    assert tokens_of({}) == dict.fromkeys(tokens_of(usage), 0)


def test_unknown_or_negative_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown prices"):
        Settings(prices={"audio_outptu": 1.0})
    with pytest.raises(ValueError, match="negative"):
        Settings(prices={"audio_output": -1.0})
    assert Prices.with_overrides({"audio_output": 20}).audio_output == 20.0


def test_prices_follow_the_model_and_transcripts_are_priced() -> None:
    """Issue 26, findings 17 and 18: OpenAI's model pages, read 2026-12-04."""
    flagship = Prices.with_overrides({}, "gpt-realtime-2.1")
    assert (flagship.audio_input, flagship.audio_output, flagship.text_output) == (32, 64, 24)
    mini = Prices.with_overrides({}, "gpt-realtime-2.1-mini")
    assert (mini.audio_input, mini.audio_cached_input, mini.audio_output) == (10, 0.3, 20)
    assert Prices.with_overrides({}, "gpt-realtime").text_output == 16
    assert Prices.with_overrides({"text_output": 1}, "gpt-realtime-mini").text_output == 1
    assert Prices.with_overrides({}, "my-fine-tune") == Prices()  # unknown: the defaults
    assert Settings().openai_realtime_model == "gpt-realtime-2.1"  # the SDK's default too
    tokens = transcription_tokens_of({"type": "tokens", "input_tokens": 1000, "output_tokens": 50})
    assert tokens == {"transcription_input": 1000, "transcription_output": 50}
    assert Prices().model_usd(tokens) == pytest.approx((1000 * 1.25 + 50 * 5.0) / 1e6)
    by_time = transcription_tokens_of({"type": "duration", "seconds": 30})
    assert Prices().model_usd(by_time) == pytest.approx(0.5 * 0.006)
    assert transcription_tokens_of(None) == transcription_tokens_of({"type": "x"}) == {}
