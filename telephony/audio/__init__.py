"""Audio core: G.711 μ-law and streaming 8 kHz ⇄ 24 kHz resampling.

Knows nothing of Twilio or OpenAI: bytes in, bytes out. Formats: μ-law is one byte a sample at
8 kHz; pcm16 is 16-bit signed little-endian mono.
"""

from .g711 import ULAW_SILENCE, quiet_codes, ulaw_decode, ulaw_encode
from .resample import GROUP_DELAY_MS, Downsampler3, Upsampler3
from .transcoder import FRAME_BYTES, CallerToModel, Framer, ModelToCaller

__all__ = [
    "FRAME_BYTES",
    "GROUP_DELAY_MS",
    "ULAW_SILENCE",
    "CallerToModel",
    "Downsampler3",
    "Framer",
    "ModelToCaller",
    "Upsampler3",
    "quiet_codes",
    "ulaw_decode",
    "ulaw_encode",
]
