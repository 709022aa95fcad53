"""The operator console (``/console``, on with ``CONSOLE_TOKEN``): every call at a glance, its
timeline, transcript and recording. :mod:`.index` keeps the call list quick on big histories;
the pages are Jinja2 templates (:mod:`telephony.routes.console` serves them)."""

from .index import CallIndex, CallRow, mask_number, open_index, show_number, with_index

__all__ = ["CallIndex", "CallRow", "mask_number", "open_index", "show_number", "with_index"]
