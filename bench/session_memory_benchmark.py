#!/usr/bin/env python3
"""Memory per session: what an extra session holds, part by part (issue 14).

Run by hand (not in CI), from a source checkout::

    python bench/session_memory_benchmark.py                    # 4 sessions, each playing examples/emotion-walk.toml
    python bench/session_memory_benchmark.py --sessions 6 --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2

Everything runs in this one process, as a server's sessions do, and is read
from ``VmRSS`` (``/proc/self/status``): resident memory, what the machine
pays. Sessions are made as ``app.sessions.SessionHost`` makes them (the
server's bank, mapping, SoundFont and generator; ``generated_bridges`` on;
every session's generation worker on one shared ``GenerationScheduler`` with
the model's bar batcher), but rendered offline (the scheduler waits for every
bar, so each session generates the same bars whatever the machine's load),
each through the whole of ``examples/emotion-walk.toml`` (80 s: six emotions,
so every cue plays, with bridges and generated bars).

Measured:

* **per extra session**: (RSS after N sessions made and played - RSS after
  the first) / (N - 1); the first session also loads what every session
  shares (the SoundFont, the model, the cache pool), so it is left out; for
  each session, what it added when made and while playing, and where
  (``/proc/self/smaps``: the main thread's malloc heap, other anonymous
  memory, files and shared memory);
* **the parts of one session**: its FluidSynth synthesizers (how many it
  makes, times the resident memory of one with the session's settings,
  measured in a fresh subprocess at 1, 16 and 64 voices, so the cost of a
  voice shows); its stems (their bytes, and the copies an extra session
  adds: none when shared); its generated parts' KV caches (the pages of the
  shared cache pool resident, ``mincore(2)``, over the sessions); the
  Python objects of one more session (``tracemalloc``, numpy arrays
  included); the rest is what the rows do not explain.

Memory does not depend on the CPU's load, so this may run on a busy machine;
the figures are one run's (malloc's reuse of freed memory moves a single
session's RSS by a few MB either way, so the per-session figure is a mean).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)  # run from a checkout without installing

TIMELINE = REPO / "examples" / "emotion-walk.toml"
SAMPLE_RATE_HZ = 48_000
BLOCK_FRAMES = 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """This process's resident memory (``VmRSS``), MB (10^6 bytes)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_by_mapping_mb() -> dict[str, float]:
    """Resident MB by kind of mapping (``/proc/self/smaps``): ``heap`` (the
    main thread's malloc heap: FluidSynth's synthesizers, Python's objects),
    ``anonymous`` (other threads' malloc arenas, large blocks: numpy arrays,
    the cache pool), ``files`` (libraries, shared memory)."""
    kinds = {"heap": 0, "anonymous": 0, "files": 0}
    kind = "files"
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                name = fields[5] if len(fields) > 5 else ""
                kind = "heap" if name == "[heap]" else "anonymous" if name == "" else "files"
            elif fields[0] == "Rss:":
                kinds[kind] += int(fields[1])
    return {name: kb * 1024 / 1e6 for name, kb in kinds.items()}


class Counting:
    """Counts the synthesizers made while it is installed (wraps ``Synth.__init__``)."""

    def __init__(self) -> None:
        import adaptive.synth

        self.made = 0
        self._original = adaptive.synth.Synth.__init__
        counter = self

        def counting_init(synth, *args, **kwargs):
            counter.made += 1
            counter._original(synth, *args, **kwargs)

        adaptive.synth.Synth.__init__ = counting_init


def play(session, inputs, end_frame: int) -> None:
    """Render ``session`` to ``end_frame`` in blocks, submitting each stamped input at its frame."""
    pending = list(inputs)
    while session.frame < end_frame:
        while pending and pending[0][0] <= session.frame:
            frame, item = pending.pop(0)
            session.submit(frame, item)
        n = min(BLOCK_FRAMES, end_frame - session.frame)
        if pending:
            n = min(n, max(1, pending[0][0] - session.frame))
        session.render(n)


