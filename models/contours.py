"""Density contours of real phrases: how busy each bar of an 8-bar period is.

Version 4 asked the same ``Density`` bin of every bar of a piece (the one
its arousal maps to), and the model, trained on real bars whose density is
their own, wrote what it was asked: eight bars of the same note values, an
unbroken run of eighths at high arousal (docs/evaluation.md, "Density
contours"). Real melodies are not like that: an 8-bar period of VGMIDI's
game music uses 2.2 different density bins on average, a busy bar answered
by a held note, a cadence bar sparser than the bars before it.

So the generator borrows the shape from real music. For every role,
:data:`CONTOURS_PATH` holds the per-bar density bins of the 8-bar periods
(windows starting at ``Phrase_0``, all eight bars present) of VGMIDI's
*training* files (the labelled phrases and the whole pieces; held-out files
are left out), sorted by the period's mean notes per beat. A request's
arousal (or the mapping's notes-per-beat ask) picks a place in that order,
and the bar's ``Density`` token comes from one real period near that place:
the arousal still sets how busy the music is on average, and a real piece
sets how that varies from bar to bar. Which period is drawn depends only on
``(seed, period index, role)``, so a part stays deterministic.

Build the table with ``python -m models.contours`` (reads the training
token cache of ``models.dataset.cached_streams``; a few seconds once the
cache exists).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from models.tokenizer import N_DENSITY_BINS, PHRASE_BARS, ROLES

CONTOURS_PATH = Path(__file__).resolve().parent / "phrase_contours.json"
"""The committed table (JSON, about 250 kB): ``{"format": 3, "source": str,
"roles": {role: {"mean_notes_per_beat": [float, ...] (ascending),
"density_bins": [[int x 8], ...], "repeat_of": [[int x 8], ...],
"repeat_kind": [[int x 8], ...], "downbeat": [[0 or 1 x 8], ...]}}}``."""

CONTOUR_SOURCES = ("vgmidi", "vgmidi_piece")
"""Stream sources whose periods make the table: VGMIDI's game music, the
style the generator writes by default."""

AROUSAL_QUANTILES = (0.1, 0.9)
"""Place in a role's periods (ordered by mean notes per beat) asked at
arousal -1 and +1, linear between: from the sparsest tenth of real game
music to the busiest tenth, leaving out the extremes (whole periods of rest,
runs of 32nd notes)."""

NEIGHBOURHOOD = 0.05
"""Periods within this share of the table on either side of the asked place
are the candidates a seed draws from (at least :data:`MIN_CANDIDATES`)."""

MIN_CANDIDATES = 8
FORMAT = 3

REPEAT_NONE, REPEAT_RHYTHM, REPEAT_MOTIF, REPEAT_EXACT = 0, 1, 2, 3
"""How a bar repeats an earlier bar of its period (:class:`BarPlan`)."""


class ContourError(ValueError):
    """The contour table is missing, malformed, or lacks a role."""


class PhraseContours:
    """Real periods' per-bar density bins for each role, ordered by how busy they are.

    Args:
        table: the parsed JSON of :data:`CONTOURS_PATH`.

    Raises:
        ContourError: a missing role, rows of the wrong length, bins outside
            0..:data:`models.tokenizer.N_DENSITY_BINS` - 1, or means not ascending.
    """

    def __init__(self, table: dict) -> None:
        if table.get("format") != FORMAT:
            raise ContourError(f"contour table format {table.get('format')!r}; this code reads format {FORMAT}")
        self.source = str(table.get("source", ""))
        self._means: dict[str, np.ndarray] = {}
        self._bins: dict[str, np.ndarray] = {}
        self._repeat_of: dict[str, np.ndarray] = {}
        self._repeat_kind: dict[str, np.ndarray] = {}
        self._downbeat: dict[str, np.ndarray] = {}
        roles = table.get("roles", {})
        for role in ROLES:
            if role not in roles:
                raise ContourError(f"contour table has no role {role!r} (has {sorted(roles)})")
            try:
                means = np.asarray(roles[role]["mean_notes_per_beat"], float)
                bins = np.asarray(roles[role]["density_bins"], int)
                repeat_of = np.asarray(roles[role]["repeat_of"], int)
                repeat_kind = np.asarray(roles[role]["repeat_kind"], int)
                downbeat = np.asarray(roles[role]["downbeat"], int)
            except (KeyError, TypeError, ValueError) as error:
                raise ContourError(f"contour table, role {role!r}: expected mean_notes_per_beat, density_bins, "
                                   f"repeat_of, repeat_kind and downbeat as numbers, rows of {PHRASE_BARS} bins each "
                                   f"({type(error).__name__}: {error})") from None
            if bins.ndim != 2 or bins.shape[1] != PHRASE_BARS or len(bins) != len(means) or len(bins) < MIN_CANDIDATES:
                raise ContourError(f"contour table, role {role!r}: expected at least {MIN_CANDIDATES} rows of "
                                   f"{PHRASE_BARS} bins with one mean each, got bins {bins.shape}, means {means.shape}")
            if bins.min() < 0 or bins.max() >= N_DENSITY_BINS:
                raise ContourError(f"contour table, role {role!r}: density bins must be 0..{N_DENSITY_BINS - 1}")
            if np.any(np.diff(means) < 0):
                raise ContourError(f"contour table, role {role!r}: mean_notes_per_beat must be ascending")
            if repeat_of.shape != bins.shape or repeat_kind.shape != bins.shape:
                raise ContourError(f"contour table, role {role!r}: repeat_of and repeat_kind need the shape of "
                                   f"density_bins {bins.shape}, got {repeat_of.shape} and {repeat_kind.shape}")
            if downbeat.shape != bins.shape or not np.isin(downbeat, (0, 1)).all():
                raise ContourError(f"contour table, role {role!r}: downbeat needs the shape of density_bins "
                                   f"{bins.shape} and values 0 or 1, got shape {downbeat.shape}")
            places = np.arange(PHRASE_BARS)
            if np.any(repeat_of >= places) or np.any(repeat_of < -1) or np.any((repeat_of < 0) != (repeat_kind == 0)) \
                    or repeat_kind.min() < REPEAT_NONE or repeat_kind.max() > REPEAT_EXACT:
                raise ContourError(f"contour table, role {role!r}: a bar may repeat only an earlier bar of its "
                                   f"period (repeat_of -1..place-1, kind {REPEAT_RHYTHM}..{REPEAT_EXACT}; "
                                   f"-1 with kind {REPEAT_NONE})")
            self._means[role], self._bins[role] = means, bins
            self._repeat_of[role], self._repeat_kind[role] = repeat_of, repeat_kind
            self._downbeat[role] = downbeat.astype(bool)

    def periods(self, role: str) -> int:
        """Number of real periods held for ``role``."""
        return len(self._bins[role])

    def quantile_of(self, role: str, notes_per_beat: float) -> float:
        """Place 0..1 of a period averaging ``notes_per_beat`` among ``role``'s real periods."""
        means = self._means[role]
        return float(np.searchsorted(means, notes_per_beat) / len(means))

    def bar_plan(self, role: str, quantile: float, seed: int, bar_index: int) -> "BarPlan":
        """What a real period says of bar ``bar_index`` of a part: its
        ``Density`` bin and which earlier bar of the period it repeats.

        Args:
            role: ``"melody"``, ``"arpeggio"`` or ``"bass"``.
            quantile: place 0..1 (clipped) among the role's periods ordered by
                mean notes per beat; :func:`arousal_quantile` maps arousal to it.
            seed: the session seed.
            bar_index: the bar's index since its cue started; its period is
                ``bar_index // 8`` and its bar in the period ``bar_index % 8``.

        The period is drawn from the candidates around ``quantile`` by a
        generator seeded with ``(seed, period, role)``: the same for the 8
        bars of a period, so they follow one real period's shape.
        """
        bins = self._bins[role]
        n = len(bins)
        centre = min(max(quantile, 0.0), 1.0) * (n - 1)
        half = max(NEIGHBOURHOOD * n, MIN_CANDIDATES / 2)
        low = int(max(0, min(n - MIN_CANDIDATES, round(centre - half))))
        high = int(min(n, max(low + MIN_CANDIDATES, round(centre + half) + 1)))
        period = bar_index // PHRASE_BARS
        rng = np.random.default_rng([seed & 0xFFFFFFFF, period & 0xFFFFFFFF, ROLES.index(role), 0x636F6E])
        row = int(rng.integers(low, high))
        place = bar_index % PHRASE_BARS
        source = int(self._repeat_of[role][row, place])
        return BarPlan(int(bins[row, place]), None if source < 0 else bar_index - place + source,
                       int(self._repeat_kind[role][row, place]), bool(self._downbeat[role][row, place]))


