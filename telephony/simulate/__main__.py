"""``python -m telephony.simulate``: see :mod:`telephony.simulate`."""

import sys

from .cli import main

sys.exit(main())
