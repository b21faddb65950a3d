"""FluidSynth, through pyfluidsynth: SoundFont discovery and a synthesizer that
renders float32 stereo into caller-owned buffers.

Rendering uses ``fluid_synth_write_float`` (FluidSynth's public C API, called
through the library handle pyfluidsynth already loaded) so that no array is
allocated per block and no 16-bit quantization or dither enters the mix.

FluidSynth renders in internal blocks of 64 frames (``FLUID_BUFSIZE``) and
applies a MIDI event at the start of the next internal block it computes, so a
note-on lands up to 63 frames (1.3 ms at 48 kHz) after the frame it was sent
for. This is deterministic: it depends only on how many frames the synth has
rendered, never on how the render was split into calls.

A synthesizer with nothing sounding costs no FluidSynth call
(:meth:`Synth.render_into`): a session's cues hold many parts that are
silent most of the time (a layer faded out, a part resting, a stinger
between hits), and rendering them was most of a session's render time.
The audio stays bit for bit what FluidSynth would have rendered (see
:class:`Synth` for why, and tests/test_synth.py).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptive.errors import AssetError

SOUNDFONT_ENV = "ADAPTIVE_SOUNDFONT"
"""Environment variable naming the General MIDI SoundFont to use."""

SOUNDFONT_CANDIDATES = (
    # Debian musescore-general-soundfont (MuseScore General, SF3: Ogg Vorbis samples): the default.
    Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
    # The same font's Debian alternatives link (also set by musescore-general-soundfont-small).
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
    # Debian timgm6mb-soundfont: the fallback `./run` installs where the default cannot be installed.
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # Debian fluid-soundfont-gm
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
"""Where a General MIDI SoundFont is looked for, in order of preference, when
none is named. The default bank's gains are balanced for the first (MuseScore
General); with TimGM6mb a few parts sit up to 6.5 dB off that balance
(docs/cue-bank.md, "Levels and SoundFonts")."""

PREFERRED_SOUNDFONT_PACKAGE = "musescore-general-soundfont"
"""The Debian package that provides the preferred SoundFont, the first of
:data:`SOUNDFONT_CANDIDATES` (what `./run` installs)."""

FALLBACK_SOUNDFONT_PACKAGE = "timgm6mb-soundfont"
"""The Debian package `./run` installs when the preferred one cannot be installed."""

DEFAULT_MAX_VOICES = 64
"""Voices one part's synth may sound at once. A SoundFont instrument often
layers several voices per note, and long releases pile up under repeated
chords; FluidSynth's default of 256 then costs time for tails hidden under the
next chord. Measured on the default bank's densest cue (triumph, strings of
repeated four-note chords): 64 voices render 1.4x faster than 256 and change
the mix by -67 dB relative to the signal. See docs/benchmarks.md."""

PERCUSSION_CHANNEL = 9
"""General MIDI percussion is MIDI channel 10 (index 9), SoundFont bank 128."""

SYNTH_GAIN = 0.8
"""FluidSynth's master gain (``synth.gain``). FluidSynth's default, 0.2, leaves
headroom for a whole General MIDI ensemble in one synth; each synth here plays
one part, so +12 dB over the default brings the default bank's full-intensity
mixes to about -20 dBFS RMS (measured), with the limiter catching peaks. The
benchmark's command-line comparison uses the same gain."""


@dataclass(frozen=True)
class SoundFontChoice:
    """The SoundFont a session plays and why that one.

    Attributes:
        path: the SoundFont file.
        origin: how it was chosen, for the user: ``"--soundfont"``,
            ``"$ADAPTIVE_SOUNDFONT"``, ``"the default"``, or ``"a fallback: ..."``
            saying what to install for the default.
    """

    path: Path
    origin: str

    def describe(self) -> str:
        """``PATH (origin)``, as ``adaptive serve`` and ``adaptive render`` print it."""
        return f"{self.path} ({self.origin})"


