"""Audio core benchmark: our transcoder against audioop and soxr, side by side in one run.

    python bench/audio.py            # needs the bench extra: pip install -e '.[bench]'

For each implementation, both directions through the real byte formats (μ-law 8 kHz ⇄ pcm16
24 kHz, codec included), fed 20 ms frames as a call does:

- µs per 20 ms frame up (8k→24k) and down (24k→8k), best of 5 runs of 2000 frames, and the
  ratio of up+down to audioop's (ulaw2lin + ratecv, ratecv + lin2ulaw) measured in this run;
- calls per core: 20 ms / (up + down), the transcoding work alone;
- on the resamplers alone (pcm16 in and out, full-scale tones, so neither μ-law's level bias nor
  its noise hides the filter): alias rejection, the worst level of the alias of a tone
  4.6-11.8 kHz going 24k→8k (dB below the tone; ">N" when the alias rounds to silence, N being
  the measurement floor); imaging, the worst level above 4.6 kHz of an in-band tone going 8k→24k;
  passband, the worst gain deviation for tones 300-3400 Hz, each direction (dB);
- round-trip SNR of band-limited noise 300-3400 Hz (pcm16 24k → μ-law 8k → pcm16 24k), and the
  G.711 ceiling for that signal (the codec alone at 8 kHz);
- latency per direction: group delay (cross-correlation) plus buffering lag (output held back).
"""

from __future__ import annotations

import sys
import timeit
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:
    import audioop
except ImportError:  # Python >= 3.13 without audioop-lts
    audioop = None  # type: ignore[assignment]
try:
    import soxr
except ImportError:
    soxr = None  # type: ignore[assignment]

from telephony.audio import (  # noqa: E402 (after the audioop warning filter)
    CallerToModel,
    Downsampler3,
    ModelToCaller,
    Upsampler3,
    ulaw_decode,
    ulaw_encode,
)
from telephony.audio.transcoder import COMPILED  # noqa: E402

FRAME_8K = 160
FRAME_24K = 480


Feed = Callable[[bytes], bytes]


@dataclass
class Impl:
    name: str
    make_up: Callable[[], Feed]  # μ-law 8k -> pcm16 24k
    make_down: Callable[[], Feed]  # pcm16 24k -> μ-law 8k
    make_up_pcm: Callable[[], Feed]  # pcm16 8k -> pcm16 24k (resampler alone)
    make_down_pcm: Callable[[], Feed]  # pcm16 24k -> pcm16 8k (resampler alone)


def ours(backend: str) -> Impl:
    return Impl(
        f"ours ({backend})",
        lambda: CallerToModel(backend).feed,  # type: ignore[arg-type]
        lambda: ModelToCaller(backend).feed,  # type: ignore[arg-type]
        lambda: Upsampler3().feed,  # the same filter in both backends
        lambda: Downsampler3().feed,
    )


def audioop_impl() -> Impl:
    def make_up() -> Callable[[bytes], bytes]:
        state = [None]

        def up(ulaw: bytes) -> bytes:
            out, state[0] = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, 8000, 24000, state[0])
            return out

        return up

    def make_down() -> Callable[[bytes], bytes]:
        state = [None]

        def down(pcm: bytes) -> bytes:
            out, state[0] = audioop.ratecv(pcm, 2, 1, 24000, 8000, state[0])
            return audioop.lin2ulaw(out, 2)

        return down

    def make_ratecv(src: int, dst: int) -> Feed:
        state = [None]

        def convert(pcm: bytes) -> bytes:
            out, state[0] = audioop.ratecv(pcm, 2, 1, src, dst, state[0])
            return out

        return convert

    return Impl(
        "audioop",
        make_up,
        make_down,
        lambda: make_ratecv(8000, 24000),
        lambda: make_ratecv(24000, 8000),
    )


def soxr_impl() -> Impl:
    def make_up() -> Callable[[bytes], bytes]:
        stream = soxr.ResampleStream(8000, 24000, 1, dtype="int16", quality="HQ")

        def up(ulaw: bytes) -> bytes:
            x = np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype="<i2")
            return stream.resample_chunk(x).tobytes()

        return up

    def make_down() -> Callable[[bytes], bytes]:
        stream = soxr.ResampleStream(24000, 8000, 1, dtype="int16", quality="HQ")

        def down(pcm: bytes) -> bytes:
            y = stream.resample_chunk(np.frombuffer(pcm, dtype="<i2"))
            return audioop.lin2ulaw(y.tobytes(), 2)

        return down

    def make_stream(src: int, dst: int) -> Feed:
        stream = soxr.ResampleStream(src, dst, 1, dtype="int16", quality="HQ")
        return lambda pcm: stream.resample_chunk(np.frombuffer(pcm, dtype="<i2")).tobytes()

    return Impl(
        "soxr HQ stream",
        make_up,
        make_down,
        lambda: make_stream(8000, 24000),
        lambda: make_stream(24000, 8000),
    )


