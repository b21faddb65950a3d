"""Transition rules: which rule applies to a move from one cue to another,
and the plan of a generated bridge between two cues.

Rules are looked up by specificity, like Wwise's transition matrix and Godot's
AudioStreamInteractive table: an exact (from, to) rule beats (from, "*"),
which beats ("*", to), which beats ("*", "*"). Among rules equally specific,
the last one written wins (a later line overrides an earlier one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adaptive.cue import WILDCARD, BridgeKind, Cue, CueBank, MidiSource, StemSource, TransitionRule
from adaptive.generator import BarEnding, BarRequest, PartConditioning
from adaptive.harmony import Chord, Key, Mode, diatonic_triad, dominant_seventh
from adaptive.part import Part, PartLibrary

DEFAULT_RULE = TransitionRule()
"""The rule used when a bank has none that matches: next bar, a one-beat crossfade."""


def _specificity(rule: TransitionRule, from_cue: str, to_cue: str) -> int | None:
    from_match = 2 if rule.from_cue == from_cue else (0 if rule.from_cue == WILDCARD else None)
    to_match = 1 if rule.to_cue == to_cue else (0 if rule.to_cue == WILDCARD else None)
    if from_match is None or to_match is None:
        return None
    return from_match + to_match


def find_rule(bank: CueBank, from_cue: str, to_cue: str) -> TransitionRule:
    """The most specific rule of ``bank`` for ``from_cue`` → ``to_cue``
    (:data:`DEFAULT_RULE` when none matches)."""
    return find_rule_in(bank.transitions, from_cue, to_cue)


def find_rule_in(rules: Sequence[TransitionRule], from_cue: str, to_cue: str) -> TransitionRule:
    """The most specific of ``rules`` for ``from_cue`` → ``to_cue``, later
    rules winning among equals (:data:`DEFAULT_RULE` when none matches)."""
    best: tuple[int, int] | None = None
    chosen = DEFAULT_RULE
    for index, rule in enumerate(rules):
        score = _specificity(rule, from_cue, to_cue)
        if score is not None and (best is None or (score, index) > best):
            best, chosen = (score, index), rule
    return chosen


BRIDGE_ROLE = "arpeggio"
"""Role asked of the generator for bridge bars."""

_PIVOT_DEGREES = (3, 5, 1, 0, 2)
"""Scale degrees of the incoming key tried as the pivot chord, in order of
preference: IV, vi, ii, I, iii (the subdominant side prepares the dominant)."""


@dataclass(frozen=True)
class BridgePlan:
    """What a generated bridge plays: one request per bar and the tempo of each bar.

    Attributes:
        from_cue, to_cue: the cues it connects.
        requests: one :class:`BarRequest` per bar (``bar_index`` 0..bars-1).
        bar_bpms: tempo of each bar (bpm), stepping from the outgoing cue's
            tempo towards the incoming one's.
        beats_per_bar: the outgoing cue's meter numerator (the bridge keeps it).
    """

    from_cue: str
    to_cue: str
    requests: tuple[BarRequest, ...]
    bar_bpms: tuple[float, ...]
    beats_per_bar: int

    @property
    def bars(self) -> int:
        """Length in bars."""
        return len(self.requests)


def bridge_chords(old: Cue, new_key: Key, bars: int) -> list[tuple[Chord, Key]]:
    """The chord path of a ``bars``-bar bridge from cue ``old`` into ``new_key``,
    with the key each bar is heard in. It ends on the incoming key's dominant:

    * last bar: V7 of the new key (in the new key);
    * the bar before (2+ bars): its pre-dominant, ii in major or iv in minor
      (in the new key) — so the bridge ends with a ii–V (iv–V) cadence;
    * the bar before that (3+ bars): a **pivot chord**, a major or minor triad
      diatonic to both keys (the new key's IV, vi, ii, I or iii, first found,
      other than the pre-dominant), heard in the old key; when the keys share
      none, the new key's IV/iv (a direct modulation);
    * earlier bars (4+ bars): the outgoing cue's own chords from its first bar.

    The common-chord modulation is the textbook one (e.g. Aldwell & Schachter,
    *Harmony and Voice Leading*, ch. "Modulation").
    """
    old_key = old.parsed_key
    new_is_major = new_key.mode is Mode.MAJOR
    path: list[tuple[Chord, Key]] = [(old.chord_at_bar(i), old_key) for i in range(max(0, bars - 3))]
    predominant_degree = 1 if new_is_major else 3
    if bars >= 3:
        old_scale = set(old_key.scale_pitch_classes())
        pivot, pivot_key = diatonic_triad(new_key, 3), new_key
        for degree in _PIVOT_DEGREES:
            if degree == predominant_degree:
                continue  # the next bar's chord
            chord = diatonic_triad(new_key, degree)
            if chord.quality.value in ((0, 4, 7), (0, 3, 7)) and set(chord.pitch_classes()) <= old_scale:
                pivot, pivot_key = chord, old_key
                break
        path.append((pivot, pivot_key))
    if bars >= 2:
        path.append((diatonic_triad(new_key, predominant_degree), new_key))
    path.append((dominant_seventh(new_key), new_key))
    return path


def bridge_bpms(old_bpm: float, new_bpm: float, bars: int) -> tuple[float, ...]:
    """Per-bar tempos of a bridge: ``old + (new − old) · (i + 1) / (bars + 1)``
    for bar ``i``, so the tempo steps evenly from the outgoing cue's towards
    the incoming one's (which the incoming cue then takes)."""
    return tuple(old_bpm + (new_bpm - old_bpm) * (i + 1) / (bars + 1) for i in range(bars))


