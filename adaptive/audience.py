"""Audience mode: many listeners nudge one performance with votes
(docs/audience.md).

An audience client votes for an emotion (a name, or a valence/arousal point)
and optionally an intensity. The session keeps each voice's latest vote with
the frame it arrived on; every ``[audience] interval_ms`` of session time
(on the grid of frames ``k * interval_frames``, the first one after a vote) it
aggregates the votes of the last ``window_s`` seconds as the mapping says
(:class:`AudienceAggregate`) and blends the result into the scene the control
client set, *before* the smoothing (:mod:`adaptive.smoothing`)::

    target = (1 - weight) * control + weight * audience        (per axis)

with ``weight`` the mapping's ``[audience] weight`` or, once a control client
sent ``audience_weight``, that value. Fewer than ``min_votes`` voices in the
window: the audience has no say and the scene is the control client's.

Everything here is a pure function of the stamped votes and frames, so a
session replayed from its recording (votes are inputs like any other) moves
exactly as it did live.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from adaptive.emotion import EmotionPoint
from adaptive.events import WireName

VOICE_CHARS = 64
"""Longest voice key (who voted; the bridge uses a short per-session number)."""


class AudienceAggregate(WireName):
    """How the votes in the window become one scene (``[audience] aggregate``).

    * ``mean``: the mean valence, arousal and intensity, each axis on its own
      (a named vote counts as its emotion's point).
    * ``median``: the median of each axis on its own (of an even count, the
      mean of the two middle values: :func:`statistics.median`).
    * ``majority``: the emotion named most often (a point vote counts for the
      named emotion nearest to it, ties to the first name in alphabetical
      order); ties between names go to the first name in alphabetical order.
      Its point is the mapping's point for that name; the intensity is the
      median of the votes that gave one.
    """

    MEAN = "mean"
    MEDIAN = "median"
    MAJORITY = "majority"


@dataclass(frozen=True)
class AudienceVote:
    """One vote of one audience voice.

    Attributes:
        voice: who voted (one voice counts once: only its latest vote in the
            window counts); at most :data:`VOICE_CHARS` characters.
        emotion: a named emotion of the mapping, or None for a point.
        valence, arousal: the point, each in [-1, 1] (both, and only when
            ``emotion`` is None).
        intensity: 0..1, or None (no opinion on the intensity).
    """

    voice: str
    emotion: str | None = None
    valence: float | None = None
    arousal: float | None = None
    intensity: float | None = None


@dataclass(frozen=True)
class AudienceWeight:
    """A control client's weight of the audience against its own scene input,
    0..1 (0: ignore the audience), in force from the next evaluation and
    preferred to the mapping's ``[audience] weight`` from then on."""

    weight: float


@dataclass(frozen=True)
class AudienceResult:
    """What the votes in a window aggregate to.

    Attributes:
        voices: how many voices counted.
        valence, arousal: the point, each in [-1, 1].
        intensity: 0..1, or None when no counted vote gave one.
        emotion: the winning name (``majority``), else None.
    """

    voices: int
    valence: float
    arousal: float
    intensity: float | None
    emotion: str | None = None


def check_vote(vote: AudienceVote, emotion: object) -> None:
    """Check a vote; ``emotion`` looks a name up (raising ``KeyError`` naming
    the allowed names, as :meth:`adaptive.mapping.ResolvedMapping.emotion` does).

    Raises:
        ValueError: a value out of range, both or neither of a name and a
            point, a bad voice key; each naming what is allowed.
        KeyError: an unknown emotion name.
    """
    if not isinstance(vote.voice, str) or not 0 < len(vote.voice) <= VOICE_CHARS:
        raise ValueError(f"voice {vote.voice!r} is not allowed (allowed: a string of 1 to {VOICE_CHARS} characters)")
    for name in ("valence", "arousal", "intensity"):
        value = getattr(vote, name)
        if value is None:
            continue
        low = 0.0 if name == "intensity" else -1.0
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not low <= value <= 1.0):
            raise ValueError(f"vote {name} {value!r} is out of range (allowed: a number from {low:g} to 1)")
    point = vote.valence is not None or vote.arousal is not None
    if point and (vote.valence is None or vote.arousal is None):
        raise ValueError("a vote's valence and arousal must be given together")
    if point == (vote.emotion is not None):
        raise ValueError("a vote names an emotion or gives a valence/arousal point (allowed: exactly one of them)")
    if vote.emotion is not None:
        if not isinstance(vote.emotion, str):
            raise ValueError(f"vote emotion {vote.emotion!r} must be a name (a string)")
        emotion(vote.emotion)  # type: ignore[operator]


def check_weight(item: AudienceWeight) -> None:
    """Raises ValueError unless the weight is a number from 0 to 1."""
    value = item.weight
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"audience weight {value!r} is out of range (allowed: a number from 0 to 1)")


def _point(vote: AudienceVote, emotions: Mapping[str, EmotionPoint]) -> tuple[float, float]:
    if vote.emotion is not None:
        point = emotions[vote.emotion]
        return point.valence, point.arousal
    assert vote.valence is not None and vote.arousal is not None
    return float(vote.valence), float(vote.arousal)