def run_frames(feed: Callable[[bytes], bytes], data: bytes, frame: int) -> tuple[bytes, list[int]]:
    """Feed ``data`` in frames; returns the output and the output length after each frame."""
    out, lengths, total = [], [], 0
    for i in range(0, len(data) - frame + 1, frame):
        chunk = feed(data[i : i + frame])
        out.append(chunk)
        total += len(chunk)
        lengths.append(total)
    return b"".join(out), lengths


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def to_pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def fit_amplitude(x: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(x)) / rate
    basis = np.stack((np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)), axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 8000.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def band_noise(
    rate: int, seconds: float, lo: float, hi: float, rms: float, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(int(rate * seconds)))
    freqs = np.fft.rfftfreq(int(rate * seconds), 1 / rate)
    spectrum[(freqs < lo) | (freqs > hi)] = 0
    x = np.fft.irfft(spectrum, int(rate * seconds))
    return x * rms / np.sqrt(np.mean(x**2))


def steady(x: np.ndarray, rate: int) -> np.ndarray:
    """Drop the first and last 100 ms (start-up and tails)."""
    cut = rate // 10
    return x[cut:-cut]


def cost_us(impl: Impl) -> tuple[float, float]:
    ulaw = ulaw_encode(to_pcm16(tone(1013, 8000, 0.02)))
    pcm24 = to_pcm16(tone(1013, 24000, 0.02))
    up, down = impl.make_up(), impl.make_down()
    n = 2000
    t_up = min(timeit.repeat(lambda: up(ulaw), number=n, repeat=5)) / n * 1e6
    t_down = min(timeit.repeat(lambda: down(pcm24), number=n, repeat=5)) / n * 1e6
    return t_up, t_down


FULL = 30000.0
FLOOR_DB = 20 * np.log10(FULL / 0.5)  # an alias below half an LSB rounds to silence


def alias_rejection_db(impl: Impl) -> float:
    """Worst alias level in dB below the tone; FLOOR_DB when every alias rounded to silence."""
    worst = np.inf
    for freq in np.arange(4600.0, 11801.0, 200.0):
        out, _ = run_frames(impl.make_down_pcm(), to_pcm16(tone(freq, 24000, amplitude=FULL)), 960)
        y = steady(pcm(out), 8000)
        alias = abs(freq - 8000 * round(freq / 8000))
        level = max(fit_amplitude(y, alias, 8000), 0.5) / FULL
        worst = min(worst, -20 * np.log10(level))
    return float(worst)


def imaging_db(impl: Impl) -> float:
    worst = np.inf
    for freq in (300.0, 1000.0, 2000.0, 3000.0, 3400.0):
        src = to_pcm16(tone(freq, 8000, amplitude=FULL))
        out, _ = run_frames(impl.make_up_pcm(), src, FRAME_8K * 2)
        y = steady(pcm(out), 24000)
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / 24000)
        ratio = spectrum[freqs >= 4600].sum() / spectrum[freqs < 4000].sum()
        worst = min(worst, -10 * np.log10(max(ratio, 1e-30)))
    return float(worst)


def passband_db(impl: Impl) -> tuple[float, float]:
    """Worst |gain| in dB over 300-3400 Hz, up and down, on the resamplers alone."""
    up_dev = down_dev = 0.0
    for freq in np.arange(300.0, 3401.0, 100.0):
        out, _ = run_frames(impl.make_up_pcm(), to_pcm16(tone(freq, 8000, amplitude=FULL)), 320)
        got = fit_amplitude(steady(pcm(out), 24000), freq, 24000)
        up_dev = max(up_dev, abs(20 * np.log10(got / FULL)))
        out, _ = run_frames(impl.make_down_pcm(), to_pcm16(tone(freq, 24000, amplitude=FULL)), 960)
        got = fit_amplitude(steady(pcm(out), 8000), freq, 8000)
        down_dev = max(down_dev, abs(20 * np.log10(got / FULL)))
    return up_dev, down_dev


