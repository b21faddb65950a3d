"""The ``adaptive`` command.

Subcommands:
  render TIMELINE -o out.wav [--midi out.mid] [--events out.json]   offline render
  serve [--config FILE]                                               the real-time server (OSC, ZeroMQ, TCP audio)
  cluster --address HEAD [serve options]                              serve on every node of a Ray cluster (docs/cluster.md)
  replay RECORDING -o out.wav                                         a served session, rendered again offline
  bank [--bank FILE]                                                  list a cue bank's cues, layers, stingers and themes
  send [--host H] [--port P] [--session S] MESSAGE ARGS...            send one message to a running server (session S)
  monitor [--host H] [--port P] [--session S] [--midi] [--seconds N]  print a running server's callbacks live
  check MAPPING [--bank FILE]                                         check a mapping: every error, then warnings
  mapping export [--host H] [--port P] -o FILE                        write a running server's live mapping as TOML
  plot mapping MAPPING -o map.png                                     the emotion plane, cue regions, transitions
  plot session EVENTS_OR_RECORDING -o session.png                     emotion, intensity, cues, gains over time

User mistakes (bad files, unknown names, values out of range) print one clear
``adaptive: error: ...`` message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from adaptive.clock import DEFAULT_SAMPLE_RATE_HZ
from adaptive.cue import DEFAULT_BANK
from adaptive.errors import AdaptiveError
from adaptive.registry import GENERATORS
from app.generators import DEFAULT_GENERATOR, register_generators




def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", type=Path, default=None, help="cue bank TOML file (default: the embedded bank)")
    parser.add_argument("--soundfont", type=Path, default=None,
                        help="General MIDI SoundFont .sf2/.sf3 (default: $ADAPTIVE_SOUNDFONT, else the system's "
                             "MuseScore General, else TimGM6mb)")


def _sample_rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of Hz") from None
    if not 8000 <= value <= 192000:
        raise argparse.ArgumentTypeError(f"{value} Hz is out of range (allowed: 8000..192000)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``adaptive`` command."""
    parser = argparse.ArgumentParser(prog="adaptive", description="Adaptive soundtrack server for games and VR.")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="render a timeline of scene states to audio, MIDI and events")
    render.add_argument("timeline", type=Path, help="timeline file (TOML or JSON; see docs/timeline.md)")
    render.add_argument("-o", "--output", type=Path, required=True, help="output WAV file")
    render.add_argument("--midi", type=Path, help="also write the played notes as a Standard MIDI File")
    render.add_argument("--events", type=Path, help="also write beats, bars, cue changes, transitions and stingers as JSON")
    render.add_argument("--sample-rate", type=_sample_rate, default=DEFAULT_SAMPLE_RATE_HZ, help="Hz (default 48000)")
    render.add_argument("--seed", type=int, default=None, help="override the timeline's seed")
    render.add_argument("--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default="PCM_16", help="WAV sample format")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    _generator_option(render)
    _common(render)
    _mapping_option(render)

    _serve_parser(commands)

    replay = commands.add_parser("replay", help="render a session recording offline, bit for bit as served")
    replay.add_argument("recording", type=Path, help="a recording written by 'adaptive serve --record'")
    replay.add_argument("-o", "--output", type=Path, required=True, help="output WAV file")

    bank = commands.add_parser("bank", help="list the cues, layers, stingers and transitions of a cue bank")
    _common(bank)

    send = commands.add_parser("send", help="send one message to a running server (e.g. 'send scene calm 0.5 forest')")
    _client_options(send)
    send.add_argument("message", help="message name: " + ", ".join(SEND_MESSAGES))
    send.add_argument("values", nargs="*", metavar="ARG", help="its arguments, in order (see docs/protocol.md)")

    monitor = commands.add_parser("monitor", help="print a running server's beats, bars, cues and stingers as they come")
    _client_options(monitor)
    monitor.add_argument("--midi", action="store_true", help="also print the MIDI events played")
    monitor.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")

    check = commands.add_parser("check", help="check a mapping file: every error (with its line), then warnings")
    check.add_argument("mapping", type=Path, help="mapping TOML file (see docs/mapping.md)")
    check.add_argument("--bank", type=Path, default=None,
                       help="cue bank (default: the mapping's `bank`, else the embedded bank)")

    mapping = commands.add_parser("mapping", help="the live mapping of a running server")
    mapping_commands = mapping.add_subparsers(dest="mapping_command", required=True)
    export = mapping_commands.add_parser("export", help="write a running server's live mapping to a TOML file")
    _client_options(export)
    export.add_argument("-o", "--output", type=Path, required=True, help="the TOML file to write")

    credentials = commands.add_parser("credentials", help="make a credentials folder for a server off loopback "
                                      "(role secrets, ZeroMQ CURVE keys; see docs/network.md)")
    credentials.add_argument("folder", type=Path, help="the folder to make (existing files are kept)")

    _plot_parser(commands)
    return parser


def _serve_parser(commands) -> None:
    """``adaptive serve`` and ``adaptive cluster``: their options name the settings of
    :class:`app.settings.ServerSettings`."""
    serve = commands.add_parser("serve", help="run the real-time server (OSC and ZeroMQ; see docs/protocol.md)")
    _server_options(serve)
    cluster = commands.add_parser("cluster", help="serve on every node of a Ray cluster, sessions placed by a "
                                                  "directory (pip install '.[cluster]'; docs/cluster.md)")
    cluster.add_argument("--address", required=True,
                         help="the Ray cluster's head, HOST:PORT (as given to 'ray start --address'), or 'auto'")
    cluster.add_argument("--advertise-host", help="the host clients reach each node at (default: --host, or the "
                                                  "node's IP address when --host is 0.0.0.0)")
    cluster.add_argument("--no-head-sessions", action="store_true",
                         help="serve only on Ray's worker nodes, not on its head (as on Kubernetes)")
    cluster.add_argument("--endpoints-file", type=Path, help="write every node's endpoints there as JSON once they "
                                                             "serve (and again when nodes join or leave)")
    _server_options(cluster)


def _server_options(serve: argparse.ArgumentParser) -> None:
    """The options of ``adaptive serve`` (also ``adaptive cluster``'s, for every node)."""
    serve.add_argument("--config", type=Path, help="server settings TOML (keys as the options below, with _ for -)")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--osc-port", type=int, help="UDP port for OSC (default 9000; 0 = any free port)")
    serve.add_argument("--audio-tcp-port", type=int, help="TCP port of the audio stream (default 9001)")
    serve.add_argument("--zmq-audio-port", type=int, help="ZeroMQ PUB audio port (default 9002)")
    serve.add_argument("--zmq-control-port", type=int, help="ZeroMQ ROUTER port for JSON control (default 9003)")
    serve.add_argument("--zmq-events-port", type=int, help="ZeroMQ PUB port for JSON callbacks (default 9004)")
    serve.add_argument("--lookahead-ms", type=float, help="render-ahead of playback, ms (default 40)")
    serve.add_argument("--realtime-priority", type=int,
                       help="SCHED_FIFO priority of the render thread, 1..99 (default 10; 0: normal scheduling)")
    serve.add_argument("--block-frames", type=int, help="frames per audio block, 32..4096 (default 1024, 21.3 ms at 48 kHz; 512 reacts ~10 ms sooner for more CPU)")
    serve.add_argument("--sample-rate", type=_sample_rate, help="Hz (default 48000)")
    serve.add_argument("--record", type=Path, help="write a session recording (replay it with 'adaptive replay')")
    serve.add_argument("--midi-file", type=Path, help="write the notes played as a Standard MIDI File at exit")
    serve.add_argument("--virtual-midi", action="store_true", default=None,
                       help="also play the notes on a virtual MIDI port 'adaptive' (needs python-rtmidi)")
    serve.add_argument("--seed", type=int, help="seed of generated parts (default 0)")
    _generator_option(serve, default=None)
    serve.add_argument("--bank", type=Path, help="cue bank TOML file (default: the embedded bank)")
    serve.add_argument("--soundfont", type=Path, help="General MIDI SoundFont .sf2/.sf3 (default: as for render)")
    serve.add_argument("--credentials", type=Path, help="credentials folder made by 'adaptive credentials DIR' "
                       "(needed off loopback; default: $ADAPTIVE_CREDENTIALS; see docs/network.md)")
    serve.add_argument("--client-lease-s", type=int, help="drop a client silent this many seconds (default 30)")
    serve.add_argument("--max-clients", type=int, help="clients of one session at once (default 64)")
    serve.add_argument("--max-sessions", type=int, help="sessions at once, the default one included (default 16; "
                                                        "docs/sessions.md)")
    serve.add_argument("--session-idle-s", type=int, help="end a session (not the default one) after this many "
                                                          "seconds without a client (default 60)")
    serve.add_argument("--render-threads", type=int, help="render loops rendering the sessions, 0..64 (default 2; "
                                                          "0: a thread per session)")
    serve.add_argument("--max-clients-per-host", type=int, help="clients from one host at once (default 16)")
    serve.add_argument("--mapping", type=Path, help="the sound designer's mapping (watched: edits take effect at "
                                                    "the next bar; default: the embedded bank's mapping)")
    serve.add_argument("--start", choices=("at_once", "wait"),
                       help="at_once (default): play the mapping's starting scene ([start]) from the first frame, "
                            "with beat/bar callbacks; wait: silent until the first scene message")


def _plot_parser(commands) -> None:
    """``adaptive plot mapping`` and ``adaptive plot session``."""
    plot = commands.add_parser("plot", help="draw a mapping or a session to a PNG")
    plot_commands = plot.add_subparsers(dest="plot_command", required=True)
    plot_mapping = plot_commands.add_parser("mapping", help="the emotion plane per location and the transitions")
    plot_mapping.add_argument("mapping", type=Path, help="mapping TOML file")
    plot_mapping.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    plot_mapping.add_argument("--bank", type=Path, default=None,
                              help="cue bank (default: the mapping's `bank`, else the embedded bank)")
    plot_session = plot_commands.add_parser("session", help="emotion, intensity, cues, transitions, stingers and "
                                                            "layer gains over time")
    plot_session.add_argument("events", type=Path, help="an events JSON file ('adaptive render --events') or a "
                                                        "session recording ('adaptive serve --record')")
    plot_session.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    plot_session.add_argument("--soundfont", type=Path, default=None, help="SoundFont for replaying a recording")
    plot_session.add_argument("--bank", type=Path, default=None,
                              help="the cue bank, for each cue's colour (default: the embedded bank)")


def _generator_option(parser: argparse.ArgumentParser, default: str | None = DEFAULT_GENERATOR) -> None:
    parser.add_argument("--generator", choices=tuple(GENERATORS), default=default,
                        help="part generator of generated layers, bridges and stingers "
                             f"(default {DEFAULT_GENERATOR}; 'model' needs models/ and PyTorch)")


def _mapping_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mapping", type=Path, default=None,
                        help="the sound designer's mapping (default: the embedded bank's mapping with the "
                             "embedded bank, else the bank's own)")


