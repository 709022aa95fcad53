"""Twilio Media Streams protocol: typed messages in, JSON frames out.

Knows nothing of OpenAI or of audio processing. Inbound (Twilio -> us): ``connected``, ``start``,
``media``, ``mark``, ``dtmf``, ``stop``. Outbound (us -> Twilio, bidirectional streams only):
``media``, ``mark``, ``clear``. Field names follow Twilio's Media Streams message reference;
Twilio sends counters (``sequenceNumber``, ``chunk``, ``timestamp``) as strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

__all__ = [
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "MediaMessages",
    "ProtocolError",
    "Start",
    "Stop",
    "TwilioMessage",
    "clear_message",
    "mark_message",
    "media_message",
    "parse_message",
]

MAX_MESSAGE_CHARS = 64 * 1024
"""Largest inbound text frame we parse; Twilio's 20 ms media messages are about 300 characters."""


class ProtocolError(ValueError):
    """An inbound frame that is not a valid Twilio Media Streams message. ``str()`` says why."""


class _Msg(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")


class Connected(_Msg):
    """Twilio ``connected``: the first message on the socket."""

    event: Literal["connected"]
    protocol: str = "Call"
    version: str = ""


class MediaFormat(_Msg):
    encoding: str = "audio/x-mulaw"
    sample_rate: int = Field(8000, alias="sampleRate")
    channels: int = 1


class StartInfo(_Msg):
    stream_sid: str = Field(alias="streamSid", min_length=1)
    call_sid: str = Field(alias="callSid", min_length=1)
    account_sid: str = Field("", alias="accountSid")
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    media_format: MediaFormat = Field(default_factory=MediaFormat, alias="mediaFormat")


class Start(_Msg):
    """Twilio ``start``: stream metadata, including the CallSid and our ``<Parameter>`` values."""

    event: Literal["start"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid", min_length=1)
    start: StartInfo

    @property
    def call_sid(self) -> str:
        return self.start.call_sid

    @property
    def custom_parameters(self) -> dict[str, str]:
        return self.start.custom_parameters


class _MediaInfoModel(_Msg):
    track: str = "inbound"
    chunk: int = 0
    timestamp: int = 0
    payload: bytes

    @field_validator("payload", mode="before")
    @classmethod
    def _b64(cls, value: Any) -> bytes:
        if not isinstance(value, str):
            raise ValueError("payload must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"payload is not valid base64: {exc}") from None


class _MediaModel(_Msg):
    """``media`` as the full validation sees it (used when the lean decode refuses a frame:
    the error says why, and anything it accepts is accepted as before)."""

    event: Literal["media"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid", min_length=1)
    media: _MediaInfoModel


class MediaInfo(msgspec.Struct, frozen=True):
    """``media.payload`` decoded (μ-law 8 kHz bytes), ``track``, ``chunk``, ``timestamp``."""

    payload: bytes
    track: str = "inbound"
    chunk: int = 0
    timestamp: int = 0


class Media(msgspec.Struct, frozen=True, tag_field="event", tag="media", rename="camel"):
    """Twilio ``media``: ``media.payload`` is decoded μ-law 8 kHz bytes (160 = 20 ms).

    A msgspec struct, decoded straight from the frame's JSON (50 a second per call: about
    0.7 µs against 3.9 µs for JSON plus pydantic); the other messages are pydantic models."""

    event: ClassVar[str] = "media"
    stream_sid: Annotated[str, msgspec.Meta(min_length=1)]
    media: MediaInfo
    sequence_number: int = 0

    @property
    def payload(self) -> bytes:
        return self.media.payload


class _RawMediaInfo(msgspec.Struct, frozen=True):
    payload: bytes
    track: str = "inbound"
    chunk: str = "0"
    timestamp: str = "0"


class _RawMedia(msgspec.Struct, frozen=True, tag_field="event", tag="media", rename="camel"):
    stream_sid: Annotated[str, msgspec.Meta(min_length=1)]
    media: _RawMediaInfo
    sequence_number: str = "0"


_RAW_MEDIA = msgspec.json.Decoder(_RawMedia)


def _lean_media(frame: str) -> Media | None:
    """A ``media`` frame as Twilio sends it (counters as strings of ASCII digits), decoded
    without pydantic; None for anything else (full validation decides)."""
    try:
        raw = _RAW_MEDIA.decode(frame)
    except msgspec.DecodeError:
        return None
    info = raw.media
    counters = (raw.sequence_number, info.chunk, info.timestamp)
    if not all(c.isascii() and c.isdigit() for c in counters):
        return None
    return Media(
        stream_sid=raw.stream_sid,
        media=MediaInfo(info.payload, info.track, int(info.chunk), int(info.timestamp)),
        sequence_number=int(raw.sequence_number),
    )


class MarkInfo(_Msg):
    name: str


class Mark(_Msg):
    """Twilio ``mark``: our mark, echoed once the audio before it played or was cleared."""

    event: Literal["mark"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid", min_length=1)
    mark: MarkInfo

    @property
    def name(self) -> str:
        return self.mark.name


class DtmfInfo(_Msg):
    track: str = "inbound_track"
    digit: str = Field(pattern=r"^[0-9*#A-D]$")  # Twilio's DTMF alphabet (Rust regex: `$` is
    # the end of the text, with no allowance for a trailing newline)


class Dtmf(_Msg):
    """Twilio ``dtmf``: one key the caller pressed (bidirectional streams only)."""

    event: Literal["dtmf"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid", min_length=1)
    dtmf: DtmfInfo

    @property
    def digit(self) -> str:
        return self.dtmf.digit


class StopInfo(_Msg):
    account_sid: str = Field("", alias="accountSid")
    call_sid: str = Field("", alias="callSid")


class Stop(_Msg):
    """Twilio ``stop``: the stream ended (the caller hung up, or the call was updated)."""

    event: Literal["stop"]
    sequence_number: int = Field(0, alias="sequenceNumber")
    stream_sid: str = Field(alias="streamSid", min_length=1)
    stop: StopInfo = Field(default_factory=StopInfo)


TwilioMessage = Connected | Start | Media | Mark | Dtmf | Stop
_Validated = Annotated[
    Connected | Start | _MediaModel | Mark | Dtmf | Stop, Field(discriminator="event")
]
_ADAPTER: TypeAdapter[Connected | Start | _MediaModel | Mark | Dtmf | Stop] = TypeAdapter(
    _Validated
)
_EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop")


def parse_message(frame: str | bytes) -> Connected | Start | Media | Mark | Dtmf | Stop:
    """Parse one WebSocket frame from Twilio into its typed message.

    Args:
        frame: the frame as received. Twilio sends only text frames; ``bytes`` means a binary
            frame, which Twilio never sends and which is refused.

    Raises:
        ProtocolError: binary frame, oversized frame, invalid JSON, unknown ``event``, missing or
            malformed fields (including bad base64). The message says which.
    """
    if isinstance(frame, bytes | bytearray):
        raise ProtocolError("binary frame (Twilio sends JSON text frames only)")
    if len(frame) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"frame of {len(frame)} characters exceeds {MAX_MESSAGE_CHARS}")
    return _lean_media(frame) or _validated(frame)


def _validated(frame: str) -> TwilioMessage:
    """:func:`parse_message` by full validation (JSON, then the pydantic models)."""
    try:
        raw = json.loads(frame)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("not a JSON object")
    event = raw.get("event")
    if event not in _EVENTS:
        raise ProtocolError(f"unknown event {str(event)[:40]!r}")
    try:
        message = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or event}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError(f"bad {event!r} message: {problems}") from None
    if isinstance(message, _MediaModel):
        info = message.media
        return Media(
            stream_sid=message.stream_sid,
            media=MediaInfo(info.payload, info.track, info.chunk, info.timestamp),
            sequence_number=message.sequence_number,
        )
    return message


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """Outbound ``media``: μ-law 8 kHz bytes (no header) for Twilio to play. Twilio plays a
    payload of any length; whole 20 ms frames (multiples of 160 bytes) keep it smooth."""
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


class MediaMessages:
    """Outbound ``media`` messages of one stream, the JSON around the payload built once:
    ``media(ulaw)`` is ``media_message(stream_sid, ulaw)``, in the same characters."""

    def __init__(self, stream_sid: str) -> None:
        head = json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": ""}})
        self._head, _, self._tail = head.rpartition('""')
        self._head += '"'
        self._tail = '"' + self._tail

    def media(self, ulaw: bytes) -> str:
        """μ-law 8 kHz bytes (no header) as one ``media`` message."""
        return self._head + binascii.b2a_base64(ulaw, newline=False).decode("ascii") + self._tail


def mark_message(stream_sid: str, name: str) -> str:
    """Outbound ``mark``: Twilio echoes it once the audio sent before it has played."""
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Outbound ``clear``: Twilio drops all audio buffered for playback and echoes pending marks."""
    return json.dumps({"event": "clear", "streamSid": stream_sid})
