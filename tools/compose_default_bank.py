"""Compose the embedded default cue bank as Standard MIDI Files.

Writes, into ``adaptive/data/default_bank/`` (or the folder given with
``--out``), one type-1 MIDI file (480 ticks per beat) per cue and segment, plus
``stingers.mid``:

============== ======== ===== ===== =====================================
file           key      bpm   meter tracks (one per MIDI layer)
============== ======== ===== ===== =====================================
explore.mid    D major   84   4/4   pad, bass, guitar, melody
stealth.mid    E minor   96   4/4   drone, pizz, perc, motif
combat.mid     D minor  140   4/4   ostinato, bass, drums, horns
triumph.mid    Bb major 120   4/4   strings, bass, drums, fanfare
sorrow.mid     A minor   66   3/4   piano, strings, cello, choir
to_triumph.mid Bb major 120   4/4   strings, horns, timpani, drums
stingers.mid   (per stinger)        discovery, danger, impact, victory, loss
============== ======== ===== ===== =====================================

The bank itself (``bank.toml``: programs, gain curves, chords, transitions) is
written by hand; this script only writes the notes, and checks them before
writing: every note inside its part's loop and its instrument's range, and
every note attacked on a strong beat (beat 1, and beat 3 in 4/4) a tone of
that bar's chord.

Conventions of every file: track 0 is the conductor (named after the file;
tempo, time signature, key signature), then one track per part, named with a
``track_name`` meta event, notes on MIDI channel 0 and no program changes (the
engine assigns channels and General MIDI programs from ``bank.toml``).
Percussion parts hold General MIDI percussion keys (35..81). Times are beats
from beat 0 of the loop, and every track ends exactly at the end of its loop,
so a file's length in beats is ``loop_bars * beats_per_bar``.

The output is deterministic (no randomness): running the script twice writes
byte-identical files, and ``tests/adaptive/test_default_bank.py`` checks that
the committed files match it.

Usage::

    python tools/compose_default_bank.py            # regenerate the bank's MIDI files
    python tools/compose_default_bank.py --out DIR  # write them somewhere else
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import mido

TICKS_PER_BEAT = 480
DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "adaptive" / "data" / "default_bank"

# ---------------------------------------------------------------------------
# Notation helpers
# ---------------------------------------------------------------------------

_LETTER_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL_SEMITONES = {"": 0, "#": 1, "b": -1}
_CHORD_INTERVALS = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
}

# General MIDI percussion keys (channel 10).
KICK = 36  # Bass Drum 1
KICK_LOW = 35  # Acoustic Bass Drum
SIDE_STICK = 37
SNARE = 38
FLOOR_TOM_LOW = 41
HAT_CLOSED = 42
FLOOR_TOM_HIGH = 43
TOM_LOW = 45
TOM_LOW_MID = 47
TOM_HIGH_MID = 48
CRASH = 49
TOM_HIGH = 50
CRASH_2 = 57


def pitch(name: str) -> int:
    """MIDI note number of a scientific pitch name: ``"C4"`` = 60, ``"F#2"``, ``"Bb1"``."""
    match = re.fullmatch(r"([A-G])([#b]?)(-?\d)", name)
    if not match:
        raise ValueError(f"{name!r} is not a pitch name like 'C4', 'F#2' or 'Bb1'")
    letter, accidental, octave = match.groups()
    return 12 * (int(octave) + 1) + _LETTER_PITCH_CLASS[letter] + _ACCIDENTAL_SEMITONES[accidental]


def pitches(names: str) -> list[int]:
    """``"D3 A3 D4 F#4"`` → MIDI note numbers."""
    return [pitch(name) for name in names.split()]


def chord_pitch_classes(symbol: str) -> set[int]:
    """Pitch classes of a lead-sheet chord symbol (``"Bm7"``, ``"Asus4"``, ``"Bb"``)."""
    match = re.fullmatch(r"([A-G])([#b]?)(.*)", symbol)
    if not match or match.group(3) not in _CHORD_INTERVALS:
        raise ValueError(f"{symbol!r} is not a chord symbol")
    root = _LETTER_PITCH_CLASS[match.group(1)] + _ACCIDENTAL_SEMITONES[match.group(2)]
    return {(root + interval) % 12 for interval in _CHORD_INTERVALS[match.group(3)]}


@dataclass(frozen=True)
class Note:
    start_beats: float
    length_beats: float
    key: int  # MIDI note number, or GM percussion key
    velocity: int


@dataclass
class Part:
    """One track: a layer of a cue, or one stinger.

    Attributes:
        name: the track name (``track_name`` meta event) that bank.toml refers to.
        low, high: the instrument's comfortable range (MIDI note numbers); for
            percussion parts, the GM percussion keys 35..81.
        percussion: notes are GM percussion keys, not pitches (no chord check).
        length_beats: where the track ends; ``None`` = the piece's loop length.
    """

    name: str
    low: int
    high: int
    percussion: bool = False
    length_beats: float | None = None
    notes: list[Note] = field(default_factory=list)

    def note(self, start_beats: float, length_beats: float, key: int, velocity: int) -> None:
        self.notes.append(Note(start_beats, length_beats, key, velocity))

    def chord(self, start_beats: float, length_beats: float, keys: list[int], velocity: int) -> None:
        for key in keys:
            self.note(start_beats, length_beats, key, velocity)

    def line(self, start_beats: float, text: str, velocity: int, accent: int = 6) -> float:
        """A melodic line written ``"F#5:1.5 E5:0.5 r:1 D5:1"`` (pitch:length in
        beats, ``r`` = rest), starting at ``start_beats``; notes attacked on a
        whole beat get ``accent`` more velocity. Returns the end beat."""
        beat = start_beats
        for token in text.split():
            name, length = token.split(":")
            length_beats = float(length)
            if name != "r":
                on_beat = abs(beat - round(beat)) < 1e-9
                self.note(beat, length_beats, pitch(name), min(127, velocity + (accent if on_beat else 0)))
            beat += length_beats
        return beat

    def hit(self, start_beats: float, key: int, velocity: int, length_beats: float = 0.25) -> None:
        """A percussion hit."""
        self.note(start_beats, length_beats, key, velocity)


@dataclass
class Piece:
    """One MIDI file: a cue, a segment, or the stinger collection."""

    name: str
    bpm: float
    beats_per_bar: int
    key_signature: str  # mido's spelling: "D", "Em", "Bb", "F#m"
    bars: int
    chords: list[str]  # one per bar; empty = no chord check (stingers)
    parts: list[Part]

    @property
    def length_beats(self) -> float:
        return float(self.bars * self.beats_per_bar)


# Instrument ranges (MIDI note numbers), comfortable rather than extreme.
RANGE_PAD = (36, 84)
RANGE_STRINGS = (28, 91)
RANGE_PIZZ = (36, 84)
RANGE_BASS = (28, 55)  # acoustic, electric and synth bass
RANGE_TUBA = (28, 55)
RANGE_GUITAR = (40, 83)
RANGE_FLUTE = (60, 96)
RANGE_CLARINET = (50, 89)
RANGE_OBOE = (58, 89)
RANGE_TRUMPET = (55, 82)
RANGE_BRASS = (34, 79)
RANGE_HORN = (41, 77)
RANGE_PIANO = (21, 108)
RANGE_CELLO = (36, 76)
RANGE_CHOIR = (53, 81)
RANGE_TIMPANI = (38, 57)
RANGE_GLOCKENSPIEL = (72, 100)
RANGE_PERCUSSION = (35, 81)

# ---------------------------------------------------------------------------
# explore — calm exploration, D major, 84 bpm, 4/4
# ---------------------------------------------------------------------------

EXPLORE_CHORDS = ["D", "Bm7", "Gmaj7", "Asus4", "D", "F#m", "G", "A"]


def compose_explore() -> Piece:
    bar_beats = 4
    # Warm pad, open voicings with the root at the bottom and a slowly moving top voice.
    pad = Part("pad", *RANGE_PAD)
    pad_voicings = [
        "D3 A3 D4 F#4",  # D
        "B2 A3 D4 F#4",  # Bm7
        "G2 B3 D4 F#4",  # Gmaj7
        "A2 A3 D4 E4",  # Asus4
        "D3 A3 D4 F#4",  # D
        "F#2 A3 C#4 F#4",  # F#m
        "G2 B3 D4 G4",  # G
        "A2 A3 C#4 E4",  # A
    ]
    for bar, voicing in enumerate(pad_voicings):
        pad.chord(bar * bar_beats, bar_beats, pitches(voicing), 64)

    # Acoustic bass: the root held for three beats, then a quarter-note step into
    # the next bar's root.
    bass = Part("bass", *RANGE_BASS)
    bass_bars = [
        "D2:3 C#2:1",  # D, passing down to B
        "B1:3 A1:1",  # Bm7
        "G1:3 B1:1",  # Gmaj7, 3rd leads to A
        "A1:3 E2:1",  # Asus4
        "D2:3 E2:1",  # D, passing up to F#
        "F#2:3 A2:1",  # F#m
        "G2:3 B2:1",  # G
        "A2:2 E2:1 C#2:1",  # A, leading tone back to D
    ]
    for bar, text in enumerate(bass_bars):
        bass.line(bar * bar_beats, text, 86)

    # Nylon guitar, fingerpicked eighths: thumb on the bass note (let ring), then
    # the upper strings.
    guitar = Part("guitar", *RANGE_GUITAR)
    guitar_voicings = [
        "D3 A3 D4 F#4",  # D
        "B2 F#3 A3 D4",  # Bm7
        "G2 D3 F#3 B3",  # Gmaj7
        "A2 E3 A3 D4",  # Asus4
        "D3 A3 D4 F#4",  # D
        "F#2 C#3 F#3 A3",  # F#m
        "G2 D3 G3 B3",  # G
        "A2 E3 A3 C#4",  # A
    ]
    picking = [0, 1, 2, 3, 2, 1, 3, 2]  # voice index of each eighth note
    for bar, voicing in enumerate(guitar_voicings):
        notes = pitches(voicing)
        for eighth, voice in enumerate(picking):
            start = bar * bar_beats + eighth * 0.5
            if eighth == 0:
                guitar.note(start, bar_beats, notes[voice], 72)  # thumb rings through the bar
            else:
                ring_beats = min(1.5, (bar + 1) * bar_beats - start)  # damped at the bar line
                guitar.note(start, ring_beats, notes[voice], 60 if eighth % 2 else 64)

    # Flute melody: a two-phrase period (antecedent ends on the suspended
    # dominant, consequent climbs to C#6 and falls back through the dominant).
    melody = Part("melody", *RANGE_FLUTE)
    melody_bars = [
        "F#5:1.5 E5:0.5 D5:1 E5:1",  # D
        "F#5:2 A5:1.5 G5:0.5",  # Bm7
        "F#5:1.5 E5:0.5 D5:2",  # Gmaj7
        "E5:3 A4:1",  # Asus4
        "A5:2 F#5:1 G5:0.5 A5:0.5",  # D
        "C#6:1.5 B5:0.5 A5:2",  # F#m
        "B5:1.5 A5:0.5 G5:1 F#5:1",  # G
        "E5:1.5 D5:0.5 C#5:2",  # A
    ]
    for bar, text in enumerate(melody_bars):
        melody.line(bar * bar_beats, text, 74)

    return Piece("explore", 84, bar_beats, "D", 8, EXPLORE_CHORDS, [pad, bass, guitar, melody])


# ---------------------------------------------------------------------------
# stealth — tension, E minor, 96 bpm, 4/4
# ---------------------------------------------------------------------------

STEALTH_CHORDS = ["Em", "C", "Em", "C", "Am", "Em", "C", "B7"]


def compose_stealth() -> Piece:
    bar_beats = 4
    # Dark sustained strings: a low root under close three-voice chords that move
    # by half steps (B-C, G-F#, D#-E) — the i-bVI rocking of stealth music.
    drone = Part("drone", *RANGE_STRINGS)
    drone_voicings = [
        "E2 G3 B3 E4",  # Em
        "C2 G3 C4 E4",  # C
        "E2 G3 B3 E4",  # Em
        "C2 G3 C4 E4",  # C
        "A1 A3 C4 E4",  # Am
        "E2 G3 B3 E4",  # Em
        "C2 G3 C4 E4",  # C
        "B1 F#3 A3 D#4",  # B7
    ]
    for bar, voicing in enumerate(drone_voicings):
        drone.chord(bar * bar_beats, bar_beats, pitches(voicing), 70)

    # Pizzicato ostinato in a 3+3+2 sixteenth grouping: root, root, fifth |
    # root, root, third. Every note is a chord tone.
    pizz = Part("pizz", *RANGE_PIZZ)
    pizz_chord_tones = {  # root, third, fifth
        "Em": "E3 G3 B3",
        "C": "C3 E3 G3",
        "Am": "A2 C3 E3",
        "B7": "B2 D#3 F#3",
    }
    rhythm = [(0.0, 0, 92), (0.75, 0, 70), (1.5, 2, 78), (2.0, 0, 88), (2.75, 0, 68), (3.5, 1, 76)]
    for bar, symbol in enumerate(STEALTH_CHORDS):
        root, third, fifth = pitches(pizz_chord_tones[symbol])
        tones = {0: root, 1: third, 2: fifth}
        for offset, tone, velocity in rhythm:
            pizz.note(bar * bar_beats + offset, 0.4, tones[tone], velocity)

    # Percussion: heavy kick on 1 and on the "a" of 2 (matching the pizzicato),
    # side stick backbeat, ticking sixteenth hi-hats; low-tom pickup into the loop.
    perc = Part("perc", *RANGE_PERCUSSION, percussion=True)
    for bar in range(8):
        start = bar * bar_beats
        perc.hit(start + 0.0, KICK_LOW, 110)
        perc.hit(start + 2.75, KICK_LOW, 88)
        perc.hit(start + 1.0, SIDE_STICK, 84)
        perc.hit(start + 3.0, SIDE_STICK, 88)
        last_bar = bar == 7
        for sixteenth in range(12 if last_bar else 16):
            perc.hit(start + sixteenth * 0.25, HAT_CLOSED, 70 if sixteenth % 4 == 0 else 50)
        if last_bar:
            for i, (key, velocity) in enumerate(
                [(TOM_LOW, 76), (TOM_LOW, 84), (FLOOR_TOM_LOW, 92), (FLOOR_TOM_LOW, 100)]
            ):
                perc.hit(start + 3.0 + i * 0.25, key, velocity)

    # Low clarinet (chalumeau) motif: a sneaking line that turns around the
    # fifth and ends on the leading tone D#.
    motif = Part("motif", *RANGE_CLARINET)
    motif_bars = [
        "E4:1.5 F#4:0.5 G4:2",  # Em
        "G4:1.5 F#4:0.5 E4:2",  # C
        "B3:3 D4:1",  # Em
        "E4:1.5 D4:0.5 C4:2",  # C
        "E4:2 A4:2",  # Am
        "G4:1.5 F#4:0.5 E4:2",  # Em
        "E4:1 F#4:1 G4:2",  # C
        "F#4:2 D#4:2",  # B7
    ]
    for bar, text in enumerate(motif_bars):
        motif.line(bar * bar_beats, text, 70)

    return Piece("stealth", 96, bar_beats, "Em", 8, STEALTH_CHORDS, [drone, pizz, perc, motif])


# ---------------------------------------------------------------------------
# combat — D minor, 140 bpm, 4/4
# ---------------------------------------------------------------------------

COMBAT_CHORDS = ["Dm", "Bb", "C", "Dm", "Dm", "Bb", "Gm", "A"]


def compose_combat() -> Piece:
    bar_beats = 4
    accents = {0, 3, 6}  # 3+3+2 eighth-note grouping

    # Driving string ostinato: low, high, middle chord tone in groups of three
    # eighths (3+3+2), close voicings around D4 so the figure barely moves.
    ostinato = Part("ostinato", *RANGE_STRINGS)
    ostinato_voicings = {  # low, middle, high
        "Dm": "D4 F4 A4",
        "Bb": "D4 F4 Bb4",
        "C": "E4 G4 C5",
        "Gm": "D4 G4 Bb4",
        "A": "C#4 E4 A4",
    }
    figure = [0, 2, 1, 0, 2, 1, 0, 2]
    for bar, symbol in enumerate(COMBAT_CHORDS):
        notes = pitches(ostinato_voicings[symbol])
        for eighth, voice in enumerate(figure):
            velocity = 100 if eighth in accents else 74
            ostinato.note(bar * bar_beats + eighth * 0.5, 0.45, notes[voice], velocity)

    # Synth bass: driving root eighths, octave jumps on the 3+3+2 accents.
    bass = Part("bass", *RANGE_BASS)
    roots = {"Dm": "D2", "Bb": "Bb1", "C": "C2", "Gm": "G1", "A": "A1"}
    for bar, symbol in enumerate(COMBAT_CHORDS):
        root = pitch(roots[symbol])
        line = [root, root, root, root + 12, root, root, root + 12, root]
        if bar == 7:  # A: fifth and leading tone back to D
            line[6], line[7] = pitch("E2"), pitch("C#2")
        for eighth, key in enumerate(line):
            velocity = 104 if eighth in accents else 82
            bass.note(bar * bar_beats + eighth * 0.5, 0.45, key, velocity)

    # Drums: kick on the 3+3+2 accents, snare backbeat, eighth hi-hats, crash
    # every four bars, a snare pickup in bar 4 and a tom fill in bar 8.
    drums = Part("drums", *RANGE_PERCUSSION, percussion=True)
    for bar in range(8):
        start = bar * bar_beats
        for offset in (0.0, 1.5, 3.0 if bar != 7 else 2.0):
            drums.hit(start + offset, KICK, 110 if offset == 0 else 96)
        drums.hit(start + 1.0, SNARE, 104)
        if bar not in (3, 7):
            drums.hit(start + 3.0, SNARE, 108)
        if bar in (0, 4):
            drums.hit(start, CRASH, 110, length_beats=1.0)
        hat_eighths = range(4) if bar == 7 else range(1 if bar in (0, 4) else 0, 8)
        for eighth in hat_eighths:
            drums.hit(start + eighth * 0.5, HAT_CLOSED, 84 if eighth % 2 == 0 else 62)
        if bar == 3:
            for i, velocity in enumerate((108, 78, 90, 102)):  # backbeat turned into a pickup
                drums.hit(start + 3.0 + i * 0.25, SNARE, velocity)
        if bar == 7:
            fill = [TOM_HIGH, TOM_HIGH, TOM_HIGH_MID, TOM_HIGH_MID, TOM_LOW_MID, TOM_LOW, FLOOR_TOM_HIGH, FLOOR_TOM_LOW]
            for i, key in enumerate(fill):
                drums.hit(start + 2.0 + i * 0.25, key, 88 + 2 * i)

    # French horns in unison: a rising minor-triad call, falling answers, a
    # climb to D5 and the harmonic-minor dominant (C#) at the turnaround.
    horns = Part("horns", *RANGE_HORN)
    horn_bars = [
        "D4:1.5 E4:0.5 F4:1 A4:1",  # Dm
        "Bb4:1.5 A4:0.5 F4:2",  # Bb
        "G4:1.5 F4:0.5 E4:2",  # C
        "D4:3 A3:1",  # Dm
        "D4:1 F4:1 A4:1 D5:1",  # Dm
        "D5:1.5 C5:0.5 Bb4:2",  # Bb
        "G4:1 Bb4:1 D5:2",  # Gm
        "C#5:1.5 B4:0.5 A4:2",  # A
    ]
    for bar, text in enumerate(horn_bars):
        horns.line(bar * bar_beats, text, 98)

    return Piece("combat", 140, bar_beats, "Dm", 8, COMBAT_CHORDS, [ostinato, bass, drums, horns])


# ---------------------------------------------------------------------------
# triumph — Bb major, 120 bpm, 4/4
# ---------------------------------------------------------------------------

TRIUMPH_CHORDS = ["Bb", "F", "Gm", "Eb", "Bb", "Eb", "Gb", "Ab"]


def compose_triumph() -> Piece:
    bar_beats = 4
    # Strings: march rhythm (half, quarter, quarter) on voice-led chords; the
    # borrowed bVI-bVII (Gb-Ab) planes up into the tonic at the loop point.
    strings = Part("strings", *RANGE_STRINGS)
    string_voicings = [
        "Bb3 D4 F4 Bb4",  # Bb
        "A3 C4 F4 A4",  # F
        "Bb3 D4 G4 Bb4",  # Gm
        "Bb3 Eb4 G4 Bb4",  # Eb
        "Bb3 D4 F4 Bb4",  # Bb
        "Bb3 Eb4 G4 Bb4",  # Eb
        "Bb3 Db4 Gb4 Bb4",  # Gb
        "Ab3 C4 Eb4 Ab4",  # Ab
    ]
    for bar, voicing in enumerate(string_voicings):
        notes = pitches(voicing)
        start = bar * bar_beats
        strings.chord(start, 2.0, notes, 84)
        strings.chord(start + 2.0, 1.0, notes, 74)
        strings.chord(start + 3.0, 1.0, notes, 78)

    # Tuba: root, root pickup, fifth — a march bass.
    bass = Part("bass", *RANGE_TUBA)
    bass_bars = [
        "Bb1:1.5 Bb1:0.5 F2:2",  # Bb
        "F2:1.5 F2:0.5 C2:2",  # F
        "G1:1.5 G1:0.5 D2:2",  # Gm
        "Eb2:1.5 Eb2:0.5 Bb1:2",  # Eb
        "Bb1:1.5 Bb1:0.5 F2:2",  # Bb
        "Eb2:1.5 Eb2:0.5 Bb1:2",  # Eb
        "Gb1:1.5 Gb1:0.5 Db2:2",  # Gb
        "Ab1:1.5 Ab1:0.5 Eb2:2",  # Ab
    ]
    for bar, text in enumerate(bass_bars):
        bass.line(bar * bar_beats, text, 98)

    # Drums: kick on 1 and 3, snare backbeat with sixteenth march pickups,
    # eighth hi-hats, crash every four bars, a snare roll into the loop.
    drums = Part("drums", *RANGE_PERCUSSION, percussion=True)
    for bar in range(8):
        start = bar * bar_beats
        drums.hit(start, KICK, 104)
        drums.hit(start + 2.0, KICK, 96)
        drums.hit(start + 1.0, SNARE, 98)
        if bar in (0, 4):
            drums.hit(start, CRASH, 108, length_beats=1.0)
        if bar == 7:
            for i in range(8):  # roll on beats 3-4, crescendo
                drums.hit(start + 2.0 + i * 0.25, SNARE, 64 + 6 * i)
            hat_eighths = range(4)
        else:
            drums.hit(start + 3.0, SNARE, 100)
            drums.hit(start + 3.5, SNARE, 58)
            drums.hit(start + 3.75, SNARE, 70)
            hat_eighths = range(1 if bar in (0, 4) else 0, 8)
        for eighth in hat_eighths:
            drums.hit(start + eighth * 0.5, HAT_CLOSED, 76 if eighth % 2 == 0 else 56)

    # Trumpet fanfare: tonic arpeggio call, a climb to G5 over the
    # submediant, and the borrowed Db-Eb peak that resolves C5 -> Bb4 at the loop.
    fanfare = Part("fanfare", *RANGE_TRUMPET)
    fanfare_bars = [
        "Bb4:1.5 F4:0.5 Bb4:1 D5:1",  # Bb
        "C5:1.5 Bb4:0.5 A4:2",  # F
        "Bb4:1 D5:1 G5:2",  # Gm
        "G5:1.5 F5:0.5 Eb5:2",  # Eb
        "D5:1.5 C5:0.5 Bb4:1 F4:1",  # Bb
        "G4:1 Bb4:1 Eb5:2",  # Eb
        "Db5:2 Bb4:1 Db5:1",  # Gb
        "Eb5:2 Ab4:1 C5:1",  # Ab
    ]
    for bar, text in enumerate(fanfare_bars):
        fanfare.line(bar * bar_beats, text, 96)

    return Piece("triumph", 120, bar_beats, "Bb", 8, TRIUMPH_CHORDS, [strings, bass, drums, fanfare])


# ---------------------------------------------------------------------------
# sorrow — A minor, 66 bpm, 3/4 (its layers are rendered to audio stems)
# ---------------------------------------------------------------------------

SORROW_CHORDS = ["Am", "F", "C", "G", "F", "Dm", "Esus4", "E"]


def compose_sorrow() -> Piece:
    bar_beats = 3
    # Piano: bass note held through the bar, broken chord in eighths above it.
    piano = Part("piano", *RANGE_PIANO)
    piano_voicings = [  # bass, then three upper chord tones
        "A2 E3 A3 C4",  # Am
        "F2 C3 F3 A3",  # F
        "C3 G3 C4 E4",  # C
        "G2 D3 G3 B3",  # G
        "F2 C3 F3 A3",  # F
        "D3 A3 D4 F4",  # Dm
        "E2 B2 E3 A3",  # Esus4
        "E2 B2 E3 G#3",  # E
    ]
    broken = [1, 2, 3, 2, 1]  # voices of eighths 2..6
    for bar, voicing in enumerate(piano_voicings):
        notes = pitches(voicing)
        start = bar * bar_beats
        piano.note(start, bar_beats, notes[0], 82)
        for i, voice in enumerate(broken, start=1):
            ring_beats = min(1.5, bar_beats - i * 0.5)  # pedal changes at the bar line
            piano.note(start + i * 0.5, ring_beats, notes[voice], 70 if i != 3 else 76)

    # Slow strings: soft three-voice chords; G# -> A at the loop point.
    strings = Part("strings", *RANGE_STRINGS)
    string_voicings = [
        "A3 C4 E4",  # Am
        "A3 C4 F4",  # F
        "G3 C4 E4",  # C
        "G3 B3 D4",  # G
        "A3 C4 F4",  # F
        "A3 D4 F4",  # Dm
        "A3 B3 E4",  # Esus4
        "G#3 B3 E4",  # E
    ]
    for bar, voicing in enumerate(string_voicings):
        strings.chord(bar * bar_beats, bar_beats, pitches(voicing), 58)

    # Cello lament in the tenor register: falls from E4, climbs to its A4
    # climax over Dm, sighs E4 -> B3 over the suspension and waits on G#3.
    cello = Part("cello", *RANGE_CELLO)
    cello_bars = [
        "E4:1.5 D4:0.5 C4:1",  # Am
        "A3:2 C4:1",  # F
        "E4:2 D4:0.5 C4:0.5",  # C
        "B3:3",  # G
        "A3:1 C4:1 F4:1",  # F
        "A4:2 G4:0.5 F4:0.5",  # Dm
        "E4:2 B3:1",  # Esus4
        "G#3:2 B3:1",  # E
    ]
    for bar, text in enumerate(cello_bars):
        cello.line(bar * bar_beats, text, 72)

    # Choir "aah": two high voices, mostly common tones, entering at the peak.
    choir = Part("choir", *RANGE_CHOIR)
    choir_voicings = ["A4 C5", "A4 C5", "G4 C5", "G4 B4", "A4 C5", "A4 D5", "A4 B4", "G#4 B4"]
    for bar, voicing in enumerate(choir_voicings):
        choir.chord(bar * bar_beats, bar_beats, pitches(voicing), 64)

    return Piece("sorrow", 66, bar_beats, "Am", 8, SORROW_CHORDS, [piano, strings, cello, choir])


# ---------------------------------------------------------------------------
# to_triumph — a two-bar authored bridge from combat into triumph
# ---------------------------------------------------------------------------

TO_TRIUMPH_CHORDS = ["Gm", "F7"]


def compose_to_triumph() -> Piece:
    """Gm (iv of D minor = vi of Bb major, the pivot) to F7 (V7 of Bb): the
    dominant that resolves onto triumph's first Bb chord."""
    bar_beats = 4
    strings = Part("strings", *RANGE_STRINGS)
    strings.chord(0.0, 4.0, pitches("G3 D4 G4 Bb4"), 76)
    f7 = pitches("A3 Eb4 F4 C5")  # resolves to triumph's Bb3 D4 F4 Bb4
    for beat, velocity in enumerate((84, 92, 100, 110)):
        strings.chord(4.0 + beat, 1.0, f7, velocity)

    horns = Part("horns", *RANGE_HORN)
    horns.line(0.0, "G3:2 Bb3:1 D4:1 C4:1 Eb4:1 F4:1 A4:1", 92)  # A4 -> Bb4 of the fanfare

    timpani = Part("timpani", *RANGE_TIMPANI)
    for i in range(16):  # sixteenth roll on G, crescendo
        timpani.note(i * 0.25, 0.25, pitch("G2"), 52 + 3 * i)
    for beat in range(4):  # F (the dominant root) on every beat
        timpani.note(4.0 + beat, 0.5, pitch("F2"), 96 + 6 * beat)

    drums = Part("drums", *RANGE_PERCUSSION, percussion=True)
    drums.hit(0.0, KICK, 96)
    for i in range(16):  # snare roll, crescendo
        drums.hit(i * 0.25, SNARE, 44 + 3 * i)
    fill = [TOM_HIGH, TOM_HIGH_MID, TOM_LOW_MID, TOM_LOW, FLOOR_TOM_HIGH, FLOOR_TOM_HIGH, FLOOR_TOM_LOW, FLOOR_TOM_LOW]
    for beat in range(4):
        drums.hit(4.0 + beat, KICK, 100 + 4 * beat)
    for i, key in enumerate(fill):
        drums.hit(4.0 + i * 0.5, key, 92 + 4 * i)

    return Piece("to_triumph", 120, bar_beats, "Bb", 2, TO_TRIUMPH_CHORDS, [strings, horns, timpani, drums])


