"""The generation worker: part generators run ahead of the music in one
background thread and hand finished bars over; the render step never waits in
real time (DESIGN.md, "Nothing on the audio path blocks").

* A **part** (a generated layer of a cue, the transition bridges, a generated
  stinger) owns a :class:`PartStream`: its own generator instance (a model
  generator keeps a KV cache per instance) and its own sequence of requests.
  A request is :meth:`submitted <GenerationWorker.submit>` from the thread that
  drives the session — a generated layer asks for bar ``k + bars_ahead`` as soon
  as bar ``k`` starts, with the emotion current at that moment — and gets a
  :class:`Ticket`.
* The scheduler's thread (``"adaptive-generation"``,
  :class:`GenerationScheduler`) runs the requests: **earliest deadline first
  across parts**, in **submission order within a part**, so each generator
  instance sees the same sequence of requests however fast it runs. Nothing
  is ever cancelled while its session lives: a bar that comes too late is
  still generated, so the generator's state (its KV cache) does not depend on
  timing. In the server **one scheduler serves every session** (one thread
  for N sessions): each session's deadlines are converted to the scheduler's
  clock so they compare, and the model's bars due within about a bar of each
  other are written together, one decoding step for all their rows (a
  :class:`BarBatcher`, ``models.batching``). Offline (render, replay) a
  session has a scheduler of its own.
* Each session has its own :class:`GenerationWorker`: its parts, its mode,
  its misses, fallbacks and counters.
* At the bar's downbeat the session :meth:`takes <GenerationWorker.take>` the
  ticket. In :attr:`GenerationMode.REALTIME` a bar that is not ready is a
  **miss**: the caller plays the fallback (the rule-based generator's bar for
  the same request, cheap and deterministic) and the miss is counted and
  listed in :attr:`GenerationWorker.fallbacks`, which the real-time runner
  writes to the session recording. In :attr:`GenerationMode.WAIT` (offline
  rendering, replay) the take waits for the worker, so nothing misses — except
  the fallbacks a replayed recording names, which are forced.

A generator that raises is a miss too (reason ``"error"``): the worker logs it
(off the audio path), the fallback plays and ``generation_errors`` counts it.

Determinism: a part's requests are numbered per part (``request`` = 0, 1, 2, …
in submission order); a fallback is identified by ``(part, request)``. What a
part requests depends only on frames and inputs (not on block size or timing),
so the same numbering comes out of a real-time run and of its offline replay.
The contract with generators: an instance's output depends only on the
sequence of requests made to it (no global random state).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from adaptive.events import WireName
from adaptive.generator import BarRequest, PartGenerator, RuleBasedGenerator
from adaptive.part import Part

log = logging.getLogger("adaptive.generation")

NO_DEADLINE = float("inf")
"""Deadline of speculative work (bridges, stingers made before they are
needed): run when no part with a deadline is waiting."""

DEFAULT_WAIT_TIMEOUT_SECONDS = 60.0
"""In :attr:`GenerationMode.WAIT`, how long a take waits for one bar before it
gives up and plays the fallback (a generator that hangs must not hang a render)."""


class GenerationMode(enum.Enum):
    """Whether a take may wait for the worker."""

    WAIT = "wait"  # offline: wait for every bar (no misses unless forced)
    REALTIME = "realtime"  # never wait: a bar not ready at its downbeat is a miss


class FallbackReason(WireName):
    """Why the fallback played a generated bar (the ``reason`` of a recording's
    ``generation_fallback`` line)."""

    LATE = "late"
    """Not ready at its deadline."""
    ERROR = "error"
    """The generator raised."""
    FORCED = "forced"
    """Named by a replayed recording."""


@dataclass(frozen=True)
class GenerationFallback:
    """A bar for which the fallback played instead of the generator's answer.

    Attributes:
        frame: session frame at which the decision was made (the bar's downbeat,
            or the frame a bridge or stinger started).
        part: the part's name (``"cue/layer"``, ``"bridge"``, ``"stinger/name"``).
        request: the request's number within its part (0-based).
        bar_index: the request's bar index.
        reason: why.
    """

    frame: int
    part: str
    request: int
    bar_index: int
    reason: FallbackReason


class Ticket:
    """A submitted request; filled in by the worker.

    Attributes:
        stream: the part it belongs to.
        number: its number within the part.
        request: what was asked.
        deadline_frame: session frame by which it is needed (``inf``: speculative).
        deadline_s: the same deadline on the scheduler's clock (monotonic
            seconds, through the session's :attr:`GenerationWorker.time_of_frame`),
            so that deadlines of different sessions compare; None when the
            session has no such conversion (a worker of its own, offline).
        part: the answer once done (None until then, or if the generator raised).
        error: the exception the generator raised, if it did.
    """

    __slots__ = ("stream", "number", "request", "deadline_frame", "deadline_s", "part", "error", "done")

    def __init__(self, stream: "PartStream", number: int, request: BarRequest, deadline_frame: float,
                 deadline_s: float | None = None) -> None:
        self.stream = stream
        self.number = number
        self.request = request
        self.deadline_frame = deadline_frame
        self.deadline_s = deadline_s
        self.part: Part | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class PartStream:
    """One part's generator instance and request sequence (see the module docstring).

    Args:
        name: the part's name (used in fallbacks, counters and logs).
        generator: this part's own generator instance.
        worker: the session's worker it belongs to (None: a stream made on its own, in tests).
    """

    def __init__(self, name: str, generator: PartGenerator, worker: "GenerationWorker | None" = None) -> None:
        self.name = name
        self.generator = generator
        self.worker = worker
        self.submitted = 0
        self.queue: deque[Ticket] = deque()  # submitted, not yet started (guarded by the scheduler's lock)
        self.busy = False
        """A bar of this part is being written (its next request waits: a part's requests run in order)."""
        self.withdrawn = False
        """Its session ended: its queued requests were dropped and none is accepted."""
        self.order = 0
        """Registration order in the scheduler (ties between equal deadlines go to the earlier part)."""
        self.last_bar_s = 0.0
        """How long (scheduler clock seconds) its last bar took, from start to finish."""


class BarBatcher(Protocol):
    """Writes bars of several part generators together (one decoding step for
    all their rows); :class:`models.batching.BarBatcher` is the one the server
    uses. The scheduler only calls it on its own thread.

    A *bar in flight* is whatever :meth:`begin` returns: it has the attributes
    ``finished`` (bool), ``part`` (:class:`Part` or None) and ``error``
    (an exception or None).
    """

    def admits(self, generator: PartGenerator) -> bool:
        """Whether ``generator``'s bars can be written in a batch."""
        ...

    def begin(self, generator: PartGenerator, request: BarRequest) -> Any:
        """Start writing ``request``'s bar (its prefill runs now); may finish
        (or fail) at once. Never raises for the generator's failure."""
        ...

    def step(self, bars: list[Any]) -> None:
        """One decoding step for every unfinished bar of ``bars`` together.
        Never raises for a generator's failure: that bar finishes with ``error``."""
        ...

    def drop(self, bar: Any) -> None:
        """Forget an unfinished bar (its session ended)."""
        ...

    def release(self, generator: PartGenerator) -> None:
        """``generator`` will not be used again (its session ended): free what it holds."""
        ...


DEFAULT_HORIZON_S = 2.0
"""Bars whose deadlines fall within this many seconds of the earliest one
waiting are written in the same batch (about a bar: 4 beats at 120 bpm).
Later ones wait: on a machine where a row of a batch costs about what a row
alone costs (docs/benchmarks.md, "Decoding in batches"), writing far-off bars
now would only slow the near ones."""

DEFAULT_MAX_BATCH_BARS = 32
"""At most this many bars written together (64 rows with guidance)."""

DEFAULT_STEPS_PER_BAR = 38.0
"""Decoding steps a bar takes until measured (38 counted while streaming 8
bars per role at arousal 0: docs/benchmarks.md, "Decoding in batches")."""

BATCH_TIME_SHARE = 0.5
"""A bar that can be on time is batched with others only if the batch
would finish it within this share of the time left to its deadline: the
estimate leaves out the prefills of bars joining meanwhile and the
machine's other work (measured: with the whole time left, a scheduler
twice overloaded missed more bars batched than one by one)."""

ESTIMATE_WEIGHT = 0.1
"""Weight of the newest measurement in the scheduler's moving averages
(a round's cost per bar, steps per bar)."""


class _Rank(enum.IntEnum):
    ON_TIME = 0  # can still be ready by its deadline
    HOPELESS = 1  # its deadline is past, or nearer than its part's last bar took: it will miss anyway
    SPECULATIVE = 2  # no deadline


class GenerationScheduler:
    """The thread that writes every session's bars (``"adaptive-generation"``):
    one per process in the server (:class:`app.sessions.SessionHost` makes
    it), one per session offline. Each session talks to it through its own
    :class:`GenerationWorker`, which keeps that session's mode, misses,
    fallbacks and counters.

    Order: **earliest deadline first across every session's parts** (each
    deadline on the scheduler's clock, :attr:`Ticket.deadline_s`), **in
    submission order within a part**. A request that will miss anyway (its
    deadline has passed, or is nearer than its part's previous bar took) is
    run after those that can still be ready, so a slow or overloaded part of
    one session does not make the others miss; requests without a deadline
    run last. Nothing is cancelled (a late bar is still written, so a
    generator's state does not depend on timing), except the requests of a
    session that ended (:meth:`withdraw`).

    Batching: with a ``batcher``, the bars of every generator it admits whose
    deadlines fall within ``horizon_s`` of the earliest are written together,
    one decoding step for all their rows per round (at most
    ``max_batch_bars``); a request that arrives meanwhile joins at the next
    round, a bar that finishes leaves. Each round steps the bars in flight
    in order (earliest deadline first, those that will miss anyway after),
    each only while every bar stepped that can be on time would still be,
    at the measured cost of a round per bar (:attr:`bar_step_s`) and steps
    per bar (:attr:`steps_per_bar`); the others wait (paused) for a later
    round. Where a batch costs per bar what bars one at a time cost (this
    project's machine), stepping bars with near deadlines together would
    make the nearest late; they are batched where there is slack, or when
    they will all miss anyway. A part whose generator the batcher
    does not admit (the rule-based one) is written whole, between rounds,
    when it comes first. Without a batcher every bar is written whole, one
    at a time.

    Determinism: the order across parts never changes what a part writes (a
    generator's output depends only on its own requests, and a batch gives
    each row what it would get alone: tests/models/test_batching.py).

    Args:
        clock: monotonic seconds (tests pass a fake one; the sessions'
            ``time_of_frame`` must read the same clock).
        batcher: writes admitted generators' bars together (None: none).
        horizon_s: see :data:`DEFAULT_HORIZON_S` (0..60 s).
        max_batch_bars: see :data:`DEFAULT_MAX_BATCH_BARS` (1..1024).
        threaded: False: no thread; the caller runs :meth:`run_round` (tests).

    Raises:
        ValueError: ``horizon_s`` or ``max_batch_bars`` out of range.

    The thread starts when a part is registered and stops when the last
    worker attached to it closes (it starts again for the next).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, batcher: BarBatcher | None = None,
                 horizon_s: float = DEFAULT_HORIZON_S, max_batch_bars: int = DEFAULT_MAX_BATCH_BARS,
                 threaded: bool = True) -> None:
        if not 0.0 <= horizon_s <= 60.0:
            raise ValueError(f"horizon_s {horizon_s} is out of range (allowed: 0..60 s)")
        if not 1 <= max_batch_bars <= 1024:
            raise ValueError(f"max_batch_bars {max_batch_bars} is out of range (allowed: 1..1024)")
        self.clock = clock
        self.batcher = batcher
        self.horizon_s = float(horizon_s)
        self.max_batch_bars = int(max_batch_bars)
        self.threaded = threaded
        self.counters: dict[str, int] = {"bars": 0, "batched_bars": 0, "rounds": 0, "rows_stepped": 0,
                                         "largest_batch_bars": 0, "withdrawn_requests": 0}
        """``bars`` written (whole or batched), ``batched_bars`` of them in
        batches; ``rounds``: batched decoding steps; ``rows_stepped``: bars
        stepped over all rounds (rows_stepped / rounds = the mean batch);
        ``largest_batch_bars``; ``withdrawn_requests``: queued requests
        dropped because their session ended."""
        self._streams: list[PartStream] = []
        self._workers = 0
        self._orders = 0
        self._in_flight: list[_InFlight] = []
        self.bar_step_s: float | None = None
        """Measured seconds a batched round costs per bar in it (a moving
        average; None until the first round)."""
        self.steps_per_bar = DEFAULT_STEPS_PER_BAR
        """Measured decoding steps a bar takes (a moving average)."""
        self._to_release: list[PartGenerator] = []
        self._batchable: dict[int, bool] = {}  # id(generator) -> batcher.admits(generator)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped_thread: threading.Thread | None = None
        self._stop = False
        self._running: Ticket | None = None

    # ------------------------------------------------------------ sessions and parts
    def attach(self) -> None:
        """A session's worker starts using the scheduler."""
        with self._lock:
            self._workers += 1

    def detach(self, streams: Iterable[PartStream], timeout: float = 5.0) -> None:
        """A session's worker closes: its parts are withdrawn (:meth:`withdraw`);
        when no worker is left the thread stops (joined up to ``timeout`` s)."""
        self.withdraw(streams)
        with self._wake:
            self._workers -= 1
            thread = None
            if self._workers <= 0 and self._thread is not None:
                self._stop = True
                thread, self._thread = self._thread, None
                self._stopped_thread = thread
                self._wake.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def register(self, stream: PartStream) -> None:
        """Add a part (set-up time); starts the thread if it is not running."""
        with self._lock:
            self._orders += 1
            stream.order = self._orders
            self._streams.append(stream)
            if self.threaded and self._thread is None:
                self._stop = False
                # A thread stopped by the last worker's close may still be finishing a round: the new one waits for it.
                self._thread = threading.Thread(target=self._run, args=(self._stopped_thread,),
                                                name="adaptive-generation", daemon=True)
                self._stopped_thread = None
                self._thread.start()

    def withdraw(self, streams: Iterable[PartStream]) -> None:
        """Drop ``streams`` (a session ended): their queued requests are
        dropped (counted ``withdrawn_requests``), a bar of theirs in a batch
        leaves it at the next round, a bar written whole finishes first; their
        generators are released (on the scheduler's thread)."""
        gone = {id(stream) for stream in streams}
        if not gone:
            return
        with self._wake:
            for stream in self._streams:
                if id(stream) in gone:
                    stream.withdrawn = True
                    self.counters["withdrawn_requests"] += len(stream.queue)
                    stream.queue.clear()
                    self._to_release.append(stream.generator)
            self._streams = [stream for stream in self._streams if id(stream) not in gone]
            self._wake.notify()

    def submit(self, ticket: Ticket) -> None:
        """Queue ``ticket`` (never blocks on generation: a lock held for an append).

        Raises:
            RuntimeError: its part was withdrawn (its session ended).
        """
        with self._wake:
            if ticket.stream.withdrawn:
                raise RuntimeError(f"part {ticket.stream.name} was withdrawn: its session ended")
            ticket.stream.queue.append(ticket)
            self._wake.notify()

    @property
    def streams(self) -> tuple[PartStream, ...]:
        """Every registered part of every session, in registration order."""
        with self._lock:
            return tuple(self._streams)

    def idle(self, streams: Iterable[PartStream] | None = None) -> bool:
        """Whether every request of ``streams`` (default: of every part) has been run."""
        with self._lock:
            chosen = self._streams if streams is None else list(streams)
            return not any(stream.queue or stream.busy for stream in chosen)

    def thread_alive(self) -> bool:
        """Whether the scheduler's thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # ------------------------------------------------------------ choosing
    def _rank(self, ticket: Ticket, now: float) -> tuple[int, float, int]:
        """Order key: rank, deadline, the part's registration order."""
        deadline = ticket.deadline_s if ticket.deadline_s is not None else ticket.deadline_frame
        if deadline == NO_DEADLINE:
            return _Rank.SPECULATIVE, deadline, ticket.stream.order
        if ticket.deadline_s is not None and ticket.deadline_s - now < ticket.stream.last_bar_s:
            return _Rank.HOPELESS, deadline, ticket.stream.order
        return _Rank.ON_TIME, deadline, ticket.stream.order

    def _is_batchable(self, generator: PartGenerator) -> bool:
        if self.batcher is None:
            return False
        known = self._batchable.get(id(generator))
        if known is None:
            known = self._batchable[id(generator)] = bool(self.batcher.admits(generator))
        return known

    def _batch_room(self, ticket: Ticket, rank: int, steps: int, now: float) -> float:
        """How many bars a batch holding this bar (``steps`` decoding steps
        done) may have for it to be ready by its deadline, with
        :data:`BATCH_TIME_SHARE` of the time left: a round costs
        :attr:`bar_step_s` per bar in it, a bar needs :attr:`steps_per_bar`
        steps. Unbounded for a bar that will miss anyway or has no deadline,
        or before anything was measured. On this project's machine a round
        costs about the same per bar as bars one at a time
        (docs/benchmarks.md), so a batch finishes its bars later than one at
        a time would finish the first (docs/sessions.md)."""
        if self.bar_step_s is None or self.bar_step_s <= 0.0 or rank != _Rank.ON_TIME or ticket.deadline_s is None:
            return NO_DEADLINE
        return BATCH_TIME_SHARE * (ticket.deadline_s - now) / (max(self.steps_per_bar - steps, 1.0) * self.bar_step_s)

    def _choose(self, now: float) -> tuple[Ticket | None, list[Ticket]]:
        """With the lock held: the request to write whole now (or None) and
        the requests that join the batch this round; both taken off their
        queues and their parts marked busy."""
        heads = sorted((stream.queue[0] for stream in self._streams if stream.queue and not stream.busy),
                       key=lambda ticket: self._rank(ticket, now))
        if not heads:
            return None, []
        first = heads[0]
        if not self._is_batchable(first.stream.generator):
            first.stream.queue.popleft()
            first.stream.busy = True
            return first, []
        ranks = [self._rank(entry.ticket, now) for entry in self._in_flight] + [self._rank(t, now) for t in heads]
        on_time = [key[1] for key in ranks if key[0] == _Rank.ON_TIME]
        with_deadline = any(key[0] != _Rank.SPECULATIVE for key in ranks)
        horizon_end = min(on_time) + self.horizon_s if on_time else NO_DEADLINE
        in_flight = len(self._in_flight)
        joining: list[Ticket] = []
        for ticket in heads:
            rank, deadline, _ = self._rank(ticket, now)
            # Bars in flight that are paused (below) must not keep a bar that can be on time out.
            if in_flight >= (2 * self.max_batch_bars if rank == _Rank.ON_TIME else self.max_batch_bars):
                continue
            if not self._is_batchable(ticket.stream.generator):
                continue  # written whole when it comes first
            if rank == _Rank.ON_TIME and deadline > horizon_end:
                continue  # later: it would only slow the nearer bars
            if rank == _Rank.SPECULATIVE and with_deadline:
                continue  # only when nothing with a deadline waits
            ticket.stream.queue.popleft()
            ticket.stream.busy = True
            joining.append(ticket)
            in_flight += 1
        return None, joining

    def _stepped(self, now: float) -> list["_InFlight"]:
        """The bars in flight stepped this round: in order (earliest
        deadline first, those that will miss anyway after), each while
        every bar chosen that can be on time still would be
        (:meth:`_batch_room`), at most ``max_batch_bars``; the others wait
        for a later round (paused, their state kept)."""
        ranked = sorted(((self._rank(entry.ticket, now), entry) for entry in self._in_flight), key=lambda x: x[0])
        chosen: list[_InFlight] = []
        room = NO_DEADLINE  # the most bars the chosen ones allow
        for (rank, _, _), entry in ranked:
            if len(chosen) >= self.max_batch_bars:
                break
            own = self._batch_room(entry.ticket, rank, entry.steps, now)
            if chosen and len(chosen) + 1 > min(room, own):
                continue
            chosen.append(entry)
            room = min(room, own)
        return chosen

    # ------------------------------------------------------------ running
    def run_round(self) -> bool:
        """One round: release what withdrawn parts held, then either write one
        bar whole (the first in order, when the batcher does not take its
        generator) or start the bars that join the batch and step every bar
        in it once. Returns whether there was anything to do. The thread
        calls it in a loop; tests call it themselves (``threaded=False``)."""
        batcher = self.batcher
        with self._lock:
            to_release, self._to_release = self._to_release, []
            now = self.clock()
            whole, joining = self._choose(now)
            self._running = whole
        if batcher is not None:
            # Bars of withdrawn parts leave the batch; their generators are released.
            kept = []
            for entry in self._in_flight:
                if entry.ticket.stream.withdrawn:
                    batcher.drop(entry.bar)
                else:
                    kept.append(entry)
            self._in_flight = kept
            for generator in to_release:
                if self._batchable.pop(id(generator), False):
                    batcher.release(generator)
        else:
            for generator in to_release:
                self._batchable.pop(id(generator), None)
        if whole is not None:
            started = self.clock()
            try:
                whole.part = whole.stream.generator.generate_bar(whole.request)
            except Exception as error:  # a generator's failure: its session's fallback plays, the others go on
                whole.error = error
                self._log_failure(whole, error)
            self._finish(whole, started)
            return True
        if not joining and not self._in_flight:
            return False
        assert batcher is not None
        for ticket in joining:
            started = self.clock()
            bar = batcher.begin(ticket.stream.generator, ticket.request)
            entry = _InFlight(ticket, bar, self.clock() - started)
            if bar.finished:
                self._settle(entry)
            else:
                self._in_flight.append(entry)
        if self._in_flight:
            stepped = self._stepped(self.clock())
            round_started = self.clock()
            batcher.step([entry.bar for entry in stepped])
            round_s = self.clock() - round_started
            per_bar_s = round_s / len(stepped)
            self.bar_step_s = per_bar_s if self.bar_step_s is None else (
                self.bar_step_s + ESTIMATE_WEIGHT * (per_bar_s - self.bar_step_s))
            self.counters["rounds"] += 1
            self.counters["rows_stepped"] += len(stepped)
            self.counters["largest_batch_bars"] = max(self.counters["largest_batch_bars"], len(stepped))
            for entry in stepped:
                entry.steps += 1
                entry.busy_s += per_bar_s  # its share: what it would have cost alone, not the whole round
            still = []
            for entry in self._in_flight:
                if entry.bar.finished:
                    self._settle(entry)
                else:
                    still.append(entry)
            self._in_flight = still
        return True

    def _settle(self, entry: "_InFlight") -> None:
        ticket, bar = entry.ticket, entry.bar
        ticket.part, ticket.error = bar.part, bar.error
        if bar.error is not None:
            self._log_failure(ticket, bar.error)
        elif entry.steps:
            self.steps_per_bar += ESTIMATE_WEIGHT * (entry.steps - self.steps_per_bar)
        self.counters["batched_bars"] += 1
        self._finish(ticket, busy_s=entry.busy_s)

    def _finish(self, ticket: Ticket, started: float | None = None, busy_s: float | None = None) -> None:
        """``ticket`` is done; its part's :attr:`PartStream.last_bar_s` is
        ``busy_s`` (the rounds it was stepped in), or the time since ``started``."""
        if busy_s is None:
            busy_s = self.clock() - started if started is not None else 0.0
        ticket.stream.last_bar_s = max(0.0, busy_s)
        self.counters["bars"] += 1
        with self._lock:
            ticket.stream.busy = False
            self._running = None
        ticket.done.set()

    @staticmethod
    def _log_failure(ticket: Ticket, error: BaseException) -> None:
        log.error("generator %r of part %s failed on request %d (bar %d): %s: %s; the rule-based "
                  "fallback plays", getattr(ticket.stream.generator, "name", "?"), ticket.stream.name,
                  ticket.number, ticket.request.bar_index, type(error).__name__, error)

    def _run(self, previous: threading.Thread | None = None) -> None:
        if previous is not None:
            previous.join()
        me = threading.current_thread()
        while True:
            with self._wake:
                while not self._stop and self._thread is me and not self._in_flight and not self._to_release \
                        and not any(stream.queue and not stream.busy for stream in self._streams):
                    self._wake.wait()
                if self._stop or self._thread is not me:
                    break
            try:
                self.run_round()
            except Exception:  # a bug in the scheduler or a batcher: drop the batch, keep serving
                log.exception("the generation scheduler failed in a round; the bars in it play their fallbacks")
                for entry in self._in_flight:
                    entry.ticket.error = RuntimeError("the generation round failed")
                    self._finish(entry.ticket, busy_s=entry.busy_s)
                self._in_flight = []
        # Bars of ended sessions are dropped; any other (a session made while this thread
        # stopped) stays for the thread that follows, which waits for this one.
        kept = []
        for entry in self._in_flight:
            if entry.ticket.stream.withdrawn and self.batcher is not None:
                self.batcher.drop(entry.bar)
            elif not entry.ticket.stream.withdrawn:
                kept.append(entry)
        self._in_flight = kept


class _InFlight:
    """A bar in the scheduler's batch: its ticket, its bar in the batcher,
    the decoding steps it has had, and the seconds spent on it (its prefill
    and its share of each round it was stepped in: about what it would cost
    alone, so that a part is not judged slow for having shared its rounds)."""

    __slots__ = ("ticket", "bar", "steps", "busy_s")

    def __init__(self, ticket: Ticket, bar: Any, busy_s: float) -> None:
        self.ticket, self.bar, self.steps, self.busy_s = ticket, bar, 0, busy_s


class GenerationWorker:
    """A session's access to the generation scheduler: its parts, its mode,
    its misses and fallbacks (see the module docstring).

    Args:
        mode: :attr:`GenerationMode.WAIT` (offline) or :attr:`GenerationMode.REALTIME`.
        forced_fallbacks: ``(part, request)`` pairs that play the fallback
            whatever the generator answers (a replayed recording's misses).
        wait_timeout_seconds: see :data:`DEFAULT_WAIT_TIMEOUT_SECONDS`.
        deadline_policy: if given, decides at each take whether the ticket is
            on time (True) or late (False) instead of ``mode`` (it may wait for
            ``ticket.done``); tests use it to make misses happen exactly where
            they want, as a slow generator would in real time.
        scheduler: the process's shared :class:`GenerationScheduler` (the
            server's); None: a scheduler of its own, with its own thread and
            no batching (offline rendering, replay, a session on its own).
        time_of_frame: converts a session frame to the scheduler's clock
            (monotonic seconds at which that frame plays), so that deadlines
            of different sessions compare; may be set later (before the
            first request with a deadline). None: deadlines stay frames
            (right only when one session uses the scheduler).

    The scheduler's thread starts when the first part is registered
    (:meth:`stream`, at set-up time, not in the render step); :meth:`close`
    withdraws this session's parts.
    """

    def __init__(self, mode: GenerationMode = GenerationMode.WAIT,
                 forced_fallbacks: Iterable[tuple[str, int]] = (),
                 wait_timeout_seconds: float = DEFAULT_WAIT_TIMEOUT_SECONDS,
                 deadline_policy: Callable[[Ticket], bool] | None = None,
                 scheduler: GenerationScheduler | None = None,
                 time_of_frame: Callable[[float], float] | None = None) -> None:
        self.mode = mode
        self.deadline_policy = deadline_policy
        self.forced_fallbacks = frozenset((str(part), int(number)) for part, number in forced_fallbacks)
        self.wait_timeout_seconds = wait_timeout_seconds
        self.fallback_generator = RuleBasedGenerator()
        self.fallbacks: list[GenerationFallback] = []
        """Fallbacks decided since the last :meth:`drain_fallbacks` (render thread only)."""
        self.counters: dict[str, int] = {"generated_bars": 0, "generation_misses": 0, "generation_errors": 0}
        """``generated_bars``: bars taken from the generator; ``generation_misses``:
        bars that played the fallback (late, error or forced);
        ``generation_errors``: of those, bars whose generator raised."""
        self.shared = scheduler is not None
        """Whether the scheduler is shared with other sessions."""
        self.scheduler = scheduler if scheduler is not None else GenerationScheduler()
        self.time_of_frame = time_of_frame
        self._streams: list[PartStream] = []
        self._closed = False
        self.scheduler.attach()

    # ------------------------------------------------------------ parts
    def stream(self, name: str, generator: PartGenerator) -> PartStream:
        """Register a part with its own generator instance (set-up time).

        Raises:
            RuntimeError: the worker is closed.
        """
        if self._closed:
            raise RuntimeError("the generation worker is closed: its session ended")
        stream = PartStream(name, generator, self)
        self._streams.append(stream)
        self.scheduler.register(stream)
        return stream

    @property
    def streams(self) -> tuple[PartStream, ...]:
        """This session's parts, in registration order."""
        return tuple(self._streams)

    def _deadline_s(self, deadline_frame: float) -> float | None:
        if deadline_frame == NO_DEADLINE:
            return NO_DEADLINE if self.time_of_frame is not None else None
        return None if self.time_of_frame is None else float(self.time_of_frame(deadline_frame))

    def submit(self, stream: PartStream, request: BarRequest, deadline_frame: float = NO_DEADLINE) -> Ticket:
        """Queue ``request`` for ``stream``'s generator; never blocks on generation
        (takes a lock held only for a queue append). After :meth:`close` the
        request is not queued (its ticket never completes: a take plays the fallback).

        Args:
            deadline_frame: the session frame the bar is needed by (the
                scheduler runs the earliest deadline first, converted by
                :attr:`time_of_frame`), or :data:`NO_DEADLINE`.
        """
        ticket = Ticket(stream, stream.submitted, request, deadline_frame, self._deadline_s(deadline_frame))
        stream.submitted += 1
        if not stream.withdrawn:
            self.scheduler.submit(ticket)
        return ticket

    def hurry(self, stream: PartStream, tickets: list[Ticket], deadline_frame: float) -> None:
        """Give ``tickets`` (of ``stream``) the deadline ``deadline_frame`` if it is
        earlier than theirs — and so every request queued before them in the
        same part, since a part's requests run in order. Changes only the order
        in which parts are served, never what is generated."""
        wanted = {id(ticket) for ticket in tickets}
        deadline_s = self._deadline_s(deadline_frame)
        with self.scheduler._lock:
            for queued in stream.queue:
                if not wanted:
                    break
                if queued.deadline_frame > deadline_frame:
                    queued.deadline_frame = deadline_frame
                    queued.deadline_s = deadline_s
                wanted.discard(id(queued))

    def take(self, ticket: Ticket, frame: int) -> Part:
        """The bar for ``ticket``, needed at session ``frame``: the generator's
        answer if it is ready (or, in WAIT mode, once it is), else the
        fallback's, with the miss counted and listed in :attr:`fallbacks`.
        Never raises for a generator's failure."""
        stream = ticket.stream
        reason: FallbackReason | None = None
        if (stream.name, ticket.number) in self.forced_fallbacks:
            reason = FallbackReason.FORCED
        elif self.deadline_policy is not None:
            if not self.deadline_policy(ticket):
                reason = FallbackReason.LATE
        elif self.mode is GenerationMode.WAIT:
            if not ticket.done.wait(self.wait_timeout_seconds):
                reason = FallbackReason.LATE
        elif not ticket.done.is_set():
            reason = FallbackReason.LATE
        if reason is None:
            if ticket.part is not None:
                self.counters["generated_bars"] += 1
                return ticket.part
            reason = FallbackReason.ERROR
            self.counters["generation_errors"] += 1
        self.counters["generation_misses"] += 1
        self.fallbacks.append(GenerationFallback(int(frame), stream.name, ticket.number, ticket.request.bar_index,
                                                 reason))
        return self.fallback_generator.generate_bar(ticket.request)

    def drain_fallbacks(self) -> list[GenerationFallback]:
        """Fallbacks decided since the last call, in frame order."""
        fallbacks, self.fallbacks = self.fallbacks, []
        fallbacks.sort(key=lambda fallback: fallback.frame)
        return fallbacks

    def idle(self) -> bool:
        """Whether every request of this session has been run (for tests and benchmarks)."""
        return self.scheduler.idle(self._streams)

    def close(self, timeout: float = 5.0) -> None:
        """Withdraw this session's parts: its queued requests are dropped, a
        bar of it being written whole finishes first; the other sessions'
        go on. The scheduler's thread stops with its last session (joined up
        to ``timeout`` s). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.scheduler.detach(self._streams, timeout)


class BarFeed:
    """The bars of one generated part, requested ahead and taken at their downbeats.

    Used by :class:`~adaptive.voice.GeneratedVoice`. On :meth:`restart` (the
    part starts) it requests bars ``0 .. bars_ahead``; when bar ``k`` is taken
    (at its downbeat) it requests bar ``k + bars_ahead``, so ``bars_ahead`` bars
    are always asked for beyond the one playing. Each request is built by
    ``request_for_bar(k)`` when it is made, so **the emotion a bar expresses is
    the one current ``bars_ahead`` bar(s) before it plays**.

    Args:
        worker: the generation worker.
        stream: the part's stream.
        request_for_bar: builds the request for a bar index (called on the
            session's thread).
        bars_ahead: bars requested beyond the one playing (1..16).
        bars: the part's length in bars (None: unbounded).
        deadline_for_bar: the session frame bar ``k`` is needed by, or None
            if unknown (then :data:`NO_DEADLINE`).
    """

    def __init__(self, worker: GenerationWorker, stream: PartStream, request_for_bar: Callable[[int], BarRequest],
                 bars_ahead: int = 1, bars: int | None = None,
                 deadline_for_bar: Callable[[int], float] | None = None) -> None:
        if not 1 <= bars_ahead <= 16:
            raise ValueError(f"bars_ahead {bars_ahead} is out of range (allowed: 1..16)")
        self.worker = worker
        self.stream = stream
        self.request_for_bar = request_for_bar
        self.bars_ahead = bars_ahead
        self.bars = bars
        self.deadline_for_bar = deadline_for_bar
        self._tickets: dict[int, Ticket] = {}
        self._primed: dict[int, Ticket] | None = None

    def _request(self, bar_index: int, deadline_frame: float | None = None) -> None:
        if self.bars is not None and bar_index >= self.bars:
            return
        if deadline_frame is None:
            deadline_frame = NO_DEADLINE if self.deadline_for_bar is None else self.deadline_for_bar(bar_index)
        self._tickets[bar_index] = self.worker.submit(self.stream, self.request_for_bar(bar_index), deadline_frame)

    def prime(self, tickets: dict[int, Ticket] | None = None, deadline_frame: float = NO_DEADLINE) -> None:
        """Request the first bars now, before the part starts (a transition was
        asked for: the incoming cue's bars get the time until the boundary,
        ``deadline_frame``), or hand over ``tickets`` already submitted (a
        bridge made ahead). The next :meth:`restart` uses them."""
        if tickets is None:
            self._tickets = {}
            for bar_index in range(self.bars_ahead + 1):
                self._request(bar_index, deadline_frame)
            tickets = self._tickets
        self._primed = dict(tickets)

    def unprime(self) -> None:
        """Forget primed requests (the transition they were for will not happen;
        they are still generated, their answers are dropped)."""
        self._primed = None

    def restart(self) -> None:
        """The part starts (at bar 0): use the primed requests or make them now."""
        if self._primed is not None:
            self._tickets, self._primed = self._primed, None
            return
        self._tickets = {}
        for bar_index in range(self.bars_ahead + 1):
            self._request(bar_index)

    def take(self, bar_index: int, frame: int) -> Part:
        """The notes of bar ``bar_index`` (beats from its downbeat), needed at
        session ``frame``; requests the bar ``bars_ahead`` beyond it."""
        ticket = self._tickets.pop(bar_index, None)
        if ticket is None:  # not asked for ahead (a bar skipped?): ask now, it will likely miss
            self._request(bar_index)
            ticket = self._tickets.pop(bar_index)
        if bar_index + self.bars_ahead not in self._tickets:
            self._request(bar_index + self.bars_ahead)
        return self.worker.take(ticket, frame)


def request_tickets(worker: GenerationWorker, stream: PartStream, requests: list[BarRequest],
                    deadline_frame: float = NO_DEADLINE) -> dict[int, Ticket]:
    """Submit a whole short part (a bridge, a stinger) at once: bar index → ticket."""
    return {request.bar_index: worker.submit(stream, request, deadline_frame) for request in requests}

