"""Scene state: what the game tells the music (an emotion, an intensity, a
location, optionally a forced cue), and the inputs a session accepts.

Inputs are stamped with the session frame at which they take effect. How the
scene plays the bank is the designer-facing mapping (:mod:`adaptive.mapping`;
a bank without a mapping file plays by
:meth:`adaptive.mapping.ResolvedMapping.from_bank`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adaptive.cue import CueBank
from adaptive.emotion import NAMED_EMOTIONS, EmotionPoint, named_emotion


@dataclass(frozen=True)
class SceneUpdate:
    """A change to the scene state; fields left ``None`` keep their value.

    Attributes:
        emotion: a named emotion (see :data:`adaptive.emotion.NAMED_EMOTIONS`).
        valence, arousal: an explicit point, each in [-1, 1] (both or neither;
            overrides ``emotion``).
        intensity: 0..1.
        location: any string; cues list the locations they may play in.
        cue: force this cue, bypassing the mapping (``None``: let the mapping choose).
    """

    emotion: str | None = None
    valence: float | None = None
    arousal: float | None = None
    intensity: float | None = None
    location: str | None = None
    cue: str | None = None


@dataclass(frozen=True)
class StingerTrigger:
    """Play the named stinger at its quantized boundary."""

    name: str


@dataclass(frozen=True)
class ThemeTrigger:
    """Play the head of the bank's theme ``name``, varied for the current
    emotion in the playing key, quantized as its ``[themes.NAME]`` says."""

    name: str


SessionInput = SceneUpdate | StingerTrigger | ThemeTrigger
"""What a session accepts (a :class:`adaptive.mapping.MappingChange`, an
:class:`adaptive.audience.AudienceVote` and an :class:`adaptive.audience.AudienceWeight` too)."""


@dataclass
class SceneState:
    """The scene as the music currently believes it to be."""

    emotion: EmotionPoint = EmotionPoint(0.0, 0.0)
    emotion_name: str | None = None
    intensity: float = 0.5
    location: str = ""
    forced_cue: str | None = None

    def apply(self, update: SceneUpdate, emotions: Mapping[str, EmotionPoint] | None = None) -> None:
        """Merge ``update`` (already validated) into the state; named emotions
        are looked up in ``emotions`` (default: the built-in ones). An unknown
        name leaves the emotion as it was."""
        if update.valence is not None and update.arousal is not None:
            self.emotion = EmotionPoint(update.valence, update.arousal)
            self.emotion_name = None
        elif update.emotion is not None:
            point = (emotions if emotions is not None else NAMED_EMOTIONS).get(update.emotion)
            if point is not None:
                self.emotion = point
                self.emotion_name = update.emotion
        if update.intensity is not None:
            self.intensity = update.intensity
        if update.location is not None:
            self.location = update.location
        if update.cue is not None:
            self.forced_cue = update.cue or None


def validate_update(update: SceneUpdate, bank: CueBank, emotion: Callable[[str], object] = named_emotion) -> None:
    """Check every field of ``update`` against what is allowed; ``emotion``
    looks a named emotion up (raising ``KeyError`` with the allowed names),
    by default among the built-in ones.

    Raises:
        ValueError: naming the field, the value and the allowed range or names.
    """
    # Runs for every scene input (90 a second from a game): the fields are read
    # directly and a plain float in range (the common case) passes one test.
    for name, value, low in (("valence", update.valence, -1.0), ("arousal", update.arousal, -1.0),
                             ("intensity", update.intensity, 0.0)):
        if value is None or (type(value) is float and low <= value <= 1.0):
            continue  # a float between the bounds is finite
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not low <= value <= 1.0:
            raise ValueError(f"{name} {value!r} is out of range (allowed: a number from {low:g} to 1)")
    if (update.valence is None) != (update.arousal is None):
        raise ValueError("valence and arousal must be given together (or use a named emotion)")
    for name, value in (("emotion", update.emotion), ("location", update.location), ("cue", update.cue)):
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise ValueError(f"{name} {value!r} is not allowed (allowed: a name of at most 64 characters)")
    if update.emotion is not None:
        emotion(update.emotion)  # raises KeyError with the allowed names
    if update.cue:
        bank.playable_cue(update.cue)
