"""The call bridge: one Twilio media socket joined to one realtime session.

- :mod:`.call`: the call's lifetime, the caller -> model pump and the watchdog (with
  :mod:`.stream`, what GPT-Live's bridge shares);
- :mod:`.outbound`: model audio to the caller (framing, marks, barge-in ``clear``);
- :mod:`.playback` and :mod:`.tracker`: what the caller has heard, from mark echoes;
- :mod:`.supervisor`: the model session (connect, reconnect, replay, apology);
- :mod:`.prewarm`: the session opened while the phone rings, adopted at ``start``;
- :mod:`.control`: DTMF, hang-up and transfer;
- :mod:`.live_call`, :mod:`.live_audio`, :mod:`.live_echo`: the same socket on GPT-Live
  (``REALTIME_BACKEND=live``): μ-law straight through, the model's own turn-taking.
"""

from .call import Admit, MediaStreamCall, TwilioSocket
from .live_call import LiveMediaCall
from .prewarm import FINAL_CALL_STATUSES, PrewarmPool
from .supervisor import OpenSession

__all__ = [
    "FINAL_CALL_STATUSES",
    "Admit",
    "LiveMediaCall",
    "MediaStreamCall",
    "OpenSession",
    "PrewarmPool",
    "TwilioSocket",
]
