"""The ``adaptive`` command.

Subcommands:
  render TIMELINE -o out.wav [--midi out.mid] [--events out.json]   offline render
  serve                                                               the server (for now: the render demo)
  bank [--bank FILE]                                                  list a cue bank's cues, layers and stingers

User mistakes (bad files, unknown names, values out of range) print one clear
``adaptive: error: ...`` message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from adaptive.clock import DEFAULT_SAMPLE_RATE_HZ
from adaptive.errors import AdaptiveError

DEFAULT_BANK = Path(__file__).parent / "data" / "default_bank" / "bank.toml"
"""The embedded default cue bank."""

DEMO_TIMELINE = Path(__file__).resolve().parent.parent / "examples" / "walk.toml"
"""The timeline the ``serve`` demo renders until the real-time server exists."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK, help="cue bank TOML file (default: the embedded bank)")
    parser.add_argument("--soundfont", type=Path, default=None,
                        help="General MIDI SoundFont .sf2 (default: $ADAPTIVE_SOUNDFONT or the system's TimGM6mb)")


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
    _common(render)

    serve = commands.add_parser("serve", help="run the server (until the real-time server lands: render the demo)")
    serve.add_argument("-o", "--output", type=Path, default=Path("out/demo.wav"), help="demo WAV (default out/demo.wav)")
    _common(serve)

    bank = commands.add_parser("bank", help="list the cues, layers, stingers and transitions of a cue bank")
    _common(bank)
    return parser


def _check_writable(path: Path) -> None:
    """Refuse, before any work, an output path that cannot be written.

    Raises:
        AdaptiveError: the path is a folder, or its folder is missing or read-only.
    """
    import os

    if path.is_dir():
        raise AdaptiveError(f"{path}: is a folder; give a file name for the output")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise AdaptiveError(f"{path}: the folder {folder} does not exist")
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
    from adaptive.cue import load_bank
    from adaptive.midifile import write_midi
    from adaptive.render import events_json, render_timeline, write_wav
    from adaptive.timeline import load_timeline

    bank = load_bank(args.bank)
    timeline = load_timeline(args.timeline, bank)
    for path in (args.output, args.midi, args.events):
        if path is not None:
            _check_writable(path)
    total = seconds_to_frames(timeline.duration_seconds, args.sample_rate)
    with tqdm(total=total, unit="frame", unit_scale=True, disable=args.no_progress or None,
              desc="rendering", file=sys.stderr, leave=False) as bar:
        result = render_timeline(bank, timeline, soundfont=args.soundfont, sample_rate_hz=args.sample_rate,
                                 seed=args.seed, on_block=bar.update,
                                 progress=lambda message: print(f"adaptive: {message}", file=sys.stderr))
    with _writing(args.output):
        write_wav(args.output, result.audio, args.sample_rate, args.subtype)
    print(f"wrote {args.output} ({timeline.duration_seconds:g} s at {args.sample_rate} Hz)")
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


def _serve(args: argparse.Namespace) -> int:
    print("adaptive: the real-time server is not built yet; rendering the demo timeline instead", file=sys.stderr)
    if not DEMO_TIMELINE.is_file():
        raise AdaptiveError(f"{DEMO_TIMELINE}: demo timeline not found (run from a source checkout)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    namespace = argparse.Namespace(
        timeline=DEMO_TIMELINE, output=args.output, midi=args.output.with_suffix(".mid"),
        events=args.output.with_suffix(".json"), sample_rate=DEFAULT_SAMPLE_RATE_HZ, seed=None,
        subtype="PCM_16", no_progress=False, bank=args.bank, soundfont=args.soundfont,
    )
    return _render(namespace)


def _bank(args: argparse.Namespace) -> int:
    from adaptive.cue import load_bank

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
    for rule in bank.transitions:
        print(f"  transition {rule.from_cue} -> {rule.to_cue}: {rule.exit.value}, fade {rule.fade_beats:g} beats, "
              f"bridge {rule.bridge.kind.value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``adaptive`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handlers = {"render": _render, "serve": _serve, "bank": _bank}
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
