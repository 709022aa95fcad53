"""An index of the call logs for the console's list: one SQLite row per ended call, kept up to
date as calls end and rebuilt from the logs when the file is missing.

With 100 000 logs in ``CALL_LOG_DIR`` a list page is one indexed query, not a scan. The
index file is ``CALL_LOG_DIR/.console-index.sqlite3`` (owner-only); deleting it is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "INDEX_NAME",
    "CallIndex",
    "CallRow",
    "mask_number",
    "open_index",
    "summarise",
    "with_index",
]

INDEX_NAME = ".console-index.sqlite3"
COLUMNS = (
    "call_sid",
    "started",
    "direction",
    "caller",
    "callee",
    "duration_s",
    "reason",
    "latency_p50_ms",
    "interruptions",
    "cost_usd",
    "backend",
)


@dataclass(frozen=True)
class CallRow:
    """One call in the list (numbers as logged; mask them for display)."""

    call_sid: str
    started: float
    direction: str | None
    caller: str | None
    callee: str | None
    duration_s: float | None
    reason: str | None
    latency_p50_ms: float | None
    interruptions: int | None
    cost_usd: float | None
    backend: str | None = None  # which model served it: openai, live, local, custom


def mask_number(number: str | None, keep: int = 4) -> str:
    """``+15551234567`` -> ``+1•••••••4567``: the country prefix digit and the last ``keep``
    digits; anything that is not a phone number shows as ``•••``."""
    if not number:
        return ""
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= keep + 1 or not number.startswith("+"):
        return "•••"
    return "+" + digits[0] + "•" * (len(digits) - keep - 1) + "".join(digits[-keep:])


def show_number(number: str | None, show: bool) -> str:
    """A phone number as the console shows it: whole with ``show`` (``CONSOLE_SHOW_NUMBERS``),
    else :func:`mask_number`."""
    return (number or "") if show else mask_number(number)


def summarise(path: Path) -> CallRow | None:
    """The list row of one call log, or None when the call has not ended (no ``call.end``)."""
    first: dict[str, Any] | None = None
    facts: dict[str, Any] = {}
    end: dict[str, Any] | None = None
    with path.open(encoding="utf-8") as log:
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            first = first or record
            event = record.get("event")
            if event in ("webhook", "sip.incoming") and "caller" not in facts:
                facts["caller"], facts["callee"] = record.get("from"), record.get("to")
                facts.setdefault("direction", record.get("direction") or "inbound")
            elif event == "call.dialed":
                facts["direction"] = "outbound"
            elif event in ("model.connected", "stream.start") and record.get("backend"):
                facts.setdefault("backend", record["backend"])
            elif event == "call.end":
                end = record
    if first is None or end is None:
        return None
    metrics = end.get("metrics") or {}
    direction = str(facts.get("direction") or "inbound")
    return CallRow(
        call_sid=str(end.get("call_sid") or path.stem),
        started=float(first.get("ts", 0.0)),
        direction="outbound" if direction.startswith("outbound") else direction,
        caller=facts.get("caller"),
        callee=facts.get("callee"),
        duration_s=end.get("duration_s"),
        reason=end.get("reason"),
        latency_p50_ms=metrics.get("turn_latency_p50_ms"),
        interruptions=end.get("interruptions"),
        cost_usd=(end.get("cost_usd") or {}).get("total"),
        backend=end.get("backend") or facts.get("backend"),
    )


class CallIndex:
    """The index of one log directory.

    Args:
        directory: ``CALL_LOG_DIR``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / INDEX_NAME
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        new = not self.path.exists()
        connection = sqlite3.connect(self.path, timeout=5.0)
        if new:
            os.chmod(self.path, 0o600)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS calls (call_sid TEXT PRIMARY KEY, started REAL,"
            " direction TEXT, caller TEXT, callee TEXT, duration_s REAL, reason TEXT,"
            " latency_p50_ms REAL, interruptions INTEGER, cost_usd REAL, backend TEXT)"
        )
        columns = {row[1] for row in connection.execute("PRAGMA table_info(calls)")}
        if "backend" not in columns:  # an index written before the column existed
            connection.execute("ALTER TABLE calls ADD COLUMN backend TEXT")
        connection.execute("CREATE INDEX IF NOT EXISTS calls_started ON calls (started DESC)")
        return connection

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def add(self, rows: list[CallRow]) -> None:
        """Insert or replace rows."""
        with self._lock, self._connect() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO calls VALUES ({','.join('?' * len(COLUMNS))})",
                [tuple(getattr(r, c) for c in COLUMNS) for r in rows],
            )

    def add_log(self, call_id: str) -> None:
        """A call ended: index its log (blocking; run it off the event loop)."""
        path = self.directory / f"{call_id}.jsonl"
        row = summarise(path) if path.exists() else None
        if row is not None:
            self.add([row])

    def rebuild(self, batch: int = 2000) -> int:
        """Index every log in the directory (blocking); returns how many calls."""
        rows: list[CallRow] = []
        count = 0
        for path in self.directory.glob("*.jsonl"):
            row = summarise(path)
            if row is None:
                continue
            rows.append(row)
            if len(rows) >= batch:
                self.add(rows)
                count += len(rows)
                rows = []
        self.add(rows)
        return count + len(rows)

    def page(
        self,
        offset: int = 0,
        limit: int = 50,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        whole_numbers: bool = False,
    ) -> tuple[list[CallRow], int]:
        """Calls newest first, filtered by end reason, start time (Unix seconds) and a
        CallSid fragment or a number (a fragment of it; only the whole number when
        ``whole_numbers``: where numbers are shown masked, a fragment search would give them
        away digit by digit); and how many match in all."""
        where, args = [], []
        if outcome:
            where.append("reason = ?")
            args.append(outcome)
        if since is not None:
            where.append("started >= ?")
            args.append(since)
        if until is not None:
            where.append("started < ?")
            args.append(until)
        if search:
            if whole_numbers:
                where.append("(call_sid LIKE ? OR caller = ? OR callee = ?)")
                args += [f"%{search}%", search, search]
            else:
                where.append("(call_sid LIKE ? OR caller LIKE ? OR callee LIKE ?)")
                args += [f"%{search}%"] * 3
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock, self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM calls{clause}", args).fetchone()[0]
            found = db.execute(
                f"SELECT {','.join(COLUMNS)} FROM calls{clause} ORDER BY started DESC"
                " LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [CallRow(*r) for r in found], int(total)

    def forget(self, call_ids: list[str]) -> None:
        """Drop rows (their logs were deleted)."""
        with self._lock, self._connect() as db:
            db.executemany("DELETE FROM calls WHERE call_sid = ?", [(c,) for c in call_ids])

    def outcomes(self) -> list[str]:
        with self._lock, self._connect() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT reason FROM calls ORDER BY 1")]


def open_index(directory: Path) -> CallIndex:
    """The console's call index of the logs in ``directory`` (made private to this user: it
    holds personal data), rebuilt in the background when its file is missing."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    index = CallIndex(directory)
    if not index.exists:
        threading.Thread(target=index.rebuild, name="console-index", daemon=True).start()
    return index


def with_index(
    observe: Callable[[dict[str, Any]], None], index: CallIndex | None
) -> Callable[[dict[str, Any]], None]:
    """``observe`` (each call-log record), and a ``call.end`` also to ``index``: the log is
    read off the event loop, on the loop's next turn (it is flushed right after ``call.end``)."""
    if index is None:
        return observe

    def observe_and_index(record: dict[str, Any]) -> None:
        observe(record)
        if record.get("event") == "call.end" and isinstance(record.get("call_sid"), str):
            with contextlib.suppress(RuntimeError):  # no running loop: not a live call
                loop = asyncio.get_running_loop()
                loop.call_soon(loop.run_in_executor, None, index.add_log, record["call_sid"])

    return observe_and_index
