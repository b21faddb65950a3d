"""``adaptive serve``: the real-time server.

It runs the engine core (:class:`adaptive.session.Session`) in real time
(:class:`adaptive.realtime.RealtimeSession`: a bounded lookahead rendered
ahead of playback; render loops, :class:`adaptive.realtime.RenderLoop`,
render every session's blocks) and connects it to the transports:

* OSC over UDP (:mod:`bridge.osc_server`): scene input, hello/ping, and
  beat/bar/cue/transition/stinger/MIDI callbacks to subscribed clients;
* the same messages as JSON over ZeroMQ (:mod:`bridge.zmq_server`): a ROUTER
  control socket and a PUB socket of callbacks;
* audio blocks over a plain TCP stream and over ZeroMQ PUB (:mod:`bridge.audio`).

Everything binds to loopback unless another host is given explicitly.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from app.generators import register_generators
from app.settings import ServerSettings, StartMode
from bridge.audio import encode_block
from bridge.protocol import DEFAULT_SESSION

log = logging.getLogger("adaptive.server")


SWITCH_INTERVAL_SECONDS = 0.001
"""The interpreter's thread switch interval while serving (``sys.setswitchinterval``)."""


class Server:
    """A running server: its sessions (:class:`app.sessions.SessionHost`:
    the ``default`` one from the start, others made by a hello that asks),
    their render threads and the transports they share.

    The attributes ``session``, ``realtime``, ``mapping`` and ``recording``
    are the default session's.

    Args:
        settings: the server's settings.
        placement: where a cluster puts sessions (:class:`app.sessions.SessionPlacement`,
            given by :mod:`app.cluster` to the server of each node; None: a single server).

    Raises:
        AdaptiveError: the bank or SoundFont cannot be loaded.
        OSError: a port cannot be bound (with the port in the message).
    """

    def __init__(self, settings: ServerSettings, placement=None) -> None:
        from adaptive.cue import load_bank
        from adaptive.realtime import GcPauseMonitor
        from app.sessions import SessionHost
        from bridge.audio import TcpAudioServer, ZmqAudioPublisher, optional_token_authorizer, token_authorizer
        from bridge.osc_server import OscServer
        from bridge.zmq_server import ZmqServer

        register_generators()  # the composition root hands the generators to the engine
        self.settings = settings
        self.credentials = None
        if settings.credentials is not None:  # first: a bad folder stops the server before anything starts
            from adaptive.errors import ConfigError
            from bridge.access import load_credentials

            try:
                self.credentials = load_credentials(settings.credentials)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        self.session_id = DEFAULT_SESSION  # the session the server starts with; clients name it in logs
        from adaptive.cue import DEFAULT_BANK
        from adaptive.mapping import DEFAULT_MAPPING, ResolvedMapping, load_mapping
        from bridge.access import ClientTable, start_curve_authenticator
        from bridge.midi_out import MidiFileRecorder, VirtualMidiPort

        self.bank = load_bank(settings.bank)
        mapping_path = settings.mapping
        if mapping_path is None and settings.bank.resolve() == DEFAULT_BANK.resolve():
            mapping_path = DEFAULT_MAPPING
        mapping = load_mapping(mapping_path, self.bank) if mapping_path is not None else ResolvedMapping.from_bank(self.bank)
        # One table of clients for every session, whatever their transport: ids, roles, sessions, leases, caps.
        self.clients = ClientTable(lease_s=settings.client_lease_s, max_clients=settings.max_clients,
                                   max_clients_per_host=settings.max_clients_per_host)
        # Every session, the default one included, is made by the host the same way. Only a
        # mapping file the user named is watched: the embedded default is package data.
        self.sessions = SessionHost(settings, self.bank, mapping, self.clients,
                                    mapping_path=settings.mapping.resolve() if settings.mapping is not None else None,
                                    report_mapping_error=self._report_mapping_error, placement=placement)
        default = self.sessions.default
        self.session, self.realtime = default.session, default.realtime
        self.mapping, self.recording = default.mapping, default.recording
        self.gc_monitor = GcPauseMonitor()
        self.curve_authenticator = None
        self.midi_recorder = MidiFileRecorder() if settings.midi_file is not None else None
        self.virtual_midi = None
        self._closers: list = []
        try:
            if settings.virtual_midi:
                self.virtual_midi = VirtualMidiPort(self.session.parts, settings.sample_rate_hz,
                                                    self.realtime.server_time_seconds)
                self._closers.append(self.virtual_midi.close)
            if self.credentials is not None:
                import zmq

                self.curve_authenticator = start_curve_authenticator(zmq.Context.instance(), self.credentials)
            # With credentials, a TCP audio client sends the client_id of its welcome first, and gets
            # that client's session; without, a token is optional (none: the default session).
            if self.credentials is not None:
                authorize = token_authorizer(self._audio_token_session)
            else:
                authorize = optional_token_authorizer(self._audio_token_session,
                                                      only_default=lambda: len(self.sessions) == 1)
            self.audio_tcp = _bind("audio TCP", settings.audio_tcp_port,
                                   lambda: TcpAudioServer(settings.host, settings.audio_tcp_port,
                                                          authorize=authorize))
            self._closers.append(self.audio_tcp.close)
            self.sessions.set_audio_tcp_port(self.audio_tcp.port)
            self.audio_zmq = _bind("ZeroMQ audio", settings.zmq_audio_port,
                                   lambda: ZmqAudioPublisher(f"tcp://{settings.host}:{settings.zmq_audio_port}",
                                                             curve=self.credentials))
            self._closers.append(self.audio_zmq.close)
            welcome = default.endpoint.welcome
            self.osc = _bind("OSC", settings.osc_port, lambda: OscServer(
                self.bank, self.realtime.submit, self.realtime.server_time_seconds, settings.sample_rate_hz,
                welcome, settings.host, settings.osc_port, part_info=self.session.parts, mapping=self.mapping,
                credentials=self.credentials, clients=self.clients, sessions=self.sessions))
            self._closers.append(self.osc.close)
            self.zmq = _bind("ZeroMQ control", settings.zmq_control_port, lambda: ZmqServer(
                self.bank, self.realtime.submit, self.realtime.server_time_seconds, settings.sample_rate_hz,
                welcome, settings.host, settings.zmq_control_port, settings.zmq_events_port,
                part_info=self.session.parts, mapping=self.mapping, credentials=self.credentials,
                clients=self.clients, sessions=self.sessions))
            self._closers.append(self.zmq.close)
        except BaseException:
            self._close_transports()
            self.session.close()
            raise
        self._attach_outputs(default)
        self.sessions.add_started_listener(self._attach_outputs)
        self.sessions.add_ended_listener(self._session_ended)

    def _attach_outputs(self, hosted) -> None:
        """Give session ``hosted`` its outputs: the transports' sinks for it
        (callbacks and audio to its clients only); the MIDI file and the
        virtual MIDI port play the default session."""
        from bridge.sessions import session_topic
        from bridge.audio import ZmqAudioPublisher

        session_id = hosted.session_id
        hosted.realtime.add_sink(self.osc.sink_for(session_id))
        hosted.realtime.add_sink(self.zmq.sink_for(session_id))
        if session_id == DEFAULT_SESSION:
            for extra in (self.midi_recorder, self.virtual_midi):
                if extra is not None:
                    hosted.realtime.add_sink(extra.on_block)
            hosted.realtime.add_sink(self._publish_audio)
        else:
            topic = session_topic(session_id, ZmqAudioPublisher.TOPIC)
            hosted.realtime.add_sink(lambda block: self._publish_session_audio(block, session_id, topic))

    def _session_ended(self, session_id: str, reason: str, clients: list) -> None:
        """Session ``session_id`` ended: tell its clients, close its TCP audio streams."""
        self.osc.session_ended(session_id, reason, clients)
        self.zmq.session_ended(session_id, reason, clients)
        self.audio_tcp.drop_session(session_id)

    def _audio_token_session(self, token: str, host: str) -> str | None:
        """The session of a TCP audio connection from ``host`` that sent
        ``token``: that of the client whose client_id it is, if that client
        is from that host; else None (refused)."""
        client = self.clients.by_id(token)
        if client is None or client.host != host:
            return None
        return client.session_id

    def access_line(self) -> str:
        """What the server asks of clients, as printed at start."""
        if self.credentials is None:
            return ("access   no credentials: loopback only, every client may control "
                    "(docs/network.md says how to set credentials)")
        roles = ", ".join(role.value for role in self.credentials.secrets) or "none"
        return (f"access   credentials {self.credentials.folder}: OSC roles with a secret: {roles}; "
                f"{len(self.credentials.curve_clients)} allow-listed ZeroMQ CURVE keys; server key "
                f"{self.credentials.curve_public_key.decode()}")

    def _report_mapping_error(self, session_id: str, path: str, message: str) -> None:
        """Tell every client of session ``session_id`` that an edited mapping
        file is invalid (from its mapping thread)."""
        from adaptive.events import EventKind, MusicEvent

        osc, zmq = getattr(self, "osc", None), getattr(self, "zmq", None)
        hosted = self.sessions.hosted(session_id)
        if osc is not None:
            osc.broadcast("mapping_error", {"path": path[-200:], "message": message}, session_id)
        if zmq is not None and hosted is not None:
            zmq.broadcast_events([MusicEvent(hosted.session.frame, EventKind.MAPPING_ERROR,
                                             {"path": path, "message": message})], session_id)

    def _publish_audio(self, block) -> None:
        """Sink of the default session: its audio blocks to its TCP clients and on ZeroMQ topic ``audio``."""
        self._publish_session_audio(block, DEFAULT_SESSION, self.audio_zmq.TOPIC)

    def _publish_session_audio(self, block, session_id: str, topic: bytes) -> None:
        """Sink of session ``session_id`` (on its render thread): its audio
        blocks to its TCP clients and on its ZeroMQ ``topic``; nothing is
        encoded when nobody listens."""
        to_zmq = self.audio_zmq.has_subscribers(topic)
        if not to_zmq and not self.audio_tcp.has_clients(session_id):
            return  # nobody listens: no encoding
        header, pcm = encode_block(block.sequence, block.first_frame, block.audio, self.settings.sample_rate_hz,
                                   self.audio_tcp.sample_format)
        self.audio_tcp.publish_encoded(header, pcm, session_id)
        if not to_zmq:
            return
        if self.audio_zmq.sample_format == self.audio_tcp.sample_format:
            self.audio_zmq.publish_encoded(header, pcm, topic)
        else:
            self.audio_zmq.publish_encoded(*encode_block(block.sequence, block.first_frame, block.audio,
                                                         self.settings.sample_rate_hz, self.audio_zmq.sample_format),
                                           topic)

    def endpoints(self) -> list[str]:
        """One line per endpoint, as printed at start (the ports actually bound)."""
        bound = self.settings.model_copy(update={
            "osc_port": self.osc.port, "audio_tcp_port": self.audio_tcp.port,
            "zmq_audio_port": _port_of(self.audio_zmq.endpoint), "zmq_control_port": _port_of(self.zmq.control_endpoint),
            "zmq_events_port": _port_of(self.zmq.events_endpoint)})
        return endpoint_lines(bound) + ([f"midi     virtual port {self.virtual_midi.name!r}"]
                                        if self.virtual_midi is not None else [])

    def describe(self) -> list[str]:
        """What this server plays, one line each, as printed at start: the
        mapping, the bank, the SoundFont, the generator and when the music starts."""
        from adaptive.cue import DEFAULT_BANK
        from adaptive.mapping import DEFAULT_MAPPING
        from app.generators import describe_generator

        mapping = self.mapping.current
        if mapping.source == "<bank>":
            mapping_text = "the bank's own (no mapping file; --mapping FILE to give one)"
        elif Path(mapping.source).resolve() == DEFAULT_MAPPING.resolve():
            mapping_text = f"{mapping.source} (the embedded default; --mapping FILE for yours)"
        else:
            mapping_text = f"{mapping.source} (watched: a saved edit plays from the next bar)"
        bank_path = self.settings.bank.resolve()
        embedded = " (the embedded default)" if bank_path == DEFAULT_BANK.resolve() else ""
        lines = [f"mapping   {mapping_text}",
                 f"bank      {bank_path}{embedded}: {len(self.bank.cues)} cues, {len(self.bank.stingers)} stingers",
                 f"soundfont {self.session.soundfont} ({self.session.soundfont_origin})",
                 f"generator {describe_generator(self.session.generator_name)}"]
        if self.settings.start is StartMode.AT_ONCE:
            scene = mapping.start_scene()
            lines.append(f"start     at once: {scene.emotion}, intensity {scene.intensity:g}"
                         + (f", location {scene.location!r}" if scene.location else "")
                         + " (the mapping's [start]; --start wait to wait for the game)")
        else:
            lines.append("start     silent until the first scene message (--start wait)")
        return lines

    def mapping_warnings(self) -> str:
        """The mapping's warnings as ``adaptive check`` prints them (one per
        line, ``FILE:LINE: warning: KEY: message``), or nothing."""
        from adaptive.mapping import check_text, format_report

        mapping = self.mapping.current
        if not mapping.text:
            return ""
        return format_report(mapping.source, check_text(mapping.text, self.bank, mapping.source))

    def start(self) -> None:
        """Start rendering and listening.

        Everything built so far (the bank, every synthesizer, the stems: tens
        of thousands of objects) is moved out of the garbage collector's reach
        first (``gc.freeze``): a full collection walking them paused every
        thread for 20-57 ms, longer than the 40 ms lookahead, and caused
        underruns (docs/benchmarks.md); with them frozen the longest block
        measured 11 ms.
        """
        gc.collect()
        gc.freeze()
        # Another Python thread (the generation worker, the socket threads)
        # holding the GIL keeps a waking render thread waiting up to the switch
        # interval; 5 ms (CPython's default) made the 99th-percentile block
        # 8 ms against a busy thread, 1 ms makes it 0.7-1.6 ms (docs/benchmarks.md).
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self.gc_monitor.install()
        # Starts the default session (at once: its mapping's starting scene, stamped at frame 0 by the
        # render thread like any input, and recorded) and the host's thread that ends idle sessions.
        self.sessions.start()
        self.osc.start()
        self.zmq.start()

    def close(self) -> None:
        """Stop every thread, close every socket, finish every session's recording."""
        self.sessions.close()  # every session but the default one, its clients told
        self.mapping.close()
        self.osc.close()
        self.zmq.close()
        self.realtime.stop()
        self.gc_monitor.remove()
        if self.midi_recorder is not None:
            self.midi_recorder.close(self.settings.midi_file, self.session, end_frame=self.session.frame)
        self._close_transports()
        self.session.close()

    def _close_transports(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing must go on for the others
                log.exception("error while closing")
        self._closers.clear()
        if self.curve_authenticator is not None:
            self.curve_authenticator.stop()
            self.curve_authenticator = None


def endpoint_lines(settings: ServerSettings) -> list[str]:
    """The endpoint lines ``adaptive serve`` prints for ``settings`` (its
    ports as given; README.md shows them for the defaults, checked by
    tests/test_docs_match_code.py)."""
    host = settings.host
    return [
        f"osc      udp://{host}:{settings.osc_port}  (control in, callbacks out; see docs/protocol.md)",
        f"audio    tcp://{host}:{settings.audio_tcp_port}  (PCM blocks, int16, {settings.sample_rate_hz} Hz)",
        f"audio    tcp://{host}:{settings.zmq_audio_port}  (ZeroMQ PUB, topic 'audio')",
        f"control  tcp://{host}:{settings.zmq_control_port}  (ZeroMQ ROUTER, JSON messages; see docs/protocol.md)",
        f"events   tcp://{host}:{settings.zmq_events_port}  (ZeroMQ PUB, JSON callbacks, topics 'events' and 'midi')",
    ]


def _port_of(endpoint: str) -> int:
    """The port of a ZeroMQ endpoint ``tcp://host:port``."""
    return int(endpoint.rsplit(":", 1)[1])


def _bind(what: str, port: int, make):
    try:
        return make()
    except OSError as error:
        from adaptive.errors import AdaptiveError

        raise AdaptiveError(f"cannot open the {what} port {port}: {error.strerror or error} "
                            "(choose another port, or 0 for any free one)") from None


SERVER_NICE = -10
"""Nice value of every thread of ``adaptive serve`` (when real-time priority is on)."""


def raise_process_priority(nice: int = SERVER_NICE) -> str | None:
    """Give the calling thread, and so every thread it starts afterwards (on
    Linux a thread inherits its creator's nice value), the nice value
    ``nice``. Call it before the server starts its threads.

    Why: the render thread (SCHED_FIFO) must take the GIL from whichever of
    the server's Python threads holds it; if that thread is preempted by
    another process meanwhile, the render thread waits for it (a priority
    inversion: a 97 ms block in a 10-minute run on a loaded machine). At nice
    -10 the others are preempted far less.

    Returns:
        None on success, else why not (no permission). Never raises.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except (OSError, AttributeError) as error:
        return f"{getattr(error, 'strerror', None) or error}"
    return None


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGINT or SIGTERM; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="adaptive: %(message)s", stream=sys.stderr)
    nice_problem = raise_process_priority() if settings.realtime_priority else None
    server = Server(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"adaptive: serving session {server.session_id} on bank {server.bank.name!r} "
          f"({settings.sample_rate_hz} Hz, blocks of {settings.block_frames} frames, "
          f"lookahead {settings.lookahead_ms:g} ms)", flush=True)
    for line in server.describe() + server.endpoints():
        print(line, flush=True)
    warnings = server.mapping_warnings()
    if warnings:
        print(warnings, file=sys.stderr, flush=True)
    print(server.access_line(), flush=True)
    print(f"sessions  {DEFAULT_SESSION!r} now; up to {settings.max_sessions} at once (--max-sessions), each other "
          f"one ending {settings.session_idle_s} s after its last client leaves (--session-idle-s; "
          "docs/sessions.md), rendered by "
          + (f"{settings.render_threads} render loop{'s' if settings.render_threads > 1 else ''}"
             if settings.render_threads else "a render thread per session") + " (--render-threads)", flush=True)
    priority_checked = False
    try:
        while not stop.wait(0.5):
            if not priority_checked and settings.realtime_priority:
                priority_checked = True
                problem = server.realtime.priority_problem
                if nice_problem is not None:
                    log.warning("the server's threads run at normal priority (nice %d refused: %s)",
                                SERVER_NICE, nice_problem)
                if problem is not None:
                    log.warning("the render thread runs at normal priority (real-time priority %d refused: %s); "
                                "on a busy machine that risks underruns: allow it (run as root, give CAP_SYS_NICE, "
                                "or `ulimit -r %d`) or pass --realtime-priority 0 to not ask",
                                settings.realtime_priority, problem, settings.realtime_priority)
            if server.realtime.failure is not None:
                log.error("the render thread stopped: %r", server.realtime.failure)
                return 1
    finally:
        server.close()
        realtime, gc_monitor = server.realtime, server.gc_monitor
        print(f"adaptive: stopped ({realtime.counters['blocks']} blocks, "
              f"{realtime.counters['underruns']} underruns, {server.osc.counters['rejected']} rejected messages, "
              f"{server.session.generation.counters['generation_misses']} generation misses, "
              f"{server.clients.counters['clients_expired']} clients dropped for silence)",
              flush=True)
        sessions = server.sessions.counters
        ended = sum(n for key, n in sessions.items() if key.startswith("sessions_ended_"))
        print(f"adaptive: sessions: {sessions['sessions_created']} made ({ended} ended: "
              f"{sessions['sessions_ended_request']} on request, {sessions['sessions_ended_idle']} idle, "
              f"{sessions['sessions_ended_failed']} failed), {sessions['sessions_build_failed']} could not be made, "
              f"{sessions['refused_at_cap']} refused at the cap; "
              f"the other sessions rendered {sessions['blocks_of_ended_sessions']} blocks with "
              f"{sessions['underruns_of_ended_sessions']} underruns", flush=True)
        print(f"adaptive: timing: longest block {realtime.max_block_ms:.1f} ms, latest wake-up "
              f"{realtime.max_wake_delay_ms:.1f} ms, longest garbage collection {gc_monitor.max_pause_ms:.1f} ms "
              f"(collections by generation: {'/'.join(map(str, gc_monitor.collections))})", flush=True)
        for at_seconds, block_ms, wake_ms in list(realtime.stalls)[-10:]:
            print(f"adaptive: stall at {at_seconds:.3f} s: block {block_ms:.1f} ms, wake-up {wake_ms:.1f} ms late",
                  flush=True)
    return 0
