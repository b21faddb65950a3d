"""The session recording's format: one pydantic model per kind of line, each
with its defaults and its checks in one place. Writing a line is
``model_dump``; reading one is ``model_validate``, and every problem comes
back as ``line N: <key> <what is wrong, what is allowed>``.

The format (JSON Lines, UTF-8) is described in :mod:`adaptive.recording`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, model_validator

from adaptive.audience import VOICE_CHARS, AudienceVote, AudienceWeight
from adaptive.generation import FallbackReason, GenerationFallback
from adaptive.mapping import MappingChange
from adaptive.scene import SceneUpdate, SessionInput, StingerTrigger, ThemeTrigger

RECORDING_FORMAT = "adaptive-recording"
RECORDING_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
"""Versions :func:`adaptive.recording.load_recording` reads (1: before generation
settings and fallbacks; 2: before ``mapping_set`` lines; 3: before
``audience_vote`` and ``audience_weight`` lines)."""
FALLBACK_REASONS = tuple(reason.value for reason in FallbackReason)
SCENE_FIELDS = ("emotion", "valence", "arousal", "intensity", "location", "cue")
"""The fields of a ``"scene"`` line besides ``frame`` and ``type`` (see :class:`SceneUpdate`)."""


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(test: Any, message: str) -> BeforeValidator:
    """A field check: ``test(value)`` must hold, else ``message`` (formatted
    with ``value``) follows the key in the problem."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if not test(value):
            raise ValueError(message.format(value=value, generators=_generators() if "{generators}" in message else ""))
        return value

    return BeforeValidator(check)


_Text = Annotated[str, _check(lambda v: isinstance(v, str), "{value!r} must be a string")]
"""A field that must be a string."""
_OptionalText = Annotated[str | None, _check(lambda v: v is None or isinstance(v, str), "{value!r} must be a string or null")]
"""A field that must be a string or null."""


def _registered_generator(name: Any) -> bool:
    from adaptive.registry import GENERATORS

    return name in GENERATORS


def _generators() -> str:
    from adaptive.registry import GENERATORS

    return ", ".join(GENERATORS)


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: {allowed})"
    missing_text: ClassVar[str] = "{key} is missing"
    invalid_text: ClassVar[str | None] = None
    """One message for any bad value but the frame (None: a message per field)."""

    @classmethod
    def allowed(cls) -> str:
        return ", ".join(cls.model_fields)


Frame = Annotated[int, _check(lambda v: _is_integer(v) and v >= 0, "{value!r} must be an integer >= 0 (session frames)")]


class RecordingHeader(_Line):
    """The first line: what a recording needs to be replayed.

    Attributes:
        bank: path of the cue bank file (TOML).
        soundfont: path of the SoundFont the session used.
        sample_rate_hz: the session's sample rate (Hz).
        seed: the session's seed.
        generator: the session's generator name (see :data:`adaptive.registry.GENERATORS`).
        bars_ahead: bars generated layers asked for ahead.
        speculative_bridges: bridges generated ahead per cue.
        mapping: the TOML text of the mapping the session started with (None: the bank's own).
    """

    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: {sorted_allowed})"

    format: Annotated[str, _check(lambda v: v == RECORDING_FORMAT,
                                  f"{{value!r}} is not {RECORDING_FORMAT!r} (not a session recording?)")] = RECORDING_FORMAT
    version: Annotated[int, _check(lambda v: v in READABLE_VERSIONS,
                                   "{value!r} is not supported (allowed: "
                                   + ", ".join(map(str, READABLE_VERSIONS)) + ")")] = RECORDING_VERSION
    bank: Annotated[str, _check(lambda v: isinstance(v, str), "{value!r} must be a path (a string)")]
    soundfont: Annotated[str | None, _check(lambda v: v is None or isinstance(v, str),
                                            "{value!r} must be a path (a string) or null")] = None
    sample_rate_hz: Annotated[int, _check(lambda v: _is_integer(v) and 8_000 <= v <= 192_000,
                                          "{value!r} is out of range (allowed: an integer from 8000 to 192000)")]
    seed: Annotated[int, _check(_is_integer, "{value!r} must be an integer")]
    generator: Annotated[str, _check(_registered_generator, "{value!r} is not known (allowed: {generators})")] = "rule_based"
    bars_ahead: Annotated[int, _check(lambda v: _is_integer(v) and 1 <= v <= 16,
                                      "{value!r} is out of range (allowed: an integer from 1 to 16)")] = 1
    speculative_bridges: Annotated[int, _check(lambda v: _is_integer(v) and 0 <= v <= 16,
                                               "{value!r} is out of range (allowed: an integer from 0 to 16)")] = 2
    mapping: Annotated[str | None, _check(lambda v: v is None or isinstance(v, str),
                                          "must be the mapping's TOML text (a string) or null")] = None

    def to_json(self) -> dict[str, Any]:
        """The header line as a JSON object (the current version; no ``mapping`` key when it is None)."""
        data = self.model_dump()
        data["version"] = RECORDING_VERSION
        if data["mapping"] is None:
            del data["mapping"]
        return data


