"""The call's recording as the bridge feeds it: each caller frame with the agent audio that
played at the caller's ear meanwhile, both on the caller's audio clock."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..audio import ulaw_decode
from ..audio.echo import PlayoutReference
from ..observability.call_log import describe_error
from ..observability.recording import CallRecording

__all__ = ["RECORD_LAG_S", "RecordingTap", "close_recording", "open_recording"]

RECORD_LAG_S = 1.0  # a recorded frame waits this long for the echoes that place the agent's audio


class RecordingTap:
    """Writes one call's stereo recording (left the caller, right the agent as heard).

    Args:
        path: the WAV file (see :class:`~telephony.observability.recording.CallRecording`).
        reference: what played at the caller's ear and when, on the caller's audio clock
            (the outbound side's :class:`~telephony.audio.echo.PlayoutReference`).

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(self, path: Path, reference: PlayoutReference) -> None:
        self.recording = CallRecording(path)
        self._reference = reference
        self._unwritten: deque[tuple[float, bytes]] = deque()  # (ends at, caller frame)

    def frame(self, ulaw: bytes, at: float) -> None:
        """Caller frame ``ulaw`` (μ-law 8 kHz) ending at ``at`` on the caller's audio clock
        (seconds). It waits ``RECORD_LAG_S`` of that clock before it is written with the
        agent audio that played during it: by then the mark echoes have placed that audio."""
        self._unwritten.append((at, ulaw))
        self._write(until=at - RECORD_LAG_S)

    def close(self) -> None:
        """Write what still waits and close the file.

        Raises:
            OSError: the file could not be written.
        """
        self._write(until=None)
        self.recording.close()

    def totals(self) -> dict[str, Any]:
        """``call.end``'s ``recording``: the file's name and its length in seconds."""
        return {"file": self.recording.path.name, "seconds": round(self.recording.seconds, 2)}

    def _write(self, until: float | None) -> None:
        while self._unwritten and (until is None or self._unwritten[0][0] <= until):
            at, frame = self._unwritten.popleft()
            self.recording.write(ulaw_decode(frame), self._reference.take(at, len(frame)))


def open_recording(
    directory: Path, call_sid: str, reference: PlayoutReference, record: Callable[..., Any]
) -> RecordingTap | None:
    """The call's recording, ``<directory>/<call_sid>.wav`` (``RECORD_CALLS``), on both
    Media Streams bridges; None when the file cannot be created (``recording.error``)."""
    try:
        return RecordingTap(directory / f"{call_sid}.wav", reference)
    except OSError as exc:
        record("recording.error", error=describe_error(exc))
        return None


def close_recording(tap: RecordingTap | None, totals: dict[str, Any]) -> None:
    """Finish the call's recording, if any, and add ``recording`` to ``call.end``'s totals."""
    if tap is None:
        return
    with contextlib.suppress(OSError):
        tap.close()
    totals["recording"] = tap.totals()
