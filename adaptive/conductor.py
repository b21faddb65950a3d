"""The conductor: follows the sound designer's mapping. For the scene as
smoothed at each moment it chooses the cue (with hysteresis and a minimum
time in a cue), sets the layer gains, asks the transition runner for cue
changes, has bridges and stingers generated ahead, triggers stingers and
plays by a new mapping from the next bar line."""

from __future__ import annotations

from adaptive.audience import Audience, AudienceVote, AudienceWeight, aggregate_votes, blend, next_grid_frame
from adaptive.clock import Quantize, seconds_to_frames
from adaptive.events import EventKind
from adaptive.mapping import MappingChange
from adaptive.scene import SceneUpdate, SessionInput, StingerTrigger, ThemeTrigger
from adaptive.schedule import Schedule
from adaptive.speculation import BridgesAhead, StingersAhead
from adaptive.stage import Stage
from adaptive.stinger import StingerPlayer
from adaptive.transition_runner import TransitionRunner

FOLLOW_STEP_SECONDS = 0.05
"""While the smoothed scene is still moving toward what the game said, the
mapping is evaluated again this often (session time): cue choice and layer
gains follow the slew in 50 ms steps."""


class Conductor:
    """Turns inputs into music through the mapping.

    Args:
        stage: what plays.
        schedule: where the next evaluation and mapping swaps wait.
        transitions: starts cues and runs transitions.
        stingers: plays stingers.
        bridges_ahead, stingers_ahead: what is generated ahead.
    """

    def __init__(self, stage: Stage, schedule: Schedule, transitions: TransitionRunner, stingers: StingerPlayer,
                 bridges_ahead: BridgesAhead, stingers_ahead: StingersAhead) -> None:
        self.stage = stage
        self.schedule = schedule
        self.transitions = transitions
        self.stingers = stingers
        self.bridges_ahead = bridges_ahead
        self.stingers_ahead = stingers_ahead
        self._follow_pending: int | None = None  # frame of the next scheduled evaluation, if any
        self._last_choice: tuple[object, tuple[float, float, str, str | None], str] | None = None
        self.cue_choices_made = 0
        """Times the mapping chose a cue afresh (see :meth:`_choose_cue`)."""
        self.cue_choices_reused = 0
        """Times the last choice was given again: the same smoothed emotion, location, playing cue and mapping."""
        self.audience = Audience()
        """The audience's votes and the aggregate in force (:mod:`adaptive.audience`)."""
        bridges_ahead.rules = stage.mapping.transition_rules()
        bridges_ahead.conditioning = stage.mapping.conditioning
        transitions.on_transition_begun = self.generate_ahead

    def apply(self, item: SessionInput) -> None:
        """Act on an accepted input at the frame it takes effect."""
        frame = self.schedule.frame_now
        if isinstance(item, SceneUpdate):  # the common case: a game's scene, up to 90 times a second
            self._apply_scene(item, frame)
        else:
            self._apply_other(item, frame)

    def _apply_other(self, item: SessionInput, frame: int) -> None:
        """Act on an input other than a scene update."""
        if isinstance(item, StingerTrigger):
            self.stingers.trigger(item.name, frame)
            return
        if isinstance(item, ThemeTrigger):
            self.stingers.trigger_theme(item.name, frame)
            return
        if isinstance(item, MappingChange):
            self._schedule_mapping_change(item, frame)
            return
        if isinstance(item, AudienceVote):
            self.audience.add(frame, item)
            self._evaluate_audience_after(frame)
            return
        if isinstance(item, AudienceWeight):
            self.audience.weight_override = float(item.weight)
            self._evaluate_audience_after(frame)
            return
        self._apply_scene(item, frame)  # type: ignore[arg-type]

    def _apply_scene(self, item: SceneUpdate, frame: int) -> None:
        """Follow a scene update: the smoothing's new target, a ``scene`` event, the mapping evaluated."""
        stage = self.stage
        stage.scene.apply(item, stage.mapping.emotions)
        emotion = stage.scene.emotion
        stage.smoother.set_target(frame, *self._scene_target())
        self.schedule.emit(frame, EventKind.SCENE, valence=emotion.valence, arousal=emotion.arousal,
                           emotion=stage.scene.emotion_name, intensity=stage.scene.intensity,
                           location=stage.scene.location)
        self.follow(retarget_all=True)

    def follow(self, retarget_all: bool = False) -> None:
        """Evaluate the mapping for the scene as smoothed at this frame: choose
        the cue (hysteresis, minimum time in a cue), set the layer gains, and
        come back in :data:`FOLLOW_STEP_SECONDS` while the smoothing still moves."""
        stage, transitions = self.stage, self.transitions
        frame = self.schedule.frame_now
        valence, arousal, intensity = stage.smoother.at(frame)
        self.schedule.emit(frame, EventKind.FOLLOW, valence=valence, arousal=arousal, intensity=intensity)
        playing = stage.current.name if stage.current else None
        forced = stage.scene.forced_cue
        wanted = forced or self._choose_cue(valence, arousal, stage.scene.location, playing)
        if stage.current is None:
            transitions.start_player(stage.players[wanted], frame, fade_frames=0, previous=None, arousal=arousal)
            stage.current = stage.players[wanted]
        elif wanted != stage.current.name:
            held_until = self._held_until()
            if forced or held_until <= frame:
                transitions.request(wanted, frame)
            else:
                self._follow_at(held_until)
        else:
            transitions.cancel_pending()
        if retarget_all or intensity != stage.gain_intensity:
            stage.gain_intensity = intensity
            for player in stage.players.values():
                if player.active:
                    transitions.retarget_layers(player, frame, intensity)
        self.generate_ahead(valence, arousal)
        settle = stage.smoother.settle_frame()
        if settle > frame:
            step = max(1, seconds_to_frames(FOLLOW_STEP_SECONDS, stage.sample_rate_hz))
            self._follow_at(min(settle, frame + step))

    def _choose_cue(self, valence: float, arousal: float, location: str, playing: str | None) -> str:
        """The mapping's cue for the smoothed emotion at ``location`` given the
        ``playing`` cue (:meth:`adaptive.mapping.ResolvedMapping.choose_cue`).

        The choice is a pure function of these four and the mapping, and a
        game repeats them far more often than it changes them (a 90 Hz game's
        intensity moves, its emotion rarely; the smoothed emotion stands still
        once it arrives), so the last answer is kept and given again while
        all five are the same: counted in :attr:`cue_choices_reused`, a fresh
        evaluation in :attr:`cue_choices_made`."""
        mapping = self.stage.mapping
        key = (valence, arousal, location, playing)
        last = self._last_choice
        if last is not None and last[0] is mapping and last[1] == key:
            self.cue_choices_reused += 1
            return last[2]
        wanted = mapping.choose_cue(valence, arousal, location, playing)
        self._last_choice = (mapping, key, wanted)
        self.cue_choices_made += 1
        return wanted

    def _scene_target(self) -> tuple[float, float, float]:
        """(valence, arousal, intensity) the smoothing heads for: the control
        client's scene blended with the audience's aggregate in force
        (:func:`adaptive.audience.blend`)."""
        scene, audience = self.stage.scene, self.audience
        control = (scene.emotion.valence, scene.emotion.arousal, scene.intensity)
        return blend(control, audience.result, audience.weight(self.stage.mapping.mapping.audience.weight))

    def _evaluate_audience_after(self, frame: int) -> None:
        """Aggregate the votes on the first frame of the ``[audience]
        interval_ms`` grid after ``frame`` (one pending evaluation at a time)."""
        interval = self.stage.mapping.mapping.audience.interval_frames(self.stage.sample_rate_hz)
        due = next_grid_frame(frame, interval)
        audience = self.audience
        if audience.pending_frame is not None and audience.pending_frame <= due:
            return
        audience.pending_frame = due

        def evaluate() -> None:
            if audience.pending_frame == due:
                audience.pending_frame = None
                self.evaluate_audience()

        self.schedule.at(due, evaluate)

    def evaluate_audience(self) -> None:
        """Aggregate the votes in the window at this frame (``[audience]``),
        blend the result into the scene target before the smoothing, follow
        the mapping if the target moved, and come back on the next grid frame
        while votes remain in the window. Emits an ``audience`` event."""
        stage, audience = self.stage, self.audience
        frame = self.schedule.frame_now
        settings = stage.mapping.mapping.audience
        votes = audience.in_window(frame, settings.window_frames(stage.sample_rate_hz))
        result = (aggregate_votes(votes, settings.aggregate, stage.mapping.emotions)
                  if len(votes) >= settings.min_votes else None)
        before = stage.smoother.valence.target, stage.smoother.arousal.target, stage.smoother.intensity.target
        audience.result = result
        target = self._scene_target()
        weight = audience.weight(settings.weight)
        self.schedule.emit(frame, EventKind.AUDIENCE, voices=len(votes), weight=weight,
                           valence=None if result is None else result.valence,
                           arousal=None if result is None else result.arousal,
                           intensity=None if result is None else result.intensity,
                           emotion=None if result is None else result.emotion, target=target)
        if target != before or (stage.current is None and result is not None):
            stage.smoother.set_target(frame, *target)
            self.follow()
        if votes:
            self._evaluate_audience_after(frame)

    def _follow_at(self, frame: int) -> None:
        """Evaluate the mapping again at ``frame`` (one pending evaluation at a time: the earliest)."""
        if self._follow_pending is not None and self._follow_pending <= frame:
            return
        self._follow_pending = frame

        def follow() -> None:
            if self._follow_pending == frame:
                self._follow_pending = None
                self.follow()

        self.schedule.at(frame, follow)

    def _held_until(self) -> int:
        """The first frame at which the playing cue has played its minimum time
        (``smoothing.min_cue_bars`` bars from its downbeat)."""
        current = self.stage.current
        min_bars = self.stage.mapping.mapping.smoothing.min_cue_bars
        if current is None or current.grid is None or min_bars <= 0:
            return 0
        return current.grid.bar_to_frame(min_bars)

    def _schedule_mapping_change(self, change: MappingChange, frame: int) -> None:
        """Play by ``change``'s mapping from the next bar line of the lead cue
        (at once when nothing plays): layer gains ramp to the new curves over
        their fades, and the cue is chosen again."""
        lead = self.stage.lead
        boundary = frame
        if lead is not None and lead.grid is not None:
            boundary = max(frame, lead.grid.quantize(frame, Quantize.NEXT_BAR))
        self.schedule.at(boundary, lambda: self._swap_mapping(change))

    def _swap_mapping(self, change: MappingChange) -> None:
        resolved = change.resolved
        assert resolved is not None
        stage = self.stage
        frame = self.schedule.frame_now
        stage.mapping = resolved
        self.bridges_ahead.rules = resolved.transition_rules()
        self.bridges_ahead.conditioning = resolved.conditioning
        smoothing = resolved.mapping.smoothing
        stage.smoother.set_rates(frame, smoothing.valence_per_second, smoothing.arousal_per_second,
                                 smoothing.intensity_per_second)
        for name, player in stage.players.items():
            for layer in player.layers:
                layer.curve, layer.fade_beats = resolved.layer_gain(name, layer.layer_name)
        self.schedule.emit(frame, EventKind.MAPPING, source=change.source)
        if stage.current is not None:
            self.follow(retarget_all=True)

    def generate_ahead(self, valence: float | None = None, arousal: float | None = None) -> None:
        """Refresh what is generated ahead (bridges to the likely next cues,
        generated stingers) for the cue playing or coming and the emotion
        the music follows: ``valence`` and ``arousal`` (each -1..1) when the
        caller has them for this frame already, else the smoothing's."""
        stage = self.stage
        if stage.current is None:
            return
        if valence is None or arousal is None:
            valence, arousal, _ = stage.smoother.at(self.schedule.frame_now)
        self.bridges_ahead.refresh(stage.current.name, valence, arousal)
        self.stingers_ahead.intensity = stage.scene.intensity
        self.stingers_ahead.refresh(stage.bank.cue(stage.current.name), valence, arousal)
