"""The model socket's frame masks: from a pooled os.urandom, each byte used once, and a peer
unmasks every frame (websockets' own sans-I/O protocols on both sides)."""

from __future__ import annotations

import os
import secrets

from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from telephony.agent import openai_model  # noqa: F401  (installs the pool, as the server does)
from telephony.agent.ws_masks import POOL_BYTES, MaskPool, install_mask_pool


def test_the_pool_hands_out_each_random_byte_once_and_reads_in_blocks(monkeypatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    pool = MaskPool()
    masks = [pool.token_bytes(4) for _ in range(3 * POOL_BYTES // 4)]
    assert reads == [POOL_BYTES] * 3  # one system call per 1024 masks
    assert all(len(m) == 4 for m in masks)
    joined = b"".join(masks)
    assert len(set(masks)) > 0.99 * len(masks)  # 32 random bits each: collisions are rare
    assert joined[:POOL_BYTES] != joined[POOL_BYTES : 2 * POOL_BYTES]
    assert len(pool.token_bytes()) == 32  # secrets.token_bytes' default


def test_client_frames_are_masked_from_the_pool_and_a_server_unmasks_them() -> None:
    from websockets import frames

    assert frames.secrets is not secrets  # the server's model client installed the pool
    assert install_mask_pool()  # installing again keeps it

    pool = MaskPool()
    frames.secrets.token_bytes = pool.token_bytes  # type: ignore[attr-defined]
    # both ends past the opening handshake, which is not under test
    client, server = (
        Protocol(Side.CLIENT, state=State.OPEN),
        Protocol(Side.SERVER, state=State.OPEN),
    )
    sent = [f"frame {i}".encode() for i in range(50)]
    masks = []
    for payload in sent:
        client.send_binary(payload)
        (wire,) = client.data_to_send()
        assert wire[1] & 0x80  # the MASK bit
        masks.append(wire[2:6])
        server.receive_data(wire)
    received = [f.data for f in server.events_received() if f.opcode is Opcode.BINARY]
    assert received == sent
    assert b"".join(masks) == pool._buffer[: 4 * len(sent)]  # consecutive, none reused
