"""Generation ahead of need: bridges to the cues likely to come next, and
generated stingers, made in the background while a cue plays, so a
transition or a stinger never waits on the generator.

* :class:`BridgesAhead`: while cue A plays, the bridges to the cues reached
  from A by a transition rule with a generated bridge are generated ahead —
  the ``max_bridges`` nearest the current emotion on the valence/arousal plane
  first. The set is refreshed when the playing cue changes or the emotion
  moves by at least ``refresh_distance``. A bridge's content depends only on
  the two cues (:func:`adaptive.transition.plan_bridge`), so a bridge made
  ahead stays valid until it is used. When a transition is asked for, its
  bridge is taken from there (or asked for at once) and hurried: its requests
  get the transition's boundary as their deadline.
* :class:`StingersAhead`: each generated stinger's phrase is made ahead for the
  playing cue's key and the current emotion, again when the cue changes or the
  emotion moves, and after each use.

Everything here runs on the session's thread (it only submits requests and
takes answers); the generator runs on the worker.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from adaptive.cue import Cue, CueBank, GeneratedStingerSource, Stinger, ThemeStingerSource
from adaptive.generation import NO_DEADLINE, GenerationWorker, PartStream, Ticket, request_tickets
from adaptive.generator import BarRequest
from adaptive.harmony import diatonic_triad
from adaptive.part import Part
from adaptive.transition import BridgePlan, generated_bridge_targets, plan_bridge
from adaptive.variation import ThemeBarRequest

DEFAULT_SPECULATIVE_BRIDGES = 2
"""Bridges generated ahead per playing cue, at most."""

REFRESH_DISTANCE = 0.25
"""How far (Euclidean distance on the valence/arousal plane, each axis in
[-1, 1]) the emotion must move before what is generated ahead is refreshed."""


class _Refresher:
    """Decides when to refresh: the playing cue changed or the emotion moved."""

    def __init__(self, refresh_distance: float) -> None:
        self.refresh_distance = refresh_distance
        self._cue: str | None = None
        self._point: tuple[float, float] | None = None

    def due(self, cue: str, valence: float, arousal: float) -> bool:
        if cue != self._cue or self._point is None or \
                math.dist(self._point, (valence, arousal)) >= self.refresh_distance:
            self._cue, self._point = cue, (valence, arousal)
            return True
        return False


class BridgesAhead:
    """Generated bridges made ahead (see the module docstring).

    Args:
        bank: the cue bank.
        worker: the generation worker.
        stream: the bridges' part stream (one generator instance for all bridges).
        seed: the session seed.
        max_bridges: bridges made ahead per playing cue (0 = none: every bridge
            is asked for when its transition is requested).
        refresh_distance: see :data:`REFRESH_DISTANCE`.
    """

    def __init__(self, bank: CueBank, worker: GenerationWorker, stream: PartStream, seed: int,
                 max_bridges: int = DEFAULT_SPECULATIVE_BRIDGES, refresh_distance: float = REFRESH_DISTANCE) -> None:
        if not 0 <= max_bridges <= 16:
            raise ValueError(f"max_bridges {max_bridges} is out of range (allowed: 0..16)")
        self.bank = bank
        self.worker = worker
        self.stream = stream
        self.seed = seed
        self.max_bridges = max_bridges
        self.rules: tuple | None = None
        self.conditioning = None  # the mapping's conditioning at an emotion (set by the session), or None
        self.seams = None
        """``seams(from_cue, to_cue, bar_in_loop) -> (context bars, next pitch)``
        (set by the session): the outgoing cue's bar ``bar_in_loop`` (None: its
        loop's last) and the incoming cue's first note,
        for a bridge that leads from one into the other; None: no seams."""
        """The transition table in force (a mapping may replace the bank's; None: the bank's)."""
        self._refresher = _Refresher(refresh_distance)
        self._ready: dict[tuple[str, str, int], tuple[BridgePlan, dict[int, Ticket]]] = {}
        self.made_ahead = 0
        """Bridges submitted ahead of a transition request (for tests and stats)."""
        self.replanned = 0
        """Bridges planned again at a request because the boundary follows a
        bar other than the loop's last (for tests and stats)."""

    def refresh(self, playing: str, valence: float, arousal: float) -> None:
        """Called when the scene changes: if the playing cue changed or the
        emotion moved enough, make sure the bridges to the nearest likely next
        cues are generated (others made earlier are forgotten)."""
        if self.max_bridges == 0 or not self._refresher.due(playing, valence, arousal):
            return
        targets = generated_bridge_targets(self.bank, playing, self.rules)
        targets.sort(key=lambda target: math.dist((valence, arousal), (self.bank.cue(target[0]).valence,
                                                                        self.bank.cue(target[0]).arousal)))
        wanted = [(playing, name, bars) for name, bars in targets[: self.max_bridges]]
        self._ready = {key: value for key, value in self._ready.items() if key in wanted}
        for key in wanted:
            if key not in self._ready:
                self._ready[key] = self._submit(*key, NO_DEADLINE)
                self.made_ahead += 1

    def _submit(self, from_cue: str, to_cue: str, bars: int, deadline: float,
                bar_in_loop: int | None = None) -> tuple[BridgePlan, dict[int, Ticket]]:
        context, next_pitch = self.seams(from_cue, to_cue, bar_in_loop) if self.seams is not None else ((), None)
        plan = plan_bridge(self.bank.cue(from_cue), self.bank.cue(to_cue), bars, self.seed, self.conditioning,
                           context, next_pitch)
        return plan, request_tickets(self.worker, self.stream, list(plan.requests), deadline)

    def requested(self, from_cue: str, to_cue: str, bars: int, boundary_frame: int,
                  bar_in_loop: int | None = None, exact_in_time: bool = False) -> None:
        """A transition with a generated bridge was asked for, to fire at
        ``boundary_frame``: make sure its bridge is being generated, and hurry it.

        ``bar_in_loop``: the outgoing cue's loop bar (0-based) that ends at the
        boundary. A bridge made ahead continues from the loop's last bar; when
        the boundary follows another bar and ``exact_in_time`` (the caller's
        judgement from frames alone, so a replay decides the same), the bridge
        is planned again from the bar actually playing and that one is played
        (its bars fall back like any generated bar if they are late).
        """
        key = (from_cue, to_cue, bars)
        entry = self._ready.get(key)
        loop_bars = self.bank.cue(from_cue).loop_bars
        if bar_in_loop is not None and bar_in_loop != loop_bars - 1 and exact_in_time \
                and self.seams is not None \
                and not _same_context(self.seams(from_cue, to_cue, bar_in_loop)[0], self.seams(from_cue, to_cue, None)[0]):
            entry = self._ready[key] = self._submit(from_cue, to_cue, bars, boundary_frame, bar_in_loop)
            self.replanned += 1
        elif entry is None:
            entry = self._ready[key] = self._submit(from_cue, to_cue, bars, boundary_frame)
        self.worker.hurry(self.stream, list(entry[1].values()), boundary_frame)

    def take(self, from_cue: str, to_cue: str, bars: int, frame: int) -> tuple[BridgePlan, dict[int, Ticket]]:
        """The plan and tickets of the bridge for a transition firing at ``frame``
        (asked for now if it was not made ahead). The bars are taken from the
        tickets at their downbeats, by the bridge's voice."""
        key = (from_cue, to_cue, bars)
        entry = self._ready.pop(key, None)
        if entry is None:
            entry = self._submit(from_cue, to_cue, bars, frame)
        self.worker.hurry(self.stream, list(entry[1].values()), frame)
        return entry


