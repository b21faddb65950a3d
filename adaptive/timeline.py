"""Timelines: time-stamped scene states and events for offline rendering.

A timeline is a TOML (or JSON) file::

    duration_seconds = 60        # how long to render
    seed = 7                     # optional; seeds generated parts

    [[events]]
    time_seconds = 0
    emotion = "calm"             # or valence = 0.4, arousal = -0.6
    intensity = 0.2
    location = "forest"

    [[events]]
    time_seconds = 12.5
    stinger = "discovery"

Each event sets any of ``emotion`` | (``valence``, ``arousal``), ``intensity``,
``location``, ``cue`` (force a cue) and may fire a ``stinger``. See
``docs/timeline.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from adaptive.cue import CueBank
from adaptive.errors import ConfigError, format_problems, problem_lines
from adaptive.emotion import named_emotion
from adaptive.scene import SceneUpdate, StingerTrigger, ThemeTrigger, validate_update

if TYPE_CHECKING:
    from adaptive.mapping import ResolvedMapping

MAX_DURATION_SECONDS = 24 * 3600.0
"""Longest timeline accepted (a day)."""


def _number(value: object) -> object:
    """Accept ints and floats only: TOML ``true`` or a quoted ``"0.5"`` is a mistake."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {value!r})")
    return value


Number = Annotated[float, BeforeValidator(_number)]
"""A finite int or float; booleans, strings, NaN and infinities are refused."""

Text = Annotated[str, Field(strict=True, min_length=1, max_length=64)]


class TimelineEvent(BaseModel):
    """One entry of a timeline; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_seconds: Number = Field(ge=0.0)
    emotion: Text | None = None
    valence: Number | None = Field(None, ge=-1.0, le=1.0)
    arousal: Number | None = Field(None, ge=-1.0, le=1.0)
    intensity: Number | None = Field(None, ge=0.0, le=1.0)
    location: Annotated[str, Field(strict=True, max_length=64)] | None = None
    cue: Text | None = None
    stinger: Text | None = None
    theme: Text | None = None

    @model_validator(mode="after")
    def _says_something(self) -> "TimelineEvent":
        fields = ("emotion", "valence", "arousal", "intensity", "location", "cue", "stinger", "theme")
        if all(getattr(self, name) is None for name in fields):
            raise ValueError(f"an event needs at least one of: {', '.join(fields)}")
        if (self.valence is None) != (self.arousal is None):
            raise ValueError("valence and arousal must be given together")
        return self

    def scene_update(self) -> SceneUpdate | None:
        """The scene part of the event, or None if it only fires a stinger."""
        if all(getattr(self, name) is None for name in ("emotion", "valence", "arousal", "intensity", "location", "cue")):
            return None
        return SceneUpdate(self.emotion, self.valence, self.arousal, self.intensity, self.location, self.cue)


class Timeline(BaseModel):
    """A whole timeline; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_seconds: Number = Field(gt=0.0, le=MAX_DURATION_SECONDS)
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True)
    events: list[TimelineEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _inside(self) -> "Timeline":
        late = [f"events[{index}].time_seconds {event.time_seconds:g} is not before duration_seconds "
                f"{self.duration_seconds:g}" for index, event in enumerate(self.events)
                if event.time_seconds >= self.duration_seconds]
        if late:
            raise ValueError("; ".join(late))
        return self

    def inputs(self) -> list[tuple[float, SceneUpdate | StingerTrigger | ThemeTrigger]]:
        """``(time_seconds, input)`` pairs in time order (ties keep file order;
        a scene update comes before a stinger of the same event)."""
        items: list[tuple[float, int, SceneUpdate | StingerTrigger | ThemeTrigger]] = []
        for index, event in enumerate(self.events):
            update = event.scene_update()
            if update is not None:
                items.append((event.time_seconds, 2 * index, update))
            if event.stinger is not None:
                items.append((event.time_seconds, 2 * index + 1, StingerTrigger(event.stinger)))
            if event.theme is not None:
                items.append((event.time_seconds, 2 * index + 1, ThemeTrigger(event.theme)))
        items.sort(key=lambda item: (item[0], item[1]))
        return [(time, item) for time, _, item in items]


def load_timeline(path: Path | str, bank: CueBank, mapping: "ResolvedMapping | None" = None) -> Timeline:
    """Read and validate a timeline against ``bank`` (emotions, cues, stingers)
    and the ``mapping`` it will play by (its emotions and stinger names;
    default: the bank's own).

    Raises:
        ConfigError: unreadable file, bad TOML/JSON (with the line), or invalid
            entries — every problem, each naming the entry, its time and what is
            allowed.
    """
    import tomllib

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the timeline ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a timeline is TOML or JSON, UTF-8)") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a timeline must be a table/object with duration_seconds and events")
    return _validate(path, data, bank, mapping)


def _validate(path: Path, data: dict, bank: CueBank, mapping: "ResolvedMapping | None" = None) -> Timeline:
    """Validate every event on its own, so that every problem is reported at once."""
    problems: list[str] = []
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        problems.append("events: must be a list of event tables ([[events]])")
        raw_events = []
    events: list[TimelineEvent] = []
    for index, raw in enumerate(raw_events):
        try:
            event = TimelineEvent.model_validate(raw)
        except ValidationError as error:
            problems.extend(problem_lines(error, TimelineEvent, ("events", index)))
            continue
        events.append(event)
        where = f"events[{index}] (time_seconds = {event.time_seconds:g})"
        update = event.scene_update()
        try:
            if update is not None:
                validate_update(update, bank, mapping.emotion if mapping is not None else named_emotion)
            if event.stinger is not None:
                (mapping.stinger if mapping is not None else bank.stinger)(event.stinger)
            if event.theme is not None:
                bank.theme(event.theme)
        except KeyError as error:
            problems.append(f"{where}: {error.args[0]}")
        except ValueError as error:
            problems.append(f"{where}: {error}")
    header = {key: value for key, value in data.items() if key != "events"}
    try:
        shell = Timeline.model_validate({**header, "events": []})
    except ValidationError as error:
        problems[:0] = problem_lines(error, Timeline)
        shell = None
    if shell is not None:
        for index, raw in enumerate(raw_events):
            time = raw.get("time_seconds") if isinstance(raw, dict) else None
            if isinstance(time, (int, float)) and not isinstance(time, bool) and time >= shell.duration_seconds:
                problems.append(f"events[{index}].time_seconds {time:g} is not before duration_seconds "
                                f"{shell.duration_seconds:g}")
    if problems:
        raise ConfigError(format_problems(path, "timeline", problems))
    return Timeline.model_validate({**header, "events": events})
