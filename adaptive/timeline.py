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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adaptive.cue import CueBank
from adaptive.errors import ConfigError, describe_validation_error
from adaptive.scene import SceneUpdate, StingerTrigger, validate_update

MAX_DURATION_SECONDS = 24 * 3600.0
"""Longest timeline accepted (a day)."""


class TimelineEvent(BaseModel):
    """One entry of a timeline; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_seconds: float = Field(ge=0.0)
    emotion: str | None = None
    valence: float | None = Field(None, ge=-1.0, le=1.0)
    arousal: float | None = Field(None, ge=-1.0, le=1.0)
    intensity: float | None = Field(None, ge=0.0, le=1.0)
    location: str | None = None
    cue: str | None = None
    stinger: str | None = None

    @field_validator("time_seconds", "valence", "arousal", "intensity")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _says_something(self) -> "TimelineEvent":
        fields = ("emotion", "valence", "arousal", "intensity", "location", "cue", "stinger")
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

    duration_seconds: float = Field(gt=0.0, le=MAX_DURATION_SECONDS)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    events: list[TimelineEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _inside(self) -> "Timeline":
        for index, event in enumerate(self.events):
            if event.time_seconds >= self.duration_seconds:
                raise ValueError(
                    f"events[{index}].time_seconds {event.time_seconds} is not before duration_seconds "
                    f"{self.duration_seconds}"
                )
        return self

    def inputs(self) -> list[tuple[float, SceneUpdate | StingerTrigger]]:
        """``(time_seconds, input)`` pairs in time order (ties keep file order;
        a scene update comes before a stinger of the same event)."""
        items: list[tuple[float, int, SceneUpdate | StingerTrigger]] = []
        for index, event in enumerate(self.events):
            update = event.scene_update()
            if update is not None:
                items.append((event.time_seconds, 2 * index, update))
            if event.stinger is not None:
                items.append((event.time_seconds, 2 * index + 1, StingerTrigger(event.stinger)))
        items.sort(key=lambda item: (item[0], item[1]))
        return [(time, item) for time, _, item in items]


def load_timeline(path: Path | str, bank: CueBank) -> Timeline:
    """Read and validate a timeline against ``bank`` (emotions, cues, stingers).

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
    try:
        timeline = Timeline.model_validate(data)
    except ValidationError as error:
        raise describe_validation_error(error, path, "timeline") from None
    problems = []
    for index, event in enumerate(timeline.events):
        where = f"events[{index}] (time_seconds = {event.time_seconds:g})"
        update = event.scene_update()
        try:
            if update is not None:
                validate_update(update, bank)
            if event.stinger is not None:
                bank.stinger(event.stinger)
        except KeyError as error:
            problems.append(f"  {where}: {error.args[0]}")
        except ValueError as error:
            problems.append(f"  {where}: {error}")
    if problems:
        raise ConfigError(f"{path}: invalid timeline ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n"
                          + "\n".join(problems))
    return timeline
