"""The sound designer's mapping: how scene state uses the cue bank.

The cue bank is the music material (cues, their layers' sources, segments,
stinger phrases). The mapping is a TOML file (``docs/mapping.md``) that decides
how the game's scene state plays it:

* **emotions** — named emotions → valence/arousal points (the built-in ones
  of :mod:`adaptive.emotion`, which the file may move or add to);
* **locations** — per location, which cues may play and which part of the
  valence/arousal plane each covers (its point: nearest cue wins; or an
  explicit rectangle ``region``), and a ``default_location`` for the rest;
* **cues** — per cue, per layer: the intensity → gain curve (dB or linear)
  and fade length in beats; a tempo range the cue's tempo follows arousal in;
* **conditioning** — emotion → generator conditioning (mode, density,
  velocity, register);
* **transitions** — the transition table keyed by (from cue, to cue) with a
  ``"*"`` wildcard (replaces the bank's table when given);
* **stingers** — the names the game triggers, each playing a bank stinger
  (``source``) with its own quantization and gain;
* **smoothing** — slew rates, hysteresis and a minimum time in a cue.

Anything the mapping leaves out falls back to what the bank says, so a bank
without a mapping plays as it always did (:meth:`ResolvedMapping.from_bank`).

:func:`check_mapping` reports every problem at once with its line, and
warnings for legal but likely wrong things; :func:`load_mapping` raises them.
A :class:`ResolvedMapping` is frozen: a new one replaces it as a whole
(:class:`MappingChange`), at a bar line.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from adaptive.clock import Quantize
from adaptive.cue import WILDCARD, Cue, CueBank, Name, StemSource, TransitionRule
from adaptive.emotion import NAMED_EMOTIONS, EmotionPoint
from adaptive.errors import ConfigError, problem_lines
from adaptive.gain import SILENCE_DB, GainCurve, amplitude_to_db
from adaptive.generator import PartConditioning
from adaptive.transition import find_rule_in

DEFAULT_MAPPING = Path(__file__).parent / "data" / "default_bank" / "mapping.toml"
"""The default mapping of the embedded cue bank."""

MAX_LINEAR_GAIN = 10 ** (12.0 / 20.0)
"""Largest linear gain a curve may reach (+12 dB, the bank's limit)."""

PLANE_GRID_POINTS = 81
"""Points per axis of the grid on which reachability is checked and regions are
drawn (a step of 0.025 on [-1, 1])."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError("must be a number, not NaN")
    return value


Number = Annotated[float, BeforeValidator(_number)]
Point = tuple[Number, Number]
Curve = list[tuple[Number, Number]]


def _plane_point(value: object) -> object:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and -1.0 <= x <= 1.0 for x in value)):
        raise ValueError(f"{value!r} is not allowed (allowed: [valence, arousal], each a number from -1 to 1)")
    return value


PlanePoint = Annotated[Point, BeforeValidator(_plane_point)]
"""A point of the valence/arousal plane, ``[valence, arousal]``, each in [-1, 1]."""


def _check_breakpoints(points: list[tuple[float, float]], low_x: float, what: str) -> None:
    if not points:
        raise ValueError(f"needs at least one [{what}, value] point")
    previous = -math.inf
    for x, _ in points:
        if not low_x <= x <= 1.0:
            raise ValueError(f"{what} {x:g} is outside {low_x:g}..1")
        if x <= previous:
            raise ValueError(f"{what} values must be strictly increasing (got {x:g} after {previous:g})")
        previous = x


class Region(_Frozen):
    """An explicit rectangle of the valence/arousal plane: ``[low, high]`` on each axis, in [-1, 1]."""

    valence: Point
    arousal: Point

    @field_validator("valence", "arousal")
    @classmethod
    def _ordered(cls, span: tuple[float, float]) -> tuple[float, float]:
        low, high = span
        if not -1.0 <= low < high <= 1.0:
            raise ValueError(f"[{low:g}, {high:g}] is not allowed (allowed: [low, high] with -1 <= low < high <= 1)")
        return span

    def distance(self, valence: float, arousal: float) -> float:
        """Distance from a point to the rectangle (0 inside)."""
        dv = max(self.valence[0] - valence, 0.0, valence - self.valence[1])
        da = max(self.arousal[0] - arousal, 0.0, arousal - self.arousal[1])
        return math.hypot(dv, da)

    @property
    def center(self) -> tuple[float, float]:
        return (sum(self.valence) / 2, sum(self.arousal) / 2)


class LocationCue(_Frozen):
    """A cue available at a location: its ``point`` (default: the bank cue's
    valence/arousal) and, optionally, an explicit ``region``."""

    point: PlanePoint | None = None
    region: Region | None = None


class Location(_Frozen):
    """The cues that may play at a location: a table ``{cue = {point, region}}``
    or a list of cue names."""

    cues: dict[str, LocationCue] = Field(min_length=1)

    @field_validator("cues", mode="before")
    @classmethod
    def _list_of_names(cls, value: object) -> object:
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return {name: {} for name in value}
        return value


class LayerGain(_Frozen):
    """A layer's intensity → gain curve and fade.

    ``gain_curve`` is ``[[intensity, gain], ...]`` with intensity strictly
    increasing in [0, 1]; gains in dB (``-inf`` silent, at most +12) when
    ``gain_unit = "db"``, or linear amplitudes (0 silent, at most 3.98) when
    ``"linear"``. ``fade_beats`` (0..64) is the ramp length when the gain changes.
    """

    gain_unit: Literal["db", "linear"] = "db"
    gain_curve: Curve | None = None
    fade_beats: Number | None = Field(None, ge=0.0, le=64.0)

    @field_validator("gain_curve")
    @classmethod
    def _check_curve(cls, curve: list[tuple[float, float]] | None, info: ValidationInfo) -> list | None:
        if curve is None:
            return None
        _check_breakpoints(curve, 0.0, "intensity")
        unit = info.data.get("gain_unit", "db")
        for _, gain in curve:
            if unit == "db" and gain > 12.0:
                raise ValueError(f"{gain:g} dB is not allowed (allowed: -inf up to +12 dB)")
            if unit == "linear" and not 0.0 <= gain <= MAX_LINEAR_GAIN:
                raise ValueError(f"linear gain {gain:g} is not allowed (allowed: 0 to {MAX_LINEAR_GAIN:.2f})")
        return curve

    def curve_db(self) -> tuple[tuple[float, float], ...] | None:
        """The curve in dB (linear gains converted; 0 → ``-inf``)."""
        if self.gain_curve is None:
            return None
        if self.gain_unit == "db":
            return tuple((x, g) for x, g in self.gain_curve)
        return tuple((x, amplitude_to_db(g)) for x, g in self.gain_curve)


class CueMapping(_Frozen):
    """Per cue: layer gains, and a tempo range (``bpm_range = [low, high]``,
    20..300) that the cue's tempo follows arousal in: ``low`` at arousal -1,
    ``high`` at +1, chosen when the cue starts. Cues with audio stems cannot
    change tempo."""

    layers: dict[str, LayerGain] = Field(default_factory=dict)
    bpm_range: Point | None = None

    @field_validator("bpm_range")
    @classmethod
    def _tempo(cls, span: tuple[float, float] | None) -> tuple[float, float] | None:
        if span is not None and not 20.0 <= span[0] <= span[1] <= 300.0:
            raise ValueError(f"[{span[0]:g}, {span[1]:g}] is not allowed (allowed: [low, high], 20 <= low <= high <= 300)")
        return span


class Conditioning(_Frozen):
    """Emotion → what a part generator is asked for (the directions of
    Gabrielsson & Lindström 2010; Eerola, Friberg & Bresin 2013).

    Attributes:
        mode: ``"cue"`` keeps the cue's mode; ``"valence"`` asks for major at
            valence >= ``major_from_valence`` and minor below.
        density_notes_per_beat: ``[[arousal, notes per beat], ...]`` (0.25..16).
        velocity: ``[[arousal, MIDI velocity], ...]`` (1..127).
        register_semitones: ``[[valence, semitones], ...]`` (-24..24), a shift of the part's register.
        guidance_scale: how strongly the model generator follows the emotion
            (classifier-free guidance, 0..8; 1 = plain conditioning; unset =
            the generator's default, models/MODEL_CARD.md).
    """

    mode: Literal["cue", "valence"] = "cue"
    guidance_scale: Number | None = Field(None, ge=0.0, le=8.0)
    major_from_valence: Number = Field(0.0, ge=-1.0, le=1.0)
    density_notes_per_beat: Curve = Field(default_factory=lambda: [(-1.0, 1.0), (1.0, 4.0)])
    velocity: Curve = Field(default_factory=lambda: [(-1.0, 45.0), (1.0, 110.0)])
    register_semitones: Curve = Field(default_factory=lambda: [(-1.0, -6.0), (1.0, 6.0)])

    @field_validator("density_notes_per_beat", "velocity", "register_semitones")
    @classmethod
    def _check(cls, points: list[tuple[float, float]], info: ValidationInfo) -> list[tuple[float, float]]:
        axis, low, high = {"density_notes_per_beat": ("arousal", 0.25, 16.0), "velocity": ("arousal", 1.0, 127.0),
                           "register_semitones": ("valence", -24.0, 24.0)}[info.field_name]
        _check_breakpoints(points, -1.0, axis)
        for _, y in points:
            if not low <= y <= high:
                raise ValueError(f"{y:g} is out of range (allowed: {low:g}..{high:g})")
        return points


class StingerMapping(_Frozen):
    """A stinger name the game may trigger: the bank stinger it plays
    (``source``, default: the same name), its quantization and gain (default:
    the bank's)."""

    source: str | None = None
    quantize: Quantize | None = None
    gain_db: Number | None = Field(None, ge=-60.0, le=12.0)


class Smoothing(_Frozen):
    """Keeps noisy input from making cues thrash (all in session time).

    Attributes:
        valence_per_second, arousal_per_second, intensity_per_second: slew
            rates, units per second (> 0; ``inf`` = follow at once).
        hysteresis: extra closeness (0..2, on the plane) another cue needs to
            take over from the playing one.
        min_cue_bars: bars (0..64) a cue plays at least before the mapping
            may choose another (a forced cue is not held).
    """

    valence_per_second: Number = Field(math.inf, gt=0.0)
    arousal_per_second: Number = Field(math.inf, gt=0.0)
    intensity_per_second: Number = Field(math.inf, gt=0.0)
    hysteresis: Number = Field(0.15, ge=0.0, le=2.0)
    min_cue_bars: Number = Field(0.0, ge=0.0, le=64.0)


class Mapping(_Frozen):
    """The mapping file. See the module docstring and ``docs/mapping.md``."""

    bank: str | None = None
    default_location: str | None = None
    emotions: dict[Name, PlanePoint] = Field(default_factory=dict)
    locations: dict[str, Location] = Field(default_factory=dict)
    cues: dict[str, CueMapping] = Field(default_factory=dict)
    conditioning: Conditioning = Conditioning()
    transitions: list[TransitionRule] | None = None
    stingers: dict[Name, StingerMapping] = Field(default_factory=dict)
    smoothing: Smoothing = Smoothing()



# ---------------------------------------------------------------------------- the resolved mapping


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


def _interpolate(points: list[tuple[float, float]], x: float) -> float:
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


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
        mode = None
        if spec.mode == "valence":
            mode = "major" if valence >= spec.major_from_valence else "minor"
        return PartConditioning(mode, _interpolate(spec.density_notes_per_beat, arousal),
                                int(round(_interpolate(spec.velocity, arousal))),
                                _interpolate(spec.register_semitones, valence),
                                None if spec.guidance_scale is None else float(spec.guidance_scale))

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


# ---------------------------------------------------------------------------- checks against the bank


def _close(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(kind: str, name: object, allowed: list[str], extra: str = "") -> str:
    shown = ", ".join(allowed) or "none defined"
    return f"unknown {kind} {name!r} (allowed: {extra}{shown}){_close(str(name), allowed)}"


def reference_problems(data: dict[str, Any], bank: CueBank) -> list[tuple[tuple, str]]:
    """Names in a (possibly invalid) mapping's raw data that the bank does
    not have: ``[(key path, message)]``. Works on raw data so that these are
    reported together with field errors."""
    problems: list[tuple[tuple, str]] = []
    cue_names = [cue.name for cue in bank.cues]
    segment_names = [segment.name for segment in bank.segments]
    layers = {cue.name: [layer.name for layer in cue.layers] for cue in bank.cues + bank.segments}
    stingers = [stinger.name for stinger in bank.stingers]
    locations = data.get("locations") if isinstance(data.get("locations"), dict) else {}
    default = data.get("default_location")
    if isinstance(default, str) and default not in locations:
        problems.append((("default_location",), _unknown("location", default, sorted(locations))))
    for location, table in locations.items():
        cues = table.get("cues") if isinstance(table, dict) else None
        names = cues if isinstance(cues, list) else list(cues) if isinstance(cues, dict) else []
        for name in names:
            if isinstance(name, str) and name not in cue_names:
                problems.append((("locations", location, "cues", name), _unknown("cue", name, cue_names)))
    cue_table = data.get("cues") if isinstance(data.get("cues"), dict) else {}
    for name, spec in cue_table.items():
        if name not in layers:
            problems.append((("cues", name), _unknown("cue or segment", name, cue_names + segment_names)))
            continue
        if not isinstance(spec, dict):
            continue
        for layer in spec.get("layers", {}) if isinstance(spec.get("layers"), dict) else {}:
            if layer not in layers[name]:
                problems.append((("cues", name, "layers", layer),
                                 _unknown("layer", layer, layers[name]).replace(" (allowed", f" of {name!r} (allowed", 1)))
        if spec.get("bpm_range") is not None and name in cue_names:
            cue = bank.playable_cue(name)
            if any(isinstance(layer.source, StemSource) for layer in cue.layers):
                stems = ", ".join(layer.name for layer in cue.layers if isinstance(layer.source, StemSource))
                problems.append((("cues", name, "bpm_range"), f"cue {name!r} plays audio stems ({stems}), which "
                                 "cannot change tempo (allowed: bpm_range only on cues of MIDI and generated layers)"))
    transitions = data.get("transitions")
    for index, rule in enumerate(transitions if isinstance(transitions, list) else []):
        if not isinstance(rule, dict):
            continue
        for end in ("from", "to"):
            name = rule.get(end, WILDCARD)
            if isinstance(name, str) and name != WILDCARD and name not in cue_names:
                problems.append((("transitions", index, end), _unknown("cue", name, cue_names, "'*' or ")))
        bridge = rule.get("bridge")
        if isinstance(bridge, dict) and bridge.get("kind") == "segment":
            segment = bridge.get("segment")
            if isinstance(segment, str) and segment not in segment_names:
                problems.append((("transitions", index, "bridge", "segment"), _unknown("segment", segment, segment_names)))
    stinger_table = data.get("stingers") if isinstance(data.get("stingers"), dict) else {}
    for name, spec in stinger_table.items():
        source = spec.get("source", name) if isinstance(spec, dict) else name
        if isinstance(source, str) and source not in stingers:
            key = ("stingers", name, "source") if isinstance(spec, dict) and "source" in spec else ("stingers", name)
            problems.append((key, _unknown("bank stinger", source, stingers)))
    return problems


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`check_mapping`: ``line`` (1-based, 0 when not
    known), the dotted ``key`` and the ``message`` (what is wrong, what is allowed)."""

    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.message}"


def warnings_for(resolved: ResolvedMapping) -> list[tuple[tuple, str]]:
    """Things that are legal but probably wrong: cues never chosen anywhere on
    the plane at a location, cues no location offers, overlapping regions,
    layers that never sound, transition rules from a cue to itself."""
    found: list[tuple[tuple, str]] = []
    mapping, bank = resolved.mapping, resolved.bank
    axis = [-1.0 + 2.0 * i / (PLANE_GRID_POINTS - 1) for i in range(PLANE_GRID_POINTS)]
    names = list(mapping.locations) or [""]
    for location in names:
        areas = resolved.areas(location)
        won = {resolved.choose_cue(v, a, location, None) for v in axis for a in axis}
        for area in areas:
            if area.cue not in won:
                key = ("locations", location, "cues", area.cue) if mapping.locations else ("cues", area.cue)
                found.append((key, f"cue {area.cue!r} is never chosen: every point of the plane is nearer another "
                                   "cue's point or region (move its point, or give it a region)"))
        regions = [a for a in areas if a.region is not None]
        for i, first in enumerate(regions):
            for second in regions[i + 1:]:
                r1, r2 = first.region, second.region
                assert r1 is not None and r2 is not None
                if (min(r1.valence[1], r2.valence[1]) > max(r1.valence[0], r2.valence[0])
                        and min(r1.arousal[1], r2.arousal[1]) > max(r1.arousal[0], r2.arousal[0])):
                    found.append((("locations", location, "cues", second.cue, "region"),
                                  f"region overlaps the region of {first.cue!r}: inside both, the cue whose region "
                                  "centre is nearer plays"))
    if mapping.locations:
        offered = {cue for table in mapping.locations.values() for cue in table.cues}
        if mapping.default_location is None:
            offered |= {area.cue for area in resolved.areas("\0no location\0")}
        for cue in bank.cues:
            if cue.name not in offered:
                found.append((("cues", cue.name), f"cue {cue.name!r} is offered at no location: it plays only when "
                                                  "forced (add it to a location's cues)"))
    for cue in bank.cues + bank.segments:
        for layer in cue.layers:
            curve, _ = resolved.layer_gain(cue.name, layer.name)
            if all(gain_db <= SILENCE_DB for _, gain_db in curve.breakpoints):
                found.append((("cues", cue.name, "layers", layer.name, "gain_curve"),
                              f"layer {layer.name!r} of {cue.name!r} never sounds: its gain curve is silent at "
                              "every intensity"))
    for index, rule in enumerate(mapping.transitions or []):
        if rule.from_cue == rule.to_cue and rule.from_cue != WILDCARD:
            found.append((("transitions", index), f"a rule from {rule.from_cue!r} to itself is never used (the "
                                                  "playing cue is never asked for again)"))
    return found


# ---------------------------------------------------------------------------- TOML with line numbers

_KEY_PART = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_\-]+)\s*')


def _split_key(text: str) -> list[str] | None:
    """The parts of a dotted TOML key (``a."b.c".d``), or None if it is not one."""
    parts, position = [], 0
    while True:
        match = _KEY_PART.match(text, position)
        if match is None:
            return None
        token = match.group(1)
        parts.append(token[1:-1] if token[0] in "\"'" else token)
        position = match.end()
        if position == len(text):
            return parts
        if text[position] != ".":
            return None
        position += 1


def _scan(text: str) -> tuple[str, int]:
    """``text`` with strings blanked and the comment cut, and its bracket depth change."""
    out, depth, quote, index = [], 0, "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                quote = ""
            out.append(" " if char != quote else char)
        elif char in "\"'":
            quote = char
            out.append(char)
        elif char == "#":
            break
        else:
            depth += (char in "[{") - (char in "]}")
            out.append(char)
        index += 1
    return "".join(out), depth


def key_lines(text: str) -> dict[tuple, int]:
    """The 1-based line of every table header and key of a TOML document, by
    key path (array-of-tables entries by index: ``("transitions", 2, "exit")``).

    Neither :mod:`tomllib` nor tomlkit reports positions, so this reads the
    document's lines itself; it only has to find keys in a document that
    tomllib has already parsed. Keys inside inline tables and multi-line
    values are found at the line of the key that holds them.
    """
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()
    depth = 0
    multiline = ""

    def resolve_path(parts: list[str]) -> tuple:
        out: tuple = ()
        for part in parts:
            out += (part,)
            if out in counts:
                out += (counts[out] - 1,)
        return out

    for number, raw in enumerate(text.splitlines(), start=1):
        if multiline:
            if multiline in raw:
                multiline = ""
            continue
        if depth > 0:
            depth += _scan(raw)[1]
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parts = _split_key(line[2 : line.find("]]")])
            if parts:
                base = resolve_path(parts[:-1]) + (parts[-1],)
                counts[base] = counts.get(base, 0) + 1
                current = base + (counts[base] - 1,)
                lines.setdefault(base, number)
                lines.setdefault(current, number)
            continue
        if line.startswith("["):
            parts = _split_key(line[1 : line.find("]")])
            if parts:
                current = resolve_path(parts)
                lines.setdefault(current, number)
            continue
        cleaned, _ = _scan(line)
        if "=" not in cleaned:
            continue
        key_text = line[: cleaned.index("=")]
        parts = _split_key(key_text.rstrip())
        if not parts:
            continue
        lines.setdefault(current + tuple(parts), number)
        value = line[cleaned.index("=") + 1 :].strip()
        for quotes in ('"""', "'''"):
            if value.startswith(quotes) and value.count(quotes) == 1:
                multiline = quotes
        if not multiline:
            depth = _scan(value)[1]
    return lines


def line_of(lines: dict[tuple, int], key: tuple) -> int:
    """The line of ``key``, or of its nearest enclosing key (0: unknown)."""
    key = tuple(key)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return 0


def dotted(key: tuple) -> str:
    """A key path as text: ``locations.forest.cues.explore`` / ``transitions[2].exit``."""
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part)
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                name = json.dumps(name)
            text += ("." if text else "") + name
    return text or "(top level)"


# ---------------------------------------------------------------------------- loading


@dataclass
class CheckResult:
    """What :func:`check_mapping` found: the resolved mapping (None if there
    are errors), every error and every warning."""

    resolved: ResolvedMapping | None
    errors: list[Problem]
    warnings: list[Problem]


def _validation_locations(error: ValidationError) -> list[tuple[tuple, str]]:
    out = []
    for item, line in zip(error.errors(include_url=False), problem_lines(error, Mapping)):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p in ("function-after",))))
        message = line.split(": ", 1)[1] if ": " in line else line
        if "is not allowed (allowed:" in message and message.endswith(")") and " (got " in message:
            message = message[: message.rindex(" (got ")]  # the value is already in the message
        out.append((loc, message))
    return out