def _same_context(a: tuple[Part, ...], b: tuple[Part, ...]) -> bool:
    """Whether two bridges' context bars hold the same notes."""
    return len(a) == len(b) and all(
        np.array_equal(x.start_beats, y.start_beats) and np.array_equal(x.duration_beats, y.duration_beats)
        and np.array_equal(x.pitch, y.pitch) and np.array_equal(x.velocity, y.velocity) for x, y in zip(a, b))


def tonic_chord_request(cue: Cue, bar_index: int, beats_per_bar: int, valence: float, arousal: float, role: str,
                        seed: int) -> BarRequest:
    """A request for a bar on the tonic triad of ``cue``'s key (a generated stinger's bar)."""
    key = cue.parsed_key
    return BarRequest(bar_index, key, diatonic_triad(key, 0), beats_per_bar, cue.bpm, valence, arousal, role, seed)


def phrase_from_bars(bars: list[Part], beats_per_bar: int, length_beats: float) -> Part:
    """Bars laid end to end (bar ``i`` from beat ``i · beats_per_bar``), cut to
    ``length_beats``: notes starting at or after it are dropped, notes ringing
    past it are shortened to end there."""
    starts, durations, pitches, velocities = [], [], [], []
    for index, bar in enumerate(bars):
        starts.append(bar.start_beats + index * beats_per_bar)
        durations.append(bar.duration_beats)
        pitches.append(bar.pitch)
        velocities.append(bar.velocity)
    if not starts:
        return Part.empty()
    start = np.concatenate(starts)
    keep = start < length_beats
    start = start[keep]
    duration = np.minimum(np.concatenate(durations)[keep], length_beats - start)
    order = np.argsort(start, kind="stable")
    return Part(start[order], duration[order], np.concatenate(pitches)[keep][order].astype(np.int16),
                np.concatenate(velocities)[keep][order].astype(np.int16))


