"""The mixer: sums what sounds (players, stingers) into the session's block,
then the master bus: the master gain and a memoryless soft-knee limiter that
keeps the mix inside [-ceiling, +ceiling] whatever the layers add up to.

Below the knee the signal passes untouched; above it the excess is squashed
with a hyperbolic tangent, which is continuous with slope 1 at the knee and
approaches the ceiling without reaching it::

    |y| = |x|                                              for |x| <= knee
    |y| = knee + (ceiling - knee) * tanh((|x| - knee) / (ceiling - knee))   above

(the classic tanh soft clipper, e.g. Zölzer (ed.), *DAFX*, 2nd ed., 2011, §4.2).
Being memoryless, it gives the same output however the render is split into
blocks, which keeps rendering deterministic.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

from adaptive.gain import db_to_amplitude


class Source(Protocol):
    """Something the mixer sums: a player, the stinger player."""

    def render(self, start_frame: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Add ``out.shape[0]`` frames from ``start_frame`` to ``out`` (``scratch``: a buffer to render into)."""


class SoftLimiter:
    """Soft-knee limiter on float32 audio, in place.

    Args:
        knee_db: level (dBFS, < ceiling) where limiting starts; default -6 dBFS.
        ceiling_db: level (dBFS, <= 0) the output never reaches; default -0.3 dBFS.

    Raises:
        ValueError: knee not below ceiling, or ceiling above 0 dBFS.
    """

    def __init__(self, knee_db: float = -6.0, ceiling_db: float = -0.3) -> None:
        if not knee_db < ceiling_db <= 0.0:
            raise ValueError(f"need knee_db < ceiling_db <= 0 dBFS, got knee {knee_db}, ceiling {ceiling_db}")
        self.knee = np.float32(db_to_amplitude(knee_db))
        self.ceiling = np.float32(db_to_amplitude(ceiling_db))

    def process(self, audio: np.ndarray) -> bool:
        """Limit ``audio`` (any shape, float32) in place.

        Returns:
            True when any sample was above the knee (the limiter acted).
        """
        if audio.size == 0 or float(np.max(np.abs(audio))) <= self.knee:
            return False
        magnitude = np.abs(audio)
        over = magnitude > self.knee
        span = self.ceiling - self.knee
        squashed = self.knee + span * np.tanh((magnitude[over] - self.knee) / span)
        audio[over] = np.copysign(squashed, audio[over]).astype(np.float32)
        return True


class Mixer:
    """The session's mix buffers and master bus.

    Args:
        max_block_frames: the largest block mixed at once.
        master_gain_db: gain on the mix before the limiter (headroom).
    """

    def __init__(self, max_block_frames: int, master_gain_db: float = 0.0) -> None:
        self.master_amplitude = db_to_amplitude(master_gain_db)
        self.limiter = SoftLimiter()
        self._mix = np.zeros((max_block_frames, 2), np.float32)
        self._scratch = np.zeros((max_block_frames, 2), np.float32)

    def block(self, n_frames: int) -> np.ndarray:
        """The silent block of ``n_frames`` to mix into (a view of an internal
        buffer, valid until the next call)."""
        out = self._mix[:n_frames]
        out.fill(0.0)
        return out

    def mix(self, start_frame: int, out: np.ndarray, sources: Iterable[Source]) -> None:
        """Add each of ``sources`` from ``start_frame`` to ``out`` (a span of the block)."""
        for source in sources:
            source.render(start_frame, out, self._scratch)

    def master(self, out: np.ndarray) -> bool:
        """Apply the master gain and the limiter to the whole block; whether the limiter acted."""
        if self.master_amplitude != 1.0:
            out *= np.float32(self.master_amplitude)
        return self.limiter.process(out)
