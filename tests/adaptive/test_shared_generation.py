"""One generation scheduler for many sessions (adaptive/generation.py,
docs/sessions.md): deadlines of different sessions compare on one clock, a
slow or failing part of one session does not make another miss, a session
that ends takes its queued requests with it, and a part's notes are the same
whoever else shares the thread. On fake clocks with the scheduler's rounds
run by the test (``threaded=False``), and once with its thread."""

from __future__ import annotations

import threading

import pytest

from adaptive.generation import GenerationMode, GenerationScheduler, GenerationWorker
from adaptive.generator import BarRequest, RuleBasedGenerator
from adaptive.harmony import Chord, Key
from adaptive.part import Part
from tests.helpers import FakeClock

RATE = 48_000


def request(bar_index: int, seed: int = 1, role: str = "melody") -> BarRequest:
    return BarRequest(bar_index=bar_index, key=Key.parse("C major"), chord=Chord.parse("C"), beats_per_bar=4,
                      bpm=120.0, valence=0.2, arousal=0.3, role=role, seed=seed)


class Logged:
    """A generator whose notes depend on every request it has had (as a
    model's context does): the rule-based bar transposed by how many bars it
    wrote before. Each call is logged (part, bar) in ``log``; it may advance
    a fake ``clock`` by ``seconds`` (a slow generator) or raise on ``fail_on_bar``."""

    name = "logged"

    def __init__(self, part: str, log: list, clock: FakeClock | None = None, seconds: float = 0.0,
                 fail_on_bar: int | None = None) -> None:
        self.part, self.log, self.clock, self.seconds, self.fail_on_bar = part, log, clock, seconds, fail_on_bar
        self.written = 0
        self.finished_at: dict[int, float] = {}  # bar index -> clock when written

    def generate_bar(self, request: BarRequest) -> Part:
        self.log.append((self.part, request.bar_index))
        if self.clock is not None:
            self.clock.advance(self.seconds)
            self.finished_at[request.bar_index] = self.clock()
        if request.bar_index == self.fail_on_bar:
            raise RuntimeError("out of ideas")
        self.written += 1
        return RuleBasedGenerator().generate_bar(request).transposed(self.written % 12)


def started_at(start_s: float):
    """A session's frame -> scheduler-clock conversion: its frame 0 plays at ``start_s``."""
    return lambda frame: start_s + frame / RATE


def run_until_idle(scheduler: GenerationScheduler, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not scheduler.run_round():
            return
    raise AssertionError("the scheduler never ran out of work")


def pitches(part: Part) -> list[int]:
    return part.pitch.tolist()


def test_deadlines_of_sessions_started_at_different_times_are_ordered_on_one_clock():
    clock, log = FakeClock(0.0), []
    scheduler = GenerationScheduler(clock=clock, threaded=False)
    # Session "early" started at t = 90 s, "late" at t = 100 s: frame numbers of the
    # two do not compare, the times they play at do.
    early = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(90.0))
    late = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(100.0))
    late_part = late.stream("late/melody", Logged("late", log))
    early_part = early.stream("early/melody", Logged("early", log))
    late_ticket = late.submit(late_part, request(0), deadline_frame=5 * RATE)  # plays at 105 s
    early_ticket = early.submit(early_part, request(0), deadline_frame=12 * RATE)  # plays at 102 s
    assert (early_ticket.deadline_s, late_ticket.deadline_s) == (102.0, 105.0)
    assert early_ticket.deadline_frame == 12 * RATE  # the frame is kept too
    run_until_idle(scheduler)
    assert log == [("early", 0), ("late", 0)]  # by frame number it would have been the other way


def test_a_sessions_requests_give_the_same_notes_shared_or_alone():
    def alone(seed: int) -> list[list[int]]:
        worker = GenerationWorker(GenerationMode.WAIT)
        part = worker.stream("cue/melody", Logged("x", []))
        tickets = [worker.submit(part, request(bar, seed), deadline_frame=bar * RATE) for bar in range(6)]
        notes = [pitches(worker.take(ticket, 0)) for ticket in tickets]
        worker.close()
        return notes

    clock = FakeClock(0.0)
    scheduler = GenerationScheduler(clock=clock, threaded=False)
    workers = [GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(start))
               for start in (0.0, 0.7)]
    parts = [worker.stream("cue/melody", Logged(str(i), [])) for i, worker in enumerate(workers)]
    tickets: list[list] = [[], []]
    for bar in range(6):  # interleaved, as two sessions' render threads would ask
        for i, (worker, part) in enumerate(zip(workers, parts)):
            tickets[i].append(worker.submit(part, request(bar, seed=10 + i), deadline_frame=bar * RATE))
        scheduler.run_round()
    run_until_idle(scheduler)
    shared = [[pitches(worker.take(ticket, 0)) for ticket in session] for worker, session in zip(workers, tickets)]
    assert shared == [alone(10), alone(11)]
    assert shared[0] != shared[1]
    assert all(worker.counters["generation_misses"] == 0 for worker in workers)