def choose_soundfont(explicit: Path | str | None = None) -> SoundFontChoice:
    """The SoundFont to use and why: ``explicit`` (``--soundfont``), else
    ``$ADAPTIVE_SOUNDFONT``, else the first of :data:`SOUNDFONT_CANDIDATES` that
    exists (in order of preference: MuseScore General, then TimGM6mb, ...).

    Raises:
        AssetError: the named file is missing or not a SoundFont file, or none
            was found (saying what to install).
    """
    if explicit:
        check_soundfont(Path(explicit))
        return SoundFontChoice(Path(explicit), "--soundfont")
    named = os.environ.get(SOUNDFONT_ENV)
    if named:
        try:
            check_soundfont(Path(named))
        except AssetError as error:
            raise AssetError(f"{error} (named by ${SOUNDFONT_ENV})") from None
        return SoundFontChoice(Path(named), f"${SOUNDFONT_ENV}")
    for candidate in SOUNDFONT_CANDIDATES:
        if candidate.is_file():
            if candidate in SOUNDFONT_CANDIDATES[:2]:  # MuseScore General: the file, or its alternatives link
                return SoundFontChoice(candidate, "the default")
            return SoundFontChoice(candidate, (
                f"a fallback: the default, {SOUNDFONT_CANDIDATES[0]}, is not installed; "
                f"'sudo apt-get install {PREFERRED_SOUNDFONT_PACKAGE}' or './run setup' installs it"))
    raise AssetError(
        "no General MIDI SoundFont found (looked for "
        + ", ".join(str(c) for c in SOUNDFONT_CANDIDATES)
        + f"); install one with 'sudo apt-get install {PREFERRED_SOUNDFONT_PACKAGE}' (or the smaller "
        f"{FALLBACK_SOUNDFONT_PACKAGE}), or './run setup', or name a .sf2/.sf3 file "
        f"with --soundfont or ${SOUNDFONT_ENV}"
    )


def find_soundfont(explicit: Path | str | None = None) -> Path:
    """The SoundFont to use: the path of :func:`choose_soundfont`.

    Raises:
        AssetError: as :func:`choose_soundfont`.
    """
    return choose_soundfont(explicit).path


