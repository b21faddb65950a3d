"""Audio stems: loading (soundfile), resampling (python-soxr) and rendering
stems from MIDI into the stem cache on first use.

Stems are loaded whole, at cue-bank load time, never on the audio path, and
once per process: every session playing the same stem file at the same rate
plays one read-only array (:func:`shared_stem`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from adaptive.clock import beats_to_frames, seconds_to_frames
from adaptive.errors import AssetError
from adaptive.part import Part

CACHE_ENV = "ADAPTIVE_CACHE"
"""Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/adaptive``
or ``~/.cache/adaptive``)."""

STEM_FORMATS = ("WAV", "FLAC", "OGG")
"""Container formats accepted for stems (what soundfile reads everywhere)."""


def load_stem(path: Path, sample_rate_hz: int) -> np.ndarray:
    """Read an audio stem as float32 stereo at ``sample_rate_hz``.

    Mono stems are copied to both channels; stems at another rate are resampled
    with soxr's high-quality (HQ) filter.

    Returns:
        Array of shape ``(n_frames, 2)``, float32, values nominally in [-1, 1].

    Raises:
        AssetError: missing, unreadable or corrupt file, a format other than
            WAV/FLAC/OGG, more than two channels, or no audio in it.
    """
    import soundfile
    import soxr

    if not path.is_file():
        raise AssetError(f"{path}: audio stem not found")
    _check_audio_header(path)
    try:
        info = soundfile.info(str(path))
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as error:
        raise AssetError(
            f"{path}: cannot read audio stem ({error}); allowed: {', '.join(STEM_FORMATS)} files"
        ) from None
    if info.format not in STEM_FORMATS:
        raise AssetError(f"{path}: stem format {info.format} is not supported (allowed: {', '.join(STEM_FORMATS)})")
    if data.shape[1] > 2:
        raise AssetError(f"{path}: stem has {data.shape[1]} channels (allowed: 1 or 2)")
    if data.shape[0] == 0:
        raise AssetError(f"{path}: stem holds no audio")
    if not np.isfinite(data).all():
        raise AssetError(f"{path}: stem holds NaN or infinite samples")
    if data.shape[1] == 1:
        data = np.repeat(data, 2, axis=1)
    if rate != sample_rate_hz:
        data = soxr.resample(data, rate, sample_rate_hz, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


_AUDIO_MAGIC = ((b"RIFF", 8, b"WAVE"), (b"RF64", 8, b"WAVE"), (b"fLaC", None, None), (b"OggS", None, None))


_SHARED_STEMS: "weakref.WeakValueDictionary[tuple[Path, int, int, int], np.ndarray]" = weakref.WeakValueDictionary()
_SHARED_STEMS_LOCK = threading.Lock()


def shared_stem(path: Path, sample_rate_hz: int) -> np.ndarray:
    """:func:`load_stem`, read once per process: every caller asking for the
    same file at the same rate while an earlier caller still holds it gets the
    same array, made read-only (``flags.writeable`` False) so that no session
    can change what another plays.

    A session of the default bank holds four stems, 38 MB of float32 at
    48 kHz; before they were shared, each session loaded its own copy, the
    largest part of the memory an extra session added (docs/benchmarks.md,
    "Memory per session"). The key is the file's resolved path, size,
    modification time (ns) and the rate, so a stem rewritten on disk is read
    afresh; the array is freed when the last session holding it is (a weak
    reference: nothing stays loaded for sessions that ended).

    Returns:
        Array of shape ``(n_frames, 2)``, float32, read-only.

    Raises:
        AssetError: as :func:`load_stem`.
    """
    try:
        resolved = path.resolve()
        stat = resolved.stat()
    except OSError:
        return load_stem(path, sample_rate_hz)  # load_stem says what is wrong with it
    key = (resolved, stat.st_size, stat.st_mtime_ns, int(sample_rate_hz))
    with _SHARED_STEMS_LOCK:  # one loader at a time: two sessions asking at once read the file once
        audio = _SHARED_STEMS.get(key)
        if audio is None:
            audio = load_stem(path, sample_rate_hz)
            audio.flags.writeable = False
            _SHARED_STEMS[key] = audio
        return audio


def shared_stems_loaded() -> int:
    """Stems held by :func:`shared_stem` now (each counted once, whatever its users)."""
    with _SHARED_STEMS_LOCK:
        return len(_SHARED_STEMS)


def _check_audio_header(path: Path) -> None:
    """Refuse files that are not WAV, FLAC or OGG by their first bytes, before
    any decoder (which may print to stderr) sees them."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except OSError as error:
        raise AssetError(f"{path}: cannot read audio stem ({error.strerror or error})") from None
    for magic, offset, form in _AUDIO_MAGIC:
        if header.startswith(magic) and (offset is None or header[offset : offset + 4] == form):
            return
    raise AssetError(
        f"{path}: not a WAV, FLAC or OGG file (its first bytes are {header[:4]!r}); "
        f"allowed stem formats: {', '.join(STEM_FORMATS)}"
    )


