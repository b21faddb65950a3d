"""Synthesizers share one loaded SoundFont: the same sound as a synthesizer
that loads its own copy, closing one leaves the others playing, and the
SoundFont stays loaded for the process's next session. Which SoundFont plays
when none is named: MuseScore General, else TimGM6mb, else a clear error."""

from __future__ import annotations

import fluidsynth
import numpy as np
import pytest

from adaptive.synth import SYNTH_GAIN, Synth, _SharedSoundFont, soundfont_is_loaded, unload_unused_soundfonts


def render_note(synth_render, note_on, frames: int = 4800) -> np.ndarray:
    note_on(60, 100)
    out = np.zeros((frames, 2), np.float32)
    synth_render(out)
    return out


def users(soundfont) -> int:
    shared = _SharedSoundFont._loaded.get(_SharedSoundFont.key(soundfont))
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
    assert users(soundfont) == before
    assert soundfont_is_loaded(soundfont)  # kept for the next session: no second load


def test_unused_soundfonts_are_freed_on_request_and_load_again(soundfont):
    synth = Synth(soundfont, 48_000, program=0)
    first = render_note(synth.render_into, synth.note_on)
    synth.close()
    if users(soundfont) == 0:  # no other test's session holds it
        assert unload_unused_soundfonts() >= 1
        assert not soundfont_is_loaded(soundfont)
    again = Synth(soundfont, 48_000, program=0)
    try:
        assert np.array_equal(render_note(again.render_into, again.note_on), first)
    finally:
        again.close()


# ---------------------------------------------------------------- which SoundFont plays


def _fake_soundfont(path):
    """A file that passes :func:`adaptive.synth.check_soundfont` (a RIFF sfbk header of the right size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"sfbk" + b"\0" * 8
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


@pytest.fixture
def candidates(tmp_path, monkeypatch):
    """The places a SoundFont is looked for, in tmp_path: MuseScore General (preferred), then TimGM6mb."""
    from adaptive import synth

    places = (tmp_path / "sf3" / "MuseScore_General_Full.sf3", tmp_path / "sf3" / "MuseScore_General.sf3",
              tmp_path / "sf2" / "TimGM6mb.sf2", tmp_path / "sf2" / "FluidR3_GM.sf2")
    monkeypatch.setattr(synth, "SOUNDFONT_CANDIDATES", places)
    monkeypatch.delenv(synth.SOUNDFONT_ENV, raising=False)
    return places


def test_the_default_soundfont_is_musescore_general_when_installed(candidates):
    from adaptive.synth import choose_soundfont

    _fake_soundfont(candidates[0])
    _fake_soundfont(candidates[2])
    choice = choose_soundfont()
    assert choice.path == candidates[0] and choice.origin == "the default"
    assert choice.describe() == f"{candidates[0]} (the default)"


def test_timgm6mb_is_the_fallback_and_says_what_to_install_for_the_default(candidates):
    from adaptive.synth import choose_soundfont

    _fake_soundfont(candidates[2])
    _fake_soundfont(candidates[3])
    choice = choose_soundfont()
    assert choice.path == candidates[2]
    assert choice.origin.startswith("a fallback") and "apt-get install musescore-general-soundfont" in choice.origin


def test_no_soundfont_anywhere_is_a_clear_error_naming_the_packages(candidates):
    from adaptive.errors import AssetError
    from adaptive.synth import choose_soundfont

    with pytest.raises(AssetError) as raised:
        choose_soundfont()
    message = str(raised.value)
    assert "no General MIDI SoundFont found" in message
    assert "musescore-general-soundfont" in message and "timgm6mb-soundfont" in message
    assert "--soundfont" in message and "$ADAPTIVE_SOUNDFONT" in message


def test_a_named_soundfont_wins_over_the_default_and_is_said_so(candidates, tmp_path, monkeypatch):
    from adaptive.synth import SOUNDFONT_ENV, choose_soundfont

    _fake_soundfont(candidates[0])
    mine = _fake_soundfont(tmp_path / "mine.sf2")
    monkeypatch.setenv(SOUNDFONT_ENV, str(mine))
    assert choose_soundfont().path == mine and choose_soundfont().origin == "$ADAPTIVE_SOUNDFONT"
    explicit = _fake_soundfont(tmp_path / "explicit.sf3")
    assert choose_soundfont(explicit).path == explicit and choose_soundfont(explicit).origin == "--soundfont"


def test_a_program_the_soundfont_lacks_is_an_error_not_silence(soundfont):
    from adaptive.errors import AssetError

    with pytest.raises(AssetError, match="no preset for percussion kit 99"):
        Synth(soundfont, 48_000, program=99, percussion=True)


def test_a_synthesizer_with_nothing_sounding_makes_no_fluidsynth_call(soundfont):
    synth = Synth(soundfont, 48_000, program=0)
    try:
        out = np.full((1024, 2), 0.5, np.float32)
        for _ in range(20):
            synth.render_into(out)
            assert not out.any()  # overwritten with silence
        assert synth.render_calls == 0 and synth.skipped_frames == 20 * 1024 and synth.quiet
    finally:
        synth.close()


def play(synth: Synth, script) -> np.ndarray:
    """Render ``script``: ("render", n_frames) spans and ("on"/"off", pitch) events between them."""
    spans = []
    for kind, value in script:
        if kind == "render":
            out = np.zeros((value, 2), np.float32)
            synth.render_into(out)
            spans.append(out)
        elif kind == "on":
            synth.note_on(value, 100)
        else:
            synth.note_off(value)
    return np.concatenate(spans)


# Spans of odd lengths, so FluidSynth's 64-frame blocks fall anywhere in them: a note, its release
# (which must play to its end), a long silent stretch, then a second note at a frame that is no
# multiple of 64 from the synthesizer's start, and its release.
SCRIPT = [("render", 1001), ("on", 60), ("render", 4801), ("off", 60), *[("render", 997)] * 100,
          ("on", 60), ("render", 333), ("on", 64), ("render", 4803), ("off", 60), ("off", 64),
          *[("render", 1024)] * 60]


def test_a_note_after_a_silent_stretch_sounds_at_its_frame_bit_for_bit(soundfont):
    skipping = Synth(soundfont, 48_000, program=0)
    every_frame = Synth(soundfont, 48_000, program=0, skip_when_quiet=False)
    try:
        audio = play(skipping, SCRIPT)
        expected = play(every_frame, SCRIPT)
        assert np.array_equal(audio, expected)  # releases play out, and the second note starts where it would
        second_note_frame = 1001 + 4801 + 100 * 997
        sounding = np.flatnonzero(np.abs(expected[:, 0]) > 0)
        assert sounding[0] < 1001 + 64 and sounding[0] >= 1001
        assert np.abs(expected[second_note_frame - 5 * 997: second_note_frame]).max() == 0.0  # a silent stretch
        later = sounding[sounding >= second_note_frame - 5 * 997]
        assert second_note_frame <= later[0] < second_note_frame + 64  # FluidSynth's block latency, no more
        assert skipping.skipped_frames > 40 * 997 and skipping.render_calls < every_frame.render_calls * 0.7
        assert every_frame.skipped_frames == 0
    finally:
        skipping.close()
        every_frame.close()
