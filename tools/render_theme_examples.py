#!/usr/bin/env python3
"""Render the worked example of themes and variations: the default bank's
``hero`` theme in each quadrant of the emotion plane, as the engine plays it.

    python tools/render_theme_examples.py [--generator model] [--seconds 18]

Each quadrant is a session of ``examples/themes/bank.toml`` (the theme on a
French horn, a harp and a bass written by the part generator under the
theme's re-harmonized chords) driven by the one offline driver
(:func:`adaptive.offline.render_offline`) with the default SoundFont, the
scene set at frame 0 to the quadrant's point and intensity 0.6. Writes
``docs/audio/themes/hero-<quadrant>.ogg`` (Ogg Vorbis through soundfile, 22.05
kHz mono to keep them small) and one piano roll of the theme and its four
variations, ``docs/images/themes-hero.png`` (matplotlib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUADRANTS = {
    # name: (valence, arousal)
    "triumphant": (0.8, 0.6),
    "calm": (0.5, -0.6),
    "angry": (-0.6, 0.8),
    "sorrowful": (-0.7, -0.6),
}
SAMPLE_RATE_HZ = 44_100
OUT_RATE_HZ = 22_050
BANK = ROOT / "examples" / "themes" / "bank.toml"
COLOURS = {"hero/theme": "tab:red", "hero/harp": "tab:blue", "hero/bass": "tab:green"}


def render_quadrant(valence: float, arousal: float, seconds: float, generator: str, seed: int):
    """The audio (float32 stereo) and the notes ``(part, start_beats, duration_beats, pitch)`` of one quadrant."""
    from adaptive.cue import load_bank
    from adaptive.mapping import load_mapping
    from adaptive.offline import render_offline
    from adaptive.scene import SceneUpdate
    from adaptive.session import Session

    bank = load_bank(BANK)
    session = Session(bank, sample_rate_hz=SAMPLE_RATE_HZ, seed=seed, generator=generator,
                      mapping=load_mapping(ROOT / "examples" / "themes" / "mapping.toml", bank))
    end = int(seconds * SAMPLE_RATE_HZ)
    audio = render_offline(session, end, [(0, SceneUpdate(valence=valence, arousal=arousal, intensity=0.6))])
    session.close()
    frames_per_beat = SAMPLE_RATE_HZ * 60.0 / bank.cues[0].bpm
    open_notes: dict[tuple[str, int], int] = {}
    notes = []
    for event in session.midi_events:
        key = (event.part, event.pitch)
        if event.kind == 1:
            open_notes[key] = event.frame
        elif key in open_notes:
            start = open_notes.pop(key)
            notes.append((event.part, start / frames_per_beat, (event.frame - start) / frames_per_beat, event.pitch))
    return audio, notes


def theme_notes():
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.theme import load_theme

    theme = load_theme(load_bank(DEFAULT_BANK), "hero")
    return [("hero/theme", float(s), float(d), int(p)) for s, d, p in
            zip(theme.melody.start_beats, theme.melody.duration_beats, theme.melody.pitch)]


def piano_roll(rows: list[tuple[str, list]], path: Path, beats: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.3 * len(rows)), sharex=True)
    for ax, (title, notes) in zip(axes, rows):
        for part, start, duration, pitch in notes:
            if start < beats:
                ax.add_patch(plt.Rectangle((start, pitch - 0.4), duration, 0.8, color=COLOURS.get(part, "0.5"),
                                           alpha=0.85, linewidth=0))
        for bar in range(int(beats // 4) + 1):
            ax.axvline(4 * bar, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xlim(0, beats)
        ax.set_ylim(28, 96)
        ax.set_ylabel("pitch")
        ax.set_title(title, fontsize=10, loc="left")
    for part, colour in COLOURS.items():
        axes[0].plot([], [], color=colour, linewidth=6, label=part.split("/")[1])
    axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1].set_xlabel("beat (108 bpm, 4/4)")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="model", help="the part generator of the accompaniment (default model)")
    parser.add_argument("--seconds", type=float, default=18.0, help="length of each render (default 18 s: 8 bars)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    import soundfile
    from scipy.signal import resample_poly

    from app.generators import register_generators

    register_generators()
    audio_dir = ROOT / "docs" / "audio" / "themes"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = [("theme (as written, D major)", theme_notes())]
    for name, (valence, arousal) in QUADRANTS.items():
        audio, notes = render_quadrant(valence, arousal, args.seconds, args.generator, args.seed)
        mono = resample_poly(audio.mean(axis=1), OUT_RATE_HZ, SAMPLE_RATE_HZ)
        peak = float(np.abs(mono).max()) or 1.0
        path = audio_dir / f"hero-{name}.ogg"
        soundfile.write(path, (mono * (0.8 / peak)).astype(np.float32), OUT_RATE_HZ, format="OGG", subtype="VORBIS")
        rows.append((f"{name} (valence {valence:+.1f}, arousal {arousal:+.1f})", notes))
        print(f"wrote {path}", file=sys.stderr)
    image = ROOT / "docs" / "images" / "themes-hero.png"
    piano_roll(rows, image, beats=args.seconds * 108 / 60)
    print(f"wrote {image}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
