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

A session is made of parts a reader can name, each in its own module: the
:class:`~adaptive.builder.PlayerBuilder` turns the bank into ready players;
the :class:`~adaptive.stage.Stage` holds what plays; the
:class:`~adaptive.schedule.Schedule` holds what will change it; the
:class:`~adaptive.conductor.Conductor` follows the mapping; the
:class:`~adaptive.transition_runner.TransitionRunner` changes cues; the
:class:`~adaptive.stinger.StingerPlayer` plays stingers; the
:class:`~adaptive.mixer.Mixer` sums them into each block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from adaptive.audience import AudienceVote, AudienceWeight, check_vote, check_weight
from adaptive.builder import PlayerBuilder
from adaptive.clock import DEFAULT_SAMPLE_RATE_HZ
from adaptive.conductor import Conductor
from adaptive.cue import BridgeKind, CueBank, ThemeSource
from adaptive.errors import AdaptiveError
from adaptive.events import EventKind, MidiNoteEvent, MusicEvent, PartInfo
from adaptive.generation import GenerationWorker
from adaptive.mapping import MappingChange, ResolvedMapping, parse_mapping_text
from adaptive.mixer import Mixer
from adaptive.registry import default_generator, make_generator
from adaptive.scene import SceneState, SceneUpdate, SessionInput, StingerTrigger, ThemeTrigger, validate_update
from adaptive.schedule import Schedule
from adaptive.speculation import DEFAULT_SPECULATIVE_BRIDGES, BridgesAhead, StingersAhead
from adaptive.stage import Stage
from adaptive.stinger import StingerPlayer
from adaptive.synth import Synth, choose_soundfont, soundfont_is_loaded
from adaptive.transition_runner import BRIDGE_PROGRAM, TransitionRunner
from adaptive.part import Part
from adaptive.voice import MidiVoice

__all__ = ["InputError", "MidiNoteEvent", "MusicEvent", "PartInfo", "Session"]


def _uses_generated_bridges(rules: Any) -> bool:
    return any(rule.bridge.kind is BridgeKind.GENERATED for rule in rules)


class InputError(AdaptiveError):
    """An input (scene update, stinger) that names something unknown or a value
    out of range. The session is unchanged."""


