"""``telephony-replay`` (``python -m telephony.replay``): recorded calls become scenarios, and
scenarios run through ``server.py``.

    telephony-replay record CA0123… [-o scenarios/refund.json]   # from CALL_LOG_DIR
    telephony-replay record --log calls/CA….jsonl --wav calls/CA….wav -o scenarios/x.json
    telephony-replay run scenarios/*.json [--model loopback|live-loopback|offline|configured]

``run`` prints per turn what matched and what differed, and exits 1 when an expectation
failed (2: bad input or the server would not run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from dotenv import dotenv_values

from ..observability.call_log import read_call_log
from .check import check
from .extract import scenario_from_call
from .run import MODELS, ReplayError, run_scenario
from .scenario import Scenario

__all__ = ["main"]


def _log_dir() -> Path:
    dotenv = dotenv_values(".env") if Path(".env").exists() else {}
    return Path(os.environ.get("CALL_LOG_DIR") or dotenv.get("CALL_LOG_DIR") or "./calls")


def _record(args: argparse.Namespace) -> int:
    if args.call_sid:
        log = _log_dir() / f"{args.call_sid}.jsonl"
        wav = _log_dir() / f"{args.call_sid}.wav"
    elif args.log and args.wav:
        log, wav = args.log, args.wav
    else:
        print("give a CallSid, or --log and --wav", file=sys.stderr)
        return 2
    try:
        scenario = scenario_from_call(read_call_log(log), wav, name=args.name or "")
    except (OSError, ValueError) as exc:
        hint = "" if wav.exists() else " (was the call recorded? RECORD_CALLS=true)"
        print(f"cannot read the call: {exc}{hint}", file=sys.stderr)
        return 2
    out = args.out or Path("scenarios") / f"{scenario.name}.json"
    scenario.save(out)
    turns = len(scenario.turns) - 1
    print(f"wrote {out}: {turns} caller turns (it holds the caller's voice: keep it private)")
    return 0


def _run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            scenario = Scenario.load(path)
            settings = dict(s.split("=", 1) for s in args.set)
            replay = asyncio.run(run_scenario(scenario, args.model, env=settings))
        except (OSError, ValueError, ReplayError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        report = check(replay)
        print(report.text())
        failed = failed or not report.passed
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telephony-replay", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="write a scenario from a recorded call")
    record.add_argument("call_sid", nargs="?", help="CallSid of a call in CALL_LOG_DIR")
    record.add_argument("--log", type=Path, help="the call's log (.jsonl)")
    record.add_argument("--wav", type=Path, help="the call's recording (.wav)")
    record.add_argument("--name", help="the scenario's name (default: the CallSid)")
    record.add_argument("-o", "--out", type=Path, help="default: scenarios/<name>.json")
    run = sub.add_parser("run", help="run scenarios through server.py and judge them")
    run.add_argument("files", nargs="+", type=Path)
    run.add_argument("--model", choices=MODELS, default="configured")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server (over .env), e.g. --set AGENT=myagent:agent",
    )
    args = parser.parse_args(argv)
    return _record(args) if args.command == "record" else _run(args)
