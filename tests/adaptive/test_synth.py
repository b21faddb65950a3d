"""Synthesizers share one loaded SoundFont: the same sound as a synthesizer
that loads its own copy, and closing one leaves the others playing."""

from __future__ import annotations

import fluidsynth
import numpy as np

from adaptive.synth import SYNTH_GAIN, Synth, _SharedSoundFont


def render_note(synth_render, note_on, frames: int = 4800) -> np.ndarray:
    note_on(60, 100)
    out = np.zeros((frames, 2), np.float32)
    synth_render(out)
    return out


def users(soundfont) -> int:
    shared = _SharedSoundFont._loaded.get(soundfont.resolve())
    return 0 if shared is None else shared.users


def test_shared_soundfont_sounds_like_a_private_copy_and_outlives_closed_users(soundfont):
    before = users(soundfont)  # other tests' sessions may still hold it
    first = Synth(soundfont, 48_000, program=0)
    second = Synth(soundfont, 48_000, program=0)
    assert users(soundfont) == before + 2
    shared_audio = render_note(first.render_into, first.note_on)

    # The same note from a synthesizer with its own copy of the SoundFont, same settings.
    private = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=48_000.0, channels=16,
                               **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1,
                                  "synth.polyphony": 64})
    try:
        private.program_select(0, private.sfload(str(soundfont)), 0, 0)
        private_audio = np.zeros((4800, 2), np.float32)
        private.noteon(0, 60, 100)
        from adaptive.synth import _load_fluidsynth

        _, calls = _load_fluidsynth()
        pointer = private_audio.ctypes.data
        calls.write_float(private.synth, 4800, pointer, 0, 2, pointer, 1, 2)
    finally:
        private.delete()
    assert np.abs(shared_audio).max() > 0.01
    assert np.array_equal(shared_audio, private_audio)

    first.close()
    later = render_note(second.render_into, second.note_on)  # the SoundFont is still loaded for it
    assert np.array_equal(later, shared_audio)
    second.close()
    assert users(soundfont) == before  # at 0, the last user freed it