def check_text(text: str, bank: CueBank, source: str = "<text>") -> CheckResult:
    """Check a mapping's TOML text against ``bank``: every error (TOML syntax,
    fields, names the bank does not have) and, when there are none, the warnings.
    Never raises for a bad mapping."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+)", str(error))
        return CheckResult(None, [Problem(int(match.group(1)) if match else 0, "(syntax)",
                                          f"not valid TOML: {error}")], [])
    lines = key_lines(text)
    found: list[tuple[tuple, str]] = []
    mapping = None
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        found.extend(_validation_locations(error))
    found.extend(reference_problems(data, bank))
    errors = [Problem(line_of(lines, key), dotted(key), message) for key, message in found]
    errors.sort(key=lambda p: (p.line == 0, p.line))
    if errors or mapping is None:
        return CheckResult(None, errors, [])
    resolved = resolve(mapping, bank, text=text, source=source)
    warnings = [Problem(line_of(lines, key), dotted(key), message) for key, message in warnings_for(resolved)]
    warnings.sort(key=lambda p: (p.line == 0, p.line))
    return CheckResult(resolved, [], warnings)


def read_mapping_text(path: Path | str) -> str:
    """The text of a mapping file.

    Raises:
        ConfigError: it cannot be read or is not UTF-8.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the mapping ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a mapping is TOML in UTF-8") from None


