"""Session recordings: every input with the frame at which it took effect,
plus what is needed to replay it (DESIGN.md, "The time model": inputs are
stamped on arrival, and the stamped stream is what a recording stores).

The format is JSON Lines (UTF-8, one JSON object per line)::

    {"format": "adaptive-recording", "version": 2, "bank": "/abs/bank.toml",
     "soundfont": "/abs/gm.sf2", "sample_rate_hz": 48000, "seed": 0,
     "generator": "model", "bars_ahead": 1, "speculative_bridges": 2}
    {"frame": 96000, "type": "scene", "emotion": "tense", "valence": null,
     "arousal": null, "intensity": 0.8, "location": null, "cue": null}
    {"frame": 96000, "type": "generation_fallback", "part": "explore/arpeggio",
     "request": 0, "bar_index": 0, "reason": "late"}
    {"frame": 120000, "type": "stinger", "name": "hit"}
    {"frame": 150000, "type": "mapping", "source": "mapping.toml", "toml": "..."}
    {"type": "end", "frame": 480000}

The header's optional ``mapping`` holds the TOML text of the mapping the
session started with (absent or null: the bank's own); a ``"mapping"`` line is
a mapping change (hot reload, live tuning) with the whole new mapping's text,
so a replay plays by exactly the mappings that were live.

Frames are session frames (audio frames at ``sample_rate_hz`` since the session
started). The render block size is not recorded: rendering does not depend on it.

A ``generation_fallback`` line records a decision the real-time session made
that changes the audio: a generated bar was not ready at its downbeat (or its
generator failed), so the rule-based fallback played
(:class:`adaptive.generation.GenerationFallback`). Replay forces the same
fallbacks, identified by ``(part, request)``, and waits for every other bar,
so the replayed audio is the served audio bit for bit. Version 1 files (no
generation settings, no fallback lines) still load: their generator is
``rule_based``.

:class:`Recording` keeps file I/O off the audio path with a queue and a writer
thread: :meth:`Recording.write_input` only puts the stamped input in a queue;
the writer thread serializes it, writes it and flushes when the queue is empty.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from adaptive.errors import ConfigError, format_problems
from adaptive.generation import FallbackReason, GenerationFallback
from adaptive.mapping import MappingChange
from adaptive.scene import SceneUpdate, SessionInput, StingerTrigger

RECORDING_FORMAT = "adaptive-recording"
RECORDING_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Versions :func:`load_recording` reads (1: before generation settings and fallbacks)."""
FALLBACK_REASONS = tuple(reason.value for reason in FallbackReason)
SCENE_FIELDS = ("emotion", "valence", "arousal", "intensity", "location", "cue")
"""The fields of a ``"scene"`` line besides ``frame`` and ``type`` (see :class:`SceneUpdate`)."""

_FLUSH_SECONDS = 1.0
_END = object()