def check_soundfont(path: Path) -> None:
    """Check that ``path`` is a readable SoundFont file (a RIFF ``sfbk`` chunk:
    SoundFont 2, ``.sf2``, or SoundFont 3, ``.sf3``, whose samples are Ogg Vorbis
    that FluidSynth decodes through libsndfile while it loads the file).

    Raises:
        AssetError: missing, unreadable, or not a SoundFont file.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except FileNotFoundError:
        raise AssetError(f"{path}: SoundFont not found") from None
    except IsADirectoryError:
        raise AssetError(f"{path}: is a folder, not a SoundFont (allowed: .sf2 and .sf3 files)") from None
    except OSError as error:
        raise AssetError(f"{path}: cannot read SoundFont ({error.strerror or error})") from None
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise AssetError(f"{path}: not a SoundFont file (expected a RIFF 'sfbk' header; allowed: .sf2 and .sf3 files)")
    declared_bytes = int.from_bytes(header[4:8], "little") + 8
    actual_bytes = path.stat().st_size
    if actual_bytes < declared_bytes:
        raise AssetError(
            f"{path}: truncated SoundFont ({actual_bytes} bytes; its header says {declared_bytes})"
        )


def _load_fluidsynth():
    import contextlib
    import io

    try:
        # pyfluidsynth prints where it found the library when $CI is set; that is
        # not the user's output (it broke the first line `adaptive serve` prints).
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError) as error:
        raise AssetError(
            f"cannot load FluidSynth ({error}); install it with 'sudo apt-get install libfluidsynth3'"
        ) from None
    # The calls made while rendering (render, note on, note off) go through a
    # PyDLL handle, which keeps the GIL during the call (a CDLL releases it).
    # Each is short (a note on takes ~4 us), and with a CDLL each had to win
    # the GIL back afterwards from any other busy Python thread (the
    # generation worker). Measured against a busy thread: longest block
    # 13.3 -> 9.6 ms for the render call (the larger gain came from the 1 ms
    # switch interval, app/server.py).
    library = ctypes.PyDLL(fluidsynth._fl._name)
    calls = _RenderCalls(library)
    # Silence FluidSynth's own logging: errors reach the user as AssetError.
    set_log = library.fluid_set_log_function
    set_log.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    for level in range(5):  # FLUID_PANIC .. FLUID_DBG
        set_log(level, None, None)
    return fluidsynth, calls


class _RenderCalls:
    """FluidSynth's C calls made on the render path, bound with argument types
    on a GIL-keeping (PyDLL) handle: ``fluid_synth_write_float(synth, n, left,
    left_offset, left_step, right, right_offset, right_step)``,
    ``fluid_synth_noteon(synth, channel, key, velocity)`` and
    ``fluid_synth_noteoff(synth, channel, key)`` (FluidSynth 2 API; each returns
    FLUID_OK = 0 or FLUID_FAILED = -1)."""

    __slots__ = ("write_float", "noteon", "noteoff", "active_voice_count")

    def __init__(self, library: ctypes.PyDLL) -> None:
        self.write_float = library.fluid_synth_write_float
        self.write_float.argtypes = [
            ctypes.c_void_p, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ]
        self.write_float.restype = ctypes.c_int
        self.noteon = library.fluid_synth_noteon
        self.noteon.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.noteon.restype = ctypes.c_int
        self.noteoff = library.fluid_synth_noteoff
        self.noteoff.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.noteoff.restype = ctypes.c_int
        self.active_voice_count = library.fluid_synth_get_active_voice_count
        self.active_voice_count.argtypes = [ctypes.c_void_p]
        self.active_voice_count.restype = ctypes.c_int


FLUID_BUFSIZE_FRAMES = 64
"""FluidSynth's internal block (``FLUID_BUFSIZE``, fixed at build time in
FluidSynth 2): it computes audio 64 frames at a time, keeps what a call did
not take for the next call, and applies a note-on at the start of the next
block it computes."""


SKIP_WHEN_QUIET = True
"""Whether synthesizers made from now on skip FluidSynth while nothing sounds
(:class:`Synth`); off only to measure what it saves (bench/)."""


class Synth:
    """One FluidSynth instance playing one part on one MIDI channel.

    Reverb and chorus are off: effect sends cannot follow the mixer's per-layer
    gains, and the command-line comparison in ``bench/`` uses the same settings.

    **Nothing sounding, no FluidSynth call.** After a render call that leaves
    FluidSynth with no active voice (``fluid_synth_get_active_voice_count``:
    releasing voices count as active, so release tails play out; reverb and
    chorus, whose tails outlive the voices, are off), the rest of the
    internal block FluidSynth already computed is still rendered (it may hold
    the last samples of a release), and from there on the synthesizer is
    *quiet*: :meth:`render_into` writes zeros without calling FluidSynth, and
    counts the frames it skipped (:attr:`skipped_frames`). FluidSynth with no
    voice computes zeros, and its only state that advances is where it is in
    its 64-frame block; so a note-on after a quiet stretch first renders the
    skipped frames modulo 64 (at most 63, one silent block) into a scratch
    buffer, which puts FluidSynth at the same place in its block as if it
    had rendered every frame, and the note starts at the same frame, bit for
    bit (tests/test_synth.py, tests/test_golden_outputs.py). A voice's age
    (for voice stealing) is measured between voices started after that, so
    the shift of FluidSynth's own tick count changes nothing.

    Args:
        soundfont: a SoundFont 2 file (checked).
        sample_rate_hz: output rate.
        program: General MIDI program 0..127 (or percussion kit with ``percussion``).
        percussion: play on the percussion channel (bank 128).
        max_voices: FluidSynth polyphony (1..1024); beyond it FluidSynth ends
            the quietest released voices first.
        skip_when_quiet: skip FluidSynth while nothing sounds (see above;
            None: :data:`SKIP_WHEN_QUIET`); off, every frame is rendered.

    Raises:
        AssetError: FluidSynth missing, the SoundFont cannot be loaded, or it
            has no preset for ``program`` (or the percussion kit).
    """

    def __init__(self, soundfont: Path, sample_rate_hz: int, program: int = 0, percussion: bool = False,
                 max_voices: int = DEFAULT_MAX_VOICES, skip_when_quiet: bool | None = None) -> None:
        fluidsynth, calls = _load_fluidsynth()
        self._write_float, self._noteon, self._noteoff = calls.write_float, calls.noteon, calls.noteoff
        check_soundfont(Path(soundfont))
        self._synth = fluidsynth.Synth(
            gain=SYNTH_GAIN,
            samplerate=float(sample_rate_hz),
            channels=16,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1,
               "synth.polyphony": int(max_voices)},
        )
        try:
            self._shared = _SharedSoundFont.acquire(Path(soundfont))
        except AssetError:
            self._synth.delete()
            raise
        soundfont_id = _sfont_api().add(self._synth.synth, self._shared.sfont)
        if soundfont_id < 0:
            self._shared.release()
            self._synth.delete()
            raise AssetError(f"{soundfont}: FluidSynth could not add this SoundFont to a synthesizer")
        self.channel = PERCUSSION_CHANNEL if percussion else 0
        bank = 128 if percussion else 0
        if self._synth.program_select(self.channel, soundfont_id, bank, program) != 0:
            _sfont_api().remove(self._synth.synth, self._shared.sfont)
            self._shared.release()
            self._synth.delete()
            what = f"percussion kit {program} (bank 128)" if percussion else f"General MIDI program {program} (bank 0)"
            raise AssetError(f"{soundfont}: this SoundFont has no preset for {what}; it would play silent "
                             "(use a General MIDI SoundFont, or another program)")
        self._handle = self._synth.synth
        self._active_voice_count = calls.active_voice_count
        self._block_phase_frames = 0  # frames FluidSynth has output, modulo its 64-frame block
        self._skips = SKIP_WHEN_QUIET if skip_when_quiet is None else bool(skip_when_quiet)
        self._quiet = self._skips  # no voice, nothing computed left to output: render_into writes zeros
        self._quiet_frames = 0  # frames skipped since it became quiet (written as zeros)
        self._draining = False  # no voice, but the rest of its last computed block is still to be output
        self.render_calls = 0
        """FluidSynth render calls made (``fluid_synth_write_float``)."""
        self.rendered_frames = 0
        """Frames FluidSynth rendered (the catch-up frames of :meth:`note_on` included)."""
        self.skipped_frames = 0
        """Frames written as zeros without a FluidSynth call (nothing was sounding)."""
        self._scratch = np.zeros((FLUID_BUFSIZE_FRAMES, 2), np.float32)

    def note_on(self, pitch: int, velocity: int) -> None:
        """Start ``pitch`` (0..127) at ``velocity`` (1..127)."""
        if self._quiet:
            self._wake()
        self._draining = False
        self._noteon(self._handle, self.channel, int(pitch), int(velocity))

    def _wake(self) -> None:
        """Leave the quiet state before a note-on: render the skipped frames
        modulo FluidSynth's block (silence, into a scratch buffer), so
        FluidSynth stands where it would had it rendered every frame."""
        catch_up_frames = self._quiet_frames % FLUID_BUFSIZE_FRAMES
        if catch_up_frames:
            pointer = self._scratch.ctypes.data
            self._write_float(self._handle, catch_up_frames, pointer, 0, 2, pointer, 1, 2)
            self.render_calls += 1
            self.rendered_frames += catch_up_frames
            self._block_phase_frames = catch_up_frames  # it was at a block's start when it became quiet
        self._quiet = False
        self._quiet_frames = 0

    def note_off(self, pitch: int) -> None:
        """Release ``pitch``."""
        self._noteoff(self._handle, self.channel, int(pitch))

    def silence(self) -> None:
        """Stop every voice at once and flush FluidSynth's internal block, so
        the next render starts from silence (no leftover of earlier sound)."""
        self._synth.all_sounds_off(self.channel)
        scratch = np.zeros((128, 2), np.float32)
        self.render_into(scratch)

    def active_voice_count(self) -> int:
        """Voices sounding now (including releasing ones)."""
        return int(self._active_voice_count(self._handle))

    @property
    def quiet(self) -> bool:
        """Whether nothing sounds and the next render needs no FluidSynth call."""
        return self._quiet

    def render_into(self, out: np.ndarray) -> None:
        """Overwrite ``out`` (shape ``(n_frames, 2)``, float32, C-contiguous) with
        the next ``n_frames`` of audio: zeros without a FluidSynth call while
        quiet (see the class)."""
        n_frames = out.shape[0]
        if self._quiet:
            out.fill(0.0)
            self._quiet_frames += n_frames
            self.skipped_frames += n_frames
            return
        if self._draining:
            rest_frames = -self._block_phase_frames % FLUID_BUFSIZE_FRAMES  # computed, not yet output
            if rest_frames < n_frames:
                if rest_frames:
                    self._write(out[:rest_frames])
                out[rest_frames:].fill(0.0)
                self._draining = False
                self._quiet = True
                self._quiet_frames = n_frames - rest_frames
                self.skipped_frames += n_frames - rest_frames
                return
            self._write(out)
            return
        self._write(out)
        if self._skips and self._active_voice_count(self._handle) == 0:
            self._draining = True

    def _write(self, out: np.ndarray) -> None:
        """One FluidSynth render call into ``out``."""
        pointer = out.ctypes.data
        self._write_float(self._handle, out.shape[0], pointer, 0, 2, pointer, 1, 2)
        self.render_calls += 1
        self.rendered_frames += out.shape[0]
        self._block_phase_frames = (self._block_phase_frames + out.shape[0]) % FLUID_BUFSIZE_FRAMES

    def close(self) -> None:
        """Free the FluidSynth instance (the shared SoundFont stays loaded
        while another synthesizer uses it)."""
        if self._synth is not None:
            # Take the shared SoundFont out first: deleting a synthesizer deletes the SoundFonts it holds.
            _sfont_api().remove(self._synth.synth, self._shared.sfont)
            self._synth.delete()
            self._synth = None
            self._shared.release()


class _SfontApi:
    """The FluidSynth calls that put one loaded SoundFont into several synthesizers."""

    def __init__(self) -> None:
        fluidsynth, _ = _load_fluidsynth()
        library = fluidsynth._fl
        self.get_by_id = library.fluid_synth_get_sfont_by_id
        self.get_by_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.get_by_id.restype = ctypes.c_void_p
        self.add = library.fluid_synth_add_sfont
        self.add.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.add.restype = ctypes.c_int
        self.remove = library.fluid_synth_remove_sfont
        self.remove.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.remove.restype = ctypes.c_int


_SFONT_API: _SfontApi | None = None


def _sfont_api() -> _SfontApi:
    global _SFONT_API
    if _SFONT_API is None:
        _SFONT_API = _SfontApi()
    return _SFONT_API


def soundfont_is_loaded(path: Path | str) -> bool:
    """Whether this process holds ``path`` loaded already (so a synthesizer
    playing it starts at once; loading an SF3 file takes seconds)."""
    try:
        key = _SharedSoundFont.key(Path(path))
    except OSError:
        return False
    with _SharedSoundFont._lock:
        return key in _SharedSoundFont._loaded


def unload_unused_soundfonts() -> int:
    """Free every loaded SoundFont no synthesizer uses; returns how many were freed.

    A SoundFont stays loaded after its last synthesizer closes, so the next
    session of the process starts without loading it again (MuseScore General,
    an SF3 file, decodes its samples for seconds and holds about 500 MB).
    """
    with _SharedSoundFont._lock:
        unused = [key for key, shared in _SharedSoundFont._loaded.items() if shared.users == 0]
        for key in unused:
            _SharedSoundFont._loaded.pop(key).holder.delete()  # deletes the SoundFont it loaded
    return len(unused)


class _SharedSoundFont:
    """One SoundFont loaded once per process and added to every synthesizer
    that plays it (``fluid_synth_add_sfont``), instead of each loading its own
    copy of the sample data: about 6 MB per synthesizer with TimGM6mb, 170 MB
    for the default bank's 28 (and with MuseScore General, ~500 MB each). A
    holder synthesizer (never rendered) owns it. It stays loaded when its last
    user closes, for the process's next session (loading an SF3 file decodes
    its samples for seconds), until :func:`unload_unused_soundfonts`. The key
    is the file's resolved path, size and modification time, so a file
    replaced on disk is loaded afresh. Only the thread that renders uses the
    synthesizers, as with any Synth.
    """

    _loaded: dict[tuple[Path, int, int], "_SharedSoundFont"] = {}
    _lock = threading.Lock()

    def __init__(self, holder: object, sfont: int) -> None:
        self.holder = holder
        self.sfont = sfont
        self.users = 0

    @staticmethod
    def key(path: Path) -> tuple[Path, int, int]:
        """``(resolved path, size in bytes, mtime in ns)`` of ``path``.

        Raises:
            OSError: it cannot be read.
        """
        resolved = path.resolve()
        stat = resolved.stat()
        return resolved, stat.st_size, stat.st_mtime_ns

    @classmethod
    def acquire(cls, path: Path) -> "_SharedSoundFont":
        """The loaded SoundFont at ``path`` (loaded now if needed), with one more user.

        Raises:
            AssetError: FluidSynth cannot load it.
        """
        try:
            key = cls.key(path)
        except OSError as error:
            raise AssetError(f"{path}: cannot read SoundFont ({error.strerror or error})") from None
        with cls._lock:
            shared = cls._loaded.get(key)
            if shared is None:
                fluidsynth, _ = _load_fluidsynth()
                holder = fluidsynth.Synth(gain=0.0, samplerate=48_000.0, channels=16,
                                          **{"synth.reverb.active": 0, "synth.chorus.active": 0,
                                             "synth.polyphony": 1})
                soundfont_id = holder.sfload(str(path))
                sfont = _sfont_api().get_by_id(holder.synth, soundfont_id) if soundfont_id >= 0 else None
                if not sfont:
                    holder.delete()
                    raise AssetError(f"{path}: FluidSynth could not load this SoundFont (corrupt or truncated?"
                                     " an .sf3 file needs a libsndfile with Ogg Vorbis)")
                shared = cls(holder, sfont)
                cls._loaded[key] = shared
            shared.users += 1
            return shared

    def release(self) -> None:
        """One user fewer (the SoundFont stays loaded; see :func:`unload_unused_soundfonts`)."""
        with self._lock:
            self.users -= 1
