"""Golden outputs: every example timeline in ``examples/`` rendered with its
seed gives the WAV, MIDI and events JSON recorded in ``golden_outputs.json``,
byte for byte.

The hashes were recorded from the code before the restructuring of issue 12,
so a refactoring that changes what plays (an input reordered against a cue
change, a gain ramp rounded another way) fails here. The renders pin the
``rule_based`` generator: the examples' generated layers, bridges and stingers
would otherwise play the trained model, whose output changes whenever it is
retrained. Everything else (the embedded bank, the sample rate) is the default
a user gets; the SoundFont is the one the suite renders with (TimGM6mb,
tests/conftest.py). The WAV's hash is recorded per SoundFont (by file name:
TimGM6mb and the default, MuseScore General); the MIDI and the events do not
depend on it. A SoundFont with no recorded hash checks the MIDI and events only.

Record the hashes again (only when the music is meant to change) with
``python -m tests.test_golden_outputs``, once per SoundFont: without
``$ADAPTIVE_SOUNDFONT`` it records the default's, with
``ADAPTIVE_SOUNDFONT=/usr/share/sounds/sf2/TimGM6mb.sf2`` the suite's. A run
keeps the hashes recorded for other SoundFonts, so when the music changes,
record again with each.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from adaptive.synth import find_soundfont
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
    golden = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))[name]
    soundfont = find_soundfont().name
    hashes = render_hashes(name, tmp_path)
    assert {kind: hashes[kind] for kind in ("midi", "events")} == {kind: golden[kind] for kind in ("midi", "events")}
    if soundfont not in golden["wav"]:
        pytest.skip(f"no WAV hash recorded for {soundfont} (recorded: {', '.join(sorted(golden['wav']))}); "
                    "MIDI and events checked")
    assert hashes["wav"] == golden["wav"][soundfont], f"the WAV rendered with {soundfont} changed"


if __name__ == "__main__":  # record the hashes again: python -m tests.test_golden_outputs
    import tempfile

    soundfont = find_soundfont().name
    recorded = json.loads(GOLDEN_FILE.read_text(encoding="utf-8")) if GOLDEN_FILE.is_file() else {}
    with tempfile.TemporaryDirectory() as folder:
        golden = {}
        for name in sorted(RENDERS):
            hashes = render_hashes(name, Path(folder))
            wav = {} if not isinstance(recorded.get(name, {}).get("wav"), dict) else dict(recorded[name]["wav"])
            wav[soundfont] = hashes["wav"]
            golden[name] = {"events": hashes["events"], "midi": hashes["midi"], "wav": wav}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN_FILE} (WAV hashes for {soundfont})", file=sys.stderr)