@dataclass(frozen=True)
class BarPlan:
    """One bar's place in a real period (:meth:`PhraseContours.bar_plan`).

    Attributes:
        density_bin: the ``Density`` bin 0..5 to ask.
        repeats_bar: the ``bar_index`` of the earlier bar of the same period
            this one repeats, or None.
        repeat_kind: how it repeats that bar: :data:`REPEAT_NONE`,
            :data:`REPEAT_RHYTHM` (the same onsets and note lengths),
            :data:`REPEAT_MOTIF` (also the same intervals of the top line:
            the motif again, moved to another degree, as in a sequence) or
            :data:`REPEAT_EXACT` (the same notes).
        downbeat: whether the real bar has a note starting on its downbeat
            (False: it starts with a rest or a note held from the bar before).
    """

    density_bin: int
    repeats_bar: int | None
    repeat_kind: int
    downbeat: bool = True


def arousal_quantile(arousal: float) -> float:
    """Arousal -1..1 (clipped) → place among a role's periods, linear over :data:`AROUSAL_QUANTILES`."""
    a01 = (min(1.0, max(-1.0, arousal)) + 1.0) / 2.0
    low, high = AROUSAL_QUANTILES
    return low + a01 * (high - low)


@lru_cache(maxsize=4)
def load_contours(path: str | Path = CONTOURS_PATH) -> PhraseContours:
    """The contour table at ``path`` (cached per path).

    Raises:
        ContourError: the file is missing, not JSON, or malformed.
    """
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ContourError(f"{path}: contour table not found; build it with python -m models.contours") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ContourError(f"{path}: contour table unreadable: {error}") from None
    return PhraseContours(table)