def _bank_and_mapping(bank_path: Path | None, mapping_path: Path | None, default_mapping: bool = True):
    """The cue bank and resolved mapping a command works with: ``--bank``,
    else the mapping's ``bank``, else the embedded bank; ``--mapping``, else
    (with the embedded bank) its default mapping, else the bank's own.

    Raises:
        ConfigError: a bank or mapping that cannot be read or is invalid.
    """
    from adaptive.cue import load_bank
    from adaptive.mapping import DEFAULT_MAPPING, ResolvedMapping, load_mapping, mapping_bank_path

    if bank_path is None and mapping_path is not None:
        bank_path = mapping_bank_path(mapping_path)
    bank_path = bank_path or DEFAULT_BANK
    bank = load_bank(bank_path)
    if mapping_path is None and default_mapping and bank_path.resolve() == DEFAULT_BANK.resolve():
        mapping_path = DEFAULT_MAPPING
    if mapping_path is None:
        return bank, ResolvedMapping.from_bank(bank)
    return bank, load_mapping(mapping_path, bank)


SEND_MESSAGES = ("scene", "emotion", "emotion_point", "intensity", "location", "cue", "stinger", "play_theme", "mapping_set",
                 "mapping_get", "session_end", "audience_vote", "audience_weight", "vote")