class SceneLine(_Line):
    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, " + ", ".join(SCENE_FIELDS) + ")"

    frame: Frame
    type: Literal["scene"] = "scene"
    emotion: _OptionalText = None
    valence: Annotated[int | float | None, _check(lambda v: v is None or _is_number(v), "{value!r} must be a number or null")] = None
    arousal: Annotated[int | float | None, _check(lambda v: v is None or _is_number(v), "{value!r} must be a number or null")] = None
    intensity: Annotated[int | float | None, _check(lambda v: v is None or _is_number(v), "{value!r} must be a number or null")] = None
    location: _OptionalText = None
    cue: _OptionalText = None

    def item(self) -> SceneUpdate:
        return SceneUpdate(**{name: getattr(self, name) for name in SCENE_FIELDS})


class StingerLine(_Line):
    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, name)"

    frame: Frame
    type: Literal["stinger"] = "stinger"
    name: _Text

    def item(self) -> StingerTrigger:
        return StingerTrigger(self.name)


class ThemeLine(_Line):
    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, name)"

    frame: Frame
    type: Literal["theme"] = "theme"
    name: _Text

    def item(self) -> ThemeTrigger:
        return ThemeTrigger(self.name)


class MappingLine(_Line):
    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, source, toml)"

    frame: Frame
    type: Literal["mapping"] = "mapping"
    source: _Text = "<recording>"
    toml: Annotated[str, _check(lambda v: isinstance(v, str), "{value!r} must be the mapping's TOML text (a string)")]

    def item(self) -> MappingChange:
        return MappingChange(self.toml, None, self.source)


class MappingSetLine(_Line):
    """A live-tuning change: one value set (the whole mapping is not stored;
    replay rebuilds it from the mapping before, see :mod:`adaptive.recording`).
    ``sha256``: the first 16 hex digits of the SHA-256 of the mapping's UTF-8
    text after the change, so a replay that rebuilds another text says so."""

    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, source, path, value, sha256)"

    frame: Frame
    type: Literal["mapping_set"] = "mapping_set"
    source: _Text = "<live>"
    path: Annotated[str, _check(lambda v: isinstance(v, str) and v, "{value!r} must be a key path (a string)")]
    value: Annotated[str, _check(lambda v: isinstance(v, str), "{value!r} must be the value as text (a string)")]
    sha256: Annotated[str, _check(lambda v: isinstance(v, str) and len(v) == 16,
                                  "{value!r} must be 16 hex digits")]

    def item(self) -> MappingChange:
        """The change, its ``text`` still empty (the reader rebuilds it)."""
        return MappingChange("", None, self.source, self.path, self.value)


def mapping_digest(text: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``text`` (UTF-8): how a
    ``mapping_set`` line names the mapping it made."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _in_range(low: float) -> Any:
    return _check(lambda v: v is None or (_is_number(v) and low <= v <= 1.0),
                  "{value!r} is out of range (allowed: a number from " + f"{low:g}" + " to 1, or null)")


class AudienceVoteLine(_Line):
    """An audience vote (:class:`adaptive.audience.AudienceVote`): its voice,
    and a named ``emotion`` or a ``valence``/``arousal`` point (exactly one),
    and an ``intensity`` or null."""

    unknown_text: ClassVar[str] = ("unknown field {key!r} (allowed: frame, type, voice, emotion, valence, arousal, "
                                   "intensity)")

    frame: Frame
    type: Literal["audience_vote"] = "audience_vote"
    voice: Annotated[str, _check(lambda v: isinstance(v, str) and 0 < len(v) <= VOICE_CHARS,
                                 f"{{value!r}} must be a string of 1 to {VOICE_CHARS} characters")]
    emotion: _OptionalText = None
    valence: Annotated[int | float | None, _in_range(-1.0)] = None
    arousal: Annotated[int | float | None, _in_range(-1.0)] = None
    intensity: Annotated[int | float | None, _in_range(0.0)] = None

    @model_validator(mode="after")
    def _name_or_point(self) -> "AudienceVoteLine":
        point = (self.valence is not None, self.arousal is not None)
        if point[0] != point[1]:
            raise ValueError("valence and arousal must be given together")
        if point[0] == (self.emotion is not None):
            raise ValueError("a vote has an emotion or a valence/arousal point (allowed: exactly one of them)")
        return self

    def item(self) -> AudienceVote:
        return AudienceVote(self.voice, self.emotion, self.valence, self.arousal, self.intensity)


class AudienceWeightLine(_Line):
    """A control client's audience weight (:class:`adaptive.audience.AudienceWeight`)."""

    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: frame, type, weight)"

    frame: Frame
    type: Literal["audience_weight"] = "audience_weight"
    weight: Annotated[int | float, _check(lambda v: _is_number(v) and 0.0 <= v <= 1.0,
                                          "{value!r} is out of range (allowed: a number from 0 to 1)")]

    def item(self) -> AudienceWeight:
        return AudienceWeight(self.weight)


