"""The real-time runner: the same deterministic engine core (:class:`Session`)
driven by a pacing loop (DESIGN.md, "The time model").

* Server time starts at ``t0`` (the clock reading when :meth:`RealtimeSession.start`
  is called). Frame ``f`` of the session is scheduled to play at server time
  ``f / sample_rate_hz`` seconds, so ``playback_frame() = (clock() - t0) * rate``.
* One render thread keeps a bounded lookahead rendered: it renders a block
  whenever ``frames_rendered < playback_frame() + lookahead_frames``, and
  otherwise sleeps until the next block is due (one wake-up per block). The
  lookahead is the latency floor of an input.
* Inputs arrive from any thread through :meth:`RealtimeSession.submit`, which
  only puts them in an inbox. The render thread stamps each with the frame at
  which it takes effect — ``session.frame``, the first frame not yet rendered —
  submits it to the session and writes it to the recording. So a recording
  replayed offline gives the served audio bit for bit.
* Every rendered block goes to the sinks as an :class:`OutputBlock`, with its
  first frame, its scheduled server time, the music events and MIDI notes in it.
* The session's generation worker is put in real-time mode: a generated bar
  not ready at its downbeat plays the rule-based fallback (a miss, counted in
  ``generation_misses``). Each fallback is written to the recording, so replay
  plays the same fallbacks.

Many sessions share one render thread (:class:`RenderLoop`): it renders each
session's next block when it is due, on each session's own clock, and sleeps
until the next one is due, so a server of N sessions wakes once per block
period instead of N times (on this project's machine a wake-up cost as much
as the block it renders, docs/benchmarks.md, "Where a session's render time
goes").

The module opens no socket and does no file I/O itself: sinks and the recording
(queue + writer thread) take the output off the render thread.
"""

from __future__ import annotations

import collections
import gc
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from adaptive.clock import frames_elapsed, frames_to_seconds, ms_to_frames
from adaptive.generation import GenerationMode
from adaptive.mapping import MappingChange
from adaptive.recording import Recording
from adaptive.scene import SessionInput, StingerTrigger
from adaptive.events import MidiNoteEvent, MusicEvent
from adaptive.session import InputError, Session

MAX_SLEEP_SECONDS = 0.05
"""The render thread sleeps until the next block is due, but at most this long
(seconds), so :meth:`RealtimeSession.stop` is never kept waiting longer.

It does not wake in between to look at the inbox: an input is stamped with the
first frame not yet rendered, and that frame only moves when a block is
rendered, so picking inputs up at the next block stamps them with the very
same frame. (Waking every 5 ms to look cost two extra wake-ups per 512-frame
block: 1.5-2 points of a core, of the server's 12-15 %, docs/benchmarks.md.)"""

DEFAULT_RING_BLOCKS = 8
"""Blocks in the ring of output buffers: an :attr:`OutputBlock.audio` view stays
valid for this many blocks after it is handed out."""

MAX_LOOKAHEAD_MS = 2000.0
"""The longest lookahead a real-time session keeps (the server's settings allow the same)."""

MIDI_TRIM_THRESHOLD = 10_000
"""When more than this many MIDI note events have been handed to sinks, they
are removed from ``session.midi_events`` (memory stays bounded in long sessions)."""


PREFILL_GENERATION_WAIT_S = 5.0
"""Before playback starts, while the first lookahead is rendered (before
``t0``), a generated bar's take waits up to this long for the generator
(:attr:`GenerationMode.WAIT`); from ``t0`` on takes never wait
(:attr:`GenerationMode.REALTIME`). Nothing is heard yet, so the wait costs
start-up time (a session answers its hello that much later), not a glitch.
Without it a cue with a generated layer started on the fallback's bar 0 at
every start: the first block is due at once, and the model writes a bar in
50-200 ms (docs/benchmarks.md, "Generator")."""

