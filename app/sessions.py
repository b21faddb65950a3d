"""Many sessions in one server: :class:`SessionHost` makes, holds and ends them.

A session (docs/sessions.md) is everything one game's score needs: the engine
core (:class:`adaptive.session.Session`) with its own clock and seed, its
real-time runner (:class:`adaptive.realtime.RealtimeSession`: its own
clock, frames, counters and sinks, rendered by the host's shared render
loop, :class:`adaptive.realtime.RenderLoop`), its live mapping
(:class:`bridge.mapping_watch.MappingControl`: a ``mapping_set`` changes only
its session), its recording (one file per session) and its outputs (the
transports' sinks for it, so callbacks and audio reach only its clients).

The host is the transports' :class:`bridge.sessions.SessionDirectory`: a
hello opens a session (joins it, or makes it from the server's bank and
mapping), every later message goes to the client's session. The ``default``
session is made with the host, through the same path as every other, and
ends only with the server. Another session ends on request
(``session_end``), or when it has had no client for ``session_idle_s``
(:meth:`SessionHost.tick`, every second on the host's thread). At most
``max_sessions`` live at once (the default one included); a hello that would
make one more is refused, naming the cap and its setting.

Making a session takes 0.5 to 3 s (its synthesizers, its generator). It
happens on the host's builder thread, never on a transport's receive thread:
:meth:`SessionHost.opening` answers at once with a future of the session,
done already when it exists, done later when it is being made; every hello
for a session being made waits for the same build. The transports send the
welcome (or the refusal) when the future is done, so the messages of every
other client keep being answered meanwhile.

Every session stays deterministic and replayable on its own: its inputs are
stamped on its own clock and recorded in its own file
(:func:`recording_path`), which ``adaptive replay`` plays back bit for bit.
"""

from __future__ import annotations

import collections
import gc
import logging
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from app.settings import MAX_SESSIONS, SESSION_IDLE_S, StartMode  # noqa: F401 (the defaults, named here too)
from bridge.access import ClientTable
from bridge.protocol import DEFAULT_SESSION, NEW_SESSION, ProtocolError
from bridge.sessions import SessionElsewhere, SessionEndpoint, check_session_id, opened

log = logging.getLogger("adaptive.sessions")

TICK_SECONDS = 1.0
"""How often (seconds) the host's thread looks for idle sessions."""

BUILDER_THREADS = 1
"""Threads that make sessions. One: making a session is CPU-bound (loading
SoundFont presets, warming the generator) and two at once on a 2-core machine
would take cores from the render threads. Builds wait in the pool's queue,
which the session cap bounds (a build counts against ``max_sessions``)."""

NEW_SESSION_ID_BYTES = 6
"""Random bytes of a session id the server chooses (12 hex digits)."""


def recording_path(record: Path, session_id: str) -> Path:
    """Where session ``session_id``'s recording goes when the server records
    to ``record`` (``--record FILE``): the default session's to ``record``
    itself, as before sessions existed; session ``ID``'s beside it,
    ``STEM.ID.SUFFIX`` (``run.jsonl`` -> ``run.arena-2.jsonl``)."""
    if session_id == DEFAULT_SESSION:
        return record
    return record.with_name(f"{record.stem}.{session_id}{record.suffix}")


def _time_of_frame(realtime: Any, clock: Callable[[], float], sample_rate_hz: int) -> Callable[[float], float]:
    """Session frame -> the scheduler's clock: the reading at which
    ``realtime`` plays that frame (its start plus frame / rate; before it
    starts, as if it started now), so that deadlines of sessions started at
    different times compare."""

    def time_of_frame(frame: float) -> float:
        return clock() - realtime.server_time_seconds() + frame / sample_rate_hz

    return time_of_frame


@dataclass
class HostedSession:
    """One session of the host and the things that are only its.

    Attributes:
        session_id: its id.
        session: the engine core (its own clock and seed).
        realtime: its render thread.
        mapping: its live mapping.
        recording: its recording (None: the server does not record).
        endpoint: what the transports use of it.
        created_s: host clock seconds when it was made.
        empty_since_s: host clock seconds since when it has had no client (None: it has some).
    """

    session_id: str
    session: Any
    realtime: Any
    mapping: Any
    recording: Any
    endpoint: SessionEndpoint
    created_s: float
    empty_since_s: float | None = None


