#!/usr/bin/env python3
"""Measure the level of every part of a cue bank, rendered alone, with one or
more SoundFonts, and the full mix of every cue: the figures behind the default
bank's gains (docs/cue-bank.md, "Levels and SoundFonts").

    python tools/measure_part_levels.py [--bank BANK] [--soundfont SF ...] [--json OUT]

For each SoundFont:

* **Presets.** Every General MIDI program (and percussion kit) the bank plays
  is looked up in the SoundFont; a missing one is reported (FluidSynth would
  play it silent).
* **Parts alone.** Every MIDI layer, stem rendered from MIDI, segment layer,
  stinger and theme is rendered alone through :func:`adaptive.stem.render_part`
  (one synthesizer, ``adaptive.synth.SYNTH_GAIN``, no reverb or chorus) at its
  cue's tempo, over its loop (a cue's ``loop_bars``; a stinger or theme head:
  its notes). *RMS* and *peak* are in dBFS of that render at 0 dB gain; *in the
  mix* adds the part's gain at intensity 1.0 and its cue's ``gain_db``: how loud
  the part sits in the cue's full mix. Generated parts have no notes before
  they play; they are measured on a stand-in with the same program (named in
  the table).
* **Full mixes.** Every cue forced at intensity 1.0 for ``--seconds`` through a
  :class:`~adaptive.session.Session` with the ``rule_based`` generator: RMS of
  the mix and its peak before the master limiter (which acts above -6 dBFS).

With two or more SoundFonts it also prints, per part, the change of gain that
gives the part in the second SoundFont the level in the mix it has in the first
(``--reference``, default the first named).

No SoundFont named: the default one (:func:`adaptive.synth.find_soundfont`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE_HZ = 48_000
SILENT_DBFS = -90.0
"""A part whose RMS is below this is reported as silent."""


@dataclass(frozen=True)
class PartSpec:
    """One part to measure.

    Attributes:
        name: ``cue/layer``, ``segment/layer``, ``stinger/name`` or ``theme/name``.
        file: the MIDI file holding its notes.
        track: the track (its name) in ``file``.
        program: General MIDI program (ignored with ``percussion``).
        percussion: played on the percussion channel (bank 128).
        bpm: tempo it is rendered at.
        length_beats: beats rendered and measured (from beat 0).
        gain_db: its gain at intensity 1.0 plus its cue's ``gain_db``.
        stand_in: for a generated part, what is played instead ("" otherwise).
    """

    name: str
    file: Path
    track: str
    program: int
    percussion: bool
    bpm: float
    length_beats: float
    gain_db: float
    stand_in: str = ""


@dataclass(frozen=True)
class Level:
    """A part's measured level (dBFS; ``-inf`` when silent)."""

    name: str
    program: str
    rms_dbfs: float
    peak_dbfs: float
    gain_db: float
    in_mix_dbfs: float
    stand_in: str


def dbfs(value: float) -> float:
    """Amplitude (full scale 1.0) -> dBFS; ``-inf`` for 0."""
    return 20.0 * math.log10(value) if value > 0.0 else -math.inf


def program_label(spec: PartSpec) -> str:
    return "kit" if spec.percussion else str(spec.program)