"""Messages ``adaptive send`` sends (the scene inputs of docs/protocol.md, live mapping tuning, ending a
session, and audience votes; ``vote`` is ``audience_vote`` with shorter words: ``vote EMOTION [INTENSITY]``
or ``vote VALENCE AROUSAL [INTENSITY]``)."""


def _vote_values(texts: list[str]) -> list[str]:
    """``vote`` words as ``audience_vote`` words: ``EMOTION [INTENSITY]`` or ``VALENCE AROUSAL [INTENSITY]``.

    Raises:
        AdaptiveError: a wrong count of words.
    """
    usage = "vote takes EMOTION [INTENSITY] or VALENCE AROUSAL [INTENSITY] (intensity 0..1)"
    try:
        float(texts[0]) if texts else None
        point = bool(texts)
    except ValueError:
        point = False
    if point and len(texts) in (2, 3):
        return ["", *texts]
    if texts and not point and len(texts) in (1, 2):
        return [texts[0], "0", "0", *texts[1:]]
    raise AdaptiveError(f"{usage}; got {' '.join(texts) or 'nothing'}")


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the server's host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="the server's OSC UDP port (default 9000)")
    parser.add_argument("--role", choices=("control", "listener", "audience"), default=None,
                        help="the role to ask for on a server with credentials (default: control to send, "
                             "listener to monitor or export)")
    parser.add_argument("--credentials", type=Path, default=None,
                        help="a credentials folder (its secrets.toml gives the role's secret; default: "
                             "$ADAPTIVE_CREDENTIALS); none for a server without credentials")
    parser.add_argument("--session", default="",
                        help="the session to join: an id (made if there is none), 'new' for a new one, or nothing "
                             "for the default session (docs/sessions.md)")