def test_a_slow_session_misses_its_own_bars_not_the_other_sessions():
    """Session "slow" has two parts that each take 0.6 of a bar to write
    (1.2 bars of work per bar: it cannot keep up); session "quick" has one
    taking 0.05. Registered first, the slow one would win every tie of
    deadlines; its bars that will miss anyway run after those that can
    still be ready, so the quick session misses none."""
    bar_s = 1.0
    clock, log = FakeClock(0.0), []
    scheduler = GenerationScheduler(clock=clock, threaded=False)

    def on_time(ticket) -> bool:  # ready by its downbeat on the fake clock
        generator = ticket.stream.generator
        finished = generator.finished_at.get(ticket.request.bar_index)
        return ticket.done.is_set() and finished is not None and finished <= ticket.deadline_s

    slow = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(2 * bar_s),
                            deadline_policy=on_time)
    quick = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(2 * bar_s),
                             deadline_policy=on_time)
    parts = [(slow, slow.stream("slow/a", Logged("slow/a", log, clock, 0.6 * bar_s))),
             (slow, slow.stream("slow/b", Logged("slow/b", log, clock, 0.6 * bar_s))),
             (quick, quick.stream("quick/a", Logged("quick/a", log, clock, 0.05 * bar_s)))]
    frames_per_bar = int(bar_s * RATE)
    tickets = {}
    for worker, part in parts:  # bars 0 and 1 asked for ahead, as a generated layer does
        for bar in (0, 1):
            tickets[part.name, bar] = worker.submit(part, request(bar), deadline_frame=bar * frames_per_bar)
    bars = 20
    for bar in range(bars):
        downbeat_s = 2 * bar_s + bar * bar_s
        while clock() < downbeat_s and scheduler.run_round():
            pass
        clock.now = max(clock(), downbeat_s)
        for worker, part in parts:
            worker.take(tickets[part.name, bar], bar * frames_per_bar)
            tickets[part.name, bar + 2] = worker.submit(part, request(bar + 2), deadline_frame=(bar + 2) * frames_per_bar)
    assert quick.counters["generation_misses"] == 0
    assert quick.counters["generated_bars"] == bars
    assert slow.counters["generation_misses"] >= 5  # it could not keep up
    # Nothing was skipped: each part wrote its bars in order.
    for _, part in parts:
        written = [bar for name, bar in log if name == part.name]
        assert written == list(range(len(written)))


def test_a_failing_generator_gives_its_session_the_fallback_and_the_other_plays_on(caplog):
    clock, log = FakeClock(0.0), []
    scheduler = GenerationScheduler(clock=clock, threaded=False)
    failing = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
    fine = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
    bad = failing.stream("a/melody", Logged("a", log, fail_on_bar=1))
    good = fine.stream("b/melody", Logged("b", log))
    bad_tickets = [failing.submit(bad, request(bar), deadline_frame=bar * RATE) for bar in range(3)]
    good_tickets = [fine.submit(good, request(bar), deadline_frame=bar * RATE) for bar in range(3)]
    run_until_idle(scheduler)
    for bar, ticket in enumerate(bad_tickets):
        played = failing.take(ticket, bar * RATE)
        if bar == 1:
            assert pitches(played) == pitches(RuleBasedGenerator().generate_bar(request(1)))  # the fallback
    assert [fine.take(ticket, 0) is ticket.part for ticket in good_tickets] == [True] * 3
    assert failing.counters == {"generated_bars": 2, "generation_misses": 1, "generation_errors": 1}
    assert fine.counters == {"generated_bars": 3, "generation_misses": 0, "generation_errors": 0}
    [fallback] = failing.drain_fallbacks()
    assert (fallback.part, fallback.request, fallback.reason) == ("a/melody", 1, "error")
    assert fine.drain_fallbacks() == []


def test_a_session_that_ends_takes_its_queued_requests_with_it():
    clock, log = FakeClock(0.0), []
    scheduler = GenerationScheduler(clock=clock, threaded=False)
    ending = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
    staying = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
    gone = ending.stream("a/melody", Logged("a", log))
    kept = staying.stream("b/melody", Logged("b", log))
    for bar in range(3):
        ending.submit(gone, request(bar), deadline_frame=bar * RATE)  # earlier deadlines than b's
    ticket = staying.submit(kept, request(0), deadline_frame=10 * RATE)
    ending.close()
    assert scheduler.counters["withdrawn_requests"] == 3
    assert scheduler.streams == (kept,)
    late = ending.submit(gone, request(3), deadline_frame=0)  # after the end: not queued
    run_until_idle(scheduler)
    assert log == [("b", 0)]
    assert ticket.done.is_set() and not late.done.is_set()
    assert staying.take(ticket, 0) is ticket.part


def generation_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "adaptive-generation"}


