"""Standard MIDI File export of what a session played (mido).

The file is type 1: a first track with the tempo map (the playing cue's tempo
and meter at each cue change) and one track per part (``cue/layer``,
``stinger/name``, ``bridge``), named after it. Ticks are derived from frames
through the tempo map, so the file lines up with the rendered audio and reads
in bars and beats in a DAW.

MIDI channels are given to parts on first use; percussion parts share channel
10. With more than 15 pitched parts, channels are reused and a program change
is written whenever a channel passes to another part.
"""

from __future__ import annotations

from pathlib import Path

from adaptive.events import MidiNoteEvent, PartInfo
from adaptive.synth import PERCUSSION_CHANNEL
from adaptive.voice import NOTE_OFF, NOTE_ON

TICKS_PER_BEAT = 960


class _TempoMap:
    def __init__(self, changes: list[tuple[int, float, int]], sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.segments: list[tuple[int, float, float]] = []  # (frame, tick, bpm)
        tick = 0.0
        previous: tuple[int, float] | None = None
        for frame, bpm, _ in sorted(changes or [(0, 120.0, 4)], key=lambda c: c[0]):
            if previous is not None:
                tick += (frame - previous[0]) * previous[1] / 60.0 * TICKS_PER_BEAT / sample_rate_hz
            elif frame > 0:
                tick = frame * 120.0 / 60.0 * TICKS_PER_BEAT / sample_rate_hz
            self.segments.append((frame, tick, bpm))
            previous = (frame, bpm)
        if self.segments[0][0] > 0:
            self.segments.insert(0, (0, 0.0, 120.0))

    def tick(self, frame: int) -> int:
        segment = self.segments[0]
        for candidate in self.segments:
            if candidate[0] <= frame:
                segment = candidate
            else:
                break
        seg_frame, seg_tick, bpm = segment
        return int(round(seg_tick + (frame - seg_frame) * bpm / 60.0 * TICKS_PER_BEAT / self.sample_rate_hz))


def write_midi(
    path: Path | str,
    events: list[MidiNoteEvent],
    parts: dict[str, PartInfo],
    tempo_changes: list[tuple[int, float, int]],
    sample_rate_hz: int,
    end_frame: int | None = None,
) -> None:
    """Write the played notes as a type-1 Standard MIDI File.

    Args:
        path: output file.
        events: note events with their frames (any order).
        parts: program and percussion flag of every part named in ``events``.
        tempo_changes: ``(frame, bpm, beats_per_bar)`` of each cue change.
        sample_rate_hz: the session rate the frames count at.
        end_frame: where the recording ends: notes still held then get a
            note-off there, so no note hangs in the file (default: the last
            event's frame).

    Raises:
        OSError: the file cannot be written.
    """
    import mido

    held: dict[tuple[str, int], int] = {}
    for event in sorted(events, key=lambda e: (e.frame, e.kind)):
        key = (event.part, event.pitch)
        held[key] = held.get(key, 0) + (1 if event.kind == NOTE_ON else -1)
    last_frame = max((e.frame for e in events), default=0)
    close_frame = max(end_frame if end_frame is not None else last_frame, last_frame)
    events = list(events) + [
        MidiNoteEvent(close_frame, part, NOTE_OFF, pitch, 0)
        for (part, pitch), count in sorted(held.items()) for _ in range(max(count, 0))
    ]

    tempo_map = _TempoMap(tempo_changes, sample_rate_hz)
    conductor: list[tuple[int, mido.MetaMessage]] = []
    for frame, bpm, beats_per_bar in tempo_changes or [(0, 120.0, 4)]:
        tick = tempo_map.tick(frame)
        conductor.append((tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))))
        conductor.append((tick, mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4)))

    ordered = sorted(events, key=lambda e: (e.frame, e.kind, e.part, e.pitch))
    track_events: dict[str, list[tuple[int, mido.Message]]] = {}
    channel_of: dict[str, int] = {}
    channel_owner: dict[int, str] = {}
    free_channels = [c for c in range(16) if c != PERCUSSION_CHANNEL]
    next_channel = 0
    for event in ordered:
        info = parts.get(event.part, PartInfo(0, False))
        messages = track_events.setdefault(event.part, [])
        tick = tempo_map.tick(event.frame)
        if event.part not in channel_of:
            if info.percussion:
                channel_of[event.part] = PERCUSSION_CHANNEL
            else:
                channel_of[event.part] = free_channels[next_channel % len(free_channels)]
                next_channel += 1
        channel = channel_of[event.part]
        if event.kind == NOTE_ON and channel_owner.get(channel) != event.part:
            channel_owner[channel] = event.part
            if not info.percussion:
                messages.append((tick, mido.Message("program_change", channel=channel, program=info.program)))
        if event.kind == NOTE_ON:
            messages.append((tick, mido.Message("note_on", channel=channel, note=event.pitch, velocity=event.velocity)))
        else:
            messages.append((tick, mido.Message("note_off", channel=channel, note=event.pitch, velocity=0)))

    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(_track("tempo", conductor))
    for part, messages in track_events.items():
        midi.tracks.append(_track(part, messages))
    midi.save(str(path))


def _track(name: str, timed: list[tuple[int, object]]):
    import mido

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name))
    previous = 0
    for tick, message in timed:
        track.append(message.copy(time=tick - previous))  # type: ignore[attr-defined]
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