def resident_bytes(array) -> int:
    """Bytes of ``array``'s pages resident in memory (``mincore(2)``): an
    array allocated zeroed costs nothing until its pages are written."""
    import ctypes

    import numpy as np

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    start = array.ctypes.data // PAGE_BYTES * PAGE_BYTES
    length = array.ctypes.data + array.nbytes - start
    pages = (length + PAGE_BYTES - 1) // PAGE_BYTES
    vector = (ctypes.c_ubyte * pages)()
    if libc.mincore(start, length, vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return int(np.count_nonzero(np.frombuffer(vector, np.uint8) & 1)) * PAGE_BYTES


def synth_costs_kb(soundfont: Path, voice_counts=(1, 16, 64), count: int = 30) -> dict[int, float]:
    """Resident kB per FluidSynth synthesizer (:class:`adaptive.synth.Synth`,
    the session's settings) at each of ``voice_counts`` voices, in a fresh
    subprocess (so no memory freed earlier is reused): ``count`` synthesizers
    each, all kept alive, each having rendered a chord; the SoundFont loaded
    first, as every session shares it."""
    import json
    import subprocess

    command = [sys.executable, str(Path(__file__).resolve()), "--synths-only", "--soundfont", str(soundfont),
               "--voices", *map(str, voice_counts), "--count", str(count)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return {int(voices): kb for voices, kb in json.loads(result.stdout.splitlines()[-1]).items()}


def _synths_only(soundfont: Path, voice_counts: list[int], count: int) -> None:
    import json

    import numpy as np

    from adaptive.synth import Synth

    Synth(soundfont, SAMPLE_RATE_HZ)  # loads the SoundFont, shared by all below
    scratch = np.zeros((BLOCK_FRAMES, 2), np.float32)
    kept, costs = [], {}
    for voices in voice_counts:
        gc.collect()
        before = rss_mb()
        made = [Synth(soundfont, SAMPLE_RATE_HZ, 0, False, voices) for _ in range(count)]
        for synth in made:
            for pitch in (60, 64, 67):
                synth.note_on(pitch, 100)
            synth.render_into(scratch)
            for pitch in (60, 64, 67):
                synth.note_off(pitch)
            synth.render_into(scratch)
        costs[voices] = (rss_mb() - before) * 1000 / count
        kept.append(made)
    print(json.dumps(costs))


def pool_step_speed(rounds: int = 10, rows: int = 16) -> None:
    """Thread CPU of one compiled decoding step of ``rows`` rows at positions
    100-199 of a 32-slot cache pool, its arrays from ``np.zeros`` (numpy asks
    for huge pages) or from :func:`models.inference.zeros_in_small_pages`
    (base pages), alternating, a fresh pool each round: best and median
    over ``rounds``."""
    import numpy as np

    from models.batching import POOL_SLOTS
    from models.generate import ModelPartGenerator
    from models.inference import zeros_in_small_pages

    decoder = ModelPartGenerator().decoder
    shape = (decoder.n_layer, POOL_SLOTS, decoder.n_head, decoder.block_size, decoder.head_dim)
    ids = np.random.default_rng(0).integers(0, 100, rows).astype(np.int64)
    slots = np.arange(rows, dtype=np.int64)
    makers = {"np.zeros (huge pages)": lambda: np.zeros(shape, np.float32),
              "zeros_in_small_pages (base pages)": lambda: zeros_in_small_pages(shape)}
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            keys, values = make(), make()
            spent = 0.0
            for position in range(200):
                started = time.thread_time()
                decoder.step_rows(ids, np.full(rows, position, np.int64), slots, keys, values)
                if position >= 100:
                    spent += time.thread_time() - started
            times[name].append(spent / 100 * 1000)
    print(f"| cache pool's arrays | ms a step ({rows} rows, positions 100-199), best | median |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.2f} | {sorted(values)[len(values) // 2]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="sessions made and played (>= 2)")
    parser.add_argument("--soundfont", default=None, help="default: the server's choice")
    parser.add_argument("--generator", default=None, help="default: the server's (the model)")
    parser.add_argument("--pool-step", action="store_true",
                        help="only time a decoding step with the cache pool in huge pages and in base pages")
    parser.add_argument("--synths-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--voices", type=int, nargs="+", default=[1, 16, 64], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=30, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.synths_only:
        _synths_only(Path(args.soundfont), args.voices, args.count)
        return
    if args.pool_step:
        pool_step_speed()
        return
    if args.sessions < 2:
        parser.error("--sessions must be at least 2")

    counting = Counting()
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.generation import GenerationScheduler, GenerationWorker
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from adaptive.session import Session
    from adaptive.synth import DEFAULT_MAX_VOICES, choose_soundfont
    from adaptive.timeline import load_timeline
    from adaptive.voice import StemVoice
    from app.generators import ModelBarBatcher, register_generators
    from server_benchmark import machine

    register_generators()
    bank = load_bank(DEFAULT_BANK)
    mapping = load_mapping(DEFAULT_MAPPING, bank)
    timeline = load_timeline(TIMELINE, bank, mapping)
    inputs = [(round(seconds * SAMPLE_RATE_HZ), item) for seconds, item in timeline.inputs()]
    end_frame = round(timeline.duration_seconds * SAMPLE_RATE_HZ)
    soundfont = choose_soundfont(args.soundfont).path
    batcher = ModelBarBatcher()
    scheduler = GenerationScheduler(batcher=batcher)

    def make(seed: int) -> Session:
        return Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=seed, max_block_frames=4096,
                       generator=args.generator, mapping=mapping, generated_bridges=True,
                       generation=GenerationWorker(scheduler=scheduler))

    info = machine()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {info['cpu']}, {info['cores']} cores; "
          f"load average {os.getloadavg()[0]:.1f}; SoundFont {soundfont.name}; "
          f"{args.sessions} sessions, each playing {TIMELINE.name} ({timeline.duration_seconds:g} s)")
    gc.collect()
    rss_start = rss_mb()
    sessions, rows = [], []
    for index in range(args.sessions):
        made_before, before, mapped_before = counting.made, rss_mb(), rss_by_mapping_mb()
        session = make(index)
        gc.collect()
        built = rss_mb()
        play(session, inputs, end_frame)
        gc.collect()
        played, mapped = rss_mb(), rss_by_mapping_mb()
        sessions.append(session)
        rows.append((built - before, played - built, *(mapped[kind] - mapped_before[kind] for kind in mapped),
                     counting.made - made_before, session.generation.counters["generated_bars"]))
    rss_all = rss_mb()
    print("\n| session | RSS added when made | while playing | of both: main heap | other anonymous memory | "
          "files and shared memory | synthesizers | generated bars |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, (made, playing, heap, anonymous, files, synths, bars) in enumerate(rows):
        print(f"| {index + 1} | {made:.1f} MB | {playing:.1f} MB | {heap:.1f} MB | {anonymous:.1f} MB | "
              f"{files:.1f} MB | {synths} | {bars} |")
    first_total = rows[0][0] + rows[0][1]
    per_extra = (rss_all - rss_start - first_total) / (args.sessions - 1)
    print(f"\nprocess before the first session: {rss_start:.0f} MB; after {args.sessions}: {rss_all:.0f} MB; "
          f"**per extra session: {per_extra:.1f} MB** (against the first)")

    # ---- the parts of one session
    session = sessions[-1]
    synths_per_session = rows[-1][5]
    stems = [layer.voice.audio for player in session.stage.players.values() for layer in player.layers
             if isinstance(layer.voice, StemVoice)]
    stem_bytes = sum(audio.nbytes for audio in stems)
    distinct = {id(layer.voice.audio): layer.voice.audio.nbytes for s in sessions
                for player in s.stage.players.values() for layer in player.layers
                if isinstance(layer.voice, StemVoice)}
    stems_per_extra_mb = (sum(distinct.values()) - stem_bytes) / 1e6 / (args.sessions - 1)
    copies_per_extra = stems_per_extra_mb * 1e6 / stem_bytes if stem_bytes else 0.0

    inner = batcher._batcher  # models.batching.BarBatcher, once a model part was batched
    pools = [pool for pools in inner._pools.values() for pool in pools] if inner is not None else []
    slot_bytes = slots_used = pool_resident = 0
    for pool in pools:
        slot_bytes = pool.keys[:, :1].nbytes * 2  # keys and values of one slot
        slots_used += pool.keys.shape[1] - pool.free_slots
        pool_resident += resident_bytes(pool.keys) + resident_bytes(pool.values)

    def new_pool_bytes() -> int:
        """Bytes of cache pools made since ``pools`` was listed (address space, not resident)."""
        inner = batcher._batcher
        now = [pool for pools in inner._pools.values() for pool in pools] if inner is not None else []
        return sum(pool.keys.nbytes + pool.values.nbytes for pool in now if all(pool is not p for p in pools))

    gc.collect()
    tracemalloc.start()
    extra = make(args.sessions)
    gc.collect()
    python_build = (tracemalloc.get_traced_memory()[0] - new_pool_bytes()) / 1e6
    play(extra, inputs, end_frame)
    gc.collect()
    python_played = (tracemalloc.get_traced_memory()[0] - new_pool_bytes()) / 1e6  # a new pool is counted above
    tracemalloc.stop()
    for s in sessions + [extra]:
        s.close()

    per_synth_kb = synth_costs_kb(soundfont, (1, 16, DEFAULT_MAX_VOICES))
    per_voice_kb = (per_synth_kb[DEFAULT_MAX_VOICES] - per_synth_kb[1]) / (DEFAULT_MAX_VOICES - 1)
    parts = [
        (f"{synths_per_session} FluidSynth synthesizers", synths_per_session * per_synth_kb[DEFAULT_MAX_VOICES] / 1000,
         f"{per_synth_kb[DEFAULT_MAX_VOICES]:.0f} kB each at {DEFAULT_MAX_VOICES} voices, in a fresh process (mean of "
         f"30; {per_synth_kb[1]:.0f} kB at 1 voice, {per_synth_kb[16]:.0f} kB at 16: {per_voice_kb:.1f} kB a voice)"),
        (f"stems ({len(stems)})", stems_per_extra_mb,
         f"{stem_bytes / 1e6:.1f} MB of float32 a session; copies an extra session adds: {copies_per_extra:g}"),
        ("generated parts' KV caches", pool_resident / 1e6 / args.sessions,
         f"pages of the shared cache pool resident (mincore), over {args.sessions} sessions ({slots_used} slots taken,"
         f" {slot_bytes / 1e6:.2f} MB a slot if full)"),
        ("Python objects (numpy arrays, stems excepted)", python_played - stems_per_extra_mb,
         f"tracemalloc over one more session: {python_build:.1f} MB once made, {python_played:.1f} MB after playing, "
         f"its own stems included (the row above)"),
    ]
    print("\n| part of one session | MB | how measured |")
    print("|---|---:|---|")
    for name, mb, how in parts:
        print(f"| {name} | {mb:.1f} | {how} |")
    rest = per_extra - sum(mb for _, mb, _ in parts)
    print(f"| the rest | {rest:.1f} | per extra session less the rows above (malloc's own overheads, "
          f"pages touched while playing) |")
    print(f"| **per extra session** | **{per_extra:.1f}** | |")


if __name__ == "__main__":
    main()
