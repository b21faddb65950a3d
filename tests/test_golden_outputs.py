"""Golden outputs: every example timeline in ``examples/`` rendered with its
seed gives the WAV, MIDI and events JSON recorded in ``golden_outputs.json``,
byte for byte.

The hashes were recorded from the code before the restructuring of issue 12,
so a refactoring that changes what plays (an input reordered against a cue
change, a gain ramp rounded another way) fails here. The renders pin the
``rule_based`` generator: the examples' generated layers, bridges and stingers
would otherwise play the trained model, whose output changes whenever it is
retrained. Everything else (the embedded bank, the SoundFont, the sample rate)
is the default a user gets.

Record the hashes again (only when the music is meant to change) with
``python -m tests.test_golden_outputs``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from app.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GOLDEN_FILE = Path(__file__).with_name("golden_outputs.json")

RENDERS: dict[str, tuple[str, str | None]] = {
    "walk": ("walk.toml", None),
    "loss": ("loss.toml", None),
    "emotion-walk": ("emotion-walk.toml", "bridges-mapping.toml"),
    "walk-forest": ("walk.toml", "forest-mapping.toml"),
}
"""Render name -> (timeline, mapping or None for the default): every timeline
in ``examples/``, and each example mapping with the timeline its comment
renders it with."""


def render_hashes(name: str, folder: Path) -> dict[str, str]:
    """Render ``name`` into ``folder``; the sha256 of its WAV, MIDI and events JSON."""
    timeline, mapping = RENDERS[name]
    outputs = {"wav": folder / f"{name}.wav", "midi": folder / f"{name}.mid", "events": folder / f"{name}.json"}
    argv = ["render", str(EXAMPLES / timeline), "--generator", "rule_based", "--no-progress",
            "-o", str(outputs["wav"]), "--midi", str(outputs["midi"]), "--events", str(outputs["events"])]
    if mapping is not None:
        argv += ["--mapping", str(EXAMPLES / mapping)]
    assert main(argv) == 0
    return {kind: hashlib.sha256(path.read_bytes()).hexdigest() for kind, path in outputs.items()}


def test_every_example_timeline_is_covered() -> None:
    timelines = {path.name for path in EXAMPLES.glob("*.toml") if "duration_seconds" in path.read_text()}
    mappings = {path.name for path in EXAMPLES.glob("*-mapping.toml")}
    assert timelines == {timeline for timeline, _ in RENDERS.values()}
    assert mappings == {mapping for _, mapping in RENDERS.values() if mapping is not None}


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_render_is_bit_identical_to_the_recorded_one(name: str, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    assert render_hashes(name, tmp_path) == golden[name]


if __name__ == "__main__":  # record the hashes again: python -m tests.test_golden_outputs
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        hashes = {name: render_hashes(name, Path(folder)) for name in sorted(RENDERS)}
    GOLDEN_FILE.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE}", file=sys.stderr)
