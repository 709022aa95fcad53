"""The GPT-Live session's lean paths pinned to the official client's own wire form: caller
audio written as JSON text is what ``AsyncLiveConnection.send`` writes for the same event, and
an output audio delta read leanly carries what ``parse_event`` reads (issue 33; the client's
transform costs about 200 µs a 20 ms caller frame)."""

from __future__ import annotations

import base64
import json

from openai._utils import async_maybe_transform
from openai.types.live import ClientEvent, ClientEventParam, ServerEvent
from pydantic import TypeAdapter

from telephony.agent.live import APPEND, AudioDelta
from telephony.testing import tone
from telephony.testing.realtime_session import ulaw_from_pcm24


async def test_caller_audio_is_written_as_the_client_writes_it() -> None:
    for ulaw in (b"\xff" * 160, ulaw_from_pcm24(tone(440, 20)), bytes(range(256))):
        audio = base64.b64encode(ulaw).decode("ascii")
        event = {"type": "session.input_audio.append", "audio": audio}
        sdk = json.dumps(await async_maybe_transform(event, ClientEventParam))
        ours = APPEND % audio
        assert json.loads(ours) == json.loads(sdk)
        parsed = TypeAdapter(ClientEvent).validate_json(ours)
        assert parsed.type == "session.input_audio.append" and parsed.audio == audio
        assert not parsed.model_extra


def test_an_output_delta_read_leanly_carries_what_the_client_reads() -> None:
    from openai.resources.live.live import AsyncLiveConnection

    delta = base64.b64encode(ulaw_from_pcm24(tone(700, 100))).decode("ascii")
    data = json.dumps({"type": "session.output_audio.delta", "delta": delta}).encode()
    sdk = AsyncLiveConnection.parse_event(None, data)  # type: ignore[arg-type]
    assert TypeAdapter(ServerEvent).validate_json(data).type == sdk.type == AudioDelta.type
    ours = AudioDelta(json.loads(data)["delta"])
    assert ours.delta == sdk.delta and base64.b64decode(ours.delta)
