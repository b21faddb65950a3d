"""Notes from the corpus that ships inside the ``music21`` package (nothing is
downloaded): the Essen folk songs, O'Neill's *Music of Ireland* (1850), Ryan's
*Mammoth Collection* (1883) and Bach's four-part chorales.

What each brings to the generator (the model card says the same):

* **Essen** (``essenFolksong/*.abc``, about 8 500 European folk melodies,
  Schaffrath 1995): short, singable melodies with clear phrases, mostly
  stepwise, in 2/4, 3/4, 4/4, 6/8 and 3/8.
* **O'Neill's** (``oneills1850/*.abc``, about 1 850 Irish tunes) and **Ryan's**
  (``ryansMammoth/*.abc``, about 1 000 fiddle tunes): dance tunes built from
  repeated and varied motifs and sequences (AABB forms), in 4/4, 6/8, 2/4, 3/4.
* **Bach's chorales** (``bach/bwv*.mxl``, about 400 harmonized in four voices):
  soprano melody and bass line over real, per-beat harmony.

Each tune becomes a :class:`RawPiece`: its voices as note arrays in quarter
notes from the first bar line (a pickup is placed at the end of bar 0, so bar
lines fall at multiples of the bar length), and its time signature. Keys,
chords, phrase positions and roles are derived later, in
:mod:`models.dataset`, for every source alike.

Parsing takes about 15 minutes on one core (music21's ABC and MusicXML
readers); :func:`extract` caches the result.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SOURCES = ("essen", "oneills", "ryans", "chorales")
"""Corpus sources, by the name the data pipeline uses."""

_FOLDERS = {"essen": "essenFolksong", "oneills": "oneills1850", "ryans": "ryansMammoth", "chorales": "bach"}


@dataclass
class RawPiece:
    """One tune as notes.

    Attributes:
        source: one of :data:`SOURCES`.
        file: ``<folder>/<file>#<index>``, relative to music21's corpus.
        numerator, denominator: the time signature (of the first bar).
        voices: per voice (top first), an array (n, 3) float64 of onset and
            duration in quarter notes from bar 0's downbeat, and MIDI pitch.
    """

    source: str
    file: str
    numerator: int
    denominator: int
    voices: list[np.ndarray] = field(default_factory=list)


def corpus_root() -> Path:
    """The folder of music21's bundled corpus."""
    import music21

    return Path(music21.__path__[0]) / "corpus"


def _time_signature(score) -> tuple[int, int] | None:
    from music21 import meter

    for ts in score.recurse().getElementsByClass(meter.TimeSignature):
        return int(ts.numerator), int(ts.denominator)
    return None


def _voice_notes(part, shift_quarters: float) -> np.ndarray:
    from music21 import harmony

    rows = []
    for n in part.flatten().notes:
        if isinstance(n, harmony.ChordSymbol) or n.quarterLength <= 0:
            continue  # chord symbols and grace notes
        onset = float(n.offset) + shift_quarters
        pitches = [p.midi for p in n.pitches]
        for pitch in pitches:
            rows.append((onset, float(n.quarterLength), float(pitch)))
    return np.array(rows, np.float64).reshape(-1, 3)


def piece_from_score(score, source: str, file: str) -> RawPiece | None:
    """A :class:`RawPiece` from a parsed music21 score (None when it has no
    time signature or no notes)."""
    from music21 import stream

    signature = _time_signature(score)
    if signature is None:
        return None
    numerator, denominator = signature
    bar_quarters = numerator * 4.0 / denominator
    score = score.stripTies(inPlace=False)
    parts = list(score.parts) if score.parts else [score]
    if source == "chorales":  # the four sung voices (some chorales add instrumental parts)
        sung = [p for p in parts if (p.partName or "").strip().lower()[:1] in "satb"
                and (p.partName or "").strip().lower().split()[0] in ("soprano", "alto", "tenor", "bass")]
        if len(sung) != 4:
            return None
        parts = sung
    measures = list(parts[0].getElementsByClass(stream.Measure))
    first = float(measures[0].duration.quarterLength) if measures else bar_quarters
    shift = (bar_quarters - first) % bar_quarters if 0 < first < bar_quarters else 0.0
    voices = [_voice_notes(part, shift) for part in parts]
    voices = [v for v in voices if len(v)]
    if not voices:
        return None
    return RawPiece(source, file, numerator, denominator, voices)


