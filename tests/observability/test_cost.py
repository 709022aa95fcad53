"""What each call cost: the model's reported usage priced by kind, plus carrier minutes, in
``call.end``, per response in the log (and the timeline), and on ``/metrics``."""

from __future__ import annotations

import math

import httpx
import pytest
from audio_checks import ulaw_tone
from helpers import SILENCE, events, final_log, metric_samples

from telephony.config import Prices, Settings
from telephony.observability.cost import tokens_of
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
    assert end["cost_usd"]["model"] == pytest.approx(priced(usage, prices), abs=1e-6)
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
    assert sum(r["cost_usd"] for r in per_turn) == pytest.approx(end["cost_usd"]["model"], abs=5e-6)
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