def _prepare_output(path: Path) -> None:
    """Make ready, before any work, the path a command writes: its folder is
    created if missing (and the command says so on stderr, ``adaptive:
    created the folder ...``), and a path that cannot be written is refused.

    Raises:
        AdaptiveError: the path is a folder, its folder cannot be created
            (a file is in the way, permission denied), or it is read-only.
    """
    import os

    if path.is_dir():
        raise AdaptiveError(f"{path}: is a folder; give a file name for the output")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AdaptiveError(f"{path}: cannot create the folder {folder} ({error.strerror or error})") from None
        print(f"adaptive: created the folder {folder}", file=sys.stderr)
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AdaptiveError(f"{path}: not writable (permission denied)")


@contextlib.contextmanager
def _writing(path: Path):
    """Turn a failure to write ``path`` into one clear :class:`AdaptiveError`."""
    import soundfile

    try:
        yield
    except (OSError, soundfile.LibsndfileError) as error:
        raise AdaptiveError(f"{path}: cannot write ({getattr(error, 'strerror', None) or error})") from None


def _render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adaptive.clock import seconds_to_frames
    from adaptive.midifile import write_midi
    from adaptive.render import events_json, render_timeline, write_wav
    from adaptive.timeline import load_timeline

    bank, mapping = _bank_and_mapping(args.bank, args.mapping)
    timeline = load_timeline(args.timeline, bank, mapping)
    for path in (args.output, args.midi, args.events):
        if path is not None:
            _prepare_output(path)
    total = seconds_to_frames(timeline.duration_seconds, args.sample_rate)
    with tqdm(total=total, unit="frame", unit_scale=True, disable=args.no_progress or None,
              desc="rendering", file=sys.stderr, leave=False) as bar:
        result = render_timeline(bank, timeline, soundfont=args.soundfont, sample_rate_hz=args.sample_rate,
                                 seed=args.seed, on_block=bar.update, generator=args.generator, mapping=mapping,
                                 progress=lambda message: print(f"adaptive: {message}", file=sys.stderr))
    with _writing(args.output):
        write_wav(args.output, result.audio, args.sample_rate, args.subtype)
    print(f"wrote {args.output} ({timeline.duration_seconds:g} s at {args.sample_rate} Hz; "
          f"SoundFont {result.session.soundfont} ({result.session.soundfont_origin}))")
    if args.midi:
        session = result.session
        with _writing(args.midi):
            write_midi(args.midi, session.midi_events, session.parts, session.tempo_changes, args.sample_rate,
                       end_frame=len(result.audio))
        print(f"wrote {args.midi} ({len(session.midi_events)} note events)")
    if args.events:
        with _writing(args.events):
            args.events.write_text(events_json(result.events, args.sample_rate) + "\n", encoding="utf-8")
        counts: dict[str, int] = {}
        for event in result.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        print(f"wrote {args.events} (" + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) + ")")
    return 0


