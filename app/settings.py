"""What ``adaptive serve`` runs with: :class:`ServerSettings`, frozen and
validated, whether it comes from the command line, a ``--config`` TOML file or
code (``Server(ServerSettings(...))`` gets the same checks)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from adaptive.clock import DEFAULT_SAMPLE_RATE_HZ
from adaptive.cue import DEFAULT_BANK
from adaptive.errors import ConfigError
from adaptive.realtime import MAX_LOOKAHEAD_MS
from adaptive.registry import GENERATORS
from app.generators import DEFAULT_GENERATOR
from bridge.access import LEASE_S, MAX_CLIENTS, MAX_CLIENTS_PER_HOST, how_to_set_credentials, is_loopback


def _within(low: int | float, high: int | float) -> BeforeValidator:
    """A number from ``low`` to ``high``; a whole one if ``low`` is an int (booleans are not numbers here)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{value!r} is out of range (allowed: {low}..{high})")
        if isinstance(low, int) and not isinstance(value, int):
            raise ValueError(f"{value!r} is not allowed (allowed: a whole number from {low} to {high})")
        return value

    return BeforeValidator(check)


def _strict_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not allowed (allowed: true or false)")
    return value


def _registered_generator(name: str) -> str:
    if name not in GENERATORS:
        raise ValueError(f"{name!r} is not allowed (allowed: {', '.join(GENERATORS)})")
    return name


MAX_SESSIONS = 16
"""Sessions a server holds at once, the default one included (``max_sessions``)."""

SESSION_IDLE_S = 60
"""A session other than the default one ends after this many seconds without a client (``session_idle_s``)."""

RENDER_THREADS = 2
"""Render loops of a server (``render_threads``): two, one per core of this
project's 2-core machine. One loop for every session took the least CPU but
underran ten times as often at 8 sessions (one thread's share of the
interpreter lock and of a loaded machine's CPU, for every session at once);
two underran as rarely as a thread per session (docs/benchmarks.md,
"Sessions per core")."""

MAX_RENDER_THREADS = 64
"""The most render loops a server may have (``render_threads``)."""

Port = Annotated[int, _within(0, 65535)]
"""A TCP or UDP port; 0: any free one."""


class StartMode(str, Enum):
    """When a server's music starts (``--start``)."""

    AT_ONCE = "at_once"
    """From the first frame, playing the mapping's starting scene (``[start]``,
    docs/mapping.md): music and beat/bar callbacks before any game connects."""
    WAIT = "wait"
    """Silent, with no callbacks, until the first scene message."""


