"""The loopback model speaks G.711 μ-law to a client that asks for it (``g711_ulaw``, sent as
``audio/pcmu``), as the SDK's own Twilio example does: bench/load.py --anchor runs that example
against it. Driven by the SDK's own ``OpenAIRealtimeWebSocketModel``."""

from __future__ import annotations

import asyncio

import numpy as np
from agents.realtime.model import RealtimeModelListener
from agents.realtime.model_events import RealtimeModelAudioEvent, RealtimeModelEvent
from agents.realtime.model_inputs import RealtimeModelSendAudio
from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel
from helpers import wait_for

from telephony.audio import ulaw_decode, ulaw_encode
from telephony.testing import LoopbackRealtimeServer, tone

REPLY_MS = 400


class Heard(RealtimeModelListener):
    def __init__(self) -> None:
        self.audio = bytearray()

    async def on_event(self, event: RealtimeModelEvent) -> None:
        if isinstance(event, RealtimeModelAudioEvent):
            self.audio += event.data


async def test_a_g711_ulaw_client_sends_and_hears_mu_law_at_8_khz() -> None:
    t = np.arange(8000) / 8000  # 1 s of a loud 500 Hz tone (the loopback VAD hears it), then quiet
    words = ulaw_encode(np.rint(8000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes())
    caller = words + b"\xff" * 8000
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, REPLY_MS)) as server:
        model, heard = OpenAIRealtimeWebSocketModel(), Heard()
        model.add_listener(heard)
        await model.connect(
            {
                "api_key": "sk-test-not-a-real-key",
                "url": server.url,
                "initial_model_settings": {
                    "input_audio_format": "g711_ulaw",
                    "output_audio_format": "g711_ulaw",
                },
            }
        )
        try:
            for i in range(0, len(caller), 160):
                await model.send_event(RealtimeModelSendAudio(audio=caller[i : i + 160]))
                await asyncio.sleep(0)
            await wait_for(lambda: len(heard.audio) >= REPLY_MS * 8, what="the μ-law reply")
        finally:
            await model.close()
        connection = server.connections[0]
    # the caller's μ-law reached the model as pcm16 24 kHz: 6 bytes for each μ-law byte
    assert connection.audio_bytes == 6 * len(caller)
    assert connection.speech_started_ms and connection.speech_stopped_ms
    # the reply: μ-law at 8 kHz, one byte per sample, the loopback's tone
    assert len(heard.audio) == REPLY_MS * 8
    pcm = np.frombuffer(ulaw_decode(bytes(heard.audio)), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 8000 / len(pcm) - 600) < 10