# ---------------------------------------------------------------------------
# stingers — one track each, 1-2 bars
# ---------------------------------------------------------------------------


def compose_stingers() -> Piece:
    # discovery (C major, glockenspiel): a rising sixteenth arpeggio landing on a bright third.
    discovery = Part("discovery", *RANGE_GLOCKENSPIEL, length_beats=4.0)
    discovery.line(0.0, "C5:0.25 E5:0.25 G5:0.25 C6:0.25", 84, accent=0)
    discovery.chord(1.0, 2.5, pitches("G5 C6 E6"), 96)

    # danger (C minor, brass section): a low diminished stab, "da-DAAM".
    danger = Part("danger", *RANGE_BRASS, length_beats=4.0)
    stab = pitches("C2 C3 Eb3 Gb3")
    danger.chord(0.0, 0.5, stab, 112)
    danger.chord(0.75, 2.75, stab, 122)

    # impact (percussion): bass drums, floor tom and two crashes, one hit.
    impact = Part("impact", *RANGE_PERCUSSION, percussion=True, length_beats=4.0)
    for key, velocity in ((KICK_LOW, 127), (KICK, 110), (FLOOR_TOM_LOW, 112), (CRASH, 120), (CRASH_2, 104)):
        impact.hit(0.0, key, velocity, length_beats=2.0)

    # victory (C major, trumpet): triplet call on the dominant, tonic arpeggio, held G5.
    victory = Part("victory", *RANGE_TRUMPET, length_beats=8.0)
    third = 1.0 / 3.0
    for i in range(3):
        victory.note(i * third, 0.3, pitch("G4"), 92 + 6 * i)
    victory.line(1.0, "C5:0.75 r:0.25 G4:0.5 C5:0.5 E5:1 G5:3.5", 108)

    # loss (A minor, oboe): a falling line E-D-C-B that settles on the tonic.
    loss = Part("loss", *RANGE_OBOE, length_beats=8.0)
    loss.line(0.0, "E5:1.5 D5:0.5 C5:1 B4:1 A4:3", 80)

    return Piece("stingers", 120, 4, "C", 2, [], [discovery, danger, impact, victory, loss])


