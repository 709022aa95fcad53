"""Caller audio to the model socket: CPU per frame, websockets' framing against ours, one run.

    python bench/model_frames.py [--frames 2000] [--rounds 12]

One :class:`~telephony.agent.openai_model.LivenessConnection` to a websockets server in this
process (it reads and drops every message) sends 1.3 kB ``input_audio_buffer.append`` messages
(20 ms of pcm16 24 kHz, base64) as a call does, yielding to the event loop after each. Two ways,
in alternating blocks of ``--frames`` (the order reversed every other round, so a slow stretch
of a shared machine falls on both):

- ``websockets``: ``protocol.send_text`` then ``send_data``, what ``send_now`` did until
  2026-12-06 (a ``Frame``, its ``serialize`` through a ``BytesIO`` and a
  ``secrets.token_bytes(4)`` masking key per frame);
- ``ours``: ``send_now`` as it is (:func:`telephony.agent.frames.masked_text_frame` under keys
  from :class:`telephony.agent.frames.MaskKeys`).

Prints µs of process CPU per frame (best and median of the rounds; the server's read of the
frame is included in both, it runs in this process) and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

import websockets
from websockets.asyncio.server import ServerConnection, serve

from telephony.agent.openai_model import LivenessConnection, append_message


def websockets_framing(connection: LivenessConnection, message: str) -> bool:
    connection.protocol.send_text(message.encode())
    connection.send_data()
    return True


async def run(frames: int, rounds: int) -> dict[str, list[float]]:
    async def sink(socket: ServerConnection) -> None:
        async for _ in socket:
            pass

    ways: dict[str, Callable[[LivenessConnection, str], bool]] = {
        "websockets": websockets_framing,
        "ours": LivenessConnection.send_now,
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    async with serve(sink, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        connection = await websockets.connect(
            f"ws://127.0.0.1:{port}",
            compression=None,
            ping_interval=None,
            create_connection=LivenessConnection,
        )
        assert isinstance(connection, LivenessConnection)
        message = append_message(os.urandom(960))
        for round_ in range(rounds):
            order = list(ways) if round_ % 2 else list(reversed(ways))
            for name in order:
                send = ways[name]
                started = time.process_time()
                for _ in range(frames):
                    if not send(connection, message):
                        raise RuntimeError("the connection could not take a frame at once")
                    await asyncio.sleep(0)
                results[name].append((time.process_time() - started) / frames * 1e6)
        await connection.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    results = asyncio.run(run(args.frames, args.rounds))
    for name, values in results.items():
        print(
            f"{name:>10}: best {min(values):6.2f} µs, median {statistics.median(values):6.2f} µs"
            " of CPU per 1.3 kB frame (the server's read included)"
        )
    ratio = statistics.median(results["ours"]) / statistics.median(results["websockets"])
    print(f"ours / websockets (medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