class ServerSettings(BaseModel):
    """What ``adaptive serve`` runs with. Frozen; every value is checked when
    it is made, with the allowed range in the message.

    Attributes:
        bank: cue bank file (default: the embedded bank).
        soundfont: SoundFont (None: the default one).
        sample_rate_hz: session rate, 8000..192000 (``sample_rate`` in a config file).
        block_frames: frames per rendered (and sent) block, 32..4096. The default,
            1024 (21.3 ms at 48 kHz), is Wwise's default audio frame size
            (and FMOD's DSP buffer length). The render thread wakes once per
            block, and on this project's benchmark machine each wake-up costs
            far more than the frames it renders (Python and FluidSynth start
            from cold caches after each sleep): the same 90 Hz session took
            8.4-10.3 % of a core with 1024 against 11.3-16 % with 512, for
            about 10 ms more reaction time (docs/benchmarks.md). 512 (Unity's
            "good latency" buffer) is the choice when latency matters more.
        lookahead_ms: how far ahead of playback the server renders (the latency
            floor), 0..:data:`adaptive.realtime.MAX_LOOKAHEAD_MS`.
        host: interface to bind every socket to (loopback by default).
        osc_port: UDP port for OSC (0: any free port).
        audio_tcp_port: TCP port of the plain audio stream (0: any free port).
        zmq_audio_port: port of the ZeroMQ PUB audio socket (0: any free port).
        zmq_control_port: ZeroMQ ROUTER port for JSON control messages (0: any free port).
        zmq_events_port: ZeroMQ PUB port for JSON callbacks, topics 'events' and 'midi' (0: any free port).
        record: where to write the session recording (None: no recording).
        midi_file: where to write the notes played as a Standard MIDI File at exit (None: nowhere).
        virtual_midi: also play the notes on a virtual MIDI port "adaptive" (needs python-rtmidi
            and a platform with virtual ports).
        seed: seeds generated parts, 0..2**32-1.
        generator: the part generator of generated layers, bridges and
            stingers (a name of :data:`adaptive.registry.GENERATORS`).
        realtime_priority: the render thread's SCHED_FIFO priority (1..99) so a
            busy machine cannot starve it (underruns); 0: normal scheduling.
            Refused without permission (root, CAP_SYS_NICE or ``ulimit -r``):
            the server then logs why and goes on at normal priority.
        mapping: the sound designer's mapping file, watched and reloaded while
            serving (None: the embedded default mapping with the embedded bank,
            else the bank's own).
        start: when the music starts (:class:`StartMode`): ``at_once`` (the
            default) plays the mapping's starting scene from the first frame;
            ``wait`` stays silent until the first scene message.
        credentials: a credentials folder (``adaptive credentials DIR``: role
            secrets and ZeroMQ CURVE keys; docs/network.md). None: no
            credentials, every client may do everything, which only a loopback
            ``host`` allows (:class:`ConfigError`-worthy otherwise).
        client_lease_s: a client silent this long (seconds, 1..86400) is dropped.
        max_clients: clients of one session at once (any transport), 1..10000.
        max_clients_per_host: clients from one source host at once, 1..10000.
        max_sessions: sessions the server holds at once, the default one
            included, 1..1000 (docs/sessions.md); a hello that would make one
            more is refused, naming this setting.
        session_idle_s: a session other than the default one ends after this
            many seconds without a client, 1..86400.
        render_threads: threads that render the sessions' blocks, 0..64:
            N render loops (:class:`adaptive.realtime.RenderLoop`: one
            wake-up per block for all their sessions; docs/sessions.md,
            "Render loops: many sessions per render thread"), each session on the one holding fewest;
            default :data:`RENDER_THREADS` (2); 0: a render thread per
            session (as before the loops; for comparison).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    bank: Path = DEFAULT_BANK
    soundfont: Path | None = None
    sample_rate_hz: Annotated[int, _within(8000, 192000)] = Field(DEFAULT_SAMPLE_RATE_HZ, alias="sample_rate")
    block_frames: Annotated[int, _within(32, 4096)] = 1024
    lookahead_ms: Annotated[float, _within(0.0, MAX_LOOKAHEAD_MS)] = 40.0
    realtime_priority: Annotated[int, _within(0, 99)] = 10
    host: str = "127.0.0.1"
    osc_port: Port = 9000
    audio_tcp_port: Port = 9001
    zmq_audio_port: Port = 9002
    zmq_control_port: Port = 9003
    zmq_events_port: Port = 9004
    record: Path | None = None
    midi_file: Path | None = None
    virtual_midi: Annotated[bool, BeforeValidator(_strict_bool)] = False
    seed: Annotated[int, _within(0, 2**32 - 1)] = 0
    generator: Annotated[str, AfterValidator(_registered_generator)] = DEFAULT_GENERATOR
    mapping: Path | None = None
    start: StartMode = StartMode.AT_ONCE
    credentials: Path | None = None
    client_lease_s: Annotated[int, _within(1, 86_400)] = LEASE_S
    max_clients: Annotated[int, _within(1, 10_000)] = MAX_CLIENTS
    max_clients_per_host: Annotated[int, _within(1, 10_000)] = MAX_CLIENTS_PER_HOST
    max_sessions: Annotated[int, _within(1, 1000)] = MAX_SESSIONS
    session_idle_s: Annotated[int, _within(1, 86_400)] = SESSION_IDLE_S
    render_threads: Annotated[int, _within(0, MAX_RENDER_THREADS)] = RENDER_THREADS

    @model_validator(mode="after")
    def _credentials_off_loopback(self) -> ServerSettings:
        if self.credentials is None and not is_loopback(self.host):
            raise ValueError(f"host {self.host!r} is not loopback, and off loopback the server needs credentials: "
                             + how_to_set_credentials())
        return self

    @classmethod
    def from_values(cls, values: dict[str, Any], where: str = "") -> ServerSettings:
        """Settings from a config file's keys (``sample_rate`` for ``sample_rate_hz``).

        Raises:
            ConfigError: an unknown key or a value out of range, prefixed with ``where``.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(where + _first_problem(error)) from None


CONFIG_KEYS = tuple(field.alias or name for name, field in ServerSettings.model_fields.items())
"""The keys of a ``--config`` file (and, with ``-`` for ``_``, the options of ``adaptive serve``)."""


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    key = ".".join(str(part) for part in problem["loc"])
    if not key:  # a rule over several settings (credentials off loopback)
        cause = problem.get("ctx", {}).get("error")
        return str(cause) if cause is not None else problem["msg"]
    if problem["type"] == "extra_forbidden":
        return f"unknown setting {key!r} (allowed: {', '.join(CONFIG_KEYS)})"
    cause = problem.get("ctx", {}).get("error")
    if isinstance(cause, ValueError):
        return f"{key} {cause}"
    return f"{key} {problem['input']!r} is not allowed ({problem['msg']})"
