"""The pytest plugin: ``pytest --scenarios DIR`` makes each ``*.json`` scenario under DIR one
test, run through ``server.py`` (``--scenario-model``: loopback, live-loopback, offline or
configured; default configured) and failed with the turn, what was expected and what the agent did.

Installed with the package (entry point ``pytest11``); it adds only the two options until
``--scenarios`` is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ScenarioFailed", "ScenarioFile", "ScenarioItem"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("telephony-replay", "recorded calls as tests")
    group.addoption(
        "--scenarios",
        action="append",
        default=[],
        metavar="DIR",
        help="run each scenario file (*.json) under DIR as a test",
    )
    group.addoption(
        "--scenario-model",
        default="configured",
        choices=("configured", "offline", "loopback", "live-loopback"),  # run.MODELS (lazy)
        help="the model scenarios run against (default: configured)",
    )


def pytest_configure(config: pytest.Config) -> None:
    folders = [str(Path(d)) for d in config.getoption("scenarios")]
    if not folders:
        return
    for folder in folders:
        if not Path(folder).is_dir():
            raise pytest.UsageError(f"--scenarios {folder}: no such folder")
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    config.args[:] = ([*config.args] if given else []) + folders


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    folders = [Path(d).resolve() for d in parent.config.getoption("scenarios")]
    if file_path.suffix == ".json" and any(f in file_path.resolve().parents for f in folders):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFailed(Exception):
    """A scenario's expectations failed; carries the report's text."""


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        from .check import check
        from .run import run_scenario
        from .scenario import Scenario

        scenario = Scenario.load(self.path)
        model = self.config.getoption("scenario_model")
        report = check(asyncio.run(run_scenario(scenario, model)))
        if not report.passed:
            raise ScenarioFailed(report.text())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"
