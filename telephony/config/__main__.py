"""``python -m telephony.config``: print docs/configuration.md's settings tables (from the
models)."""

from . import GROUPS
from .table import BEGIN, END, settings_markdown

print(BEGIN)
print()
print(settings_markdown(GROUPS))
print()
print(END)