def _serve_settings(args: argparse.Namespace):
    """Server settings from defaults, then the --config file, then the options.

    Raises:
        ConfigError: an unreadable config, unknown keys, or values out of range.
    """
    import tomllib

    from adaptive.errors import ConfigError
    from app.settings import CONFIG_KEYS, ServerSettings
    from bridge.access import CREDENTIALS_ENV

    values: dict = {}
    if args.config is not None:
        try:
            values.update(tomllib.loads(args.config.read_text(encoding="utf-8")))
        except OSError as error:
            raise ConfigError(f"{args.config}: cannot read ({error.strerror or error})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{args.config}: not valid TOML: {error}") from None
    values.update({key: getattr(args, key) for key in CONFIG_KEYS if getattr(args, key) is not None})
    if "credentials" not in values and os.environ.get(CREDENTIALS_ENV):
        values["credentials"] = os.environ[CREDENTIALS_ENV]
    return ServerSettings.from_values(values, f"{args.config}: " if args.config else "")


def _serve(args: argparse.Namespace) -> int:
    from app.server import serve

    settings = _serve_settings(args)
    for path in (settings.record, settings.midi_file):
        if path is not None:
            _prepare_output(path)
    return serve(settings)


def _cluster(args: argparse.Namespace) -> int:
    """``adaptive cluster``: the server on every node of a Ray cluster (app/cluster.py)."""
    settings = _serve_settings(args)
    try:
        from app.cluster import run_cluster
    except ImportError as error:
        raise AdaptiveError(f"adaptive cluster needs Ray ({error}): pip install '.[cluster]' (docs/cluster.md)") from None
    for path in (settings.record, settings.midi_file):
        if path is not None:
            _prepare_output(path)
    return run_cluster(args.address, settings.model_dump(mode="json", by_alias=True, exclude_none=True),
                       args.advertise_host, args.endpoints_file, head_sessions=not args.no_head_sessions)


def _replay(args: argparse.Namespace) -> int:
    from adaptive.recording import replay

    _prepare_output(args.output)
    notes: list[str] = []
    audio = replay(args.recording, args.output, notes=notes)
    for note in notes:
        print(f"adaptive: {note}", file=sys.stderr)
    print(f"wrote {args.output} ({len(audio)} frames)")
    return 0


def _bank(args: argparse.Namespace) -> int:
    from adaptive.cue import load_bank

    args.bank = args.bank or DEFAULT_BANK
    bank = load_bank(args.bank)
    print(f"cue bank {bank.name!r} ({args.bank})")
    for cue in bank.cues + bank.segments:
        role = "segment" if cue in bank.segments else "cue"
        print(f"  {role} {cue.name}: {cue.key}, {cue.bpm:g} bpm, {cue.meter.beats_per_bar}/{cue.meter.beat_unit}, "
              f"{cue.loop_bars} bars, valence {cue.valence:+.2f} arousal {cue.arousal:+.2f}")
        for layer in cue.layers:
            entry = next((x for x in (i / 100 for i in range(101)) if layer.curve.amplitude(x) > 0), None)
            entry_text = "never sounds" if entry is None else f"enters at intensity {entry:.2f}"
            print(f"    layer {layer.name}: {layer.source.kind}, {entry_text}")
    for stinger in bank.stingers:
        print(f"  stinger {stinger.name}: {stinger.quantize.value}")
    for name, theme in bank.themes.items():
        chords = theme.chords if isinstance(theme.chords, str) else " | ".join(theme.chords)
        print(f"  theme {name}: {theme.key}, {theme.meter.beats_per_bar}/{theme.meter.beat_unit}, {theme.file} "
              f"(melody {theme.melody!r}, chords {chords!r}), {theme.quantize.value}")
    for rule in bank.transitions:
        print(f"  transition {rule.from_cue} -> {rule.to_cue}: {rule.exit.value}, fade {rule.fade_beats:g} beats, "
              f"bridge {rule.bridge.kind.value}")
    return 0


