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
* The worker thread (``"adaptive-generation"``) runs the requests: **earliest
  deadline first across parts, in submission order within a part**, so each
  generator instance sees the same sequence of requests however fast it runs.
  Nothing is ever cancelled: a bar that comes too late is still generated, so
  the generator's state (its KV cache) does not depend on timing.
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
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

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
        part: the answer once done (None until then, or if the generator raised).
        error: the exception the generator raised, if it did.
    """

    __slots__ = ("stream", "number", "request", "deadline_frame", "part", "error", "done")

    def __init__(self, stream: "PartStream", number: int, request: BarRequest, deadline_frame: float) -> None:
        self.stream = stream
        self.number = number
        self.request = request
        self.deadline_frame = deadline_frame
        self.part: Part | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class PartStream:
    """One part's generator instance and request sequence (see the module docstring).

    Args:
        name: the part's name (used in fallbacks, counters and logs).
        generator: this part's own generator instance.
    """

    def __init__(self, name: str, generator: PartGenerator) -> None:
        self.name = name
        self.generator = generator
        self.submitted = 0
        self.queue: deque[Ticket] = deque()  # submitted, not yet started (guarded by the worker's lock)


class GenerationWorker:
    """Runs part generators in one background thread (see the module docstring).

    Args:
        mode: :attr:`GenerationMode.WAIT` (offline) or :attr:`GenerationMode.REALTIME`.
        forced_fallbacks: ``(part, request)`` pairs that play the fallback
            whatever the generator answers (a replayed recording's misses).
        wait_timeout_seconds: see :data:`DEFAULT_WAIT_TIMEOUT_SECONDS`.
        deadline_policy: if given, decides at each take whether the ticket is
            on time (True) or late (False) instead of ``mode`` (it may wait for
            ``ticket.done``); tests use it to make misses happen exactly where
            they want, as a slow generator would in real time.

    The thread starts when the first part is registered (:meth:`stream`, at
    set-up time, not in the render step); :meth:`close` stops it.
    """

    def __init__(self, mode: GenerationMode = GenerationMode.WAIT,
                 forced_fallbacks: Iterable[tuple[str, int]] = (),
                 wait_timeout_seconds: float = DEFAULT_WAIT_TIMEOUT_SECONDS,
                 deadline_policy: Callable[[Ticket], bool] | None = None) -> None:
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
        self._streams: list[PartStream] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = False

    # ------------------------------------------------------------ parts
    def stream(self, name: str, generator: PartGenerator) -> PartStream:
        """Register a part with its own generator instance (set-up time)."""
        stream = PartStream(name, generator)
        with self._lock:
            self._streams.append(stream)
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="adaptive-generation", daemon=True)
                self._thread.start()
        return stream

    @property
    def streams(self) -> tuple[PartStream, ...]:
        """The registered parts, in registration order."""
        with self._lock:
            return tuple(self._streams)

    def submit(self, stream: PartStream, request: BarRequest, deadline_frame: float = NO_DEADLINE) -> Ticket:
        """Queue ``request`` for ``stream``'s generator; never blocks on generation
        (takes a lock held only for a queue append).

        Args:
            deadline_frame: the session frame the bar is needed by (the worker
                runs the earliest deadline first), or :data:`NO_DEADLINE`.
        """
        ticket = Ticket(stream, stream.submitted, request, deadline_frame)
        stream.submitted += 1
        with self._wake:
            stream.queue.append(ticket)
            self._wake.notify()
        return ticket

    def hurry(self, stream: PartStream, tickets: list[Ticket], deadline_frame: float) -> None:
        """Give ``tickets`` (of ``stream``) the deadline ``deadline_frame`` if it is
        earlier than theirs — and so every request queued before them in the
        same part, since a part's requests run in order. Changes only the order
        in which parts are served, never what is generated."""
        wanted = {id(ticket) for ticket in tickets}
        with self._lock:
            for queued in stream.queue:
                if not wanted:
                    break
                if queued.deadline_frame > deadline_frame:
                    queued.deadline_frame = deadline_frame
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
        """Whether every submitted request has been run (for tests and benchmarks)."""
        with self._lock:
            return self._running is None and not any(stream.queue for stream in self._streams)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker thread after the request it is running (queued ones
        are dropped). Idempotent."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------ worker thread
    _running: Ticket | None = None

    def _next(self) -> Ticket | None:
        """The queued head with the earliest deadline (ties: the part registered
        first), or None; called with the lock held."""
        best: PartStream | None = None
        for stream in self._streams:
            if stream.queue and (best is None or stream.queue[0].deadline_frame < best.queue[0].deadline_frame):
                best = stream
        return best.queue.popleft() if best is not None else None

    def _run(self) -> None:
        while True:
            with self._wake:
                ticket = self._next()
                while ticket is None and not self._closing:
                    self._wake.wait()
                    ticket = self._next()
                if self._closing:
                    return
                self._running = ticket
            assert ticket is not None
            try:
                ticket.part = ticket.stream.generator.generate_bar(ticket.request)
            except Exception as error:  # a generator's failure: the fallback plays, the music goes on
                ticket.error = error
                log.error("generator %r of part %s failed on request %d (bar %d): %s: %s; the rule-based "
                          "fallback plays", getattr(ticket.stream.generator, "name", "?"), ticket.stream.name,
                          ticket.number, ticket.request.bar_index, type(error).__name__, error)
            with self._lock:
                self._running = None
            ticket.done.set()


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