class SessionPlacement(Protocol):
    """Where a cluster puts sessions (docs/cluster.md): the session host of
    one node asks it about every session it does not hold
    (:class:`app.cluster.RayPlacement` asks the cluster's directory).

    Both methods are called off the transports' threads: :meth:`place` on
    the host's placement thread, :meth:`forget` where a session ends.
    """

    def place(self, session_id: str) -> SessionElsewhere | None:
        """Where session ``session_id`` lives, placing it if it lives
        nowhere yet: None for this node (the host makes it), else the
        hosting node's endpoints as the redirect to answer with. May block
        (a round trip to the directory).

        Raises:
            ProtocolError: ``not_allowed``: every node is at its cap.
        """

    def forget(self, session_id: str) -> None:
        """Session ``session_id`` no longer lives on this node (it ended, or
        could not be made). Must not block."""


SessionFactory = Callable[[str], HostedSession]
"""Makes the parts of session ``ID`` (not started): :meth:`SessionHost.build` by default."""


class SessionHost:
    """The sessions of one server (a :class:`bridge.sessions.SessionDirectory`).

    Thread-safe: transports open and end sessions from their threads, the
    host's own thread ends idle ones; one lock guards the table of sessions
    and of the sessions being made. Making one (its synthesizers, its
    generator: 0.5-3 s) runs on the builder thread, outside the lock
    (:meth:`opening`); two hellos naming the same new session share one build.

    Args:
        settings: the server's settings (:class:`app.settings.ServerSettings`):
            bank, SoundFont, rate, seed, generator, block size, lookahead,
            recording, start mode, ``session_idle_s`` and ``max_sessions``.
        bank: the loaded cue bank every session plays.
        mapping: the mapping every session starts from (:class:`adaptive.mapping.ResolvedMapping`).
        clients: the server's client table (a session's clients are its
            clients with that ``session_id``).
        mapping_path: the mapping file each session's live mapping watches (None: none).
        report_mapping_error: called with ``(session_id, path, message)``
            when a session's watched mapping file turns invalid.
        clock: monotonic seconds (tests pass a fake one).
        factory: makes a session's parts (tests pass a lighter one).
        realtime_options: extra arguments of each ``RealtimeSession`` (tests
            pass a fake ``clock`` and ``sleep``).
        placement: where a cluster puts sessions (:class:`SessionPlacement`;
            None: a single server, every session is made here). With one, a
            hello for a session this host does not hold is first placed (on
            the host's placement thread): made here, or answered with the
            hosting node's endpoints (``session_elsewhere``, counted
            ``hellos_elsewhere``). The default session is always this node's own.

    Attributes:
        default: the ``default`` session (made here).
        counters: ``sessions_created``, ``sessions_ended_request``,
            ``sessions_ended_idle``, ``sessions_ended_failed``,
            ``sessions_ended_server_stop``, ``refused_at_cap``,
            ``refused_bad_id``, ``sessions_build_failed`` (a session
            that could not be made), ``hellos_joined_build`` (hellos that
            waited for a build another hello asked for),
            ``blocks_of_ended_sessions``, ``underruns_of_ended_sessions``;
            with a placement, ``hellos_elsewhere`` (answered with another
            node's endpoints) and ``placement_failed`` (the directory could not be asked).
        welcome_base: welcome fields every session shares (block_frames,
            lookahead_ms, audio_tcp_port); the server sets audio_tcp_port once bound.

    Raises:
        AdaptiveError: the default session cannot be made (its recording, its SoundFont).
    """

    def __init__(self, settings: Any, bank: Any, mapping: Any, clients: ClientTable, *,
                 mapping_path: Path | None = None,
                 report_mapping_error: Callable[[str, str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, factory: SessionFactory | None = None,
                 realtime_options: dict[str, Any] | None = None, placement: SessionPlacement | None = None) -> None:
        self.settings = settings
        self.placement = placement
        self.bank = bank
        self.initial_mapping = mapping
        self.clients = clients
        self.mapping_path = mapping_path
        self.report_mapping_error = report_mapping_error or (lambda session_id, path, message: None)
        self.clock = clock
        self.realtime_options = dict(realtime_options or {})
        self.idle_s = float(settings.session_idle_s)
        self.max_sessions = int(settings.max_sessions)
        self.counters: collections.Counter = collections.Counter()
        self.welcome_base: dict[str, Any] = {"block_frames": settings.block_frames,
                                             "lookahead_ms": settings.lookahead_ms, "audio_tcp_port": 0}
        from adaptive.realtime import RenderLoop

        self.render_loops = [RenderLoop(self.realtime_options.get("sleep", time.sleep),
                                        thread_priority=settings.realtime_priority)
                             for _ in range(settings.render_threads)]
        """The render loops every session is rendered by (``render_threads``; none: a thread per session)."""
        self._factory = factory or self.build
        self._lock = threading.RLock()
        self._sessions: dict[str, HostedSession] = {}
        self._building: dict[str, Future] = {}  # sessions being made -> their future endpoint
        self._builder = ThreadPoolExecutor(max_workers=BUILDER_THREADS, thread_name_prefix="adaptive-session-build")
        self._placing: dict[str, Future] = {}  # sessions being placed (asked of the placement) -> their future endpoint
        self._placer = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="adaptive-session-place")
                        if placement is not None else None)
        self._closing = False
        self._started_listeners: list[Callable[[HostedSession], None]] = []
        self._ended_listeners: list[Callable[[str, str, list], None]] = []
        self._running = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        from adaptive.generation import GenerationScheduler
        from app.generators import ModelBarBatcher

        self.generation = GenerationScheduler(clock=self.realtime_options.get("clock", time.monotonic),
                                              batcher=ModelBarBatcher())
        """The one generation thread of every session (docs/sessions.md, "What is shared")."""
        self.default = self._factory(DEFAULT_SESSION)
        self._sessions[DEFAULT_SESSION] = self.default
        self.counters["sessions_created"] += 1

    # ------------------------------------------------------------------ making one
    def build(self, session_id: str) -> HostedSession:
        """The parts of session ``session_id``, not started: its Session (the
        server's bank, SoundFont, rate, seed and generator), its recording
        (:func:`recording_path`, if the server records), its RealtimeSession
        (on the render loop holding fewest sessions) and its live mapping.

        Raises:
            AdaptiveError: the SoundFont or generator cannot be loaded, the recording cannot be written.
        """
        from adaptive.generation import GenerationWorker
        from adaptive.realtime import RealtimeSession
        from adaptive.session import Session
        from bridge.mapping_check import shared_checker
        from bridge.mapping_watch import MappingControl

        settings = self.settings
        generation = GenerationWorker(scheduler=self.generation)  # the shared thread; its own misses and fallbacks
        try:
            session = Session(self.bank, soundfont=settings.soundfont, sample_rate_hz=settings.sample_rate_hz,
                              seed=settings.seed, max_block_frames=max(settings.block_frames, 4096),
                              generator=settings.generator, mapping=self.initial_mapping,
                              generated_bridges=True,  # a live mapping change may add generated bridges
                              progress=lambda message: log.info("%s", message), generation=generation)
        except BaseException:
            generation.close()
            raise
        recording = None
        try:
            if settings.record is not None:
                from adaptive.recording import Recording

                recording = Recording.for_session(recording_path(settings.record, session_id), session,
                                                  settings.bank.resolve())
            realtime = RealtimeSession(session, block_frames=settings.block_frames,
                                       lookahead_ms=settings.lookahead_ms, recording=recording,
                                       thread_priority=settings.realtime_priority, loop=self._least_loaded_loop(),
                                       **self.realtime_options)
            generation.time_of_frame = _time_of_frame(realtime, self.generation.clock, settings.sample_rate_hz)
            mapping = MappingControl(self.bank, self.initial_mapping, realtime.submit, path=self.mapping_path,
                                     report_error=lambda path, message: self.report_mapping_error(session_id, path,
                                                                                                  message),
                                     bank_path=settings.bank, checker=shared_checker())
        except BaseException:
            if recording is not None:
                recording.close(0)
            session.close()
            raise
        welcome = {"session_id": session_id, **self.welcome_base}
        endpoint = SessionEndpoint(session_id, self.bank, realtime.submit, realtime.server_time_seconds,
                                   settings.sample_rate_hz, welcome, mapping, session.parts)
        return HostedSession(session_id, session, realtime, mapping, recording, endpoint, self.clock())

    def _least_loaded_loop(self) -> Any:
        """The render loop holding fewest sessions (None: a thread per session)."""
        if not self.render_loops:
            return None
        with self._lock:
            held = collections.Counter(id(hosted.realtime.loop) for hosted in self._sessions.values())
        return min(self.render_loops, key=lambda loop: held[id(loop)])

    def set_audio_tcp_port(self, port: int) -> None:
        """The TCP audio port every welcome names (once the server has bound it)."""
        with self._lock:
            self.welcome_base["audio_tcp_port"] = port
            for hosted in self._sessions.values():
                hosted.endpoint.welcome["audio_tcp_port"] = port

    # ------------------------------------------------------------------ listeners
    def add_started_listener(self, listener: Callable[[HostedSession], None]) -> None:
        """Call ``listener(hosted)`` for each session made from now on, before
        it starts (the server attaches the transports' sinks)."""
        self._started_listeners.append(listener)

    def add_ended_listener(self, listener: Callable[[str, str, list], None]) -> None:
        """Call ``listener(session_id, reason, clients)`` when a session ends,
        after its clients were forgotten (``clients``: them)."""
        self._ended_listeners.append(listener)

    # ------------------------------------------------------------------ the directory
    def get(self, session_id: str) -> SessionEndpoint | None:
        """The session ``session_id``'s endpoint, or None."""
        hosted = self._sessions.get(session_id)
        return hosted.endpoint if hosted is not None else None

    def hosted(self, session_id: str) -> HostedSession | None:
        """The session ``session_id``, or None."""
        return self._sessions.get(session_id)

    def session_ids(self) -> list[str]:
        """The ids of the sessions now, the default one first."""
        return list(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def opening(self, requested: str) -> Future:
        """The session a hello names (``''``: the default one; ``new``: a new
        one with an id the host chooses; another id: that session, made if
        there is none), as a future of its :class:`SessionEndpoint`.

        Never waits for a build: the future is done at once when the session
        exists; when it must be made, the build is queued for the builder
        thread and the future is done (on that thread) once the session is
        made and started, or failed with :class:`ProtocolError` ``internal``
        (counted ``sessions_build_failed``; the other sessions play on). A
        hello for a session being made gets that build's future, not a
        second build.

        With a placement (a node of a cluster), a session other than the
        default one that this host neither holds nor makes is first placed,
        on the placement thread: the future fails with
        :class:`bridge.sessions.SessionElsewhere` when it lives (or is put)
        on another node, and goes on as above when it is put here (a
        ``new`` session gets its id first, so the redirect names it).

        Raises:
            ProtocolError: at once: ``out_of_range`` for a malformed id
                (counted ``refused_bad_id``), ``not_allowed`` at the cap
                (sessions made and being made; counted ``refused_at_cap``) or
                while the server stops.
        """
        try:
            session_id = check_session_id(requested)
        except ProtocolError:
            self.counters["refused_bad_id"] += 1
            raise
        with self._lock:
            if session_id != NEW_SESSION and session_id in self._sessions:
                return opened(self._sessions[session_id].endpoint)
            building = self._building.get(session_id) or self._placing.get(session_id)
            if building is not None:
                self.counters["hellos_joined_build"] += 1
                return building
            if self._closing:
                raise ProtocolError("not_allowed", "the server is stopping: it makes no new session")
            if self._placer is not None and session_id != DEFAULT_SESSION:
                if session_id == NEW_SESSION:
                    session_id = self._new_id()
                future: Future = Future()
                self._placing[session_id] = future
                self._placer.submit(self._place, session_id, future)
                return future
            return self._open_here(session_id)

    def _new_id(self) -> str:
        """A fresh session id (:data:`NEW_SESSION_ID_BYTES` random bytes in
        hex) that no session here has; the caller holds the lock."""
        session_id = secrets.token_hex(NEW_SESSION_ID_BYTES)
        while session_id in self._sessions or session_id in self._building or session_id in self._placing:
            session_id = secrets.token_hex(NEW_SESSION_ID_BYTES)
        return session_id

    def _place(self, session_id: str, future: Future) -> None:
        """Ask the placement where session ``session_id`` lives (on the
        placement thread) and settle ``future``: the redirect, a refusal, or
        the session made here (chained to its build's future)."""
        try:
            elsewhere = self.placement.place(session_id)
        except ProtocolError as error:
            elsewhere = error
        except Exception as error:  # the directory cannot be reached: a clear error, the sessions here play on
            log.exception("cannot place session %s", session_id)
            self.counters["placement_failed"] += 1
            elsewhere = ProtocolError("internal", f"the server could not ask the cluster's directory where session "
                                                  f"{session_id!r} lives ({type(error).__name__}); try again")
        with self._lock:
            self._placing.pop(session_id, None)
            if elsewhere is None:
                try:
                    if session_id in self._sessions:
                        here = opened(self._sessions[session_id].endpoint)
                    else:
                        here = self._building.get(session_id) or self._open_here(session_id)
                except ProtocolError as error:
                    elsewhere = error
        if elsewhere is not None:
            if isinstance(elsewhere, SessionElsewhere):
                self.counters["hellos_elsewhere"] += 1
            else:
                self.placement.forget(session_id)
            future.set_exception(elsewhere)
            return

        def settle(built: Future) -> None:
            error = (ProtocolError("not_allowed", f"the server stopped while making session {session_id!r}")
                     if built.cancelled() else built.exception())
            if error is None:
                future.set_result(built.result())
            else:
                self.placement.forget(session_id)
                future.set_exception(error)

        here.add_done_callback(settle)

    def _open_here(self, session_id: str) -> Future:
        """Make session ``session_id`` (``new``: with a fresh id) on this host:
        its build queued, as a future (the caller holds the lock).

        Raises:
            ProtocolError: ``not_allowed`` while the server stops or at the cap.
        """
        if self._closing:
            raise ProtocolError("not_allowed", "the server is stopping: it makes no new session")
        held = len(self._sessions) + len(self._building)
        if held >= self.max_sessions:
            self.counters["refused_at_cap"] += 1
            raise ProtocolError("not_allowed", (
                f"this server holds {held} sessions, its cap (setting max_sessions, "
                f"--max-sessions {self.max_sessions}): join one that exists, end one (/adaptive/session/end), "
                f"or wait until one has had no client for session_idle_s ({self.idle_s:g} s)"))
        if session_id == NEW_SESSION:
            session_id = self._new_id()
        # Under the lock: the build cannot finish (it takes the lock) before its future is listed.
        future = self._builder.submit(self._make, session_id)
        self._building[session_id] = future
        return future

    def open(self, requested: str) -> SessionEndpoint:
        """The session a hello names, as :meth:`opening`, waiting for it to be
        made (never call it on the builder thread, e.g. from a started-listener).

        Raises:
            ProtocolError: as :meth:`opening`, and ``internal`` if the session cannot be made.
        """
        return self.opening(requested).result()

    def wait_for_builds(self, timeout_s: float | None = None) -> None:
        """Return once every build asked for before this call has finished
        and whatever waited for it (the welcomes) has run: one builder thread
        runs builds, and their futures' callbacks, in order (with a
        placement, every placement asked for first).

        Raises:
            TimeoutError: not within ``timeout_s`` seconds.
        """
        if self._closing:
            return
        if self._placer is not None:  # placements first: one that puts a session here queues its build
            self._placer.submit(lambda: None).result(timeout_s)
        self._builder.submit(lambda: None).result(timeout_s)

    def building_ids(self) -> list[str]:
        """The ids of the sessions being made now."""
        with self._lock:
            return list(self._building)

    def _make(self, session_id: str) -> SessionEndpoint:
        """Make, register and start session ``session_id`` (on the builder thread).

        Raises:
            ProtocolError: ``internal``, naming why it could not be made; ``not_allowed`` if the server stopped meanwhile.
        """
        try:
            hosted = self._factory(session_id)
        except Exception as error:
            with self._lock:
                self._building.pop(session_id, None)
            self.counters["sessions_build_failed"] += 1
            log.exception("cannot make session %s", session_id)
            raise ProtocolError("internal", f"the server could not make session {session_id!r} "
                                            f"({type(error).__name__}: {error})") from None
        with self._lock:
            self._building.pop(session_id, None)
            if self._closing:
                self._stop_session(hosted)
                raise ProtocolError("not_allowed", f"the server stopped while making session {session_id!r}")
            hosted.empty_since_s = self.clock()  # until its first client is counted
            self._sessions[session_id] = hosted
            self.counters["sessions_created"] += 1
            try:
                for listener in self._started_listeners:
                    listener(hosted)
                if self._running:
                    self._start_session(hosted)
                    gc.freeze()  # its objects out of the collector's reach, as the server does at start
            except Exception as error:
                self._sessions.pop(session_id, None)
                self.counters["sessions_build_failed"] += 1
                log.exception("cannot start session %s", session_id)
                self._stop_session(hosted)
                raise ProtocolError("internal", f"the server could not start session {session_id!r} "
                                                f"({type(error).__name__}: {error})") from None
        log.info("session %s made (%d sessions)", session_id, len(self._sessions))
        return hosted.endpoint

    def end(self, session_id: str, reason: str) -> None:
        """End session ``session_id`` now (``reason``: ``request``, ``idle`` or
        ``server_stop``; counted ``sessions_ended_<reason>``): its clients are
        forgotten and the ended-listeners told, then its mapping thread and
        render thread stop, its recording is closed and its synthesizers freed.

        Raises:
            ProtocolError: ``not_allowed`` for the default session (unless the
                server stops), ``unknown_name`` for a session that does not exist.
        """
        with self._lock:
            if session_id == DEFAULT_SESSION and reason != "server_stop":
                raise ProtocolError("not_allowed", f"the {DEFAULT_SESSION!r} session ends only with the server "
                                                   "(allowed: the id of another session)")
            hosted = self._sessions.pop(session_id, None)
        if hosted is None:
            others = [s for s in self._sessions if s != DEFAULT_SESSION]
            shown = ", ".join(others[:8]) + (", ..." if len(others) > 8 else "")
            raise ProtocolError("unknown_name", f"no session {session_id!r} (sessions now: "
                                                f"{DEFAULT_SESSION}{', ' + shown if shown else ''})")
        self.counters[f"sessions_ended_{reason}"] += 1
        if self.placement is not None:
            self.placement.forget(session_id)
        gone = self.clients.remove_session(session_id)
        for listener in self._ended_listeners:
            try:
                listener(session_id, reason, gone)
            except Exception:  # ending must go on
                log.exception("error telling a transport that session %s ended", session_id)
        self._stop_session(hosted)
        log.info("session %s ended (%s; %d sessions)", session_id, reason, len(self._sessions))

    # ------------------------------------------------------------------ idle sessions
    def tick(self) -> list[str]:
        """End every session other than the default one that has had no
        client for ``session_idle_s`` (the host's thread calls it every
        :data:`TICK_SECONDS`; tests call it on a fake clock); returns their
        ids. A session whose render thread failed ends too (reason ``failed``)."""
        now = self.clock()
        idle = []
        failed = []
        with self._lock:
            for session_id, hosted in self._sessions.items():
                if session_id == DEFAULT_SESSION:
                    continue
                if hosted.realtime.failure is not None:
                    log.error("session %s: the render thread stopped: %r", session_id, hosted.realtime.failure)
                    failed.append(session_id)
                elif self.clients.count(session_id):
                    hosted.empty_since_s = None
                elif hosted.empty_since_s is None:
                    hosted.empty_since_s = now
                elif now - hosted.empty_since_s >= self.idle_s:
                    idle.append(session_id)
        for session_id, reason in [*((s, "failed") for s in failed), *((s, "idle") for s in idle)]:
            try:
                self.end(session_id, reason)
            except ProtocolError:  # ended meanwhile by a request
                pass
        return idle

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        """Start every session made so far (the default one: its render and
        mapping threads) and the host's thread that ends idle sessions."""
        with self._lock:
            self._running = True
            for hosted in self._sessions.values():
                self._start_session(hosted)
        self._thread = threading.Thread(target=self._run, name="adaptive-sessions", daemon=True)
        self._thread.start()

    def _start_session(self, hosted: HostedSession) -> None:
        if self.settings.start is StartMode.AT_ONCE:
            # Stamped at frame 0 by the render thread like any input (and recorded: a replay plays it too).
            hosted.realtime.submit(hosted.mapping.current.start_scene())
        hosted.realtime.start()
        hosted.mapping.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick()
            except Exception:  # a bug must not stop the expiry for good
                log.exception("error ending idle sessions")

    def close(self) -> None:
        """End every session but the default one (told ``server_stop``), stop
        the host's thread and the builder (a build under way finishes and is
        ended; queued ones are dropped, their hellos refused); the server
        stops the default session itself."""
        with self._lock:
            self._closing = True
        if self._placer is not None:
            self._placer.shutdown(wait=True, cancel_futures=True)
        self._builder.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        for session_id in [s for s in self.session_ids() if s != DEFAULT_SESSION]:
            try:
                self.end(session_id, "server_stop")
            except ProtocolError:
                pass

    def _stop_session(self, hosted: HostedSession) -> None:
        hosted.mapping.close()
        try:
            hosted.realtime.stop()  # closes the recording with its end frame
        finally:
            hosted.session.close()
            for name in ("blocks", "underruns"):
                self.counters[f"{name}_of_ended_sessions"] += hosted.realtime.counters[name]
