"""Load benchmark: N concurrent real-time calls against one server process pinned to one core.

    python bench/load.py [--n 10 25 50 100 150] [--seconds 15] [--workers 2]
                         [--compare OTHER_CHECKOUT] [--anchor ../shared/anchors/oatw]
                         [--workload default|talk] [--profile DIR] [--live] [--repeat K]

``server.py`` runs under ``taskset -c 0``; this process (the simulated Twilio side and the
loopback OpenAI Realtime model, which answers every turn at once) is pinned to core 1. With
``--workers W`` (more than 1), ``WORKERS=W`` server processes share a local Redis and nothing
is pinned: the workers, Redis and this generator share every core, so the row says what the
machine carries, not what one server core does; the CPU split per worker process is printed.

With ``--compare``, each N runs twice back to back: first ``server.py`` of the other checkout
(``before``), then this one (``after``), since absolute figures drift between runs. With
``--profile DIR``, py-spy records the server through each run (``DIR/N-label.txt``, folded
stacks) and the frames most often on the stack are printed.

With ``--repeat K``, each N runs its servers K times, in turn, the order reversed every other
time (before, after, after, before, ...: a slow stretch of a shared machine falls on both), and
prints per label the median CPU per call-minute and the median of the per-round ratios (after
/ before, and / the anchor). On a noisy VM one round of a change that does nothing has read
-4 to +18 %; the median of rounds is the figure to quote. Each row also prints the barge-in
guard's own time per call-minute (from ``call.end``'s ``guard_us_per_frame``, its echo path
included), and with ``--compare`` the guard's after less before over before's CPU: what a
change inside the guard costs, free of the rest of the run's noise.

With ``--anchor DIR`` (the openai-agents SDK's own Twilio example, ``../shared/anchors/oatw``),
each N also runs that example under the same workload, pinned the same way, right after ours,
and prints the ratio of CPU per call-minute (ours / the example's). It runs in its own virtual
environment (made once from its ``requirements.txt`` under the temp folder), asks the loopback
model for ``g711_ulaw`` both ways, and validates no signature; it keeps no call log, so its
latency and truncation columns are empty and a call failed when the caller heard fewer replies.

With ``--live``, each N also runs this checkout on GPT-Live (``REALTIME_BACKEND=live``, the
``live`` row; ``--compare``'s too, ``live before``) against the fake GPT-Live server
(``telephony.testing.live_server``, its frame validation off so that the generator's core
keeps up), which answers each caller turn with the same reply and yields to a caller who talks
over it (200 ms of energy): μ-law straight through, no transcoding, no barge-in guard. Its
latency and truncation columns are empty.

Workloads (``--workload``), the caller's utterances 1 s of real speech ("Go forward"):
``default``, four utterances with pauses, each answered with 1.5 s of audio, the caller talking
over one of the answers (a barge-in), in 15 s calls (about 40 % agent audio); ``talk``, seven
utterances answered with 2.2 s each, one of them talked over, in 25 s calls: the agent talks
about half of each call. (Until 2026-12-05 the caller was a 500 Hz tone, which the barge-in
guard no longer takes for speech over the agent.)
Per N it prints:

- bridge-added turn latency, p50/p99: the model's first audio delta to our first frame on the
  wire (``model_to_wire_ms``), and the caller's end of speech to that frame (``turn_latency_ms``,
  which includes the model's 500 ms VAD silence);
- playout stalls: the share of reply audio that reached the caller after it was due;
- truncation error at barge-in: the truncate position the model was told minus the audio the
  caller actually heard of that reply, p50 and worst;
- server CPU seconds per call-minute; resident memory per call at peak and after the calls end;
- failed calls (no reply to every utterance, or no clean ``call.end``);
- the generator's own p99 pacing lateness and CPU use (if it lags, the row measures the
  generator, not the server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    Profiler,
    free_port,
    other_checkout,
    start_redis,
    start_server,
    tree_cpu_seconds,
    tree_rss_kib,
)

from telephony.observability.call_log import read_call_log
from telephony.simulate import SimulationResult, answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone
from telephony.testing.live_server import FakeLiveServer

TOKEN = "load-bench-token"
# per workload: the agent's reply (ms), the pause after each caller utterance (seconds; a
# short one talks over that reply), the call's default length (seconds)
WORKLOADS: dict[str, tuple[int, list[float], float]] = {
    "default": (1500, [3.0, 3.0, 1.0], 15.0),
    "talk": (2200, [3.0, 3.0, 3.0, 1.0, 3.0, 3.0], 25.0),
}
# the caller's words: "Go forward", 1 s of real speech (espeak-ng: tests/fixtures/README.md).
# Not a tone: the barge-in guard's speech detector (WebRTC VAD) does not take a pure tone for
# speech, so a tone talking over a reply is noise to it, not an interruption.
GO_FORWARD = (ROOT / "tests" / "fixtures" / "goforward.ulaw").read_bytes()[4000:12000]


def caller_script(seconds: float, pauses: list[float], speech: bytes = GO_FORWARD) -> bytes:
    """Utterances of 1 s (``speech``), one more than ``pauses``, separated by them (a short
    pause: the next utterance talks over the reply), then silence to ``seconds``."""

    def pause(s: float) -> bytes:
        return b"\xff" * int(8000 * s)

    audio = pause(0.5) + speech + b"".join(pause(p) + speech for p in pauses)
    return audio + pause(max(0.5, seconds - len(audio) / 8000 - 0.5))


def anchor_python(anchor: Path) -> str:
    """The Python of ``anchor``'s own virtual environment (made once, from its
    ``requirements.txt``, under the temp folder)."""
    venv = Path(tempfile.gettempdir()) / f"telephony-anchor-{anchor.resolve().name}-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        requirements = anchor / "requirements.txt"
        pip = [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)]
        subprocess.run(pip, check=True)
    return str(python)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def one_run(
    n: int,
    seconds: float,
    workers: int = 1,
    server_root: Path = ROOT,
    profile: Path | None = None,
    workload: str = "default",
    anchor: Path | None = None,
    live: bool = False,
) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix=f"load-{n}-"))
    reply_ms, pauses, _ = WORKLOADS[workload]
    audio = caller_script(seconds, pauses)
    turns = len(pauses) + 1
    port = free_port()
    env = {
        "PORT": str(port),
        "OPENAI_API_KEY": "sk-load-not-a-real-key",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CALL_LOG_DIR": str(logs),
        "MAX_CONCURRENT_CALLS": str(n + 10),
        "GREETING": "",
        "LOG_LEVEL": "warning",
        "PYTHONPATH": str(server_root),
    }
    redis = None
    if workers > 1:
        redis_port = free_port()
        redis = start_redis(redis_port, logs)
        env.update(
            WORKERS=str(workers),
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            STREAM_TOKEN_SECRET="load-bench-stream-token-secret-0123",
        )
    model: Any = (
        FakeLiveServer(reply=lambda _: tone(600, reply_ms), validate=False)
        if live
        else LoopbackRealtimeServer(reply=lambda _: tone(600, reply_ms))
    )
    async with model:
        if live:
            env.update(REALTIME_BACKEND="live", OPENAI_BASE_URL=model.base_url)
        else:
            env["OPENAI_REALTIME_URL"] = model.url
        core = 0 if workers == 1 else None
        if anchor is None:
            server = start_server(env, logs, core=core, script=server_root / "server.py")
        else:  # the example reads PORT, HOST, OPENAI_API_KEY and OPENAI_REALTIME_URL
            env["HOST"] = "127.0.0.1"
            python = anchor_python(anchor)
            script = anchor.resolve() / "server.py"
            server = start_server(env, logs, core=core, script=script, python=python, health="/")
        profiler: Profiler | None = None
        try:
            await asyncio.sleep(0.5 if workers == 1 else 3.0)  # every worker has started
            rss_before, cpu_before = tree_rss_kib(server.pid), tree_cpu_seconds(server.pid)
            gen_before = resource.getrusage(resource.RUSAGE_SELF)
            peak = [rss_before]

            async def sample_rss() -> None:
                while True:
                    peak.append(tree_rss_kib(server.pid))
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample_rss())
            if profile is not None:
                profiler = Profiler(server.pid, profile)
            t0 = time.monotonic()

            async def call(i: int) -> SimulationResult | Exception:
                await asyncio.sleep(i * 0.02)  # calls arrive over the first moments, not at once
                base = f"http://127.0.0.1:{port}"
                try:
                    answer = None
                    if anchor is not None:  # its TwiML says wss://; Twilio's side is ws here
                        answer = (await answer_call(base, auth_token=None)).via(base)
                    return await simulate_call(
                        base,
                        audio,
                        tail_s=0.5,
                        max_tail_s=5,
                        auth_token=TOKEN,
                        min_turns=turns,
                        answer=answer,
                    )
                except Exception as exc:
                    return exc

            results = await asyncio.gather(*(call(i) for i in range(n)))
            wall = time.monotonic() - t0
            if profiler is not None:
                profiler.stop()
            sampler.cancel()
            gen_after = resource.getrusage(resource.RUSAGE_SELF)
            cpu_after = tree_cpu_seconds(server.pid)
            cpu_by_pid = {p: c - cpu_before.get(p, 0.0) for p, c in cpu_after.items()}
            cpu_used = sum(cpu_by_pid.values())
            await asyncio.sleep(2.0)
            rss_after = tree_rss_kib(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            if redis is not None:
                redis.terminate()
        truncations = {
            t["item_id"]: t for c in model.connections for t in getattr(c, "truncations", [])
        }

    ok = [r for r in results if isinstance(r, SimulationResult)]
    failed = n - len(ok)
    model_to_wire: list[float] = []
    turn_latency: list[float] = []
    calls_by_instance: dict[str, int] = {}
    guard_s = 0.0  # the barge-in guard's own time (its echo path included), from call.end
    for result in ok:
        path = logs / f"{result.call_sid}.jsonl"
        records = read_call_log(path) if path.exists() else []
        end = records[-1] if records else {}
        clean_end = end.get("event") == "call.end" and end.get("reason") == "caller_hangup"
        if (not clean_end and anchor is None) or len(result.turns) < turns:
            failed += 1
        instance = str(end.get("instance"))
        guard_s += (end.get("guard_us_per_frame") or 0) * (end.get("guard_frames") or 0) / 1e6
        calls_by_instance[instance] = calls_by_instance.get(instance, 0) + 1
        for r in records:
            if r["event"] == "latency":
                if "model_to_wire_ms" in r:
                    model_to_wire.append(r["model_to_wire_ms"])
                if "turn_latency_ms" in r:
                    turn_latency.append(r["turn_latency_ms"])
    # truncation error: what the model was told was played, minus what the caller heard
    errors: list[float] = []
    for result in ok if anchor is None else []:
        records = read_call_log(logs / f"{result.call_sid}.jsonl")
        barge_ins = [r for r in records if r["event"] == "clear.sent" and r["playing"]]
        cleared = [t for t in result.turns if t.cleared]
        if not barge_ins or not cleared or barge_ins[0]["item_id"] not in truncations:
            continue
        turn = cleared[0]
        # the clear that ended the reply: the first after the interruption (a pause and its
        # resume may come before it; the caller heard what played between them too), the
        # simulator's clears in the order the call log sent them
        sent = [r for r in records if r["event"] == "clear.sent"]
        cut = next((r for r in records if r["event"] == "barge_in.interruption"), None)
        ends = [i for i, r in enumerate(sent) if cut is not None and r["mono"] >= cut["mono"]]
        if not ends or len(sent) != len(result.clears):
            continue
        clear_at = result.clears[ends[0]]
        heard_ms = sum(20 for at, _ in result.played if turn.first_frame_at <= at < clear_at)
        errors.append(truncations[barge_ins[0]["item_id"]]["audio_end_ms"] - heard_ms)
    agent_audio = sum(r.agent_audio_s for r in ok) or 1.0
    lateness = [x for r in ok for x in r.send_lateness_s]
    gen_cpu = (gen_after.ru_utime + gen_after.ru_stime) - (
        gen_before.ru_utime + gen_before.ru_stime
    )
    call_minutes = sum(len(audio) / 8000 for _ in range(n)) / 60
    return {
        "n": n,
        "failed": failed,
        "m2w_p50": pct(model_to_wire, 50),
        "m2w_p99": pct(model_to_wire, 99),
        "turn_p50": pct(turn_latency, 50),
        "turn_p99": pct(turn_latency, 99),
        "stalls_pct": 100 * sum(r.stall_s for r in ok) / agent_audio,
        "trunc_p50": pct(errors, 50),
        "trunc_worst": max(errors, key=abs) if errors else float("nan"),
        "cpu_per_min": cpu_used / call_minutes,
        "guard_per_min": guard_s / call_minutes,
        "rss_per_call_mib": (max(peak) - rss_before) / 1024 / n,
        "rss_after_mib": (rss_after - rss_before) / 1024,
        "gen_late_p99_ms": pct(lateness, 99) * 1000,
        "gen_cpu_pct": 100 * gen_cpu / wall,
        "cpu_split": sorted((round(c / wall * 100) for c in cpu_by_pid.values()), reverse=True),
        "calls_by_instance": sorted(calls_by_instance.values(), reverse=True),
        "profile": profiler.top() if profiler is not None else [],
    }


def print_row(label: str, row: dict[str, Any], workers: int) -> None:
    print(
        f"{label:>6} {row['n']:>4} {row['failed']:>4} {row['m2w_p50']:>6.2f}ms "
        f"{row['m2w_p99']:>6.2f}ms {row['turn_p50']:>7.0f}ms {row['turn_p99']:>7.0f}ms "
        f"{row['stalls_pct']:>6.2f}% {row['trunc_p50']:>7.0f}ms {row['trunc_worst']:>7.0f}ms "
        f"{row['cpu_per_min']:>9.3f} {row['rss_per_call_mib']:>8.2f} "
        f"{row['rss_after_mib']:>9.1f} {row['gen_late_p99_ms']:>10.1f}ms "
        f"{row['gen_cpu_pct']:>6.0f}%",
        flush=True,
    )
    if row["guard_per_min"]:
        share = 100 * row["guard_per_min"] / row["cpu_per_min"]
        print(f"       barge-in guard {row['guard_per_min']:.4f} s/min ({share:.1f} % of it)")
    if workers > 1:
        print(
            f"       CPU % of one core per server process: {row['cpu_split']}; "
            f"calls per worker: {row['calls_by_instance']}",
            flush=True,
        )
    for share, frame in row["profile"]:
        print(f"       {share:5.1f}% {frame[:110]}", flush=True)


def ratios(cpu: dict[str, float]) -> dict[str, float]:
    """CPU per call-minute of one round as ratios: ``after / before`` (with ``--compare``) and
    each label's over the anchor's (with ``--anchor``)."""
    out: dict[str, float] = {}
    if "before" in cpu:
        out["after / before"] = cpu["after"] / cpu["before"]
        # the guard's own time, after's less before's, as a share of before's CPU: what a
        # change to the guard alone (the echo path on or off) costs, with less of the noise
        # of two whole runs
        out["guard after - before / before"] = (cpu["after guard"] - cpu["before guard"]) / cpu[
            "before"
        ]
    if "anchor" in cpu:
        out.update(
            {
                f"{k} / anchor": v / cpu["anchor"]
                for k, v in cpu.items()
                if k != "anchor" and not k.endswith(" guard")
            }
        )
    return out


def print_ratios(n: int, cpu: dict[str, float], what: str) -> None:
    found = ratios(cpu)
    if found:
        text = ", ".join(f"{k} {v:.3f}" for k, v in found.items())
        print(f"       CPU per call-minute, N = {n}, {what}: {text}", flush=True)


def print_medians(n: int, rounds: list[dict[str, float]]) -> None:
    """Per label the median CPU per call-minute over the rounds, and the median of each
    round's ratios (not the ratio of medians: a round's pair ran side by side in time)."""
    labels = [k for k in rounds[0] if not k.endswith(" guard")]
    cpu = ", ".join(f"{k} {float(np.median([r[k] for r in rounds])):.3f}" for k in labels)
    each = [ratios(r) for r in rounds]
    text = ", ".join(
        f"{k} {float(np.median([e[k] for e in each])):.3f} "
        f"(rounds: {' '.join(f'{e[k]:.3f}' for e in each)})"
        for k in each[0]
    )
    print(f"       median of {len(rounds)} rounds, N = {n}: cpu s/min {cpu}", flush=True)
    if text:
        print(f"       median ratio, N = {n}: {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[10, 25, 50, 100, 150])
    parser.add_argument("--seconds", type=float, help="length of each call (per workload)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="default")
    parser.add_argument(
        "--anchor",
        type=Path,
        help="a peer bridge to run after ours, e.g. "
        "../shared/anchors/oatw (the SDK's Twilio example)",
    )
    parser.add_argument("--workers", type=int, default=1, help="WORKERS (over 1: with Redis)")
    parser.add_argument("--compare", type=Path, help="another checkout, run before this one")
    parser.add_argument("--profile", type=Path, help="py-spy each run into this folder")
    parser.add_argument("--live", action="store_true", help="also run on GPT-Live (the fake)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per N (medians printed)")
    args = parser.parse_args()
    servers: list[tuple[str, Path, Path | None]] = [("after", ROOT, None)]
    if args.compare is not None:
        servers.insert(0, ("before", other_checkout(args.compare), None))
    if args.live:
        if args.compare is not None:
            servers.append(("live before", servers[0][1], None))
        servers.append(("live", ROOT, None))
    if args.anchor is not None:
        anchor_python(args.anchor)  # its environment, before any timing
        servers.append(("anchor", ROOT, args.anchor))
    seconds = args.seconds or WORKLOADS[args.workload][2]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    pin = args.workers == 1 and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    if pin:
        os.sched_setaffinity(0, {1})  # the generator and the model stay off the server's core
    print(
        f"{'':>6} {'N':>4} {'fail':>4} {'m2w p50':>8} {'m2w p99':>8} {'turn p50':>9} "
        f"{'turn p99':>9} {'stalls':>7} {'trunc p50':>9} {'trunc max':>9} {'cpu s/min':>9} "
        f"{'MiB/call':>8} {'MiB after':>9} {'gen late p99':>12} {'gen cpu':>7}"
    )
    for n in args.n:
        rounds: list[dict[str, float]] = []
        for k in range(max(args.repeat, 1)):
            cpu: dict[str, float] = {}
            for label, root, anchor in servers if k % 2 == 0 else servers[::-1]:
                profile = args.profile / f"{n}-{label}-{k}.txt" if args.profile else None
                live = label.startswith("live")
                row = asyncio.run(
                    one_run(n, seconds, args.workers, root, profile, args.workload, anchor, live)
                )
                print_row(label, row, args.workers)
                cpu[label] = row["cpu_per_min"]
                cpu[f"{label} guard"] = row["guard_per_min"]
            print_ratios(n, cpu, "this round")
            rounds.append(cpu)
        if len(rounds) > 1:
            print_medians(n, rounds)
    print("m2w: model's first audio delta -> our first frame; turn: caller's end of speech -> that")
    print(
        "frame (includes the model's 500 ms VAD silence); trunc: truncate position - audio heard."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