def check_mapping(path: Path | str, bank: CueBank) -> CheckResult:
    """:func:`check_text` on a file.

    Raises:
        ConfigError: the file cannot be read.
    """
    return check_text(read_mapping_text(path), bank, str(path))


def format_report(source: str, result: CheckResult) -> str:
    """Errors and warnings as lines ``FILE:LINE: error: KEY: message``."""
    out = []
    for kind, problems in (("error", result.errors), ("warning", result.warnings)):
        for problem in problems:
            where = f"{source}:{problem.line}" if problem.line else source
            out.append(f"{where}: {kind}: {problem.key}: {problem.message}")
    return "\n".join(out)


def parse_mapping_text(text: str, bank: CueBank, source: str = "<text>") -> ResolvedMapping:
    """Check and resolve a mapping's TOML text.

    Raises:
        ConfigError: every error, each with its line, key and what is allowed.
    """
    result = check_text(text, bank, source)
    if result.resolved is None:
        count = len(result.errors)
        header = f"{source}: invalid mapping ({count} problem{'s' if count != 1 else ''}):"
        raise ConfigError("\n".join([header] + [f"  {problem}" for problem in result.errors]))
    return result.resolved


def load_mapping(path: Path | str, bank: CueBank) -> ResolvedMapping:
    """Read, check and resolve a mapping file against ``bank``.

    Raises:
        ConfigError: unreadable, or invalid (every problem with its line).
    """
    return parse_mapping_text(read_mapping_text(path), bank, str(path))


