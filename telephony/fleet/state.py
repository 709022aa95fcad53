"""The fleet-state interface and its in-process implementation."""

from __future__ import annotations

import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["ControlHandler", "FleetState", "FleetUnavailable", "LiveCalls", "LocalState"]

ControlHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Handles a control message addressed to this instance (``{"op", "call", "args"}``) and
returns the reply (``{"ok": bool, …}``)."""

LiveCalls = Callable[[], dict[str, str]]
"""This instance's live calls: ``{call id: path}`` (``media`` or ``sip``)."""


class FleetUnavailable(Exception):
    """The shared store cannot be reached; the caller falls back to per-instance rules."""


class FleetState(ABC):
    """What instances share. Methods that reach a shared store raise :class:`FleetUnavailable`
    when it is down; they never block for long (sub-second timeouts).

    Attributes:
        instance: this instance's id (``INSTANCE_ID``).
        shared: True when the state is shared with other instances (Redis).
    """

    shared = False

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.on_control: ControlHandler | None = None
        self.live_calls: LiveCalls = dict

    async def start(self) -> None:  # noqa: B027 (nothing to start in process)
        """Connect, join the fleet and start background upkeep (never raises for a down store)."""

    async def stop(self) -> None:  # noqa: B027
        """Leave the fleet: give back this instance's leases and keys; stop background tasks."""

    @property
    def up(self) -> bool:
        """Whether the shared store answered at the last contact."""
        return True

    @property
    def fleet_active(self) -> int | None:
        """Calls holding a fleet slot (pending or live), as of the last heartbeat; None if
        unknown or not shared."""
        return None

    @abstractmethod
    async def claim(self, key: str, expires_at: float) -> bool:
        """Claim ``key`` once until ``expires_at`` (UNIX seconds): True for the first claim,
        False for every later one (a replay or a duplicate delivery)."""

    @abstractmethod
    async def unclaim(self, key: str) -> None:
        """Forget a claim (so a redelivery can try again)."""

    @abstractmethod
    async def remember(self, key: str, value: str, ttl_s: float) -> str | None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds unless something is stored
        already: returns what was there (then nothing changes), or None when it stored."""

    @abstractmethod
    async def overwrite(self, key: str, value: str) -> None:
        """Replace the value of a remembered ``key``, keeping its expiry (no-op if absent)."""

    @abstractmethod
    async def reserve(self, call_id: str, ttl_s: float, max_calls: int | None) -> bool:
        """Take or renew a fleet slot for ``call_id`` for ``ttl_s`` seconds: True if held,
        False when the fleet is at ``max_calls`` (None: no fleet limit). Idempotent per call."""

    @abstractmethod
    async def own(self, call_id: str, path: str) -> bool:
        """Record this instance as the owner of the live call ``call_id``; False (and nothing
        changes) when another instance owns it already."""

    @abstractmethod
    async def release(self, call_id: str) -> None:
        """The call ended here: give back its slot and its owner record."""

    @abstractmethod
    async def owner_of(self, call_id: str) -> str | None:
        """The instance that owns the live call ``call_id``, or None if unknown."""

    @abstractmethod
    async def set_draining(self, draining: bool) -> None:
        """Announce that this instance is draining (it leaves the ready set) or ready."""

    async def instances(self) -> list[str]:
        """The instances in the fleet (ready or draining), this one included; sorted."""
        return [self.instance]

    @abstractmethod
    async def recall(self, key: str) -> str | None:
        """The value :meth:`remember` stored under ``key``, if it has not expired."""

    @abstractmethod
    async def request(
        self, instance: str, message: dict[str, Any], timeout_s: float
    ) -> dict[str, Any] | None:
        """Send a control message to ``instance`` and wait for its reply; None when nobody
        listens there or no reply came within ``timeout_s``."""


class LocalState(FleetState):
    """One instance, in this process: claims in a dict with expiries, no fleet limit, and
    control messages only to ourselves.

    Args:
        instance: this instance's id.
        path: a SQLite file the claims and values are also written to and read back from at
            start (``CALL_LOG_DIR/.state.sqlite3``), so a restart does not forget used stream
            tokens, answered CallSids or accepted SIP deliveries; None: memory only.
    """

    def __init__(self, instance: str, path: Path | None = None) -> None:
        super().__init__(instance)
        self._claims: dict[str, float] = {}  # key -> expiry (UNIX seconds)
        self._values: dict[str, tuple[str, float]] = {}  # key -> (value, expiry)
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open(path)

    def _open(self, path: Path) -> None:
        """Open (or create, owner-only) the file and load what has not expired."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last write, not the file
        db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires REAL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS vals (key TEXT PRIMARY KEY, value TEXT, expires REAL)"
        )
        now = time.time()
        db.execute("DELETE FROM claims WHERE expires < ?", (now,))
        db.execute("DELETE FROM vals WHERE expires < ?", (now,))
        self._claims = dict(db.execute("SELECT key, expires FROM claims").fetchall())
        self._values = {k: (v, e) for k, v, e in db.execute("SELECT key, value, expires FROM vals")}
        self._db = db

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        if self._db is not None:
            self._db.execute(sql, args)

    async def claim(self, key: str, expires_at: float) -> bool:
        now = time.time()
        if len(self._claims) > 256:
            self._claims = {k: e for k, e in self._claims.items() if e >= now}
            self._write("DELETE FROM claims WHERE expires < ?", (now,))
        if self._claims.get(key, 0.0) >= now:
            return False
        self._claims[key] = expires_at
        self._write("INSERT OR REPLACE INTO claims VALUES (?, ?)", (key, expires_at))
        return True

    async def unclaim(self, key: str) -> None:
        self._claims.pop(key, None)
        self._write("DELETE FROM claims WHERE key = ?", (key,))

    async def remember(self, key: str, value: str, ttl_s: float) -> str | None:
        now = time.time()
        if len(self._values) > 256:
            self._values = {k: v for k, v in self._values.items() if v[1] >= now}
            self._write("DELETE FROM vals WHERE expires < ?", (now,))
        stored = self._values.get(key)
        if stored is not None and stored[1] >= now:
            return stored[0]
        self._values[key] = (value, now + ttl_s)
        self._write("INSERT OR REPLACE INTO vals VALUES (?, ?, ?)", (key, value, now + ttl_s))
        return None

    async def recall(self, key: str) -> str | None:
        stored = self._values.get(key)
        return stored[0] if stored is not None and stored[1] >= time.time() else None

    async def overwrite(self, key: str, value: str) -> None:
        stored = self._values.get(key)
        if stored is not None:
            self._values[key] = (value, stored[1])
            self._write("UPDATE vals SET value = ? WHERE key = ?", (value, key))

    async def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def reserve(self, call_id: str, ttl_s: float, max_calls: int | None) -> bool:
        return True  # one instance: its own cap is the only one

    async def own(self, call_id: str, path: str) -> bool:
        return True  # the registry's own set of calls says whether it is live here

    async def release(self, call_id: str) -> None:
        return None

    async def owner_of(self, call_id: str) -> str | None:
        return self.instance if call_id in self.live_calls() else None

    async def set_draining(self, draining: bool) -> None:
        return None

    async def request(
        self, instance: str, message: dict[str, Any], timeout_s: float
    ) -> dict[str, Any] | None:
        if instance != self.instance or self.on_control is None:
            return None
        return await self.on_control(message)
