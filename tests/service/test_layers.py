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


def test_no_module_over_450_lines_and_no_function_over_90() -> None:
    """The package stays readable: a module that grows past 450 lines, or a function past 90,
    is split by job (the test stand-ins in ``testing/`` are exempt)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "telephony").rglob("*.py")):
        if "testing" in path.relative_to(ROOT / "telephony").parts:
            continue
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 450:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > 90:
                    too_long.append(f"{path.name}:{node.name}: {length} lines")
    assert not too_long, too_long
