"""Run chosen tests many times and count, per test, how often each passed: flakiness, measured.

    python bench/flaky.py tests/bridge/test_barge_in.py tests/agent/test_local_model.py \
        --runs 10 --busy 1

Each run is one ``python -m pytest`` of the given paths (or node ids), as the README's test
command runs them (its ``-n auto`` included), with a JUnit report read back afterwards. With
``--busy K``, K processes spin (``while True: pass``) for the whole run, each pinned to a core
from the last one down when ``taskset`` works: a machine that is busy with something else, the
way a shared CI runner is. ``--checkout DIR`` runs another checkout's suite with its own
``.venv`` (a fresh clone, say); by default this one's.

Prints a line per run (passed, failed, wall time) as it goes, then every test that did not pass
every time, with its pass count and the first line of each distinct failure, and the wall-time
spread of the runs. Then the distribution of every wall-clock figure a test bounds on purpose
(``helpers.within``: the tests note them in ``$TEST_FIGURES``, which this sets): how many
values, the median, the worst, and the bound, so each bound shows the measurement behind it.
``--keep DIR`` keeps the JUnit report of every run with a failure there (whole tracebacks).
Exits 1 if any test failed in any run. There are no reruns: a test that fails once is
reported as flaky, which is the point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` spinning processes, pinned from the last core down where possible."""
    procs = []
    cores = os.cpu_count() or 1
    for i in range(count):
        spin = [sys.executable, "-c", "while True: pass"]
        core = (cores - 1 - i) % cores
        pinned = ["taskset", "-c", str(core), *spin]
        try:
            procs.append(subprocess.Popen(pinned))
        except FileNotFoundError:  # no taskset: unpinned
            procs.append(subprocess.Popen(spin))
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """``{node id: (outcome, first line of the failure)}`` from a JUnit XML report."""
    result: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}"
        outcome, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                if tag == "skipped":
                    outcome = "skipped"
                else:
                    outcome = "failed"
                    why = ((element.get("message") or "").splitlines() or [""])[0][:160]
                break
        result[node] = (outcome, why)
    return result


def run_once(
    checkout: Path, paths: list[str], extra: list[str], report: Path, figures: Path
) -> float:
    python = checkout / ".venv" / "bin" / "python"
    cmd = [str(python), "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]
    env = {**os.environ, "TEST_FIGURES": str(figures)}
    t0 = time.monotonic()
    subprocess.run(
        [*cmd, *extra, *paths],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def print_figures(figures: Path) -> None:
    """Each bounded figure's values over all runs: count, median, worst, bound."""
    if not figures.exists():
        return
    values: dict[str, list[float]] = defaultdict(list)
    bounds: dict[str, float] = {}
    for line in figures.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        values[row["figure"]].append(row["value"])
        bounds[row["figure"]] = row["bound"]
    print("\nbounded wall-clock figures (helpers.within):")
    for name in sorted(values):
        v = values[name]
        print(
            f"  {name}: n={len(v)} median {statistics.median(v):.3f} "
            f"worst {max(v):.3f} bound {bounds[name]}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="test files or node ids (default: the suite)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--busy", type=int, default=0, help="cores kept busy meanwhile")
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, one string")
    parser.add_argument("--keep", type=Path, help="keep the reports of failed runs here")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    passes: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    walls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, busy_cores(args.busy):
        for run in range(1, args.runs + 1):
            report = Path(tmp) / f"run{run}.xml"
            figures = Path(tmp) / "figures.jsonl"
            walls.append(run_once(checkout, args.paths, args.pytest_args.split(), report, figures))
            if not report.exists():
                print(f"run {run}: pytest wrote no report (collection error?)", flush=True)
                passes["<collection>"]["failed"] += 1
                continue
            results = outcomes(report)
            for node, (outcome, why) in results.items():
                passes[node][outcome] += 1
                if why:
                    reasons[node][why] += 1
            failed = sorted(n for n, (o, _) in results.items() if o == "failed")
            if failed and args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(report, args.keep / report.name)
            print(
                f"run {run}: {sum(o == 'passed' for o, _ in results.values())} passed, "
                f"{len(failed)} failed, {walls[-1]:.0f} s" + "".join(f"\n    {n}" for n in failed),
                flush=True,
            )
        flaky = {n: c for n, c in passes.items() if c["failed"]}
        print(f"\n{len(passes)} tests, {args.runs} runs, busy cores: {args.busy}")
        print(
            f"wall time per run: median {statistics.median(walls):.0f} s, "
            f"min {min(walls):.0f} s, max {max(walls):.0f} s"
        )
        print_figures(Path(tmp) / "figures.jsonl")
    if not flaky:
        print("every test passed in every run")
        return 0
    for node, counts in sorted(flaky.items()):
        print(f"{counts['passed']}/{args.runs} passed  {node}")
        for why, n in reasons[node].most_common():
            print(f"      {n}x {why}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