def _files(source: str) -> list[Path]:
    folder = corpus_root() / _FOLDERS[source]
    if source == "chorales":
        return sorted(folder.glob("bwv*.mxl"))
    return sorted(folder.glob("*.abc"))


def parse_source(source: str, limit: int | None = None, progress: bool = True) -> list[RawPiece]:
    """Every tune of ``source`` (one of :data:`SOURCES`); files music21 cannot
    read are skipped with a warning line. ``limit``: at most this many files."""
    from music21 import converter, stream
    from tqdm import tqdm

    pieces: list[RawPiece] = []
    for path in tqdm(_files(source)[:limit], desc=f"music21 {source}", disable=not progress):
        relative = f"{_FOLDERS[source]}/{path.name}"
        try:
            parsed = converter.parse(str(path))
        except Exception as exc:  # a file music21 cannot read must not stop the run
            print(f"warning: skipped {relative}: {exc}")
            continue
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        for index, score in enumerate(scores):
            try:
                piece = piece_from_score(score, source, f"{relative}#{index}")
            except Exception as exc:
                print(f"warning: skipped {relative}#{index}: {exc}")
                continue
            if piece is not None:
                pieces.append(piece)
    return pieces


class _Unpickler(pickle.Unpickler):
    """Reads caches written by ``python -m models.folk_corpus`` too, where the
    pieces were pickled as ``__main__.RawPiece``."""

    def find_class(self, module: str, name: str):
        if name == "RawPiece":
            return RawPiece
        return super().find_class(module, name)


def _cache_path(cache_dir: Path, source: str, limit: int | None) -> Path:
    import music21

    return cache_dir / f"corpus-{source}-{music21.__version__}-{limit or 'all'}.pkl"


def parsed_sources(cache_dir: Path) -> list[tuple[str, int | None]]:
    """``(source, file limit)`` of each source parsed into ``cache_dir``
    already (the whole source when it is there, else the largest limited parse)."""
    found = []
    for source in SOURCES:
        if _cache_path(cache_dir, source, None).exists():
            found.append((source, None))
            continue
        limits = []
        for path in cache_dir.glob(f"corpus-{source}-*-*.pkl"):
            tail = path.stem.rsplit("-", 1)[-1]
            if tail.isdigit():
                limits.append(int(tail))
        if limits:
            found.append((source, max(limits)))
    return found


def extract(cache_dir: Path, sources=SOURCES, limit: int | None = None,
            progress: bool = True) -> list[RawPiece]:
    """All pieces of ``sources``, parsed once and cached in ``cache_dir``
    (``corpus-<source>-<music21 version>-<limit>.pkl``). ``sources``: names,
    or ``(name, file limit)`` pairs (a limit: the first files of the source,
    in name order); ``limit``: the file limit of plain names."""
    pieces: list[RawPiece] = []
    cache_dir.mkdir(parents=True, exist_ok=True)
    for entry in sources:
        source, source_limit = entry if isinstance(entry, tuple) else (entry, limit)
        path = _cache_path(cache_dir, source, source_limit)
        if path.exists():
            with open(path, "rb") as f:
                pieces += _Unpickler(f).load()
            continue
        parsed = parse_source(source, source_limit, progress)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(parsed, f)
        tmp.replace(path)
        pieces += parsed
    return pieces


if __name__ == "__main__":  # python -m models.folk_corpus [SOURCE[:FILES] ...]: fill the cache
    import sys

    from models.paths import default_cache_dir

    chosen = []
    for arg in sys.argv[1:] or SOURCES:
        name, _, files = arg.partition(":")
        if name not in SOURCES:
            sys.exit(f"unknown source {name!r} (allowed: {', '.join(SOURCES)}, each optionally :FILES)")
        chosen.append((name, int(files) if files else None))
    found = extract(default_cache_dir(), chosen)  # pickled as __main__.RawPiece: _Unpickler reads them
    print(f"{len(found)} pieces")