def mapping_bank_path(path: Path | str) -> Path | None:
    """The bank a mapping file names (``bank = "..."``, relative to the
    mapping's folder), or None (unreadable files give None: the load reports them)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    bank = data.get("bank")
    return (path.resolve().parent / bank) if isinstance(bank, str) else None


# ---------------------------------------------------------------------------- live tuning


def split_path(path: str) -> list[str | int]:
    """A mapping key path (``locations.forest.cues.explore.region``,
    ``transitions.2.fade_beats`` or ``transitions[2].fade_beats``; a part with
    dots goes in double quotes) as its parts.

    Raises:
        ValueError: an empty or malformed path.
    """
    parts: list[str | int] = []
    for match in re.finditer(r'"([^"]*)"|\[(\d+)\]|([^.\[\]"]+)|(\.)', path):
        quoted, index, bare, dot = match.groups()
        if dot:
            continue
        if index is not None:
            parts.append(int(index))
        elif quoted is not None:
            parts.append(quoted)
        else:
            parts.append(int(bare) if bare.isdigit() else bare)
    if not parts or "".join(m.group(0) for m in re.finditer(r'"[^"]*"|\[\d+\]|[^.\[\]"]+|\.', path)) != path:
        raise ValueError(f"mapping path {path!r} is not allowed (allowed: keys separated by dots, e.g. "
                         "smoothing.hysteresis or locations.forest.cues.explore.region)")
    return parts


def parse_value(text: str) -> Any:
    """A value given as text: JSON (``0.3``, ``[[0, -60], [1, 0]]``,
    ``{"valence": [0, 1], "arousal": [-1, 0]}``), else a TOML value
    (``-inf``, ``{ valence = [0, 1], arousal = [-1, 0] }``), else the text
    itself as a string (``next_bar``)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def get_value(resolved: ResolvedMapping, path: str) -> Any:
    """The value at ``path`` in the live mapping: as written in it, else the
    default the mapping format gives, or the bank's transition table (enums
    as their names).

    Raises:
        KeyError: no such key, with the keys there are.
        ValueError: a malformed path.
    """
    parts = split_path(path)
    written = resolved.data()
    effective = _plain(resolved.mapping.model_dump(by_alias=True, exclude_none=True))
    effective.setdefault("transitions", [_plain(rule.model_dump(by_alias=True, exclude_none=True))
                                         for rule in resolved.transition_rules()])
    for source in (written, effective):
        node: Any = source
        for part in parts:
            node = _child(node, part)
            if node is _MISSING:
                break
        else:
            return node
    node = written
    for index, part in enumerate(parts):
        nxt = _child(node, part)
        if nxt is _MISSING:
            keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            raise KeyError(f"no key {dotted(tuple(parts[: index + 1]))!r} in the mapping "
                           f"(keys here: {', '.join(str(k) for k in keys) or 'none'}){_close(str(part), [str(k) for k in keys])}")
        node = nxt
    raise AssertionError("unreachable")


