"""Client-side WebSocket text frames as websockets writes them, built without its per-frame
objects, for the 50 caller-audio messages a second each call sends its model.

websockets' ``Protocol.send_text`` builds a ``Frame``, serializes it through a ``BytesIO`` and
draws each frame's masking key with ``secrets.token_bytes(4)`` (a ``getrandom`` system call per
frame): about 4.6 % of the server's event loop under load (py-spy, ``bench/load.py --n 50
--profile``). :func:`masked_text_frame` writes the same bytes (websockets' compiled
``apply_mask`` does the XOR) and :class:`MaskKeys` draws the keys from the same source, the
operating system's CSPRNG, 4 KiB at a time.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from websockets.frames import apply_mask

__all__ = ["MaskKeys", "masked_text_frame"]

_HEAD_7 = struct.Struct("!BB").pack
_HEAD_16 = struct.Struct("!BBH").pack
_HEAD_64 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81  # FIN set, opcode 1 (text)
_MASKED = 0x80


def masked_text_frame(data: bytes, mask: bytes) -> bytes:
    """One unfragmented, masked text frame carrying ``data`` (the message's UTF-8 bytes) under
    the 4-byte masking key ``mask``, per RFC 6455 section 5.2: FIN and opcode 1, the MASK bit and
    the payload length in 7, 7+16 or 7+64 bits, the key, the payload XORed with the key. Byte
    for byte what websockets' ``Frame(OP_TEXT, data).serialize(mask=True)`` writes with no
    extension negotiated, given the same key (pinned by a test). Raises ValueError when
    ``mask`` is not 4 bytes."""
    if len(mask) != 4:
        raise ValueError(f"a masking key is 4 bytes, not {len(mask)}")
    n = len(data)
    if n < 126:
        head = _HEAD_7(_FIN_TEXT, _MASKED | n)
    elif n < 65536:
        head = _HEAD_16(_FIN_TEXT, _MASKED | 126, n)
    else:
        head = _HEAD_64(_FIN_TEXT, _MASKED | 127, n)
    return head + mask + apply_mask(data, mask)


class MaskKeys:
    """Masking keys for a client's frames, each 4 bytes of the operating system's CSPRNG
    (``os.urandom``, as websockets' ``secrets.token_bytes``) used once, read ``block`` bytes at
    a time: one system call per ``block / 4`` frames instead of one per frame. RFC 6455
    section 5.3 asks for keys a party on the path cannot predict; bytes of the same source
    taken in turn are as unpredictable as bytes read one call at a time. Keep one per
    connection (made after any fork, so no two processes share a block)."""

    def __init__(self, block: int = 4096, source: Callable[[int], bytes] = os.urandom) -> None:
        if block <= 0 or block % 4:
            raise ValueError(f"block must be a positive multiple of 4 bytes, not {block}")
        self._block = block
        self._source = source
        self._keys = b""
        self._at = 0

    def take(self) -> bytes:
        """The next unused 4-byte key."""
        at = self._at
        if at >= len(self._keys):
            self._keys = self._source(self._block)
            at = 0
        self._at = at + 4
        return self._keys[at : at + 4]
