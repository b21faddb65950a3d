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


def _transition_axes():
    """The transition graph of the embedded mapping, drawn on its own axes."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import load_mapping
    from app.plot import _cue_colors, _transition_graph

    bank = load_bank(DEFAULT_BANK)
    resolved = load_mapping(DEFAULT_MAPPING, bank)
    figure, ax = plt.subplots(figsize=(5.6, 5.6))
    lines = _transition_graph(ax, resolved, _cue_colors([cue.name for cue in bank.cues]))
    figure.canvas.draw()
    return plt, figure, ax, lines, resolved, math


def test_every_transition_rule_has_an_arrow_and_no_number_hides_an_arrowhead():
    from matplotlib.patches import FancyArrowPatch

    plt, figure, ax, lines, resolved, math = _transition_axes()
    try:
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        numbers = [t for t in ax.texts if t.get_text().isdigit()]
        # One arrow per rule, the `* → *` rule too (a loop on the wildcard).
        assert len(arrows) == len(lines) == len(resolved.transition_rules())
        assert sorted(int(t.get_text()) for t in numbers) == list(range(1, len(lines) + 1))
        # Each arrowhead's tip (the path's last vertex, in pixels) is outside every number's circle.
        renderer = figure.canvas.get_renderer()
        boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in numbers]
        for arrow in arrows:
            paths, _ = arrow._get_path_in_displaycoord()  # matplotlib's own: [shaft, head], in pixels
            head = paths[-1].vertices  # the arrowhead's triangle
            for box in boxes:
                inside = [(x, y) for x, y in head if box.x0 + 1 < x < box.x1 - 1 and box.y0 + 1 < y < box.y1 - 1]
                assert not inside, (arrow, box)
    finally:
        plt.close(figure)


def test_an_emotion_label_clears_a_cue_marker_on_its_point_and_stays_on_the_plane():
    from app.plot import _emotion_label_offset

    # "triumphant" (0.8, 0.6) sits on the triumph cue's point: the label goes left, clear of the marker.
    x_pt, _, align = _emotion_label_offset(0.8, 0.6, len("triumphant"), 0, [(0.8, 0.6)])
    assert align == "right" and x_pt <= -9
    # Nothing near, room on the right: right of the dot, close to it.
    assert _emotion_label_offset(-0.4, 0.4, len("tense"), 0, [(0.5, -0.4)]) == (4.0, 3, "left")


def test_session_plot_legends_every_block_of_the_cue_lane(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from app import plot

    captured = {}
    monkeypatch.setattr(plot, "_save", lambda figure, output: captured.setdefault("figure", figure))
    rate = 48000
    events = [{"frame": 0, "type": "cue_change", "cue": "explore", "previous": None},
              {"frame": 10 * rate, "type": "cue_change", "cue": "bridge:explore->stealth", "previous": "explore"},
              {"frame": 12 * rate, "type": "cue_change", "cue": "stealth", "previous": "bridge:explore->stealth"},
              {"frame": 20 * rate, "type": "cue_change", "cue": "to_triumph", "previous": "stealth"},
              {"frame": 21 * rate, "type": "cue_change", "cue": "triumph", "previous": "to_triumph"}]
    plot.plot_session(events, rate, tmp_path / "s.png", cue_order=["explore", "stealth", "triumph", "to_triumph"])
    figure = captured["figure"]
    try:
        ax_cue = figure.axes[2]
        labels = [text.get_text() for text in ax_cue.get_legend().get_texts()]
        assert labels[:5] == ["explore", "generated bridge", "stealth", "to_triumph", "triumph"]
    finally:
        plt.close(figure)
