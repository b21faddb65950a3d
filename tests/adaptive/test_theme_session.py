"""Themes in the engine: a theme as a cue's layer (melody and accompaniment),
as the game's ``theme`` input and a theme stinger (its head, quantized, in the
playing key), re-conditioned at bar lines, replayable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adaptive.cue import load_bank
from adaptive.events import EventKind
from adaptive.offline import render_offline
from adaptive.recording_format import LINES, line_json
from adaptive.scene import SceneUpdate, StingerTrigger, ThemeTrigger
from adaptive.session import Session
from adaptive.theme import load_theme
from adaptive.variation import vary
from tests.helpers import write_midi

RATE = 48_000
BPM = 120.0
BAR_FRAMES = 96_000  # 4 beats at 120 bpm, 48 kHz

BANK = """
name = "themes"
[[cues]]
name = "march"
bpm = 120
key = "G major"
chords = ["G", "C", "D", "G"]
loop_bars = 4
valence = 0.6
arousal = 0.0
  [[cues.layers]]
  name = "tune"
  source = { theme = "tune" }
  program = 60
  [[cues.layers]]
  name = "backing"
  source = { theme = "tune", part = "accompaniment", role = "arpeggio", generator = "rule_based" }
  program = 0
[[stingers]]
name = "motto"
source = { theme = "tune", bars = 1 }
program = 56
quantize = "next_bar"
[themes.tune]
file = "tune.mid"
key = "C major"
chords = ["C", "F G", "C"]
head_bars = 1
quantize = "next_beat"
"""

TUNE = [(0.0, 1.0, 64, 90), (1.0, 1.0, 62, 90), (2.0, 2.0, 60, 90), (4.0, 2.0, 67, 90), (6.0, 2.0, 71, 90),
        (8.0, 4.0, 72, 90)]


@pytest.fixture
def bank(tmp_path: Path):
    write_midi(tmp_path / "tune.mid", {"melody": TUNE})
    (tmp_path / "bank.toml").write_text(BANK)
    return load_bank(tmp_path / "bank.toml")


def _session(bank, soundfont) -> Session:
    return Session(bank, soundfont=soundfont, sample_rate_hz=RATE, seed=3, generator="rule_based")


def _notes_on(session: Session, part: str) -> list[tuple[int, int]]:
    return [(e.frame, e.pitch) for e in session.midi_events if e.part == part and e.kind == 1]


def test_a_theme_layer_plays_the_variation_and_reconditions_at_bar_lines(bank, soundfont) -> None:
    session = _session(bank, soundfont)
    inputs = [(0, SceneUpdate(valence=0.6, arousal=0.0, intensity=0.5)),
              (BAR_FRAMES + 10, SceneUpdate(valence=-0.8, arousal=0.0))]  # in bar 1: heard from bar 3 (1 bar ahead)
    render_offline(session, 4 * BAR_FRAMES, inputs)
    session.close()
    theme = load_theme(bank, "tune")
    bright = vary(theme, 0.6, 0.0, 0.5, 7, 4, 3)  # G major
    dark = vary(theme, -0.8, 0.0, 0.5, 7, 4, 3)  # G minor
    melody = _notes_on(session, "march/tune")
    by_bar = [[pitch for frame, pitch in melody if bar * BAR_FRAMES <= frame < (bar + 1) * BAR_FRAMES]
              for bar in range(4)]
    assert by_bar[0] == bright.span(0, 4).pitch.tolist() == [59, 57, 55]  # B A G: the theme moved to G (down a fourth)
    assert by_bar[1] == bright.span(4, 4).pitch.tolist()
    assert by_bar[2] == bright.span(8, 4).pitch.tolist()  # asked for before the emotion moved
    assert by_bar[3] == dark.span(0, 4).pitch.tolist() == [58, 57, 55]  # wrapped to bar 0: Bb A G in G minor (an octave down would leave the register)
    backing = _notes_on(session, "march/backing")
    bar1 = {pitch % 12 for frame, pitch in backing if BAR_FRAMES <= frame < 2 * BAR_FRAMES}
    assert bar1 <= {0, 4, 7, 2, 6, 11}  # C then D: the theme's F G moved to G major
    bar3 = {pitch % 12 for frame, pitch in backing if 3 * BAR_FRAMES <= frame < 4 * BAR_FRAMES}
    assert bar3 <= {7, 10, 2}  # G minor tonic: the re-harmonized chord


def test_the_theme_input_plays_the_head_quantized_in_the_playing_key(bank, soundfont) -> None:
    session = _session(bank, soundfont)
    render_offline(session, 2 * BAR_FRAMES, [(0, SceneUpdate(valence=0.6, arousal=0.0)),
                                             (30_000, ThemeTrigger("tune")), (30_000, StingerTrigger("motto"))])
    events = session.drain_events()
    session.close()
    themes = [e for e in events if e.kind is EventKind.THEME]
    assert [(e.frame, e.data) for e in themes] == [(48_000, {"name": "tune", "requested_frame": 30_000})]  # next beat
    head = _notes_on(session, "stinger/theme/tune")
    assert [pitch for _, pitch in head] == [59, 57, 55]  # bar 1 of the theme, in G major
    assert head[0][0] == 48_000
    motto = [e for e in events if e.kind is EventKind.STINGER]
    assert motto[0].frame == BAR_FRAMES  # the bank stinger quoting it, at the next bar
    assert [pitch for _, pitch in _notes_on(session, "stinger/motto")] == [59, 57, 55]


def test_a_theme_render_is_deterministic_and_a_theme_input_is_recorded(bank, soundfont) -> None:
    def render() -> np.ndarray:
        session = _session(bank, soundfont)
        audio = render_offline(session, BAR_FRAMES * 2, [(0, SceneUpdate(valence=0.9, arousal=0.9)),
                                                         (5_000, ThemeTrigger("tune"))])
        session.close()
        return audio
    assert np.array_equal(render(), render())
    line = line_json(5_000, ThemeTrigger("tune"))
    assert line == {"frame": 5_000, "type": "theme", "name": "tune"}
    assert LINES["theme"].model_validate(line).item() == ThemeTrigger("tune")


def test_an_unknown_theme_input_is_refused_with_the_allowed_names(bank, soundfont) -> None:
    session = _session(bank, soundfont)
    with pytest.raises(Exception) as error:
        session.submit(0, ThemeTrigger("villain"))
    session.close()
    assert "unknown theme 'villain' (allowed: tune)" in str(error.value)


BRIDGE_BANK = BANK.replace('name = "themes"', 'name = "themes"\n[[cues]]\nname = "calm"\nbpm = 120\nkey = "D major"\n'
                           'valence = 0.5\narousal = -0.5\n  [[cues.layers]]\n  name = "pad"\n'
                           '  source = { kind = "generated", role = "arpeggio", generator = "rule_based" }\n') + """
