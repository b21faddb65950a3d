#!/usr/bin/env python3
"""Cut every generated bridge out of a rendered session, with a little of
the music around it, to listen to the seams.

    .venv/bin/python tools/cut_bridges.py out/emotion-walk.wav out/emotion-walk.json \\
        --out docs/audio/bridges --label new

For each ``transition_start`` event whose ``bridge`` is ``generated`` in the
events JSON (``adaptive render --events``), writes
``<label>-<from>-to-<to>.ogg``: from ``--before`` seconds (default 4) before
the bridge starts to ``--after`` seconds (default 4) after the incoming cue
lands (the matching ``transition_end``). Ogg Vorbis through soundfile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def bridges(events: list[dict]) -> list[tuple[str, str, float, float]]:
    """``(from, to, start seconds, end seconds)`` of each generated bridge, in order."""
    found = []
    pending = None
    for event in events:
        if event["type"] == "transition_start" and event.get("bridge") == "generated":
            pending = event
        elif event["type"] == "transition_end" and pending is not None:
            found.append((pending.get("cue", "?"), pending.get("to", "?"), pending["time_seconds"],
                          event["time_seconds"]))
            pending = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wav", type=Path)
    parser.add_argument("events", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--before", type=float, default=4.0)
    parser.add_argument("--after", type=float, default=4.0)
    args = parser.parse_args(argv)
    import soundfile

    audio, rate = soundfile.read(args.wav, dtype="float32")
    events = json.loads(args.events.read_text())["events"]
    args.out.mkdir(parents=True, exist_ok=True)
    for old, new, start, end in bridges(events):
        first = max(0, int((start - args.before) * rate))
        last = min(len(audio), int((end + args.after) * rate))
        path = args.out / f"{args.label}-{old}-to-{new}.ogg"
        soundfile.write(path, audio[first:last], rate, format="OGG", subtype="VORBIS")
        print(f"wrote {path} ({start:.1f}-{end:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