def bank_parts(bank) -> list[PartSpec]:
    """Every part of ``bank`` that has notes to measure (generated ones through a stand-in)."""
    from adaptive.cue import GeneratedSource, MidiSource, StemSource, ThemeSource
    from adaptive.gain import amplitude_to_db

    specs: list[PartSpec] = []
    for cue in [*bank.cues, *bank.segments]:
        beats = float(cue.loop_bars * cue.meter.beats_per_bar)
        midi_layers = [layer for layer in cue.layers if isinstance(layer.source, MidiSource)]
        for layer in cue.layers:
            source = layer.source
            gain_db = amplitude_to_db(layer.curve.amplitude(1.0)) + cue.gain_db
            if isinstance(source, MidiSource):
                specs.append(PartSpec(f"{cue.name}/{layer.name}", bank.path(source.file), source.track,
                                      layer.program, layer.percussion, cue.bpm, beats, gain_db))
            elif isinstance(source, StemSource) and source.rendered_from is not None:
                origin = source.rendered_from
                specs.append(PartSpec(f"{cue.name}/{layer.name}", bank.path(origin.file), origin.track,
                                      origin.program, origin.percussion, cue.bpm, beats, gain_db))
            elif isinstance(source, GeneratedSource) and midi_layers:
                # Stand-in: the cue's busiest pitched MIDI part (the generated
                # arpeggio follows the same chords) played with the layer's program.
                pitched = [other for other in midi_layers if not other.percussion] or midi_layers
                other = max(pitched, key=lambda candidate: candidate.name == "guitar")
                specs.append(PartSpec(f"{cue.name}/{layer.name}", bank.path(other.source.file), other.source.track,
                                      layer.program, layer.percussion, cue.bpm, beats, gain_db,
                                      stand_in=f"{cue.name}/{other.name} notes"))
            elif isinstance(source, ThemeSource):
                pass  # measured once, below, with the theme (the default bank's cues play none)
    for stinger in bank.stingers:
        source = stinger.source
        if isinstance(source, MidiSource):
            specs.append(PartSpec(f"stinger/{stinger.name}", bank.path(source.file), source.track,
                                  stinger.program, stinger.percussion, 120.0, 0.0, stinger.gain_db))
        else:  # a generated phrase: stand-in, a MIDI stinger with the same program if any
            same = [other for other in bank.stingers
                    if isinstance(other.source, MidiSource) and other.program == stinger.program
                    and other.percussion == stinger.percussion]
            if same:
                specs.append(PartSpec(f"stinger/{stinger.name}", bank.path(same[0].source.file),
                                      same[0].source.track, stinger.program, stinger.percussion, 120.0, 0.0,
                                      stinger.gain_db, stand_in=f"stinger/{same[0].name} notes"))
    # Generated bridges play on String Ensemble 1 at 0 dB (adaptive.transition_runner.BRIDGE_PROGRAM);
    # stand-in: the chords of the bank's first authored segment's first layer.
    from adaptive.transition_runner import BRIDGE_PROGRAM

    for segment in bank.segments[:1]:
        layer = segment.layers[0]
        if isinstance(layer.source, MidiSource):
            specs.append(PartSpec("bridge (generated)", bank.path(layer.source.file), layer.source.track,
                                  BRIDGE_PROGRAM, False, segment.bpm,
                                  float(segment.loop_bars * segment.meter.beats_per_bar), 0.0,
                                  stand_in=f"{segment.name}/{layer.name} notes"))
    for name, theme in bank.themes.items():
        specs.append(PartSpec(f"theme/{name}", bank.path(theme.file), theme.melody, theme.program, False, 120.0,
                              float(theme.head_bars * theme.meter.beats_per_bar), theme.gain_db))
    return specs


def check_presets(soundfont: Path, specs: list[PartSpec]) -> list[str]:
    """The programs of ``specs`` that ``soundfont`` lacks ("bank:program")."""
    import fluidsynth

    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE_HZ))
    try:
        sfont_id = synth.sfload(str(soundfont))
        wanted = sorted({(128 if spec.percussion else 0, 0 if spec.percussion else spec.program) for spec in specs})
        return [f"{bank}:{program}" for bank, program in wanted
                if not synth.sfpreset_name(sfont_id, bank, program)]
    finally:
        synth.delete()


def measure_parts(soundfont: Path, specs: list[PartSpec]) -> list[Level]:
    """Render each part alone with ``soundfont`` and measure it."""
    from adaptive.part import read_midi_tracks
    from adaptive.stem import render_part
    from adaptive.synth import Synth

    keeper = Synth(soundfont, SAMPLE_RATE_HZ)  # keeps the SoundFont loaded between parts (an SF3 loads slowly)
    tracks: dict[Path, dict] = {}
    levels: list[Level] = []
    try:
        for spec in specs:
            if spec.file not in tracks:
                tracks[spec.file] = read_midi_tracks(spec.file)
            part = tracks[spec.file][spec.track]
            length_beats = spec.length_beats or part.end_beats
            if spec.length_beats:  # only the notes that start inside the measured span
                keep = part.start_beats < length_beats
                part = type(part)(part.start_beats[keep], part.duration_beats[keep], part.pitch[keep],
                                  part.velocity[keep])
            audio = render_part(part, soundfont=soundfont, program=spec.program, percussion=spec.percussion,
                                bpm=spec.bpm, sample_rate_hz=SAMPLE_RATE_HZ, length_beats=length_beats,
                                tail_seconds=0.0)
            rms = dbfs(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))))
            peak = dbfs(float(np.max(np.abs(audio))) if audio.size else 0.0)
            levels.append(Level(spec.name, program_label(spec), rms, peak, spec.gain_db, rms + spec.gain_db,
                                spec.stand_in))
    finally:
        keeper.close()
    return levels


