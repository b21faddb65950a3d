"""The transition runner: starts cues, and carries the music from one cue to
the next by a transition rule (:mod:`adaptive.transition`) — waits for the
exit boundary, fades the outgoing cue, plays the bridge (an authored segment
or generated bars) and brings the incoming cue in on its grid."""

from __future__ import annotations

import math
from typing import Any, Callable

from adaptive.clock import SteppedTempoGrid, TempoGrid, beats_to_frames, frames_per_beat, seconds_to_frames
from adaptive.cue import BridgeKind, TransitionRule
from adaptive.events import EventKind
from adaptive.gain import GainCurve
from adaptive.generation import BarFeed, GenerationWorker
from adaptive.players import LayerPlayer, Player
from adaptive.schedule import Schedule
from adaptive.speculation import BridgesAhead
from adaptive.stage import Stage
from adaptive.synth import Synth
from adaptive.voice import GeneratedVoice, MidiVoice

DECLICK_SECONDS = 0.005
"""A cut (fade of 0 beats) still fades the outgoing cue over 5 ms, so it cannot click."""

EXACT_SEAM_SECONDS = 1.0
"""A generated bridge requested at least this long before its boundary is
planned from the outgoing cue's bar that actually ends there (not the loop's
last bar, which a bridge made ahead assumes): a 1-2 bar bridge takes well
under this to generate (docs/benchmarks.md, "Generator"), and the deadline
puts it first in the worker's queue. Decided from frames alone, so a replay
plans the same bridge."""
BRIDGE_PROGRAM = 48
"""General MIDI program of generated bridges (String Ensemble 1)."""


