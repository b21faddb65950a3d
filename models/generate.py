"""Streaming, constrained generation: :class:`ModelPartGenerator`, the
``"model"`` part generator the engine uses.

One bar at a time: the bar's header of conditioning tokens is fed to the
Transformer in one chunk (continuing the KV cache of the previous bar when the
bar indices are consecutive), then note tokens are sampled one by one under
constraints until the bar ends.

What does what (the model card says the same):

* **Grammar and meter** (hard constraints): after ``Position`` comes ``Pitch``,
  then ``Velocity``, then ``Duration``; then another ``Pitch`` at the same
  position, a later ``Position`` or ``Bar``. Positions are limited to the
  requested meter (``4 * beats`` sixteenths); a bar of more than 4 beats is
  written as several model bars of at most 4 beats (4 + 4 + ... + rest).
* **Key** (hard): pitches are limited to the scale of the key (tonic from
  ``request.key``, mode from the valence, see below) plus the tones of the
  bar's chord (so the E chord of A minor may bring its G#), and to the role's
  register (:data:`ROLE_REGISTER_PITCH`).
* **Chord** (conditioning + bias): the bar's chord is the header's ``Chord``
  token; chord tones get a logit bonus of :data:`CHORD_TONE_BONUS` (the bass's
  root another :data:`BASS_ROOT_BONUS`), the key's tonic
  :data:`TONIC_BONUS` and its third :data:`THIRD_BONUS`.
* **Valence → mode**: valence > 0 asks for the major mode, < 0 for the minor
  mode of the requested tonic (valence exactly 0 keeps ``request.key``'s mode);
  it sets the ``Key`` and ``Valence`` tokens and the scale constraint, so the
  mode always matches.
* **Arousal → density and loudness**: arousal sets a target of notes per beat
  (:data:`ROLE_NOTES_PER_BEAT`, linear) and a target mean velocity
  (:data:`VELOCITY_RANGE`, linear). The targets set the ``Arousal``,
  ``Density`` and ``MeanVelocity`` tokens; the decoder also keeps the bar's
  note count within ±1 of the target (``Bar`` is masked below it, new notes
  above it) and allows only the two MidiTok velocity levels around the target
  velocity. The model chooses which notes, where and how long.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np
import torch

from adaptive.generator import BarRequest
from adaptive.harmony import Key, Mode
from adaptive.part import Part
from models.checkpoint import DEFAULT_CHECKPOINT, ModelError, load_checkpoint
from models.model import KVCache, MusicTransformer
from models.tokenizer import (BEATS_PER_MODEL_BAR, POSITIONS_PER_BEAT, ROLES, Vocabulary, bar_header,
                              density_bin, velocity_level)

ROLE_REGISTER_PITCH = {"melody": (60, 88), "arpeggio": (48, 79), "bass": (28, 55)}
"""Lowest and highest MIDI pitch of each role."""
ROLE_NOTES_PER_BEAT = {"melody": (0.75, 3.0), "arpeggio": (0.75, 3.0), "bass": (0.75, 3.0)}
"""Target notes per beat at arousal -1 and +1 (linear between), per role. One
range for every role, inside the spread of the training data's per-bar
densities (density bins 1..4 cover most bars of each role), so that density
orders with arousal across roles as well as within one."""
ROLE_MAX_NOTES_PER_POSITION = {"melody": 2, "arpeggio": 4, "bass": 1}
VELOCITY_RANGE = (45.0, 110.0)
"""Target mean MIDI velocity at arousal -1 and +1 (linear between)."""
CHORD_TONE_BONUS = 1.0
"""Logit bonus of the bar's chord tones."""
BASS_ROOT_BONUS = 2.0
"""Further logit bonus of the chord root in the bass."""
TONIC_BONUS = 1.5
"""Logit bonus of the key's tonic: it makes the tonic, and so the mode, clear
(rather than the relative key's, which has the same scale)."""
THIRD_BONUS = 0.75
"""Logit bonus of the key's third (major or minor), the note that tells the
modes of one tonic apart."""
TEMPERATURE = 0.95

