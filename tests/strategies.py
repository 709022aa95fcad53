"""Hypothesis strategies for Twilio Media Streams frames, valid and not (fuzzing)."""

from __future__ import annotations

import base64
import json

from hypothesis import strategies as st

EVENTS = ["connected", "start", "media", "mark", "dtmf", "stop", "clear", "bogus", ""]


STREAM_SID = "MZ" + "a" * 32


CALL_SID = "CA" + "b" * 32


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)


json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


payloads = st.one_of(
    st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=50),
    json_values,
)


messages = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS)},
    optional={
        "streamSid": st.one_of(st.just(STREAM_SID), st.text(max_size=40), json_values),
        "sequenceNumber": st.one_of(st.integers(-5, 10**12).map(str), json_values),
        "media": st.fixed_dictionaries(
            {"payload": payloads},
            optional={"chunk": json_values, "timestamp": json_values, "track": json_values},
        ),
        "mark": st.one_of(st.fixed_dictionaries({"name": json_values}), json_values),
        "dtmf": st.one_of(st.fixed_dictionaries({"digit": st.text(max_size=3)}), json_values),
        "start": st.one_of(
            st.fixed_dictionaries(
                {"streamSid": st.just(STREAM_SID), "callSid": st.text(max_size=40)},
                optional={"customParameters": json_values, "mediaFormat": json_values},
            ),
            json_values,
        ),
        "stop": json_values,
    },
)


frames = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
)


counters = st.one_of(
    st.integers(-5, 10**12).map(str),
    st.integers(-5, 10**12),
    st.sampled_from(["", " 7", "7 ", "+7", "07", "7.0", "1e3", "0x10", "١٢"]),
    st.floats(allow_nan=True),
    json_values,
)


media_messages = st.fixed_dictionaries(
    {"event": st.sampled_from(["media", "media", "Media", "mark"])},
    optional={
        "streamSid": st.one_of(st.just(STREAM_SID), st.sampled_from(["", " "]), json_values),
        "sequenceNumber": counters,
        "media": st.one_of(
            st.fixed_dictionaries(
                {
                    "payload": st.one_of(
                        st.binary(max_size=320).map(lambda b: base64.b64encode(b).decode()),
                        st.binary(min_size=1, max_size=40).map(
                            lambda b: base64.b64encode(b).decode().rstrip("=")
                        ),
                        st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode() + "\n"),
                        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                        payloads,
                    )
                },
                optional={"chunk": counters, "timestamp": counters, "track": json_values},
            ),
            json_values,
        ),
    },
)
"""Media messages, mostly well formed, with the counters, payloads and fields Twilio might
vary: for checking that the lean media decode accepts nothing the full validation refuses."""