LOOP_SLACK_MS = 1.0
"""A :class:`RenderLoop` renders, in the pass it makes for the session due
first, every session due within this many milliseconds after it: sessions
put on the same grid are due at the same instant but for rounding, and
without it each would cost a wake-up of its own. Their audio is then ahead
of playback by up to this much more than their lookahead."""

STALL_MS = 15.0
"""A block taking longer than this (ms), or a wake-up this late, is kept in
:attr:`RealtimeSession.stalls` (diagnosing underruns)."""

STALLS_KEPT = 100
"""How many stall episodes :attr:`RealtimeSession.stalls` keeps (the latest)."""


def raise_thread_priority(priority: int) -> str | None:
    """Give the calling thread real-time scheduling: ``SCHED_FIFO`` at
    ``priority`` (1..99), as audio servers do (JACK, PipeWire through RTKit),
    so that other processes on a busy machine cannot keep it off the CPU for
    longer than the lookahead. It sleeps between blocks, so it takes only the
    CPU its blocks need (and Linux caps real-time threads at 95 % of a core).

    Returns:
        None on success, else why it was not possible (no permission: needs
        root, ``CAP_SYS_NICE`` or an ``ulimit -r`` of at least ``priority``;
        or a platform without it). Never raises.
    """
    if not 1 <= priority <= 99:
        return f"priority {priority} is out of range (allowed: 1..99)"
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_FIFO"):
        return "this platform has no SCHED_FIFO"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread (Linux)
    except OSError as error:
        return f"{error.strerror or error}"
    return None


@dataclass(frozen=True)
class OutputBlock:
    """One rendered block, as handed to sinks.

    Attributes:
        sequence: 0, 1, 2, ... per runner; a gap never happens (a sink that
            sees one has dropped blocks itself).
        first_frame: session frame of the block's first frame.
        audio: float32 ``(n, 2)`` **view into the runner's ring buffer**, valid
            for :data:`DEFAULT_RING_BLOCKS` (``ring_blocks``) blocks: a sink that
            keeps it must copy it.
        events: the music events of this block (``session.drain_events()``),
            in frame order; a rejected input appears as an ``"error"`` event
            (``data``: ``message``, ``input``) at the frame it was stamped with.
        midi: the MIDI note events played since the previous block.
        server_time_seconds: server time (seconds since the runner started) at
            which ``first_frame`` is scheduled to play: ``first_frame / sample_rate_hz``.
    """

    sequence: int
    first_frame: int
    audio: np.ndarray
    events: list[MusicEvent]
    midi: list[MidiNoteEvent]
    server_time_seconds: float

    @property
    def frame_count(self) -> int:
        """Frames in the block."""
        return int(self.audio.shape[0])


Sink = Callable[[OutputBlock], None]
"""An output consumer. It is called **on the render thread** and must not block:
it must only put the block (copying ``audio`` if it keeps it) into its own
bounded queue, dropping when that queue is full, and return. A sink that
raises is removed and counted in ``counters["sink_drops"]``; the music goes on."""


