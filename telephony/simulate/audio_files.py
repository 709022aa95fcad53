"""Caller audio for the simulator: reading recordings, finding speech, saving what was heard."""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import ulaw_decode, ulaw_encode

if TYPE_CHECKING:
    from .twilio_side import SimulationResult

__all__ = ["FRAME_S", "load_caller_audio", "save_wav", "speech_segments"]

FRAME_S = 0.02  # one Media Streams frame, seconds


def load_caller_audio(path: Path) -> bytes:
    """Read a caller recording as μ-law 8 kHz bytes.

    Raises:
        ValueError: a WAV that is not 16-bit mono PCM at 8 kHz (the message says how to convert).
    """
    if path.suffix.lower() != ".wav":
        return path.read_bytes()
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
            raise ValueError(
                f"{path}: need 16-bit mono PCM at 8 kHz "
                f"(got {w.getnchannels()} ch, {w.getsampwidth() * 8} bit, {w.getframerate()} Hz); "
                f"convert with: sox {path} -r 8000 -c 1 -e u-law -t raw out.ulaw"
            )
        return ulaw_encode(w.readframes(w.getnframes()))


def speech_segments(
    ulaw: bytes, threshold: float = 300.0, hangover_frames: int = 15
) -> list[tuple[float, float]]:
    """Speech in μ-law 8 kHz audio as ``[(start_s, end_s)]`` by 20 ms frame energy.

    A frame is speech when its RMS (int16 units) exceeds ``threshold``; a segment ends after
    ``hangover_frames`` quiet frames (300 ms by default).
    """
    pcm = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    n = len(pcm) // 160
    loud = [
        math.sqrt(float(np.mean(pcm[i * 160 : (i + 1) * 160] ** 2))) > threshold for i in range(n)
    ]
    segments: list[tuple[float, float]] = []
    start = None
    quiet = 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            quiet = 0
            last = i
        elif start is not None:
            quiet += 1
            if quiet >= hangover_frames:
                segments.append((start * FRAME_S, (last + 1) * FRAME_S))
                start = None
    if start is not None:
        segments.append((start * FRAME_S, (last + 1) * FRAME_S))
    return segments


def save_wav(path: Path, result: SimulationResult, caller: bytes) -> None:
    """Write what the caller heard as a stereo 8 kHz WAV: left the caller, right the agent."""
    agent = np.zeros(len(caller) + (8000 * 30), dtype=np.int16)
    end = 0
    for at, frame in result.played:
        i = round(at * 8000)
        pcm = np.frombuffer(ulaw_decode(frame), dtype="<i2")
        if i + len(pcm) > len(agent):
            agent = np.concatenate((agent, np.zeros(i + len(pcm) - len(agent), np.int16)))
        agent[i : i + len(pcm)] = pcm
        end = max(end, i + len(pcm))
    total = max(end, len(caller))
    left = np.zeros(total, np.int16)
    left[: len(caller)] = np.frombuffer(ulaw_decode(caller), dtype="<i2")
    stereo = np.stack((left, agent[:total]), axis=1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())
