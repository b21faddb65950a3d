"""The mapping file's schema: what a sound designer may write (docs/mapping.md),
as frozen pydantic models with the allowed range of every value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from adaptive.audience import AudienceAggregate
from adaptive.clock import Quantize
from adaptive.cue import Name, TransitionRule
from adaptive.emotion import DENSITY_NOTES_PER_BEAT, MAJOR_FROM_VALENCE, REGISTER_SEMITONES, VELOCITY
from adaptive.events import WireName
from adaptive.gain import amplitude_to_db
DEFAULT_MAPPING = Path(__file__).parent.parent / "data" / "default_bank" / "mapping.toml"
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


class ConditioningMode(WireName):
    """Which mode a generated part is asked for (``[conditioning] mode``)."""

    CUE = "cue"
    """The cue's own mode."""
    VALENCE = "valence"
    """Major at valence >= ``major_from_valence``, minor below."""


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

    mode: ConditioningMode = ConditioningMode.CUE
    guidance_scale: Number | None = Field(None, ge=0.0, le=8.0)
    major_from_valence: Number = Field(MAJOR_FROM_VALENCE, ge=-1.0, le=1.0)
    density_notes_per_beat: Curve = Field(default_factory=lambda: list(DENSITY_NOTES_PER_BEAT))
    velocity: Curve = Field(default_factory=lambda: list(VELOCITY))
    register_semitones: Curve = Field(default_factory=lambda: list(REGISTER_SEMITONES))

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


class Start(_Frozen):
    """The scene a live server plays from its first frame, before the game
    sends anything (``[start]``): music and beat/bar callbacks at once.

    Attributes:
        emotion: a named emotion (the built-in ones or the file's ``[emotions]``).
        intensity: 0..1.
        location: where it plays (default: ``default_location``, else none).
    """

    emotion: Name = "neutral"
    intensity: Number = Field(0.5, ge=0.0, le=1.0)
    location: Name | None = None


class AudienceMapping(_Frozen):
    """How audience votes move the scene (``[audience]``; docs/audience.md).

    Attributes:
        aggregate: ``"mean"``, ``"median"`` or ``"majority"``
            (:class:`adaptive.audience.AudienceAggregate`).
        window_s: a vote counts this long after it arrived, seconds (0.1..60);
            only each voice's latest vote counts.
        interval_ms: the votes are aggregated every this many milliseconds of
            session time (10..10 000), on the frames ``k * interval``.
        weight: how much the audience moves the scene against the control
            client's own scene input (0..1): ``(1 - weight) * control +
            weight * audience`` per axis; a control client's ``audience_weight``
            replaces it at run time.
        min_votes: voices needed in the window for the audience to have a say (1..100 000).
    """

    aggregate: AudienceAggregate = AudienceAggregate.MEAN
    window_s: Number = Field(2.0, ge=0.1, le=60.0)
    interval_ms: Number = Field(250.0, ge=10.0, le=10_000.0)
    weight: Number = Field(1.0, ge=0.0, le=1.0)
    min_votes: int = Field(1, ge=1, le=100_000)

    def window_frames(self, sample_rate_hz: int) -> int:
        """``window_s`` in frames (at least 1)."""
        return max(1, round(self.window_s * sample_rate_hz))

    def interval_frames(self, sample_rate_hz: int) -> int:
        """``interval_ms`` in frames (at least 1)."""
        return max(1, round(self.interval_ms * sample_rate_hz / 1000.0))


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
    start: Start = Start()
    audience: AudienceMapping = AudienceMapping()



