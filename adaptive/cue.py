"""The cue bank: what can play. Frozen, validated configuration (pydantic).

A bank is a TOML file (see ``docs/cue-bank.md``) holding

* **cues** — one musical state each: tempo (bpm), meter, key, chords, loop
  length in bars, a point on the valence/arousal plane, and layers;
* **layers** — a source (an audio stem file, a MIDI part rendered through
  FluidSynth with a General MIDI program, or a generated part), a gain curve
  over intensity and a fade length in beats;
* **segments** — authored bridges, cues that play once between two cues;
* **stingers** — short one-shot phrases quantized to the grid;
* **transitions** — rules looked up by (from cue, to cue) with a ``"*"`` wildcard.

File paths inside a bank are relative to the bank file's folder.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adaptive.clock import Quantize
from adaptive.events import WireName
from adaptive.gain import GainCurve
from adaptive.harmony import Chord, Key

class Role(WireName):
    """What a generated part plays (a generator is asked for one role per part)."""

    MELODY = "melody"
    ARPEGGIO = "arpeggio"
    BASS = "bass"


DEFAULT_BANK = Path(__file__).parent / "data" / "default_bank" / "bank.toml"
"""The embedded default cue bank."""

WILDCARD = "*"
"""Matches any cue in a transition rule."""

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MidiSource(_Frozen):
    """A MIDI part: one track of a Standard MIDI File, rendered live by FluidSynth.

    ``track`` is the track name (``track_name`` meta event); its notes' times
    are read in beats (ticks / ticks per beat), from beat 0 of the cue.
    """

    kind: Literal["midi"]
    file: str
    track: str


class RenderedFrom(_Frozen):
    """Where a stem that is rendered on first use comes from: a MIDI track and
    the General MIDI program (0..127) or percussion kit it is rendered with."""

    file: str
    track: str
    program: int = Field(0, ge=0, le=127)
    percussion: bool = False
    tail_seconds: float = Field(2.0, ge=0.0, le=30.0, allow_inf_nan=False)


class StemSource(_Frozen):
    """An audio stem (WAV, FLAC or OGG, any sample rate: resampled on load).

    The stem loops every ``loop_bars`` bars of its cue; audio past the loop
    length is a tail, mixed over the next loop's start. With ``rendered_from``,
    the file is rendered from the project's MIDI into the stem cache on first
    use and ``file`` names the cached file.
    """

    kind: Literal["stem"]
    file: str
    rendered_from: RenderedFrom | None = None


class GeneratedSource(_Frozen):
    """A part made while playing by a part generator, bar by bar, following the
    cue's key and chords and the current emotion.

    ``generator`` names a registered generator (``"model"``, the Transformer
    of ``models/``, or ``"rule_based"``, the simple rule-based arpeggiator);
    omitted, the session's generator plays it (``--generator``). ``role`` is
    ``"melody"``, ``"arpeggio"`` or ``"bass"``. ``style`` (one of
    :data:`adaptive.generator.STYLES`; omitted: the generator's default, game
    music) asks the model to write in the manner of one of its corpora.
    """

    kind: Literal["generated"]
    generator: str | None = None
    role: Role = Role.ARPEGGIO
    style: str | None = None

    @field_validator("style")
    @classmethod
    def _known_style(cls, style: str | None) -> str | None:
        from adaptive.generator import STYLES

        if style is not None and style not in STYLES:
            raise ValueError(f"unknown style {style!r} (allowed: {', '.join(STYLES)})")
        return style

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, name: str | None) -> str | None:
        from adaptive.registry import GENERATORS

        if name is not None and name not in GENERATORS:
            raise ValueError(f"unknown generator {name!r} (allowed: {', '.join(sorted(GENERATORS))})")
        return name


class ThemePart(WireName):
    """What a theme layer plays: the theme's varied melody, or an accompaniment
    written by a part generator under the theme's re-harmonized chords."""

    MELODY = "melody"
    ACCOMPANIMENT = "accompaniment"


class ThemeSource(_Frozen):
    """A layer that plays a theme of the bank (``[themes.NAME]``), varied bar
    by bar for the current emotion, intensity and the cue's key and meter
    (:mod:`adaptive.variation`). Written ``source = { theme = "hero" }``
    (``kind = "theme"`` is implied).

    ``part`` is ``"melody"`` (the varied theme) or ``"accompaniment"`` (a part
    generator's ``role`` part under the theme's re-harmonized chords, by
    ``generator`` as for generated layers; omitted: the session's).
    """

    kind: Literal["theme"] = "theme"
    theme: Name
    part: ThemePart = ThemePart.MELODY
    role: Role = Role.ARPEGGIO
    generator: str | None = None

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, name: str | None) -> str | None:
        return GeneratedSource._known_generator(name)


