"""The words of a short caller item over the agent: are they a turn?

The barge-in guard (:mod:`telephony.bridge.barge_in`) asks this of an item too short to
interrupt by its length. A recogniser's transcript of it is evidence, not truth: Whisper and
its kin make words of hums and coughs ("mm-hm" heard as "And I can.", a "yeah" over room echo
as "Here, but.", bench/echo.py runs of 2026-12-05). English only, as the backchannel list.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = [
    "ECHO_WORD_SHARE",
    "FUNCTION_WORDS",
    "STOP_WORDS",
    "TURN_WORDS",
    "asks_for_the_turn",
    "asks_to_stop",
    "kind_of",
    "words_of",
]

ECHO_WORD_SHARE = 0.6  # a transcript mostly of the agent's own recent words is its echo

# Closed-class English words (articles, conjunctions, pronouns, auxiliaries, prepositions,
# fillers) that carry no request on their own. Not here, because alone they are one:
# negations ("no", "not", "don't"), question words ("what?", "why?"), "wait", "stop", "hold".
FUNCTION_WORDS = frozenset(
    """
    a an the and but or nor so if then than because as that
    i you he she it we they me him her us them my your his its our their this these those
    i'm i'll i've i'd you're it's that's there's we're they're
    am is are was were be been being do does did have has had
    can could will would shall should may might must
    to of in on at by for with from into about over
    here there just um uh er ah
    """.split()
)

# Words that take the turn on their own: a caller who says one of them wants the agent to
# stop or to answer. A recogniser reading the agent's echo made some of them: "I found your
# booking" with a "yeah" in it over a 6 dB hybrid came back as "I'm not your walking." and
# "I can't. You're a workhead." (bench/echo.py, 2026-12-06).
TURN_WORDS = frozenset(
    """
    wait stop hold hang no not don't can't won't sorry excuse pardon question
    what why how who when where which
    """.split()
)
# Of those, the words that ask the agent to stop: no reading of the echo has made one in a
# bench run, and a caller's request barely heard over a hybrid's echo came back with one
# ("Wait, stop, I have a question." as "I can make a way to hold on.").
STOP_WORDS = frozenset("wait stop hold hang sorry excuse pardon question".split())

_WORDS = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters, digits and apostrophes), in order."""
    return _WORDS.findall(text.lower())


def asks_for_the_turn(transcript: str | None) -> bool:
    """The transcript holds a word that takes the turn on its own (:data:`TURN_WORDS`:
    "wait", "stop", "no", a question word, ...); False for None or ''."""
    return any(w in TURN_WORDS for w in words_of(transcript or ""))


def asks_to_stop(transcript: str | None) -> bool:
    """The transcript holds a word that asks the agent to stop (:data:`STOP_WORDS`: "wait",
    "stop", "hold on", "question", ...); False for None or ''."""
    return any(w in STOP_WORDS for w in words_of(transcript or ""))


def kind_of(
    transcript: str | None,
    backchannels: Collection[str],
    agent_words: str,
    short: bool = False,
) -> str | None:
    """Why a caller item's transcript is not a turn, or None: it is one.

    Args:
        transcript: the item's transcript (``conversation.item.input_audio_transcription.
            completed``), '' when the recogniser heard nothing, None when none came.
        backchannels: lower-case words and phrases that are listening (``BACKCHANNEL_WORDS``).
        agent_words: the agent's words of its last reply or two (their echo is not a turn).
        short: the item was short speech under the agent's audio (it went on past it): then
            words that are all :data:`FUNCTION_WORDS` are no turn either.

    Returns:
        ``short_speech`` (no transcript came), ``noise`` (no words, or a short item of
        function words only: what a recogniser makes of a hum or a cough), ``backchannel``
        (backchannels only, or a short item of backchannels and function words),
        ``echo`` (at least :data:`ECHO_WORD_SHARE` of its words are the agent's own), or
        None.
    """
    if transcript is None:
        return "short_speech"
    words = words_of(transcript)
    if not words:
        return "noise"
    if " ".join(words) in backchannels or all(w in backchannels for w in words):
        return "backchannel"
    said = set(words_of(agent_words))
    if said and sum(w in said for w in words) >= ECHO_WORD_SHARE * len(words):
        return "echo"
    if short and all(w in FUNCTION_WORDS for w in words):
        return "noise"
    if short and all(w in FUNCTION_WORDS or w in backchannels for w in words):
        # a backchannel with function words around it and nothing else: "Yeah, but...", what
        # a recogniser made of a "yeah" and the room echo after it (a bench run of
        # 2026-12-06 cut the reply with it in 5 of 11 calls); a caller who goes on past "but"
        # speaks long enough to interrupt by their speech
        return "backchannel"
    return None
