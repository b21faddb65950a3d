"""What a session reports: music events at their frames, the MIDI notes it
played, and how each MIDI part sounds.

Event kinds and other names that travel on the wire or into files are
str-valued enums (:class:`WireName`): they compare equal to, print as, and
serialize (JSON) as their value, so every format stays byte-identical.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class WireName(str, enum.Enum):
    """A str-valued enum whose members print, format and serialize as their value."""

    __str__ = str.__str__
    __format__ = str.__format__


class EventKind(WireName):
    """The kind of a :class:`MusicEvent` (the ``type`` of an events file's rows)."""

    BEAT = "beat"
    BAR = "bar"
    CUE_CHANGE = "cue_change"
    TRANSITION_START = "transition_start"
    TRANSITION_END = "transition_end"
    STINGER = "stinger"
    THEME = "theme"
    """A theme starts: asked for by the game (its head motif), or quoted by a bridge."""
    SCENE = "scene"
    """An input changed the scene (what the game said)."""
    FOLLOW = "follow"
    """The mapping was evaluated for the smoothed scene."""
    GAINS = "gains"
    """A cue's layer gains were retargeted."""
    MAPPING = "mapping"
    """A mapping change took effect."""
    MAPPING_ERROR = "mapping_error"
    """An edited mapping file is invalid (from the mapping watch, not the session)."""
    ERROR = "error"
    """An accepted input could not be played (e.g. the mapping changed since)."""
    AUDIENCE = "audience"
    """The audience's votes were aggregated (:mod:`adaptive.audience`): voices,
    the aggregate, the weight and the scene target."""


@dataclass(frozen=True)
class MusicEvent:
    """Something that happens in the music at a frame.

    Attributes:
        frame: session frame.
        kind: what happened.
        data: kind-specific fields (cue names, bar/beat numbers, values).
    """

    frame: int
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MidiNoteEvent:
    """A note event as played: ``part`` is ``"cue/layer"``, ``"stinger/name"``
    or ``"bridge"``."""

    frame: int
    part: str
    kind: int  # voice.NOTE_ON or voice.NOTE_OFF
    pitch: int
    velocity: int


@dataclass(frozen=True)
class PartInfo:
    """How a MIDI part sounds: General MIDI program and percussion flag."""

    program: int
    percussion: bool
