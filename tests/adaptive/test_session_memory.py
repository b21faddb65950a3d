"""What an extra session of a server holds in memory: its stems are the
process's one copy (docs/benchmarks.md, "Memory per session"), so a second
session of the same bank adds no audio buffers, and nothing it plays can be
changed by another session."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

from adaptive.scene import SceneUpdate
from adaptive.session import Session
from adaptive.voice import StemVoice
from tests.helpers import SAMPLE_RATE_HZ, one_stem_bank, render_frames, write_sine


def stem_voices(session: Session) -> list[StemVoice]:
    """The session's stem voices, in bank order."""
    return [layer.voice for player in session.stage.players.values() for layer in player.layers
            if isinstance(layer.voice, StemVoice)]


def test_sessions_of_the_default_bank_share_every_stem(soundfont):
    """The default bank's sorrow cue plays four stems (38 MB at 48 kHz): a
    second session reads none of them again, and none can be written to."""
    from adaptive.cue import DEFAULT_BANK, load_bank

    bank = load_bank(DEFAULT_BANK)
    first = Session(bank, soundfont=soundfont, generator="rule_based")
    second = Session(bank, soundfont=soundfont, generator="rule_based")
    try:
        stems_first, stems_second = stem_voices(first), stem_voices(second)
        assert len(stems_first) == 4
        for a, b in zip(stems_first, stems_second):
            assert b.audio is a.audio
            assert not a.audio.flags.writeable
            with pytest.raises(ValueError):
                a.audio[0, 0] = 1.0
    finally:
        first.close()
        second.close()


def test_sessions_sharing_a_stem_play_what_each_would_alone(tmp_path, soundfont):
    """The same bank, in two sessions at once with different inputs: each
    session's audio is the audio of a session that plays alone."""
    write_sine(tmp_path / "tone.wav", 440.0, 2.0)
    bank = one_stem_bank(tmp_path, "tone.wav")
    alone = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    alone.submit(0, SceneUpdate(intensity=0.5))
    expected = render_frames(alone, 3 * SAMPLE_RATE_HZ).copy()
    alone.close()
    del alone
    first = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    second = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    assert stem_voices(second)[0].audio is stem_voices(first)[0].audio
    first.submit(0, SceneUpdate(intensity=0.5))
    second.submit(SAMPLE_RATE_HZ // 2, SceneUpdate(intensity=1.0))  # started later, louder: none of it in first
    head = render_frames(first, SAMPLE_RATE_HZ // 3).copy()
    render_frames(second, SAMPLE_RATE_HZ)  # the two sessions render in turn, as on one render loop
    tail = render_frames(first, 3 * SAMPLE_RATE_HZ - SAMPLE_RATE_HZ // 3)
    assert np.array_equal(np.concatenate([head, tail]), expected)
    first.close()
    second.close()


def test_a_stem_rewritten_on_disk_is_read_afresh(tmp_path, soundfont):
    """A session made after a stem file changed plays the new file; one made
    before keeps playing the old."""
    path = tmp_path / "tone.wav"
    write_sine(path, 440.0, 1.0)
    bank = one_stem_bank(tmp_path, "tone.wav")
    before = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    old = stem_voices(before)[0].audio.copy()
    write_sine(path, 660.0, 1.0)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later modification time, surely
    after = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    try:
        assert stem_voices(after)[0].audio is not stem_voices(before)[0].audio
        assert not np.array_equal(stem_voices(after)[0].audio, old)
        assert np.array_equal(stem_voices(before)[0].audio, old)
    finally:
        before.close()
        after.close()


def test_a_stem_is_freed_with_the_last_session_playing_it(tmp_path, soundfont):
    """Nothing stays loaded for sessions that ended: once the last session
    holding a stem is gone, so is its audio."""
    write_sine(tmp_path / "tone.wav", 440.0, 1.0)
    bank = one_stem_bank(tmp_path, "tone.wav")
    first = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    second = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ)
    audio = weakref.ref(stem_voices(first)[0].audio)
    first.close()
    del first
    gc.collect()
    assert audio() is not None  # the second session still plays it
    second.close()
    del second
    gc.collect()
    assert audio() is None
