"""Trial mode: with no ``TWILIO_AUTH_TOKEN``, requests are signed with a key only this machine
knows, so local simulated calls (and the console's browser call) get through the real signed
path while nothing from the internet can: Twilio, or anyone behind a tunnel, cannot sign with
a key they never saw. Safe by construction, not by a warning.

The key is ``<CALL_LOG_DIR>/.trial-key``: 64 hex digits, created once (mode 0600) by the first
server that needs it, read by ``python -m telephony.simulate``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["TRIAL_KEY_FILE", "read_trial_key", "trial_key"]

TRIAL_KEY_FILE = ".trial-key"


def trial_key(directory: Path) -> str:
    """The trial signing key in ``directory`` (``CALL_LOG_DIR``), created if missing.

    Raises:
        OSError: the directory or the file cannot be created or read.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / TRIAL_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = read_trial_key(directory)
        if key is None:
            raise OSError(f"{path} is not a trial key: delete it and start again") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return key


def read_trial_key(directory: Path) -> str | None:
    """The trial key a server created in ``directory``, or None (no server ran in trial
    mode there, or the file is not one)."""
    try:
        key = (directory / TRIAL_KEY_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key if len(key) == 64 and all(c in "0123456789abcdef" for c in key) else None
