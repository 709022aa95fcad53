"""Call recordings (``RECORD_CALLS=true``): a stereo WAV next to the call's log, written as the
call goes.

Left: the caller, as we received them. Right: the agent, as the caller heard it: the audio we
sent, placed where Twilio played it (our send times moved by the mark echoes, cut where a
``clear`` stopped it: :class:`~telephony.audio.echo.PlayoutReference`). Each caller frame is
written with the 20 ms of agent audio that played while it arrived, so the two channels share
one clock.

16-bit PCM at 8 kHz (every browser plays it): 32 000 bytes a second, 1.92 MB a minute. The
header's sizes are rewritten at every flush (at most a second apart), so a crash leaves a
playable file up to its last second. Owner-only permissions (0600).
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

__all__ = ["BYTES_PER_SECOND", "CallRecording"]

RATE = 8000
CHANNELS = 2
BYTES_PER_SECOND = RATE * CHANNELS * 2
HEADER_BYTES = 44
FLUSH_EVERY_S = 1.0


def _header(data_bytes: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, BYTES_PER_SECOND, CHANNELS * 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class CallRecording:
    """One call's stereo recording.

    Args:
        path: the ``.wav`` file to create (owner-only permissions).

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=64 * 1024)
        self._file.write(_header(0))
        self._data_bytes = 0
        self._flushed_at = time.monotonic()
        self._closed = False

    @property
    def seconds(self) -> float:
        return self._data_bytes / BYTES_PER_SECOND

    def write(self, caller: bytes, agent: bytes) -> None:
        """One frame: ``caller`` and ``agent`` pcm16 8 kHz of the same length (the agent's
        padded or cut to the caller's)."""
        left = np.frombuffer(caller, dtype="<i2")
        right = np.frombuffer(agent[: len(caller)].ljust(len(caller), b"\0"), dtype="<i2")
        frame = np.empty(2 * len(left), dtype="<i2")
        frame[0::2], frame[1::2] = left, right
        self._file.write(frame.tobytes())
        self._data_bytes += frame.nbytes
        now = time.monotonic()
        if now - self._flushed_at >= FLUSH_EVERY_S:
            self._flushed_at = now
            self.flush()

    def flush(self) -> None:
        """Rewrite the header's sizes and push everything to the file."""
        self._file.flush()
        position = self._file.tell()
        self._file.seek(0)
        self._file.write(_header(self._data_bytes))
        self._file.seek(position)
        self._file.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.flush()
        self._file.close()