def _connect(args: argparse.Namespace, name: str):
    """An :class:`bridge.client.AdaptiveClient` that has said hello.

    Raises:
        AdaptiveError: a bad port, or no server answering.
    """
    from bridge.access import CREDENTIALS_ENV, Role, load_credentials
    from bridge.client import AdaptiveClient

    if not 1 <= args.port <= 65535:
        raise AdaptiveError(f"--port {args.port} is out of range (allowed: 1..65535)")
    folder = args.credentials or (Path(os.environ[CREDENTIALS_ENV]) if os.environ.get(CREDENTIALS_ENV) else None)
    role, secret = "", None
    if folder is not None:
        role = args.role or {"adaptive send": "control", "adaptive send vote": "audience"}.get(name, "listener")
        try:
            secret = load_credentials(folder).secrets.get(Role(role))
        except ValueError as error:
            raise AdaptiveError(str(error)) from None
        if secret is None:
            raise AdaptiveError(f"{folder}/secrets.toml has no secret for role {role!r}")
    elif args.role is not None:
        role = args.role
    try:
        client = AdaptiveClient(args.host, args.port, client_name=name, role=role, secret=secret,
                                session=args.session)
    except OSError as error:
        raise AdaptiveError(f"cannot reach {args.host}:{args.port}: {error.strerror or error}") from None
    try:
        client.hello()
    except (TimeoutError, PermissionError) as error:
        client.close()
        raise AdaptiveError(str(error)) from None
    return client


def _credentials(args: argparse.Namespace) -> int:
    from bridge.access import create_credentials

    try:
        written = create_credentials(args.folder)
    except OSError as error:
        raise AdaptiveError(f"cannot write {args.folder}: {error.strerror or error}") from None
    for path in written:
        print(f"wrote {path}")
    print(f"adaptive: serve with --credentials {args.folder}; give each client its role's secret "
          f"({args.folder}/secrets.toml) or, over ZeroMQ, its role's clients/ROLE.key_secret and the server's "
          f"server.key (docs/network.md)")
    return 0


def _send_values(name: str, texts: list[str]) -> dict:
    """The arguments of message ``name`` from command-line words, by the table's types.

    Raises:
        AdaptiveError: an unknown message, a wrong count, a word that is not of
            its argument's type, or a value out of range.
    """
    from bridge.protocol import BY_NAME, ArgType, ProtocolError, validate

    if name not in SEND_MESSAGES:
        raise AdaptiveError(f"unknown message {name!r} (allowed: {', '.join(SEND_MESSAGES)})")
    if name == "vote":
        name, texts = "audience_vote", _vote_values(texts)
    message = BY_NAME[name]
    kinds = {ArgType.INT: "integer", ArgType.FLOAT: "number", ArgType.STRING: "string"}
    usage = f"{name} takes " + (", ".join(f"{a.name} ({kinds[a.type]}: {a.allowed()})" for a in message.args))
    if not message.required_args <= len(texts) <= len(message.args):
        raise AdaptiveError(f"{usage}; got {len(texts)} argument{'s' if len(texts) != 1 else ''}")
    values = []
    for arg, text in zip(message.args, texts):
        try:
            values.append({ArgType.INT: int, ArgType.FLOAT: float, ArgType.STRING: str}[arg.type](text))
        except ValueError:
            raise AdaptiveError(f"{name}: {arg.name} {text!r} is not a {kinds[arg.type]} ({usage})") from None
    try:
        return validate(message, values).values
    except ProtocolError as error:
        raise AdaptiveError(f"{error.message} ({usage})") from None


def _send(args: argparse.Namespace) -> int:
    from bridge.protocol import BY_NAME

    values = _send_values(args.message, args.values)  # before any network: bad words fail fast
    voting = args.message in ("vote", "audience_vote")
    client = _connect(args, "adaptive send vote" if voting else "adaptive send")
    try:
        if args.message == "session_end":
            try:
                ended = client.end_session(values["session_id"])
            except ValueError as refused:
                raise AdaptiveError(str(refused)) from None
            except TimeoutError as error:
                raise AdaptiveError(str(error)) from None
            print(f"ended session {ended['session_id']}")
            return 0
        if args.message in ("mapping_set", "mapping_get"):
            try:
                getter = client.set_mapping if args.message == "mapping_set" else client.get_mapping
                value = getter(*values.values())
            except ValueError as refused:
                raise AdaptiveError(f"the server refused it: {refused}") from None
            except TimeoutError as error:
                raise AdaptiveError(str(error)) from None
            print(f"{values['path']} = {value}")
            return 0
        client.send("audience_vote" if voting else args.message, **values)
        try:
            error = client.wait_for("error", timeout=0.3)
        except TimeoutError:
            error = None
    finally:
        client.close()
    if error is not None:
        raise AdaptiveError(f"the server rejected it ({error['code']}): {error['message']}")
    shown = " ".join(repr(v) if isinstance(v, str) else f"{v:g}" for v in values.values())
    print(f"sent {BY_NAME[args.message].address} {shown}".rstrip())
    return 0


