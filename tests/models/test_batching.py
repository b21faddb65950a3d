"""Several parts' bars written together (models/batching.py): one decoding
step for all their rows gives each part the same notes as writing its bars
alone, whatever else is in the batch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adaptive.generator import BarRequest
from adaptive.harmony import Chord, Key
from models.batching import generate_bars, pool_for
from models.generate import ModelPartGenerator

PROGRESSION = [Chord.parse(name) for name in ("C", "Am", "F", "G")]

# Three parts as three sessions might ask for them: other roles, seeds, emotions, tempi and keys;
# one without guidance (one row instead of two).
PARTS = [
    dict(role="melody", seed=3, valence=0.6, arousal=0.4, key="C major", bpm=120.0),
    dict(role="arpeggio", seed=8, valence=-0.5, arousal=0.9, key="A minor", bpm=96.0),
    dict(role="bass", seed=21, valence=0.1, arousal=-0.7, key="D major", bpm=84.0),
]
BARS = 4


def request(part: dict, bar_index: int) -> BarRequest:
    return BarRequest(bar_index=bar_index, key=Key.parse(part["key"]), chord=PROGRESSION[bar_index % 4],
                      beats_per_bar=4, bpm=part["bpm"], valence=part["valence"], arousal=part["arousal"],
                      role=part["role"], seed=part["seed"])


def notes_of(part) -> list[tuple]:
    return list(zip(part.start_beats.tolist(), part.duration_beats.tolist(), part.pitch.tolist(),
                    part.velocity.tolist()))


def make_generators() -> list[ModelPartGenerator]:
    return [ModelPartGenerator(guidance_scale=1.0 if part["role"] == "bass" else 2.0) for part in PARTS]


def alone() -> list[list[list[tuple]]]:
    """Each part's bars written one at a time, each generator on its own caches."""
    return [[notes_of(generator.generate_bar(request(part, bar))) for bar in range(BARS)]
            for generator, part in zip(make_generators(), PARTS)]


def test_batched_generation_gives_the_same_notes_as_one_part_at_a_time():
    expected = alone()
    generators = make_generators()
    pool_for(generators)
    batched = [[] for _ in PARTS]
    for bar in range(BARS):
        for index, part in enumerate(generate_bars([(g, request(p, bar)) for g, p in zip(generators, PARTS)])):
            batched[index].append(notes_of(part))
    assert batched == expected
    assert all(any(bar for bar in bars) for bars in expected)  # every part wrote notes


def test_a_parts_notes_do_not_depend_on_what_else_is_in_its_batch():
    expected = alone()
    generators = make_generators()
    pool_for(generators)
    melody, arpeggio, bass = generators
    got = {0: [], 1: [], 2: []}
    # Bar 0: all three; bar 1: melody alone; bar 2: melody and bass; bar 3: the others' turn to catch up.
    plan = [[0, 1, 2], [0], [0, 2], [1, 2], [0], [1], [1, 2], [2]]
    for indices in plan:
        jobs = [(generators[i], request(PARTS[i], len(got[i]))) for i in indices]
        for i, part in zip(indices, generate_bars(jobs)):
            got[i].append(notes_of(part))
    assert [got[i][:BARS] for i in range(3)] == expected


def test_a_generator_moved_into_a_pool_mid_stream_continues_as_it_would_have():
    expected = alone()[0]
    generator = ModelPartGenerator(guidance_scale=2.0)
    first = [notes_of(generator.generate_bar(request(PARTS[0], 0)))]
    pool_for([generator])  # its context is copied into the pool
    rest = [notes_of(generate_bars([(generator, request(PARTS[0], bar))])[0]) for bar in range(1, BARS)]
    assert first + rest == expected


def test_a_batch_refuses_a_generator_twice_and_generators_outside_one_pool():
    a, b = ModelPartGenerator(), ModelPartGenerator()
    pool_for([a])
    with pytest.raises(ValueError, match="appears twice"):
        generate_bars([(a, request(PARTS[0], 0)), (a, request(PARTS[0], 1))])
    with pytest.raises(ValueError, match="one pool"):
        generate_bars([(a, request(PARTS[0], 0)), (b, request(PARTS[1], 0))])
    with pytest.raises(ValueError, match="role"):  # a bad request is refused as generate_bar refuses it
        pool_for([b])
        generate_bars([(b, replace(request(PARTS[0], 0), role="drums"))])
