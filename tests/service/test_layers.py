"""The package layout's rules hold: import-linter's contracts from ``pyproject.toml`` (layers
pointing down only, the audio core and the Twilio protocol kept pure, no test stand-ins in the
service) are all kept."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "0 broken" in report
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    # every contract in pyproject.toml was checked
    assert report.count(" KEPT") == len(contracts["contracts"]), report
