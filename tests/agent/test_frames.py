"""The caller audio's WebSocket frames, built by us: websockets' own bytes, read back by its own
parser, each under a fresh key from the operating system's CSPRNG."""

from __future__ import annotations

import pytest
from helpers import parse_client_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import OP_TEXT, Frame

from telephony.agent.frames import MaskKeys, masked_text_frame


def websockets_frame(data: bytes) -> tuple[bytes, bytes]:
    """websockets' serialization of a masked text frame, and the key it drew."""
    wire = Frame(OP_TEXT, data).serialize(mask=True)
    head = 2 if len(data) < 126 else 4 if len(data) < 65536 else 10
    return wire, wire[head : head + 4]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.integers(120, 132).map(lambda n: b"a" * n),  # around the 7-bit length's end
        st.sampled_from([b"b" * 65535, b"c" * 65536, b"d" * 70000]),  # 16-bit and 64-bit
    )
)
def test_the_frame_is_websockets_own_bytes(data: bytes) -> None:
    wire, key = websockets_frame(data)
    assert masked_text_frame(data, key) == wire
    (frame,) = parse_client_frames(masked_text_frame(data, key))
    assert (frame.opcode, frame.fin, frame.data) == (OP_TEXT, True, data)


def test_keys_come_from_the_source_in_turn_each_used_once() -> None:
    reads: list[bytes] = []

    def source(n: int) -> bytes:
        block = bytes((len(reads) * n + i) % 251 for i in range(n))
        reads.append(block)
        return block

    keys = MaskKeys(block=16, source=source)
    taken = [keys.take() for _ in range(10)]
    assert len(reads) == 3  # 4 keys a 16-byte block
    assert b"".join(taken) == b"".join(reads)[:40]
    assert all(len(key) == 4 for key in taken)


def test_frames_under_the_default_keys_read_back_and_differ() -> None:
    keys = MaskKeys()
    messages = [f'{{"n":{n}}}'.encode() for n in range(2000)]  # 2000 keys: 8000 bytes, two blocks
    wire = b"".join(masked_text_frame(m, keys.take()) for m in messages)
    assert [f.data for f in parse_client_frames(wire)] == messages
    # the keys are the wire's bytes 2-5 of each frame: 8000 bytes of the CSPRNG, none repeated
    # as a block of 4 bytes more than chance allows (P(any repeat) is about 5e-4 per run,
    # so the bound is on 3 or more, not on any)
    starts, at = [], 0
    for m in messages:
        starts.append(wire[at + 2 : at + 6])
        at += 6 + len(m)
    assert len(starts) - len(set(starts)) < 3


def test_bad_keys_and_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        masked_text_frame(b"x", b"abc")
    for block in (0, 6, -4):
        with pytest.raises(ValueError, match="multiple of 4"):
            MaskKeys(block=block)