[[transitions]]
from = "calm"
to = "march"
exit = "next_bar"
fade_beats = 1.0
bridge = { kind = "generated", bars = 2 }
"""


def test_a_generated_bridge_into_a_theme_cue_quotes_its_head_on_the_bridge_chords(tmp_path: Path, soundfont) -> None:
    write_midi(tmp_path / "tune.mid", {"melody": TUNE})
    (tmp_path / "bank.toml").write_text(BRIDGE_BANK)
    bank = load_bank(tmp_path / "bank.toml")
    session = _session(bank, soundfont)
    render_offline(session, 5 * BAR_FRAMES, [(0, SceneUpdate(cue="calm")), (10_000, SceneUpdate(cue="march"))])
    events = session.drain_events()
    session.close()
    themes = [e for e in events if e.kind is EventKind.THEME]
    assert [(e.frame, e.data["name"]) for e in themes] == [(BAR_FRAMES, "tune")]  # the bridge starts at bar 1
    quote = [(frame, pitch) for frame, pitch in _notes_on(session, "bridge/quote/0")]
    assert quote and all(BAR_FRAMES <= frame < 3 * BAR_FRAMES for frame, _ in quote)
    # head_bars = 1: the head's contour (down, down) in the bridge's last bar, on its D7 (V7 of G).
    pitches = [pitch for _, pitch in quote]
    assert len(pitches) == 3 and pitches[0] > pitches[1] > pitches[2]
    assert {pitches[0] % 12, pitches[2] % 12} <= {2, 6, 9, 0}  # notes on the beat are D7's tones
    assert all(frame >= 2 * BAR_FRAMES for frame, _ in quote)