class FallbackLine(_Line):
    missing_text: ClassVar[str] = ("a generation_fallback line has exactly the fields bar_index, frame, part, reason, "
                                   "request, type (got {got})")
    unknown_text: ClassVar[str] = missing_text
    invalid_text: ClassVar[str | None] = ("generation_fallback needs part (a string), request and bar_index "
                                          "(integers >= 0) and reason (one of " + ", ".join(FALLBACK_REASONS) + ")")

    frame: Frame
    type: Literal["generation_fallback"] = "generation_fallback"
    part: _Text
    request: Annotated[int, _check(lambda v: _is_integer(v) and v >= 0, "{value!r} must be an integer >= 0")]
    bar_index: Annotated[int, _check(lambda v: _is_integer(v) and v >= 0, "{value!r} must be an integer >= 0")]
    reason: FallbackReason

    def fallback(self) -> GenerationFallback:
        return GenerationFallback(self.frame, self.part, self.request, self.bar_index, self.reason)


class EndLine(_Line):
    unknown_text: ClassVar[str] = "unknown field {key!r} (allowed: type, frame)"

    type: Literal["end"] = "end"
    frame: Frame


LINES: dict[str, type[_Line]] = {"scene": SceneLine, "stinger": StingerLine, "theme": ThemeLine, "mapping": MappingLine,
                                 "mapping_set": MappingSetLine, "audience_vote": AudienceVoteLine,
                                 "audience_weight": AudienceWeightLine, "generation_fallback": FallbackLine,
                                 "end": EndLine}
"""The model of each line ``type`` after the header."""


def line_json(frame: int, item: SessionInput | GenerationFallback) -> dict[str, Any]:
    """One input (or generation fallback) line as a JSON object (``frame`` in session frames)."""
    line: _Line
    if isinstance(item, GenerationFallback):
        line = FallbackLine(frame=int(frame), part=item.part, request=item.request, bar_index=item.bar_index,
                            reason=item.reason)
    elif isinstance(item, StingerTrigger):
        line = StingerLine(frame=int(frame), name=item.name)
    elif isinstance(item, ThemeTrigger):
        line = ThemeLine(frame=int(frame), name=item.name)
    elif isinstance(item, SceneUpdate):
        line = SceneLine(frame=int(frame), **{name: getattr(item, name) for name in SCENE_FIELDS})
    elif isinstance(item, AudienceVote):
        line = AudienceVoteLine(frame=int(frame), voice=item.voice, emotion=item.emotion, valence=item.valence,
                                arousal=item.arousal, intensity=item.intensity)
    elif isinstance(item, AudienceWeight):
        line = AudienceWeightLine(frame=int(frame), weight=item.weight)
    elif isinstance(item, MappingChange) and item.path is not None and item.value is not None:
        line = MappingSetLine(frame=int(frame), source=item.source, path=item.path, value=item.value,
                              sha256=mapping_digest(item.text))
    elif isinstance(item, MappingChange):
        line = MappingLine(frame=int(frame), source=item.source, toml=item.text)
    else:
        raise TypeError(f"unknown input type {type(item).__name__} (allowed: SceneUpdate, StingerTrigger, ThemeTrigger, MappingChange, "
                        "AudienceVote, AudienceWeight)")
    return line.model_dump(mode="json")


def parse_line(model: type[_Line], data: dict[str, Any]) -> tuple[_Line | None, list[str]]:
    """``data`` as a ``model`` line, or None and every problem (key, then what
    is wrong and what is allowed)."""
    try:
        return model.model_validate(data), []
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            key = str(item["loc"][0]) if item["loc"] else ""
            got = ", ".join(sorted(data))
            cause = item.get("ctx", {}).get("error")
            if item["type"] == "extra_forbidden":
                text = model.unknown_text.format(key=key, allowed=model.allowed(), got=got,
                                                 sorted_allowed=", ".join(sorted(model.model_fields)))
            elif item["type"] == "missing":
                text = model.missing_text.format(key=key, got=got)
            elif model.invalid_text is not None and key != "frame":
                text = model.invalid_text
            else:
                text = f"{key} {cause}".strip() if cause else f"{key} {item['input']!r} is not allowed ({item['msg']})"
            if text not in problems:
                problems.append(text)
        return None, problems
