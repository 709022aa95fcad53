"""The offline voice model's turns: how soon it answers, what it heard, and whether it waits
through a hesitation.

    python bench/local_turns.py [--compare OTHER_CHECKOUT]

Each clip is one real-time call to ``server.py`` with no OpenAI key (the embedded offline
model answers) and no greeting: a second of silence, the clip, then silence while the agent
reads back what it heard. Per clip it prints:

- reply: the caller's end of speech to the first frame of the reply (the simulator's clock);
- STT: the model's end of turn to its transcript (``speech.stopped`` → ``transcript.caller``);
- WER: word error rate of the transcript against the known text (numbers as words);
- ends: how many times the model ended the caller's turn during the clip (1 is right; the
  hesitation clips pause 0.6-0.8 s mid-sentence, where a turn must not end).

With ``--compare``, every clip runs first on the other checkout's ``server.py`` (``before``),
then on this one (``after``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, start_server
from telephony.simulate import simulate_call

FIXTURES = ROOT / "tests" / "fixtures"
TOKEN = "bench-local-auth-token"
CLIPS = {  # file: what is said (numbers as words)
    "goforward.ulaw": "go forward ten meters",
    "goodbye.ulaw": None,  # ends the call: its reply is the goodbye, timed all the same
    "wait_stop.ulaw": "wait stop i have a question",
    "hesitation_table.ulaw": "i'd like to um book a table for two",
    "hesitation_account.ulaw": "my account number is four two seven one",
}
NUMBERS = {"10": "ten"}
DIGITS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> list[str]:
    found = re.findall(r"[a-z0-9']+", text.lower().replace("metres", "meters"))
    out: list[str] = []
    for word in found:
        if word in NUMBERS:
            out.append(NUMBERS[word])
        elif word.isdigit():
            out.extend(DIGITS[int(d)] for d in word)
        else:
            out.append(word)
    return out


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


async def run_clip(name: str, script: Path | None) -> dict[str, float | str | int | None]:
    audio = b"\xff" * 8000 + (FIXTURES / name).read_bytes() + b"\xff" * 8000 * 4
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            "PORT": str(port),
            "TWILIO_AUTH_TOKEN": TOKEN,
            "REALTIME_BACKEND": "local",
            "GREETING": "",
            "CALL_LOG_DIR": tmp,
            "LOG_LEVEL": "warning",
        }
        if script is not None:
            env["PYTHONPATH"] = str(script.parent)
        server = start_server(env, Path(tmp), script=script)
        try:
            result = await simulate_call(
                f"http://127.0.0.1:{port}", audio, tail_s=1.5, auth_token=TOKEN
            )
        finally:
            server.terminate()
            server.wait(10)
        log = [json.loads(line) for line in (Path(tmp) / f"{result.call_sid}.jsonl").open()]
    clip_end = 1.0 + len((FIXTURES / name).read_bytes()) / 8000
    replies = [t for t in result.turns if t.latency_s is not None]
    stops = [r for r in log if r["event"] == "speech.stopped"]
    heard = [r for r in log if r["event"] == "transcript.caller"]
    stt = [
        (h["ts"] - s["ts"]) * 1000 for s, h in zip(stops, heard, strict=False) if h["ts"] >= s["ts"]
    ]
    transcript = " ".join(h["text"] for h in heard)
    ends = sum(1 for s in stops if s["audio_end_ms"] / 1000 <= clip_end + 0.3)
    reference = CLIPS[name]
    return {
        "reply_ms": round(replies[-1].latency_s * 1000) if replies else None,
        "stt_ms": round(stt[-1]) if stt else None,
        "wer": round(wer(reference, transcript), 2) if reference else None,
        "ends": ends,
        "transcript": transcript,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", type=Path, help="another checkout to run first (before)")
    args = parser.parse_args()
    runs = (
        [("before", args.compare / "server.py"), ("after", None)]
        if args.compare
        else [("now", None)]
    )
    for label, script in runs:
        print(f"== {label}")
        print(f"{'clip':26} {'reply ms':>9} {'STT ms':>7} {'WER':>5} {'ends':>5}  transcript")
        replies: list[float] = []
        for name in CLIPS:
            r = await run_clip(name, script)
            if r["reply_ms"] is not None:
                replies.append(float(r["reply_ms"]))
            print(
                f"{name:26} {r['reply_ms']!s:>9} {r['stt_ms']!s:>7} {r['wer']!s:>5} "
                f"{r['ends']!s:>5}  {r['transcript']}",
                flush=True,
            )
        if replies:
            print(f"reply: median {statistics.median(replies):.0f} ms, worst {max(replies):.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
