"""Call simulator: play Twilio for one call against a running server.

    python -m telephony.simulate caller.ulaw --url http://127.0.0.1:8000 --speed 4 --out reply.wav

It posts the Voice webhook to ``/incoming-call`` (signed with ``X-Twilio-Signature`` when
``TWILIO_AUTH_TOKEN`` is set), follows the TwiML ``<Connect><Stream>``, streams the file as 20 ms
``media`` messages (real time, or ``--speed`` times faster), keeps streaming silence afterwards as
Twilio does, plays the agent's audio out in (virtual) real time, echoes ``mark``s once the audio
before them has played, honours ``clear``, saves what the caller heard as a stereo WAV (left:
caller, right: agent) and prints a per-turn summary.

Input: headerless μ-law 8 kHz (``.ulaw``, ``.mulaw``, ``.raw``) or a 16-bit mono PCM WAV at
8 kHz. Convert anything else with sox: ``sox in.wav -r 8000 -c 1 -e u-law -t raw out.ulaw``.

Modules: :mod:`.call` (webhook and stream), :mod:`.twilio_side` (Twilio's behaviour on the
socket), :mod:`.audio_files` (recordings in and out), :mod:`.cli` (the command).
"""

from .audio_files import load_caller_audio, save_wav, speech_segments
from .call import Answer, answer_call, simulate_call
from .cli import main, summary
from .twilio_side import Echo, Say, SimulationResult, Turn

__all__ = [
    "Answer",
    "Echo",
    "Say",
    "SimulationResult",
    "Turn",
    "answer_call",
    "load_caller_audio",
    "main",
    "save_wav",
    "simulate_call",
    "speech_segments",
    "summary",
]
