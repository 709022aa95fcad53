"""Per-call event log: ``$CALL_LOG_DIR/<call id>.jsonl``, one JSON object a line.

Every record has ``ts`` (UNIX seconds, float), ``mono`` (seconds on the writing machine's
monotonic clock, float: immune to a wall clock that is stepped, say by NTP or a paused virtual
machine; comparable only between records of the same ``instance``), ``call_sid`` (the Twilio
CallSid or the OpenAI SIP call_id), ``event`` and, from a service, ``instance`` (which worker or
machine wrote it), plus the event's own fields. Intervals between records are read with
:func:`seconds_between`. Lines are written as the call goes and reach the file at most
``FLUSH_EVERY_S`` (1 s) after they were written: a call writes dozens of records a second while
the agent speaks (audio deltas, marks), and a write to the file for each one cost about 4 % of
the server's time under load. A process that dies loses at most the last second of records;
``call.end`` (the log's close) is always flushed. Secrets are never passed here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

if TYPE_CHECKING:
    from .tracing import CallTraces

__all__ = [
    "CallLog",
    "CallLogs",
    "describe_error",
    "read_call_log",
    "safe_call_id",
    "seconds_between",
]

FLUSH_EVERY_S = 1.0
_ENCODER = msgspec.json.Encoder(enc_hook=str)  # what JSON cannot say is written as str()
_CALL_ID = re.compile(r"[A-Za-z0-9_\-]{1,80}", re.ASCII)


def safe_call_id(call_id: str) -> str:
    """Return ``call_id`` if it is safe as a file name (letters, digits, ``_``, ``-``; ≤ 80).

    Raises:
        ValueError: for anything else (path separators, dots, empty, too long).
    """
    if not isinstance(call_id, str) or not _CALL_ID.fullmatch(call_id):
        raise ValueError(f"call id {call_id[:80]!r} is not a safe file name")
    return call_id


class CallLog:
    """Append-only JSONL writer for one call. Use as a context manager, or call :meth:`close`.
    ``observer``, if given, is called with each record after it is written.

    Raises:
        ValueError: if ``call_id`` is not a safe file name (see :func:`safe_call_id`).
    """

    def __init__(
        self,
        directory: Path,
        call_id: str,
        observer: Callable[[dict[str, Any]], None] | None = None,
        instance: str | None = None,
    ) -> None:
        self.call_id = safe_call_id(call_id)
        self._observer = observer  # sees every record as it is written (metrics)
        self._tag = {"instance": instance} if instance else {}
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / f"{call_id}.jsonl"
        # owner-only: phone numbers and transcripts are personal data
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "ab", buffering=16 * 1024)
        self._flushed_at = -FLUSH_EVERY_S  # the first record goes to the file at once
        self._flush_later: asyncio.TimerHandle | None = None

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record (in the file within ``FLUSH_EVERY_S``); returns the record. A
        closed log ignores the call."""
        record = {
            "ts": round(time.time(), 6),
            "mono": round(time.monotonic(), 6),
            "call_sid": self.call_id,
            "event": event,
            **self._tag,
            **fields,
        }
        if self._file is not None:
            self._file.write(_ENCODER.encode(record) + b"\n")
            self._flush_soon()
            if self._observer is not None:
                self._observer(record)
        return record

    def flush(self) -> None:
        """Everything written so far to the file now."""
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        if self._file is not None:
            self._file.flush()
        self._flushed_at = time.monotonic()

    def _flush_soon(self) -> None:
        waited = time.monotonic() - self._flushed_at
        if waited >= FLUSH_EVERY_S:
            self.flush()
        elif self._flush_later is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to flush later: flush now
                self.flush()
                return
            self._flush_later = loop.call_later(FLUSH_EVERY_S - waited, self.flush)

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> CallLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CallLogs:
    """Opens the call logs of one service: one directory, every record tagged with ``instance``.

    Args:
        directory: ``CALL_LOG_DIR``.
        instance: this instance's id (``INSTANCE_ID``); None writes no ``instance`` field.
        observer: sees every record of the logs opened with ``observe=True`` (metrics).
        traces: one OpenTelemetry trace per call from its records; None: off.
    """

    def __init__(
        self,
        directory: Path,
        instance: str | None = None,
        observer: Callable[[dict[str, Any]], None] | None = None,
        traces: CallTraces | None = None,
    ) -> None:
        self.directory = directory
        self.instance = instance
        self._observer = observer
        self.traces = traces
        if traces is not None:
            self._observer = _both(observer, traces.observe)

    def open(self, call_id: str, observe: bool = True) -> CallLog:
        """The log of ``call_id`` (appended to). Raises ValueError for an unsafe call id.

        With ``traces``, the first observed open of a call begins its trace (in the current
        span's: the Voice webhook's request) and writes its id, a ``trace`` record."""
        observer = self._observer if observe else None
        log = CallLog(self.directory, call_id, observer, self.instance)
        if observe and self.traces is not None:
            trace_id = self.traces.begin(log.call_id)
            if trace_id is not None:
                log.write("trace", trace_id=trace_id)
        return log


def _both(
    first: Callable[[dict[str, Any]], None] | None, then: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    if first is None:
        return then

    def observe(record: dict[str, Any]) -> None:
        first(record)
        then(record)

    return observe


def read_call_log(path: Path) -> list[dict[str, Any]]:
    """Read a call log back as a list of records (a torn last line is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def seconds_between(earlier: dict[str, Any], later: dict[str, Any]) -> float:
    """Seconds from call-log record ``earlier`` to record ``later`` (negative if it is before).

    On the monotonic clock (``mono``) when both records carry it and were written by the same
    ``instance`` (one machine's clock); otherwise, as for logs written before ``mono`` existed or
    records from two machines of a fleet, by wall clock (``ts``), which a stepped clock skews.
    Raises KeyError when a record has no ``ts``.
    """
    if "mono" in earlier and "mono" in later and earlier.get("instance") == later.get("instance"):
        return float(later["mono"]) - float(earlier["mono"])
    return float(later["ts"]) - float(earlier["ts"])


def describe_error(exc: BaseException) -> str:
    """An exception as one line for a call-log ``error`` field: ``Type: message`` (≤ 300 chars
    of message), or just the type when the message is empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
