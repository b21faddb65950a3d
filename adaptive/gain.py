"""Gains: decibel conversions, intensity → gain curves and click-free
equal-power ramps.

A ramp from amplitude ``g0`` to ``g1`` over ``length_frames`` interpolates
*power* with a raised-cosine shape::

    s(t) = (1 - cos(pi * t)) / 2,   t = (frame - start_frame) / length_frames in [0, 1]
    g(t) = sqrt(g0**2 * (1 - s) + g1**2 * s)

For a fade-in (g0 = 0) this is exactly ``g1 * sin(pi t / 2)`` and for a fade-out
``g0 * cos(pi t / 2)``: the equal-power crossfade law (sin/cos pan law, see
e.g. Reiss & McPherson, *Audio Effects*, 2014, §2.3). Power sums to a constant
across a crossfade, and the curve is continuous with a continuous slope at
both ends, so no gain step between two samples can be heard as a click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SILENCE_DB = -120.0
"""Gains at or below this many dB are treated as silence (amplitude 0)."""


def db_to_amplitude(gain_db: float) -> float:
    """Linear amplitude of ``gain_db`` decibels (20·log10 convention);
    ``-inf`` or <= :data:`SILENCE_DB` → 0.0."""
    if gain_db <= SILENCE_DB:
        return 0.0
    return 10.0 ** (gain_db / 20.0)


def amplitude_to_db(amplitude: float) -> float:
    """Decibels of a linear amplitude (>= 0); 0 → ``-inf``."""
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


@dataclass(frozen=True)
class GainCurve:
    """Piecewise-linear map from intensity (0..1) to gain.

    ``breakpoints`` are ``(intensity, gain_db)`` pairs, intensities strictly
    increasing in [0, 1]; ``gain_db`` may be ``-inf`` (silent). Between two
    finite breakpoints the gain is interpolated in dB; next to a silent one it
    is interpolated in linear amplitude, so a layer can fade in from nothing.
    Below the first and above the last breakpoint the curve is flat.
    """

    breakpoints: tuple[tuple[float, float], ...]

    def amplitude(self, intensity: float) -> float:
        """Linear amplitude (>= 0) at ``intensity`` (clamped to [0, 1])."""
        points = self.breakpoints
        x = min(max(intensity, 0.0), 1.0)
        if x <= points[0][0]:
            return db_to_amplitude(points[0][1])
        for (x0, db0), (x1, db1) in zip(points, points[1:]):
            if x <= x1:
                t = (x - x0) / (x1 - x0)
                if db0 > SILENCE_DB and db1 > SILENCE_DB:
                    return db_to_amplitude(db0 + (db1 - db0) * t)
                a0, a1 = db_to_amplitude(db0), db_to_amplitude(db1)
                return a0 + (a1 - a0) * t
        return db_to_amplitude(points[-1][1])


class GainRamp:
    """An equal-power gain envelope over absolute session frames.

    Holds ``target`` after the ramp ends and ``start`` before it begins. The
    value at a frame depends only on that frame, never on how the render was
    split into blocks, which keeps rendering deterministic.
    """

    __slots__ = ("start_amplitude", "target_amplitude", "start_frame", "length_frames")

    def __init__(self, amplitude: float = 0.0) -> None:
        self.start_amplitude = amplitude
        self.target_amplitude = amplitude
        self.start_frame = 0
        self.length_frames = 0

    def value_at(self, frame: int) -> float:
        """Amplitude at session ``frame``."""
        if self.length_frames <= 0 or frame >= self.start_frame + self.length_frames:
            return self.target_amplitude
        if frame <= self.start_frame:
            return self.start_amplitude
        s = (1.0 - math.cos(math.pi * (frame - self.start_frame) / self.length_frames)) / 2.0
        return math.sqrt(self.start_amplitude**2 * (1.0 - s) + self.target_amplitude**2 * s)

    def ramp_to(self, amplitude: float, start_frame: int, length_frames: int) -> None:
        """Start a ramp at ``start_frame`` from the current value to ``amplitude``
        over ``length_frames`` (0 = a step, only for silent material)."""
        self.start_amplitude = self.value_at(start_frame)
        self.target_amplitude = amplitude
        self.start_frame = start_frame
        self.length_frames = max(0, int(length_frames))

    def is_constant_over(self, start_frame: int, end_frame: int) -> bool:
        """True when the envelope does not change in ``[start_frame, end_frame)``."""
        return (
            self.length_frames <= 0
            or start_frame >= self.start_frame + self.length_frames
            or end_frame <= self.start_frame
            or self.start_amplitude == self.target_amplitude
        )

    def envelope(self, start_frame: int, n_frames: int) -> np.ndarray:
        """Amplitudes for frames ``start_frame .. start_frame + n_frames - 1``,
        shape ``(n_frames,)``, float32."""
        # In place on one float64 array: this runs for every ramping layer in every block.
        # power = p0 + (p1 - p0) * (1 - cos(pi t)) / 2, with t from the absolute frame only.
        x = np.arange(n_frames, dtype=np.float64)
        x += start_frame - self.start_frame
        x *= 1.0 / max(self.length_frames, 1)
        np.clip(x, 0.0, 1.0, out=x)
        x *= np.pi
        np.cos(x, out=x)
        p0 = self.start_amplitude**2
        half_change = (self.target_amplitude**2 - p0) * 0.5
        x *= -half_change
        x += p0 + half_change
        np.maximum(x, 0.0, out=x)  # rounding must not make a power negative
        np.sqrt(x, out=x)
        return x.astype(np.float32)

    @property
    def end_frame(self) -> int:
        """Frame from which the target amplitude holds."""
        return self.start_frame + self.length_frames