class StingersAhead:
    """Generated stingers' phrases made ahead (see the module docstring).

    Args:
        worker: the generation worker.
        stingers: each generated stinger with its own part stream.
        seed: the session seed.
        refresh_distance: see :data:`REFRESH_DISTANCE`.
    """

    def __init__(self, worker: GenerationWorker, stingers: list[tuple[Stinger, PartStream]], seed: int,
                 refresh_distance: float = REFRESH_DISTANCE) -> None:
        self.worker = worker
        self.stingers = {stinger.name: (stinger, stream) for stinger, stream in stingers}
        self.seed = seed
        self._refresher = _Refresher(refresh_distance)
        self._ready: dict[str, tuple[str, list[Ticket]]] = {}  # stinger -> (cue it was made for, tickets)
        self._triggered: Counter[str] = Counter()  # stingers triggered, not yet played
        self.intensity = 0.5
        """The scene's intensity (0..1) that theme heads are made with (set by the session's conductor)."""

    def _submit(self, name: str, cue: Cue, valence: float, arousal: float, deadline: float) -> tuple[str, list[Ticket]]:
        stinger, stream = self.stingers[name]
        source = stinger.source
        beats_per_bar = cue.meter.beats_per_bar
        if isinstance(source, ThemeStingerSource):
            # The theme's head: its first bars, varied for the emotion in the cue's key and meter.
            bars = self.length_beats(name, beats_per_bar) // beats_per_bar
            requests: list[BarRequest] = [
                ThemeBarRequest(**vars(tonic_chord_request(cue, i, beats_per_bar, valence, arousal, "melody",
                                                           self.seed)), intensity=self.intensity)
                for i in range(int(bars))]
        else:
            assert isinstance(source, GeneratedStingerSource)
            bars = max(1, math.ceil(source.beats / beats_per_bar))
            requests = [tonic_chord_request(cue, i, beats_per_bar, valence, arousal, source.role, self.seed)
                        for i in range(bars)]
        return cue.name, list(request_tickets(self.worker, stream, requests, deadline).values())

    def length_beats(self, name: str, beats_per_bar: int) -> float:
        """How long stinger ``name``'s phrase is in a cue of ``beats_per_bar``
        beats a bar: a generated stinger's ``beats``; a theme's head bars."""
        stinger, stream = self.stingers[name]
        source = stinger.source
        if isinstance(source, ThemeStingerSource):
            theme = getattr(stream.generator, "theme", None)
            bars = source.bars or (theme.head_bars if theme is not None else 1)
            return float(bars * beats_per_bar)
        assert isinstance(source, GeneratedStingerSource)
        return source.beats

    def refresh(self, cue: Cue, valence: float, arousal: float) -> None:
        """Called when the scene changes: if the playing cue changed or the
        emotion moved enough, make every generated stinger's phrase again."""
        if not self.stingers or not self._refresher.due(cue.name, valence, arousal):
            return
        for name in self.stingers:
            if not self._triggered[name]:  # a triggered phrase stays until it plays
                self._ready[name] = self._submit(name, cue, valence, arousal, NO_DEADLINE)

    def requested(self, name: str, cue: Cue, valence: float, arousal: float, play_frame: int) -> None:
        """Stinger ``name`` was triggered, to play at ``play_frame``: hurry its phrase
        (made now if none was made ahead for ``cue``)."""
        entry = self._ready.get(name)
        if entry is None or entry[0] != cue.name:
            entry = self._ready[name] = self._submit(name, cue, valence, arousal, play_frame)
        self._triggered[name] += 1
        _, stream = self.stingers[name]
        self.worker.hurry(stream, entry[1], play_frame)

    def take(self, name: str, cue: Cue, valence: float, arousal: float, frame: int) -> Part:
        """The phrase of stinger ``name`` playing from ``frame`` over ``cue``, then
        the next one is made ahead. The fallback plays for bars not ready."""
        entry = self._ready.pop(name, None)
        if self._triggered[name]:
            self._triggered[name] -= 1
        if entry is None or entry[0] != cue.name:
            entry = self._submit(name, cue, valence, arousal, frame)
        bars = [self.worker.take(ticket, frame) for ticket in entry[1]]
        self._ready[name] = self._submit(name, cue, valence, arousal, NO_DEADLINE)
        beats_per_bar = entry[1][0].request.beats_per_bar
        return phrase_from_bars(bars, beats_per_bar, self.length_beats(name, beats_per_bar))
