"""Audio core: G.711 exactness and streaming resampler behaviour on generated signals."""

from __future__ import annotations

import random

import numpy as np
import pytest
from audio_checks import band_energy, pcm, sine

from telephony.audio import (
    FRAME_BYTES,
    GROUP_DELAY_MS,
    CallerToModel,
    Downsampler3,
    Framer,
    ModelToCaller,
    Upsampler3,
    ulaw_decode,
    ulaw_encode,
)
from telephony.audio.g711 import ULAW_DECODE_TABLE
from telephony.audio.transcoder import COMPILED


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
    # each code decodes to its table value, little-endian, whatever bytes-like holds it
    table = ULAW_DECODE_TABLE.astype("<i2").tobytes()
    assert ulaw_decode(codes) == ulaw_decode(bytearray(codes)) == table
    assert ulaw_decode(memoryview(codes)[128:]) == table[256:]
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


BACKENDS = ["numpy", "c"] if COMPILED else ["numpy"]


IN_BAND = np.arange(300.0, 3401.0, 100.0)


ALIASING = np.arange(4600.0, 11801.0, 200.0)


def fit_amplitude(x: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(x)) / rate
    basis = np.stack((np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)), axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


def band_noise(rate: int, seconds: float, lo: float, hi: float, rms: float) -> np.ndarray:
    rng = np.random.default_rng(11)
    n = int(rate * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < lo) | (freqs > hi)] = 0
    x = np.fft.irfft(spectrum, n)
    return x * rms / np.sqrt(np.mean(x**2))


def test_passband_flat_within_0_05_db_both_ways() -> None:
    for freq in IN_BAND:
        up = Upsampler3().feed_samples(sine(freq, 8000, 0.5))[2400:-2400]
        down = Downsampler3().feed_samples(sine(freq, 24000, 0.5))[800:-800]
        assert abs(20 * np.log10(fit_amplitude(up, freq, 24000) / 8000)) <= 0.05, freq
        assert abs(20 * np.log10(fit_amplitude(down, freq, 8000) / 8000)) <= 0.05, freq


def test_imaging_at_least_75_db_going_up() -> None:
    for freq in IN_BAND:
        y = Upsampler3().feed_samples(sine(freq, 8000, 0.5))[2400:-2400]
        image = band_energy(y, 24000, 4600, 12000)
        assert 10 * np.log10(band_energy(y, 24000, 0, 4000) / image) >= 75, freq


def test_alias_rejection_at_least_75_db_going_down() -> None:
    for freq in ALIASING:
        y = Downsampler3().feed_samples(sine(freq, 24000, 0.5))[800:-800]
        alias = abs(freq - 8000 * round(freq / 8000))
        assert -20 * np.log10(fit_amplitude(y, alias, 8000) / 8000) >= 75, freq


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_snr_within_0_3_db_of_the_g711_ceiling(backend: str) -> None:
    """pcm16 24k -> μ-law 8k -> pcm16 24k against the codec alone on the same in-band signal."""
    for kind in ("noise", "tone"):
        if kind == "noise":
            x8 = band_noise(8000, 1.0, 300, 3400, 3000.0)
        else:
            x8 = sine(1013.0, 8000, 1.0, 6000.0)
        x24 = np.fft.irfft(np.fft.rfft(x8), len(x8) * 3) * 3  # the same signal at 24 kHz
        codec = pcm(ulaw_decode(ulaw_encode(np.rint(x8).astype("<i2").tobytes())))
        ceiling = 10 * np.log10(np.sum(x8**2) / np.sum((codec - x8) ** 2))
        ulaw = ModelToCaller(backend).feed(np.rint(x24).astype("<i2").tobytes())
        y = pcm(CallerToModel(backend).feed(ulaw))
        delay = 96  # 2 ms each way at 24 kHz
        a, b = x24[2400 : len(x24) - 2400], y[2400 + delay : len(x24) - 2400 + delay]
        snr = 10 * np.log10(np.sum(a**2) / np.sum((b - a) ** 2))
        assert snr >= ceiling - 0.3, (kind, snr, ceiling)