def measure_mixes(soundfont: Path, bank_path: Path, seconds: float) -> list[dict]:
    """Every cue of the bank at intensity 1.0 for ``seconds``: mix RMS and pre-limiter peak (dBFS)."""
    from adaptive.clock import seconds_to_frames
    from adaptive.cue import load_bank
    from adaptive.session import Session
    from adaptive.timeline import Timeline, TimelineEvent
    from app.generators import register_generators

    register_generators()
    bank = load_bank(bank_path)
    session = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=0, generator="rule_based")
    peaks: list[float] = []

    def measure_then_pass(audio: np.ndarray) -> bool:  # replaces the limiter: measure, change nothing
        peaks.append(float(np.max(np.abs(audio))) if audio.size else 0.0)
        return False

    session.mixer.limiter.process = measure_then_pass
    results = []
    try:
        for cue in bank.cues:
            timeline = Timeline(duration_seconds=seconds, seed=0,
                                events=[TimelineEvent(time_seconds=0.0, cue=cue.name, intensity=1.0)])
            from adaptive.offline import render_offline

            start = session.frame
            inputs = [(start + seconds_to_frames(t, SAMPLE_RATE_HZ), item) for t, item in timeline.inputs()]
            peaks.clear()
            audio = render_offline(session, start + seconds_to_frames(seconds, SAMPLE_RATE_HZ), inputs)
            # Skip the first two seconds: the change from the previous cue.
            steady = audio[seconds_to_frames(2.0, SAMPLE_RATE_HZ):]
            results.append({"cue": cue.name,
                            "rms_dbfs": dbfs(float(np.sqrt(np.mean(np.square(steady, dtype=np.float64))))),
                            "peak_before_limiter_dbfs": dbfs(max(peaks) if peaks else 0.0)})
    finally:
        session.close()
    return results


def fmt(value: float) -> str:
    return "silent" if value < SILENT_DBFS else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.synth import find_soundfont

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK, help="cue bank (default: the embedded one)")
    parser.add_argument("--soundfont", type=Path, action="append", help="SoundFont (repeat to compare)")
    parser.add_argument("--reference", type=int, default=0, help="index of the SoundFont the others are matched to")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per cue for the full mixes (default 20)")
    parser.add_argument("--no-mix", action="store_true", help="skip the full mixes")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    soundfonts = args.soundfont or [find_soundfont()]
    bank = load_bank(args.bank)
    specs = bank_parts(bank)

    figures: dict[str, dict] = {}
    for soundfont in soundfonts:
        missing = check_presets(soundfont, specs)
        levels = measure_parts(soundfont, specs)
        mixes = [] if args.no_mix else measure_mixes(soundfont, args.bank, args.seconds)
        figures[soundfont.name] = {"path": str(soundfont), "missing_presets": missing,
                                   "parts": [asdict(level) for level in levels], "mixes": mixes}
        print(f"\n## {soundfont.name}\n")
        print(f"Presets missing: {', '.join(missing) or 'none'}; silent parts: "
              f"{', '.join(level.name for level in levels if level.rms_dbfs < SILENT_DBFS) or 'none'}\n")
        print("| part | program | RMS dBFS | peak dBFS | gain dB | in the mix dBFS |")
        print("|---|---:|---:|---:|---:|---:|")
        for level in levels:
            name = level.name + (f" (stand-in: {level.stand_in})" if level.stand_in else "")
            print(f"| {name} | {level.program} | {fmt(level.rms_dbfs)} | {fmt(level.peak_dbfs)} | "
                  f"{level.gain_db:+.1f} | {fmt(level.in_mix_dbfs)} |")
        if mixes:
            print("\n| cue at intensity 1.0 | mix RMS dBFS | peak before the limiter dBFS |")
            print("|---|---:|---:|")
            for mix in mixes:
                print(f"| {mix['cue']} | {mix['rms_dbfs']:.1f} | {mix['peak_before_limiter_dbfs']:.1f} |")

    if len(soundfonts) > 1:
        reference = soundfonts[args.reference].name
        ref_parts = {part["name"]: part for part in figures[reference]["parts"]}
        others = [sf.name for sf in soundfonts if sf.name != reference]
        print(f"\n## Gain change that matches {reference}'s level in the mix\n")
        print("| part | " + " | ".join(f"{name} dB" for name in others) + " |")
        print("|---|" + "---:|" * len(others))
        for name, ref in ref_parts.items():
            row = []
            for other in others:
                part = next(p for p in figures[other]["parts"] if p["name"] == name)
                row.append(f"{ref['rms_dbfs'] - part['rms_dbfs']:+.1f}")
            print(f"| {name} | " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=lambda v: None) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