# ---------------------------------------------------------------- building the table

def repeats(bars: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[list[int], list[int]]:
    """For each bar of a period, the earlier bar it repeats best and how
    (``(repeat_of, repeat_kind)``, -1 and :data:`REPEAT_NONE` when none).

    Args:
        bars: per bar, ``(onsets, durations, pitches)`` as
            :func:`models.realness.decode_bar` gives them (quarter notes).

    A bar repeats an earlier one exactly when its (onset, duration, pitch)
    notes are the same; as a motif when its onsets and lengths are the same
    and so are the intervals between the highest notes of its onsets (at
    least two onsets); in rhythm when its onsets and lengths alone are the
    same (at least one note). The earliest bar of the best kind is named.
    """
    def signature(bar):
        onsets, durations, pitches = bar
        rhythm = tuple(sorted(set(zip(np.round(onsets * 4).astype(int).tolist(),
                                      np.round(durations * 12).astype(int).tolist()))))
        tops = [int(pitches[onsets == o].max()) for o in np.unique(onsets)]
        intervals = tuple(np.diff(tops).tolist()) if len(tops) >= 2 else None
        exact = tuple(sorted(zip(onsets.tolist(), durations.tolist(), pitches.tolist())))
        return rhythm, intervals, exact

    signatures = [signature(bar) for bar in bars]
    repeat_of, repeat_kind = [], []
    for i, (rhythm, intervals, exact) in enumerate(signatures):
        best, kind = -1, REPEAT_NONE
        if rhythm:
            for j in range(i):
                other = signatures[j]
                k = (REPEAT_EXACT if other[2] == exact else
                     REPEAT_MOTIF if other[0] == rhythm and intervals is not None and other[1] == intervals else
                     REPEAT_RHYTHM if other[0] == rhythm else REPEAT_NONE)
                if k > kind:
                    best, kind = j, k
        repeat_of.append(best)
        repeat_kind.append(kind)
    return repeat_of, repeat_kind


def downbeats(bars: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[int]:
    """For each bar of a period, 1 if a note starts on its downbeat, else 0
    (the bar starts with a rest or with a note held from the bar before).

    Args:
        bars: per bar, ``(onsets, durations, pitches)`` (quarter notes from
            the bar's downbeat), as :func:`repeats` takes them.
    """
    return [int(bool(np.any(np.abs(np.asarray(onsets, float)) < 1e-9))) for onsets, _, _ in bars]


def period_rows(streams: Sequence, vocab, held_out: set[str]) -> dict[str, list[tuple]]:
    """``(mean notes per beat, per-bar density bins, repeat_of, repeat_kind,
    downbeat)`` of every 8-bar period (from a ``Phrase_0`` bar, density known in all 8
    bars) of the streams from :data:`CONTOUR_SOURCES` whose file is not in
    ``held_out``, by role (:func:`repeats` for repeat_of and repeat_kind,
    :func:`downbeats` for downbeat)."""
    from models.realness import decode_bar
    from models.tokenizer import HEADER_SLOTS, METERS

    density_slot, phrase_slot, meter_slot = (HEADER_SLOTS.index(s) for s in ("Density", "Phrase", "Meter"))
    phrase0 = vocab.id("Phrase_0")
    density_of = {vocab.id(f"Density_{i}"): i for i in range(N_DENSITY_BINS)}
    beats_of = {vocab.id(f"Meter_{name}"): positions / 4.0 for name, positions in METERS.items()}
    rows: dict[str, list[tuple]] = {role: [] for role in ROLES}
    for stream in streams:
        if stream.source not in CONTOUR_SOURCES or stream.file in held_out:
            continue
        headers = stream.headers
        for start in range(0, len(stream.bars) - PHRASE_BARS + 1):
            window = headers[start:start + PHRASE_BARS]
            if window[0, phrase_slot] != phrase0:
                continue
            bins = [density_of.get(int(t)) for t in window[:, density_slot]]
            quarters = [beats_of.get(int(t)) for t in window[:, meter_slot]]
            if any(b is None for b in bins) or any(q is None for q in quarters):
                continue
            bars = [decode_bar(vocab, stream.bars[start + i]) for i in range(PHRASE_BARS)]
            notes = sum(len(bar[0]) for bar in bars)
            rows[stream.role].append((notes / sum(quarters), bins, *repeats(bars), downbeats(bars)))
    return rows


def build_table(rows: dict[str, list[tuple]], source: str) -> dict:
    """The JSON table from :func:`period_rows`, each role's periods sorted by mean (ties by bins)."""
    roles = {}
    for role, periods in rows.items():
        periods = sorted(periods, key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
        roles[role] = {"mean_notes_per_beat": [round(r[0], 4) for r in periods],
                       "density_bins": [list(r[1]) for r in periods],
                       "repeat_of": [list(r[2]) for r in periods],
                       "repeat_kind": [list(r[3]) for r in periods],
                       "downbeat": [list(r[4]) for r in periods]}
    return {"format": FORMAT, "source": source, "roles": roles}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.contours [--data DIR] [--out PATH]``: build the table from the training cache."""
    from models.dataset import cached_streams, held_out_files, heldout_split
    from models.paths import default_data_dir
    from models.tokenizer import Vocabulary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="the data folder (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=CONTOURS_PATH)
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    vocab = Vocabulary.build()
    streams = cached_streams(data_dir, vocab, corpus=False)
    held_out = held_out_files(heldout_split(data_dir))
    rows = period_rows(streams, vocab, held_out)
    table = build_table(rows, "VGMIDI training files (labelled phrases and whole pieces), 8-bar periods from Phrase_0")
    PhraseContours(table)  # validate before writing
    args.out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"{args.out}: " + ", ".join(f"{role} {len(table['roles'][role]['density_bins'])} periods" for role in ROLES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