PIECES = (compose_explore, compose_stealth, compose_combat, compose_triumph, compose_sorrow, compose_to_triumph, compose_stingers)

# ---------------------------------------------------------------------------
# Checks and writing
# ---------------------------------------------------------------------------


def check_piece(piece: Piece) -> None:
    """Raise ``ValueError`` if a note leaves its loop or its instrument's range,
    or a strong-beat attack in a pitched part is not a tone of that bar's chord."""
    problems: list[str] = []
    strong_beats = (0.0, 2.0) if piece.beats_per_bar == 4 else (0.0,)
    for part in piece.parts:
        end_beats = part.length_beats if part.length_beats is not None else piece.length_beats
        for note in part.notes:
            where = f"{piece.name}/{part.name} note {note.key} at beat {note.start_beats:g}"
            if note.start_beats < 0 or note.start_beats + note.length_beats > end_beats + 1e-9:
                problems.append(f"{where}: outside the loop (0..{end_beats:g} beats)")
            if not part.low <= note.key <= part.high:
                problems.append(f"{where}: outside the range {part.low}..{part.high}")
            if not 1 <= note.velocity <= 127:
                problems.append(f"{where}: velocity {note.velocity}")
            if part.percussion or not piece.chords:
                continue
            bar, beat_in_bar = divmod(note.start_beats, piece.beats_per_bar)
            if any(abs(beat_in_bar - strong) < 1e-9 for strong in strong_beats):
                chord = piece.chords[int(bar) % len(piece.chords)]
                if note.key % 12 not in chord_pitch_classes(chord):
                    problems.append(f"{where}: not a tone of {chord}")
    if problems:
        raise ValueError("; ".join(problems))


