"""The call-control core both call paths share (see :mod:`.core`)."""

from .core import CallController, Carrier

__all__ = ["CallController", "Carrier"]
