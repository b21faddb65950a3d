"""The resolved mapping: a mapping with every absent value filled from the
bank, and the questions a session asks it (which cue at this emotion and
location, which gain curve, which tempo, which transition rule, which
conditioning)."""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any


from adaptive.clock import Quantize
from adaptive.cue import CueBank, TransitionRule
from adaptive.emotion import NAMED_EMOTIONS, EmotionPoint, music_for_emotion
from adaptive.gain import GainCurve
from adaptive.scene import SceneUpdate
from adaptive.generator import PartConditioning
from adaptive.mapping.schema import ConditioningMode, Mapping, Region
from adaptive.transition import find_rule_in


@dataclass(frozen=True)
class CueArea:
    """Where a cue sits on the plane at a location: a point, or a region."""

    cue: str
    point: tuple[float, float]
    region: Region | None = None

    def distance(self, valence: float, arousal: float) -> float:
        """Distance from the point to the cue's area (0 inside a region)."""
        if self.region is not None:
            return self.region.distance(valence, arousal)
        return math.hypot(valence - self.point[0], arousal - self.point[1])

    def center_distance(self, valence: float, arousal: float) -> float:
        center = self.region.center if self.region is not None else self.point
        return math.hypot(valence - center[0], arousal - center[1])


GeneratorConditioning = PartConditioning
"""What a generator is asked for at an emotion (see :class:`Conditioning`);
``mode`` is ``None`` when the cue's mode is kept."""


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping checked against its bank, with every absent value filled in
    from the bank: what a :class:`~adaptive.session.Session` plays by. Frozen.

    Attributes:
        mapping: the validated file.
        bank: the cue bank it was resolved against.
        text: the TOML it was read from ("" for the bank's own mapping); a
            recording stores it, so replay can rebuild the same mapping.
        source: where it came from (a path, or a description).
    """

    mapping: Mapping
    bank: CueBank
    text: str = ""
    source: str = "<bank>"
    emotions: dict[str, EmotionPoint] = field(default_factory=dict)
    gains: dict[tuple[str, str], tuple[GainCurve, float]] = field(default_factory=dict)
    _areas: dict[str, tuple[CueArea, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_bank(cls, bank: CueBank) -> "ResolvedMapping":
        """The mapping a bank implies on its own (no file): its cues' points
        and locations, layer curves, transition table and stingers, the
        built-in emotions, hysteresis 0.15 and no other smoothing."""
        return resolve(Mapping(), bank, text="", source="<bank>")

    # ------------------------------------------------------------------ emotions
    def emotion(self, name: str) -> EmotionPoint:
        """The point of a named emotion.

        Raises:
            KeyError: an unknown name, with the allowed names (and the closest).
        """
        try:
            return self.emotions[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.emotions, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown emotion {name!r} (allowed: {', '.join(sorted(self.emotions))}){hint}") from None

    # ------------------------------------------------------------------ cue choice
    def areas(self, location: str) -> tuple[CueArea, ...]:
        """The cues that may play at ``location`` and their areas: the
        location's table, else the ``default_location``'s, else the bank's
        rule (cues listing the location or none; all cues if none match).
        Computed once per location (the session asks on every input)."""
        cached = self._areas.get(location)
        if cached is None:
            cached = self._areas[location] = self._compute_areas(location)
        return cached

    def _compute_areas(self, location: str) -> tuple[CueArea, ...]:
        mapping = self.mapping
        table = mapping.locations.get(location)
        if table is None and mapping.default_location is not None:
            table = mapping.locations[mapping.default_location]
        if table is not None:
            out = []
            for name, spec in table.cues.items():
                cue = self.bank.playable_cue(name)
                point = spec.point if spec.point is not None else (cue.valence, cue.arousal)
                out.append(CueArea(name, (float(point[0]), float(point[1])), spec.region))
            return tuple(out)
        here = [cue for cue in self.bank.cues if not cue.locations or location in cue.locations]
        return tuple(CueArea(cue.name, (cue.valence, cue.arousal)) for cue in (here or self.bank.cues))

    def choose_cue(self, valence: float, arousal: float, location: str, playing: str | None,
                   hysteresis: float | None = None) -> str:
        """The cue for an emotion at a location given the ``playing`` one.

        The cue whose area (region, or point) is nearest wins; a region owns
        its inside (a point cue inside it wins nowhere there, not even on its
        own point); inside overlapping regions, the one whose centre is
        nearest; then by name.
        The playing cue is kept unless another is nearer by more than the
        hysteresis (``smoothing.hysteresis`` unless given).
        """
        options = self.areas(location)
        margin = self.mapping.smoothing.hysteresis if hysteresis is None else hysteresis
        best: tuple | None = None
        current_distance = None
        for area in options:
            distance = area.distance(valence, arousal)
            if area.cue == playing:
                current_distance = distance
            key = (distance, area.region is None, area.center_distance(valence, arousal), area.cue)
            if best is None or key < best:
                best = key
        assert best is not None
        if current_distance is not None and current_distance <= best[0] + margin:
            return playing  # type: ignore[return-value]
        return best[3]

    def start_scene(self) -> SceneUpdate:
        """The scene a live server plays before the game says anything: the
        ``[start]`` table (default: ``neutral`` at intensity 0.5), at its
        location, else the ``default_location``, else none."""
        start = self.mapping.start
        location = start.location or self.mapping.default_location or ""
        return SceneUpdate(emotion=start.emotion, intensity=float(start.intensity), location=location)

    # ------------------------------------------------------------------ music
    def layer_gain(self, cue: str, layer: str) -> tuple[GainCurve, float]:
        """``(gain curve, fade_beats)`` of a layer of a cue or segment."""
        return self.gains[(cue, layer)]

    def transition_rules(self) -> tuple[TransitionRule, ...]:
        """The mapping's transition table, else the bank's."""
        rules = self.mapping.transitions
        return tuple(self.bank.transitions if rules is None else rules)

    def find_rule(self, from_cue: str, to_cue: str) -> TransitionRule:
        """The most specific transition rule (see :mod:`adaptive.transition`)."""
        return find_rule_in(self.transition_rules(), from_cue, to_cue)

    def stinger_names(self) -> list[str]:
        """Every stinger name the game may trigger: the bank's and the mapping's."""
        return sorted({s.name for s in self.bank.stingers} | set(self.mapping.stingers))

    def stinger(self, name: str) -> tuple[str, Quantize, float]:
        """``(bank stinger, quantize, gain_db)`` of a stinger name.

        Raises:
            KeyError: an unknown name, with the allowed names.
        """
        spec = self.mapping.stingers.get(name)
        if spec is None:
            try:
                stinger = self.bank.stinger(name)
            except KeyError:
                allowed = ", ".join(self.stinger_names()) or "none defined"
                raise KeyError(f"unknown stinger {name!r} (allowed: {allowed})") from None
            return stinger.name, stinger.quantize, stinger.gain_db
        stinger = self.bank.stinger(spec.source or name)
        return (stinger.name, spec.quantize or stinger.quantize,
                stinger.gain_db if spec.gain_db is None else float(spec.gain_db))

    def bpm_for(self, cue: str, arousal: float) -> float | None:
        """The tempo a cue starts at for ``arousal`` (linear over the cue's
        ``bpm_range`` from arousal -1 to +1, rounded to 0.1 bpm), or ``None``
        to keep the bank's."""
        spec = self.mapping.cues.get(cue)
        if spec is None or spec.bpm_range is None:
            return None
        low, high = spec.bpm_range
        return round(low + (high - low) * (min(max(arousal, -1.0), 1.0) + 1.0) / 2.0, 1)

    def conditioning(self, valence: float, arousal: float) -> GeneratorConditioning:
        """Generator conditioning at an emotion (see :class:`Conditioning`)."""
        spec = self.mapping.conditioning
        asks = music_for_emotion(valence, arousal, density=spec.density_notes_per_beat, velocity=spec.velocity,
                                 register=spec.register_semitones,
                                 major_from_valence=spec.major_from_valence if spec.mode is ConditioningMode.VALENCE else None)
        if spec.guidance_scale is None:
            return asks
        return replace(asks, guidance_scale=float(spec.guidance_scale))

    # ------------------------------------------------------------------ live tuning
    def data(self) -> dict[str, Any]:
        """The mapping as plain TOML data (what ``get`` reads)."""
        if self.text:
            return tomllib.loads(self.text)
        return {}


def resolve(mapping: Mapping, bank: CueBank, *, text: str = "", source: str = "<text>") -> ResolvedMapping:
    """Fill every absent value of ``mapping`` from ``bank``.

    The mapping must already be checked against the bank
    (:func:`reference_problems` returned nothing).
    """
    emotions = dict(NAMED_EMOTIONS)
    emotions.update({name: EmotionPoint(float(v), float(a)) for name, (v, a) in mapping.emotions.items()})
    gains: dict[tuple[str, str], tuple[GainCurve, float]] = {}
    for cue in bank.cues + bank.segments:
        spec = mapping.cues.get(cue.name)
        for layer in cue.layers:
            override = spec.layers.get(layer.name) if spec is not None else None
            points = override.curve_db() if override is not None else None
            curve = GainCurve(points) if points is not None else layer.curve
            fade = layer.fade_beats if override is None or override.fade_beats is None else float(override.fade_beats)
            gains[(cue.name, layer.name)] = (curve, fade)
    return ResolvedMapping(mapping, bank, text, source, emotions, gains)


