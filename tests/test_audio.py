"""Audio core: G.711 exactness and streaming resampler behaviour on generated signals."""

from __future__ import annotations

import random

import numpy as np
import pytest
from audio_checks import band_energy, pcm, peak_hz, sine, tone_snr_db

from telephony.audio import (
    FRAME_BYTES,
    CallerToModel,
    Downsampler3,
    Framer,
    ModelToCaller,
    Upsampler3,
    ulaw_decode,
    ulaw_encode,
)
from telephony.audio.g711 import ULAW_DECODE_TABLE


def g191_compress(x: int) -> int:
    """ITU-T G.191 ulaw_compress for one sample, written out scalar-wise as the reference."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (0x0F - ((absno >> segno) & 0x0F))
    return code | 0x80 if x >= 0 else code


def test_ulaw_encode_matches_g191_on_all_int16() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    ours = np.frombuffer(ulaw_encode(samples.astype("<i2").tobytes()), dtype=np.uint8)
    reference = np.array([g191_compress(int(x)) for x in samples], dtype=np.uint8)
    assert np.array_equal(ours, reference)
    mirrored = np.frombuffer(ulaw_encode((-1 - samples).astype("<i2").tobytes()), dtype=np.uint8)
    assert np.array_equal(mirrored, ours ^ 0x80)  # enc(-1-x) == enc(x) ^ 0x80
    # G.191, not audioop: -1..-4 encode to 0x7F (decodes to 0)
    assert ulaw_encode(np.array([-1, -4], "<i2").tobytes()) == b"\x7f\x7f"


def test_ulaw_decode_known_codes_and_roundtrip() -> None:
    assert ULAW_DECODE_TABLE[0xFF] == 0 and ULAW_DECODE_TABLE[0x7F] == 0
    assert ULAW_DECODE_TABLE[0x80] == 32124 and ULAW_DECODE_TABLE[0x00] == -32124
    codes = bytes(range(256))
    # every code survives decode -> encode, except 0x7F which is -0 and comes back as +0 (0xFF)
    back = ulaw_encode(ulaw_decode(codes))
    assert [c for c in range(256) if back[c] != c] == [0x7F]
    with pytest.raises(ValueError):
        ulaw_encode(b"\x00\x01\x02")


def _feed_in_chunks(obj: object, data: bytes, sizes: list[int]) -> bytes:
    out, i = [], 0
    for size in sizes:
        out.append(obj.feed(data[i : i + size]))  # type: ignore[attr-defined]
        i += size
    out.append(obj.feed(data[i:]))  # type: ignore[attr-defined]
    return b"".join(out)


@pytest.mark.parametrize("cls,rate", [(Upsampler3, 8000), (Downsampler3, 24000)])
def test_streaming_output_independent_of_chunking(cls: type, rate: int) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(rate) * 3000).astype("<i2").tobytes()
    whole = cls().feed(x)
    frame = rate * 2 // 50  # 20 ms in bytes
    framed = _feed_in_chunks(cls(), x, [frame] * (len(x) // frame - 1))
    sizes = [random.Random(7).randint(1, 999) for _ in range(60)]  # odd splits included
    ragged = _feed_in_chunks(cls(), x, sizes)
    for other in (framed, ragged):
        assert len(other) == len(whole)
        assert np.abs(pcm(other) - pcm(whole)).max() <= 1


def test_twenty_ms_in_is_twenty_ms_out() -> None:
    up, down = CallerToModel(), ModelToCaller()
    for _ in range(10):
        assert len(up.feed(b"\xff" * 160)) == 960
        assert len(down.feed(b"\x00" * 960)) == 160


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 3400.0])
def test_upsampler_keeps_tone_and_rejects_images(freq: float) -> None:
    x = sine(freq, 8000, 1.0)
    y = pcm(Upsampler3().feed(np.rint(x).astype("<i2").tobytes()))[2400:]  # skip warm-up
    assert abs(peak_hz(y, 24000) - freq) < 2
    image = band_energy(y, 24000, 4600, 12000)
    assert 10 * np.log10(band_energy(y, 24000, 0, 4000) / image) > 75
    assert abs(np.sqrt(np.mean(y**2)) / (8000 / np.sqrt(2)) - 1) < 0.006  # flat to ±0.05 dB


@pytest.mark.parametrize("freq", [4600.0, 6000.0, 9000.0, 11800.0])
def test_downsampler_rejects_aliases(freq: float) -> None:
    x = sine(freq, 24000, 1.0)
    y = pcm(Downsampler3().feed(np.rint(x).astype("<i2").tobytes()))[800:]
    alias_db = 20 * np.log10(np.sqrt(np.mean(y**2)) + 1e-9) - 20 * np.log10(8000 / np.sqrt(2))
    assert alias_db < -75  # (int16 rounding alone is at about -87 dB here)


def test_round_trip_through_g711_keeps_tone() -> None:
    x = np.rint(sine(1000.0, 24000, 1.0)).astype("<i2").tobytes()
    ulaw = ModelToCaller().feed(x)
    back = pcm(CallerToModel().feed(ulaw))[4800:]
    assert abs(peak_hz(back, 24000) - 1000) < 2
    assert tone_snr_db(back, 1000.0, 24000) > 36.0  # G.711 ceiling is about 37-38 dB


def test_flush_returns_the_tail_and_resets() -> None:
    down = ModelToCaller()
    body = down.feed(np.rint(sine(500, 24000, 0.1)).astype("<i2").tobytes())
    tail = down.flush()
    assert len(body) == 800 and len(tail) == 17  # 2 ms filter tail + the phase sample
    assert down.feed(b"\x00\x00" * 3) == ulaw_encode(b"\x00\x00")  # fresh state: silence out


def test_framer_cuts_and_pads() -> None:
    framer = Framer()
    assert framer.push(b"\x01" * 100) == []
    frames = framer.push(b"\x02" * 300)
    assert [len(f) for f in frames] == [FRAME_BYTES, FRAME_BYTES] and framer.pending == 80
    last = framer.flush()
    assert len(last) == 1 and len(last[0]) == FRAME_BYTES and last[0].endswith(b"\xff" * 80)
    assert framer.flush() == []
