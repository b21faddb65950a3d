"""Smoothing of scene input, in session frames (never wall time).

A game may send its emotion and intensity 90 times a second, with noise. The
mapping's smoothing keeps that from making the music thrash:

* **slew rates** limit how fast the valence, arousal and intensity the music
  follows may move toward what the game last said, in units per second of
  session time (converted to frames at the session rate). A slew of ``inf``
  follows at once.
* **hysteresis** (in :mod:`adaptive.mapping`) keeps the playing cue until
  another is nearer by a margin.
* a **minimum time in a cue** (in bars of that cue) holds a cue once it starts.

Everything here is a pure function of frames, so a session replayed offline
moves exactly as it did live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Slew:
    """A value that moves toward its target at a bounded rate.

    ``value_at(frame)`` is the value at session ``frame``: it starts at
    ``start_value`` on ``start_frame`` and moves linearly toward ``target`` at
    ``rate_per_frame`` (units per frame; ``inf`` jumps) until it reaches it.

    Attributes:
        start_value: the value on ``start_frame``.
        target: where it is heading.
        start_frame: session frame of the last retarget.
        rate_per_frame: the largest change per frame (> 0, may be ``inf``).
    """

    start_value: float
    target: float
    start_frame: int
    rate_per_frame: float

    def value_at(self, frame: int) -> float:
        """The value at session ``frame`` (>= ``start_frame``)."""
        distance = self.target - self.start_value
        if distance == 0.0 or math.isinf(self.rate_per_frame):
            return self.target
        step = self.rate_per_frame * max(0, frame - self.start_frame)
        if step >= abs(distance):
            return self.target
        return self.start_value + math.copysign(step, distance)

    def retarget(self, frame: int, target: float, rate_per_frame: float | None = None) -> None:
        """Head for ``target`` from the value reached at ``frame``."""
        self.start_value = self.value_at(frame)
        self.start_frame = frame
        self.target = target
        if rate_per_frame is not None:
            self.rate_per_frame = rate_per_frame

    def settle_frame(self) -> int:
        """The first frame at which the value equals the target."""
        distance = abs(self.target - self.start_value)
        if distance == 0.0 or math.isinf(self.rate_per_frame):
            return self.start_frame
        return self.start_frame + math.ceil(distance / self.rate_per_frame)


def rate_per_frame(rate_per_second: float, sample_rate_hz: int) -> float:
    """A slew rate in units per second as units per frame (``inf`` stays ``inf``)."""
    return rate_per_second / sample_rate_hz


class SceneSmoother:
    """Slews for valence, arousal and intensity.

    The first target is taken at once (there is nothing to move from); later
    targets are approached at the slew rates.

    Args:
        valence_per_second, arousal_per_second, intensity_per_second: slew
            rates in units per second (> 0; ``inf`` = no smoothing).
        sample_rate_hz: the session rate.
    """

    def __init__(self, valence_per_second: float, arousal_per_second: float, intensity_per_second: float,
                 sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.valence = Slew(0.0, 0.0, 0, rate_per_frame(valence_per_second, sample_rate_hz))
        self.arousal = Slew(0.0, 0.0, 0, rate_per_frame(arousal_per_second, sample_rate_hz))
        self.intensity = Slew(0.5, 0.5, 0, rate_per_frame(intensity_per_second, sample_rate_hz))
        self._started = False

    def set_rates(self, frame: int, valence_per_second: float, arousal_per_second: float,
                  intensity_per_second: float) -> None:
        """Change the slew rates from ``frame`` on (a new mapping)."""
        for slew, rate in ((self.valence, valence_per_second), (self.arousal, arousal_per_second),
                           (self.intensity, intensity_per_second)):
            slew.retarget(frame, slew.target, rate_per_frame(rate, self.sample_rate_hz))

    def set_target(self, frame: int, valence: float, arousal: float, intensity: float) -> None:
        """What the game says from ``frame`` on."""
        if not self._started:
            self._started = True
            for slew, value in ((self.valence, valence), (self.arousal, arousal), (self.intensity, intensity)):
                slew.start_value = slew.target = value
                slew.start_frame = frame
            return
        self.valence.retarget(frame, valence)
        self.arousal.retarget(frame, arousal)
        self.intensity.retarget(frame, intensity)

    def at(self, frame: int) -> tuple[float, float, float]:
        """``(valence, arousal, intensity)`` the music follows at ``frame``."""
        return self.valence.value_at(frame), self.arousal.value_at(frame), self.intensity.value_at(frame)

    def settle_frame(self) -> int:
        """The first frame from which all three equal their targets."""
        return max(self.valence.settle_frame(), self.arousal.settle_frame(), self.intensity.settle_frame())
