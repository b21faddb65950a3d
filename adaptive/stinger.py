"""The stinger player: plays a stinger on top of the music, quantized to the
grid of the player leading the beat, transposed (a MIDI stinger) or
generated (a generated one) in the key of the cue playing when it is
triggered, and parks its synthesizer once its tail has rung out."""

from __future__ import annotations

import numpy as np

from adaptive.clock import TempoGrid, seconds_to_frames
from adaptive.clock import Quantize
from adaptive.cue import GeneratedStingerSource, ThemeStingerSource
from adaptive.events import EventKind
from adaptive.gain import db_to_amplitude
from adaptive.harmony import Key
from adaptive.part import Part
from adaptive.schedule import Schedule
from adaptive.speculation import StingersAhead
from adaptive.stage import Stage
from adaptive.voice import MidiVoice

STINGER_TAIL_CHECK_SECONDS = 1.0
"""How often a finished stinger is checked for voices still ringing before its
synthesizer is parked."""


class StingerPlayer:
    """Every stinger's voice, the ones sounding, and their gains.

    Args:
        stage: what plays (the lead's grid, the cue playing, the mapping).
        schedule: where a triggered stinger waits for its boundary.
        voices: each stinger's voice and part by name (:meth:`adaptive.builder.PlayerBuilder.stinger_voices`).
        ahead: the generated stingers made ahead.
    """

    def __init__(self, stage: Stage, schedule: Schedule, voices: dict[str, tuple[MidiVoice, Part]],
                 ahead: StingersAhead) -> None:
        self.stage = stage
        self.schedule = schedule
        self.voices = voices
        self.ahead = ahead
        self.amplitudes = {stinger.name: db_to_amplitude(stinger.gain_db) for stinger in stage.bank.stingers}
        self.amplitudes.update((name, db_to_amplitude(stinger.gain_db)) for name, (stinger, _) in ahead.stingers.items())
        self.sounding: list[str] = []

    def trigger(self, name: str, frame: int) -> None:
        """Play the mapping's stinger ``name`` on its quantize boundary at or after ``frame``."""
        try:
            source, quantize, gain_db = self.stage.mapping.stinger(name)
        except KeyError as error:  # the mapping changed since the trigger was accepted
            self.schedule.emit(frame, EventKind.ERROR, message=str(error.args[0]), input="stinger")
            return
        self._trigger(name, source, quantize, gain_db, frame, EventKind.STINGER)

    def trigger_theme(self, theme: str, frame: int) -> None:
        """Play the head of the bank's theme ``theme`` (its stinger ``theme/NAME``,
        see :func:`adaptive.builder.theme_stinger_name`) on its quantize
        boundary at or after ``frame``, varied for the emotion then, in the
        key of the cue playing; a ``theme`` event marks its start."""
        source = f"theme/{theme}"
        if source not in self.voices:
            self.schedule.emit(frame, EventKind.ERROR, message=f"unknown theme {theme!r}", input="theme")
            return
        stinger, _ = self.ahead.stingers[source]
        self._trigger(theme, source, stinger.quantize, stinger.gain_db, frame, EventKind.THEME)

    def _trigger(self, name: str, source: str, quantize: Quantize, gain_db: float, frame: int,
                 kind: EventKind) -> None:
        stage = self.stage
        stinger = self.ahead.stingers[source][0] if source in self.ahead.stingers else stage.bank.stinger(source)
        lead = stage.lead
        if lead is None or lead.grid is None:
            boundary, bpm, beats_per_bar = frame, 120.0, 4
        else:
            cue = stage.bank.cue(lead.name) if lead.name in stage.players else None
            phrase_bars = cue.phrase_bars if cue else 4
            loop_bars = cue.loop_bars if cue else (lead.length_bars or 1)
            boundary = lead.grid.quantize(frame, quantize, phrase_bars=phrase_bars, loop_bars=loop_bars)
            bpm, beats_per_bar = lead.bpm, lead.beats_per_bar
        voice, part = self.voices[source]
        # A generated stinger is in the key of the cue playing when it is
        # triggered, as a MIDI stinger is transposed to it.
        current = stage.current
        key_cue = stage.bank.cue(current.name) if current is not None else None
        generated = isinstance(stinger.source, (GeneratedStingerSource, ThemeStingerSource)) and key_cue is not None
        if generated:
            assert key_cue is not None
            emotion = stage.scene.emotion
            self.ahead.requested(source, key_cue, emotion.valence, emotion.arousal, boundary)
        elif stinger.key is not None and current is not None and current.name in stage.players:
            semitones = Key.parse(stinger.key).semitones_to(stage.bank.cue(current.name).parsed_key)
            part = part.transposed(semitones)

        def play() -> None:
            now = self.schedule.frame_now
            if generated:
                assert key_cue is not None
                emotion = stage.scene.emotion
                voice.part = self.ahead.take(source, key_cue, emotion.valence, emotion.arousal, now)
            else:
                voice.part = part
            voice.start(TempoGrid(bpm, beats_per_bar, now, stage.sample_rate_hz))
            self.amplitudes[source] = db_to_amplitude(gain_db)
            if source not in self.sounding:
                self.sounding.append(source)
            data = {"name": name, "requested_frame": frame}
            if source != name and kind is EventKind.STINGER:
                data["source"] = source
            self.schedule.emit(now, kind, **data)
            self.schedule.at(voice.finished_frame + self._tail_check_frames(), lambda: self._park(source, voice))

        self.schedule.at(boundary, play)

    def _tail_check_frames(self) -> int:
        return seconds_to_frames(STINGER_TAIL_CHECK_SECONDS, self.stage.sample_rate_hz)

    def _park(self, name: str, voice: MidiVoice) -> None:
        now = self.schedule.frame_now
        finished = voice.finished_frame
        if finished is not None and finished > now:
            return  # retriggered since: its own check is scheduled
        if voice.synth.active_voice_count() > 0:
            self.schedule.at(now + self._tail_check_frames(), lambda: self._park(name, voice))
            return
        if name in self.sounding:
            self.sounding.remove(name)

    def render(self, start_frame: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Add every sounding stinger, at its gain, to ``out``."""
        for name in self.sounding:
            voice, _ = self.voices[name]
            buffer = scratch[: out.shape[0]]
            voice.render(start_frame, buffer)
            buffer *= np.float32(self.amplitudes[name])
            out += buffer

    def close(self) -> None:
        """Free every stinger's synthesizer."""
        for voice, _ in self.voices.values():
            voice.synth.close()