_MODELS: dict[tuple, tuple[MusicTransformer, dict, Vocabulary]] = {}
_MODELS_LOCK = threading.Lock()
_DEFAULT_TORCH_THREADS = torch.get_num_threads()


def shared_model(checkpoint: str | Path | None = None) -> tuple[MusicTransformer, dict, Vocabulary]:
    """The model of ``checkpoint`` (default: the committed one), loaded once per
    process per file version and shared (read-only) by every generator.

    Raises:
        ModelError: see :func:`models.checkpoint.load_checkpoint`.
    """
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    try:
        stat = path.resolve().stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        raise ModelError(f"{path}: generator checkpoint not found") from None
    with _MODELS_LOCK:
        if key not in _MODELS:
            vocab = Vocabulary.build()
            model, payload = load_checkpoint(path, vocab)
            _MODELS[key] = (model, payload, vocab)
        return _MODELS[key]


def generation_key(request: BarRequest) -> Key:
    """The key a bar is written in: ``request.key``'s tonic, in the mode the
    mapping asks for (``request.conditioning.mode``; ``None`` there keeps
    ``request.key``'s mode), or without conditioning the mode the valence
    asks for (major above 0, minor below, ``request.key``'s at 0)."""
    if request.conditioning is not None:
        mode = request.conditioning.mode
        if mode is None:
            return request.key
        return Key(request.key.tonic_pitch_class, Mode.MAJOR if mode == "major" else Mode.MINOR)
    if request.valence > 0:
        return Key(request.key.tonic_pitch_class, Mode.MAJOR)
    if request.valence < 0:
        return Key(request.key.tonic_pitch_class, Mode.MINOR)
    return request.key


