"""Emotions as points on the valence/arousal plane (Russell's circumplex model
of affect: Russell, J. A. (1980), *A circumplex model of affect*, Journal of
Personality and Social Psychology 39(6)), and what an emotion asks of the
music (:func:`music_for_emotion`).

Valence (unpleasant → pleasant) and arousal (calm → excited) are each in
[-1, 1]. The named emotions below are placed by their angle on Russell's
circle; designers can add their own in the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from adaptive.generator import PartConditioning


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


Curve = Sequence[tuple[float, float]]
"""Breakpoints ``[(x, y), ...]`` with rising x, linear between and held beyond the ends."""

DENSITY_NOTES_PER_BEAT: Curve = ((-1.0, 1.0), (1.0, 4.0))
"""Arousal → notes per beat: calm music is sparse, excited music dense."""
VELOCITY: Curve = ((-1.0, 45.0), (1.0, 110.0))
"""Arousal → MIDI velocity: arousal is loudness first."""
REGISTER_SEMITONES: Curve = ((-1.0, -6.0), (1.0, 6.0))
"""Valence → shift of a part's register in semitones: pleasant music sits higher."""
MAJOR_FROM_VALENCE = 0.0
"""Valence from which the mode asked for is major (minor below)."""


def curve_at(points: Curve, x: float) -> float:
    """The value of the breakpoint curve ``points`` at ``x``."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def music_for_emotion(valence: float, arousal: float, *, density: Curve = DENSITY_NOTES_PER_BEAT,
                      velocity: Curve = VELOCITY, register: Curve = REGISTER_SEMITONES,
                      major_from_valence: float | None = None) -> PartConditioning:
    """What the music is asked for at an emotion, along the directions of
    Gabrielsson & Lindström (2010) and Eerola, Friberg & Bresin (2013):
    arousal → note density and loudness, valence → register and (when
    ``major_from_valence`` is given) mode. The curves default to this module's;
    a mapping's ``[conditioning]`` replaces them.

    Returns:
        The part conditioning: mode (None: the cue's own), notes per beat,
        velocity (rounded to a whole MIDI velocity) and register shift.
    """
    mode = None
    if major_from_valence is not None:
        mode = "major" if valence >= major_from_valence else "minor"
    return PartConditioning(mode, curve_at(density, arousal), int(round(curve_at(velocity, arousal))),
                            curve_at(register, valence))

