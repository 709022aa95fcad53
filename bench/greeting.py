"""Greeting latency: time from the Media Streams ``start`` to the first agent audio frame.

    python bench/greeting.py [--calls 20]

Runs the app under uvicorn in this process against the loopback OpenAI Realtime model (which
answers at once), so the figure is our own path: model connect, ``response.create``, first audio
delta, transcode and the first 160-byte frame out. Read from each call log's ``audio.first_out``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import uvicorn

from telephony.app import create_app
from telephony.config import Settings
from telephony.observability.call_log import read_call_log
from telephony.simulate import simulate_call
from telephony.testing import LoopbackRealtimeServer, tone


async def run(calls: int) -> None:
    logs = Path(tempfile.mkdtemp(prefix="greeting-"))
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 300)) as model:
        settings = Settings(
            openai_api_key="sk-bench-not-a-real-key",
            openai_realtime_url=model.url,
            allow_unsigned=True,  # loopback development mode: no signatures to compute
            call_log_dir=logs,
            greeting="Welcome to the line.",
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        for _ in range(500):  # up to 5 s for uvicorn to listen
            if server.started:
                break
            await asyncio.sleep(0.01)
        base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        values = []
        for _ in range(calls):
            result = await simulate_call(
                base_url, b"\xff" * 8000, tail_s=0.2, max_tail_s=1, min_turns=1
            )
            await asyncio.sleep(0.05)
            records = read_call_log(logs / f"{result.call_sid}.jsonl")
            values += [r["ms_after_start"] for r in records if r["event"] == "audio.first_out"]
        server.should_exit = True
        await task
    values.sort()
    print(
        f"greeting latency (start -> first agent frame), {len(values)} calls: "
        f"median {statistics.median(values):.1f} ms, p90 {values[int(0.9 * len(values)) - 1]:.1f} "
        f"ms, max {values[-1]:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20)
    asyncio.run(run(parser.parse_args().calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
