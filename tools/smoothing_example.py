"""The smoothing example of docs/mapping.md: noisy emotion input at 90 Hz on
the border between two cues of the default bank, rendered with the default
mapping (no slew) and with slews and a minimum time; prints the cue changes
of both and draws the smoothed session to docs/images/session-noisy-smoothed.png.

    .venv/bin/python tools/smoothing_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adaptive.cue import DEFAULT_BANK, load_bank
from adaptive.mapping import DEFAULT_MAPPING, parse_mapping_text, set_value_text
from adaptive.offline import render_offline
from adaptive.scene import SceneUpdate
from adaptive.session import Session
from app.generators import register_generators
from app.plot import plot_session

SAMPLE_RATE_HZ = 48_000
SECONDS = 12.0
INPUT_HZ = 90
CENTRE = (0.05, -0.1)  # between explore (0.5, -0.4) and stealth (-0.4, 0.2)
SPREAD = 0.4
ROOT = Path(__file__).resolve().parent.parent


def run(mapping_text: str, bank) -> tuple[list, int]:
    session = Session(bank, sample_rate_hz=SAMPLE_RATE_HZ, mapping=parse_mapping_text(mapping_text, bank))
    rng = np.random.default_rng(1)
    step = SAMPLE_RATE_HZ // INPUT_HZ
    inputs = [(0, SceneUpdate(valence=CENTRE[0], arousal=CENTRE[1], intensity=0.5, location="forest"))]
    for i in range(1, int(SECONDS * INPUT_HZ)):
        v, a = np.clip(np.array(CENTRE) + rng.uniform(-SPREAD, SPREAD, 2), -1, 1)
        inputs.append((i * step, SceneUpdate(valence=float(v), arousal=float(a))))
    render_offline(session, int(SECONDS * SAMPLE_RATE_HZ), inputs)
    events = session.drain_events()
    session.close()
    return events, sum(1 for e in events if e.kind == "cue_change")


def main() -> None:
    register_generators()
    bank = load_bank(DEFAULT_BANK)
    default = DEFAULT_MAPPING.read_text(encoding="utf-8")
    smoothed = default
    for path, value in (("smoothing.valence_per_second", 0.5), ("smoothing.arousal_per_second", 0.5),
                        ("smoothing.min_cue_bars", 2.0)):
        smoothed = set_value_text(smoothed, path, value)
    _, changes_default = run(default, bank)
    events, changes_smoothed = run(smoothed, bank)
    print(f"cue changes in {SECONDS:g} s of noisy input at {INPUT_HZ} Hz: default mapping {changes_default}, "
          f"with slews 0.5/s and min_cue_bars 2: {changes_smoothed}")
    rows = [{"frame": e.frame, "type": e.kind, **e.data} for e in events]
    plot_session(rows, SAMPLE_RATE_HZ, ROOT / "docs" / "images" / "session-noisy-smoothed.png",
                 title="noisy input at 90 Hz, slews 0.5/s, hysteresis 0.15, min_cue_bars 2",
                 cue_order=[cue.name for cue in bank.cues + bank.segments])


if __name__ == "__main__":
    main()