@pytest.mark.parametrize("backend", BACKENDS)
def test_latency_is_the_2_ms_group_delay_and_nothing_held_back(backend: str) -> None:
    x8 = band_noise(8000, 0.5, 300, 3400, 3000.0)
    x24 = np.fft.irfft(np.fft.rfft(x8), len(x8) * 3) * 3
    up, down = CallerToModel(backend), ModelToCaller(backend)
    ulaw_in = ulaw_encode(np.rint(x8).astype("<i2").tobytes())
    pcm_in = np.rint(x24).astype("<i2").tobytes()
    up_out, down_out = [], []
    for i in range(len(x8) // 160):  # every 20 ms frame comes straight back out
        up_out.append(up.feed(ulaw_in[i * 160 : (i + 1) * 160]))
        down_out.append(down.feed(pcm_in[i * 960 : (i + 1) * 960]))
        assert len(up_out[-1]) == 960 and len(down_out[-1]) == 160
    y24, y8 = pcm(b"".join(up_out)), pcm(ulaw_decode(b"".join(down_out)))
    ref8 = pcm(ulaw_decode(ulaw_in))
    ref24 = np.fft.irfft(np.fft.rfft(ref8), len(ref8) * 3) * 3
    lags24 = [np.dot(ref24[:6000], y24[k : k + 6000]) for k in range(200)]
    lags8 = [np.dot(x8[:2000], y8[k : k + 2000]) for k in range(60)]
    assert int(np.argmax(lags24)) == 48  # 48 samples at 24 kHz = 2.0 ms
    assert int(np.argmax(lags8)) == 16  # 16 samples at 8 kHz = 2.0 ms
    assert GROUP_DELAY_MS == 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_transcoders_stream_identically_however_split(backend: str) -> None:
    rng = np.random.default_rng(5)
    ulaw = bytes(rng.integers(0, 256, 8000, dtype=np.uint8))
    pcm24 = (rng.standard_normal(24000) * 4000).astype("<i2").tobytes()
    sizes = [random.Random(9).randint(1, 1999) for _ in range(40)]
    for make, data, frame in ((CallerToModel, ulaw, 160), (ModelToCaller, pcm24, 960)):
        whole = make(backend).feed(data)
        framed = _feed_in_chunks(make(backend), data, [frame] * (len(data) // frame - 1))
        ragged = _feed_in_chunks(make(backend), data, sizes)
        for other in (framed, ragged):
            assert len(other) == len(whole)
            if make is CallerToModel:
                assert np.abs(pcm(other) - pcm(whole)).max() <= 1
            else:  # μ-law codes: equal, or neighbours where a sample sat on a rounding edge
                diff = np.frombuffer(other, np.uint8).astype(int) - np.frombuffer(whole, np.uint8)
                assert np.abs(diff).max() <= 1


@pytest.mark.skipif(not COMPILED, reason="compiled loop not installed")
def test_compiled_loop_matches_numpy() -> None:
    rng = np.random.default_rng(6)
    ulaw = bytes(rng.integers(0, 256, 16000, dtype=np.uint8))
    pcm24 = (rng.standard_normal(48001) * 6000).astype("<i2").tobytes()  # odd byte count
    c, n = CallerToModel("c").feed(ulaw), CallerToModel("numpy").feed(ulaw)
    assert np.abs(pcm(c) - pcm(n)).max() <= 1
    down_c, down_n = ModelToCaller("c"), ModelToCaller("numpy")
    c_out = down_c.feed(pcm24) + down_c.flush()
    n_out = down_n.feed(pcm24) + down_n.flush()
    assert c_out == n_out


@pytest.mark.parametrize("backend", BACKENDS)
def test_flush_returns_the_tail_and_resets(backend: str) -> None:
    down = ModelToCaller(backend)
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


def test_quiet_codes_split_the_codes_at_the_peak() -> None:
    """``frame.translate(None, quiet_codes(p))`` is empty exactly when no sample reaches p."""
    from telephony.audio import quiet_codes, ulaw_decode

    quiet = quiet_codes(1000)
    levels = np.abs(np.frombuffer(ulaw_decode(bytes(range(256))), dtype="<i2").astype(int))
    assert sorted(quiet) == [c for c in range(256) if levels[c] < 1000]
    assert 0 < len(quiet) < 256
    silence = ulaw_encode(np.zeros(160, dtype="<i2").tobytes())
    just_loud = ulaw_encode(np.full(160, 1100, dtype="<i2").tobytes())
    assert silence.translate(None, quiet) == b""
    assert just_loud.translate(None, quiet) != b""


@pytest.mark.skipif(not COMPILED, reason="the compiled audio loop is not installed")
def test_the_speech_detectors_loudness_is_the_same_compiled_and_in_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SpeechDetector.loud`` in the compiled core (``_fir.mean_square``) and in numpy give
    the same verdict on frames around the threshold (RMS 150) and at full scale, and the
    compiled mean square is exact; an odd byte count is refused."""
    from telephony.audio import _fir, speech

    rng = np.random.default_rng(3)
    frames = [
        np.clip(rng.normal(0, rms, 160), -32768, 32767).astype("<i2").tobytes()
        for rms in [0, 1, 100, 140, 145, 150, 155, 160, 300, 30000] * 20
    ] + [np.full(160, -32768, "<i2").tobytes(), b""]
    detector = speech.SpeechDetector()
    compiled = [detector.loud(f) for f in frames]
    for f in frames[:-1]:
        x = np.frombuffer(f, "<i2").astype(np.int64)
        assert _fir.mean_square(f) == float((x * x).sum()) / len(x)
    monkeypatch.setattr(speech, "_mean_square", None)
    assert [detector.loud(f) for f in frames] == compiled
    assert 0 < sum(compiled) < len(frames) - 1  # both verdicts occur
    with pytest.raises(ValueError, match="even number"):
        _fir.mean_square(b"\x01\x02\x03")