def _imply_theme_kind(value: object) -> object:
    """``{ theme = "hero" }`` is a theme source: add the implied ``kind``."""
    if isinstance(value, dict) and "kind" not in value and "theme" in value:
        return {**value, "kind": "theme"}
    return value


LayerSource = Annotated[Union[MidiSource, StemSource, GeneratedSource, ThemeSource], Field(discriminator="kind")]


class Layer(_Frozen):
    """One layer of a cue (vertical layering).

    Attributes:
        name: unique within the cue.
        source: where the audio or notes come from.
        program: General MIDI program 0..127 for MIDI and generated parts.
        percussion: play on the General MIDI percussion channel (channel 10).
        gain_curve: ``[[intensity, gain_db], ...]``, intensity strictly
            increasing in [0, 1], gain in dB (``-inf`` = silent, at most +12).
        fade_beats: length in beats of the equal-power ramp when intensity
            changes this layer's gain (0..64).
        max_voices: how many synthesizer voices the part may sound at once
            (1..1024, default 64); beyond it the quietest released voices end.
    """

    name: Name
    source: LayerSource
    program: int = Field(0, ge=0, le=127)
    percussion: bool = False
    max_voices: int = Field(64, ge=1, le=1024)
    gain_curve: list[tuple[float, float]] = Field(default_factory=lambda: [(0.0, 0.0), (1.0, 0.0)])
    fade_beats: float = Field(1.0, ge=0.0, le=64.0, allow_inf_nan=False)

    @field_validator("source", mode="before")
    @classmethod
    def _theme_shorthand(cls, value: object) -> object:
        return _imply_theme_kind(value)

    @field_validator("gain_curve")
    @classmethod
    def _check_curve(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if not points:
            raise ValueError("gain_curve needs at least one [intensity, gain_db] point")
        previous = -1.0
        for intensity, gain_db in points:
            if not 0.0 <= intensity <= 1.0 or math.isnan(intensity):
                raise ValueError(f"intensity {intensity} is outside 0..1")
            if intensity <= previous:
                raise ValueError("intensities must be strictly increasing")
            if math.isnan(gain_db) or gain_db > 12.0:
                raise ValueError(f"gain_db {gain_db} is not allowed (allowed: -inf up to +12 dB)")
            previous = intensity
        return points

    @property
    def curve(self) -> GainCurve:
        """The gain curve as a :class:`GainCurve`."""
        return GainCurve(tuple(self.gain_curve))


class Meter(_Frozen):
    """Time signature: ``beats_per_bar`` beats of ``beat_unit`` notes."""

    beats_per_bar: int = Field(ge=1, le=16)
    beat_unit: Literal[2, 4, 8] = 4


def _parse_meter(value: object) -> object:
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return {"beats_per_bar": int(parts[0]), "beat_unit": int(parts[1])}
        raise ValueError(f"meter {value!r} is not of the form '4/4' or '3/4'")
    return value


class _InKeyAndMeter(_Frozen):
    """Checks shared by what is written in a key and a meter (cues, themes):
    ``meter`` may be given as text (``"6/8"``), ``key`` must parse as a
    :class:`~adaptive.harmony.Key`."""

    @field_validator("meter", mode="before", check_fields=False)
    @classmethod
    def _meter_from_text(cls, value: object) -> object:
        return _parse_meter(value)

    @field_validator("key", check_fields=False)
    @classmethod
    def _check_key(cls, text: str) -> str:
        Key.parse(text)
        return text


class Cue(_InKeyAndMeter):
    """One musical state: tempo, meter, key, chords, loop length and layers.

    Attributes:
        name: unique in the bank.
        bpm: tempo, 20..300 beats per minute.
        meter: time signature, written ``"4/4"``.
        key: e.g. ``"D minor"``.
        chords: chord symbols, one per bar, repeating over the loop
            (e.g. ``["Dm", "Bb", "F", "C"]``), or two in one entry for a
            bar that changes chord at its half (``"F G"``); empty = the tonic
            triad.
        loop_bars: the loop length in bars (1..256).
        phrase_bars: bars per phrase, the grid of :attr:`Quantize.NEXT_PHRASE`.
        valence, arousal: the cue's point on the emotion plane, each in [-1, 1].
        locations: locations where the cue may play; empty = everywhere.
        gain_db: the cue's overall gain (-60..+12 dB).
        layers: at least one.
    """

    name: Name
    bpm: float = Field(ge=20.0, le=300.0, allow_inf_nan=False)
    meter: Annotated[Meter, Field()] = Meter(beats_per_bar=4)
    key: str = "C major"
    chords: list[str] = Field(default_factory=list)
    loop_bars: int = Field(8, ge=1, le=256)
    phrase_bars: int = Field(4, ge=1, le=256)
    valence: float = Field(0.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    arousal: float = Field(0.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    locations: list[str] = Field(default_factory=list)
    gain_db: float = Field(0.0, ge=-60.0, le=12.0, allow_inf_nan=False)
    layers: list[Layer] = Field(min_length=1, max_length=16)

    @field_validator("chords")
    @classmethod
    def _check_chords(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            halves = symbol.split()
            if not 1 <= len(halves) <= 2:
                raise ValueError(f"chord entry {symbol!r}: one chord per bar, or two separated by a space "
                                 "(first and second half of the bar, e.g. 'F G')")
            for half in halves:
                Chord.parse(half)
        return symbols

    @model_validator(mode="after")
    def _unique_layers(self) -> "Cue":
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"layer names must be unique within a cue; repeated: {', '.join(duplicates)}")
        return self

    @property
    def parsed_key(self) -> Key:
        """The key as a :class:`~adaptive.harmony.Key`."""
        return Key.parse(self.key)

    def chord_at_bar(self, bar: int) -> Chord:
        """Chord of bar ``bar`` (0-based, repeating over the chord list); for
        a bar of two chords, the first."""
        return self.chords_at_bar(bar)[0]

    def chords_at_bar(self, bar: int) -> tuple[Chord, Chord | None]:
        """The chord of bar ``bar`` and the chord from its half on (None when
        the bar keeps one chord). An entry ``"F G"`` in ``chords`` is such a
        bar: F, then G from the half bar."""
        if not self.chords:
            key = self.parsed_key
            return Chord.parse(_tonic_triad_symbol(key)), None
        halves = self.chords[bar % len(self.chords)].split()
        return Chord.parse(halves[0]), (Chord.parse(halves[1]) if len(halves) == 2 else None)


_PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _tonic_triad_symbol(key: Key) -> str:
    suffix = "" if key.mode.value == "major" else "m"
    return _PITCH_CLASS_NAMES[key.tonic_pitch_class] + suffix


class GeneratedStingerSource(_Frozen):
    """A stinger made by a part generator: a phrase of ``beats`` beats (0.25..16)
    in the playing cue's key, on its tonic chord, expressing the current
    emotion. It is generated ahead in the background (again when the playing
    cue changes or the emotion moves), so a trigger never waits; if it is not
    ready, the rule-based generator's phrase plays (a counted miss).

    ``role`` is ``"melody"``, ``"arpeggio"`` or ``"bass"``; ``generator`` as
    for generated layers (omitted: the session's generator).
    """

    kind: Literal["generated"]
    beats: float = Field(2.0, ge=0.25, le=16.0, allow_inf_nan=False)
    role: Role = Role.MELODY
    generator: str | None = None

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, name: str | None) -> str | None:
        return GeneratedSource._known_generator(name)


class ThemeStingerSource(_Frozen):
    """A stinger that plays the head motif of a bank theme (its first
    ``bars`` bars, default the theme's ``head_bars``), varied for the current
    emotion, in the playing cue's key and meter. Written
    ``source = { theme = "hero" }``."""

    kind: Literal["theme"] = "theme"
    theme: Name
    bars: int | None = Field(None, ge=1, le=16)


StingerSource = Annotated[Union[MidiSource, GeneratedStingerSource, ThemeStingerSource], Field(discriminator="kind")]


class ThemeSpec(_InKeyAndMeter):
    """A theme of the bank (``[themes.NAME]``): a melody with its chords,
    varied by the engine for the emotion, intensity and cue that play it
    (:mod:`adaptive.variation`).

    Attributes:
        file: a type 0/1 Standard MIDI File, relative to the bank's folder.
        melody: the track (``track_name``) holding the melody, one note at a
            time (overlaps are cut at the next note's start).
        chords: the chords: a track name of the same file (its notes are
            read as one chord per half bar), or chord symbols, one entry per
            bar as for cues (``"F G"``: two chords in the bar).
        key: the key the theme is written in (e.g. ``"D major"``).
        meter: its time signature (``"4/4"``); beats are the file's quarter notes.
        head_bars: the bars of its head motif (what a theme stinger and a
            bridge quote), 1..8.
        program: General MIDI program of the theme when it plays as a stinger
            or in a bridge (0..127).
        quantize: where a theme asked for by the game lands (as a stinger).
        gain_db: its gain as a stinger, -60..+12 dB.
    """

    file: str
    melody: str = "melody"
    chords: str | list[str] = "chords"
    key: str
    meter: Annotated[Meter, Field()] = Meter(beats_per_bar=4)
    head_bars: int = Field(2, ge=1, le=8)
    program: int = Field(0, ge=0, le=127)
    quantize: Quantize = Quantize.NEXT_BAR
    gain_db: float = Field(0.0, ge=-60.0, le=12.0, allow_inf_nan=False)

    @field_validator("chords")
    @classmethod
    def _check_chords(cls, chords: str | list[str]) -> str | list[str]:
        if isinstance(chords, list):
            if not chords:
                raise ValueError("chords: give a track name or at least one chord symbol per bar")
            Cue._check_chords(chords)
        return chords

    @property
    def parsed_key(self) -> Key:
        """The key as a :class:`~adaptive.harmony.Key`."""
        return Key.parse(self.key)


class Stinger(_Frozen):
    """A short one-shot phrase mixed on top of the music.

    Attributes:
        name: unique in the bank.
        source: a MIDI part (times in beats; it plays at the current cue's
            tempo) or a generated phrase (:class:`GeneratedStingerSource`).
        program / percussion: as for layers.
        quantize: where it lands on the playing cue's grid.
        key: the key it is written in; when set, it is transposed to the
            playing cue's key (by at most a tritone).
        gain_db: -60..+12 dB.
    """

    name: Name
    source: StingerSource
    program: int = Field(0, ge=0, le=127)
    percussion: bool = False
    max_voices: int = Field(64, ge=1, le=1024)
    quantize: Quantize = Quantize.NEXT_BEAT

    @field_validator("source", mode="before")
    @classmethod
    def _theme_shorthand(cls, value: object) -> object:
        return _imply_theme_kind(value)

    key: str | None = None
    gain_db: float = Field(0.0, ge=-60.0, le=12.0, allow_inf_nan=False)

    @field_validator("key")
    @classmethod
    def _check_key(cls, text: str | None) -> str | None:
        if text is not None:
            Key.parse(text)
        return text


class BridgeKind(enum.Enum):
    """What plays between the outgoing and the incoming cue."""

    NONE = "none"
    SEGMENT = "segment"  # an authored segment from the bank's [[segments]]
    GENERATED = "generated"  # N bars made by a part generator


class Bridge(_Frozen):
    """The bridge of a transition: none, an authored segment, or N generated bars."""

    kind: BridgeKind = BridgeKind.NONE
    segment: str | None = None
    bars: int = Field(2, ge=1, le=16)

    @model_validator(mode="after")
    def _segment_named(self) -> "Bridge":
        if self.kind is BridgeKind.SEGMENT and not self.segment:
            raise ValueError("a bridge of kind 'segment' needs segment = '<segment name>'")
        return self


class TransitionRule(_Frozen):
    """How to move from one cue to another (Wwise's transition matrix,
    Godot's AudioStreamInteractive transition table).

    Attributes:
        from_cue / to_cue: cue names or ``"*"`` (written ``from`` and ``to``).
        exit: when to leave the playing cue.
        fade_beats: crossfade length in beats of the outgoing cue (0..32);
            0 is a cut, softened by a 5 ms declick fade.
        bridge: what plays in between.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_cue: str = Field(WILDCARD, alias="from")
    to_cue: str = Field(WILDCARD, alias="to")
    exit: Quantize = Quantize.NEXT_BAR
    fade_beats: float = Field(1.0, ge=0.0, le=32.0, allow_inf_nan=False)
    bridge: Bridge = Bridge()


class CueBank(_Frozen):
    """Everything that can play. See the module docstring.

    Attributes:
        name: the bank's name.
        folder: the folder that relative file paths are resolved against (set
            by the loader, not written in the file).
    """

    name: str = "bank"
    folder: Path = Path(".")
    cues: list[Cue] = Field(min_length=1)
    segments: list[Cue] = Field(default_factory=list)
    stingers: list[Stinger] = Field(default_factory=list)
    transitions: list[TransitionRule] = Field(default_factory=list)
    themes: dict[Name, ThemeSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_references(self) -> "CueBank":
        problems = reference_problems(self.model_dump(by_alias=True, mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def cue(self, name: str) -> Cue:
        """The cue (or segment) called ``name``.

        Raises:
            KeyError: with the allowed names.
        """
        for cue in self.cues + self.segments:
            if cue.name == name:
                return cue
        raise KeyError(f"unknown cue {name!r} (allowed: {', '.join(c.name for c in self.cues)})")

    def playable_cue(self, name: str) -> Cue:
        """The cue called ``name``; segments only play inside transitions.

        Raises:
            KeyError: an unknown name or a segment, with the allowed cue names.
        """
        for cue in self.cues:
            if cue.name == name:
                return cue
        raise KeyError(f"unknown cue {name!r} (allowed: {', '.join(c.name for c in self.cues)})")

    def stinger(self, name: str) -> Stinger:
        """The stinger called ``name``.

        Raises:
            KeyError: with the allowed names.
        """
        for stinger in self.stingers:
            if stinger.name == name:
                return stinger
        allowed = ", ".join(s.name for s in self.stingers) or "none defined"
        raise KeyError(f"unknown stinger {name!r} (allowed: {allowed})")

    def theme(self, name: str) -> ThemeSpec:
        """The theme called ``name``.

        Raises:
            KeyError: with the allowed names.
        """
        if name in self.themes:
            return self.themes[name]
        allowed = ", ".join(sorted(self.themes)) or "none defined"
        raise KeyError(f"unknown theme {name!r} (allowed: {allowed})")

    def path(self, relative: str) -> Path:
        """A bank-relative file path resolved against :attr:`folder`."""
        return (self.folder / relative).resolve()


def _names(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    return [item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)]


def reference_problems(data: dict) -> list[str]:
    """Problems with names in a (possibly invalid) bank's raw data: repeated
    cue, segment or stinger names, transitions naming unknown cues, bridges
    naming unknown segments. Works on raw dicts so that it can report these
    together with field errors."""
    problems: list[str] = []
    cue_names = _names(data.get("cues"))
    segment_names = _names(data.get("segments"))
    for label, names in (("cue", cue_names + segment_names), ("stinger", _names(data.get("stingers")))):
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{label} name {name!r} is used more than once (names must be unique)")
    themes = data.get("themes")
    theme_names = sorted(themes) if isinstance(themes, dict) else []
    for section in ("cues", "segments", "stingers"):
        entries = data.get(section)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            sources = [(f"{section}[{index}].source", entry.get("source"))]
            layers = entry.get("layers")
            for layer_index, layer in enumerate(layers if isinstance(layers, list) else []):
                if isinstance(layer, dict):
                    sources.append((f"{section}[{index}].layers[{layer_index}].source", layer.get("source")))
            for where, source in sources:
                if isinstance(source, dict) and source.get("kind", "theme") == "theme" \
                        and isinstance(source.get("theme"), str) and source["theme"] not in theme_names:
                    allowed = ", ".join(theme_names) or "none defined: add a [themes.NAME] table"
                    problems.append(f"{where}.theme: unknown theme {source['theme']!r} (allowed: {allowed})")
    transitions = data.get("transitions")
    for index, rule in enumerate(transitions if isinstance(transitions, list) else []):
        if not isinstance(rule, dict):
            continue
        for end in ("from", "to"):
            name = rule.get(end, WILDCARD)
            if isinstance(name, str) and name != WILDCARD and name not in cue_names:
                problems.append(
                    f"transitions[{index}].{end}: unknown cue {name!r} "
                    f"(allowed: '*' or one of {', '.join(sorted(cue_names))})"
                )
        bridge = rule.get("bridge")
        if isinstance(bridge, dict) and bridge.get("kind") == "segment":
            segment = bridge.get("segment")
            if isinstance(segment, str) and segment not in segment_names:
                allowed = ", ".join(sorted(segment_names)) or "none defined"
                problems.append(
                    f"transitions[{index}].bridge.segment: unknown segment {segment!r} (allowed: {allowed})"
                )
    return problems


def load_bank(path: Path | str) -> CueBank:
    """Read and validate a cue bank TOML file.

    Args:
        path: the bank file; relative paths inside it resolve against its folder.

    Returns:
        The validated, frozen :class:`CueBank`.

    Raises:
        ConfigError: the file is missing, not TOML (with the line), or invalid
            (every problem, each with its entry and what is allowed).
    """
    import tomllib

    from pydantic import ValidationError

    from adaptive.errors import ConfigError, format_problems, problem_lines

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the cue bank ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a cue bank is TOML in UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    data["folder"] = path.resolve().parent
    try:
        return CueBank.model_validate(data)
    except ValidationError as error:
        lines = problem_lines(error, CueBank, skip_top_level=True) + reference_problems(data)
        raise ConfigError(format_problems(path, "cue bank", lines)) from None