class ModelPartGenerator:
    """The Transformer generator (satisfies :class:`adaptive.generator.PartGenerator`).

    One instance per generated part. Requests for consecutive ``bar_index``
    values continue the instance's KV cache (the music follows on); any other
    request restarts the context. Randomness comes only from
    ``(request.seed, request.bar_index, role)``, so the same requests in the
    same order give the same notes.

    Args:
        checkpoint: a checkpoint file; None = the committed ``models/generator.pt``.
        threads: a hint: torch intra-op threads to use if the process has not
            chosen a number itself. ``torch.set_num_threads`` is process-wide, so
            it is called only when ``$OMP_NUM_THREADS`` is unset and the count is
            still the one torch had when this module was imported.
    Raises:
        ModelError (an :class:`adaptive.errors.AssetError`): the checkpoint is
            missing, corrupt, truncated, or does not match this code.
    """

    name = "model"

    def __init__(self, checkpoint: str | Path | None = None, threads: int = 1) -> None:
        if ("OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == _DEFAULT_TORCH_THREADS
                and threads >= 1 and threads != torch.get_num_threads()):
            torch.set_num_threads(threads)
        self.model, self.payload, self.vocab = shared_model(checkpoint)
        v = self.vocab
        self._kind = v.kind
        self._is_position = self._kind == "Position"
        self._is_pitch = self._kind == "Pitch"
        self._is_velocity = self._kind == "Velocity"
        self._is_duration = self._kind == "Duration"
        self._bar = v.id("Bar_None")
        self._cache: KVCache | None = None
        self._next_bar_index: int | None = None
        self._stream_key: tuple | None = None
        self._previous_bar: list[int] = []
        self.last_tokens: list[str] = []
        """Token strings of the last generated request (headers and notes), for inspection."""

    # ------------------------------------------------------------------ public

    def generate_bar(self, request: BarRequest) -> Part:
        """Notes of one bar, beats from its downbeat (see the module docstring).

        Raises:
            ValueError: unknown role, beats_per_bar < 1, or a non-finite
                valence/arousal/bpm.
        """
        if request.role not in ROLES:
            raise ValueError(f"role {request.role!r} is not one of {', '.join(ROLES)}")
        if request.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar {request.beats_per_bar} must be >= 1")
        for name in ("valence", "arousal", "bpm"):
            if not math.isfinite(getattr(request, name)):
                raise ValueError(f"{name} {getattr(request, name)!r} is not a finite number")
        stream_key = (request.seed, request.role)
        continuing = (self._cache is not None and self._stream_key == stream_key
                      and self._next_bar_index == request.bar_index)
        if not continuing:
            self._cache = None
            self._previous_bar = []
        self._stream_key = stream_key
        self._next_bar_index = request.bar_index + 1
        rng = np.random.default_rng([request.seed & 0xFFFFFFFF, request.bar_index & 0xFFFFFFFF,
                                     ROLES.index(request.role), 0x6D6F64])
        self.last_tokens = []
        notes: list[tuple[float, float, int, int]] = []
        offset_beats = 0
        remaining = request.beats_per_bar
        with torch.inference_mode():
            while remaining > 0:
                beats = min(BEATS_PER_MODEL_BAR, remaining)
                notes += self._model_bar(request, beats, offset_beats, rng)
                offset_beats += beats
                remaining -= beats
        return Part.from_notes(notes)

    # ------------------------------------------------------------------ decoding

    def _header(self, request: BarRequest, beats: int) -> tuple[list[int], float, float]:
        arousal = min(1.0, max(-1.0, request.arousal))
        valence = min(1.0, max(-1.0, request.valence))
        a01 = (arousal + 1.0) / 2.0
        low, high = ROLE_NOTES_PER_BEAT[request.role]
        notes_per_beat = low + a01 * (high - low)
        velocity = VELOCITY_RANGE[0] + a01 * (VELOCITY_RANGE[1] - VELOCITY_RANGE[0])
        if request.conditioning is not None:  # the mapping's asks replace the built-in ones
            notes_per_beat = min(max(request.conditioning.notes_per_beat, 0.25), 16.0)
            velocity = float(min(max(request.conditioning.velocity, 1), 127))
        tokens = bar_header(generation_key(request), valence, arousal, request.bpm, density_bin(notes_per_beat),
                            velocity_level(velocity), request.chord)
        return [self.vocab.id(t) for t in tokens], notes_per_beat * beats, velocity

    def _feed(self, ids: list[int]) -> np.ndarray:
        """Run ``ids`` through the model (continuing the cache); next-token logits (V,)."""
        x = torch.tensor([ids], dtype=torch.long)                    # (1, T)
        logits = self.model(x, self._cache)                          # (1, T, V)
        return logits[0, -1].float().numpy()

    def _model_bar(self, request: BarRequest, beats: int, offset_beats: int,
                   rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
        v = self.vocab
        header, target_notes, target_velocity = self._header(request, beats)
        max_notes = max(1, math.ceil(target_notes + 1))
        min_notes = max(1, math.floor(target_notes - 1))
        max_position = beats * POSITIONS_PER_BEAT                     # positions 0..max_position-1
        max_per_position = ROLE_MAX_NOTES_PER_POSITION[request.role]
        max_tokens = 4 * max_notes + 2
        config = self.model.config

        start = [v.id("BOS_None"), v.id(f"Role_{request.role}")]
        if self._cache is None:
            self._cache = KVCache(config)
            chunk = start + self._previous_bar + header
        elif self._cache.room() < len(header) + max_tokens:
            self._cache = KVCache(config)  # context full: restart from the previous bar
            chunk = start + self._previous_bar + header
        else:
            chunk = header
        if len(chunk) + max_tokens > config.block_size:
            chunk = start + header
        logits = self._feed(chunk)

        # Allowed pitches: the role's register, in the scale of the key or the bar's chord.
        key = generation_key(request)
        scale = np.isin(v.pitch % 12, key.scale_pitch_classes() + request.chord.pitch_classes())
        low, high = ROLE_REGISTER_PITCH[request.role]
        if request.conditioning is not None:
            shift = int(round(request.conditioning.register_semitones))
            low, high = max(0, low + shift), min(127, high + shift)
        allowed_pitch = self._is_pitch & scale & (v.pitch >= low) & (v.pitch <= high)
        pitch_bonus = np.zeros(len(v))
        chord_pcs = request.chord.pitch_classes()
        pitch_bonus[self._is_pitch & np.isin(v.pitch % 12, chord_pcs)] += CHORD_TONE_BONUS
        if request.role == "bass":
            pitch_bonus[self._is_pitch & (v.pitch % 12 == chord_pcs[0])] += BASS_ROOT_BONUS
        pitch_bonus[self._is_pitch & (v.pitch % 12 == key.tonic_pitch_class)] += TONIC_BONUS
        pitch_bonus[self._is_pitch & (v.pitch % 12 == key.scale_pitch_classes()[2])] += THIRD_BONUS
        # Allowed velocities: the MidiTok levels on either side of the target.
        levels = v.velocity
        below = levels[self._is_velocity & (levels <= target_velocity)]
        above = levels[self._is_velocity & (levels >= target_velocity)]
        chosen_levels = [x for x in (below.max() if len(below) else None, above.min() if len(above) else None)
                         if x is not None]
        allowed_velocity = self._is_velocity & np.isin(levels, chosen_levels)
        allowed_duration = self._is_duration & (v.duration_beats <= beats)

        body: list[int] = []
        notes: list[tuple[float, float, int, int]] = []
        state = "after_duration"
        position = -1
        pitches_here: list[int] = []
        pitch = velocity = 0
        while True:
            if state == "after_duration":
                allowed = np.zeros(len(v), bool)
                needed = min_notes - len(notes)
                if len(notes) < max_notes:
                    # a later position, if the positions left after it can still hold the notes needed
                    capacity = (max_position - v.position) * max_per_position
                    allowed |= (self._is_position & (v.position > position) & (v.position < max_position)
                                & (capacity >= needed))
                    if position >= 0 and len(pitches_here) < max_per_position:
                        allowed |= allowed_pitch & ~np.isin(v.pitch, pitches_here)
                if needed <= 0 or not allowed.any():
                    allowed[self._bar] = True
            elif state == "after_position":
                allowed = allowed_pitch & ~np.isin(v.pitch, pitches_here)
            elif state == "after_pitch":
                allowed = allowed_velocity
            else:  # after_velocity
                allowed = allowed_duration
            token = self._sample(logits, allowed, pitch_bonus if state in ("after_position", "after_duration") else None, rng)
            if token == self._bar:
                break
            body.append(token)
            kind = self._kind[token]
            if kind == "Position":
                position = int(v.position[token])
                pitches_here = []
                state = "after_position"
            elif kind == "Pitch":
                pitch = int(v.pitch[token])
                pitches_here.append(pitch)
                state = "after_pitch"
            elif kind == "Velocity":
                velocity = int(v.velocity[token])
                state = "after_velocity"
            else:
                duration = float(v.duration_beats[token])
                notes.append((offset_beats + position / POSITIONS_PER_BEAT, duration, pitch, velocity))
                state = "after_duration"
            if self._cache.room() < 2 or len(body) > max_tokens:
                break  # cannot happen with the limits above; a guard against an endless bar
            logits = self._feed([token])
        self._previous_bar = header + body
        self.last_tokens += [v.tokens[i] for i in header + body]
        return notes

    @staticmethod
    def _sample(logits: np.ndarray, allowed: np.ndarray, bonus: np.ndarray | None,
                rng: np.random.Generator) -> int:
        """Draw a token from softmax(logits / T + bonus) restricted to ``allowed``
        (inverse-CDF sampling with one uniform draw)."""
        candidates = np.flatnonzero(allowed)
        scores = logits[candidates] / TEMPERATURE
        if bonus is not None:
            scores += bonus[candidates]
        weights = np.exp(scores - scores.max())
        cumulative = np.cumsum(weights)
        choice = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
        return int(candidates[min(choice, len(candidates) - 1)])
