"""The echo judge offline, frame by frame: the echo matrix of ``bench/echo.py`` (flat paths,
the eight G.168 hybrids, rooms, a clipping handset, double talk, no echo) built from the same
fixtures and paths, fed straight to the WebRTC VAD alone and to the VAD with
:class:`~telephony.audio.echo_judge.EchoJudge`. No server, no clock: seconds, not minutes.

    .venv/bin/python bench/echo_judge_offline.py

Per cell: pauses (10 frames of speech, gaps under 5 frames, outside the caller's own words),
false frames (speech outside the caller's words) and, where the caller speaks, the reaction
(ms from their first active frame to the 10th frame counted as speech). The agent's reply is
``tests/fixtures/agent_long_reply.ulaw``; the caller's speech is the fixture named per cell.
"""

from pathlib import Path

import numpy as np

from telephony.audio import ulaw_decode, ulaw_encode
from telephony.audio.echo_judge import EchoJudge
from telephony.audio.speech import SpeechDetector
from telephony.simulate.echo_paths import HYBRIDS, hybrid_path, room_path

F = str(Path(__file__).resolve().parent.parent / "tests" / "fixtures") + "/"


def load(name: str) -> np.ndarray:
    return np.frombuffer(ulaw_decode(open(F + name, "rb").read()), dtype="<i2").astype(np.float64)


reply = load("agent_long_reply.ulaw")
far = np.concatenate([np.zeros(8000), reply, np.zeros(16000)])


def mk(
    erl: float,
    delay_ms: float,
    path: tuple[float, ...] | list[float] = (),
    noise: float | None = None,
    clip: float | None = None,
    caller: str | None = None,
    at: float = 4.0,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The caller's line (float pcm16 8 kHz) and, per frame, whether the caller speaks."""
    x = far.copy()
    if clip is not None:
        lv = 32768 * 10 ** (clip / 20)
        x = lv * np.tanh(x / lv)
    if path:
        x = np.convolve(x, np.asarray(path))[: len(far)]
    d = int(delay_ms * 8)
    e = np.concatenate([np.zeros(d), x])[: len(far)] * 10 ** (-erl / 20)
    near = e.copy()
    if noise is not None:
        near += np.random.default_rng(seed).normal(0, 32768 * 10 ** (noise / 20), len(near))
    truth = np.zeros(len(near) // 160, bool)
    if caller is not None:
        c = load(caller)
        i = int(at * 8000)
        near[i : i + len(c)] += c[: len(near) - i]
        active = np.abs(c) > 300
        for j in range(len(c) // 160):
            if active[j * 160 : (j + 1) * 160].any():
                truth[(i // 160) + j] = True
    # mu-law both legs: far played through mu-law already (fixture), near encoded
    near = np.frombuffer(
        ulaw_decode(ulaw_encode(np.clip(np.rint(near), -32768, 32767).astype("<i2").tobytes())),
        dtype="<i2",
    ).astype(np.float64)
    return near, truth


def run(near: np.ndarray, truth: np.ndarray, use_judge: bool = True) -> tuple[int, int, int | None]:
    """Pauses, false speech frames and the reaction (ms, or None) on one line."""
    vad = SpeechDetector()
    j = EchoJudge()
    sp = []
    for k in range(len(near) // 160):
        nb = near[k * 160 : (k + 1) * 160].astype("<i2").tobytes()
        fb = far[k * 160 : (k + 1) * 160].astype("<i2").tobytes()
        v = vad(nb)
        c = j.frame(nb, fb)
        sp.append(v and (c or not use_judge))
    sp = np.array(sp)
    # pauses: runs where speech accumulates 10 frames with gaps < 5 frames
    pauses = 0
    acc = 0
    quiet = 0
    inrun = False
    for k, s in enumerate(sp):
        if truth[k]:
            acc = 0
            continue
        if s:
            acc += 1
            quiet = 0
        else:
            quiet += 1
            if quiet >= 5:
                acc = 0
                inrun = False
        if acc >= 10 and not inrun:
            pauses += 1
            inrun = True
    react = None
    if truth.any():
        on = np.argmax(truth)
        cnt = 0
        for k in range(on, min(on + 60, len(sp))):
            if sp[k]:
                cnt += 1
            if cnt >= 10:
                react = (k - on + 1) * 20
                break
    false = int((sp & ~truth).sum())
    return pauses, false, react


cells = []
for erl in (6, 10, 15, 20, 30):
    for d in (20, 150, 450):
        cells.append((f"flat {erl}dB {d}ms", dict(erl=erl, delay_ms=d)))
for m in HYBRIDS:
    cells.append((f"hyb {m}", dict(erl=6, delay_ms=300, path=hybrid_path(m))))
for t in (0.2, 0.4, 0.6):
    cells.append((f"room {t}", dict(erl=12, delay_ms=60, path=room_path(t), noise=-50)))
cells.append(("loud handset", dict(erl=6, delay_ms=60, path=room_path(0.3), noise=-50, clip=-12)))
dt = [
    (
        "int room",
        dict(erl=12, delay_ms=60, path=room_path(0.3), noise=-50, caller="wait_stop.ulaw"),
    ),
    ("int hyb6", dict(erl=6, delay_ms=300, path=hybrid_path("D5"), caller="wait_stop.ulaw")),
    (
        "int loud",
        dict(erl=6, delay_ms=60, path=room_path(0.3), noise=-50, clip=-12, caller="wait_stop.ulaw"),
    ),
    ("int noecho", dict(erl=200, delay_ms=0, caller="wait_stop.ulaw")),
    ("yeah room", dict(erl=12, delay_ms=60, path=room_path(0.3), noise=-50, caller="yeah.ulaw")),
    (
        "int goforward room",
        dict(erl=12, delay_ms=60, path=room_path(0.3), noise=-50, caller="goforward.ulaw"),
    ),
    ("int numbers hyb10", dict(erl=10, delay_ms=150, caller="numbers.ulaw")),
]


def main() -> None:
    for name, kw in cells + dt:
        near, truth = mk(**kw)
        a = run(near, truth, False)
        b = run(near, truth, True)
        print(
            f"{name:22s} vad-only pauses {a[0]:2d} false {a[1]:3d} react {a[2]}"
            f" | judge pauses {b[0]:2d} false {b[1]:3d} react {b[2]}"
        )


if __name__ == "__main__":
    main()