def _describe(name: str, v: dict) -> str:
    """One callback's text after its time and frame (see ``adaptive monitor``)."""
    if name == "beat":
        return f"beat  {v['cue']} bar {v['bar_index']} beat {v['beat_in_bar']} ({v['bpm']:g} bpm)"
    if name == "bar":
        return f"bar   {v['cue']} bar {v['bar_index']}"
    if name == "cue_change":
        return f"cue   {v['previous'] or '(start)'} -> {v['cue']}"
    if name == "transition":
        return f"transition {v['phase']}  {v['from_cue']} -> {v['to_cue']}"
    if name == "stinger_played":
        return f"stinger  {v['stinger']}"
    if name == "midi":
        kind = {0x80: "note off", 0x90: "note on", 0xB0: "control", 0xC0: "program"}.get(v["status"] & 0xF0, "midi")
        return f"midi  {v['part']} ch {(v['status'] & 0x0F) + 1} {kind} {v['data1']} {v['data2']}"
    return f"{name}  " + " ".join(f"{key}={value!r}" for key, value in v.items())


def _monitor(args: argparse.Namespace) -> int:
    import time

    client = _connect(args, "adaptive monitor")
    streams = ["events"] + (["midi"] if args.midi else [])
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        for stream in streams:
            client.subscribe(stream)
        print(f"adaptive: monitoring {args.host}:{args.port} (session {client.welcome['session_id']}, "
              f"{client.welcome['sample_rate_hz']} Hz); Ctrl-C stops", flush=True)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        for decoded in client.messages(timeout=remaining):  # seconds; None: until Ctrl-C
            name, values = decoded.message.name, decoded.values
            if name == "error":
                print(f"adaptive: the server says ({values['code']}): {values['message']}", flush=True)
            elif "frame" in values:
                seconds = values["time_s"] + values["time_us"] / 1e6
                print(f"{seconds:8.3f} s  frame {values['frame']:>8}  {_describe(name, values)}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for stream in streams:
            with contextlib.suppress(Exception):
                client.unsubscribe(stream)
        client.close()
    return 0


def _check(args: argparse.Namespace) -> int:
    from adaptive.cue import load_bank
    from adaptive.mapping import check_mapping, format_report, mapping_bank_path

    bank_path = args.bank or mapping_bank_path(args.mapping) or DEFAULT_BANK
    bank = load_bank(bank_path)
    result = check_mapping(args.mapping, bank)
    report = format_report(str(args.mapping), result)
    if report:
        print(report)
    errors, warnings = len(result.errors), len(result.warnings)
    print(f"{args.mapping}: {errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''} "
          f"(bank {bank_path})")
    return 2 if errors else 0


def _mapping(args: argparse.Namespace) -> int:
    _prepare_output(args.output)
    client = _connect(args, "adaptive mapping export")
    try:
        text = client.export_mapping()
    except TimeoutError as error:
        raise AdaptiveError(str(error)) from None
    finally:
        client.close()
    with _writing(args.output):
        args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.splitlines())} lines of the live mapping of {args.host}:{args.port})")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from app import plot

    _prepare_output(args.output)
    if args.plot_command == "mapping":
        _, mapping = _bank_and_mapping(args.bank, args.mapping)
        plot.plot_mapping(mapping, args.output)
    else:
        from adaptive.cue import load_bank

        events, sample_rate_hz = plot.load_events(args.events, soundfont=args.soundfont)
        bank = load_bank(args.bank or DEFAULT_BANK)
        plot.plot_session(events, sample_rate_hz, args.output, title=f"session: {args.events.name}",
                          cue_order=[cue.name for cue in bank.cues + bank.segments])
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``adaptive`` console script; returns the exit status."""
    register_generators()
    args = build_parser().parse_args(argv)
    handlers = {"render": _render, "serve": _serve, "cluster": _cluster, "replay": _replay, "bank": _bank, "send": _send,
                "monitor": _monitor, "check": _check, "mapping": _mapping, "plot": _plot,
                "credentials": _credentials}
    try:
        return handlers[args.command](args)
    except AdaptiveError as error:
        print(f"adaptive: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adaptive: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
