"""``python -m telephony.replay``: see :mod:`telephony.replay.cli`."""

import sys

from .cli import main

sys.exit(main())
