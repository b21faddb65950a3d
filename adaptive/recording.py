"""Session recordings: every input with the frame at which it took effect,
plus what is needed to replay it (DESIGN.md, "The time model": inputs are
stamped on arrival, and the stamped stream is what a recording stores).

The format is JSON Lines (UTF-8, one JSON object per line)::

    {"format": "adaptive-recording", "version": 4, "bank": "/abs/bank.toml",
     "soundfont": "/abs/gm.sf2", "sample_rate_hz": 48000, "seed": 0,
     "generator": "model", "bars_ahead": 1, "speculative_bridges": 2}
    {"frame": 96000, "type": "scene", "emotion": "tense", "valence": null,
     "arousal": null, "intensity": 0.8, "location": null, "cue": null}
    {"frame": 96000, "type": "generation_fallback", "part": "explore/arpeggio",
     "request": 0, "bar_index": 0, "reason": "late"}
    {"frame": 120000, "type": "stinger", "name": "hit"}
    {"frame": 150000, "type": "mapping", "source": "mapping.toml", "toml": "..."}
    {"frame": 200000, "type": "mapping_set", "source": "live", "path": "smoothing.hysteresis",
     "value": "0.3", "sha256": "5f0c3a1e9b7d2c44"}
    {"type": "end", "frame": 480000}

The header's optional ``mapping`` holds the TOML text of the mapping the
session started with (absent or null: the bank's own, whose text is empty); a
``"mapping"`` line is a hot reload with the whole new file's text; a
``"mapping_set"`` line is one value set by live tuning, stored as the change
(key path and value as sent), not as the whole mapping: the reader rebuilds
the mapping with :func:`adaptive.mapping.set_value_text` from the one before
it, exactly as the server did, and checks it against the line's ``sha256``
(the first 16 hex digits of the SHA-256 of the mapping's text). So a replay
plays by exactly the mappings that were live, and a client that sets values
20 times a second grows the recording by a line each, not by a mapping each.

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
the writer thread serializes it, writes it and flushes it to the operating
system when the queue is empty, and at least once a second
(:data:`FLUSH_SECONDS`) while inputs keep coming, so a killed server loses at
most the last second of inputs. A recording cut that way has no ``end`` line
and perhaps a half-written last line; :func:`load_recording` reads it up to
its last complete line and says so.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from adaptive.errors import ConfigError, format_problems
from adaptive.generation import GenerationFallback
from adaptive.mapping import MappingChange
from adaptive.recording_format import (LINES, EndLine, FallbackLine, MappingSetLine, RecordingHeader, line_json,
                                       parse_line)
from adaptive.scene import SessionInput

FLUSH_SECONDS = 1.0
"""The longest time (seconds) a written line stays in the writer's buffer
before it is flushed to the operating system (where a killed process cannot lose it)."""
_END = object()


class Recording:
    """A session recording being written (JSON Lines, see the module docstring).

    The file is opened and the header written when the recording is made (so a
    path that cannot be written fails here, not on the render thread). Inputs
    are written by a writer thread (daemon, named ``"adaptive-recording"``):
    :meth:`write_input` never does file I/O and never blocks, so it may be
    called from the render thread. Call :meth:`close` with the final frame
    count to write the ``"end"`` line; a recording without it (the server was
    killed) is read by :func:`load_recording` up to its last complete line.

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
        self.header = RecordingHeader(
            bank=str(Path(bank).resolve()), soundfont=None if soundfont is None else str(Path(soundfont).resolve()),
            sample_rate_hz=int(sample_rate_hz), seed=int(seed), generator=str(generator), bars_ahead=int(bars_ahead),
            speculative_bridges=int(speculative_bridges), mapping=mapping or None)
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
                frame, item = self._queue.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                continue
            try:
                if frame is _END:
                    file.write(json.dumps({"type": "end", "frame": item}) + "\n")
                    file.close()
                    return
                file.write(json.dumps(line_json(frame, item)) + "\n")
                self.inputs_written += 1
                now = time.monotonic()
                if self._queue.empty() or now - last_flush >= FLUSH_SECONDS:
                    file.flush()
                    last_flush = now
            except OSError as error:  # disk full...: keep the music going, remember the failure
                self.error = error


