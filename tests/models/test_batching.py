"""Several parts' bars written together (models/batching.py): one decoding
step for all their rows gives each part the same notes as writing its bars
alone, whatever else is in the batch."""

from __future__ import annotations

import mmap
import threading
import time
from dataclasses import replace

import numpy as np
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


# ---------------------------------------------------------------- in the generation scheduler
from adaptive.generation import GenerationMode, GenerationScheduler, GenerationWorker  # noqa: E402
from adaptive.generator import RuleBasedGenerator  # noqa: E402
from models.batching import BarBatcher  # noqa: E402
from tests.helpers import FakeClock  # noqa: E402


def run_until_idle(scheduler: GenerationScheduler) -> None:
    for _ in range(100_000):
        if not scheduler.run_round():
            return
    raise AssertionError("the scheduler never ran out of work")


def test_sessions_sharing_the_scheduler_get_the_notes_each_part_gets_alone():
    expected = alone()
    batcher = BarBatcher()
    scheduler = GenerationScheduler(clock=FakeClock(0.0), batcher=batcher, threaded=False)
    # Three sessions (one part each), started 0, 1 and 2 s apart; a fourth with a rule-based part.
    workers = [GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler,
                                time_of_frame=lambda frame, start=float(i): start + frame / 48_000)
               for i in range(4)]
    streams = [worker.stream("cue/part", generator)
               for worker, generator in zip(workers, make_generators() + [RuleBasedGenerator()])]
    tickets = [[] for _ in workers]
    for bar in range(BARS):  # each asks for its next bar while the others' are being written
        for i, (worker, stream) in enumerate(zip(workers, streams)):
            part = PARTS[i] if i < 3 else PARTS[0]
            tickets[i].append(worker.submit(stream, request(part, bar), deadline_frame=bar * 96_000))
        for _ in range(5):
            scheduler.run_round()
    run_until_idle(scheduler)
    got = [[notes_of(worker.take(ticket, 0)) for ticket in session] for worker, session in zip(workers, tickets)]
    assert got[:3] == expected
    assert got[3] == [notes_of(RuleBasedGenerator().generate_bar(request(PARTS[0], bar))) for bar in range(BARS)]
    assert scheduler.counters["largest_batch_bars"] >= 2  # bars were written together
    assert scheduler.counters["batched_bars"] == 3 * BARS and scheduler.counters["bars"] == 4 * BARS
    assert all(worker.counters["generation_misses"] == 0 for worker in workers)


def test_a_session_that_ends_mid_bar_leaves_the_batch_and_frees_its_cache_slots():
    expected = alone()
    batcher = BarBatcher(pool_slots=4)  # room for two guided parts
    scheduler = GenerationScheduler(clock=FakeClock(0.0), batcher=batcher, threaded=False)
    ending = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: frame)
    staying = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: frame)
    melody, arpeggio, _ = make_generators()
    gone = ending.stream("cue/melody", melody)
    kept = staying.stream("cue/arpeggio", arpeggio)
    ending.submit(gone, request(PARTS[0], 0), deadline_frame=0)
    ending.submit(gone, request(PARTS[0], 1), deadline_frame=1)
    tickets = [staying.submit(kept, request(PARTS[1], bar), deadline_frame=bar) for bar in range(BARS)]
    for _ in range(3):
        scheduler.run_round()  # both bar 0s are being written together
    pool = melody._pool
    assert pool is not None and pool.free_slots == 0
    ending.close()
    run_until_idle(scheduler)
    assert [notes_of(staying.take(ticket, 0)) for ticket in tickets] == expected[1]
    assert pool.free_slots == 2  # the ended part's slots are free for another
    assert scheduler.counters["withdrawn_requests"] == 1
    # A part of a new session takes the freed slots and writes as it would alone.
    newcomer = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: frame)
    bass = newcomer.stream("cue/bass", make_generators()[2])
    new_tickets = [newcomer.submit(bass, request(PARTS[2], bar), deadline_frame=bar) for bar in range(BARS)]
    run_until_idle(scheduler)
    assert [notes_of(newcomer.take(ticket, 0)) for ticket in new_tickets] == expected[2]
    assert pool.free_slots == 0 and len(batcher._pools[id(melody.decoder)]) == 1


def test_a_failing_part_in_a_batch_fails_alone():
    batcher = BarBatcher()
    scheduler = GenerationScheduler(clock=FakeClock(0.0), batcher=batcher, threaded=False)
    bad_session = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: frame)
    good_session = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: frame)
    melody, arpeggio, _ = make_generators()
    bad = bad_session.stream("cue/melody", melody)
    good = good_session.stream("cue/arpeggio", arpeggio)
    sample, calls = melody._sample, []

    def failing_sample(*args):  # the melody fails in the middle of its first bar, mid-batch
        calls.append(1)
        if len(calls) == 3:  # the third token: after two batched steps, inside any first note
            raise FloatingPointError("logits went NaN")
        return sample(*args)

    melody._sample = failing_sample
    bad_ticket = bad_session.submit(bad, request(PARTS[0], 0), deadline_frame=0)
    good_tickets = [good_session.submit(good, request(PARTS[1], bar), deadline_frame=bar) for bar in range(BARS)]
    run_until_idle(scheduler)
    played = bad_session.take(bad_ticket, 0)
    assert notes_of(played) == notes_of(RuleBasedGenerator().generate_bar(request(PARTS[0], 0)))  # the fallback
    assert bad_session.counters["generation_errors"] == 1 and "NaN" in str(bad_ticket.error)
    assert scheduler.counters["largest_batch_bars"] == 2
    assert [notes_of(good_session.take(ticket, 0)) for ticket in good_tickets] == alone()[1]


