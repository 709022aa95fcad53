"""realtime-telephony: a bridge between the phone network and OpenAI Realtime voice agents.

Package layout, one folder per concern; arrows point down only (import-linter holds it, see
``[tool.importlinter]`` in ``pyproject.toml``)::

    app, timeline, simulate        entry points: the ASGI app and the commands a user runs
      routes/                      thin FastAPI routers (twilio, calls, sip, ops)
        services, dial             the shared services on app.state; placing an outbound call
          bridge/ | sip/           one Media Streams call | one SIP sideband call
            agent/ | admission/ | observability/
                                   the SDK side (agent, tools, sessions, offline model) |
                                   capacity, tokens, draining | call log, metrics, timeline
              twilio/ | audio/     the carrier's protocol (no OpenAI) | μ-law and resampling
                config             settings, per-call limits and features

``testing/`` holds loopback stand-ins for tests and benchmarks; nothing in the service imports
it or the simulator.
"""

__version__ = "0.1.0"
