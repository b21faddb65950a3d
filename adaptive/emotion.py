"""Emotions as points on the valence/arousal plane (Russell's circumplex model
of affect: Russell, J. A. (1980), *A circumplex model of affect*, Journal of
Personality and Social Psychology 39(6)).

Valence (unpleasant → pleasant) and arousal (calm → excited) are each in
[-1, 1]. The named emotions below are placed by their angle on Russell's
circle; designers can add their own in the mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EmotionPoint:
    """A point on the emotion plane; both coordinates in [-1, 1]."""

    valence: float
    arousal: float

    def distance_to(self, other: "EmotionPoint") -> float:
        """Euclidean distance on the plane (0 .. 2·√2)."""
        return math.hypot(self.valence - other.valence, self.arousal - other.arousal)


NAMED_EMOTIONS: dict[str, EmotionPoint] = {
    "neutral": EmotionPoint(0.0, 0.0),
    "calm": EmotionPoint(0.4, -0.6),
    "relaxed": EmotionPoint(0.6, -0.5),
    "content": EmotionPoint(0.7, -0.2),
    "joyful": EmotionPoint(0.8, 0.4),
    "happy": EmotionPoint(0.8, 0.3),
    "excited": EmotionPoint(0.6, 0.8),
    "heroic": EmotionPoint(0.7, 0.7),
    "triumphant": EmotionPoint(0.8, 0.6),
    "tense": EmotionPoint(-0.4, 0.4),
    "eerie": EmotionPoint(-0.4, 0.1),
    "afraid": EmotionPoint(-0.6, 0.7),
    "angry": EmotionPoint(-0.7, 0.8),
    "sad": EmotionPoint(-0.7, -0.4),
    "melancholic": EmotionPoint(-0.4, -0.5),
    "sorrowful": EmotionPoint(-0.7, -0.6),
    "bored": EmotionPoint(-0.3, -0.8),
}
"""Default named emotions (valence, arousal)."""


def named_emotion(name: str) -> EmotionPoint:
    """The point of a named emotion.

    Raises:
        KeyError: an unknown name, with the allowed names in the message.
    """
    try:
        return NAMED_EMOTIONS[name]
    except KeyError:
        raise KeyError(f"unknown emotion {name!r} (allowed: {', '.join(sorted(NAMED_EMOTIONS))})") from None