def test_two_realtime_sessions_on_the_batched_scheduler_each_replay_bit_for_bit(tmp_path, soundfont):
    """Two real-time sessions of the model generator share one scheduler that
    batches their bars. On a fake clock, the scheduler's rounds run on a
    thread of the test's, held while both sessions render a block: every
    request of a block is queued before any is written, so both sessions'
    first bars are written together, and each first bar, taken in the block
    that asks for it, misses. Each session's recording (its inputs, its
    misses) replays offline, one bar at a time, to the very same audio."""
    from adaptive.cue import load_bank
    from adaptive.realtime import RealtimeSession
    from adaptive.recording import Recording, load_recording_with_fallbacks, replay
    from adaptive.scene import SceneUpdate
    from adaptive.session import Session
    from app.generators import ModelBarBatcher, register_generators
    from tests.adaptive.test_generation import BANK, CALM_BAR_FRAMES, RATE

    register_generators()
    (tmp_path / "bank.toml").write_text(BANK)
    bank = load_bank(tmp_path / "bank.toml")
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    scheduler = GenerationScheduler(clock=clock, batcher=ModelBarBatcher(), threaded=False)
    go, stop = threading.Event(), threading.Event()

    def rounds() -> None:  # the scheduler's thread, held while ``go`` is clear
        while not stop.is_set():
            go.wait(0.05)
            if go.is_set() and not scheduler.run_round():
                time.sleep(0.001)

    thread = threading.Thread(target=rounds, daemon=True)
    thread.start()
    runners, audio = [], []
    for seed, cue in ((5, "calm"), (6, "dark")):
        worker = GenerationWorker(scheduler=scheduler)
        session = Session(bank, soundfont=soundfont, sample_rate_hz=RATE, seed=seed, generator="model",
                          generation=worker)
        recording = Recording.for_session(tmp_path / f"rec{seed}.jsonl", session, tmp_path / "bank.toml")
        runner = RealtimeSession(session, block_frames=512, lookahead_ms=40.0, clock=clock,
                                 sleep=lambda seconds: None, recording=recording)
        worker.time_of_frame = lambda frame, runner=runner: clock() - runner.server_time_seconds() + frame / RATE
        runner.submit(SceneUpdate(cue=cue, intensity=1.0))
        blocks: list[np.ndarray] = []
        runner.add_sink(lambda block, blocks=blocks: blocks.append(block.audio.copy()))
        runners.append(runner)
        audio.append(blocks)
    total = 3 * CALM_BAR_FRAMES
    try:
        while any(runner.frames_rendered < total for runner in runners):
            go.clear()
            time.sleep(0.002)  # a round under way finishes
            for runner in runners:
                while runner.frames_rendered < total and runner.run_once() == 0.0:
                    pass
            go.set()
            deadline = time.monotonic() + 30
            while not all(runner.session.generation.idle() for runner in runners) and time.monotonic() < deadline:
                time.sleep(0.002)
            now[0] += 512 / RATE
    finally:
        stop.set()
        thread.join(5)
    for runner in runners:
        runner.stop()
    served = [np.concatenate(blocks) for blocks in audio]
    counters = [dict(runner.session.generation.counters) for runner in runners]
    for runner in runners:
        runner.session.close()
    assert scheduler.counters["largest_batch_bars"] >= 2  # the sessions' bars were written together
    for (seed, expected), counted in zip(zip((5, 6), served), counters):
        _, _, fallbacks, _ = load_recording_with_fallbacks(tmp_path / f"rec{seed}.jsonl")
        assert counted["generated_bars"] >= 2 and counted["generation_misses"] == len(fallbacks) >= 1
        assert all(fallback.reason == "late" and fallback.bar_index == 0 for fallback in fallbacks)
        assert np.array_equal(replay(tmp_path / f"rec{seed}.jsonl", block_frames=1000)[:len(expected)], expected)
    assert not np.array_equal(served[0][:RATE], served[1][:RATE])


def resident_bytes(array: np.ndarray) -> int:
    """Bytes of ``array``'s pages resident in memory (Linux ``mincore(2)``)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    page = mmap.PAGESIZE
    start = array.ctypes.data // page * page
    length = array.ctypes.data + array.nbytes - start
    vector = (ctypes.c_ubyte * ((length + page - 1) // page))()
    assert libc.mincore(start, length, vector) == 0, ctypes.get_errno()
    return int(np.count_nonzero(np.frombuffer(vector, np.uint8) & 1)) * page


def test_a_cache_pool_holds_in_memory_only_the_pages_its_parts_wrote():
    """A pool the size the server's batcher makes (32 slots, 38 MB of keys):
    one part's bar in it makes resident the pages of the positions written,
    not the 2 MiB huge pages around them (which made most of a pool
    resident: 14 MB per session of the default bank)."""
    from models.batching import POOL_SLOTS
    from models.inference import CachePool

    generator = ModelPartGenerator()
    pool = CachePool(generator.decoder, POOL_SLOTS)
    assert pool.keys.nbytes > 16 * 2**20  # large enough for numpy to have asked for huge pages
    generator.use_pool(pool)
    generate_bars([(generator, request(PARTS[0], 0))])
    decoder = generator.decoder
    written = int(np.count_nonzero(pool.keys[0, 0, 0].any(axis=-1)))  # positions of slot 0's context
    assert written > 0
    row_bytes = decoder.head_dim * pool.keys.itemsize
    # Each (layer, row, head) holds its positions contiguously: at most one page more than they fill.
    bound = decoder.n_layer * 2 * decoder.n_head * ((written * row_bytes) // mmap.PAGESIZE + 2) * mmap.PAGESIZE
    assert resident_bytes(pool.keys) <= bound
    assert resident_bytes(pool.values) <= bound
