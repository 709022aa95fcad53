"""Signal measurements the tests share (numpy only, independent of the code under test)."""

from __future__ import annotations

import numpy as np


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Energy of ``x`` between ``lo`` and ``hi`` Hz (Hann-windowed, so leakage stays low)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def tone_snr_db(x: np.ndarray, freq: float, rate: int) -> float:
    """SNR of ``x`` against the best-fitting sinusoid at ``freq`` (least squares)."""
    t = np.arange(len(x)) / rate
    basis = np.stack((np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)), axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis @ coef
    return float(10 * np.log10(np.sum(fit**2) / np.sum((x - fit) ** 2)))


def best_lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest normalised correlation of ``a`` and ``b`` over lags in ±max_lag, and that lag."""
    best = (-1.0, 0)
    n = min(len(a), len(b)) - 2 * max_lag
    for lag in range(-max_lag, max_lag + 1):
        x = a[max_lag : max_lag + n]
        y = b[max_lag + lag : max_lag + lag + n]
        c = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))
        if c > best[0]:
            best = (c, lag)
    return best


def upsample_fft(x: np.ndarray, factor: int) -> np.ndarray:
    """Band-limited upsampling by zero-padding the spectrum (a reference, not streaming)."""
    spectrum = np.fft.rfft(x)
    padded = np.zeros(len(x) * factor // 2 + 1, dtype=complex)
    padded[: len(spectrum)] = spectrum
    return np.fft.irfft(padded, len(x) * factor) * factor


def ulaw_tone(freq: float, seconds: float, amplitude: float = 6000.0) -> bytes:
    """A sine tone as μ-law 8 kHz bytes (what a caller's phone would send)."""
    from telephony.audio import ulaw_encode

    return ulaw_encode(np.rint(sine(freq, 8000, seconds, amplitude)).astype("<i2").tobytes())


def bridged_frames(*deltas: bytes) -> list[bytes]:
    """Model audio deltas (pcm16 24 kHz bytes) as the bridge sends them to the caller: one
    stream through the transcoder, 20 ms μ-law frames, the last one padded with silence."""
    from telephony.audio import FRAME_BYTES, ModelToCaller

    down = ModelToCaller()
    ulaw = b"".join(down.feed(d) for d in deltas) + down.flush()
    ulaw += b"\xff" * (-len(ulaw) % FRAME_BYTES)
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


def contains_run(frames: list[bytes], run: list[bytes]) -> bool:
    """Whether ``run`` occurs in ``frames`` whole, in order and back to back."""
    n = len(run)
    return any(frames[i : i + n] == run for i in range(len(frames) - n + 1))
