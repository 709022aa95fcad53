"""Retention (``RETENTION_DAYS``): call logs and recordings older than that are deleted.

A sweep looks at ``CALL_LOG_DIR`` once at start and then hourly, deleting each
``<call id>.jsonl`` and ``<call id>.wav`` last written more than ``days`` ago (in a thread: a
directory of 100 000 files takes a moment), and tells the caller which call ids went, so an
index can drop them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["SWEEP_EVERY_S", "sweep", "sweep_forever"]

logger = logging.getLogger("telephony.retention")
SWEEP_EVERY_S = 3600.0
SUFFIXES = (".jsonl", ".wav")


def sweep(directory: Path, days: float, now: float | None = None) -> list[str]:
    """Delete logs and recordings last modified more than ``days`` ago; returns the call ids
    whose files went (each once)."""
    cutoff = (time.time() if now is None else now) - days * 86400
    gone: set[str] = set()
    for path in directory.iterdir():
        if path.suffix not in SUFFIXES or path.name.startswith("."):
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                gone.add(path.stem)
    return sorted(gone)


async def sweep_forever(
    directory: Path, days: float, forget: Callable[[list[str]], None] | None = None
) -> None:
    """Sweep now and every ``SWEEP_EVERY_S``; ``forget`` hears the call ids deleted."""
    while True:
        try:
            gone = await asyncio.to_thread(sweep, directory, days)
            if gone:
                logger.info(
                    "retention: deleted the logs of %d calls older than %g days", len(gone), days
                )
                if forget is not None:
                    await asyncio.to_thread(forget, gone)
        except OSError as exc:
            logger.warning("retention sweep failed: %s", exc)
        await asyncio.sleep(SWEEP_EVERY_S)
