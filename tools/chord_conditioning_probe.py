#!/usr/bin/env python3
"""How the ``Chord`` tokens shape the model's melodies: free sampling over
held-out VGMIDI pieces with each bar's real header, its chord tokens kept,
replaced by a cue-like progression, or read ``none``.

    python tools/chord_conditioning_probe.py [CHECKPOINT] [--pieces 10] [--temperature 0.9]

For each of the first ``--pieces`` held-out VGMIDI whole pieces (the model's
held-out list, ``models/heldout.json``) with at least 12 bars, the melody's
bars 4..11 are sampled from the model (torch, full distribution, the given
temperature, seed 0), each after the bar's real header (meter, phrase, key,
emotion, density, loudness), starting cold (``BOS Role_melody Style_game``).
The header's two ``Chord`` tokens are, by row:

* ``real``: the piece's own (since data format 3 estimated from each half
  bar's accompaniment, the notes under the skyline melody);
* ``progression, one chord a bar``: I-vi-IV-V in the bar's key (i-VI-iv-V in
  minor), both halves the same, as a cue's progression gives them;
* ``progression, two chords a bar``: the same progression at two chords a bar;
* ``none``: ``Chord_none``.

Printed: the share of the sampled top line's intervals that are repeats (0
semitones) and steps (1-2), beside the real bars'. The figures in
docs/evaluation.md ("Why the melodies repeated notes") come from this script.
Needs the token cache that ``python -m models.train`` builds (POP909 and
VGMIDI from ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROGRESSION = ((0, "MAJOR", "MINOR"), (9, "MINOR", None), (5, "MAJOR", "MINOR"), (7, "MAJOR", "MAJOR"))
"""(root above the tonic, quality in major, quality in minor; None: the minor root is 8, major)."""


def progression_chord(vocab, tonic: int, minor: bool, index: int) -> int:
    """Token id of chord ``index`` (mod 4) of I-vi-IV-V / i-VI-iv-V in the key."""
    root, major_quality, minor_quality = PROGRESSION[index % 4]
    if minor and minor_quality is None:
        root, quality = 8, "MAJOR"
    else:
        quality = minor_quality if minor else major_quality
    return vocab.id(f"Chord_{(tonic + root) % 12}_{quality}")


def interval_shares(lines: list[list[int]]) -> tuple[float, float]:
    """(repeat share, step share) of the intervals of the given pitch lines."""
    steps = np.concatenate([np.abs(np.diff(line)) for line in lines if len(line) > 1])
    return float((steps == 0).mean()), float(((steps >= 1) & (steps <= 2)).mean())


def main(argv: list[str] | None = None) -> int:
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.dataset import cached_streams, held_out_files
    from models.paths import default_data_dir
    from models.realness import decode_bar
    from models.tokenizer import Vocabulary

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.9)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    vocab = Vocabulary.build()
    model, _ = load_checkpoint(args.checkpoint, vocab)
    model.eval()
    held = held_out_files(json.loads((ROOT / "models" / "heldout.json").read_text()))
    streams = cached_streams(default_data_dir(), vocab, corpus=False)
    pieces = [s for s in streams if s.source == "vgmidi_piece" and s.role == "melody" and s.file in held
              and len(s.bars) >= 12][:args.pieces]
    bar_id = vocab.id("Bar_None")
    real_lines = [[int(p) for k in range(4, 12) for p in decode_bar(vocab, s.bars[k])[2]] for s in pieces]
    rows = {}
    for mode in ("real", "progression, one chord a bar", "progression, two chords a bar", "none"):
        rng = np.random.default_rng(0)
        lines = []
        for stream in pieces:
            seq = [vocab.id("BOS_None"), vocab.id("Role_melody"), vocab.id("Style_game")]
            line = []
            for k in range(4, 12):
                header = [int(t) for t in stream.headers[k]]
                key = vocab.tokens[header[3]]
                tonic, minor = int(key.split("_")[1]), key.endswith("minor")
                if mode == "progression, one chord a bar":
                    header[-2] = header[-1] = progression_chord(vocab, tonic, minor, k)
                elif mode == "progression, two chords a bar":
                    header[-2] = progression_chord(vocab, tonic, minor, 2 * k)
                    header[-1] = progression_chord(vocab, tonic, minor, 2 * k + 1)
                elif mode == "none":
                    header[-2] = header[-1] = vocab.id("Chord_none")
                seq += header
                for _ in range(80):
                    with torch.no_grad():
                        logits = model(torch.tensor([seq[-model.config.block_size:]]))
                    logits = (logits[0] if isinstance(logits, tuple) else logits)[0, -1].double().numpy()
                    p = np.exp((logits - logits.max()) / args.temperature)
                    token = int(rng.choice(len(p), p=p / p.sum()))
                    if token == bar_id:
                        break
                    seq.append(token)
                    if vocab.kind[token] == "Pitch":
                        line.append(int(vocab.pitch[token]))
            lines.append(line)
        rows[mode] = interval_shares(lines)
    real = interval_shares(real_lines)
    print(f"{len(pieces)} held-out VGMIDI pieces, bars 4-11, temperature {args.temperature}, {args.checkpoint}")
    print("| Chord tokens | Repeats | Steps |\n|---|---|---|")
    for mode, (repeat, step) in rows.items():
        print(f"| {mode} | {repeat:.0%} | {step:.0%} |")
    print(f"| (the real bars) | {real[0]:.0%} | {real[1]:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