def test_one_thread_serves_every_session_and_stops_with_the_last():
    before = generation_threads()  # other tests' sessions may not have been closed
    scheduler = GenerationScheduler()
    gate = threading.Event()

    class Gated(Logged):
        def generate_bar(self, request):
            gate.wait(10)
            return super().generate_bar(request)

    log: list = []
    workers = [GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
               for _ in range(8)]
    tickets = []
    for i, worker in enumerate(workers):
        part = worker.stream(f"s{i}/melody", Gated(f"s{i}", log))
        tickets.append(worker.submit(part, request(0, seed=i), deadline_frame=RATE))
    threads = list(generation_threads() - before)
    assert len(threads) == 1 and scheduler.thread_alive()  # one for 8 sessions
    gate.set()
    assert all(ticket.done.wait(10) for ticket in tickets)
    for worker in workers:
        worker.close()
    assert not scheduler.thread_alive()
    assert not threads[0].is_alive()


def test_scheduler_settings_out_of_range_are_refused_naming_what_is_allowed():
    with pytest.raises(ValueError, match=r"horizon_s .*allowed: 0..60"):
        GenerationScheduler(horizon_s=-1.0)
    with pytest.raises(ValueError, match=r"max_batch_bars .*allowed: 1..1024"):
        GenerationScheduler(max_batch_bars=0)


class StepBar:
    """A bar of :class:`StepBatcher`: ``steps`` decoding steps to go."""

    def __init__(self, generator, request, steps: int) -> None:
        self.generator, self.request, self.left = generator, request, steps
        self.finished, self.part, self.error = False, None, None


class StepBatcher:
    """A batcher standing in for the model's: every bar needs ``steps`` steps
    and a round costs ``bar_step_s`` of the fake clock per bar in it (as the
    compiled step does on this project's machine: no cheaper per bar in a
    batch). Logs the bars of each round."""

    def __init__(self, clock: FakeClock, steps: int, bar_step_s: float) -> None:
        self.clock, self.steps, self.bar_step_s = clock, steps, bar_step_s
        self.rounds: list[list[str]] = []

    def admits(self, generator) -> bool:
        return isinstance(generator, Logged)

    def begin(self, generator, request):
        return StepBar(generator, request, self.steps)

    def step(self, bars) -> None:
        live = [bar for bar in bars if not bar.finished]
        self.clock.advance(self.bar_step_s * len(live))
        self.rounds.append([bar.generator.part for bar in live])
        for bar in live:
            bar.left -= 1
            if bar.left == 0:
                bar.finished, bar.part = True, RuleBasedGenerator().generate_bar(bar.request)

    def drop(self, bar) -> None:
        bar.finished = True

    def release(self, generator) -> None:
        pass


@pytest.mark.parametrize("b_due_s, batched", [(0.6, False), (2.0, True)])
def test_a_bar_joins_the_batch_only_while_every_nearer_deadline_is_still_met(b_due_s, batched):
    """A round costs as much per bar batched as alone: two bars of 30 steps
    at 10 ms a step take 0.6 s together, 0.3 s for the first one alone. Bar a,
    due at 0.5 s, would be late in a batch with b: b waits for it (then is
    on time itself, at 0.6 s). With b due at 2 s, b is stepped with a as
    soon as a's deadline leaves room (the scheduler keeps half of it spare)."""
    clock = FakeClock(0.0)
    batcher = StepBatcher(clock, steps=30, bar_step_s=0.01)
    scheduler = GenerationScheduler(clock=clock, batcher=batcher, threaded=False)
    scheduler.bar_step_s, scheduler.steps_per_bar = 0.01, 30.0  # as measured
    workers = [GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
               for _ in range(2)]
    a = workers[0].stream("s0/a", Logged("a", []))
    b = workers[1].stream("s1/b", Logged("b", []))
    ticket_a = workers[0].submit(a, request(0), deadline_frame=int(0.5 * RATE))
    ticket_b = workers[1].submit(b, request(0), deadline_frame=int(b_due_s * RATE))
    finished = {}
    while scheduler.run_round():
        for name, ticket in (("a", ticket_a), ("b", ticket_b)):
            if ticket.done.is_set():
                finished.setdefault(name, clock())
    assert (scheduler.counters["largest_batch_bars"] == 2) is batched
    assert finished["a"] <= 0.5 + 1e-9 and finished["b"] <= b_due_s + 1e-9  # both on time
    if not batched:
        assert batcher.rounds[:30] == [["a"]] * 30 and batcher.rounds[30:] == [["b"]] * 30


def test_the_thread_starts_again_for_a_session_made_after_the_last_one_ended():
    scheduler = GenerationScheduler()
    for round_number in range(3):
        worker = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=started_at(0.0))
        part = worker.stream(f"s{round_number}/melody", Logged("x", []))
        ticket = worker.submit(part, request(0), deadline_frame=0)
        assert ticket.done.wait(10) and ticket.part is not None
        assert scheduler.thread_alive()
        worker.close()
        assert not scheduler.thread_alive()
