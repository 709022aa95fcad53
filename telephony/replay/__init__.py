"""Recorded calls as regression tests: a call (its log and recording) becomes a scenario file
(:mod:`.extract`), a scenario runs through ``server.py`` against a model (:mod:`.run`) and is
judged turn by turn (:mod:`.check`); ``telephony-replay`` is the command, and the pytest
plugin (:mod:`.pytest_plugin`, ``pytest --scenarios DIR``) makes each file a test."""

from .check import Report, check
from .extract import scenario_from_call
from .run import Replay, ReplayError, run_scenario
from .scenario import Scenario

__all__ = [
    "Replay",
    "ReplayError",
    "Report",
    "Scenario",
    "check",
    "run_scenario",
    "scenario_from_call",
]
