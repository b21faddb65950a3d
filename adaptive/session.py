"""The session: one frame clock, the music playing on it, and the schedule of
everything that will change it.

A :class:`Session` is the deterministic engine core shared by offline rendering
and real-time serving (DESIGN.md, "The time model"):

* Inputs (:class:`~adaptive.scene.SceneUpdate`, :class:`~adaptive.scene.StingerTrigger`)
  are submitted with the frame at which they take effect.
* :meth:`Session.render` renders the next ``n`` frames. Every scheduled action
  (an input, a cue change on its quantized boundary, the end of a fade, a
  stinger) runs before the frame it is stamped with and after the frame
  before it: the render block is split there. So the audio does not depend on
  how rendering is split into blocks, and the same bank, seed and stamped
  inputs give bit-identical audio.
* Music events (beat, bar, cue change, transition start/end, stinger, scene)
  are collected with their frames; MIDI note events are logged for export.

Nothing in :meth:`Session.render` reads files, opens sockets or logs: assets
are loaded and synthesizers created when the session is made.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from adaptive.clock import (DEFAULT_SAMPLE_RATE_HZ, Quantize, SteppedTempoGrid, TempoGrid, beats_to_frames,
                            seconds_to_frames)
from adaptive.cue import (BridgeKind, Cue, CueBank, GeneratedSource, GeneratedStingerSource, Layer, MidiSource,
                          StemSource, TransitionRule)
from adaptive.errors import AdaptiveError, AssetError
from adaptive.gain import GainCurve, GainRamp, amplitude_to_db, db_to_amplitude
from adaptive.generation import BarFeed, GenerationWorker
from adaptive.generator import BarRequest
from adaptive.harmony import Key
from adaptive.mapping import MappingChange, ResolvedMapping, parse_mapping_text
from adaptive.mixer import SoftLimiter
from adaptive.part import Part, PartLibrary
from adaptive.registry import default_generator, make_generator
from adaptive.scene import SceneState, SceneUpdate, SessionInput, StingerTrigger, validate_update
from adaptive.smoothing import SceneSmoother
from adaptive.speculation import DEFAULT_SPECULATIVE_BRIDGES, BridgesAhead, StingersAhead
from adaptive.stem import load_stem, render_part, rendered_stem_path, write_stem
from adaptive.synth import Synth, find_soundfont
from adaptive.voice import GeneratedVoice, MidiVoice, StemVoice

DECLICK_SECONDS = 0.005
"""A cut (fade of 0 beats) still fades the outgoing cue over 5 ms, so it cannot click."""

STINGER_TAIL_CHECK_SECONDS = 1.0
"""How often a finished stinger is checked for voices still ringing before its
synthesizer is parked."""

BRIDGE_PROGRAM = 48
"""General MIDI program of generated bridges (String Ensemble 1)."""

FOLLOW_STEP_SECONDS = 0.05
"""While the smoothed scene is still moving toward what the game said, the
mapping is evaluated again this often (session time): cue choice and layer
gains follow the slew in 50 ms steps."""


def _uses_generated_bridges(rules: Any) -> bool:
    return any(rule.bridge.kind is BridgeKind.GENERATED for rule in rules)


class InputError(AdaptiveError):
    """An input (scene update, stinger) that names something unknown or a value
    out of range. The session is unchanged."""


@dataclass(frozen=True)
class MusicEvent:
    """Something that happens in the music at a frame.

    Attributes:
        frame: session frame.
        kind: ``"beat"``, ``"bar"``, ``"cue_change"``, ``"transition_start"``,
            ``"transition_end"``, ``"stinger"`` or ``"scene"``.
        data: kind-specific fields (cue names, bar/beat numbers, values).
    """

    frame: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MidiNoteEvent:
    """A note event as played: ``part`` is ``"cue/layer"``, ``"stinger/name"``
    or ``"bridge"``."""

    frame: int
    part: str
    kind: int  # voice.NOTE_ON or voice.NOTE_OFF
    pitch: int
    velocity: int


@dataclass(frozen=True)
class PartInfo:
    """How a MIDI part sounds: General MIDI program and percussion flag."""

    program: int
    percussion: bool


class _LayerPlayer:
    __slots__ = ("layer_name", "voice", "gain", "curve", "fade_beats")

    def __init__(self, layer_name: str, voice: Any, curve: Any, fade_beats: float) -> None:
        self.layer_name = layer_name
        self.voice = voice
        self.gain = GainRamp(0.0)
        self.curve = curve
        self.fade_beats = fade_beats


class _Player:
    """Runtime state of a cue (or segment, or bridge) that can play."""

    def __init__(self, name: str, bpm: float, beats_per_bar: int, layers: list[_LayerPlayer], gain_db: float,
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
        n = out.shape[0]
        end_frame = start_frame + n
        cue_constant = self.gain.is_constant_over(start_frame, end_frame)
        cue_envelope = None if cue_constant else self.gain.envelope(start_frame, n)
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
            envelope = layer.gain.envelope(start_frame, n)
            envelope *= cue_envelope if cue_envelope is not None else np.float32(cue_amplitude)
            if not cue_constant:
                envelope *= np.float32(self.amplitude)
            buffer *= envelope[:, None]
            out += buffer


class Session:
    """The deterministic engine core for one session. See the module docstring.

    Args:
        bank: the cue bank.
        soundfont: General MIDI SoundFont (default: :func:`adaptive.synth.find_soundfont`).
        sample_rate_hz: session sample rate (8 000..192 000).
        seed: seeds every generated part; same seed, same music.
        max_block_frames: the largest block :meth:`render` may be asked for.
        master_gain_db: gain on the mix before the limiter (headroom).
        record_midi: keep every played note in :attr:`midi_events`.
        progress: called with a message while assets load (e.g. rendering stems).
        generator: the part generator (a name of :data:`adaptive.registry.GENERATORS`)
            of generated layers without their own ``source.generator``, of
            generated bridges and of generated stingers (default
            :func:`adaptive.registry.default_generator`).
        generation: the generation worker (default: a new one in
            :attr:`~adaptive.generation.GenerationMode.WAIT` mode, for offline
            rendering; the real-time runner switches it to real time). The
            session closes it.
        bars_ahead: bars a generated layer asks for beyond the one playing
            (1..16): the emotion a bar expresses is the one current that many
            bars before it plays.
        speculative_bridges: generated bridges made ahead per playing cue (0..16).
        mapping: the sound designer's mapping, resolved against ``bank``
            (default: what the bank implies on its own,
            :meth:`~adaptive.mapping.ResolvedMapping.from_bank`).
        generated_bridges: make the two synthesizers of generated bridges even
            if neither the bank nor ``mapping`` uses such bridges, so a later
            mapping change may (a live server does; default: only if used).

    Raises:
        AssetError: a SoundFont, MIDI file or stem is missing or unreadable.
        ConfigError: an unknown generator, or one that cannot be loaded.
        ValueError: a sample rate, block size or count out of range.
    """

    def __init__(
        self,
        bank: CueBank,
        *,
        soundfont: Path | str | None = None,
        sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
        seed: int = 0,
        max_block_frames: int = 4096,
        master_gain_db: float = 0.0,
        record_midi: bool = True,
        progress: Callable[[str], None] | None = None,
        generator: str | None = None,
        generation: GenerationWorker | None = None,
        bars_ahead: int = 1,
        speculative_bridges: int = DEFAULT_SPECULATIVE_BRIDGES,
        mapping: ResolvedMapping | None = None,
        generated_bridges: bool = False,
    ) -> None:
        if not 8_000 <= sample_rate_hz <= 192_000:
            raise ValueError(f"sample rate {sample_rate_hz} Hz is out of range (allowed: 8000..192000)")
        if not 1 <= max_block_frames <= 1 << 20:
            raise ValueError(f"max_block_frames {max_block_frames} is out of range (allowed: 1..1048576)")
        self.bank = bank
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate_hz = sample_rate_hz
        self.seed = seed
        self.max_block_frames = max_block_frames
        self.master_amplitude = db_to_amplitude(master_gain_db)
        self.limiter = SoftLimiter()
        self.record_midi = record_midi
        self._progress = progress or (lambda message: None)
        if not 1 <= bars_ahead <= 16:
            raise ValueError(f"bars_ahead {bars_ahead} is out of range (allowed: 1..16)")
        self.generator_name = generator or default_generator()
        self.bars_ahead = bars_ahead
        self.speculative_bridges = speculative_bridges
        self.generation = generation or GenerationWorker()
        """The generation worker; its ``counters`` (generated_bars,
        generation_misses, generation_errors) and fallbacks are the session's."""

        self.frame = 0
        self._position = 0  # the frame the schedule has reached inside render()
        self.scene = SceneState()
        self.mapping = mapping if mapping is not None else ResolvedMapping.from_bank(bank)
        smoothing = self.mapping.mapping.smoothing
        self._smoother = SceneSmoother(smoothing.valence_per_second, smoothing.arousal_per_second,
                                       smoothing.intensity_per_second, sample_rate_hz)
        self._gain_intensity: float | None = None  # the intensity the layer gains were last set for
        self._follow_pending: int | None = None  # frame of the next scheduled evaluation, if any
        self.events: list[MusicEvent] = []
        self.midi_events: list[MidiNoteEvent] = []
        self.parts: dict[str, PartInfo] = {}
        self.tempo_changes: list[tuple[int, float, int]] = []  # (frame, bpm, beats_per_bar) of the lead
        self.counters: dict[str, int] = {"inputs": 0, "rejected_inputs": 0, "limited_blocks": 0}

        self._schedule: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._cancelled: set[int] = set()
        self._mix = np.zeros((max_block_frames, 2), np.float32)
        self._scratch = np.zeros((max_block_frames, 2), np.float32)

        self._library = PartLibrary()
        self._players: dict[str, _Player] = {}
        for cue in bank.cues:
            self._players[cue.name] = self._build_player(cue, looping=True)
        for segment in bank.segments:
            self._players[segment.name] = self._build_player(segment, looping=False)
        self._stingers: dict[str, tuple[MidiVoice, Part]] = {}
        self._stinger_amplitude: dict[str, float] = {}
        self._active_stingers: list[str] = []
        generated_stingers = []
        for stinger in bank.stingers:
            if isinstance(stinger.source, GeneratedStingerSource):
                part = Part.empty()
                generated_stingers.append((stinger, self.generation.stream(
                    f"stinger/{stinger.name}", make_generator(stinger.source.generator or self.generator_name))))
            else:
                try:
                    part = self._library.track(bank.path(stinger.source.file), stinger.source.track)
                except AssetError as error:
                    raise AssetError(f"stinger {stinger.name!r}: {error}") from None
            synth = Synth(self.soundfont, sample_rate_hz, stinger.program, stinger.percussion, stinger.max_voices)
            voice = MidiVoice(part, synth, None, self._midi_sink(f"stinger/{stinger.name}", stinger.program, stinger.percussion))
            self._stingers[stinger.name] = (voice, part)
            self._stinger_amplitude[stinger.name] = db_to_amplitude(stinger.gain_db)
        # Generated bridges get synthesizers made now, not while rendering; two,
        # so a bridge can start while the previous one still fades out.
        uses_bridges = generated_bridges or _uses_generated_bridges(bank.transitions) \
            or _uses_generated_bridges(self.mapping.transition_rules())
        self._bridge_synths = [Synth(self.soundfont, sample_rate_hz, BRIDGE_PROGRAM, False)
                               for _ in range(2 if uses_bridges else 0)]
        self._bridges: list[_Player] = []  # generated bridges still sounding
        self._bridges_ahead = BridgesAhead(
            bank, self.generation,
            self.generation.stream("bridge", make_generator(self.generator_name)) if uses_bridges else None,  # type: ignore[arg-type]
            seed, speculative_bridges if uses_bridges else 0)
        self._bridges_ahead.rules = self.mapping.transition_rules()
        self._bridges_ahead.conditioning = self.mapping.conditioning
        self._stingers_ahead = StingersAhead(self.generation, generated_stingers, seed)

        self._current: _Player | None = None  # the cue playing, or the one a transition is heading to
        self._lead: _Player | None = None  # the player whose grid gives beats and bars
        self._pending_transition: int | None = None  # schedule id of a transition not yet begun
        self._primed_target: str | None = None  # the cue whose generated bars were asked for early

    # ------------------------------------------------------------------ set-up
    def _midi_sink(self, part_name: str, program: int, percussion: bool) -> Callable[[int, int, int, int], None] | None:
        self.parts[part_name] = PartInfo(program, percussion)
        if not self.record_midi:
            return None
        events = self.midi_events

        def sink(frame: int, kind: int, pitch: int, velocity: int) -> None:
            events.append(MidiNoteEvent(frame, part_name, kind, pitch, velocity))

        return sink

    def _build_player(self, cue: Cue, looping: bool) -> _Player:
        loop_beats = float(cue.loop_bars * cue.meter.beats_per_bar) if looping else None
        layers: list[_LayerPlayer] = []
        role = "cue" if looping else "segment"
        for layer in cue.layers:
            try:
                voice = self._build_voice(cue, layer, loop_beats)
            except AssetError as error:
                raise AssetError(f"{role} {cue.name!r} layer {layer.name!r}: {error}") from None
            curve, fade_beats = self.mapping.layer_gain(cue.name, layer.name)
            layers.append(_LayerPlayer(layer.name, voice, curve, fade_beats))
        return _Player(cue.name, cue.bpm, cue.meter.beats_per_bar, layers, cue.gain_db, looping,
                       None if looping else cue.loop_bars)

    def _build_voice(self, cue: Cue, layer: Layer, loop_beats: float | None) -> Any:
        source = layer.source
        part_name = f"{cue.name}/{layer.name}"
        if isinstance(source, MidiSource):
            part = self._library.track(self.bank.path(source.file), source.track)
            synth = Synth(self.soundfont, self.sample_rate_hz, layer.program, layer.percussion, layer.max_voices)
            return MidiVoice(part, synth, loop_beats, self._midi_sink(part_name, layer.program, layer.percussion))
        if isinstance(source, StemSource):
            return StemVoice(self._stem_audio(cue, source), loop_beats)
        assert isinstance(source, GeneratedSource)
        stream = self.generation.stream(part_name, make_generator(source.generator or self.generator_name))
        synth = Synth(self.soundfont, self.sample_rate_hz, layer.program, layer.percussion, layer.max_voices)
        key = cue.parsed_key

        def request_for_bar(bar_index: int, cue: Cue = cue, role: str = source.role) -> BarRequest:
            emotion = self.scene.emotion
            return BarRequest(bar_index, key, cue.chord_at_bar(bar_index), cue.meter.beats_per_bar, cue.bpm,
                              emotion.valence, emotion.arousal, role, self.seed,
                              self.mapping.conditioning(emotion.valence, emotion.arousal))

        feed = BarFeed(self.generation, stream, request_for_bar, self.bars_ahead)
        return GeneratedVoice(feed, synth, cue.meter.beats_per_bar, None,
                              self._midi_sink(part_name, layer.program, layer.percussion))

    def _stem_audio(self, cue: Cue, source: StemSource) -> np.ndarray:
        if source.rendered_from is None:
            return load_stem(self.bank.path(source.file), self.sample_rate_hz)
        spec = source.rendered_from
        midi_path = self.bank.path(spec.file)
        length_beats = float(cue.loop_bars * cue.meter.beats_per_bar)
        path = rendered_stem_path(
            midi_path=midi_path, track=spec.track, program=spec.program, percussion=spec.percussion, bpm=cue.bpm,
            length_beats=length_beats, tail_seconds=spec.tail_seconds, soundfont=self.soundfont,
            sample_rate_hz=self.sample_rate_hz, file_name=source.file,
        )
        if not path.is_file():
            self._progress(f"rendering stem {source.file} from {spec.file} ({spec.track}) into {path}")
            part = self._library.track(midi_path, spec.track)
            audio = render_part(part, soundfont=self.soundfont, program=spec.program, percussion=spec.percussion,
                                bpm=cue.bpm, sample_rate_hz=self.sample_rate_hz, length_beats=length_beats,
                                tail_seconds=spec.tail_seconds)
            write_stem(path, audio, self.sample_rate_hz)
        return load_stem(path, self.sample_rate_hz)

    # ------------------------------------------------------------------ inputs
    def submit(self, frame: int, item: SessionInput) -> None:
        """Schedule an input to take effect at ``frame`` (clamped to now if in the past).

        Raises:
            InputError: unknown emotion, cue or stinger, or a value out of range;
                nothing is scheduled and the music is unchanged.
        """
        try:
            if isinstance(item, SceneUpdate):
                validate_update(item, self.bank, self.mapping.emotion)
            elif isinstance(item, StingerTrigger):
                self.mapping.stinger(item.name)
            elif isinstance(item, MappingChange):
                if item.resolved is None or item.resolved.bank is not self.bank:
                    item = MappingChange(item.text, parse_mapping_text(item.text, self.bank, item.source), item.source)
                assert item.resolved is not None
                if not self._bridge_synths and _uses_generated_bridges(item.resolved.transition_rules()):
                    raise ValueError("the new mapping's transitions use generated bridges, and this session was "
                                     "started without their synthesizers (allowed: a mapping without them, or "
                                     "start the session with generated_bridges=True, as the server does)")
            else:
                raise ValueError(f"unknown input type {type(item).__name__} "
                                 "(allowed: SceneUpdate, StingerTrigger, MappingChange)")
        except (KeyError, ValueError, AdaptiveError) as error:
            self.counters["rejected_inputs"] += 1
            raise InputError(str(error.args[0] if isinstance(error, KeyError) else error)) from None
        self.counters["inputs"] += 1
        self._at(max(int(frame), self.frame), lambda: self._apply(item))

    def _at(self, frame: int, action: Callable[[], None]) -> int:
        sequence = next(self._sequence)
        heapq.heappush(self._schedule, (frame, sequence, action))
        return sequence

    def _emit(self, frame: int, kind: str, **data: Any) -> None:
        self.events.append(MusicEvent(frame, kind, data))

    def _apply(self, item: SessionInput) -> None:
        frame = self.frame_now
        if isinstance(item, StingerTrigger):
            self._trigger_stinger(item.name, frame)
            return
        if isinstance(item, MappingChange):
            self._schedule_mapping_change(item, frame)
            return
        self.scene.apply(item, self.mapping.emotions)
        emotion = self.scene.emotion
        self._smoother.set_target(frame, emotion.valence, emotion.arousal, self.scene.intensity)
        self._emit(frame, "scene", valence=emotion.valence, arousal=emotion.arousal,
                   emotion=self.scene.emotion_name, intensity=self.scene.intensity, location=self.scene.location)
        self._follow(retarget_all=True)

    # ------------------------------------------------------------------ mapping
    def _follow(self, retarget_all: bool = False) -> None:
        """Evaluate the mapping for the scene as smoothed at this frame: choose
        the cue (hysteresis, minimum time in a cue), set the layer gains, and
        come back in :data:`FOLLOW_STEP_SECONDS` while the smoothing still moves."""
        frame = self.frame_now
        valence, arousal, intensity = self._smoother.at(frame)
        self._emit(frame, "follow", valence=valence, arousal=arousal, intensity=intensity)
        playing = self._current.name if self._current else None
        forced = self.scene.forced_cue
        wanted = forced or self.mapping.choose_cue(valence, arousal, self.scene.location, playing)
        if self._current is None:
            self._start_player(self._players[wanted], frame, fade_frames=0, previous=None, arousal=arousal)
            self._current = self._players[wanted]
        elif wanted != self._current.name:
            held_until = self._held_until()
            if forced or held_until <= frame:
                self._request_transition(wanted, frame)
            else:
                self._follow_at(held_until)
        elif self._pending_transition is not None:
            self._cancelled.add(self._pending_transition)  # the scene came back before the boundary
            self._pending_transition = None
            self._prime_incoming(None)
        if retarget_all or intensity != self._gain_intensity:
            self._gain_intensity = intensity
            for player in self._players.values():
                if player.active:
                    self._retarget_layers(player, frame)
        self._generate_ahead()
        settle = self._smoother.settle_frame()
        if settle > frame:
            self._follow_at(min(settle, frame + max(1, seconds_to_frames(FOLLOW_STEP_SECONDS, self.sample_rate_hz))))

    def _follow_at(self, frame: int) -> None:
        """Evaluate the mapping again at ``frame`` (one pending evaluation at a time: the earliest)."""
        if self._follow_pending is not None and self._follow_pending <= frame:
            return
        self._follow_pending = frame

        def follow() -> None:
            if self._follow_pending == frame:
                self._follow_pending = None
                self._follow()

        self._at(frame, follow)

    def _held_until(self) -> int:
        """The first frame at which the playing cue has played its minimum time
        (``smoothing.min_cue_bars`` bars from its downbeat)."""
        current = self._current
        min_bars = self.mapping.mapping.smoothing.min_cue_bars
        if current is None or current.grid is None or min_bars <= 0:
            return 0
        return current.grid.bar_to_frame(min_bars)

    def _schedule_mapping_change(self, change: MappingChange, frame: int) -> None:
        """Play by ``change``'s mapping from the next bar line of the lead cue
        (at once when nothing plays): layer gains ramp to the new curves over
        their fades, and the cue is chosen again."""
        lead = self._lead
        boundary = frame
        if lead is not None and lead.grid is not None:
            boundary = max(frame, lead.grid.quantize(frame, Quantize.NEXT_BAR))

        def swap() -> None:
            self._swap_mapping(change)

        self._at(boundary, swap)

    def _swap_mapping(self, change: MappingChange) -> None:
        resolved = change.resolved
        assert resolved is not None
        frame = self.frame_now
        self.mapping = resolved
        self._bridges_ahead.rules = resolved.transition_rules()
        self._bridges_ahead.conditioning = resolved.conditioning
        smoothing = resolved.mapping.smoothing
        self._smoother.set_rates(frame, smoothing.valence_per_second, smoothing.arousal_per_second,
                                 smoothing.intensity_per_second)
        for name, player in self._players.items():
            for layer in player.layers:
                layer.curve, layer.fade_beats = resolved.layer_gain(name, layer.layer_name)
        self._emit(frame, "mapping", source=change.source)
        if self._current is not None:
            self._follow(retarget_all=True)

    def _generate_ahead(self) -> None:
        """Refresh what is generated ahead (bridges to the likely next cues,
        generated stingers) for the cue playing or coming and the emotion
        the music follows."""
        if self._current is None:
            return
        valence, arousal, _ = self._smoother.at(self.frame_now)
        self._bridges_ahead.refresh(self._current.name, valence, arousal)
        self._stingers_ahead.refresh(self.bank.cue(self._current.name), valence, arousal)

    # ------------------------------------------------------------------ music
    def _retarget_layers(self, player: _Player, frame: int) -> None:
        intensity = self._layer_intensity()
        for layer in player.layers:
            fade = beats_to_frames(layer.fade_beats, player.bpm, self.sample_rate_hz)
            layer.gain.ramp_to(layer.curve.amplitude(intensity), frame, fade)
        self._emit_gains(player, frame)

    def _layer_intensity(self) -> float:
        """The intensity layer gains follow: the smoothed one (the scene's until the first input)."""
        return self._smoother.at(self.frame_now)[2] if self._gain_intensity is not None else self.scene.intensity

    def _emit_gains(self, player: _Player, frame: int) -> None:
        """A ``gains`` event: each layer's target gain in dB (None: silent) and its fade in frames."""
        layers = {}
        for layer in player.layers:
            amplitude = layer.gain.target_amplitude
            layers[layer.layer_name] = [None if amplitude <= 0.0 else round(amplitude_to_db(amplitude), 3),
                                        layer.gain.length_frames]
        self._emit(frame, "gains", cue=player.name, layers=layers)

    def _start_player(self, player: _Player, frame: int, fade_frames: int, previous: str | None,
                      arousal: float | None = None) -> None:
        if arousal is not None:  # a cue starting fresh takes its tempo from the mapping
            player.bpm = self._start_bpm(player.name, arousal)
        player.generation += 1
        if player.bar_bpms is None:
            player.grid = TempoGrid(player.bpm, player.beats_per_bar, frame, self.sample_rate_hz)
        else:
            player.grid = SteppedTempoGrid(player.bar_bpms, player.beats_per_bar, frame, self.sample_rate_hz)
        for layer in player.layers:
            if not player.active:
                layer.gain.ramp_to(layer.curve.amplitude(self._layer_intensity()), frame, 0)
            layer.voice.start(player.grid)
        if player.active:
            self._retarget_layers(player, frame)
            player.gain.ramp_to(1.0, frame, max(fade_frames, seconds_to_frames(DECLICK_SECONDS, self.sample_rate_hz)))
        else:
            player.gain.ramp_to(0.0, frame, 0)
            player.gain.ramp_to(1.0, frame, fade_frames)
        if not player.active and player.name in self._players:
            self._emit_gains(player, frame)
        player.active = True
        self._lead = player
        if isinstance(player.grid, SteppedTempoGrid):
            for bar, bpm in enumerate(player.grid.bar_bpms):
                self.tempo_changes.append((player.grid.bar_frames[bar], bpm, player.beats_per_bar))
        else:
            self.tempo_changes.append((frame, player.bpm, player.beats_per_bar))
        self._emit(frame, "cue_change", cue=player.name, previous=previous, bpm=player.bpm,
                   beats_per_bar=player.beats_per_bar)

    def _fade_out(self, player: _Player, frame: int, fade_frames: int) -> None:
        player.gain.ramp_to(0.0, frame, fade_frames)
        generation = player.generation

        def stop() -> None:
            if player.generation == generation and player.active:
                player.active = False
                for layer in player.layers:
                    layer.voice.stop(self.frame_now)

        self._at(frame + fade_frames, stop)

    def _request_transition(self, target: str, frame: int) -> None:
        current = self._current
        assert current is not None and current.grid is not None
        if self._pending_transition is not None:
            self._cancelled.add(self._pending_transition)
        rule = self.mapping.find_rule(current.name, target)
        cue = self.bank.cue(current.name)
        boundary = current.grid.quantize(frame, rule.exit, phrase_bars=cue.phrase_bars, loop_bars=cue.loop_bars)
        boundary = max(boundary, current.grid.origin_frame, frame)

        # Give the generator the time until the boundary: the bridge, and the
        # incoming cue's first bars (unless it is still sounding).
        if rule.bridge.kind is BridgeKind.GENERATED:
            self._bridges_ahead.requested(current.name, target, rule.bridge.bars, boundary)
        self._prime_incoming(target, boundary)

        def begin() -> None:
            self._pending_transition = None
            self._primed_target = None
            self._begin_transition(target, rule, frame)

        self._pending_transition = self._at(boundary, begin)

    def _prime_incoming(self, target: str | None, boundary: int = 0) -> None:
        """Ask for the first bars of ``target``'s generated layers now (once per
        pending transition), or forget those asked for a transition that will
        not happen (``target`` None or another cue)."""
        previous, self._primed_target = self._primed_target, target
        if previous is not None and previous != target:
            for layer in self._players[previous].layers:
                if isinstance(layer.voice, GeneratedVoice):
                    layer.voice.feed.unprime()
        incoming = self._players.get(target) if target is not None else None
        if incoming is not None and previous != target and not incoming.active:
            for layer in incoming.layers:
                if isinstance(layer.voice, GeneratedVoice):
                    layer.voice.feed.prime(deadline_frame=boundary)

    def _begin_transition(self, target: str, rule: TransitionRule, requested_frame: int) -> None:
        frame = self.frame_now
        old = self._current
        assert old is not None
        new = self._players[target]
        if not new.active:  # a cue re-entered while it fades out keeps its tempo
            new.bpm = self._start_bpm(target, self._smoother.at(frame)[1])
        self._emit(frame, "transition_start", cue=old.name, to=target, exit=rule.exit.value,
                   fade_beats=rule.fade_beats, bridge=rule.bridge.kind.value, requested_frame=requested_frame)
        fade_frames = beats_to_frames(rule.fade_beats, old.bpm, self.sample_rate_hz)
        self._fade_out(old, frame, max(fade_frames, seconds_to_frames(DECLICK_SECONDS, self.sample_rate_hz)))
        arrival = frame
        if rule.bridge.kind is BridgeKind.SEGMENT:
            segment = self._players[rule.bridge.segment]  # type: ignore[index]
            self._start_player(segment, frame, 0, old.name)
            assert segment.grid is not None and segment.length_bars is not None
            arrival = segment.grid.bar_to_frame(segment.length_bars)
            self._fade_out(segment, arrival, beats_to_frames(1.0, segment.bpm, self.sample_rate_hz))
        elif rule.bridge.kind is BridgeKind.GENERATED:
            bridge = self._build_bridge(old, new, rule.bridge.bars)
            self._bridges = [b for b in self._bridges if b.active] + [bridge]
            self._start_player(bridge, frame, 0, old.name)
            assert bridge.grid is not None
            arrival = bridge.grid.bar_to_frame(rule.bridge.bars)
            self._fade_out(bridge, arrival, beats_to_frames(1.0, bridge.bpm, self.sample_rate_hz))
        self._current = new
        # The incoming cue's grid is known now: a request made while a bridge
        # plays quantizes on it, and so lands at or after the arrival.
        new.grid = TempoGrid(new.bpm, new.beats_per_bar, arrival, self.sample_rate_hz)
        cross_fade = fade_frames if rule.bridge.kind is BridgeKind.NONE else 0
        previous = self._lead.name if self._lead else old.name

        def arrive() -> None:
            self._start_player(new, arrival, cross_fade, previous)

        if arrival == frame:
            arrive()
        else:
            self._at(arrival, arrive)
        self._at(max(arrival, frame + fade_frames), lambda: self._emit(
            self.frame_now, "transition_end", cue=old.name, to=target))
        self._generate_ahead()

    def _start_bpm(self, cue: str, arousal: float) -> float:
        """A cue's tempo when it starts: the mapping's tempo for ``arousal``, else the bank's."""
        bpm = self.mapping.bpm_for(cue, arousal)
        return bpm if bpm is not None else self.bank.cue(cue).bpm

    def _build_bridge(self, old: _Player, new: _Player, bars: int) -> _Player:
        """A generated bridge of ``bars`` bars (:func:`adaptive.transition.plan_bridge`):
        it modulates to the incoming key (ending on its dominant), moves the
        emotion from the outgoing cue's point to the incoming one's and steps
        the tempo from the outgoing cue's towards the incoming one's, bar by
        bar. Its bars come from the generation worker — made ahead if the
        transition was foreseen — each taken at its downbeat (the rule-based
        fallback plays a bar that is not ready: a counted miss)."""
        plan, tickets = self._bridges_ahead.take(old.name, new.name, bars, self.frame_now)
        sounding = [bridge for bridge in self._bridges if bridge.active]
        busy = {id(bridge.layers[0].voice.synth) for bridge in sounding}
        free = [synth for synth in self._bridge_synths if id(synth) not in busy]
        if not free:  # a third bridge within one beat: cut the oldest
            oldest = sounding[0]
            oldest.active = False
            oldest.layers[0].voice.stop(self.frame_now)
            free = [oldest.layers[0].voice.synth]
        feed = BarFeed(self.generation, self._bridges_ahead.stream, plan.requests.__getitem__,
                       bars_ahead=min(plan.bars, 16), bars=plan.bars)
        feed.prime(tickets=tickets)
        voice = GeneratedVoice(feed, free[0], plan.beats_per_bar, plan.bars,
                               self._midi_sink("bridge", BRIDGE_PROGRAM, False))
        layer = _LayerPlayer("bridge", voice, GainCurve(((0.0, 0.0),)), 0.0)
        player = _Player(f"bridge:{old.name}->{new.name}", plan.bar_bpms[-1], plan.beats_per_bar, [layer], 0.0,
                         False, plan.bars)
        player.bar_bpms = plan.bar_bpms
        return player

    def _trigger_stinger(self, name: str, frame: int) -> None:
        try:
            source, quantize, gain_db = self.mapping.stinger(name)
        except KeyError as error:  # the mapping changed since the trigger was accepted
            self._emit(frame, "error", message=str(error.args[0]), input="stinger")
            return
        stinger = self.bank.stinger(source)
        lead = self._lead
        if lead is None or lead.grid is None:
            boundary, bpm, beats_per_bar = frame, 120.0, 4
        else:
            cue = self.bank.cue(lead.name) if lead.name in self._players else None
            phrase_bars = cue.phrase_bars if cue else 4
            loop_bars = cue.loop_bars if cue else (lead.length_bars or 1)
            boundary = lead.grid.quantize(frame, quantize, phrase_bars=phrase_bars, loop_bars=loop_bars)
            bpm, beats_per_bar = lead.bpm, lead.beats_per_bar
        voice, part = self._stingers[source]
        # A generated stinger is in the key of the cue playing when it is
        # triggered, as a MIDI stinger is transposed to it.
        key_cue = self.bank.cue(self._current.name) if self._current is not None else None
        generated = isinstance(stinger.source, GeneratedStingerSource) and key_cue is not None
        if generated:
            assert key_cue is not None
            emotion = self.scene.emotion
            self._stingers_ahead.requested(source, key_cue, emotion.valence, emotion.arousal, boundary)
        elif stinger.key is not None and self._current is not None and self._current.name in self._players:
            semitones = Key.parse(stinger.key).semitones_to(self.bank.cue(self._current.name).parsed_key)
            part = part.transposed(semitones)

        def play() -> None:
            if generated:
                assert key_cue is not None
                emotion = self.scene.emotion
                voice.part = self._stingers_ahead.take(source, key_cue, emotion.valence, emotion.arousal,
                                                       self.frame_now)
            else:
                voice.part = part
            voice.start(TempoGrid(bpm, beats_per_bar, self.frame_now, self.sample_rate_hz))
            self._stinger_amplitude[source] = db_to_amplitude(gain_db)
            if source not in self._active_stingers:
                self._active_stingers.append(source)
            data = {"name": name, "requested_frame": frame}
            if source != name:
                data["source"] = source
            self._emit(self.frame_now, "stinger", **data)
            self._at(voice.finished_frame + seconds_to_frames(STINGER_TAIL_CHECK_SECONDS, self.sample_rate_hz),
                     lambda: self._park_stinger(source, voice))

        self._at(boundary, play)

    def _park_stinger(self, name: str, voice: MidiVoice) -> None:
        finished = voice.finished_frame
        if finished is not None and finished > self.frame_now:
            return  # retriggered since: its own check is scheduled
        if voice.synth.active_voice_count() > 0:
            self._at(self.frame_now + seconds_to_frames(STINGER_TAIL_CHECK_SECONDS, self.sample_rate_hz),
                     lambda: self._park_stinger(name, voice))
            return
        if name in self._active_stingers:
            self._active_stingers.remove(name)

    # ------------------------------------------------------------------ render
    @property
    def frame_now(self) -> int:
        """The frame at which the action being run takes effect (the render position)."""
        return self._position

    def render(self, n_frames: int) -> np.ndarray:
        """Render the next ``n_frames`` (1..max_block_frames) frames.

        Returns:
            A view of an internal buffer, shape ``(n_frames, 2)``, float32, in
            [-1, 1]; valid until the next call. The clock advances by ``n_frames``.

        Raises:
            ValueError: ``n_frames`` out of range.
        """
        if not 1 <= n_frames <= self.max_block_frames:
            raise ValueError(f"n_frames {n_frames} is out of range (allowed: 1..{self.max_block_frames})")
        out = self._mix[:n_frames]
        out.fill(0.0)
        start = self.frame
        end = start + n_frames
        position = start
        schedule = self._schedule
        while True:
            while schedule and schedule[0][0] <= position:
                _, sequence, action = heapq.heappop(schedule)
                if sequence in self._cancelled:
                    self._cancelled.discard(sequence)
                    continue
                self._position = position
                action()
            span_end = min(end, schedule[0][0]) if schedule else end
            if span_end > position:
                self._render_span(position, span_end, out[position - start : span_end - start])
                position = span_end
            if position >= end:
                break
        self.frame = end
        self._position = end
        if self.master_amplitude != 1.0:
            out *= np.float32(self.master_amplitude)
        if self.limiter.process(out):
            self.counters["limited_blocks"] += 1
        return out

    def _render_span(self, start: int, end: int, out: np.ndarray) -> None:
        lead = self._lead
        if lead is not None and lead.grid is not None:
            grid = lead.grid
            for beat in grid.beats_in_span(start, end):
                if beat < 0 or (lead.length_bars is not None and beat >= lead.length_bars * lead.beats_per_bar):
                    continue
                bar_index, beat_in_bar = divmod(beat, lead.beats_per_bar)
                frame = grid.beat_to_frame(beat)
                if beat_in_bar == 0:
                    self._emit(frame, "bar", cue=lead.name, bar_index=bar_index)
                self._emit(frame, "beat", cue=lead.name, bar_index=bar_index, beat_in_bar=beat_in_bar + 1,
                           bpm=grid.bpm_at_beat(beat))
        scratch = self._scratch
        for player in self._active_players():
            player.render(start, out, scratch)
        for name in self._active_stingers:
            voice, _ = self._stingers[name]
            buffer = scratch[: out.shape[0]]
            voice.render(start, buffer)
            buffer *= np.float32(self._stinger_amplitude[name])
            out += buffer

    def _active_players(self) -> list[_Player]:
        players = [player for player in self._players.values() if player.active]
        players.extend(bridge for bridge in self._bridges if bridge.active)
        return players

    def drain_events(self) -> list[MusicEvent]:
        """Music events collected since the last call, in frame order."""
        events, self.events = self.events, []
        events.sort(key=lambda event: event.frame)
        return events

    def close(self) -> None:
        """Free every synthesizer."""
        for player in self._players.values():
            for layer in player.layers:
                synth = getattr(layer.voice, "synth", None)
                if synth is not None:
                    synth.close()
        for voice, _ in self._stingers.values():
            voice.synth.close()
        for synth in self._bridge_synths:
            synth.close()
        self.generation.close()