class Session:
    """The deterministic engine core for one session. See the module docstring.

    Args:
        bank: the cue bank.
        soundfont: General MIDI SoundFont (default: :func:`adaptive.synth.choose_soundfont`,
            MuseScore General where installed, else TimGM6mb, ...).
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
        if not 1 <= bars_ahead <= 16:
            raise ValueError(f"bars_ahead {bars_ahead} is out of range (allowed: 1..16)")
        self.bank = bank
        choice = choose_soundfont(soundfont)
        self.soundfont = choice.path
        self.soundfont_origin = choice.origin
        """How the SoundFont was chosen (``--soundfont``, ``$ADAPTIVE_SOUNDFONT``,
        the default, or a fallback and what to install): :class:`adaptive.synth.SoundFontChoice`."""
        if progress is not None and self.soundfont.suffix.lower() == ".sf3" and not soundfont_is_loaded(self.soundfont):
            # An SF3 file's samples are Ogg Vorbis, decoded while it loads: seconds, worth a word.
            progress(f"loading SoundFont {choice.describe()}: decoding its samples takes a few seconds")
        self.sample_rate_hz = sample_rate_hz
        self.seed = seed
        self.max_block_frames = max_block_frames
        self.record_midi = record_midi
        self.generator_name = generator or default_generator()
        self.bars_ahead = bars_ahead
        self.speculative_bridges = speculative_bridges
        self.generation = generation or GenerationWorker()
        """The generation worker; its ``counters`` (generated_bars,
        generation_misses, generation_errors) and fallbacks are the session's."""
        self.frame = 0
        self.counters: dict[str, int] = {"inputs": 0, "rejected_inputs": 0, "limited_blocks": 0}
        self.stage = Stage(bank, sample_rate_hz, seed, mapping if mapping is not None else ResolvedMapping.from_bank(bank))
        self.schedule = Schedule()
        self.mixer = Mixer(max_block_frames, master_gain_db)
        builder = PlayerBuilder(self.stage, self.soundfont, self.generation, self.generator_name, bars_ahead,
                                record_midi, progress or (lambda message: None))
        self.parts: dict[str, PartInfo] = builder.parts
        self.midi_events: list[MidiNoteEvent] = builder.midi_events
        self.stage.players = builder.players()
        stinger_voices, generated_stingers = builder.stinger_voices()
        # Generated bridges get synthesizers made now, not while rendering; two,
        # so a bridge can start while the previous one still fades out.
        uses_bridges = generated_bridges or _uses_generated_bridges(bank.transitions) \
            or _uses_generated_bridges(self.mapping.transition_rules())
        self._bridge_synths = [Synth(self.soundfont, sample_rate_hz, BRIDGE_PROGRAM, False)
                               for _ in range(2 if uses_bridges else 0)]
        bridges_ahead = BridgesAhead(
            bank, self.generation,
            self.generation.stream("bridge", make_generator(self.generator_name)) if uses_bridges else None,  # type: ignore[arg-type]
            seed, speculative_bridges if uses_bridges else 0)
        if uses_bridges:
            bridges_ahead.seams = builder.bridge_seams()
        stingers_ahead = StingersAhead(self.generation, generated_stingers, seed)
        self.stingers = StingerPlayer(self.stage, self.schedule, stinger_voices, stingers_ahead)
        self.transitions = TransitionRunner(self.stage, self.schedule, self.generation, bridges_ahead,
                                            self._bridge_synths, builder.midi_sink)
        # Bridges into a cue with a theme layer quote the theme (on its
        # program): a voice per program, made now.
        if uses_bridges:
            self.transitions.quotes = builder.bridge_quotes()
            programs = sorted({bank.theme(layer.source.theme).program for cue in bank.cues for layer in cue.layers
                               if isinstance(layer.source, ThemeSource)})
            for program in programs:
                self.transitions.quote_voices[program] = MidiVoice(
                    Part.empty(), Synth(self.soundfont, sample_rate_hz, program, False), None,
                    builder.midi_sink(f"bridge/quote/{program}", program, False))
        self.conductor = Conductor(self.stage, self.schedule, self.transitions, self.stingers, bridges_ahead,
                                   stingers_ahead)

    @property
    def mapping(self) -> ResolvedMapping:
        """The mapping the session plays by now."""
        return self.stage.mapping

    @property
    def scene(self) -> SceneState:
        """The scene as the game last said it."""
        return self.stage.scene

    @property
    def tempo_changes(self) -> list[tuple[int, float, int]]:
        """``(frame, bpm, beats_per_bar)`` of the player leading the beat, in order (for MIDI export)."""
        return self.stage.tempo_changes

    @property
    def events(self) -> list[MusicEvent]:
        """Music events collected since the last :meth:`drain_events`."""
        return self.schedule.events

    # ------------------------------------------------------------------ inputs
    def submit(self, frame: int, item: SessionInput) -> None:
        """Schedule an input to take effect at ``frame`` (clamped to now if in the past).

        Raises:
            InputError: unknown emotion, cue or stinger, or a value out of range;
                nothing is scheduled and the music is unchanged.
        """
        try:
            item = self._checked(item)
        except (KeyError, ValueError, AdaptiveError) as error:
            self.counters["rejected_inputs"] += 1
            raise InputError(str(error.args[0] if isinstance(error, KeyError) else error)) from None
        self.counters["inputs"] += 1
        self.schedule.at(max(int(frame), self.frame), lambda: self.conductor.apply(item))

    def _checked(self, item: SessionInput) -> SessionInput:
        """``item`` if the session can play it (a mapping change resolved against its bank).

        Raises:
            KeyError, ValueError, AdaptiveError: what is wrong with it.
        """
        if isinstance(item, SceneUpdate):
            validate_update(item, self.bank, self.mapping.emotion)
        elif isinstance(item, StingerTrigger):
            self.mapping.stinger(item.name)
        elif isinstance(item, ThemeTrigger):
            self.bank.theme(item.name)
        elif isinstance(item, AudienceVote):
            check_vote(item, self.mapping.emotion)
        elif isinstance(item, AudienceWeight):
            check_weight(item)
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
                             "(allowed: SceneUpdate, StingerTrigger, ThemeTrigger, MappingChange, AudienceVote, AudienceWeight)")
        return item

    # ------------------------------------------------------------------ render
    @property
    def frame_now(self) -> int:
        """The frame at which the action being run takes effect (the render position)."""
        return self.schedule.frame_now

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
        out = self.mixer.block(n_frames)
        start = self.frame
        end = start + n_frames
        position = start
        schedule = self.schedule
        while True:
            schedule.run_due(position)
            span_end = schedule.next_frame(end)
            if span_end > position:
                self._render_span(position, span_end, out[position - start : span_end - start])
                position = span_end
            if position >= end:
                break
        self.frame = end
        schedule.frame_now = end
        if self.mixer.master(out):
            self.counters["limited_blocks"] += 1
        return out

    def _render_span(self, start: int, end: int, out: np.ndarray) -> None:
        """Emit the beats and bars of the lead in ``[start, end)``, and mix what sounds."""
        lead = self.stage.lead
        if lead is not None and lead.grid is not None:
            grid = lead.grid
            for beat in grid.beats_in_span(start, end):
                if beat < 0 or (lead.length_bars is not None and beat >= lead.length_bars * lead.beats_per_bar):
                    continue
                bar_index, beat_in_bar = divmod(beat, lead.beats_per_bar)
                frame = grid.beat_to_frame(beat)
                if beat_in_bar == 0:
                    self.schedule.emit(frame, EventKind.BAR, cue=lead.name, bar_index=bar_index)
                self.schedule.emit(frame, EventKind.BEAT, cue=lead.name, bar_index=bar_index,
                                   beat_in_bar=beat_in_bar + 1, bpm=grid.bpm_at_beat(beat))
        self.mixer.mix(start, out, [*self.stage.active_players(), self.stingers])

    def drain_events(self) -> list[MusicEvent]:
        """Music events collected since the last call, in frame order."""
        events, self.schedule.events = self.schedule.events, []
        events.sort(key=lambda event: event.frame)
        return events

    def close(self) -> None:
        """Free every synthesizer."""
        for player in self.stage.players.values():
            player.close()
        self.stingers.close()
        for synth in self._bridge_synths:
            synth.close()
        for voice in self.transitions.quote_voices.values():
            voice.synth.close()
        self.generation.close()
