"""Call logs hold phone numbers and transcripts: created owner-only, in an owner-only folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from telephony.observability.call_log import CallLogs, safe_call_id


def test_call_logs_are_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "calls"
    with CallLogs(directory, "i-1").open("CA" + "1" * 32) as log:
        record = log.write("webhook", **{"from": "+15550001111"})
    assert record["instance"] == "i-1"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("call_id", ["CA1\n", "../x", "", "é", "a" * 81])
def test_unsafe_call_ids_are_refused_as_file_names(call_id: str) -> None:
    with pytest.raises(ValueError):
        safe_call_id(call_id)
