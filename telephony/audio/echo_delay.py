"""Is the agent's echo on the caller's line at all, and how late? GCC-PHAT on the waveforms.

Before the echo judge has learned a line (:class:`~telephony.audio.echo_judge.EchoJudge`,
about 1.3 s of the agent's audio), a loose prior stands in for the echo path, and a caller
no louder than the agent is taken for echo. Most lines have no echo at all (network and
handset cancellers), and on those a caller who talks over the agent's first words was not
heard (a bench run: "Wait, stop, I have a question." 0.5 s into the greeting, 79 of its 81
loud frames judged echo).

Echo is a linear copy of what played, filtered and late: the generalised cross-correlation
of the caller's audio with what played, each frequency weighted to unit magnitude (the phase
transform, GCC-PHAT; Knapp and Carter, IEEE Trans. ASSP 24(4), 1976), has a sharp peak at the
echo's bulk delay even through a reverberant room, while a caller's own voice, however loud,
has none. Measured with ``bench/echo.py`` inputs (the caller's last 256 ms against what played
1-800 ms before, the first loud frames of each call): a peak of 0.21-0.96 within the first
five loud frames on every echo path of the matrix (flat 6-30 dB and 20-450 ms, the eight
G.168 hybrids, rooms of T60 0.2-0.6 s, a clipping handset), at the path's delay; at most
0.10 over a caller talking over the agent on a line with no echo (both voices espeak-ng's).

Knows nothing of Twilio or OpenAI. Formats: pcm16 little-endian mono, 8 kHz, 20 ms frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EchoDelay"]

FRAME = 160  # samples in 20 ms
WINDOW = 2048  # the caller's last 256 ms
MIN_LAG = 8  # 1 ms: no echo comes back sooner (lag 0 peaked at 0.14 on a line with no echo)
MAX_LAG = 6400  # 800 ms: beyond the echo judge's window (780 ms)
SIZE = WINDOW + MAX_LAG  # samples kept of each: the caller's 256 ms and what played 1-800 ms before
SLACK_FRAMES = 8  # frames written after the window before it is copied back (see EchoDelay)
NFFT = 16384  # >= WINDOW + WINDOW + MAX_LAG - 1: a linear, not circular, correlation
PEAK = 0.14  # a GCC-PHAT peak this high is echo (no echo: <= 0.10 measured; echo: >= 0.14)
MIN_RMS = 150.0  # a frame quieter than this (pcm16 units, about -47 dBFS) is not checked
HEARD_RMS = 50.0  # a frame this loud (about -56 dBFS) weighs in an echo fit (see heard())
ABOVE_FLOOR = 10.0  # nor one within 10 dB of the line's quietest recent frame (line noise)
FLOOR_FRAMES = 50  # the quietest frame of the last second sets that floor
SETTLE_FRAMES = 4  # loud frames in a row before a sound without a peak is not echo (80 ms:
# an echo's first frames fill too little of the window to peak; found by the 5th at most),
RESETTLE_FRAMES = 50  # unless a sound within the last second already was
DOUBLE_TALK = 0.4  # with echo found: a loud frame whose peak falls under this share of the
# echo's own holds a caller talking over it (echo alone: 1 frame in 60 at most; measured)
TOP_DECAY = 0.98  # the echo's own peak: the highest since, shrinking 2 % a frame
ONSET_FRAMES = 2  # at most this many frames before a double talk's first, with the peak
# falling into it, held the caller's voice already: GCC-PHAT over 256 ms lags the caller's
# onset by 2-3 frames ("Wait, stop..." 0.5 s into room echo: peak 0.28, 0.24, 0.18, then
# 0.14 flagged), which cost a short first word ("Wait,") its pause: 180 of 200 ms counted


FLAT = 0.005  # what played is a tone when its spectral flatness (200-3400 Hz) is under this
# (1056 ms windows: speech 0.045 at least, 0.008 in a reply's first 100 ms; tones and the hold
# sound 0.002 at most); a tone's echo has no one lag (two tones of 500 and 600 Hz peaked
# 0.59, speech over a tone 0.31)
BAND = (int(200 / 8000 * NFFT), int(3400 / 8000 * NFFT))  # bins of FLAT's band


class EchoDelay:
    """One call's echo presence test. Feed every judged frame (:meth:`push`, :meth:`idle`);
    ask :meth:`check` of a loud caller frame (:meth:`loud`) whether the agent's echo is on
    the line. Once a peak is found, :attr:`seen` stays True for the call."""

    def __init__(self) -> None:
        # the caller's audio (row 0) and what played (row 1): the last SIZE samples end at
        # column _end; new frames are written after it, and the window is copied back to the
        # start only when the room after it (SLACK_FRAMES frames) is used up
        self._rows = np.zeros((2, SIZE + SLACK_FRAMES * FRAME))
        self._end = SIZE
        self._powers = np.full(FLOOR_FRAMES, np.inf)  # the caller's last frame powers
        self._n = 0
        self.run = 0  # loud frames in a row, the last pushed included
        self._heard = False  # the last frame pushed (see heard())
        self._since_sound = RESETTLE_FRAMES  # frames since one judged not echo
        self.seen = False
        self.delay_ms: float | None = None  # the lag of the strongest peak: the bulk delay
        self._strongest = 0.0
        self.peak = 0.0  # the last peak checked
        self._top = 0.0  # the echo's own peak (see DOUBLE_TALK)
        self.checks = 0
        self.found_after: int | None = None  # the checks it took to find the echo
        self._peaks: list[float] = []  # the last peaks checked, newest last
        self._double_talk = False  # the last frame was flagged double talk
        self.onset_frames = 0  # see ONSET_FRAMES: set on a double talk's first frame only

    def release(self) -> None:
        """The test is over (the echo judge trusts its path): its buffers (150 KiB, a quarter
        of a call's memory at 50 calls) go; :attr:`seen` and :attr:`delay_ms` stay, and
        :meth:`push` and :meth:`idle` do nothing from now on."""
        self._rows = np.zeros((2, 0))
        self._end = 0

    @property
    def near(self) -> np.ndarray:
        """The caller's last 1.1 s (pcm16 values as float64, newest last; empty once
        released)."""
        return self._rows[0, self._end - SIZE : self._end] if self._end else self._rows[0]

    @property
    def far(self) -> np.ndarray:
        """What played over the same samples as :attr:`near`."""
        return self._rows[1, self._end - SIZE : self._end] if self._end else self._rows[1]

    def push(self, near: bytes, far: bytes) -> None:
        """One 20 ms frame of the caller's audio and of what played over it (pcm16 8 kHz,
        320 bytes each; the echo judge has checked their length)."""
        if not self._end:
            return
        end = self._room(FRAME)
        rows = self._rows
        rows[0, end : end + FRAME] = np.frombuffer(near, dtype="<i2")
        rows[1, end : end + FRAME] = np.frombuffer(far, dtype="<i2")
        self._end = end + FRAME
        frame = rows[0, end : end + FRAME]
        power = float(frame @ frame) / FRAME  # exact: integer squares, sums under 2^53
        self._powers[self._n % FLOOR_FRAMES] = power
        self._n += 1
        floor = float(self._powers.min())
        above_floor = power >= 10 ** (ABOVE_FLOOR / 10) * floor
        self.run = self.run + 1 if above_floor and power >= MIN_RMS**2 else 0
        self._heard = above_floor and power >= HEARD_RMS**2
        self._since_sound += 1

    def idle(self, frames: int) -> None:
        """``frames`` 20 ms frames passed unjudged: silence on both sides."""
        if not self._end or frames <= 0:
            return
        shift = min(frames * FRAME, SIZE)
        end = self._room(shift)
        self._rows[:, end : end + shift] = 0.0
        self._end = end + shift

    def _room(self, samples: int) -> int:
        """Where ``samples`` new samples go: after the window, copied back to the start first
        when they would not fit (``samples`` at most :data:`SIZE`)."""
        end = self._end
        if end + samples > self._rows.shape[1]:
            keep = SIZE - samples
            self._rows[:, :keep] = self._rows[:, end - keep : end]
            end = keep
        return end

    def loud(self) -> bool:
        """The last frame pushed is loud enough to be someone talking: ``MIN_RMS`` and
        ``ABOVE_FLOOR`` dB over the quietest frame of the last second."""
        return self.run > 0

    def heard(self) -> bool:
        """The last frame pushed holds enough sound for an echo fit's residual to say how well
        it explains it: ``HEARD_RMS`` and ``ABOVE_FLOOR`` dB over the quietest frame of the
        last second. On a quiet line (digital silence around the echo, as a hybrid's in
        ``bench/echo.py``) the agent's quieter syllables count too; over line noise at -50
        dBFS only what :meth:`loud` takes does."""
        return self._heard

    def not_echo(self) -> bool:
        """The last frame pushed holds a sound that is not the agent's echo alone, as far as
        this test can tell (:meth:`check` runs on every loud frame):

        - no echo found on the line yet, the frame loud for :data:`SETTLE_FRAMES` frames in
          a row (or a sound within the last second was judged so: the caller's next word)
          and no peak in it; or a quiet frame within a second of such a sound (the caller's
          quiet syllables);
        - echo found, the frame loud for :data:`SETTLE_FRAMES` in a row (the echo of a word
          after a pause peaks low while it fills the window) and its peak under
          :data:`DOUBLE_TALK` of the echo's own (a caller talking over the echo: their voice
          fills the window with sound the agent's audio does not explain); on its first frame
          :attr:`onset_frames` says how many frames before it the peak was already falling
          (at most :data:`ONSET_FRAMES`: the caller's onset, before the window held enough).
        """
        self.onset_frames = 0
        if not self.loud():
            self._double_talk = False
            return not self.seen and self._since_sound <= RESETTLE_FRAMES
        seen = self.seen
        found = self.check()
        if not seen:
            if found:
                self._top = self.peak
                return False
            if self.run < SETTLE_FRAMES and self._since_sound > RESETTLE_FRAMES:
                return False
            self._since_sound = 0
            return True
        if self.peak < DOUBLE_TALK * self._top and self.run >= SETTLE_FRAMES:
            if not self._double_talk:  # its first frame: the frames the peak fell over before
                peaks, n = self._peaks, 0
                while n < ONSET_FRAMES and n + 1 < len(peaks) and peaks[-2 - n] > peaks[-1 - n]:
                    n += 1
                self.onset_frames = n
            self._double_talk = True
            return True
        self._double_talk = False
        self._top = max(self._top * TOP_DECAY, self.peak)
        return False

    def check(self) -> bool:
        """True when the caller's last 256 ms hold the echo of what played 1-800 ms before
        (a GCC-PHAT peak of at least :data:`PEAK`, kept in :attr:`peak`); the first such peak
        sets :attr:`seen`, the strongest so far :attr:`delay_ms`. Nothing is found while what
        played is a tone (spectral flatness under :data:`FLAT`: the hold sound, a test tone),
        whose echo has no one lag. About 1 ms of CPU."""
        self.checks += 1
        far = np.fft.rfft(self.far, NFFT)
        band = np.abs(far[BAND[0] : BAND[1]]) ** 2 + 1e-9
        if np.exp(np.mean(np.log(band))) < FLAT * np.mean(band):
            self.peak = 0.0
            return False
        near = np.fft.rfft(self.near[-WINDOW:], NFFT)
        cross = near * np.conj(far)
        gcc = np.fft.irfft(cross / (np.abs(cross) + 1e-9), NFFT)
        # gcc[i] = sum_n near[n] far[n - i]; near[n] sits at far's index n + MAX_LAG, so the
        # echo of far sample m, `lag` samples later, is at i = lag - MAX_LAG (mod NFFT)
        lags = np.arange(MIN_LAG, MAX_LAG + 1)
        values = gcc[(lags - MAX_LAG) % NFFT]
        best = int(values.argmax())
        self.peak = float(values[best])
        self._peaks = [*self._peaks[-ONSET_FRAMES:], self.peak]
        if self.peak >= PEAK and not self.seen:
            self.seen = True
            self.found_after = self.checks
        if self.peak >= PEAK and self.peak > self._strongest:
            self._strongest = self.peak
            self.delay_ms = round(lags[best] / 8, 1)
        return self.peak >= PEAK
