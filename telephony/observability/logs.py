"""The server log: format, level, and no secrets in it at any level.

Two layers keep credentials out of the log:

- libraries that print request headers at DEBUG (websockets prints the model socket's
  ``Authorization: Bearer …`` and the media handshake's ``X-Twilio-Signature``; httpx, httpcore,
  openai and twilio print requests) stay at INFO whatever ``LOG_LEVEL`` says;
- :class:`RedactSecrets`, on every handler, replaces each configured secret value, and anything
  shaped like a bearer token, an ``Authorization`` or ``X-Twilio-Signature`` header or an
  OpenAI key, with ``[redacted]``, in the message and in any traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["LOG_FORMAT", "QUIET_LIBRARIES", "RedactSecrets", "install_redaction"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LIBRARIES = (
    "websockets",
    "httpx",
    "httpcore",
    "hpack",
    "openai",
    "twilio.http_client",
    "urllib3",
    "redis",
)
REDACTED = "[redacted]"
_SHAPES = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+(\s+[^\s\"',}]+)?"
    r"|(x-twilio-signature[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"
    r"|(bearer\s+)[^\s\"',}]+"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|(redis(?:s)?://[^:/@\s]*:)[^@\s]+(@)"
)


def _shape(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(3) or match.group(4) or match.group(5) or ""
    suffix = match.group(6) or ""
    return f"{prefix}{REDACTED}{suffix}"


class RedactSecrets(logging.Filter):
    """Rewrites each record so that no secret is left in its text.

    Args:
        secrets: the configured secret values (API keys, tokens, signing secrets).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SHAPES.sub(_shape, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access formatter unpacks the five arguments (client, method, path,
            # version, status): redact each, keep the shape
            record.args = tuple(
                self.redact(_no_console_query(a)) if isinstance(a, str) else a for a in record.args
            )
            record.msg = self.redact(str(record.msg))
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_redaction(secrets: Iterable[str], level: str) -> None:
    """Put a :class:`RedactSecrets` on every handler of the root and uvicorn loggers, and hold
    the header-printing libraries at INFO or above. Call it after the handlers exist (after
    ``logging.basicConfig`` and uvicorn's own logging set-up)."""
    redactor = RedactSecrets(secrets)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(redactor)
    floor = max(logging.INFO, logging.getLevelName(level.upper()))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(floor)


def _no_console_query(text: str) -> str:
    """A console path's query (a searched number, a filter) is the operator's business: the
    access log shows ``?…`` instead."""
    if text.startswith("/console") and "?" in text:
        return text.split("?", 1)[0] + "?…"
    return text
