"""Write ``telephony/simulate/g168_paths.json`` from SpanDSP's copy of the ITU-T G.168 echo path
models (Debian's ``libspandsp-dev``: ``/usr/include/spandsp/g168models.h``).

    apt-get install libspandsp-dev && python bench/g168_paths.py

The eight hybrid echo path models of G.168 Annex D (D.2-D.9) are FIR impulse responses at
8 kHz; SpanDSP's header carries them as integer taps. Only the coefficient tables are read (data
from the standard), no code; the simulator scales each path to the echo return loss it is
asked for (:mod:`telephony.simulate.echo_paths`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADER = Path("/usr/include/spandsp/g168models.h")
OUT = Path(__file__).resolve().parent.parent / "telephony" / "simulate" / "g168_paths.json"


def main() -> int:
    if not HEADER.exists():
        print(f"{HEADER} is missing: apt-get install libspandsp-dev", file=sys.stderr)
        return 1
    text = HEADER.read_text(encoding="utf-8")
    paths = {}
    for name, body in re.findall(r"line_model_(d\d)_coeffs\[\]\s*=\s*\{(.*?)\};", text, re.S):
        paths[name.upper()] = [int(v) for v in re.findall(r"-?\d+", body)]
    source = "ITU-T G.168 Annex D echo path models, taps as in SpanDSP's g168models.h"
    OUT.write_text(json.dumps({"source": source, "rate": 8000, "paths": paths}) + "\n")
    print(f"{OUT}: {', '.join(f'{k} ({len(v)} taps)' for k, v in paths.items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
