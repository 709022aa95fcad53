"""Turn-taking: the model's turn detection, our barge-in guard, and the offline model's own
turn ends."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .calls import BargeInRules

__all__ = ["LocalModelSettings", "TurnSettings"]


class TurnSettings(BaseModel):
    """Turn-taking: the model's turn detection and our barge-in guard (docs/barge-in.md)."""

    turn_detection: Literal["server_vad", "semantic_vad"] = Field(
        default="server_vad",
        description="the Realtime session's turn detection: `server_vad` or `semantic_vad` "
        '(see "Barge-in and turn-taking")',
    )
    vad_threshold: float = Field(
        default=0.5, ge=0, le=1, description="`server_vad`: speech probability that starts speech"
    )
    vad_prefix_padding_ms: int = Field(
        default=300,
        ge=0,
        le=2000,
        description="`server_vad`: audio kept before the detected start of speech",
    )
    vad_silence_duration_ms: int = Field(
        default=500,
        ge=100,
        le=5000,
        description="`server_vad`: silence that ends the caller's turn",
    )
    vad_eagerness: Literal["low", "medium", "high", "auto"] = Field(
        default="auto", description="`semantic_vad`: `low`, `medium`, `high` or `auto`"
    )
    input_noise_reduction: Literal["near_field", "far_field", "off"] = Field(
        default="near_field",
        description="the model's input noise reduction: `near_field` (a handset), `far_field` "
        "(speakerphones, car kits) or `off`",
    )
    barge_in_guard: bool = Field(
        default=True,
        description="we decide interruptions: echo, backchannels and noise do not cut the "
        "agent off; `false`: every speech start interrupts, as the model decides",
    )
    barge_in_pause_ms: int = Field(
        default=200,
        ge=20,
        le=2000,
        description="caller speech (by our detector) after which the agent's audio pauses",
    )
    barge_in_min_speech_ms: int = Field(
        default=600,
        ge=100,
        le=5000,
        description="caller speech that interrupts on its own; shorter speech interrupts only "
        "with words that are not backchannels",
    )
    backchannel_words: str = Field(
        default=(
            "mm-hm,mhm,mm,hmm,uh-huh,uh huh,yeah,yes,yep,yup,okay,ok,right,sure,alright,"
            "all right,i see,got it,ah,oh,cool,great,nice,good"
        ),
        description="comma-separated words and phrases that are listening, not taking the turn",
        json_schema_extra={"shown_default": "`mm-hm,mhm,…,good`"},
    )
    echo_cancellation: bool = Field(
        default=False,
        description="cancel the agent's own voice in caller audio (WebRTC AEC3) while it "
        "plays; for speakerphone and car-kit traffic; about 0.1 ms CPU per 20 ms frame while "
        "the agent speaks",
    )

    def barge_in_rules(self) -> BargeInRules | None:
        """``BARGE_IN_*``, ``BACKCHANNEL_WORDS``, ``ECHO_CANCELLATION``; None when
        ``BARGE_IN_GUARD`` is off (every speech start interrupts, as the model decides)."""
        if not self.barge_in_guard:
            return None
        words = (w.strip().lower() for w in self.backchannel_words.split(","))
        return BargeInRules(
            pause_ms=self.barge_in_pause_ms,
            min_speech_ms=self.barge_in_min_speech_ms,
            backchannels=frozenset(w for w in words if w),
            echo_cancellation=self.echo_cancellation,
        )


class LocalModelSettings(BaseModel):
    """The embedded offline model (no OpenAI key; see "The offline model")."""

    local_turn_end_ms: int = Field(
        default=300,
        ge=100,
        le=3000,
        description="offline model: quiet that ends a turn whose words sound finished "
        '("…for two.")',
    )
    local_turn_silence_ms: int = Field(
        default=900,
        ge=200,
        le=5000,
        description="offline model: quiet that ends any turn (a hesitation, \"I'd like to… "
        'um…", waits this long)',
    )
    local_stt_window_s: float = Field(
        default=10.0,
        ge=1,
        le=30,
        description="offline model: Whisper's shortest encoder window, seconds (30 is "
        "Whisper's own; shorter is faster, below 10 s it loses words)",
    )
