"""Offline rendering: a timeline through the engine core, as fast as it goes,
to a WAV file, a Standard MIDI File and a JSON list of music events.

The same core runs in real time (the server); here it is driven block by block
with no pacing. The same bank, SoundFont, timeline and seed give a
bit-identical WAV.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from adaptive.clock import DEFAULT_SAMPLE_RATE_HZ, frames_to_seconds, seconds_to_frames
from adaptive.cue import CueBank
from adaptive.mapping import MappingChange, ResolvedMapping
from adaptive.offline import render_offline
from adaptive.events import MusicEvent
from adaptive.session import Session
from adaptive.timeline import Timeline

RENDER_BLOCK_FRAMES = 4096
"""Block size for offline rendering (the output does not depend on it)."""

WAV_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
"""Sample formats :func:`write_wav` accepts."""


@dataclass
class RenderResult:
    """What an offline render produced.

    Attributes:
        audio: ``(n_frames, 2)`` float32.
        events: every music event, in frame order.
        session: the session (for its MIDI log, parts, counters).
    """

    audio: np.ndarray
    events: list[MusicEvent]
    session: Session


def render_timeline(
    bank: CueBank,
    timeline: Timeline,
    *,
    soundfont: Path | str | None = None,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    seed: int | None = None,
    block_frames: int = RENDER_BLOCK_FRAMES,
    on_block: Callable[[int], None] | None = None,
    progress: Callable[[str], None] | None = None,
    generator: str | None = None,
    mapping: ResolvedMapping | None = None,
    mapping_changes: list[tuple[float, MappingChange]] | None = None,
) -> RenderResult:
    """Render ``timeline`` with ``bank``.

    Args:
        seed: overrides the timeline's seed when given.
        block_frames: render block size (any size gives the same audio).
        on_block: called with the frames rendered after each block (progress).
        generator: the session's part generator (default
            :func:`adaptive.registry.default_generator`). Offline, every
            generated bar is waited for: no fallback plays unless a generator fails.
        mapping: the mapping to play by (default: the bank's own).
        mapping_changes: ``(time_seconds, change)`` pairs: mapping changes
            (as a hot reload makes them) submitted at those times.

    Returns:
        A :class:`RenderResult`.

    Raises:
        AssetError: a SoundFont, MIDI file or stem cannot be loaded.
        InputError: an input the bank does not allow (validate the timeline
            with :func:`adaptive.timeline.load_timeline` to get them all at once).
    """
    session = Session(bank, soundfont=soundfont, sample_rate_hz=sample_rate_hz,
                      seed=timeline.seed if seed is None else seed, max_block_frames=block_frames,
                      progress=progress, generator=generator, mapping=mapping,
                      generated_bridges=bool(mapping_changes))
    try:
        timed = sorted(list(timeline.inputs()) + list(mapping_changes or []), key=lambda pair: pair[0])
        # (stable: at equal times, timeline inputs first)
        inputs = [(seconds_to_frames(time_seconds, sample_rate_hz), item) for time_seconds, item in timed]
        total_frames = seconds_to_frames(timeline.duration_seconds, sample_rate_hz)
        audio = render_offline(session, total_frames, inputs, block_frames=block_frames, on_block=on_block)
        return RenderResult(audio, session.drain_events(), session)
    finally:
        session.close()


def write_wav(path: Path | str, audio: np.ndarray, sample_rate_hz: int, subtype: str = "PCM_16") -> None:
    """Write ``audio`` (``(n, 2)`` float32 in [-1, 1]) as a WAV file.

    Raises:
        ValueError: ``subtype`` not one of :data:`WAV_SUBTYPES`.
    """
    import soundfile

    if subtype not in WAV_SUBTYPES:
        raise ValueError(f"WAV subtype {subtype!r} is not supported (allowed: {', '.join(WAV_SUBTYPES)})")
    soundfile.write(str(path), audio, sample_rate_hz, subtype=subtype, format="WAV")


def events_json(events: list[MusicEvent], sample_rate_hz: int) -> str:
    """The events as JSON: ``{"sample_rate_hz": .., "events": [{"frame", "time_seconds", "type", ...}]}``."""
    rows = [
        {"frame": event.frame, "time_seconds": round(frames_to_seconds(event.frame, sample_rate_hz), 6),
         "type": event.kind, **event.data}
        for event in events
    ]
    return json.dumps({"sample_rate_hz": sample_rate_hz, "events": rows}, indent=1)