def round_trip_snr_db(impl: Impl) -> tuple[float, float]:
    """SNR of band-limited noise through 24k → μ-law 8k → 24k, and the G.711 ceiling."""
    x24 = band_noise(24000, 2.0, 300, 3400, 3000.0)
    ulaw, _ = run_frames(impl.make_down(), to_pcm16(x24), FRAME_24K * 2)
    back, _ = run_frames(impl.make_up(), ulaw, FRAME_8K)
    y = pcm(back)
    n = min(len(y), len(x24)) - 4800
    best = -np.inf
    for lag in range(0, 400):  # align by the round trip's delay
        a, b = x24[2400 : 2400 + n - 400], y[2400 + lag : 2400 + lag + n - 400]
        gain = np.dot(a, b) / np.dot(a, a)
        snr = 10 * np.log10(np.sum((gain * a) ** 2) / np.sum((b - gain * a) ** 2))
        best = max(best, snr)
    x8 = band_noise(8000, 2.0, 300, 3400, 3000.0)
    codec = pcm(ulaw_decode(ulaw_encode(to_pcm16(x8))))
    ceiling = 10 * np.log10(np.sum(x8**2) / np.sum((codec - x8) ** 2))
    return float(best), float(ceiling)


def latency_ms(impl: Impl) -> tuple[float, float]:
    """Group delay + buffering lag per direction, in ms."""
    result = []
    for direction in ("up", "down"):
        if direction == "up":
            x = band_noise(8000, 1.0, 300, 3400, 3000.0, seed=5)
            out, lengths = run_frames(impl.make_up(), ulaw_encode(to_pcm16(x)), FRAME_8K)
            y, per_frame, ref, rate = pcm(out), 960, np.repeat(x, 3), 24000
            ref = np.fft.irfft(np.fft.rfft(x), len(x) * 3) * 3  # band-limited ×3 reference
        else:
            x = band_noise(24000, 1.0, 300, 3400, 3000.0, seed=5)
            out, lengths = run_frames(impl.make_down(), to_pcm16(x), FRAME_24K * 2)
            y, per_frame, rate = pcm(ulaw_decode(out)), 160, 8000
            ref = np.fft.irfft(np.fft.rfft(x)[: len(x) // 6 + 1], len(x) // 3) / 3
        lag_samples = int(
            np.argmax(
                [np.dot(ref[: len(ref) // 2], y[k : k + len(ref) // 2]) for k in range(rate // 10)]
            )
        )
        held = max(
            (k + 1) * per_frame - lengths[k] for k in range(len(lengths))
        )  # bytes behind the input
        bytes_per_sample = 2 if direction == "up" else 1
        buffering = held / bytes_per_sample / rate * 1000
        result.append(lag_samples / rate * 1000 + buffering)
    return result[0], result[1]


def main() -> int:
    impls = []
    if COMPILED:
        impls.append(ours("c"))
    impls.append(ours("numpy"))
    if audioop is None:
        print("audioop is missing: pip install -e '.[bench]' (audioop-lts on Python >= 3.13)")
        return 2
    impls.append(audioop_impl())
    if soxr is not None:
        impls.append(soxr_impl())
    else:
        print("(soxr not installed: pip install -e '.[bench]' to compare it)")
    costs = {impl.name: cost_us(impl) for impl in impls}
    base = sum(costs["audioop"])
    print(
        f"{'implementation':<16} {'up µs':>7} {'down µs':>8} {'÷audioop':>9} {'calls/core':>10} "
        f"{'alias dB':>9} {'image dB':>9} {'pass up':>8} {'pass dn':>8} {'RT SNR':>7} "
        f"{'ceiling':>7} {'lat up':>7} {'lat dn':>7}"
    )
    for impl in impls:
        up_us, down_us = costs[impl.name]
        alias = alias_rejection_db(impl)
        image = imaging_db(impl)
        pass_up, pass_down = passband_db(impl)
        snr, ceiling = round_trip_snr_db(impl)
        lat_up, lat_down = latency_ms(impl)
        alias_text = f">{FLOOR_DB:.1f}" if alias >= FLOOR_DB - 1e-9 else f"{alias:.1f}"
        print(
            f"{impl.name:<16} {up_us:7.1f} {down_us:8.1f} {(up_us + down_us) / base:8.2f}× "
            f"{20000 / (up_us + down_us):10.0f} {alias_text:>9} {image:9.1f} {pass_up:8.3f} "
            f"{pass_down:8.3f} {snr:7.2f} {ceiling:7.2f} {lat_up:5.1f}ms {lat_down:5.1f}ms"
        )
    print("alias/image: dB below the tone (higher is better); pass: worst |gain| dB 300-3400 Hz;")
    print("RT SNR: 24k→μ-law 8k→24k on 300-3400 Hz noise; ceiling: G.711 alone on that signal;")
    print("lat: group delay + buffering lag per direction; calls/core: transcoding work alone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
