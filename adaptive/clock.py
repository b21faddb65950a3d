"""The session clock and musical time: every conversion between frames, seconds,
beats and bars lives here.

The session clock is the count of audio frames rendered at a fixed sample rate
(``../shared/DESIGN.md``, "The time model"). Musical time is derived from it
through a :class:`TempoGrid`: a tempo (bpm), a meter (beats per bar) and the
frame at which beat 0 of bar 0 falls (the grid origin, usually the frame at
which a cue started).

Beat ``k`` of a grid starts at frame ``origin_frame + round(k * frames_per_beat)``
with ``frames_per_beat = 60 * sample_rate_hz / bpm``. Rounding is half-to-even
(Python's ``round``), the same everywhere, so a grid computed twice gives the
same frames.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field
from functools import cached_property

DEFAULT_SAMPLE_RATE_HZ = 48_000
"""The session sample rate unless configured otherwise (DESIGN.md)."""


def seconds_to_frames(seconds: float, sample_rate_hz: int) -> int:
    """Frame index nearest to ``seconds`` (>= 0 expected) at ``sample_rate_hz``."""
    return int(round(seconds * sample_rate_hz))


def frames_elapsed(seconds: float, sample_rate_hz: int) -> int:
    """Whole frames that have passed after ``seconds`` (>= 0) at ``sample_rate_hz``
    (rounded down: a frame counts once all of it has played)."""
    return int(seconds * sample_rate_hz)


def ms_to_frames(milliseconds: float, sample_rate_hz: int) -> int:
    """Frame count nearest to ``milliseconds`` at ``sample_rate_hz``."""
    return int(round(milliseconds * sample_rate_hz / 1000.0))


def frames_to_seconds(frames: int | float, sample_rate_hz: int) -> float:
    """Seconds spanned by ``frames`` at ``sample_rate_hz``."""
    return frames / sample_rate_hz


def frames_per_beat(bpm: float, sample_rate_hz: int) -> float:
    """Frames in one beat (a possibly fractional count) at ``bpm`` beats per minute."""
    return 60.0 * sample_rate_hz / bpm


def beats_to_frames(beats: float, bpm: float, sample_rate_hz: int) -> int:
    """Length in whole frames of ``beats`` beats at ``bpm`` (rounded half-to-even)."""
    return int(round(beats * frames_per_beat(bpm, sample_rate_hz)))


class Quantize(enum.Enum):
    """When a scheduled change (cue change, stinger) takes effect, relative to the
    playing cue's grid. Names follow Wwise's exit sync points (Immediate, Next
    Beat, Next Bar, Next Cue) and FMOD's quantized transitions.

    A request that falls exactly on a boundary takes effect on that boundary.
    """

    IMMEDIATE = "immediate"
    NEXT_BEAT = "next_beat"
    NEXT_BAR = "next_bar"
    NEXT_PHRASE = "next_phrase"  # next multiple of the cue's phrase length in bars
    LOOP_END = "loop_end"  # the end of the cue's loop (Wwise "Exit Cue")


@dataclass(frozen=True)
class TempoGrid:
    """A constant-tempo beat grid anchored at an absolute session frame.

    Attributes:
        bpm: tempo in beats per minute, > 0.
        beats_per_bar: beats in one bar (the meter's numerator), >= 1.
        origin_frame: session frame of beat 0 (bar 0, beat 0).
        sample_rate_hz: session sample rate.
    """

    bpm: float
    beats_per_bar: int
    origin_frame: int
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ

    @cached_property
    def frames_per_beat(self) -> float:
        """Frames in one beat (fractional). Computed once per grid (frozen):
        every voice asks it in every block."""
        return frames_per_beat(self.bpm, self.sample_rate_hz)

    def bpm_at_beat(self, beat: float) -> float:
        """Tempo (bpm) at ``beat``: constant on this grid."""
        return self.bpm

    def beat_to_frame(self, beat: float) -> int:
        """Session frame at which ``beat`` (beats since the origin, may be
        fractional or negative) falls, rounded half-to-even."""
        return self.origin_frame + int(round(beat * self.frames_per_beat))

    def frame_to_beat(self, frame: int | float) -> float:
        """Beats (fractional) from the origin to session ``frame``."""
        return (frame - self.origin_frame) / self.frames_per_beat

    def bar_to_frame(self, bar: float) -> int:
        """Session frame at which ``bar`` (bars since the origin) starts."""
        return self.beat_to_frame(bar * self.beats_per_bar)

    def next_beat_at_or_after(self, frame: int) -> int:
        """Index (an int, may be negative) of the first beat whose frame is >= ``frame``."""
        beat = math.ceil(self.frame_to_beat(frame))
        # Rounding of beat frames can put the ceil one beat off: settle it exactly.
        while self.beat_to_frame(beat - 1) >= frame:
            beat -= 1
        while self.beat_to_frame(beat) < frame:
            beat += 1
        return beat

    def quantize(
        self,
        frame: int,
        rule: Quantize,
        *,
        phrase_bars: int = 4,
        loop_bars: int | None = None,
    ) -> int:
        """First frame >= ``frame`` that is a boundary of kind ``rule`` on this grid.

        Args:
            frame: the request's session frame.
            rule: the boundary kind.
            phrase_bars: bars per phrase for :attr:`Quantize.NEXT_PHRASE` (>= 1).
            loop_bars: bars per loop for :attr:`Quantize.LOOP_END`; required for it.

        Returns:
            The boundary's session frame (``frame`` itself for IMMEDIATE or when
            ``frame`` is already on a boundary).

        Raises:
            ValueError: LOOP_END without ``loop_bars``, or a step below 1.
        """
        if rule is Quantize.IMMEDIATE:
            return frame
        step_beats = {
            Quantize.NEXT_BEAT: 1,
            Quantize.NEXT_BAR: self.beats_per_bar,
            Quantize.NEXT_PHRASE: self.beats_per_bar * phrase_bars,
        }.get(rule)
        if rule is Quantize.LOOP_END:
            if loop_bars is None:
                raise ValueError("Quantize.LOOP_END needs loop_bars")
            step_beats = self.beats_per_bar * loop_bars
        if step_beats is None or step_beats < 1:
            raise ValueError(f"quantize step must be >= 1 beat, got {step_beats}")
        beat = self.next_beat_at_or_after(frame)
        beat = -((-beat) // step_beats) * step_beats  # round up to a multiple of the step
        return self.beat_to_frame(beat)

    def beats_in_span(self, start_frame: int, end_frame: int) -> range:
        """Indices of the beats whose frames lie in ``[start_frame, end_frame)``."""
        first = self.next_beat_at_or_after(start_frame)
        last = self.next_beat_at_or_after(end_frame)
        return range(first, last)


@dataclass(frozen=True)
class SteppedTempoGrid:
    """A beat grid whose tempo changes bar by bar (a generated bridge moving
    from one cue's tempo to the next one's), anchored at an absolute frame.

    Bar ``i`` (``0 <= i < len(bar_bpms)``) is played at ``bar_bpms[i]``; bars
    before 0 use the first tempo, bars after the last use the last one. Bar
    ``i`` starts at frame ``bar_frames[i]``, where ``bar_frames[0] =
    origin_frame`` and each bar adds ``round(beats_per_bar · 60 · rate / bpm)``
    frames, so bar lines are whole frames; beat ``j`` of bar ``i`` falls at
    ``bar_frames[i] + round(j · 60 · rate / bar_bpms[i])`` (half-to-even, as in
    :class:`TempoGrid`). It offers the same methods as :class:`TempoGrid`.

    Attributes:
        bar_bpms: tempo of each bar (bpm, > 0), at least one.
        beats_per_bar: beats in one bar (>= 1).
        origin_frame: session frame of bar 0's downbeat.
        sample_rate_hz: session sample rate.
    """

    bar_bpms: tuple[float, ...]
    beats_per_bar: int
    origin_frame: int
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ

    def __post_init__(self) -> None:
        if not self.bar_bpms or any(not bpm > 0 for bpm in self.bar_bpms):
            raise ValueError(f"bar_bpms {self.bar_bpms!r} must hold at least one tempo, each > 0 bpm")
        frames = [self.origin_frame]
        for bpm in self.bar_bpms:
            frames.append(frames[-1] + beats_to_frames(self.beats_per_bar, bpm, self.sample_rate_hz))
        object.__setattr__(self, "bar_frames", tuple(frames))

    bar_frames: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    """Frame of each bar line, ``len(bar_bpms) + 1`` of them (the last one is
    where the grid's last tempo bar ends). Computed, not given."""

    @property
    def bpm(self) -> float:
        """The first bar's tempo (bpm)."""
        return self.bar_bpms[0]

    @property
    def frames_per_beat(self) -> float:
        """Frames in one beat of the first bar (fractional)."""
        return frames_per_beat(self.bar_bpms[0], self.sample_rate_hz)

    def bpm_at_beat(self, beat: float) -> float:
        """Tempo (bpm) of the bar holding ``beat``."""
        bar = math.floor(beat / self.beats_per_bar)
        return self.bar_bpms[min(max(bar, 0), len(self.bar_bpms) - 1)]

    def beat_to_frame(self, beat: float) -> int:
        """Session frame at which ``beat`` (beats since the origin, may be
        fractional or negative) falls."""
        bar = math.floor(beat / self.beats_per_bar)
        last = len(self.bar_bpms)
        if bar < 0:
            anchor_bar, bpm = 0, self.bar_bpms[0]
        elif bar >= last:
            anchor_bar, bpm = last, self.bar_bpms[-1]
        else:
            anchor_bar, bpm = bar, self.bar_bpms[bar]
        offset_beats = beat - anchor_bar * self.beats_per_bar
        return self.bar_frames[anchor_bar] + int(round(offset_beats * frames_per_beat(bpm, self.sample_rate_hz)))

    def frame_to_beat(self, frame: int | float) -> float:
        """Beats (fractional) from the origin to session ``frame``."""
        bar_frames = self.bar_frames
        last = len(self.bar_bpms)
        if frame < bar_frames[0]:
            anchor_bar, bpm = 0, self.bar_bpms[0]
        elif frame >= bar_frames[last]:
            anchor_bar, bpm = last, self.bar_bpms[-1]
        else:
            anchor_bar = bisect.bisect_right(bar_frames, frame) - 1
            bpm = self.bar_bpms[anchor_bar]
        return anchor_bar * self.beats_per_bar + (frame - bar_frames[anchor_bar]) / frames_per_beat(bpm, self.sample_rate_hz)

    # Built only on beat_to_frame / frame_to_beat / beats_per_bar, so shared.
    bar_to_frame = TempoGrid.bar_to_frame
    next_beat_at_or_after = TempoGrid.next_beat_at_or_after
    quantize = TempoGrid.quantize
    beats_in_span = TempoGrid.beats_in_span
