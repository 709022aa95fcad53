"""The timeline command: ``python -m telephony.timeline calls/CA….jsonl [-o out.html|out.svg]``
(also installed as ``telephony-timeline``).

Draws one call log on one time axis: caller speech and transcripts, agent audio sent and played,
clears, tools, DTMF and reconnects, with the greeting, turn and barge-in latencies as arrows.
The renderer is :mod:`telephony.observability.timeline`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .observability.call_log import read_call_log
from .observability.timeline import render_page, render_svg

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Render a call log to SVG (or HTML when ``-o`` ends in ``.html``); prints the path."""
    parser = argparse.ArgumentParser(
        prog="python -m telephony.timeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", type=Path, help="a call log, $CALL_LOG_DIR/<call id>.jsonl")
    parser.add_argument("-o", "--out", type=Path, help="output .svg or .html (default: next to it)")
    args = parser.parse_args(argv)
    try:
        records = read_call_log(args.log)
        svg = render_svg(records)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    out = args.out or args.log.with_suffix(".svg")
    if out.suffix == ".html":
        out.write_text(render_page(records, args.log.stem), "utf-8")
    else:
        out.write_text(svg, "utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