def _plain(value: Any) -> Any:
    import enum

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


_MISSING = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def set_value_text(text: str, path: str, value: Any) -> str:
    """The mapping TOML ``text`` with the value at ``path`` replaced (tables
    on the way created as needed), comments and layout kept (tomlkit).

    Raises:
        ValueError: a malformed path, or a path through something that is not a table or list.
    """
    import tomlkit

    parts = split_path(path)
    document = tomlkit.parse(text)
    node: Any = document
    for index, part in enumerate(parts[:-1]):
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise ValueError(f"{dotted(tuple(parts[: index + 1]))}: no such entry (allowed: an index below "
                                 f"{len(node) if isinstance(node, list) else 0})")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"{dotted(tuple(parts[:index]))} is not a table, so it has no key {part!r}")
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise ValueError(f"{dotted(tuple(parts))}: no such entry")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise ValueError(f"{dotted(tuple(parts[:-1]))} is not a table, so it has no key {last!r}")
        node[last] = value
    return tomlkit.dumps(document)


@dataclass(frozen=True)
class MappingChange:
    """An input: play by another mapping from the next bar line on.

    ``text`` is the new mapping's TOML (stored in recordings); ``resolved`` is
    it checked against the session's bank (filled in by the session when only
    the text is given, as on replay)."""

    text: str
    resolved: ResolvedMapping | None = None
    source: str = "<live>"