def cache_dir() -> Path:
    """The folder for rendered stems and other derived files."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive"


def render_part(
    part: Part,
    *,
    soundfont: Path,
    program: int,
    percussion: bool,
    bpm: float,
    sample_rate_hz: int,
    length_beats: float,
    tail_seconds: float,
) -> np.ndarray:
    """Render ``part`` through FluidSynth at ``bpm``, offline.

    Returns:
        Float32 stereo, shape ``(length_frames + tail_frames, 2)``.
    """
    from adaptive.synth import Synth

    synth = Synth(soundfont, sample_rate_hz, program, percussion)
    try:
        total_frames = beats_to_frames(length_beats, bpm, sample_rate_hz) + seconds_to_frames(tail_seconds, sample_rate_hz)
        events: list[tuple[int, int, int, int]] = []  # (frame, 0=off/1=on, pitch, velocity)
        for start, duration, pitch, velocity in zip(part.start_beats, part.duration_beats, part.pitch, part.velocity):
            events.append((beats_to_frames(start, bpm, sample_rate_hz), 1, int(pitch), int(velocity)))
            events.append((beats_to_frames(start + duration, bpm, sample_rate_hz), 0, int(pitch), 0))
        events.sort()
        out = np.zeros((total_frames, 2), np.float32)
        position = 0
        for frame, kind, pitch, velocity in events:
            frame = min(frame, total_frames)
            if frame > position:
                synth.render_into(out[position:frame])
                position = frame
            if kind:
                synth.note_on(pitch, velocity)
            else:
                synth.note_off(pitch)
        if position < total_frames:
            synth.render_into(out[position:])
        return out
    finally:
        synth.close()


def rendered_stem_path(
    *, midi_path: Path, track: str, program: int, percussion: bool, bpm: float, length_beats: float,
    tail_seconds: float, soundfont: Path, sample_rate_hz: int, file_name: str,
) -> Path:
    """Cache path of a stem rendered with these settings: a hash of the MIDI
    file's bytes, the SoundFont's identity (path, size, mtime), the synth gain
    and every setting, so a change to any of them renders anew."""
    try:
        midi_bytes = midi_path.read_bytes()
        stat = soundfont.stat()
    except OSError as error:
        raise AssetError(f"{error.filename}: {error.strerror}") from None
    from adaptive.synth import DEFAULT_MAX_VOICES, SYNTH_GAIN

    digest = hashlib.sha256()
    digest.update(midi_bytes)
    digest.update(
        repr((track, program, percussion, bpm, length_beats, tail_seconds, str(soundfont.resolve()),
              stat.st_size, stat.st_mtime_ns, sample_rate_hz, SYNTH_GAIN, DEFAULT_MAX_VOICES)).encode()
    )
    return cache_dir() / "stems" / digest.hexdigest()[:16] / Path(file_name).name


def write_stem(path: Path, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Write ``audio`` (``(n, 2)`` float32) as 24-bit FLAC, atomically (a
    temporary file renamed into place), so a crash never leaves half a stem."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    soundfile.write(str(temporary), audio, sample_rate_hz, subtype="PCM_24", format="FLAC")
    os.replace(temporary, path)
