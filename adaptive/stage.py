"""The stage: what a session plays now, shared by its parts (the conductor,
the transition runner, the stinger player) and changed only on the render
thread (DESIGN.md: runtime state lives in one session object changed by one
thread)."""

from __future__ import annotations

from adaptive.cue import CueBank
from adaptive.mapping import ResolvedMapping
from adaptive.players import Player
from adaptive.scene import SceneState
from adaptive.smoothing import SceneSmoother


class Stage:
    """What can play and what plays.

    Attributes:
        bank: the cue bank.
        sample_rate_hz: the session rate.
        seed: the session seed.
        mapping: the mapping played by (replaced by a mapping change).
        scene: the scene as the game last said it.
        smoother: the scene as the music follows it (slewed).
        players: every cue and segment's player, by name (bank order).
        bridges: generated bridges still sounding.
        current: the cue playing, or the one a transition is heading to.
        lead: the player whose grid gives beats and bars.
        gain_intensity: the intensity the layer gains were last set for (None
            before the first input).
        tempo_changes: ``(frame, bpm, beats_per_bar)`` of the lead, in order.
    """

    def __init__(self, bank: CueBank, sample_rate_hz: int, seed: int, mapping: ResolvedMapping) -> None:
        self.bank = bank
        self.sample_rate_hz = sample_rate_hz
        self.seed = seed
        self.mapping = mapping
        self.scene = SceneState()
        smoothing = mapping.mapping.smoothing
        self.smoother = SceneSmoother(smoothing.valence_per_second, smoothing.arousal_per_second,
                                      smoothing.intensity_per_second, sample_rate_hz)
        self.players: dict[str, Player] = {}
        self.bridges: list[Player] = []
        self.current: Player | None = None
        self.lead: Player | None = None
        self.gain_intensity: float | None = None
        self.tempo_changes: list[tuple[int, float, int]] = []

    def active_players(self) -> list[Player]:
        """Players sounding now: cues and segments in bank order, then bridges."""
        players = [player for player in self.players.values() if player.active]
        players.extend(bridge for bridge in self.bridges if bridge.active)
        return players

    def layer_intensity(self, frame: int) -> float:
        """The intensity layer gains follow: the smoothed one (the scene's until the first input)."""
        return self.smoother.at(frame)[2] if self.gain_intensity is not None else self.scene.intensity
