#!/usr/bin/env python3
"""Generate the evaluation grid's pieces with whatever ``models.generate`` is
importable and write their notes as JSON, so that another checkout's
evaluation can judge them (``python -m models.evaluate --pieces FILE``).

    python tools/dump_generated_pieces.py REQUESTS.json OUT.json

``REQUESTS.json`` comes from ``python -m models.evaluate --write-requests``:
``{"roles": [...], "bars": 8, "beats_per_bar": 4, "bpm": 120, "pieces":
[{"valence", "arousal", "key", "chords": [...], "seed"}, ...]}``. Only the
generator interface common to every version is used (``BarRequest`` with its
first nine fields, ``ModelPartGenerator().generate_bar``), so an older
checkout's generator can be dumped: run with that checkout first on
``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from models.generate import ModelPartGenerator

    spec = json.loads(open(argv[0]).read())
    out = []
    for piece in spec["pieces"]:
        roles = []
        compute = 0.0
        for role in spec["roles"]:
            generator = ModelPartGenerator()
            bars = []
            for bar in range(spec["bars"]):
                request = BarRequest(bar, Key.parse(piece["key"]), Chord.parse(piece["chords"][bar % len(piece["chords"])]),
                                     spec["beats_per_bar"], spec["bpm"], piece["valence"], piece["arousal"], role,
                                     piece["seed"])
                started = time.perf_counter()
                part = generator.generate_bar(request)
                compute += time.perf_counter() - started
                bars.append([[float(s), float(d), int(p), int(v)] for s, d, p, v in
                             zip(part.start_beats, part.duration_beats, part.pitch, part.velocity)])
            roles.append(bars)
        out.append({"bars": roles, "compute_seconds": compute})
    with open(argv[1], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
