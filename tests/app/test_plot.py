"""``adaptive plot mapping`` and ``adaptive plot session`` write readable PNGs
from a mapping, a render's events file and a session recording."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from adaptive.errors import ConfigError
from adaptive.mapping import DEFAULT_MAPPING
from app.cli import main
from app.plot import load_events


def png_size(path) -> tuple[int, int]:
    image = matplotlib.image.imread(str(path))
    return image.shape[1], image.shape[0]


def test_plot_mapping_draws_every_location_and_the_transitions(tmp_path, capsys):
    output = tmp_path / "map.png"
    assert main(["plot", "mapping", str(DEFAULT_MAPPING), "-o", str(output)]) == 0
    width, height = png_size(output)
    assert width > 1200 and height > 900  # three locations and the transition row


def test_plot_session_from_a_render_events_file(tone_bank, tmp_path):
    bank = tone_bank()
    timeline = tmp_path / "t.toml"
    timeline.write_text('duration_seconds = 6\n[[events]]\ntime_seconds = 0\nemotion = "calm"\nintensity = 0.2\n'
                        '[[events]]\ntime_seconds = 2\nintensity = 0.9\nstinger = "hit"\n'
                        '[[events]]\ntime_seconds = 3\nemotion = "afraid"\n')
    mapping = tmp_path / "m.toml"
    mapping.write_text('[smoothing]\nintensity_per_second = 0.5\n')
    events = tmp_path / "events.json"
    assert main(["render", str(timeline), "-o", str(tmp_path / "out.wav"), "--events", str(events), "--bank",
                 str(bank.folder / "bank.toml"), "--mapping", str(mapping), "--no-progress"]) == 0
    rows, rate = load_events(events)
    kinds = {row["type"] for row in rows}
    assert {"scene", "follow", "gains", "cue_change", "stinger", "transition_start"} <= kinds and rate == 48000
    follow = [row["intensity"] for row in rows if row["type"] == "follow"]
    assert follow[-1] == pytest.approx(0.9) and any(0.2 < value < 0.9 for value in follow)  # slewed
    output = tmp_path / "session.png"
    assert main(["plot", "session", str(events), "-o", str(output)]) == 0
    assert png_size(output)[0] > 1000


def test_plot_session_refuses_what_is_not_events(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="not an events file"):
        load_events(bad)
