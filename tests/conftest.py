"""Fixtures of the whole suite. It runs with the generators the composition
root registers (``app.generators``), as the ``adaptive`` command does.

The suite renders with TimGM6mb (``TEST_SOUNDFONT``) where it is installed
(``./run test`` installs it) and ``$ADAPTIVE_SOUNDFONT`` names no other: it
loads in 0.06 s, where the default, MuseScore General (an SF3 file), decodes
its samples for several seconds in every process that loads it (each server
a test starts). ``$ADAPTIVE_SOUNDFONT`` is set, so the servers and commands
the tests start in subprocesses render with it too. What the default is, and
that the default bank's programs are all in it, is tested without loading it
(tests/adaptive/test_synth.py, tests/test_default_soundfont.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from adaptive.cue import CueBank, load_bank
from adaptive.synth import SOUNDFONT_ENV, find_soundfont
from app.generators import register_generators
from tests.helpers import TONE_BANK, write_midi, write_sine

register_generators()

TEST_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
"""The SoundFont the suite renders with where installed (Debian timgm6mb-soundfont)."""
if not os.environ.get(SOUNDFONT_ENV) and TEST_SOUNDFONT.is_file():
    os.environ[SOUNDFONT_ENV] = str(TEST_SOUNDFONT)

# Hypothesis' 200 ms per-example deadline fails round-trip tests on a loaded
# machine (another process training a model): the deadline measures the
# machine, not the code. Every example still runs.
from hypothesis import settings  # noqa: E402

settings.register_profile("adaptive", deadline=None)
settings.load_profile("adaptive")


@pytest.fixture(scope="session")
def soundfont() -> Path:
    """The General MIDI SoundFont the tests render with (TimGM6mb where installed, see above)."""
    return find_soundfont()


@pytest.fixture
def tone_bank(tmp_path: Path) -> Callable[..., CueBank]:
    """Build a bank of sine stems: cue ``low`` (440 Hz + an 880 Hz layer entering
    at intensity 0.5), ``high`` (660 Hz, 3/4 at 90 bpm), ``keys`` (a piano note on
    every beat at 100 bpm), segment ``lead_in`` (550 Hz, one bar) and stinger ``hit``."""
    write_sine(tmp_path / "low.flac", 440.0, 4.0)
    write_sine(tmp_path / "upper.flac", 880.0, 4.0, amplitude=0.2)
    write_sine(tmp_path / "high.flac", 660.0, 4.0)
    write_sine(tmp_path / "segment.flac", 550.0, 3.0)  # a one-bar segment with a tail
    write_midi(tmp_path / "parts.mid", {
        "beats": [(float(beat), 0.25, 72, 110) for beat in range(4)],
        "hit": [(0.0, 0.5, 84, 120), (0.0, 0.5, 79, 120)],
    })

    def build(exit: str = "next_bar", fade_beats: float = 1.0, stinger_quantize: str = "next_beat",
              extra: str = "") -> CueBank:
        text = TONE_BANK.format(exit=exit, fade_beats=fade_beats, stinger_quantize=stinger_quantize, extra=extra)
        path = tmp_path / "bank.toml"
        path.write_text(text)
        return load_bank(path)

    return build
