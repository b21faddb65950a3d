"""The builder: turns a cue bank into ready players — every synthesizer made,
every MIDI part, stem and rendered stem loaded — before the session renders
anything, so nothing on the render path reads a file."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from adaptive.cue import (
    Cue, GeneratedSource, GeneratedStingerSource, Layer, MidiSource, Stinger, StemSource, ThemePart, ThemeSource,
    ThemeStingerSource,
)
from adaptive.errors import AssetError
from adaptive.events import MidiNoteEvent, PartInfo
from adaptive.generation import BarFeed, GenerationWorker, PartStream
from adaptive.generator import BarRequest
from adaptive.part import Part, PartLibrary
from adaptive.players import LayerPlayer, Player
from adaptive.registry import make_generator
from adaptive.stage import Stage
from adaptive.stem import render_part, rendered_stem_path, shared_stem, write_stem
from adaptive.synth import Synth
from adaptive.theme import Theme, load_theme
from adaptive.transition import bridge_seams, lead_part
from adaptive.variation import ThemeAccompanimentGenerator, ThemeBarRequest, ThemeMelodyGenerator, bridge_quote
from adaptive.voice import GeneratedVoice, MidiVoice, StemVoice

def theme_stinger_name(theme: str) -> str:
    """The name of the stinger that plays theme ``theme``'s head when the
    game asks for it (``"theme/NAME"``: no bank stinger can have it)."""
    return f"theme/{theme}"


MidiSink = Callable[[int, int, int, int], None]
"""Called with (frame, NOTE_ON or NOTE_OFF, pitch, velocity) for each note event a voice plays."""


class PlayerBuilder:
    """Builds a session's players, stinger voices and bridge synthesizers.

    Args:
        stage: the session's stage (its bank, rate, seed; generated layers
            ask for bars with the scene and mapping current then).
        soundfont: the SoundFont every synthesizer loads.
        generation: the generation worker generated parts stream through.
        generator_name: the generator of parts without their own.
        bars_ahead: bars a generated layer asks for beyond the one playing.
        record_midi: log every played note in :attr:`midi_events`.
        progress: called with a message while assets load.

    Attributes:
        parts: how each MIDI part sounds, by part name.
        midi_events: every note played (when ``record_midi``).
    """

    def __init__(self, stage: Stage, soundfont: Any, generation: GenerationWorker, generator_name: str,
                 bars_ahead: int, record_midi: bool, progress: Callable[[str], None]) -> None:
        self.stage = stage
        self.soundfont = soundfont
        self.generation = generation
        self.generator_name = generator_name
        self.bars_ahead = bars_ahead
        self.record_midi = record_midi
        self.progress = progress
        self.parts: dict[str, PartInfo] = {}
        self.midi_events: list[MidiNoteEvent] = []
        self._library = PartLibrary()
        self._themes: dict[str, Theme] = {}

    def theme(self, name: str) -> Theme:
        """The bank's theme ``name``, read once (at set-up time).

        Raises:
            AssetError: its file or tracks cannot be read (naming them).
        """
        if name not in self._themes:
            self._themes[name] = load_theme(self.stage.bank, name, self._library)
        return self._themes[name]

    def themes(self) -> dict[str, Theme]:
        """Every theme of the bank, read now."""
        return {name: self.theme(name) for name in self.stage.bank.themes}

    def midi_sink(self, part_name: str, program: int, percussion: bool) -> MidiSink | None:
        """Register ``part_name``'s sound; the sink that logs its notes (None: not recording)."""
        self.parts[part_name] = PartInfo(program, percussion)
        if not self.record_midi:
            return None
        events = self.midi_events

        def sink(frame: int, kind: int, pitch: int, velocity: int) -> None:
            events.append(MidiNoteEvent(frame, part_name, kind, pitch, velocity))

        return sink

    def players(self) -> dict[str, Player]:
        """A player for every cue (looping) and segment (once), by name, in bank order."""
        bank = self.stage.bank
        players = {cue.name: self.player(cue, looping=True) for cue in bank.cues}
        players.update((segment.name, self.player(segment, looping=False)) for segment in bank.segments)
        return players

    def player(self, cue: Cue, looping: bool) -> Player:
        loop_beats = float(cue.loop_bars * cue.meter.beats_per_bar) if looping else None
        layers: list[LayerPlayer] = []
        role = "cue" if looping else "segment"
        for layer in cue.layers:
            try:
                voice = self.voice(cue, layer, loop_beats)
            except AssetError as error:
                raise AssetError(f"{role} {cue.name!r} layer {layer.name!r}: {error}") from None
            curve, fade_beats = self.stage.mapping.layer_gain(cue.name, layer.name)
            layers.append(LayerPlayer(layer.name, voice, curve, fade_beats))
        return Player(cue.name, cue.bpm, cue.meter.beats_per_bar, layers, cue.gain_db, looping,
                      None if looping else cue.loop_bars)

    def voice(self, cue: Cue, layer: Layer, loop_beats: float | None) -> Any:
        source = layer.source
        part_name = f"{cue.name}/{layer.name}"
        rate = self.stage.sample_rate_hz
        if isinstance(source, MidiSource):
            part = self._library.track(self.stage.bank.path(source.file), source.track)
            synth = Synth(self.soundfont, rate, layer.program, layer.percussion, layer.max_voices)
            return MidiVoice(part, synth, loop_beats, self.midi_sink(part_name, layer.program, layer.percussion))
        if isinstance(source, StemSource):
            return StemVoice(self._stem_audio(cue, source), loop_beats)
        if isinstance(source, ThemeSource):
            return self._theme_voice(cue, layer, source, part_name)
        assert isinstance(source, GeneratedSource)
        stream = self.generation.stream(part_name, make_generator(source.generator or self.generator_name))
        synth = Synth(self.soundfont, rate, layer.program, layer.percussion, layer.max_voices)
        key = cue.parsed_key
        stage = self.stage

        def request_for_bar(bar_index: int, cue: Cue = cue, role: str = source.role,
                            style: str | None = source.style) -> BarRequest:
            emotion = stage.scene.emotion
            chord, second_chord = cue.chords_at_bar(bar_index)
            return BarRequest(bar_index, key, chord, cue.meter.beats_per_bar, cue.bpm,
                              emotion.valence, emotion.arousal, role, stage.seed,
                              stage.mapping.conditioning(emotion.valence, emotion.arousal),
                              beat_unit=cue.meter.beat_unit, second_chord=second_chord, style=style)

        feed = BarFeed(self.generation, stream, request_for_bar, self.bars_ahead)
        return GeneratedVoice(feed, synth, cue.meter.beats_per_bar, None,
                              self.midi_sink(part_name, layer.program, layer.percussion))

    def _theme_voice(self, cue: Cue, layer: Layer, source: ThemeSource, part_name: str) -> GeneratedVoice:
        """A theme layer: the theme varied bar by bar (or an accompaniment under
        its re-harmonized chords) through the generation worker, each bar
        conditioned on the emotion and intensity current when it is asked for
        (one bar ahead, as for generated layers)."""
        theme = self.theme(source.theme)
        if source.part is ThemePart.MELODY:
            generator: Any = ThemeMelodyGenerator(theme)
            role = "melody"
        else:
            generator = ThemeAccompanimentGenerator(theme, make_generator(source.generator or self.generator_name))
            role = source.role.value
        stream = self.generation.stream(part_name, generator)
        synth = Synth(self.soundfont, self.stage.sample_rate_hz, layer.program, layer.percussion, layer.max_voices)
        key = cue.parsed_key
        stage = self.stage

        def request_for_bar(bar_index: int) -> BarRequest:
            scene = stage.scene
            chord, second_chord = cue.chords_at_bar(bar_index)
            return ThemeBarRequest(bar_index, key, chord, cue.meter.beats_per_bar, cue.bpm,
                                   scene.emotion.valence, scene.emotion.arousal, role, stage.seed,
                                   stage.mapping.conditioning(scene.emotion.valence, scene.emotion.arousal),
                                   beat_unit=cue.meter.beat_unit, second_chord=second_chord,
                                   intensity=scene.intensity)

        feed = BarFeed(self.generation, stream, request_for_bar, self.bars_ahead)
        return GeneratedVoice(feed, synth, cue.meter.beats_per_bar, None,
                              self.midi_sink(part_name, layer.program, layer.percussion))

    def bridge_seams(self) -> Callable[[str, str, int | None], tuple[tuple[Part, ...], int | None]]:
        """``seams(from_cue, to_cue, bar_in_loop)`` for generated bridges
        (:func:`adaptive.transition.bridge_seams`): every cue's lead line is
        read now, and each seam is kept once computed, so nothing is read from
        disk on the session's thread."""
        bank = self.stage.bank
        for cue in bank.cues:
            lead_part(cue, bank, self._library)
        seams: dict[tuple[str, str, int | None], tuple[tuple[Part, ...], int | None]] = {}

        def seams_of(from_cue: str, to_cue: str, bar_in_loop: int | None = None
                     ) -> tuple[tuple[Part, ...], int | None]:
            key = (from_cue, to_cue, bar_in_loop)
            if key not in seams:
                seams[key] = bridge_seams(bank, self._library, from_cue, to_cue, bar_in_loop)
            return seams[key]

        return seams_of

    def bridge_quotes(self) -> Callable[[str, str, Any], tuple[str, int, Part] | None]:
        """``quote(from_cue, to_cue, plan)`` for generated bridges: when the
        incoming cue has a theme layer, ``(theme, program, notes)`` — the
        theme's head fitted to the bridge (:func:`adaptive.variation.bridge_quote`)
        at the incoming cue's point — else None. Each is computed once per
        (from, to, bars) and kept (it depends only on the two cues)."""
        bank, seed = self.stage.bank, self.stage.seed
        quotes: dict[tuple[str, str, int], tuple[str, int, Part] | None] = {}

        def quote(from_cue: str, to_cue: str, plan: Any) -> tuple[str, int, Part] | None:
            key = (from_cue, to_cue, plan.bars)
            if key not in quotes:
                new = bank.cue(to_cue)
                name = next((layer.source.theme for layer in new.layers if isinstance(layer.source, ThemeSource)),
                            None)
                if name is None:
                    quotes[key] = None
                else:
                    theme = self.theme(name)
                    harmony = [(request.chord, request.key) for request in plan.requests]
                    notes = bridge_quote(theme, new.valence, new.arousal, new.parsed_key.tonic_pitch_class,
                                         plan.beats_per_bar, seed, harmony)
                    quotes[key] = (name, bank.theme(name).program, notes)
            return quotes[key]

        return quote

    def _stem_audio(self, cue: Cue, source: StemSource) -> np.ndarray:
        bank, rate = self.stage.bank, self.stage.sample_rate_hz
        if source.rendered_from is None:
            return shared_stem(bank.path(source.file), rate)
        spec = source.rendered_from
        midi_path = bank.path(spec.file)
        length_beats = float(cue.loop_bars * cue.meter.beats_per_bar)
        path = rendered_stem_path(
            midi_path=midi_path, track=spec.track, program=spec.program, percussion=spec.percussion, bpm=cue.bpm,
            length_beats=length_beats, tail_seconds=spec.tail_seconds, soundfont=self.soundfont,
            sample_rate_hz=rate, file_name=source.file,
        )
        if not path.is_file():
            self.progress(f"rendering stem {source.file} from {spec.file} ({spec.track}) into {path}")
            part = self._library.track(midi_path, spec.track)
            audio = render_part(part, soundfont=self.soundfont, program=spec.program, percussion=spec.percussion,
                                bpm=cue.bpm, sample_rate_hz=rate, length_beats=length_beats,
                                tail_seconds=spec.tail_seconds)
            write_stem(path, audio, rate)
        return shared_stem(path, rate)

    def stinger_voices(self) -> tuple[dict[str, tuple[MidiVoice, Part]], list[tuple[Stinger, PartStream]]]:
        """Each stinger's voice and part (empty for a generated or theme one)
        by name, and the generated and theme stingers with the stream their
        phrases come from. Each bank theme also gets a stinger of its own,
        named ``theme/NAME`` (what the ``theme`` input plays): its head motif,
        with the theme's program, quantization and gain."""
        voices: dict[str, tuple[MidiVoice, Part]] = {}
        generated = []
        theme_stingers = [
            Stinger.model_construct(name=theme_stinger_name(name), source=ThemeStingerSource(theme=name),
                                    program=spec.program, percussion=False, max_voices=64, quantize=spec.quantize,
                                    key=None, gain_db=spec.gain_db)
            for name, spec in self.stage.bank.themes.items()
        ]
        for stinger in list(self.stage.bank.stingers) + theme_stingers:
            if isinstance(stinger.source, ThemeStingerSource):
                part = Part.empty()
                try:
                    generator = ThemeMelodyGenerator(self.theme(stinger.source.theme))
                except AssetError as error:
                    raise AssetError(f"stinger {stinger.name!r}: {error}") from None
                generated.append((stinger, self.generation.stream(f"stinger/{stinger.name}", generator)))
            elif isinstance(stinger.source, GeneratedStingerSource):
                part = Part.empty()
                generated.append((stinger, self.generation.stream(
                    f"stinger/{stinger.name}", make_generator(stinger.source.generator or self.generator_name))))
            else:
                try:
                    part = self._library.track(self.stage.bank.path(stinger.source.file), stinger.source.track)
                except AssetError as error:
                    raise AssetError(f"stinger {stinger.name!r}: {error}") from None
            synth = Synth(self.soundfont, self.stage.sample_rate_hz, stinger.program, stinger.percussion,
                          stinger.max_voices)
            sink = self.midi_sink(f"stinger/{stinger.name}", stinger.program, stinger.percussion)
            voices[stinger.name] = (MidiVoice(part, synth, None, sink), part)
        return voices, generated
