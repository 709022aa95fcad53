"""WebSocket client frame masks from a pooled source of strong randomness.

A WebSocket client masks every frame it sends with 4 fresh random bytes (RFC 6455 §5.3: "the
masking key MUST be ... derived from a strong source of entropy"). websockets draws each with
``secrets.token_bytes(4)``: one ``getrandom`` system call per frame, 50 a second per call to the
model (about 5 % of the server's CPU under load, py-spy, ``bench/load.py --profile``). The pool
reads ``os.urandom`` 4 KiB at a time and hands each byte out once: the same source and the same
unpredictability, one system call per 1024 masks.
"""

from __future__ import annotations

import os
import secrets
import threading
from types import SimpleNamespace

__all__ = ["MaskPool", "install_mask_pool"]

POOL_BYTES = 4096


class MaskPool:
    """Bytes from ``os.urandom``, read ``size`` at a time, each handed out once."""

    def __init__(self, size: int = POOL_BYTES) -> None:
        self._size = size
        self._buffer = b""
        self._at = 0
        self._lock = threading.Lock()  # websockets' sync client may mask in other threads

    def token_bytes(self, nbytes: int | None = None) -> bytes:
        """``nbytes`` (default 32) fresh random bytes, as :func:`secrets.token_bytes`."""
        n = 32 if nbytes is None else nbytes
        with self._lock:
            if self._at + n > len(self._buffer):
                self._buffer = os.urandom(max(self._size, n))
                self._at = 0
            out = self._buffer[self._at : self._at + n]
            self._at += n
        return out


def install_mask_pool(pool: MaskPool | None = None) -> bool:
    """Make websockets' frame masks come from ``pool`` (a new one by default). Returns False,
    changing nothing, unless websockets' ``frames`` module draws them from :mod:`secrets` as
    websockets 13-16 do (another version keeps its own way)."""
    from websockets import frames

    if getattr(frames, "secrets", None) is not secrets:
        return isinstance(getattr(frames, "secrets", None), SimpleNamespace)
    frames.secrets = SimpleNamespace(token_bytes=(pool or MaskPool()).token_bytes)  # type: ignore[attr-defined]
    return True