class TransitionRunner:
    """Starts players and runs transitions between cues.

    Args:
        stage: what plays.
        schedule: where boundaries, arrivals and fade ends wait.
        generation: the generation worker generated bridges stream through.
        bridges_ahead: the generated bridges made ahead.
        bridge_synths: the synthesizers generated bridges play on (two, or
            none when no rule uses generated bridges).
        midi_sink: makes the MIDI sink of a part (``(name, program, percussion)``).
    """

    def __init__(self, stage: Stage, schedule: Schedule, generation: GenerationWorker, bridges_ahead: BridgesAhead,
                 bridge_synths: list[Synth], midi_sink: Callable) -> None:
        self.stage = stage
        self.schedule = schedule
        self.generation = generation
        self.bridges_ahead = bridges_ahead
        self.bridge_synths = bridge_synths
        self.midi_sink = midi_sink
        self.pending: int | None = None  # schedule id of a transition not yet begun
        self._primed_target: str | None = None  # the cue whose generated bars were asked for early
        self.quotes: Callable[[str, str, Any], tuple[str, int, Any] | None] | None = None
        """``quotes(from_cue, to_cue, plan)``: the theme a generated bridge
        quotes and its notes (:meth:`adaptive.builder.PlayerBuilder.bridge_quotes`), or None."""
        self.quote_voices: dict[int, MidiVoice] = {}
        """A voice per General MIDI program that bridges quote themes with (made at set-up)."""
        self.on_transition_begun: Callable[[], None] = lambda: None
        """Called once a transition has begun (the conductor refreshes what it generates ahead)."""

    # ------------------------------------------------------------------ players
    def start_player(self, player: Player, frame: int, fade_frames: int, previous: str | None,
                     arousal: float | None = None) -> None:
        """Start (or bring back) ``player`` at ``frame``, fading in over ``fade_frames``; it leads the beat."""
        stage = self.stage
        rate = stage.sample_rate_hz
        if arousal is not None:  # a cue starting fresh takes its tempo from the mapping
            player.bpm = self.start_bpm(player.name, arousal)
        player.generation += 1
        if player.bar_bpms is None:
            player.grid = TempoGrid(player.bpm, player.beats_per_bar, frame, rate)
        else:
            player.grid = SteppedTempoGrid(player.bar_bpms, player.beats_per_bar, frame, rate)
        for layer in player.layers:
            if not player.active:
                layer.gain.ramp_to(layer.curve.amplitude(stage.layer_intensity(self.schedule.frame_now)), frame, 0)
            layer.voice.start(player.grid)
        if player.active:
            self.retarget_layers(player, frame)
            player.gain.ramp_to(1.0, frame, max(fade_frames, seconds_to_frames(DECLICK_SECONDS, rate)))
        else:
            player.gain.ramp_to(0.0, frame, 0)
            player.gain.ramp_to(1.0, frame, fade_frames)
        if not player.active and player.name in stage.players:
            self.emit_gains(player, frame)
        player.active = True
        stage.lead = player
        if isinstance(player.grid, SteppedTempoGrid):
            for bar, bpm in enumerate(player.grid.bar_bpms):
                stage.tempo_changes.append((player.grid.bar_frames[bar], bpm, player.beats_per_bar))
        else:
            stage.tempo_changes.append((frame, player.bpm, player.beats_per_bar))
        self.schedule.emit(frame, EventKind.CUE_CHANGE, cue=player.name, previous=previous, bpm=player.bpm,
                           beats_per_bar=player.beats_per_bar)

    def fade_out(self, player: Player, frame: int, fade_frames: int) -> None:
        """Fade ``player`` out from ``frame``; its voices stop when the fade ends (unless it starts again)."""
        player.gain.ramp_to(0.0, frame, fade_frames)
        generation = player.generation

        def stop() -> None:
            if player.generation == generation and player.active:
                player.active = False
                for layer in player.layers:
                    layer.voice.stop(self.schedule.frame_now)

        self.schedule.at(frame + fade_frames, stop)

    def retarget_layers(self, player: Player, frame: int, intensity: float | None = None) -> None:
        """Ramp each layer of ``player`` to its curve's gain at the intensity followed now.

        ``intensity``: that intensity (0..1) when the caller has it already
        (the conductor, at every scene input); ``None`` asks the stage
        (:meth:`adaptive.stage.Stage.layer_intensity`). Each fade is the
        layer's ``fade_beats`` at the player's tempo, in whole frames
        (:func:`adaptive.clock.beats_to_frames`, the beat's length computed
        once per call)."""
        if intensity is None:
            intensity = self.stage.layer_intensity(self.schedule.frame_now)
        frames_per_beat_now = frames_per_beat(player.bpm, self.stage.sample_rate_hz)
        for layer in player.layers:
            # int(round(beats * frames per beat)): beats_to_frames, step for step.
            layer.gain.ramp_to(layer.curve.amplitude(intensity), frame, int(round(layer.fade_beats * frames_per_beat_now)))
        self.emit_gains(player, frame)

    def emit_gains(self, player: Player, frame: int) -> None:
        """A ``gains`` event: each layer's target gain in dB (None: silent) and its fade in frames."""
        layers = {}
        for layer in player.layers:
            amplitude = layer.gain.target_amplitude
            # amplitude_to_db written out (amplitude > 0 here): this runs for every layer at every scene input.
            layers[layer.layer_name] = [None if amplitude <= 0.0 else round(20.0 * math.log10(amplitude), 3),
                                        layer.gain.length_frames]
        self.schedule.emit(frame, EventKind.GAINS, cue=player.name, layers=layers)

    def start_bpm(self, cue: str, arousal: float) -> float:
        """A cue's tempo when it starts: the mapping's tempo for ``arousal``, else the bank's."""
        bpm = self.stage.mapping.bpm_for(cue, arousal)
        return bpm if bpm is not None else self.stage.bank.cue(cue).bpm

    # ------------------------------------------------------------------ transitions
    def request(self, target: str, frame: int) -> None:
        """Go to cue ``target`` by the mapping's rule from the cue playing, on its exit boundary."""
        stage = self.stage
        current = stage.current
        assert current is not None and current.grid is not None
        if self.pending is not None:
            self.schedule.cancel(self.pending)
        rule = stage.mapping.find_rule(current.name, target)
        cue = stage.bank.cue(current.name)
        boundary = current.grid.quantize(frame, rule.exit, phrase_bars=cue.phrase_bars, loop_bars=cue.loop_bars)
        boundary = max(boundary, current.grid.origin_frame, frame)

        # Give the generator the time until the boundary: the bridge, and the
        # incoming cue's first bars (unless it is still sounding).
        if rule.bridge.kind is BridgeKind.GENERATED:
            bars_at_boundary = round(current.grid.frame_to_beat(boundary) / current.beats_per_bar)
            exact_in_time = boundary - frame >= seconds_to_frames(EXACT_SEAM_SECONDS, stage.sample_rate_hz)
            self.bridges_ahead.requested(current.name, target, rule.bridge.bars, boundary,
                                         bar_in_loop=(bars_at_boundary - 1) % cue.loop_bars,
                                         exact_in_time=exact_in_time)
        self.prime_incoming(target, boundary)

        def begin() -> None:
            self.pending = None
            self._primed_target = None
            self._begin(target, rule, frame)

        self.pending = self.schedule.at(boundary, begin)

    def cancel_pending(self) -> None:
        """The scene came back before the boundary: the pending transition does not happen."""
        if self.pending is not None:
            self.schedule.cancel(self.pending)
            self.pending = None
            self.prime_incoming(None)

    def prime_incoming(self, target: str | None, boundary: int = 0) -> None:
        """Ask for the first bars of ``target``'s generated layers now (once per
        pending transition), or forget those asked for a transition that will
        not happen (``target`` None or another cue)."""
        players = self.stage.players
        previous, self._primed_target = self._primed_target, target
        if previous is not None and previous != target:
            for layer in players[previous].layers:
                if isinstance(layer.voice, GeneratedVoice):
                    layer.voice.feed.unprime()
        incoming = players.get(target) if target is not None else None
        if incoming is not None and previous != target and not incoming.active:
            for layer in incoming.layers:
                if isinstance(layer.voice, GeneratedVoice):
                    layer.voice.feed.prime(deadline_frame=boundary)

    def _begin(self, target: str, rule: TransitionRule, requested_frame: int) -> None:
        stage, schedule = self.stage, self.schedule
        rate = stage.sample_rate_hz
        frame = schedule.frame_now
        old = stage.current
        assert old is not None
        new = stage.players[target]
        if not new.active:  # a cue re-entered while it fades out keeps its tempo
            new.bpm = self.start_bpm(target, stage.smoother.at(frame)[1])
        schedule.emit(frame, EventKind.TRANSITION_START, cue=old.name, to=target, exit=rule.exit.value,
                      fade_beats=rule.fade_beats, bridge=rule.bridge.kind.value, requested_frame=requested_frame)
        fade_frames = beats_to_frames(rule.fade_beats, old.bpm, rate)
        self.fade_out(old, frame, max(fade_frames, seconds_to_frames(DECLICK_SECONDS, rate)))
        arrival = frame
        if rule.bridge.kind is BridgeKind.SEGMENT:
            segment = stage.players[rule.bridge.segment]  # type: ignore[index]
            self.start_player(segment, frame, 0, old.name)
            assert segment.grid is not None and segment.length_bars is not None
            arrival = segment.grid.bar_to_frame(segment.length_bars)
            self.fade_out(segment, arrival, beats_to_frames(1.0, segment.bpm, rate))
        elif rule.bridge.kind is BridgeKind.GENERATED:
            bridge = self._build_bridge(old, new, rule.bridge.bars)
            stage.bridges = [b for b in stage.bridges if b.active] + [bridge]
            self.start_player(bridge, frame, 0, old.name)
            assert bridge.grid is not None
            arrival = bridge.grid.bar_to_frame(rule.bridge.bars)
            self.fade_out(bridge, arrival, beats_to_frames(1.0, bridge.bpm, rate))
        stage.current = new
        # The incoming cue's grid is known now: a request made while a bridge
        # plays quantizes on it, and so lands at or after the arrival.
        new.grid = TempoGrid(new.bpm, new.beats_per_bar, arrival, rate)
        cross_fade = fade_frames if rule.bridge.kind is BridgeKind.NONE else 0
        previous = stage.lead.name if stage.lead else old.name

        def arrive() -> None:
            self.start_player(new, arrival, cross_fade, previous)

        if arrival == frame:
            arrive()
        else:
            schedule.at(arrival, arrive)
        schedule.at(max(arrival, frame + fade_frames), lambda: schedule.emit(
            schedule.frame_now, EventKind.TRANSITION_END, cue=old.name, to=target))
        self.on_transition_begun()

    def _build_bridge(self, old: Player, new: Player, bars: int) -> Player:
        """A generated bridge of ``bars`` bars (:func:`adaptive.transition.plan_bridge`):
        it modulates to the incoming key (ending on its dominant), moves the
        emotion from the outgoing cue's point to the incoming one's and steps
        the tempo from the outgoing cue's towards the incoming one's, bar by
        bar. Its bars come from the generation worker — made ahead if the
        transition was foreseen — each taken at its downbeat (the rule-based
        fallback plays a bar that is not ready: a counted miss)."""
        now = self.schedule.frame_now
        plan, tickets = self.bridges_ahead.take(old.name, new.name, bars, now)
        sounding = [bridge for bridge in self.stage.bridges if bridge.active]
        busy = {id(bridge.layers[0].voice.synth) for bridge in sounding}
        free = [synth for synth in self.bridge_synths if id(synth) not in busy]
        if not free:  # a third bridge within one beat: cut the oldest
            oldest = sounding[0]
            oldest.active = False
            oldest.layers[0].voice.stop(now)
            free = [oldest.layers[0].voice.synth]
        feed = BarFeed(self.generation, self.bridges_ahead.stream, plan.requests.__getitem__,
                       bars_ahead=min(plan.bars, 16), bars=plan.bars)
        feed.prime(tickets=tickets)
        voice = GeneratedVoice(feed, free[0], plan.beats_per_bar, plan.bars,
                               self.midi_sink("bridge", BRIDGE_PROGRAM, False))
        layer = LayerPlayer("bridge", voice, GainCurve(((0.0, 0.0),)), 0.0)
        player = Player(f"bridge:{old.name}->{new.name}", plan.bar_bpms[-1], plan.beats_per_bar, [layer], 0.0,
                        False, plan.bars)
        player.bar_bpms = plan.bar_bpms
        quoted = self.quotes(old.name, new.name, plan) if self.quotes is not None else None
        if quoted is not None and quoted[1] in self.quote_voices:
            theme, program, notes = quoted
            quote_voice = self.quote_voices[program]
            quote_voice.part = notes
            player.layers.append(LayerPlayer("quote", quote_voice, GainCurve(((0.0, 0.0),)), 0.0))
            self.schedule.emit(now, EventKind.THEME, name=theme, bridge=player.name)
        return player
