"""Voices: the things that turn a layer's source into audio, span by span.

Every voice renders the frames ``[start_frame, start_frame + n)`` of the
session clock into a caller-owned float32 ``(n, 2)`` buffer, overwriting it.
Voices are started on a :class:`~adaptive.clock.TempoGrid` whose origin is the
frame of their cue's downbeat and loop every ``loop_beats`` beats (or play once).

MIDI events are timed on the grid in whole frames and handed to FluidSynth
just before the frame they are due (see :mod:`adaptive.synth` for FluidSynth's
64-frame event granularity). Stems are mixed from memory with sample accuracy.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Protocol

import numpy as np

from adaptive.clock import TempoGrid
from adaptive.generation import BarFeed
from adaptive.part import Part
from adaptive.synth import Synth

NOTE_OFF = 0
NOTE_ON = 1

MidiSink = Callable[[int, int, int, int], None]
"""Receives every MIDI note event a voice plays: ``(frame, kind, pitch, velocity)``,
``kind`` being :data:`NOTE_ON` or :data:`NOTE_OFF`."""


class Voice(Protocol):
    """Renders a layer's audio."""

    def start(self, grid: TempoGrid) -> None:
        """Play from the grid's origin (beat 0 = the cue's downbeat)."""

    def stop(self, frame: int) -> None:
        """Stop at once (at session ``frame``) and forget what was scheduled."""

    def render(self, start_frame: int, out: np.ndarray) -> None:
        """Overwrite ``out`` (``(n, 2)`` float32) with frames ``start_frame ..``."""

    @property
    def needs_render_when_silent(self) -> bool:
        """Whether the voice must run even at gain 0 (to keep its state)."""


class MidiVoice:
    """A MIDI part played through a FluidSynth instance, looping every
    ``loop_beats`` beats (``None``: once).

    Args:
        part: the notes, in beats from the part's beat 0.
        synth: the synthesizer it owns.
        loop_beats: loop length in beats, or None to play the part once.
        midi_sink: called with every note event played.
    """

    needs_render_when_silent = True

    def __init__(self, part: Part, synth: Synth, loop_beats: float | None, midi_sink: MidiSink | None = None) -> None:
        self.part = part
        self.synth = synth
        self.loop_beats = loop_beats
        self.midi_sink = midi_sink
        self._events: list[tuple[int, int, int, int]] = []  # heap of (frame, kind, pitch, velocity)
        self._grid: TempoGrid | None = None
        self._next_iteration = 0
        self._sounding: dict[int, int] = {}  # pitch -> count of notes on
        self._next_start: tuple[object, float, int] | None = None  # (grid, first beat, its frame) of the next iteration

    # -- scheduling -------------------------------------------------------
    def start(self, grid: TempoGrid) -> None:
        """Play from ``grid.origin_frame``. Notes still held from an earlier
        start are released first (tails ring out naturally)."""
        self.release_all(grid.origin_frame)
        self._events.clear()
        self._grid = grid
        self._next_iteration = 0

    def stop(self, frame: int) -> None:
        """Cut every voice at session ``frame`` and forget scheduled events."""
        self.release_all(frame)
        self._events.clear()
        self._grid = None
        self.synth.silence()

    def release_all(self, frame: int) -> None:
        """Send note-off to every sounding note, at session ``frame`` (logged)."""
        for pitch, held in sorted(self._sounding.items()):
            self.synth.note_off(pitch)
            if self.midi_sink is not None:
                for _ in range(held):
                    self.midi_sink(frame, NOTE_OFF, pitch, 0)
        self._sounding.clear()

    @property
    def finished_frame(self) -> int | None:
        """For a voice playing once: the frame of its last note-off, else None."""
        if self.loop_beats is not None or self._grid is None:
            return None
        return self._grid.beat_to_frame(self.part.end_beats)

    def _iteration_notes(self, iteration: int) -> tuple[Part, float]:
        """The notes of one iteration and its first beat."""
        return self.part, iteration * (self.loop_beats or 0.0)

    def _schedule_until(self, end_frame: int) -> None:
        grid = self._grid
        if grid is None:
            return
        while True:
            if self.loop_beats is None:
                if self._next_iteration > 0:
                    return
                first_beat = 0.0
            else:
                first_beat = self._next_iteration * self._iteration_length_beats()
            # Asked in every block, answered the same until the iteration is
            # scheduled: the frame is kept with the (frozen) grid and beat it is for.
            next_start = self._next_start
            if next_start is None or next_start[0] is not grid or next_start[1] != first_beat:
                next_start = self._next_start = (grid, first_beat, grid.beat_to_frame(first_beat))
            if next_start[2] >= end_frame:
                return
            part, first_beat = self._iteration_notes(self._next_iteration)
            self._next_iteration += 1
            for start, duration, pitch, velocity in zip(
                part.start_beats.tolist(), part.duration_beats.tolist(), part.pitch.tolist(), part.velocity.tolist()
            ):
                on_frame = grid.beat_to_frame(first_beat + start)
                off_frame = max(grid.beat_to_frame(first_beat + start + duration), on_frame + 1)
                heapq.heappush(self._events, (on_frame, NOTE_ON, pitch, velocity))
                heapq.heappush(self._events, (off_frame, NOTE_OFF, pitch, 0))

    def _iteration_length_beats(self) -> float:
        return self.loop_beats or 0.0

    # -- rendering --------------------------------------------------------
    def render(self, start_frame: int, out: np.ndarray) -> None:
        """See :class:`Voice`."""
        end_frame = start_frame + out.shape[0]
        self._schedule_until(end_frame)
        events = self._events
        position = start_frame
        while events and events[0][0] < end_frame:
            frame, kind, pitch, velocity = heapq.heappop(events)
            if frame > position:
                self.synth.render_into(out[position - start_frame : frame - start_frame])
                position = frame
            if kind == NOTE_ON:
                self.synth.note_on(pitch, velocity)
                self._sounding[pitch] = self._sounding.get(pitch, 0) + 1
            else:
                held = self._sounding.get(pitch, 0)
                if held <= 0:
                    continue  # released early by release_all(): nothing to do
                self.synth.note_off(pitch)
                if held == 1:
                    del self._sounding[pitch]
                else:
                    self._sounding[pitch] = held - 1
            if self.midi_sink is not None:
                self.midi_sink(frame, kind, pitch, velocity)
        if position < end_frame:
            self.synth.render_into(out[position - start_frame :])


