"""Write the default bank's public-domain theme, ``hero.mid``, from the
music21 corpus.

Source: "King of Sweden's March with Variations", James Aird, *A Selection of
Scotch, English, Irish and Foreign Airs*, book 3 (Glasgow, c. 1788; public
domain), tune 434, in music21's corpus as ``airdsAirs/book3.abc``. The theme
is its first strain, bars 1-8 (D major, written in 2/2; here in 4/4 quarter
beats, the same bar). The chords under it are ours (the source is a bare
melody), written as block chords on the ``chords`` track, one or two per bar.

Run from the repository root:
``python tools/theme_from_corpus.py`` (writes adaptive/data/default_bank/hero.mid).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "adaptive" / "data" / "default_bank" / "hero.mid"
TICKS_PER_BEAT = 480
BARS = 8
CHORDS = ["D", "G", "D", "A", "D", "G D", "Em A", "D"]
"""One entry per bar; two symbols: the second from the half bar."""
VOICINGS = {"D": (50, 54, 57), "G": (43, 50, 55, 59), "A": (45, 52, 57, 61), "Em": (52, 55, 59)}


def theme_notes() -> list[tuple[float, float, int]]:
    """``(start_beats, duration_beats, pitch)`` of the first strain (8 bars)."""
    from music21 import corpus

    opus = corpus.parse("airdsAirs/book3.abc")
    score = next(s for s in opus.scores if "Sweden" in (s.metadata.title or ""))
    notes = []
    for note in score.parts[0].flatten().notes:
        start = float(note.offset)
        if start >= BARS * 4:
            break
        notes.append((start, float(note.quarterLength), int(note.pitch.midi)))
    return notes


def _track(name: str, notes: list[tuple[float, float, int, int]]) -> mido.MidiTrack:
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    events = []
    for start, duration, pitch, velocity in notes:
        events.append((round(start * TICKS_PER_BEAT), 1, pitch, velocity))
        events.append((round((start + duration) * TICKS_PER_BEAT), 0, pitch, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for tick, on, pitch, velocity in events:
        track.append(mido.Message("note_on" if on else "note_off", note=pitch, velocity=velocity, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def build() -> mido.MidiFile:
    """The whole file: conductor track (tempo 108 bpm, 4/4, D major), melody, chords."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("track_name", name="conductor", time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(108), time=0),
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        mido.MetaMessage("key_signature", key="D", time=0),
        mido.MetaMessage("end_of_track", time=0),
    ]))
    midi.tracks.append(_track("melody", [(s, d, p, 90) for s, d, p in theme_notes()]))
    chords = []
    for bar, entry in enumerate(CHORDS):
        symbols = entry.split()
        length = 4.0 / len(symbols)
        for index, symbol in enumerate(symbols):
            for pitch in VOICINGS[symbol]:
                chords.append((bar * 4.0 + index * length, length, pitch, 70))
    midi.tracks.append(_track("chords", chords))
    return midi


if __name__ == "__main__":
    build().save(str(OUT))
    print(f"wrote {OUT}", file=sys.stderr)