def plan_bridge(old: Cue, new: Cue, bars: int, seed: int,
                conditioning: Callable[[float, float], PartConditioning] | None = None,
                context: tuple[Part, ...] = (), next_pitch: int | None = None) -> BridgePlan:
    """The plan of a ``bars``-bar generated bridge from ``old`` to ``new``:
    the chord path of :func:`bridge_chords`, the tempo steps of
    :func:`bridge_bpms`, and the emotion interpolated linearly from ``old``'s
    point to ``new``'s (bar ``i`` at ``t = (i + 1) / bars``, so the last bar
    expresses the incoming cue's emotion).

    It depends only on the two cues, the length and the seed, so a bridge can
    be generated before the transition fires (speculatively).

    ``conditioning``: the mapping's asks at an emotion (valence, arousal), put
    in each bar's request (None: the generator's own).

    Seams: the first bar's request carries ``context`` (the outgoing cue's
    last bar, so the bridge continues from it rather than from silence), and
    the last bar's an :class:`~adaptive.generator.BarEnding` — end on the
    incoming key's tonic or dominant, within an octave of ``next_pitch``
    (the incoming cue's first note of its lead layer, when known).

    Raises:
        ValueError: ``bars`` < 1.
    """
    if bars < 1:
        raise ValueError(f"a bridge needs at least 1 bar, got {bars}")
    chords = bridge_chords(old, new.parsed_key, bars)
    bpms = bridge_bpms(old.bpm, new.bpm, bars)
    beats_per_bar = old.meter.beats_per_bar
    new_key = new.parsed_key
    ending = BarEnding((new_key.tonic_pitch_class, (new_key.tonic_pitch_class + 7) % 12), next_pitch)
    requests = []
    for i, (chord, key) in enumerate(chords):
        t = (i + 1) / bars
        valence = old.valence + (new.valence - old.valence) * t
        arousal = old.arousal + (new.arousal - old.arousal) * t
        requests.append(BarRequest(i, key, chord, beats_per_bar, bpms[i], valence, arousal, BRIDGE_ROLE, seed,
                                   conditioning(valence, arousal) if conditioning is not None else None,
                                   beat_unit=old.meter.beat_unit, context=context if i == 0 else (),
                                   ending=ending if i == bars - 1 else None))
    return BridgePlan(old.name, new.name, tuple(requests), bpms, beats_per_bar)


def generated_bridge_targets(bank: CueBank, from_cue: str,
                             rules: Sequence[TransitionRule] | None = None) -> list[tuple[str, int]]:
    """Cues reachable from ``from_cue`` through a rule with a generated bridge,
    with the bridge's length in bars, in bank order; ``rules`` is the
    transition table in force (default: the bank's; a mapping may replace it)."""
    table = bank.transitions if rules is None else rules
    targets = []
    for cue in bank.cues:
        if cue.name == from_cue:
            continue
        rule = find_rule_in(table, from_cue, cue.name)
        if rule.bridge.kind is BridgeKind.GENERATED:
            targets.append((cue.name, rule.bridge.bars))
    return targets


def lead_part(cue: Cue, bank: CueBank, library: PartLibrary) -> Part | None:
    """The cue's lead line: among its layers written as MIDI (MIDI layers, and
    stems rendered from a MIDI track) and not played on percussion, the one
    with the highest median pitch; None when it has none (a cue of generated
    layers or plain audio stems)."""
    best: tuple[float, Part] | None = None
    for layer in cue.layers:
        source = layer.source
        if isinstance(source, MidiSource) and not layer.percussion:
            file, track = source.file, source.track
        elif isinstance(source, StemSource) and source.rendered_from is not None \
                and not source.rendered_from.percussion:
            file, track = source.rendered_from.file, source.rendered_from.track
        else:
            continue
        part = library.track(bank.path(file), track)
        if len(part) and (best is None or float(np.median(part.pitch)) > best[0]):
            best = (float(np.median(part.pitch)), part)
    return None if best is None else best[1]


def bridge_seams(bank: CueBank, library: PartLibrary, from_cue: str, to_cue: str,
                 bar_in_loop: int | None = None) -> tuple[tuple[Part, ...], int | None]:
    """What a generated bridge from ``from_cue`` to ``to_cue`` joins: bar
    ``bar_in_loop`` (0-based, taken mod the loop; None: the loop's last bar)
    of the outgoing cue's lead line (beats from that bar's downbeat; empty
    when it has no lead line) and the first pitch of the incoming cue's lead
    line (the highest note of its first onset; None without one).

    Raises:
        AssetError: a MIDI file of either cue cannot be read.
    """
    context: tuple[Part, ...] = ()
    old = bank.cue(from_cue)
    lead = lead_part(old, bank, library)
    if lead is not None:
        beats_per_bar = old.meter.beats_per_bar
        bar = old.loop_bars - 1 if bar_in_loop is None else bar_in_loop % old.loop_bars
        last_bar_beats = bar * beats_per_bar
        keep = (lead.start_beats >= last_bar_beats) & (lead.start_beats < last_bar_beats + beats_per_bar)
        context = (Part(lead.start_beats[keep] - last_bar_beats, lead.duration_beats[keep], lead.pitch[keep],
                        lead.velocity[keep]),)
    next_pitch = None
    incoming = lead_part(bank.cue(to_cue), bank, library)
    if incoming is not None:
        first = incoming.start_beats == incoming.start_beats.min()
        next_pitch = int(incoming.pitch[first].max())
    return context, next_pitch