class GeneratedVoice(MidiVoice):
    """A part written bar by bar by a part generator, through a
    :class:`~adaptive.generation.BarFeed`.

    The generator never runs here: the feed asks the generation worker for
    bars ahead of the music (bar ``k + bars_ahead`` when bar ``k`` starts,
    conditioned on the emotion current then) and, at each bar's downbeat, hands
    over the finished bar — or, if it is not ready in real time, the rule-based
    fallback for the same request (counted as a miss).

    Args:
        feed: the part's bar feed.
        synth: the synthesizer it owns.
        beats_per_bar: meter numerator.
        bars: how many bars to play (None: until stopped).
        midi_sink: called with every note event played.
    """

    def __init__(
        self,
        feed: BarFeed,
        synth: Synth,
        beats_per_bar: int,
        bars: int | None = None,
        midi_sink: MidiSink | None = None,
    ) -> None:
        super().__init__(Part.empty(), synth, float(beats_per_bar), midi_sink)
        self.feed = feed
        self.bars = bars

    def start(self, grid: TempoGrid) -> None:
        """See :class:`Voice`; the feed restarts at bar 0 (using bars primed
        before the start, if any)."""
        super().start(grid)
        self.feed.deadline_for_bar = grid.bar_to_frame
        self.feed.restart()

    def _schedule_until(self, end_frame: int) -> None:
        if self.bars is not None and self._next_iteration >= self.bars:
            return
        super()._schedule_until(end_frame)

    def _iteration_notes(self, iteration: int) -> tuple[Part, float]:
        first_beat = iteration * self._iteration_length_beats()
        if self.bars is not None and iteration >= self.bars:
            return Part.empty(), first_beat
        assert self._grid is not None
        return self.feed.take(iteration, self._grid.beat_to_frame(first_beat)), first_beat


class StemVoice:
    """An audio stem looping every ``loop_beats`` beats (``None``: once).

    Each loop iteration plays the whole stem from the iteration's first frame;
    audio longer than the loop (a reverb tail) overlaps the next iteration.
    Stateless, so it need not render while silent.

    Args:
        audio: the stem, ``(n_frames, 2)`` float32 at the session rate.
        loop_beats: loop length in beats, or None.
    """

    needs_render_when_silent = False

    def __init__(self, audio: np.ndarray, loop_beats: float | None) -> None:
        self.audio = audio
        self.loop_beats = loop_beats
        self._grid: TempoGrid | None = None

    def start(self, grid: TempoGrid) -> None:
        """See :class:`Voice`."""
        self._grid = grid

    def stop(self, frame: int) -> None:
        """See :class:`Voice`."""
        self._grid = None

    def render(self, start_frame: int, out: np.ndarray) -> None:
        """See :class:`Voice`."""
        out.fill(0.0)
        grid = self._grid
        if grid is None:
            return
        n_frames = out.shape[0]
        length = self.audio.shape[0]
        if self.loop_beats is None:
            iterations: range = range(0, 1)
        else:
            loop_frames = self.loop_beats * grid.frames_per_beat
            last = math.floor((start_frame + n_frames - 1 - grid.origin_frame) / loop_frames)
            first = max(0, math.floor((start_frame - length - grid.origin_frame) / loop_frames))
            iterations = range(first, last + 1)
        for iteration in iterations:
            begin = grid.beat_to_frame(iteration * (self.loop_beats or 0.0))
            lo = max(start_frame, begin)
            hi = min(start_frame + n_frames, begin + length)
            if lo < hi:
                out[lo - start_frame : hi - start_frame] += self.audio[lo - begin : hi - begin]