def _ticks(beats: float) -> int:
    return int(round(beats * TICKS_PER_BEAT))


def _track(name: str, events: list[tuple[int, int, mido.Message | mido.MetaMessage]], end_ticks: int) -> mido.MidiTrack:
    """A track from absolute-tick events ``(tick, order, message)``, ending at ``end_ticks``."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _order, message in sorted(events, key=lambda event: (event[0], event[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=end_ticks - now))
    return track


def part_track(part: Part, end_beats: float) -> mido.MidiTrack:
    """The part's notes on channel 0. A note that would still sound when the same
    key is struck again is shortened to end there (one channel, no overlaps)."""
    onsets: dict[int, list[int]] = {}
    for note in part.notes:
        onsets.setdefault(note.key, []).append(_ticks(note.start_beats))
    events = []
    for note in part.notes:
        start = _ticks(note.start_beats)
        end = _ticks(note.start_beats + note.length_beats)
        later = [onset for onset in onsets[note.key] if onset > start]
        if later:
            end = min(end, min(later))
        if start in onsets[note.key][onsets[note.key].index(start) + 1 :]:
            raise ValueError(f"{part.name}: key {note.key} struck twice at beat {note.start_beats:g}")
        if end <= start:
            raise ValueError(f"{part.name}: empty note {note.key} at beat {note.start_beats:g}")
        # Note-offs sort before note-ons at the same tick, then by key.
        events.append((start, 1000 + note.key, mido.Message("note_on", channel=0, note=note.key, velocity=note.velocity)))
        events.append((end, note.key, mido.Message("note_off", channel=0, note=note.key, velocity=0)))
    return _track(part.name, events, _ticks(end_beats))


def to_midi(piece: Piece) -> mido.MidiFile:
    """The piece as a type-1 Standard MIDI File: conductor track, then one track per part."""
    check_piece(piece)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = [
        (0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.bpm))),
        (0, 1, mido.MetaMessage("time_signature", numerator=piece.beats_per_bar, denominator=4)),
        (0, 2, mido.MetaMessage("key_signature", key=piece.key_signature)),
    ]
    midi.tracks.append(_track(piece.name, conductor, _ticks(piece.length_beats)))
    for part in piece.parts:
        end_beats = part.length_beats if part.length_beats is not None else piece.length_beats
        midi.tracks.append(part_track(part, end_beats))
    return midi


def main(out_dir: Path | str | None = None) -> list[Path]:
    """Compose every piece and write ``<name>.mid`` into ``out_dir`` (default:
    ``adaptive/data/default_bank/``). Returns the written paths."""
    folder = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for compose in PIECES:
        piece = compose()
        path = folder / f"{piece.name}.mid"
        to_midi(piece).save(path)
        written.append(path)
    return written


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT_DIR})")
    arguments = parser.parse_args()
    for path in main(arguments.out):
        print(path)


if __name__ == "__main__":
    _cli()