class RealtimeSession:
    """Drives a :class:`Session` in real time with one render thread.

    Args:
        session: the engine core. Once :meth:`start` is called only the render
            thread touches it, until :meth:`stop` returns.
        block_frames: frames per rendered block (1..``session.max_block_frames``).
        lookahead_ms: how far ahead of playback audio is kept rendered
            (milliseconds): the latency floor of an input.
        clock: monotonic clock in seconds (tests pass a fake one).
        sleep: sleeps for the given seconds (tests pass one that advances a fake clock).
        recording: if given, every accepted input is recorded with its frame,
            and :meth:`stop` closes it with the end frame.
        ring_blocks: output buffers in the ring (see :class:`OutputBlock`).
        midi_trim_threshold: see :data:`MIDI_TRIM_THRESHOLD`; ``None`` keeps
            every MIDI event in ``session.midi_events``.
        thread_priority: 1..99: the render thread asks for real-time
            scheduling at this priority (:func:`raise_thread_priority`); when
            refused it goes on at normal priority and says why in
            :attr:`priority_problem`. 0: normal priority. With ``loop``,
            the loop's thread asks (its own ``thread_priority``).
        loop: render on this shared :class:`RenderLoop` instead of a thread
            of its own (None: a thread of its own). Everything else stays
            the session's own: clock (``t0``), frames, inputs, recording,
            sinks, counters.

    Raises:
        ValueError: ``block_frames``, ``lookahead_ms`` or ``ring_blocks`` out of range.
    """

    def __init__(
        self,
        session: Session,
        block_frames: int = 256,
        lookahead_ms: float = 40.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        recording: Recording | None = None,
        *,
        ring_blocks: int = DEFAULT_RING_BLOCKS,
        midi_trim_threshold: int | None = MIDI_TRIM_THRESHOLD,
        thread_priority: int = 0,
        loop: "RenderLoop | None" = None,
    ) -> None:
        if not 1 <= block_frames <= session.max_block_frames:
            raise ValueError(f"block_frames {block_frames} is out of range "
                             f"(allowed: 1..{session.max_block_frames}, the session's max_block_frames)")
        if not 0.0 <= lookahead_ms <= MAX_LOOKAHEAD_MS:
            raise ValueError(f"lookahead_ms {lookahead_ms} is out of range (allowed: 0..{MAX_LOOKAHEAD_MS:g} ms)")
        if ring_blocks < 2:
            raise ValueError(f"ring_blocks {ring_blocks} is out of range (allowed: 2 or more)")
        if not 0 <= thread_priority <= 99:
            raise ValueError(f"thread_priority {thread_priority} is out of range (allowed: 0..99, 0 = normal)")
        self.session = session
        session.generation.mode = GenerationMode.REALTIME  # never wait for the generator
        self.thread_priority = thread_priority
        self.priority_problem: str | None = None
        """Why real-time priority was not granted (``None``: granted, or not asked for)."""
        self.block_frames = int(block_frames)
        self.lookahead_ms = float(lookahead_ms)
        self.lookahead_frames = ms_to_frames(lookahead_ms, session.sample_rate_hz)
        self.sample_rate_hz = session.sample_rate_hz
        self.recording = recording
        self.midi_trim_threshold = midi_trim_threshold
        self._clock = clock
        self._sleep = sleep
        self._inbox: queue.SimpleQueue[SessionInput] = queue.SimpleQueue()
        self._sinks: tuple[Sink, ...] = ()
        self._sinks_lock = threading.Lock()  # only add/remove take it; the render thread reads the tuple
        self._ring = np.zeros((ring_blocks, self.block_frames, 2), np.float32)
        self._sequence = 0
        self._midi_index = 0
        self._pending_errors: list[MusicEvent] = []
        self._behind = False
        self._t0: float | None = None
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        """An unexpected exception that ended the render thread (a bug), else ``None``."""
        self.counters: dict[str, int] = {"blocks": 0, "underruns": 0, "late_frames": 0, "inputs": 0,
                                         "rejected_inputs": 0, "sink_drops": 0}
        """``blocks`` rendered; ``underruns``: times the render thread found
        playback ahead of what it had rendered (one per episode); ``late_frames``:
        frames rendered after their scheduled playback time; ``inputs`` accepted
        and ``rejected_inputs``; ``sink_drops``: sinks removed because they raised."""
        self.max_block_ms = 0.0
        """Longest time (ms, by ``clock``) one block took: rendering plus sinks."""
        self.max_wake_delay_ms = 0.0
        """Longest time (ms) the render thread woke up after it asked to: time
        it was kept off the CPU (the OS, the GIL held by another thread, a
        garbage collection)."""
        self.stalls: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=STALLS_KEPT)
        """The latest episodes where a block took, or a wake-up came, more than
        :data:`STALL_MS` late: ``(server_time_seconds, block_ms, wake_delay_ms)``."""
        self._wake_due: float | None = None
        self.loop = loop
        self._loop_slack_frames = ms_to_frames(LOOP_SLACK_MS, session.sample_rate_hz)
        self._started = False
        self._on_loop = False  # on the loop: from attach until the loop lets go
        self._detached = threading.Event()  # set by the loop when it lets go of this session

    # ------------------------------------------------------------------ time
    @property
    def frames_rendered(self) -> int:
        """Frames the session has rendered (the session clock)."""
        return self.session.frame

    def server_time_seconds(self) -> float:
        """Seconds since the runner started (``clock() - t0``); 0 before :meth:`start`."""
        if self._t0 is None:
            return 0.0
        return self._clock() - self._t0

    def playback_frame(self) -> int:
        """Frames that should have been played by now: ``(clock() - t0) * sample_rate_hz``."""
        return frames_elapsed(self.server_time_seconds(), self.sample_rate_hz)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start rendering: on a render thread of its own (named
        ``"adaptive-render"``, not a daemon: call :meth:`stop`), or on the
        shared ``loop``. It renders the first lookahead (with a loop: here,
        on the calling thread, before the loop takes it), then sets ``t0``
        (server time 0 = the playback of frame 0) and keeps pace.

        Raises:
            RuntimeError: already started.
        """
        if self._started:
            raise RuntimeError("the real-time session is already started")
        self._started = True
        self._running.set()
        if self.loop is not None:
            # The first lookahead is rendered here, on the caller's thread: a
            # session's first block takes tens of milliseconds (its first cue
            # starting), which the loop's other sessions would wait for.
            self._prefill()
            self.loop.attach(self)
            return
        self._thread = threading.Thread(target=self._run, name="adaptive-render", daemon=False)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop rendering and wait for it (up to ``timeout`` seconds): join
        the render thread, or wait until the shared loop has let go of this
        session (it renders no block of it after this returns); then close
        the recording with the frames rendered as its end frame. Inputs
        still in the inbox are dropped. Idempotent.

        Raises:
            RuntimeError: rendering did not stop within ``timeout``.
        """
        self._running.clear()
        if self.loop is not None and self._started:
            self.loop.detach(self, timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"the render thread did not stop within {timeout} s")
        if self.recording is not None:
            self.recording.close(self.session.frame)

    @property
    def running(self) -> bool:
        """Whether it is rendering (its thread is alive, or the loop holds it)."""
        if self.loop is not None:
            return self._on_loop
        return self._thread is not None and self._thread.is_alive()

    def seconds_until_due(self, early_frames: int = 0) -> float:
        """Seconds (server time, by ``clock``) until its next block is due:
        when fewer than ``lookahead_frames`` frames would remain rendered
        ahead of playback; 0.0: due now, or within ``early_frames``
        (:meth:`run_once` with them would render a block), else at least 0.1 ms."""
        if self.session.frame < self.playback_frame() + self.lookahead_frames + early_frames:
            return 0.0
        due = frames_to_seconds(self.session.frame - self.lookahead_frames + 1, self.sample_rate_hz)
        return max(due - self.server_time_seconds(), 1e-4)

    def frames_ahead(self) -> int:
        """Frames rendered ahead of playback now (negative: behind, an underrun)."""
        return self.session.frame - self.playback_frame()

    def submit(self, item: SessionInput) -> None:
        """Queue an input (any thread; never blocks, never touches the session).
        The render thread picks it up when it renders the next block and stamps
        it with that block's first frame, the first frame it can change; it is
        heard after the lookahead."""
        self._inbox.put(item)

    def add_sink(self, sink: Sink) -> None:
        """Add an output consumer (see :data:`Sink`: it must not block)."""
        with self._sinks_lock:
            self._sinks = self._sinks + (sink,)

    def remove_sink(self, sink: Sink) -> None:
        """Remove an output consumer (no error if it is not there). It may be
        called once more if a block is being handed out at that moment."""
        with self._sinks_lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    # ------------------------------------------------------------------ loop
    def _prefill(self) -> None:
        """Render the first lookahead before playback starts, then start the
        playback clock (t0): playback begins with the lookahead full, so a
        cold first block is not an underrun, and the generated bars it takes
        wait for the generator (up to :data:`PREFILL_GENERATION_WAIT_S` each)."""
        generation = self.session.generation
        mode, wait_s = generation.mode, generation.wait_timeout_seconds
        generation.mode, generation.wait_timeout_seconds = GenerationMode.WAIT, PREFILL_GENERATION_WAIT_S
        try:  # nothing plays yet: the first bars may wait for the generator (bounded)
            while self._running.is_set() and self.session.frame < self.lookahead_frames:
                self._take_inputs()
                self._render_block(self.session.frame, 0)
        finally:
            generation.mode, generation.wait_timeout_seconds = mode, wait_s
        self._t0 = self._clock()

    def _run(self) -> None:
        try:
            if self.thread_priority:
                self.priority_problem = raise_thread_priority(self.thread_priority)
            self._prefill()
            while self._running.is_set():
                wait = self.run_once()
                if wait > 0.0:
                    self._sleep(wait)
        except BaseException as error:  # a bug: remember it, stop rendering
            self.failure = error
            self._running.clear()

    def run_once(self, early_frames: int = 0) -> float:
        """One iteration of the render loop (the render thread calls it; tests
        drive it directly with a fake clock): stamp and submit the inputs in the
        inbox, then render one block if the lookahead is not full.

        Args:
            early_frames: render a block this many frames before it is due
                (the shared :class:`RenderLoop` renders sessions due within
                :data:`LOOP_SLACK_MS` in one pass).

        Returns:
            0.0 if a block was rendered, else the seconds to sleep before the
            next block is needed (at most :data:`MAX_SLEEP_SECONDS`).
        """
        if self._t0 is None:
            self._t0 = self._clock()
        woke = self._clock()
        wake_delay_ms = 0.0
        if self._wake_due is not None:
            wake_delay_ms = max(0.0, (woke - self._wake_due) * 1000.0)
            self._wake_due = None
            if wake_delay_ms > self.max_wake_delay_ms:
                self.max_wake_delay_ms = wake_delay_ms
        self._take_inputs()
        session = self.session
        rendered = session.frame
        playback = self.playback_frame()
        if playback > rendered:
            if not self._behind:
                self._behind = True
                self.counters["underruns"] += 1
        else:
            self._behind = False
        if rendered >= playback + self.lookahead_frames + early_frames:
            due = frames_to_seconds(rendered - self.lookahead_frames + 1, self.sample_rate_hz)  # server time the next block is due
            wait = min(max(due - self.server_time_seconds(), 1e-4), MAX_SLEEP_SECONDS)
            self._wake_due = self._clock() + wait
            if wake_delay_ms > STALL_MS:
                self.stalls.append((woke - self._t0, 0.0, wake_delay_ms))
            return wait
        self._render_block(rendered, playback)
        block_ms = (self._clock() - woke) * 1000.0
        if block_ms > self.max_block_ms:
            self.max_block_ms = block_ms
        if block_ms > STALL_MS or wake_delay_ms > STALL_MS:
            self.stalls.append((woke - self._t0, block_ms, wake_delay_ms))
        return 0.0

    def _take_inputs(self) -> None:
        session = self.session
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            frame = session.frame
            try:
                session.submit(frame, item)
            except InputError as error:
                self.counters["rejected_inputs"] += 1
                kind = ("stinger" if isinstance(item, StingerTrigger) else
                        "mapping" if isinstance(item, MappingChange) else "scene")
                self._pending_errors.append(MusicEvent(frame, "error", {"message": str(error), "input": kind}))
                continue
            self.counters["inputs"] += 1
            if self.recording is not None:
                self.recording.write_input(frame, item)

    def _render_block(self, first_frame: int, playback: int) -> None:
        session = self.session
        n = self.block_frames
        slot = self._ring[self._sequence % self._ring.shape[0], :n]
        np.copyto(slot, session.render(n))
        if session.generation.fallbacks:
            fallbacks = session.generation.drain_fallbacks()
            if self.recording is not None:
                for fallback in fallbacks:
                    self.recording.write_fallback(fallback)
        late = min(n, playback - first_frame)
        if late > 0:
            self.counters["late_frames"] += late
        events = session.drain_events()
        if self._pending_errors:
            events = self._pending_errors + events
            self._pending_errors = []
        midi_log = session.midi_events
        midi = midi_log[self._midi_index :] if len(midi_log) > self._midi_index else []
        self._midi_index = len(midi_log)
        block = OutputBlock(self._sequence, first_frame, slot, events, midi, frames_to_seconds(first_frame, self.sample_rate_hz))
        self._sequence += 1
        self.counters["blocks"] += 1
        for sink in self._sinks:
            try:
                sink(block)
            except Exception:
                self.remove_sink(sink)
                self.counters["sink_drops"] += 1
        # Every sink has seen these notes: drop them (in place: the session's
        # MIDI callbacks hold this very list).
        if self.midi_trim_threshold is not None and self._midi_index > self.midi_trim_threshold:
            del midi_log[: self._midi_index]
            self._midi_index = 0

    def stats(self) -> dict[str, Any]:
        """Counters plus the generation worker's (``generated_bars``,
        ``generation_misses``, ``generation_errors``), the current frames
        rendered, playback frame and lookahead (frames), and the timing
        figures (ms), for monitoring."""
        return {**self.counters, **self.session.generation.counters, "frames_rendered": self.frames_rendered,
                "playback_frame": self.playback_frame(),
                "lookahead_frames": self.lookahead_frames, "max_block_ms": round(self.max_block_ms, 2),
                "max_wake_delay_ms": round(self.max_wake_delay_ms, 2)}