@dataclass(frozen=True)
class RecordingHeader:
    """What a recording needs to be replayed.

    Attributes:
        bank: path of the cue bank file (TOML).
        soundfont: path of the SoundFont the session used.
        sample_rate_hz: the session's sample rate (Hz).
        seed: the session's seed.
        generator: the session's generator name (see :data:`adaptive.registry.GENERATORS`).
        bars_ahead: bars generated layers asked for ahead.
        speculative_bridges: bridges generated ahead per cue.
    """

    bank: str
    soundfont: str | None
    sample_rate_hz: int
    seed: int
    generator: str = "rule_based"
    bars_ahead: int = 1
    speculative_bridges: int = 2
    mapping: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The header line as a JSON object."""
        data = {"format": RECORDING_FORMAT, "version": RECORDING_VERSION, "bank": self.bank,
                "soundfont": self.soundfont, "sample_rate_hz": self.sample_rate_hz, "seed": self.seed,
                "generator": self.generator, "bars_ahead": self.bars_ahead,
                "speculative_bridges": self.speculative_bridges}
        if self.mapping is not None:
            data["mapping"] = self.mapping
        return data


def input_to_json(frame: int, item: SessionInput | GenerationFallback) -> dict[str, Any]:
    """One input (or generation fallback) line as a JSON object (``frame`` in session frames)."""
    if isinstance(item, GenerationFallback):
        return {"frame": int(frame), "type": "generation_fallback", "part": item.part, "request": item.request,
                "bar_index": item.bar_index, "reason": item.reason}
    if isinstance(item, StingerTrigger):
        return {"frame": int(frame), "type": "stinger", "name": item.name}
    if isinstance(item, SceneUpdate):
        return {"frame": int(frame), "type": "scene", **{name: getattr(item, name) for name in SCENE_FIELDS}}
    if isinstance(item, MappingChange):
        return {"frame": int(frame), "type": "mapping", "source": item.source, "toml": item.text}
    raise TypeError(f"unknown input type {type(item).__name__} (allowed: SceneUpdate, StingerTrigger)")


class Recording:
    """A session recording being written (JSON Lines, see the module docstring).

    The file is opened and the header written when the recording is made (so a
    path that cannot be written fails here, not on the render thread). Inputs
    are written by a writer thread (daemon, named ``"adaptive-recording"``):
    :meth:`write_input` never does file I/O and never blocks, so it may be
    called from the render thread. Call :meth:`close` with the final frame
    count to write the ``"end"`` line; a recording without it is refused by
    :func:`load_recording`.

    Args:
        path: the file to write (replaced if it exists).
        bank: path of the cue bank file; stored resolved to an absolute path.
        soundfont: path of the SoundFont; stored resolved to an absolute path.
        sample_rate_hz: the session's sample rate (Hz).
        seed: the session's seed.
        generator, bars_ahead, speculative_bridges: the session's generation
            settings (they decide what is generated, so replay needs them).
        mapping: the TOML text of the mapping the session starts with (None: the bank's own).

    Raises:
        ConfigError: the file cannot be created.
    """

    def __init__(self, path: Path | str, *, bank: Path | str, soundfont: Path | str | None,
                 sample_rate_hz: int, seed: int, generator: str = "rule_based", bars_ahead: int = 1,
                 speculative_bridges: int = 2, mapping: str | None = None) -> None:
        self.path = Path(path)
        self.header = RecordingHeader(str(Path(bank).resolve()),
                                      None if soundfont is None else str(Path(soundfont).resolve()),
                                      int(sample_rate_hz), int(seed), str(generator), int(bars_ahead),
                                      int(speculative_bridges), mapping or None)
        try:
            self._file: TextIO = self.path.open("w", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot write the session recording ({error.strerror or error})") from None
        self._file.write(json.dumps(self.header.to_json()) + "\n")
        self._file.flush()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.inputs_written = 0
        self.closed = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._write_loop, name="adaptive-recording", daemon=True)
        self._thread.start()

    @classmethod
    def for_session(cls, path: Path | str, session: Any, bank_path: Path | str) -> "Recording":
        """A recording of ``session`` (an :class:`adaptive.session.Session`)
        made from the bank file ``bank_path``: soundfont, sample rate and seed
        are taken from the session."""
        return cls(path, bank=bank_path, soundfont=session.soundfont, sample_rate_hz=session.sample_rate_hz,
                   seed=session.seed, generator=session.generator_name, bars_ahead=session.bars_ahead,
                   speculative_bridges=session.speculative_bridges, mapping=session.mapping.text or None)

    def write_input(self, frame: int, item: SessionInput) -> None:
        """Record that ``item`` took effect at session frame ``frame``.
        Never blocks, no file I/O (the writer thread writes it)."""
        self._queue.put((frame, item))

    def write_fallback(self, fallback: GenerationFallback) -> None:
        """Record that the generation fallback played (a real-time decision
        that changes the audio). Never blocks, no file I/O."""
        self._queue.put((fallback.frame, fallback))

    def close(self, end_frame: int, timeout: float = 5.0) -> None:
        """Write the ``"end"`` line (``end_frame``: frames rendered by the
        session), flush and close the file; waits up to ``timeout`` seconds for
        the writer thread. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._queue.put((_END, int(end_frame)))
        self._thread.join(timeout)

    def _write_loop(self) -> None:
        last_flush = 0.0
        file = self._file
        while True:
            try:
                frame, item = self._queue.get(timeout=_FLUSH_SECONDS)
            except queue.Empty:
                continue
            try:
                if frame is _END:
                    file.write(json.dumps({"type": "end", "frame": item}) + "\n")
                    file.close()
                    return
                file.write(json.dumps(input_to_json(frame, item)) + "\n")
                self.inputs_written += 1
                now = time.monotonic()
                if self._queue.empty() or now - last_flush >= _FLUSH_SECONDS:
                    file.flush()
                    last_flush = now
            except OSError as error:  # disk full...: keep the music going, remember the failure
                self.error = error


def _check_number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def load_recording(path: Path | str) -> tuple[RecordingHeader, list[tuple[int, SessionInput]], int]:
    """Read a session recording.

    Returns:
        ``(header, inputs, end_frame)``: ``inputs`` is ``[(frame, input)]`` in
        the order they were stamped (frames in session frames, non-decreasing);
        ``end_frame`` is the number of frames the session rendered. Generation
        fallbacks are left out (see :func:`load_recording_with_fallbacks`).

    Raises:
        ConfigError: the file cannot be read or is malformed; the message
            names the file and every bad line by number.
    """
    header, inputs, _, end_frame = load_recording_with_fallbacks(path)
    return header, inputs, end_frame


def load_recording_with_fallbacks(
    path: Path | str,
) -> tuple[RecordingHeader, list[tuple[int, SessionInput]], list[GenerationFallback], int]:
    """Read a session recording, with its generation fallbacks.

    Returns:
        ``(header, inputs, fallbacks, end_frame)``; see :func:`load_recording`.

    Raises:
        ConfigError: as :func:`load_recording`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the session recording ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a session recording is JSON Lines") from None
    lines = text.splitlines()
    problems: list[str] = []
    if not lines:
        raise ConfigError(format_problems(path, "session recording", ["line 1: empty file (expected the header line)"]))

    def parse(number: int, line: str) -> dict[str, Any] | None:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not valid JSON ({error.msg}, column {error.colno})")
            return None
        if not isinstance(value, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
            return None
        return value

    header_data = parse(1, lines[0])
    header: RecordingHeader | None = None
    if header_data is not None:
        before = len(problems)
        if header_data.get("format") != RECORDING_FORMAT:
            problems.append(f"line 1: format {header_data.get('format')!r} is not {RECORDING_FORMAT!r} "
                            "(not a session recording?)")
        elif header_data.get("version") not in READABLE_VERSIONS:
            problems.append(f"line 1: version {header_data.get('version')!r} is not supported "
                            f"(allowed: {', '.join(map(str, READABLE_VERSIONS))})")
        if not isinstance(header_data.get("bank"), str):
            problems.append(f"line 1: bank {header_data.get('bank')!r} must be a path (a string)")
        if header_data.get("soundfont") is not None and not isinstance(header_data.get("soundfont"), str):
            problems.append(f"line 1: soundfont {header_data.get('soundfont')!r} must be a path (a string) or null")
        rate = header_data.get("sample_rate_hz")
        if not _check_number(rate, integer=True) or not 8_000 <= rate <= 192_000:
            problems.append(f"line 1: sample_rate_hz {rate!r} is out of range (allowed: an integer from 8000 to 192000)")
        if not _check_number(header_data.get("seed"), integer=True):
            problems.append(f"line 1: seed {header_data.get('seed')!r} must be an integer")
        if header_data.get("mapping") is not None and not isinstance(header_data.get("mapping"), str):
            problems.append("line 1: mapping must be the mapping's TOML text (a string) or null")
        from adaptive.registry import GENERATORS

        generator = header_data.get("generator", "rule_based")
        if generator not in GENERATORS:
            problems.append(f"line 1: generator {generator!r} is not known (allowed: {', '.join(GENERATORS)})")
        for key, low, high, default in (("bars_ahead", 1, 16, 1), ("speculative_bridges", 0, 16, 2)):
            value = header_data.get(key, default)
            if not _check_number(value, integer=True) or not low <= value <= high:
                problems.append(f"line 1: {key} {value!r} is out of range (allowed: an integer from {low} to {high})")
        allowed = {"format", "version", "bank", "soundfont", "sample_rate_hz", "seed", "generator", "bars_ahead",
                   "speculative_bridges", "mapping"}
        for key in header_data:
            if key not in allowed:
                problems.append(f"line 1: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        if len(problems) == before:
            header = RecordingHeader(header_data["bank"], header_data.get("soundfont"), header_data["sample_rate_hz"],
                                     header_data["seed"], generator, header_data.get("bars_ahead", 1),
                                     header_data.get("speculative_bridges", 2), header_data.get("mapping"))

    inputs: list[tuple[int, SessionInput]] = []
    fallbacks: list[GenerationFallback] = []
    end_frame: int | None = None
    last_frame = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        data = parse(number, line)
        if data is None:
            continue
        if end_frame is not None:
            problems.append(f"line {number}: a line after the end line")
            continue
        kind = data.get("type")
        frame = data.get("frame")
        if not _check_number(frame, integer=True) or frame < 0:
            problems.append(f"line {number}: frame {frame!r} must be an integer >= 0 (session frames)")
            frame = None
        elif frame < last_frame:
            problems.append(f"line {number}: frame {frame} is before the previous line's frame {last_frame} "
                            "(inputs are stored in the order they took effect)")
        else:
            last_frame = frame
        if kind == "end":
            extra = set(data) - {"type", "frame"}
            if extra:
                problems.append(f"line {number}: unknown field {sorted(extra)[0]!r} (allowed: type, frame)")
            end_frame = frame if frame is not None else last_frame
            continue
        if kind == "stinger":
            extra = set(data) - {"type", "frame", "name"}
            if extra:
                problems.append(f"line {number}: unknown field {sorted(extra)[0]!r} (allowed: frame, type, name)")
            name = data.get("name")
            if not isinstance(name, str):
                problems.append(f"line {number}: stinger name {name!r} must be a string")
                continue
            if frame is not None:
                inputs.append((frame, StingerTrigger(name)))
            continue
        if kind == "generation_fallback":
            fields = {"type", "frame", "part", "request", "bar_index", "reason"}
            if set(data) != fields:
                problems.append(f"line {number}: a generation_fallback line has exactly the fields "
                                f"{', '.join(sorted(fields))} (got {', '.join(sorted(data))})")
                continue
            bad = not isinstance(data["part"], str) or data["reason"] not in FALLBACK_REASONS
            for name in ("request", "bar_index"):
                bad = bad or not _check_number(data[name], integer=True) or data[name] < 0
            if bad:
                problems.append(f"line {number}: generation_fallback needs part (a string), request and bar_index "
                                f"(integers >= 0) and reason (one of {', '.join(FALLBACK_REASONS)})")
                continue
            if frame is not None:
                fallbacks.append(GenerationFallback(frame, data["part"], data["request"], data["bar_index"],
                                                    FallbackReason(data["reason"])))
            continue
        if kind == "scene":
            allowed = {"type", "frame", *SCENE_FIELDS}
            extra = set(data) - allowed
            if extra:
                problems.append(f"line {number}: unknown field {sorted(extra)[0]!r} "
                                f"(allowed: frame, type, {', '.join(SCENE_FIELDS)})")
                continue
            bad = False
            for name in ("emotion", "location", "cue"):
                if data.get(name) is not None and not isinstance(data[name], str):
                    problems.append(f"line {number}: {name} {data[name]!r} must be a string or null")
                    bad = True
            for name in ("valence", "arousal", "intensity"):
                if data.get(name) is not None and not _check_number(data[name], integer=False):
                    problems.append(f"line {number}: {name} {data[name]!r} must be a number or null")
                    bad = True
            if not bad and frame is not None:
                inputs.append((frame, SceneUpdate(**{name: data.get(name) for name in SCENE_FIELDS})))
            continue
        if kind == "mapping":
            extra = set(data) - {"type", "frame", "source", "toml"}
            if extra:
                problems.append(f"line {number}: unknown field {sorted(extra)[0]!r} (allowed: frame, type, source, toml)")
            text, source = data.get("toml"), data.get("source", "<recording>")
            if not isinstance(text, str) or not isinstance(source, str):
                problems.append(f"line {number}: a mapping line needs toml (the mapping's TOML text) and source as strings")
                continue
            if frame is not None:
                inputs.append((frame, MappingChange(text, None, source)))
            continue
        problems.append(f"line {number}: type {kind!r} is not allowed "
                        "(allowed: scene, stinger, mapping, generation_fallback, end)")
    if end_frame is None and not problems:
        problems.append(f"line {len(lines)}: no end line ({{\"type\": \"end\", \"frame\": N}}): the session was not "
                        "stopped cleanly; the inputs above are intact, add an end line with the frame to replay to")
    elif end_frame is not None and end_frame < last_frame:
        problems.append(f"end frame {end_frame} is before the last input's frame {last_frame}")
    if problems:
        raise ConfigError(format_problems(path, "session recording", problems))
    assert header is not None and end_frame is not None
    return header, inputs, fallbacks, end_frame


def replay(path: Path | str, output_wav: Path | str | None = None, *, soundfont: Path | str | None = None,
           block_frames: int = 4096, wav_subtype: str = "PCM_16", events: list | None = None) -> np.ndarray:
    """Replay a recording offline: the same bank, SoundFont, sample rate and
    seed, every input submitted at its frame, rendered to the end frame, with
    the same generator and the recorded generation fallbacks forced (every
    other generated bar is waited for).

    Each input is submitted when the session has rendered exactly up to its
    frame — as the real-time runner did — so what the session had scheduled
    for that frame runs before it in both, and the audio is bit-identical to
    what was served.

    Args:
        path: the recording.
        output_wav: if given, the audio is also written there as WAV.
        soundfont: use this SoundFont instead of the recorded one (the audio
            then differs wherever MIDI parts play).
        block_frames: render block size in frames (does not change the audio).
        wav_subtype: WAV sample format (see :data:`adaptive.render.WAV_SUBTYPES`).
        events: if given, the session's music events are appended to it.

    Returns:
        The audio, shape ``(end_frame, 2)``, float32.

    Raises:
        ConfigError: the recording or its bank is malformed, or its generator
            cannot be loaded.
        AssetError: the SoundFont or an asset of the bank cannot be loaded.
        InputError: an input the bank does not allow (the bank changed since).
    """
    from adaptive.cue import load_bank
    from adaptive.generation import GenerationMode, GenerationWorker
    from adaptive.offline import render_offline
    from adaptive.session import Session

    from adaptive.mapping import parse_mapping_text

    header, inputs, fallbacks, end_frame = load_recording_with_fallbacks(path)
    bank = load_bank(header.bank)
    mapping = None if header.mapping is None else parse_mapping_text(header.mapping, bank, f"{path} (header)")
    changes_mapping = any(isinstance(item, MappingChange) for _, item in inputs)
    worker = GenerationWorker(GenerationMode.WAIT, forced_fallbacks=[(f.part, f.request) for f in fallbacks])
    session = Session(bank, soundfont=soundfont or header.soundfont, sample_rate_hz=header.sample_rate_hz,
                      seed=header.seed, max_block_frames=block_frames, generator=header.generator,
                      generation=worker, bars_ahead=header.bars_ahead,
                      speculative_bridges=header.speculative_bridges, mapping=mapping,
                      generated_bridges=changes_mapping)
    try:
        audio = render_offline(session, end_frame, inputs, block_frames=block_frames)
        if events is not None:
            events.extend(session.drain_events())
    finally:
        session.close()
    if output_wav is not None:
        from adaptive.render import write_wav

        write_wav(output_wav, audio, header.sample_rate_hz, wav_subtype)
    return audio