def nearest_emotions(points: list[tuple[float, float]], emotions: Mapping[str, EmotionPoint]) -> list[str]:
    """The named emotion nearest to each point (Euclidean, on the plane:
    the least squared distance); ties go to the first name in alphabetical
    order. One vectorized pass: 1 000 points against 20 names take well
    under a millisecond, inside a render block.

    Args:
        points: ``(valence, arousal)`` pairs.
        emotions: name -> point (at least one).
    """
    if not points:
        return []
    names = sorted(emotions)
    table = np.array([(emotions[name].valence, emotions[name].arousal) for name in names])  # (E, 2)
    squared = ((np.asarray(points, dtype=np.float64)[:, None, :] - table[None, :, :]) ** 2).sum(axis=2)  # (N, E)
    return [names[index] for index in squared.argmin(axis=1)]  # argmin: the first of equals


def aggregate_votes(votes: list[AudienceVote], how: AudienceAggregate,
                    emotions: Mapping[str, EmotionPoint]) -> AudienceResult:
    """Aggregate one vote per voice (see :class:`AudienceAggregate`).

    Args:
        votes: at least one, already checked (their names are in ``emotions``).
        how: mean, median or majority.
        emotions: the mapping's named emotions (name -> point).

    Returns:
        The aggregate; sums use :func:`math.fsum`, so the result does not
        depend on the votes' order.
    """
    if not votes:
        raise ValueError("no votes to aggregate")
    intensities = sorted(float(v.intensity) for v in votes if v.intensity is not None)
    if how is AudienceAggregate.MAJORITY:
        counts: dict[str, int] = {}
        named = [vote.emotion for vote in votes if vote.emotion is not None]
        points = [_point(vote, emotions) for vote in votes if vote.emotion is None]
        for name in named + nearest_emotions(points, emotions):
            counts[name] = counts.get(name, 0) + 1
        winner = min(counts, key=lambda name: (-counts[name], name))
        point = emotions[winner]
        return AudienceResult(len(votes), point.valence, point.arousal,
                              statistics.median(intensities) if intensities else None, winner)
    points = [_point(vote, emotions) for vote in votes]
    valences = sorted(p[0] for p in points)
    arousals = sorted(p[1] for p in points)
    if how is AudienceAggregate.MEDIAN:
        return AudienceResult(len(votes), statistics.median(valences), statistics.median(arousals),
                              statistics.median(intensities) if intensities else None)
    return AudienceResult(len(votes), math.fsum(valences) / len(votes), math.fsum(arousals) / len(votes),
                          math.fsum(intensities) / len(intensities) if intensities else None)


def blend(control: tuple[float, float, float], audience: AudienceResult | None,
          weight: float) -> tuple[float, float, float]:
    """The scene the smoothing heads for: ``(1 - weight) * control + weight *
    audience`` on valence, arousal and intensity (the control's intensity
    where the audience gave none; the control's scene when ``audience`` is None).

    Args:
        control: (valence, arousal, intensity) the control client set.
        audience: the aggregate, or None (too few voices).
        weight: 0..1.
    """
    if audience is None or weight <= 0.0:
        return control
    valence, arousal, intensity = control
    audience_intensity = intensity if audience.intensity is None else audience.intensity
    return ((1.0 - weight) * valence + weight * audience.valence,
            (1.0 - weight) * arousal + weight * audience.arousal,
            (1.0 - weight) * intensity + weight * audience_intensity)


class Audience:
    """The votes a session holds: each voice's latest vote and its frame,
    the aggregate in force, and a control client's weight (if it sent one).

    Memory: one entry per voice that voted within the window; older ones are
    forgotten at each evaluation.
    """

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, AudienceVote]] = {}
        self.result: AudienceResult | None = None
        """The aggregate in force (None: the audience has no say now)."""
        self.weight_override: float | None = None
        """A control client's weight, or None: the mapping's."""
        self.pending_frame: int | None = None
        """The frame of the next evaluation scheduled, if any."""

    def add(self, frame: int, vote: AudienceVote) -> None:
        """Remember ``vote`` as its voice's latest, arrived on ``frame``."""
        self.latest.pop(vote.voice, None)  # re-inserted last: the dict stays in arrival order
        self.latest[vote.voice] = (frame, vote)

    def in_window(self, frame: int, window_frames: int) -> list[AudienceVote]:
        """The votes that count at ``frame``: each voice's latest, arrived in
        ``(frame - window_frames, frame]``; older ones are forgotten."""
        oldest = frame - window_frames
        for voice in [voice for voice, (arrived, _) in self.latest.items() if arrived <= oldest]:
            del self.latest[voice]
        return [vote for arrived, vote in self.latest.values() if arrived <= frame]

    def weight(self, mapping_weight: float) -> float:
        """The weight in force: the control client's, else the mapping's."""
        return mapping_weight if self.weight_override is None else self.weight_override


def next_grid_frame(frame: int, interval_frames: int) -> int:
    """The first frame of the evaluation grid (multiples of
    ``interval_frames``) strictly after ``frame``."""
    return (frame // interval_frames + 1) * interval_frames