def load_recording(path: Path | str, notes: list[str] | None = None,
                   ) -> tuple[RecordingHeader, list[tuple[int, SessionInput]], int]:
    """Read a session recording.

    A recording cut by a crash (no ``end`` line, perhaps a half-written last
    line) is read up to its last complete line: see :func:`load_recording_with_fallbacks`.

    Args:
        path: the recording (JSON Lines).
        notes: if given, what the reader had to do to a cut recording is
            appended to it (one sentence each), for the user to be told.

    Returns:
        ``(header, inputs, end_frame)``: ``inputs`` is ``[(frame, input)]`` in
        the order they were stamped (frames in session frames, non-decreasing);
        ``end_frame`` is the number of frames the session rendered (for a cut
        recording: the frame of its last complete line). Generation fallbacks
        are left out (see :func:`load_recording_with_fallbacks`).

    Raises:
        ConfigError: the file cannot be read or is malformed; the message
            names the file and every bad line by number.
    """
    header, inputs, _, end_frame = load_recording_with_fallbacks(path, notes)
    return header, inputs, end_frame


def load_recording_with_fallbacks(
    path: Path | str, notes: list[str] | None = None,
) -> tuple[RecordingHeader, list[tuple[int, SessionInput]], list[GenerationFallback], int]:
    """Read a session recording, with its generation fallbacks.

    **A recording cut by a crash** (the server killed: no ``end`` line) is
    accepted: it plays to the frame of its last complete line (the last input
    or fallback; what was rendered after it is not known), and a last line
    cut half-way through a write (not valid JSON, or not valid UTF-8) is left
    out. Both are said in ``notes``. A bad line anywhere else is still an
    error: only the very last line can have been cut by a crash, because the
    writer appends whole lines in order.

    Returns:
        ``(header, inputs, fallbacks, end_frame)``; see :func:`load_recording`.

    Raises:
        ConfigError: as :func:`load_recording`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the session recording ({error.strerror or error})") from None
    torn: str | None = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        last_newline = data.rfind(b"\n")
        if last_newline < 0 or error.start <= last_newline:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a session recording is "
                              "JSON Lines") from None
        text = data[: last_newline + 1].decode("utf-8", "replace")  # a character cut by the crash: the last line is torn
        torn = f"{len(data) - last_newline - 1} bytes that are not valid UTF-8"
    lines = text.splitlines()
    if not lines:
        raise ConfigError(format_problems(path, "session recording", ["line 1: empty file (expected the header line)"]))
    if torn is None and len(lines) > 1 and _is_torn(lines[-1]):
        torn = f"{len(lines[-1].encode())} bytes that are not a complete JSON line"
        torn_line = lines.pop()
    else:
        torn_line = None
    problems: list[str] = []
    header_data = _json_object(1, lines[0], problems)
    header = None
    if header_data is not None:
        header, header_problems = parse_line(RecordingHeader, header_data)
        problems += [f"line 1: {problem}" for problem in header_problems]
    digests: dict[int, str] = {}
    inputs, fallbacks, end_frame, last_frame = _read_lines(lines, problems, digests)
    if header is not None and not problems:
        inputs = _rebuild_mappings(header.mapping or "", inputs, digests, problems)
    if end_frame is not None and torn_line is not None:
        _json_object(len(lines) + 1, torn_line, problems)  # after an end line it is no crash: a bad line
    elif end_frame is None and not problems:
        end_frame = last_frame
        if notes is not None:
            notes.append(f"{path}: the recording has no end line (the server did not stop cleanly, e.g. it was "
                         f"killed); replaying to frame {last_frame}, its last complete line (line {len(lines)})"
                         + (f"; the last line, cut by the crash ({torn}), is left out" if torn else ""))
    elif end_frame is not None and end_frame < last_frame:
        problems.append(f"end frame {end_frame} is before the last input's frame {last_frame}")
    if problems:
        raise ConfigError(format_problems(path, "session recording", problems))
    assert isinstance(header, RecordingHeader) and end_frame is not None
    return header, inputs, fallbacks, end_frame


def _rebuild_mappings(initial_text: str, inputs: list[tuple[int, SessionInput]], digests: dict[int, str],
                      problems: list[str]) -> list[tuple[int, SessionInput]]:
    """``inputs`` with the text of every ``mapping_set`` change rebuilt from
    the mapping before it (``initial_text`` at first, then each change's),
    as the server built it; a text whose digest differs from the recorded one
    (``digests``: index in ``inputs`` -> the line's ``sha256``) is a problem
    (the replay would not play what was served)."""
    from adaptive.mapping import parse_value, set_value_text
    from adaptive.recording_format import mapping_digest

    text = initial_text
    rebuilt: list[tuple[int, SessionInput]] = []
    for index, (frame, item) in enumerate(inputs):
        if isinstance(item, MappingChange):
            if item.path is not None and item.value is not None:
                expected = digests.get(index)
                try:
                    new_text = set_value_text(text, item.path, parse_value(item.value))
                except (ValueError, TypeError) as error:
                    problems.append(f"the mapping_set of {item.path} at frame {frame} cannot be applied to the "
                                    f"mapping before it ({error})")
                    return inputs
                if expected is not None and mapping_digest(new_text) != expected:
                    problems.append(f"the mapping_set of {item.path} at frame {frame} rebuilds a mapping whose "
                                    f"sha256 {mapping_digest(new_text)} is not the recorded {expected} (the "
                                    "recording is missing a change before it)")
                    return inputs
                item = MappingChange(new_text, None, item.source, item.path, item.value)
            text = item.text
        rebuilt.append((frame, item))
    return rebuilt


def _is_torn(line: str) -> bool:
    """Whether ``line`` (the last of a file) is not a complete JSON object: a
    line the writer was cut in the middle of (the writer writes whole lines,
    each a JSON object)."""
    try:
        return not isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return True


def _json_object(number: int, line: str, problems: list[str]) -> dict[str, Any] | None:
    """Line ``number`` as a JSON object, or None with its problem added."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        problems.append(f"line {number}: not valid JSON ({error.msg}, column {error.colno})")
        return None
    if not isinstance(value, dict):
        problems.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
        return None
    return value


def _read_lines(lines: list[str], problems: list[str], digests: dict[int, str],
                ) -> tuple[list[tuple[int, SessionInput]], list[GenerationFallback], int | None, int]:
    """The inputs, fallbacks and end frame of the lines after the header, and
    the last input's frame; every problem is added, with its line number, and
    each ``mapping_set`` line's ``sha256`` to ``digests`` under its index in the inputs."""
    inputs: list[tuple[int, SessionInput]] = []
    fallbacks: list[GenerationFallback] = []
    end_frame: int | None = None
    last_frame = 0
    for number, line in enumerate(lines[1:], start=2):
        data = _json_object(number, line, problems) if line.strip() else None
        if data is None:
            continue
        if end_frame is not None:
            problems.append(f"line {number}: a line after the end line")
            continue
        model = LINES.get(data.get("type"))  # type: ignore[arg-type]
        if model is None:
            problems.append(f"line {number}: type {data.get('type')!r} is not allowed (allowed: {', '.join(LINES)})")
            continue
        parsed, line_problems = parse_line(model, data)
        problems += [f"line {number}: {problem}" for problem in line_problems]
        frame = data.get("frame")
        if isinstance(frame, int) and not isinstance(frame, bool) and frame >= 0:
            if frame < last_frame:
                problems.append(f"line {number}: frame {frame} is before the previous line's frame {last_frame} "
                                "(inputs are stored in the order they took effect)")
            else:
                last_frame = frame
        if isinstance(parsed, EndLine) or model is EndLine:
            end_frame = parsed.frame if parsed is not None else last_frame
        elif isinstance(parsed, FallbackLine):
            fallbacks.append(parsed.fallback())
        elif parsed is not None:
            if isinstance(parsed, MappingSetLine):
                digests[len(inputs)] = parsed.sha256
            inputs.append((parsed.frame, parsed.item()))  # type: ignore[attr-defined]
    return inputs, fallbacks, end_frame, last_frame


def replay(path: Path | str, output_wav: Path | str | None = None, *, soundfont: Path | str | None = None,
           block_frames: int = 4096, wav_subtype: str = "PCM_16", events: list | None = None,
           notes: list[str] | None = None) -> np.ndarray:
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
        notes: if given, what was done to read a recording cut by a crash is
            appended to it (see :func:`load_recording_with_fallbacks`).

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

    header, inputs, fallbacks, end_frame = load_recording_with_fallbacks(path, notes)
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
