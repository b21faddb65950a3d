"""Players: the runtime state of a cue, segment or generated bridge that can
play (its layers' voices and gains, its own gain, its tempo grid)."""

from __future__ import annotations

from typing import Any

import numpy as np

from adaptive.clock import SteppedTempoGrid, TempoGrid
from adaptive.gain import GainCurve, GainRamp, db_to_amplitude


class LayerPlayer:
    """One layer of a player: its voice, its gain ramp, the gain curve over
    intensity it follows and its fade."""

    __slots__ = ("layer_name", "voice", "gain", "curve", "fade_beats")

    def __init__(self, layer_name: str, voice: Any, curve: GainCurve, fade_beats: float) -> None:
        self.layer_name = layer_name
        self.voice = voice
        self.gain = GainRamp(0.0)
        self.curve = curve
        self.fade_beats = fade_beats


class Player:
    """Runtime state of a cue (or segment, or bridge) that can play."""

    def __init__(self, name: str, bpm: float, beats_per_bar: int, layers: list[LayerPlayer], gain_db: float,
                 looping: bool, length_bars: int | None) -> None:
        self.name = name
        self.bpm = bpm
        self.beats_per_bar = beats_per_bar
        self.layers = layers
        self.amplitude = db_to_amplitude(gain_db)
        self.gain = GainRamp(0.0)
        self.looping = looping
        self.length_bars = length_bars
        self.bar_bpms: tuple[float, ...] | None = None  # a bridge's per-bar tempos (else constant bpm)
        self.grid: TempoGrid | SteppedTempoGrid | None = None
        self.active = False
        self.generation = 0  # bumped at each start, so a stale stop is ignored

    def render(self, start_frame: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Add this player's layers, each at its gain times the player's, to ``out``."""
        n = out.shape[0]
        end_frame = start_frame + n
        cue_constant = self.gain.is_constant_over(start_frame, end_frame)
        shapes: dict = {}  # ramp shapes the layers share in this block (GainRamp.envelope)
        cue_envelope = None if cue_constant else self.gain.envelope(start_frame, n, shapes)
        cue_amplitude = self.gain.value_at(start_frame) * self.amplitude
        buffer = scratch[:n]
        for layer in self.layers:
            if cue_constant and layer.gain.is_constant_over(start_frame, end_frame):
                amplitude = layer.gain.value_at(start_frame) * cue_amplitude
                if amplitude == 0.0 and not layer.voice.needs_render_when_silent:
                    continue
                layer.voice.render(start_frame, buffer)
                if amplitude != 0.0:
                    buffer *= amplitude
                    out += buffer
                continue
            layer.voice.render(start_frame, buffer)
            envelope = layer.gain.envelope(start_frame, n, shapes)
            envelope *= cue_envelope if cue_envelope is not None else np.float32(cue_amplitude)
            if not cue_constant:
                envelope *= np.float32(self.amplitude)
            buffer *= envelope[:, None]
            out += buffer

    def close(self) -> None:
        """Free the synthesizers of its layers."""
        for layer in self.layers:
            synth = getattr(layer.voice, "synth", None)
            if synth is not None:
                synth.close()

