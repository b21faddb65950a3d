#!/usr/bin/env python3
"""Render what the model generator writes, to listen to and to look at.

    .venv/bin/python tools/render_generator_examples.py --out docs/audio/generator --label new

For each quadrant of the emotion plane, one 8-bar piece (melody on a flute,
arpeggio on a harp, bass on a fingered bass; General MIDI programs 73, 46,
33) over a cue-like progression in the key the valence asks for, at a tempo
the arousal asks for; written as ``<label>-<quadrant>.ogg`` (Ogg Vorbis,
through soundfile) and ``<label>-<quadrant>.png`` (a piano roll,
matplotlib). Uses only the generator interface (``ModelPartGenerator``,
``BarRequest``) and ``adaptive.stem.render_part``, so the same script renders
an older checkout's generator for comparison (run it with that checkout on
``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

QUADRANTS = {
    # name: (valence, arousal, key, chords, bpm)
    "happy-excited": (0.8, 0.8, "D major", ["D", "Bm", "G", "A", "D", "Bm", "G", "A"], 132.0),
    "calm-content": (0.7, -0.7, "F major", ["F", "Dm", "Bb", "C", "F", "Am", "Bb", "C"], 84.0),
    "tense-angry": (-0.8, 0.8, "D minor", ["Dm", "Bb", "C", "A", "Dm", "Bb", "Gm", "A"], 140.0),
    "sad-gloomy": (-0.7, -0.7, "A minor", ["Am", "F", "C", "G", "F", "Dm", "E", "Am"], 72.0),
}
ROLES = {"melody": 73, "arpeggio": 46, "bass": 33}
SAMPLE_RATE_HZ = 44100


def generate(quadrant: str, seed: int, **generator_options):
    """The three parts of one quadrant's piece, as (role, Part) over 8 bars of 4/4;
    ``generator_options``: keyword arguments of ``ModelPartGenerator`` (none:
    its defaults, in any checkout)."""
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from adaptive.part import Part
    from models.generate import ModelPartGenerator

    valence, arousal, key, chords, bpm = QUADRANTS[quadrant]
    parts = []
    for role in ROLES:
        generator = ModelPartGenerator(**generator_options)
        notes = []
        for bar, symbol in enumerate(chords):
            part = generator.generate_bar(BarRequest(bar, Key.parse(key), Chord.parse(symbol), 4, bpm, valence,
                                                     arousal, role, seed))
            notes += [(s + 4 * bar, d, int(p), int(v)) for s, d, p, v in
                      zip(part.start_beats, part.duration_beats, part.pitch, part.velocity)]
        parts.append((role, Part.from_notes(notes)))
    return parts, bpm


def render(parts, bpm: float, soundfont: Path) -> np.ndarray:
    from adaptive.stem import render_part

    mix = None
    for role, part in parts:
        audio = render_part(part, soundfont=soundfont, program=ROLES[role], percussion=False, bpm=bpm,
                            sample_rate_hz=SAMPLE_RATE_HZ, length_beats=32.0, tail_seconds=2.0)
        mix = audio if mix is None else mix + audio
    peak = float(np.abs(mix).max()) or 1.0
    return (mix * (0.8 / peak)).astype(np.float32)


def piano_roll(parts, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    colours = {"melody": "tab:red", "arpeggio": "tab:blue", "bass": "tab:green"}
    for role, part in parts:
        for start, duration, pitch in zip(part.start_beats, part.duration_beats, part.pitch):
            ax.add_patch(plt.Rectangle((start, pitch - 0.4), duration, 0.8, color=colours[role], alpha=0.8))
        ax.plot([], [], color=colours[role], label=role, linewidth=6)
    for bar in range(9):
        ax.axvline(4 * bar, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlim(0, 32)
    ax.set_ylim(24, 96)
    ax.set_xlabel("beat")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the OGG and PNG files")
    parser.add_argument("--label", required=True, help="file name prefix, e.g. new or old")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--soundfont", type=Path, default=None, help="default: the engine's (find_soundfont)")
    parser.add_argument("--fresh-rhythms", choices=("yes", "no"), default="yes",
                        help="the phrase form's fresh-rhythm rule (default yes, the generator's default)")
    parser.add_argument("--repeat-weight", type=float, default=None,
                        help="the factor on the melody repeating its last note (default: the generator's "
                             "ROLE_REPEAT_WEIGHT; 1 = none)")
    parser.add_argument("--quadrants", default=",".join(QUADRANTS),
                        help=f"comma-separated, of {', '.join(QUADRANTS)} (default: all)")
    args = parser.parse_args(argv)
    quadrants = [q for q in args.quadrants.split(",") if q]
    unknown = [q for q in quadrants if q not in QUADRANTS]
    if unknown:
        parser.error(f"unknown quadrant(s) {', '.join(unknown)}; allowed: {', '.join(QUADRANTS)}")
    import soundfile

    from adaptive.synth import find_soundfont

    soundfont = args.soundfont or find_soundfont(None)
    args.out.mkdir(parents=True, exist_ok=True)
    for quadrant in quadrants:
        options = {} if args.fresh_rhythms == "yes" else {"fresh_rhythms": False}
        if args.repeat_weight is not None:
            options["repeat_weight"] = {"melody": args.repeat_weight}
        parts, bpm = generate(quadrant, args.seed, **options)
        soundfile.write(args.out / f"{args.label}-{quadrant}.ogg", render(parts, bpm, soundfont), SAMPLE_RATE_HZ,
                        format="OGG", subtype="VORBIS")
        piano_roll(parts, args.out / f"{args.label}-{quadrant}.png", f"{args.label}: {quadrant}")
        print(f"wrote {args.out / f'{args.label}-{quadrant}.ogg'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