class RenderLoop:
    """One thread that renders every block of many :class:`RealtimeSession`\\ s.

    Each session keeps its own clock (its ``t0``), frame counter, inbox,
    recording, sinks and counters (underruns, late frames, longest block
    and wake-up); the loop only decides whose block to render next and
    sleeps until the next block of any of them is due. Sessions attach
    with :meth:`RealtimeSession.start` and detach with
    :meth:`RealtimeSession.stop`; the loop's thread starts with the first
    session and ends when the last one leaves (a later one starts it again).

    **Fewer wake-ups.** A session's ``t0`` is set when its first lookahead
    is rendered, then moved back by less than one block period (block
    frames / rate) so that it falls on the loop's grid: every session of
    the same block size and rate is then due at the same instants, and one
    wake-up per block period renders them all (on this project's machine a
    wake-up of a sleeping thread cost as much as rendering a block,
    docs/benchmarks.md). Moving ``t0`` back only shifts the session's
    server time; it renders the same frames, on its own clock.

    **Who goes first (the rule for a slow session).** Each pass renders at
    most one block of each session that is due, the one with the least
    audio rendered ahead of playback first (ties: in an order that rotates
    every pass, so no session is always last). A session that has fallen
    behind gets one block per pass, like the others, never a burst of
    catch-up blocks ahead of them; so a slow session (a long block) delays
    the others by its own block per pass, no more, and the pass repeats
    without sleeping until no session is due. Sessions underrun only when a
    whole pass takes longer than the lookahead (40 ms by default): the
    loop's capacity is one core's worth of blocks, and a server of more
    sessions than that needs more loops (``render_threads``).

    **Errors.** An exception from one session's render (a bug) ends that
    session only: it is kept in its :attr:`RealtimeSession.failure`, the
    session leaves the loop, and the loop goes on with the others.

    The render step stays as lean as a session's own thread: attaching and
    detaching go through a list under a short lock taken once per pass; a
    new session's first lookahead (a few blocks, the first of which takes
    tens of milliseconds) is rendered before it joins, by the thread that
    starts it, so the loop's sessions do not wait for it.

    Args:
        sleep: sleeps for the given seconds (the sessions' own clocks time
            everything else).
        start_thread: False: no thread of its own; the caller drives
            :meth:`run_once` (tests, on a fake clock).
        thread_priority: 0..99: the loop's thread asks for SCHED_FIFO at
            this priority (0: normal), as a session's own thread does; why
            it was refused is in :attr:`priority_problem` and in each
            session's.
        name: the thread's name.

    Raises:
        ValueError: ``thread_priority`` out of range.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep, *, start_thread: bool = True,
                 thread_priority: int = 0, name: str = "adaptive-render") -> None:
        if not 0 <= thread_priority <= 99:
            raise ValueError(f"thread_priority {thread_priority} is out of range (allowed: 0..99, 0 = normal)")
        self._sleep = sleep
        self._start_thread = start_thread
        self.thread_priority = thread_priority
        self.name = name
        self.priority_problem: str | None = None
        """Why real-time priority was not granted to the loop's thread (None: granted, or not asked for)."""
        self._runners: list[RealtimeSession] = []  # only the loop's thread (or run_once's caller) touches it
        self._lock = threading.Lock()
        self._to_attach: list[RealtimeSession] = []
        self._to_detach: list[RealtimeSession] = []
        self._thread: threading.Thread | None = None
        self._epoch: float | None = None  # the loop's grid: t0 of its first session, by the sessions' clock
        self._rotation = 0
        self.passes = 0
        """Passes made (a pass renders at most one block of each session due)."""
        self.wake_ups = 0
        """Times the loop slept and woke up."""

    def __len__(self) -> int:
        """Sessions on the loop, and waiting to join it."""
        with self._lock:
            return len(self._runners) + len(self._to_attach) - len(self._to_detach)

    @property
    def running(self) -> bool:
        """Whether the loop's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def attach(self, runner: RealtimeSession) -> None:
        """Take ``runner`` on (its :meth:`RealtimeSession.start` calls this,
        its first lookahead rendered): its ``t0`` is moved back onto the
        loop's grid (less than one block period), and the loop renders it
        from its next pass. Starts the loop's thread if it is not running."""
        with self._lock:
            # Its clock onto the loop's grid now, before anyone reads its server time (a client's clock sync).
            if runner._t0 is None:  # not prefilled: its clock starts now
                runner._t0 = runner._clock()
            if self._epoch is None:
                self._epoch = runner._t0
            period_s = runner.block_frames / runner.sample_rate_hz
            runner._t0 -= (runner._t0 - self._epoch) % period_s
            runner._on_loop = True
            runner._detached.clear()
            self._to_attach.append(runner)
            if self._start_thread and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=False)
                self._thread.start()

    def detach(self, runner: RealtimeSession, timeout: float = 5.0) -> None:
        """Let go of ``runner`` (its :meth:`RealtimeSession.stop` calls this)
        and wait until the loop renders nothing more of it.

        Raises:
            RuntimeError: the loop did not let go within ``timeout`` seconds.
        """
        with self._lock:
            if runner in self._to_attach:  # never picked up
                self._to_attach.remove(runner)
                runner._on_loop = False
                runner._detached.set()
                return
            on_thread = self._thread is not None and self._thread.is_alive()
            if not on_thread or threading.current_thread() is self._thread:
                if runner in self._runners:
                    self._runners.remove(runner)
                runner._on_loop = False
                runner._detached.set()
                return
            if runner._detached.is_set():  # left already (it failed)
                return
            if runner not in self._to_detach:  # on the loop, or being picked up: the loop lets go at its next pass
                self._to_detach.append(runner)
        if not runner._detached.wait(timeout):
            raise RuntimeError(f"the render loop did not let go of a session within {timeout} s")

    def _apply_changes(self) -> bool:
        """Take the sessions that joined and let go of those that left;
        whether the loop has any session left (if not, its thread ends:
        decided under the lock, so a session joining meanwhile starts a new one)."""
        with self._lock:
            joining, self._to_attach = self._to_attach, []
            for runner in self._to_detach:
                if runner in self._runners:
                    self._runners.remove(runner)
                runner._on_loop = False
                runner._detached.set()
            self._to_detach = []
            if not joining and not self._runners and threading.current_thread() is self._thread:
                self._thread = None  # this thread ends; attach() starts another
                return False
            for runner in joining:  # first lookahead rendered by start(), clock on the grid by attach()
                runner.priority_problem = self.priority_problem
                self._runners.append(runner)
        return True

    def _run(self) -> None:
        if self.thread_priority:
            self.priority_problem = raise_thread_priority(self.thread_priority)
        while self._apply_changes():
            wait = self._pass()
            if wait > 0.0:
                self._sleep(wait)
                self.wake_ups += 1

    def run_once(self) -> float:
        """One pass (the loop's thread calls it; tests drive it directly on a
        fake clock): take the sessions that joined and let go of those that
        left, render one block of each session due (least audio ahead first),
        and say how long to sleep.

        Returns:
            0.0 if a session is still due, else the seconds until the next
            block of any session is due (at most :data:`MAX_SLEEP_SECONDS`).
        """
        self._apply_changes()
        return self._pass()

    def _pass(self) -> float:
        self.passes += 1
        runners = self._runners
        if not runners:
            return MAX_SLEEP_SECONDS
        count = len(runners)
        self._rotation = (self._rotation + 1) % count
        due = [(runner.frames_ahead() / runner.sample_rate_hz, (i - self._rotation) % count, runner)
               for i, runner in enumerate(runners) if runner.seconds_until_due(runner._loop_slack_frames) == 0.0]
        due.sort(key=lambda item: (item[0], item[1]))
        for _, _, runner in due:
            try:
                runner.run_once(runner._loop_slack_frames)
            except BaseException as error:  # a bug in that session: it fails alone, the others play on
                runner.failure = error
                runner._running.clear()
                runner._on_loop = False
                runners.remove(runner)
                runner._detached.set()
        wait = MAX_SLEEP_SECONDS
        for runner in runners:
            until_due = runner.seconds_until_due()
            if until_due == 0.0:
                return 0.0
            wait = min(wait, until_due)
        # Each session measures its wake-up against when its block was due (on its own clock).
        for runner in runners:
            runner._wake_due = runner._clock() + runner.seconds_until_due()
        return max(wait, 1e-4)


class GcPauseMonitor:
    """Measures CPython's garbage-collection pauses (every thread stops
    during one), through ``gc.callbacks``: the longest pause and the count
    of collections per generation since :meth:`install`.

    A pause longer than the lookahead minus a block causes an underrun; this
    tells whether one did.
    """

    def __init__(self) -> None:
        self.max_pause_ms = 0.0
        """Longest collection, milliseconds."""
        self.max_pause_generation = -1
        """Generation (0..2) of that collection (-1: none yet)."""
        self.collections = [0, 0, 0]
        """Collections per generation."""
        self._started: float | None = None

    def install(self) -> None:
        """Start measuring (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        """Stop measuring (idempotent)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:
            return
        pause_ms = (time.perf_counter() - self._started) * 1000.0
        self._started = None
        generation = int(info.get("generation", 0))
        if 0 <= generation < 3:
            self.collections[generation] += 1
        if pause_ms > self.max_pause_ms:
            self.max_pause_ms = pause_ms
            self.max_pause_generation = generation

