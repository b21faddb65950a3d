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
from functools import cached_property

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
        """Linear amplitude (>= 0) at ``intensity`` (clamped to [0, 1]).

        A session asks this for every layer at every scene input (90 times a
        second from a game), so the curve's segments are prepared once
        (:attr:`_segments`) and the last answer is kept: the same intensity
        asked again returns it without evaluating the curve. The arithmetic
        is the same, operation for operation, as interpolating between the
        breakpoints afresh, so the value is bit-identical either way.
        """
        memo = self.__dict__
        last = memo.get("_last_answer")
        if last is not None and last[0] == intensity:
            return last[1]
        # min(max(intensity, 0.0), 1.0) and db_to_amplitude, written out: no call but the curve's.
        x = 0.0 if intensity < 0.0 else 1.0 if intensity > 1.0 else intensity
        first_x, first_amplitude, last_amplitude, segments = self._segments
        if x <= first_x:
            value = first_amplitude
        else:
            value = last_amplitude
            for x0, x1, span, db0, db_change, a0, a_change, finite in segments:
                if x <= x1:
                    t = (x - x0) / span
                    if finite:
                        gain_db = db0 + db_change * t
                        value = 0.0 if gain_db <= SILENCE_DB else 10.0 ** (gain_db / 20.0)
                    else:
                        value = a0 + a_change * t
                    break
        # One tuple, replaced whole: a curve shared by sessions on other threads reads a consistent pair.
        memo["_last_answer"] = (intensity, value)
        return value

    @cached_property
    def _segments(self) -> tuple[float, float, float, tuple[tuple[float, float, float, float, float, float, float, bool], ...]]:
        """What :meth:`amplitude` would otherwise compute from the breakpoints
        on every call: ``(first intensity, amplitude below it, amplitude above
        the last, segments)``, each pair of neighbouring breakpoints a segment
        ``(x0, x1, x1 - x0, db0, db1 - db0, a0, a1 - a0, both finite)`` (a =
        linear amplitude)."""
        points = self.breakpoints
        segments = []
        for (x0, db0), (x1, db1) in zip(points, points[1:]):
            a0, a1 = db_to_amplitude(db0), db_to_amplitude(db1)
            segments.append((x0, x1, x1 - x0, db0, db1 - db0, a0, a1 - a0, db0 > SILENCE_DB and db1 > SILENCE_DB))
        return points[0][0], db_to_amplitude(points[0][1]), db_to_amplitude(points[-1][1]), tuple(segments)


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

    def envelope(self, start_frame: int, n_frames: int,
                 shapes: dict[tuple[int, int, int], np.ndarray] | None = None) -> np.ndarray:
        """Amplitudes for frames ``start_frame .. start_frame + n_frames - 1``,
        shape ``(n_frames,)``, float32.

        ``shapes``: a dict the caller keeps for one block (a player's layers
        in :meth:`adaptive.players.Player.render`). The ramp's shape, ``cos(pi
        t)``, depends only on where the block starts within the ramp, the
        ramp's length and the block's: layers retargeted on the same frame
        with the same fade (every layer of a cue at a scene input) share it,
        so it is computed once per block and kept there (read-only); each
        layer then scales it to its own amplitudes. The result is the same,
        bit for bit, as without ``shapes``.
        """
        # power = p0 + (p1 - p0) * (1 - cos(pi t)) / 2, with t from the absolute frame only.
        # np.maximum/np.minimum rather than np.clip, the frame offsets from a kept
        # np.arange and the square root written straight into the float32 result:
        # the same values (bit for bit) as np.clip, a fresh arange and astype,
        # with fewer numpy calls (measured in docs/benchmarks.md).
        key = (start_frame - self.start_frame, self.length_frames, n_frames)
        shape = None if shapes is None else shapes.get(key)
        if shape is None:
            shape = np.add(_frame_index(n_frames), key[0])
            shape *= 1.0 / max(self.length_frames, 1)
            np.maximum(shape, 0.0, out=shape)
            np.minimum(shape, 1.0, out=shape)
            shape *= np.pi
            np.cos(shape, out=shape)
            if shapes is not None:
                shape.flags.writeable = False
                shapes[key] = shape
        p0 = self.start_amplitude**2
        half_change = (self.target_amplitude**2 - p0) * 0.5
        x = np.multiply(shape, -half_change, out=None if shapes is not None else shape)
        x += p0 + half_change
        np.maximum(x, 0.0, out=x)  # rounding must not make a power negative
        out = np.empty(n_frames, np.float32)
        np.sqrt(x, out=out, casting="same_kind")  # computed in float64, rounded once to float32
        return out

    @property
    def end_frame(self) -> int:
        """Frame from which the target amplitude holds."""
        return self.start_frame + self.length_frames


_FRAME_INDEX = np.arange(8192, dtype=np.float64)
_FRAME_INDEX.flags.writeable = False


def _frame_index(n_frames: int) -> np.ndarray:
    """``0.0, 1.0, ... n_frames - 1`` (float64, read-only view of a kept array, grown when a block is longer)."""
    global _FRAME_INDEX
    index = _FRAME_INDEX
    if n_frames > index.shape[0]:
        index = np.arange(max(n_frames, 2 * index.shape[0]), dtype=np.float64)
        index.flags.writeable = False
        _FRAME_INDEX = index
    return index[:n_frames]
