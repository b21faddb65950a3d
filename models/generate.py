"""Streaming generation: :class:`ModelPartGenerator`, the ``"model"`` part
generator the engine uses.

One bar at a time: the bar's header of conditioning tokens (meter, place in
the 8-bar period, key, valence, arousal, tempo, density, loudness, the chords
of the bar's two halves) is fed in one chunk, continuing the context of the
previous bars when the bar indices are consecutive, then note tokens are
sampled one by one until the model ends the bar.

What does what (the model card says the same):

* **Emotion** is carried by the model. ``Valence`` and ``Arousal`` tokens
  condition every bar, and decoding uses classifier-free guidance (Ho &
  Salimans 2022): the model also runs on the same context with the emotion
  tokens reading ``unknown`` (it was trained with them dropped in 30 % of
  the windows), and the logits are ``unconditional + s · (conditional −
  unconditional)`` with scale ``s`` = :data:`DEFAULT_GUIDANCE_SCALE` (or the
  mapping's ``guidance_scale``). Valence also picks the mode of the key
  (major above 0, minor below, as the mapping's ``mode`` does), and arousal
  the ``Density`` and ``MeanVelocity`` tokens when
  :attr:`ModelPartGenerator.texture_from_arousal` is on (the default):
  conditioning the model learned from real bars, not limits on the notes.
* **Phrase form** comes from real music (:mod:`models.contours`): the
  arousal picks how busy a period is among VGMIDI's real 8-bar periods, and
  one such period, drawn by seed, gives each bar its ``Density`` token (a
  busy bar, then a held one, as real periods vary) and says which bars
  repeat an earlier bar: a repeated bar keeps the earlier bar's onsets and
  note lengths, and, where the real period repeated a motif or the whole
  bar, its intervals or its notes (the nearest pitch the key allows); a bar
  it does not repeat starts with a note on its downbeat exactly when the
  real bar does (:data:`PHRASE_FORM_DOWNBEATS`).
* **Hard constraints** are only the rules a composer would state: the token
  grammar (``Position`` → ``Pitch`` → ``Velocity`` → ``Duration``, positions
  rising); the meter (positions inside the bar); the role's register
  (:data:`ROLE_REGISTER_PITCH`) and notes per onset; the cue's key (pitches in
  its scale, or tones of the bar's chord, so the E chord of A minor may bring
  its G#); a bridge's seams (:class:`adaptive.generator.BarEnding`, and the
  first note within an octave of the context's last); a melody's downbeat
  on a tone of the bar's chord (:data:`MELODY_DOWNBEAT_CHORD_TONES`) and no
  pitch more than three times in a row (:data:`ROLE_MAX_REPEATED_NOTES`);
  and, for a melody asked over an open harmony (an option, :data:`MELODY_OVER_OPEN_HARMONY`),
  chord tones on the strong beats (:func:`strong_positions`) and tones
  outside the chord shorter than a beat. Nothing biases
  the tonic, the third or the chord tones, and nothing counts notes.

The Transformer runs in numpy (:mod:`models.inference`; its decoding step
compiled by Numba, :mod:`models.fast_step`); randomness comes
only from ``(seed, bar_index, role)``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from adaptive.generator import BarRequest
from adaptive.harmony import Chord, Key, Mode
from adaptive.part import Part
from models import fast_step
from models.checkpoint import DEFAULT_CHECKPOINT, ModelError, load_checkpoint
from models.contours import REPEAT_EXACT, REPEAT_MOTIF, REPEAT_NONE, BarPlan, arousal_quantile, load_contours
from models.inference import CachePool, NumpyCache, NumpyDecoder
from models.tokenizer import (HEADER_SLOTS, METERS, PHRASE_BARS, POSITIONS_PER_BEAT, ROLES, Vocabulary, bar_header,
                              density_bin, encode_bar, style_token, velocity_level)

ROLE_REGISTER_PITCH = {"melody": (60, 88), "arpeggio": (45, 81), "bass": (28, 57)}
"""Lowest and highest MIDI pitch of each role (a composer's ranges: the
melody above middle C, the bass below the stave's middle)."""
ROLE_MAX_NOTES_PER_POSITION = {"melody": 2, "arpeggio": 4, "bass": 1}
"""Notes sounding together at most, per role."""
ROLE_MAX_REPEATED_NOTES = {"melody": 3}
"""The most times in a row a role's top line may sound one pitch (roles not
named: no limit). A composer's rule of thumb for a line that sings, and the
evidence: 7.8 % of the notes of VGMIDI's held-out melodies sit in runs of
three or more of one pitch and 1.8 % in runs of four or more, against 21 %
and 9 % in version 4's (docs/evaluation.md, "Phrase form"). Basses keep
their repeated roots."""
ROLE_REPEAT_WEIGHT = {"melody": 0.5}
"""The factor on the probability of a role's top line sounding its last
pitch again at its next onset, where the model chooses freely (roles not
named: 1, no change). Applied to the sampled distribution before the
nucleus, as the repetition penalty of Keskar et al. 2019 (CTRL) is to a
token seen before, but to one token only: the last note. Why: fed real
melodies, the model gives the repeated note about its real probability
(0.14 against VGMIDI's 0.12), but in its own melodies it repeats 0.24 of
its notes at every density (docs/evaluation.md, "Fresh rhythms"): repeats
breed repeats once its own context is the one it reads. The factor makes
up for that exposure, chosen on the tuning progressions
(docs/evaluation.md, "Version 5": with version 5 at guidance 2, repeats
0.29 → 0.16 of the melody's intervals, VGMIDI 0.03-0.15; steps 0.39 → 0.42;
realness and the emotion figures unchanged). Repeats a period plans (an
exact or motif bar) are kept as planned."""
AROUSAL_NOTES_PER_BEAT = {"melody": (0.75, 2.7), "arpeggio": (1.4, 4.6), "bass": (0.4, 1.9)}
"""Notes per beat asked through the ``Density`` token at arousal -1 and +1
(linear between), per role: from the lower quartile of VGMIDI's training bars
of that role in low-arousal phrases to the upper quartile of its bars in
high-arousal phrases (read from the ``Density`` bins, interpolated inside a
bin), so that the asks span what real game music of that role does. Version
2 asked every role for 0.75-3, which put a bass at 3 notes a beat, where
VGMIDI's basses almost never go. Used only with ``density_contours=False``
(version 4's decoding); by default :mod:`models.contours` sets each bar's
``Density``."""
AROUSAL_VELOCITY = (64.0, 111.0)
"""Mean MIDI velocity asked through the ``MeanVelocity`` token at arousal -1
and +1: the lower quartile of VGMIDI's low-arousal bars and the upper quartile
of its high-arousal bars."""
STYLE_HEADER_UNKNOWN = {"game": ("Tempo",), "folk": ("Tempo", "MeanVelocity"),
                        "chorale": ("Tempo", "MeanVelocity"), "pop": (), "unknown": ()}
"""Header attributes a style's corpus never has (models/MODEL_CARD.md, "How
every attribute is derived"): they read ``unknown`` in that style, as in
training — VGMIDI's phrases carry no tempo, the scores no dynamics — instead
of a combination the model never saw."""
DEFAULT_GUIDANCE_SCALE = 3.0
"""Classifier-free guidance scale on the emotion tokens (Ho & Salimans 2022),
chosen on the tuning progressions with version 5: 3 against 2 and 2.5 gave
mode 93.3 % (85.0 %), quadrant 77.1 % (66.7 %), melody realness 0.93
(0.88, within the folds' noise); docs/evaluation.md, "Version 5"."""
MAX_GUIDANCE_SCALE = 8.0
ROOM_FOR_A_BAR = 48
"""Tokens left free after a bar's header for the context to continue rather
than re-open (a melody bar takes about 20-45; a longer bar re-opens the
context mid-bar)."""
DEFAULT_STYLE = "game"
"""The ``Style`` a generator writes in unless told otherwise: VGMIDI's game music."""
TEMPERATURE = 0.9
TOP_P = 0.95
"""Nucleus sampling (Holtzman et al. 2020): sample from the smallest set of
allowed tokens holding this much probability."""

_blas_threads = ThreadpoolController()
"""numpy's BLAS runs on the calling thread while a bar is generated (a
(2, 192) x (192, 768) product split over two threads costs more in hand-offs
than it saves, and would take the core the render thread needs)."""

_MODELS: dict[tuple, tuple[NumpyDecoder, dict, Vocabulary]] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(checkpoint: str | Path | None = None) -> tuple[NumpyDecoder, dict, Vocabulary]:
    """The decoder of ``checkpoint`` (default: the committed one), loaded once
    per process per file version and shared (read-only) by every generator.

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
            decoder = NumpyDecoder(model)
            decoder.warm_up()  # compile (or load the compiled) decoding step now, not in the first bar
            _MODELS[key] = (decoder, payload, vocab)
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


MELODY_OVER_OPEN_HARMONY = False
"""Whether a melody is asked with ``Chord_none`` and keeps the cue's chord by
rules (:class:`ModelPartGenerator`'s ``open_melody_harmony``): off by default.

Why it exists (measured on the held-out VGMIDI pieces by
``tools/chord_conditioning_probe.py``, free sampling at temperature 0.9 from
each bar's real header): with the pieces' own chord tokens the sampled
melodies repeat 16 % of their notes and move by step 31 % of the time (the
real ones: 12 % and 43 %); with those tokens replaced by a progression of one
chord a bar, as a cue gives, 23 % and 21 %: the model, whose chord labels
were estimated from the very notes of each half bar (melody included),
answers a chord by circling its tones. With ``Chord_none`` it writes 11 % and
46 %, the real melodies' figures.

Why it is off (docs/evaluation.md, "Chord tokens and the melody"): over the
evaluation's grid, asked that way and held to chord tones on strong beats,
the melody moves by step as real melodies do and repeats fewer notes, but
stops repeating its bars' rhythms (bar-rhythm repetition 0.12 against the
real 0.25-0.42) and leaps too seldom (0.08 against 0.13-0.34); the
classifier tells it from VGMIDI's melodies about as easily (0.92 against
0.95), so neither way is yet the real thing. Retraining with the chord
tokens dropped in some windows is the fix this points to."""


PHRASE_FORM_FRESH_RHYTHMS = True
"""Whether, under the phrase form (:mod:`models.contours`), a melody bar that
its real period does *not* repeat may not end on the onset rhythm of an
earlier bar of its period (:class:`ModelPartGenerator`'s
``fresh_rhythms``): while a later onset is allowed, ``Bar`` is not. The
period's own repeats (its rhythm, motif and exact repeats) are kept as
planned. Why (docs/evaluation.md, "Phrase form"): the planned repeats came on
top of bars that came out alike by chance (eight eighth notes, four
quarters), and the melody's bar-rhythm repetition rose to 0.50 where VGMIDI's
melodies have 0.25-0.42 (median 0.38); the periods' own repeats are 0.32 of
their bars. A rule of phrase form taken from the data, not from a listener's
taste: what the real period did not repeat is not repeated."""

PHRASE_FORM_DOWNBEATS = True
"""Whether, under the phrase form (:mod:`models.contours`), a bar that its
real period does not repeat has a note on its downbeat exactly when the real
period's bar has one (:class:`ModelPartGenerator`'s ``downbeat_onsets``):
where the real bar starts on its downbeat, ``Position_0`` is the only first
position allowed; where it starts with a rest or a held note, any position
but 0 (or an empty bar). Bars the period repeats take the earlier bar's
onsets instead. Why (docs/evaluation.md, "Downbeats from the real period"):
left to itself the model starts 38 % of its melody bars after the downbeat
(a pop singer's late entries: POP909's melodies leave 41 % of downbeats
empty, VGMIDI's 20 %), and the classifier leaned on the missing downbeat
onsets; following the period, 80 % of the melody's bars start on the
downbeat, as VGMIDI's do. Only forcing the downbeat where the period has
one made the model start every bar there (99.9 %): it copies its own
context. A rule of phrase form taken from the data, like the density and
the repeats."""

MELODY_DOWNBEAT_CHORD_TONES = True
"""Whether every melody note on a bar's downbeat is a tone of the bar's first
chord (:class:`ModelPartGenerator`'s ``melody_downbeat_chord_tones``): on by
default. A composer's rule (the downbeat, the strongest beat of the metrical
hierarchy, sounds the harmony; Lerdahl & Jackendoff 1983, ch. 4; Aldwell &
Schachter, ch. 8: non-chord tones are mostly unaccented). Why (docs/evaluation.md,
"Phrase form"): with the phrase form's sparser, held bars the key finder
heard a relative major in a quarter of the minor pieces; with this rule the
mode matched the valence in 90.0 % of the tuning grid's pieces instead of
80.0 %, and the VGMIDI classifier found the asked quadrant in 64.6 %
instead of 62.5 %, while realness moved within its noise (VGMIDI melody
0.90 → 0.93, ± 0.04-0.07 across folds). Chord tones on both strong beats and
short non-chord tones (the open-harmony rules) gave 96.7 %, but 0.97. The
evidence is mixed beyond the tuning set: on the held-out progressions the
mode was 85.0 % with the rule and 88.3 % without, and in the ablation's
seed 83.3 % either way (docs/evaluation.md, "Ablation")."""

NON_CHORD_TONE_MAX_BEATS = 1.0
"""A melody note outside its half bar's chord (written over an open harmony)
lasts less than this many beats: tones outside the chord pass or neighbour
between chord tones rather than sound against the harmony (the rule of
unaccented passing and neighbour tones, e.g. Aldwell & Schachter, *Harmony
and Voice Leading*, ch. 8)."""


def strong_positions(meter: str, positions: int) -> tuple[int, ...]:
    """Positions (sixteenths from the downbeat) of a bar's strong beats: the
    downbeat and the middle of a 4/4 or 2/4 bar (beats 1 and 3 of 4/4), the
    downbeat of 3/4 and 3/8, and the two dotted-quarter beats of 6/8
    (the metrical hierarchy of Lerdahl & Jackendoff 1983, ch. 4)."""
    if meter in ("4_4", "2_4", "6_8"):
        return (0, positions // 2)
    return (0,)


@dataclass(frozen=True)
class ModelBar:
    """One bar as the model writes it: a meter of :data:`METERS`, the
    positions (16ths) used of it, and where it starts in the requested bar."""

    meter: str
    positions: int
    offset_quarters: float
    chords: tuple[Chord, Chord]


def model_bars(request: BarRequest) -> list[ModelBar]:
    """The requested bar as one or more model bars: 2/4, 3/4, 4/4, 6/8 and 3/8
    as they are, 2/2 as 4/4; longer or odd meters as a sum (5/4 = 3/4 + 2/4,
    6/4 = 3/4 + 3/4, 7/4 = 4/4 + 3/4, 12/8 = 6/8 + 6/8, 5/8 = 2/4 + a cut 3/8)."""
    quarters = request.beats_per_bar * 4.0 / request.beat_unit
    first, second = request.chord, request.second_chord or request.chord
    half = quarters / 2
    if request.beat_unit == 8 and request.beats_per_bar % 3 == 0:
        sizes = [("6_8", 3.0)] * (request.beats_per_bar // 6) + [("3_8", 1.5)] * (request.beats_per_bar % 6 // 3)
    else:
        sizes = []
        left = quarters
        while left > 1e-9:
            if left in (5.0, 6.0) or 3.0 <= left < 4.0:   # 5 = 3 + 2, 6 = 3 + 3
                size = ("3_4", 3.0)
            elif left >= 4.0:
                size = ("4_4", 4.0)
            elif left >= 2.0:
                size = ("2_4", 2.0)
            else:                                         # what is left of a beat and a half or less
                size = ("3_8", min(1.5, left))
            sizes.append(size)
            left -= size[1]
    bars, offset = [], 0.0
    for meter, length in sizes:
        positions = int(round(length * POSITIONS_PER_BEAT))
        if len(sizes) == 1:
            chords = (first, second)
        else:
            chords = (first if offset < half else second, first if offset + length / 2 < half else second)
        bars.append(ModelBar(meter, min(positions, METERS[meter]), offset, chords))
        offset += length
    return bars


class ModelPartGenerator:
    """The Transformer generator (satisfies :class:`adaptive.generator.PartGenerator`).

    One instance per generated part. Requests for consecutive ``bar_index``
    values continue the instance's context (the music follows on, and the
    model sees the earlier bars it wrote); any other request starts afresh
    from the request's ``context`` bars. The same requests in the same order
    give the same notes.

    Args:
        checkpoint: a checkpoint file; None = the committed ``models/generator.pt``.
        threads: accepted for compatibility; decoding runs on the calling thread.
        guidance_scale: default classifier-free guidance scale (1 = none).
        texture_from_arousal: set the ``Density``/``MeanVelocity`` tokens from
            the arousal when the mapping does not ask (else they read ``unknown``).
        constrained: False turns off the key and register constraints (for the
            evaluation's ablation).
        temperature, top_p: sampling temperature (0.05..5) and nucleus mass (0..1].
        style: the ``Style`` token every sequence opens with, one of
            :data:`models.tokenizer.STYLES`: ``"game"`` (the default) writes in
            the manner of VGMIDI's game music, ``"pop"``, ``"folk"`` and
            ``"chorale"`` in that of POP909, the folk tunes and Bach's chorales,
            ``"unknown"`` in none in particular.
        melody_downbeat_chord_tones: True (the default,
            :data:`MELODY_DOWNBEAT_CHORD_TONES`) keeps every melody note on a
            bar's downbeat a tone of the bar's first chord.
        fresh_rhythms: True (the default, :data:`PHRASE_FORM_FRESH_RHYTHMS`):
            with ``density_contours``, a melody bar its period does not repeat
            does not end on an earlier bar's onset rhythm either.
        downbeat_onsets: True (the default, :data:`PHRASE_FORM_DOWNBEATS`):
            with ``density_contours``, a bar its period does not repeat has a
            note on its downbeat exactly when the real period's bar does
            (every role).
        repeat_weight: the factor (0, 1] on the probability of a role's top
            line repeating its last pitch where the model chooses, per role
            (a dict) or one for every role; None: :data:`ROLE_REPEAT_WEIGHT`.
        open_melody_harmony: True asks for the melody with ``Chord`` tokens
            reading ``none`` and keeps the chord by rules instead: every note
            on a strong beat (:func:`strong_positions`) is a tone of its half
            bar's chord, and a tone outside the chord lasts less than
            :data:`NON_CHORD_TONE_MAX_BEATS`. False (the default,
            :data:`MELODY_OVER_OPEN_HARMONY`) asks with the cue's chords.
        density_contours: True (the default) asks each bar's ``Density`` from
            the shape of a real 8-bar period as busy on average as the arousal
            (or the mapping's notes-per-beat ask) calls for
            (:mod:`models.contours`); False asks every bar the same bin (the
            asks of :data:`AROUSAL_NOTES_PER_BEAT`, version 4's decoding).
    Raises:
        ValueError: an unknown style, or temperature/top_p out of range.
        ModelError (an :class:`adaptive.errors.AssetError`): the checkpoint is
            missing, corrupt, truncated, or does not match this code.
        models.contours.ContourError: the contour table is missing or malformed.
    """

    name = "model"

    def __init__(self, checkpoint: str | Path | None = None, threads: int = 1,
                 guidance_scale: float = DEFAULT_GUIDANCE_SCALE, texture_from_arousal: bool = True,
                 constrained: bool = True, temperature: float = TEMPERATURE, top_p: float = TOP_P,
                 style: str = DEFAULT_STYLE, open_melody_harmony: bool = MELODY_OVER_OPEN_HARMONY,
                 density_contours: bool = True,
                 melody_downbeat_chord_tones: bool = MELODY_DOWNBEAT_CHORD_TONES,
                 fresh_rhythms: bool = PHRASE_FORM_FRESH_RHYTHMS,
                 downbeat_onsets: bool = PHRASE_FORM_DOWNBEATS,
                 repeat_weight: dict[str, float] | float | None = None) -> None:
        del threads
        style_token(style)  # raises ValueError for an unknown style
        if not (0.05 <= temperature <= 5.0 and 0.0 < top_p <= 1.0):
            raise ValueError(f"temperature {temperature} (allowed 0.05..5) or top_p {top_p} (allowed (0, 1]) out of range")
        self.temperature, self.top_p = temperature, top_p
        self.decoder, self.payload, self.vocab = shared_model(checkpoint)
        self.guidance_scale = guidance_scale
        self.texture_from_arousal = texture_from_arousal
        self.contours = load_contours() if density_contours else None
        self.constrained = constrained
        self.open_melody_harmony = open_melody_harmony
        self.melody_downbeat_chord_tones = melody_downbeat_chord_tones
        self.fresh_rhythms = fresh_rhythms
        self.downbeat_onsets = downbeat_onsets
        if repeat_weight is None:
            repeat_weight = ROLE_REPEAT_WEIGHT
        elif not isinstance(repeat_weight, dict):
            repeat_weight = {role: float(repeat_weight) for role in ROLES}
        bad = {role: w for role, w in repeat_weight.items() if role not in ROLES or not 0.0 < w <= 1.0}
        if bad:
            raise ValueError(f"repeat_weight {bad}: roles are {', '.join(ROLES)}, factors in (0, 1]")
        self.repeat_weight = dict(repeat_weight)
        v = self.vocab
        kind = v.kind
        self._is_position = kind == "Position"
        self._is_pitch = kind == "Pitch"
        self._pitch_ids = {int(v.pitch[i]): int(i) for i in np.flatnonzero(self._is_pitch)}  # MIDI pitch -> id
        self._velocity_ids = np.flatnonzero(kind == "Velocity")
        self._duration_ids = np.flatnonzero(kind == "Duration")
        self._position_ids = np.flatnonzero(self._is_position)
        self._position_values = v.position[self._position_ids]
        self._durations_ok = self._duration_ids[v.duration_beats[self._duration_ids] <= 8.0]
        self._short_durations = self._durations_ok[v.duration_beats[self._durations_ok] < NON_CHORD_TONE_MAX_BEATS]
        self._bar = v.id("Bar_None")
        self.style = style
        self._slot_ids = {name: i for i, name in enumerate(HEADER_SLOTS)}
        self._cache: NumpyCache | None = None
        self._pool: CachePool | None = None  # where its caches live when batched (models.batching)
        self._first_slot = 0
        self._rows = 1
        self._next_bar_index: int | None = None
        self._stream_key: tuple | None = None
        self._history: list[list[int]] = []  # token ids (header + notes) of the bars in the context, per bar
        self._written: dict[int, tuple[int, list]] = {}  # bar_index -> (positions a bar, its notes), this stream
        self._recent_tops: list[int] = []  # the top line's last pitches, across bars
        self.last_tokens: list[str] = []
        """Token strings of the last generated request (headers and notes), for inspection."""

    # ------------------------------------------------------------------ public

    def generate_bar(self, request: BarRequest) -> Part:
        """Notes of one bar, beats from its downbeat (see the module docstring).

        Raises:
            ValueError: unknown role or style, beats_per_bar < 1, a beat unit other
                than 2, 4 or 8, or a non-finite valence/arousal/bpm.
        """
        with _blas_threads.limit(limits=1, user_api="blas"):  # one token's products are too small to share
            steps = self.bar_steps(request)
            try:
                ids, cache = next(steps)
                while True:
                    ids, cache = steps.send(self.decoder.step(ids, cache))
            except StopIteration as finished:
                return finished.value

    def use_pool(self, pool: CachePool) -> None:
        """Keep this generator's KV cache in ``pool`` (:class:`models.inference.CachePool`,
        of the same decoder) from now on, so that its decoding steps can be
        batched with other generators' (:func:`models.batching.generate_bars`).
        Takes two slots of the pool for good; the context it holds is copied
        there, so its next bar continues exactly as it would have.

        Raises:
            ValueError: the pool belongs to another decoder, or has no two free slots.
        """
        if pool.decoder is not self.decoder:
            raise ValueError("the cache pool belongs to another decoder (another checkpoint)")
        first_slot = pool.reserve(2)
        self._pool, self._first_slot = pool, first_slot
        if self._cache is not None:
            old, rows = self._cache, self._cache.rows
            self._cache = pool.cache(first_slot, rows)
            self._cache.keys[...] = old.keys
            self._cache.values[...] = old.values
            self._cache.length = old.length

    def _new_cache(self, rows: int) -> NumpyCache:
        """An empty cache for ``rows`` sequences: in the pool when it uses one, else its own."""
        if self._pool is not None:
            return self._pool.cache(self._first_slot, rows)
        return self.decoder.new_cache(rows)

    def bar_steps(self, request: BarRequest):
        """:meth:`generate_bar` as a generator that does not step the decoder
        itself: it yields ``(ids, cache)`` each time it needs a decoding step
        (``ids`` (rows,) int64, one token per row of ``cache``), expects the
        logits ``decoder.step(ids, cache)`` would give, (rows, V), sent back,
        and returns the bar's :class:`Part`. So a caller can step several
        generators' rows at once (:func:`models.batching.generate_bars`);
        the notes are the same as :meth:`generate_bar`'s. Prefills (a bar's
        header, re-opening the context) run inside, on the calling thread.

        Raises:
            ValueError: as :meth:`generate_bar`, at the first ``next``.
        """
        if request.role not in ROLES:
            raise ValueError(f"role {request.role!r} is not one of {', '.join(ROLES)}")
        if request.beats_per_bar < 1:
            raise ValueError(f"beats_per_bar {request.beats_per_bar} must be >= 1")
        if request.beat_unit not in (2, 4, 8):
            raise ValueError(f"beat_unit {request.beat_unit} is not one of 2, 4, 8")
        for name in ("valence", "arousal", "bpm"):
            if not math.isfinite(getattr(request, name)):
                raise ValueError(f"{name} {getattr(request, name)!r} is not a finite number")
        scale = self._guidance(request)
        rows = 2 if scale != 1.0 else 1
        style = request.style or self.style
        style_token(style)  # an unknown style is a ValueError before any state changes
        stream_key = (request.seed, request.role, rows, style)
        continuing = (self._cache is not None and self._stream_key == stream_key
                      and self._next_bar_index == request.bar_index)
        if not continuing:
            self._cache = None
            self._history = self._context_history(request)
            self._written = {}
        self._stream_key = stream_key
        self._rows = rows
        self._next_bar_index = request.bar_index + 1
        rng = np.random.default_rng([request.seed & 0xFFFFFFFF, request.bar_index & 0xFFFFFFFF,
                                     ROLES.index(request.role), 0x6D6F64])
        self.last_tokens = []
        notes: list[tuple[float, float, int, int]] = []
        previous_pitch = self._last_context_pitch(request) if not continuing else None
        if not continuing:
            self._recent_tops = [previous_pitch] if previous_pitch is not None else []
        bars = model_bars(request)
        to_beats = request.beat_unit / 4.0
        plan = self._plan(request)
        repeat = None
        if plan is not None and len(bars) == 1 and request.ending is None and plan.repeats_bar is not None:
            written = self._written.get(plan.repeats_bar)
            if written is not None and written[0] == bars[0].positions:
                repeat = (written[1], plan.repeat_kind)
        avoid_rhythms = None
        if (plan is not None and plan.repeats_bar is None and self.fresh_rhythms and self.constrained
                and request.role == "melody" and len(bars) == 1 and request.ending is None):
            period_start = request.bar_index - request.bar_index % PHRASE_BARS
            avoid_rhythms = {_BarState.rhythm_of(earlier)
                             for index, (positions, earlier) in self._written.items()
                             if period_start <= index < request.bar_index and positions == bars[0].positions
                             and earlier}
        for index, bar in enumerate(bars):
            ending = request.ending if index == len(bars) - 1 else None
            bar_notes = yield from self._model_bar(request, bar, scale, rng, previous_pitch, ending, plan, repeat,
                                                   avoid_rhythms)
            for onset, duration, pitch, velocity in bar_notes:
                notes.append(((bar.offset_quarters + onset) * to_beats, duration * to_beats, pitch, velocity))
            previous_pitch = None
        return Part.from_notes(notes)

    # ------------------------------------------------------------------ conditioning

    def _guidance(self, request: BarRequest) -> float:
        scale = self.guidance_scale
        if request.conditioning is not None and request.conditioning.guidance_scale is not None:
            scale = request.conditioning.guidance_scale
        return float(min(max(scale, 0.0), MAX_GUIDANCE_SCALE))

    def _plan(self, request: BarRequest) -> BarPlan | None:
        """The bar's place in a real period (:mod:`models.contours`): asked from
        the mapping's notes-per-beat when it asks one, else from the arousal;
        None without contours or when the density is not asked."""
        contours = self.contours
        if contours is None:
            return None
        if request.conditioning is not None:
            notes_per_beat = min(max(request.conditioning.notes_per_beat, 0.25), 16.0)
            quantile = contours.quantile_of(request.role, notes_per_beat)
        elif self.texture_from_arousal:
            quantile = arousal_quantile(request.arousal)
        else:
            return None
        return contours.bar_plan(request.role, quantile, request.seed, request.bar_index)

    def _header(self, request: BarRequest, bar: ModelBar, unconditional: bool,
                plan: BarPlan | None = None) -> list[int]:
        arousal = min(1.0, max(-1.0, request.arousal))
        valence = min(1.0, max(-1.0, request.valence))
        a01 = (arousal + 1.0) / 2.0
        density: int | None = None
        level: int | None = None
        if request.conditioning is not None:  # the mapping's asks
            density = density_bin(min(max(request.conditioning.notes_per_beat, 0.25), 16.0))
            level = velocity_level(float(min(max(request.conditioning.velocity, 1), 127)))
        elif self.texture_from_arousal:
            low, high = AROUSAL_NOTES_PER_BEAT[request.role]
            density = density_bin(low + a01 * (high - low))
            level = velocity_level(AROUSAL_VELOCITY[0] + a01 * (AROUSAL_VELOCITY[1] - AROUSAL_VELOCITY[0]))
        if plan is not None:  # a plan exists only when the density is asked: the real period's bar replaces the ask
            density = plan.density_bin
        unknown = STYLE_HEADER_UNKNOWN[request.style or self.style]
        chords = (None, None) if self._open_harmony(request) else bar.chords
        tokens = bar_header(bar.meter, request.bar_index, generation_key(request),
                            None if unconditional else valence, None if unconditional else arousal,
                            None if "Tempo" in unknown else request.bpm, density,
                            None if "MeanVelocity" in unknown else level, chords)
        return [self.vocab.id(t) for t in tokens]

    def _downbeat_rule(self, request: BarRequest) -> bool:
        """Whether this request's melody keeps a chord tone on each bar's downbeat (:data:`MELODY_DOWNBEAT_CHORD_TONES`)."""
        return self.melody_downbeat_chord_tones and request.role == "melody"

    def _open_harmony(self, request: BarRequest) -> bool:
        """Whether this request's melody is written over ``Chord_none`` with its chord kept by the strong-beat rule."""
        return self.open_melody_harmony and request.role == "melody"

    def _context_history(self, request: BarRequest) -> list[list[int]]:
        """Token bars of ``request.context`` (as the previous bars), headed like
        the request's first model bar; notes past that bar are dropped."""
        bar = model_bars(request)[0]
        to_quarters = 4.0 / request.beat_unit
        history = []
        for i, part in enumerate(request.context):
            header = self._header(request, bar, unconditional=False)
            bar_index = request.bar_index - len(request.context) + i
            header[self._slot_ids["Phrase"]] = self.vocab.id(f"Phrase_{bar_index % PHRASE_BARS}")
            if header[self._slot_ids["Density"]] != self.vocab.id("Density_unknown"):  # the bar's own, as in training
                quarters = float(request.beats_per_bar * to_quarters)
                header[self._slot_ids["Density"]] = self.vocab.id(f"Density_{density_bin(len(part) / quarters)}")
            history.append(header + encode_bar(self.vocab, part.start_beats * to_quarters,
                                               part.duration_beats * to_quarters, part.pitch, part.velocity,
                                               bar.positions))
        return history

    @staticmethod
    def _last_context_pitch(request: BarRequest) -> int | None:
        for part in reversed(request.context):
            if len(part):
                last = np.flatnonzero(part.start_beats == part.start_beats.max())
                return int(part.pitch[last].max())
        return None

    # ------------------------------------------------------------------ decoding

    def _start(self, request: BarRequest, headers: list[list[int]]) -> np.ndarray:
        """Feed the new bar's headers (one row per guidance branch), continuing
        the context when :data:`ROOM_FOR_A_BAR` tokens are left after them,
        else re-opening it (:meth:`_open`); returns the logits (rows, V)."""
        if self._cache is not None and self._cache.room() >= len(headers[0]) + ROOM_FOR_A_BAR:
            return self.decoder.forward(np.array(headers, np.int64), self._cache)
        return self._open(request, headers, [])

    def _open(self, request: BarRequest, headers: list[list[int]], body: list[int]) -> np.ndarray:
        """A fresh context: BOS, role, the latest earlier bars that fit in half
        the context, the new bar's header and its tokens so far (``body``).
        Keeping only half leaves room for several bars before the next
        re-opening, whose prefill is the costly step. Returns the logits."""
        v = self.vocab
        start = [v.id("BOS_None"), v.id(f"Role_{request.role}"), v.id(style_token(request.style or self.style))]
        budget = self.decoder.block_size // 2 - len(start) - len(headers[0]) - len(body)
        kept: list[list[int]] = []
        for bar in reversed(self._history):
            if len(bar) > budget:
                break
            kept.insert(0, bar)
            budget -= len(bar)
        self._history = kept
        self._cache = self._new_cache(len(headers))
        rows = []
        for r, header in enumerate(headers):
            earlier = [t for bar in kept for t in (self._unconditional_header(bar) if r else bar)]
            rows.append(start + earlier + header + body)
        return self.decoder.forward(np.array(rows, np.int64), self._cache)

    def _unconditional_header(self, bar: list[int]) -> list[int]:
        out = list(bar)
        out[self._slot_ids["Valence"]] = self.vocab.id("Valence_unknown")
        out[self._slot_ids["Arousal"]] = self.vocab.id("Arousal_unknown")
        return out

    def _strong_beat_pitches(self, request: BarRequest, chords: tuple[Chord, Chord],
                             halves: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """Pitch masks (V,) bool for a strong beat of the bar's first and second
        half: the half's mask narrowed to its chord's tones, or None when no
        rule asks for chord tones (a melody over an open harmony, or the
        melody's downbeat rule)."""
        if not ((self._open_harmony(request) or self._downbeat_rule(request)) and self.constrained):
            return None
        v = self.vocab
        return tuple(half & np.isin(v.pitch % 12, chord.pitch_classes()) for half, chord in zip(halves, chords))

    def _allowed_pitches(self, request: BarRequest, chords: tuple[Chord, Chord]) -> tuple[np.ndarray, np.ndarray]:
        """Pitch masks (V,) bool for the bar's first and second half."""
        v = self.vocab
        low, high = ROLE_REGISTER_PITCH[request.role]
        if request.conditioning is not None:
            shift = int(round(request.conditioning.register_semitones))
            low, high = max(0, low + shift), min(127, high + shift)
        if not self.constrained:
            return self._is_pitch, self._is_pitch
        register = self._is_pitch & (v.pitch >= low) & (v.pitch <= high)
        scale = generation_key(request).scale_pitch_classes()
        return tuple(register & np.isin(v.pitch % 12, scale + chord.pitch_classes()) for chord in chords)

    def _model_bar(self, request: BarRequest, bar: ModelBar, scale: float, rng: np.random.Generator,
                   previous_pitch: int | None, ending, plan: BarPlan | None = None,
                   repeat: tuple[list, int] | None = None,
                   avoid_rhythms: set[tuple[int, ...]] | None = None) -> list[tuple[float, float, int, int]]:
        """Write one model bar: feed its header, then sample note tokens under
        the hard rules (:meth:`_allowed`) until the model writes ``Bar``.
        A generator: yields each decoding step it needs, as :meth:`bar_steps`.
        ``plan``: the bar's place in a real period (its ``Density`` token);
        ``repeat``: ``(notes of the earlier bar, repeat kind)`` when the plan
        has this bar repeat one this part wrote (:class:`_BarState`);
        ``avoid_rhythms``: onset rhythms (sorted positions) the bar may not
        end on (:data:`PHRASE_FORM_FRESH_RHYTHMS`).
        Returns notes as (onset, duration in quarter notes, pitch, velocity)."""
        v = self.vocab
        halves = self._allowed_pitches(request, bar.chords)
        open_harmony = self._open_harmony(request)
        state = _BarState(bar, ROLE_MAX_NOTES_PER_POSITION[request.role], previous_pitch, ending, *halves,
                          strong=self._strong_beat_pitches(request, bar.chords, halves),
                          strong_at=strong_positions(bar.meter, bar.positions) if open_harmony else (0,),
                          passing_tones_short=open_harmony, repeat=repeat,
                          max_repeated=ROLE_MAX_REPEATED_NOTES.get(request.role) if self.constrained else None,
                          earlier_tops=self._recent_tops, avoid_rhythms=avoid_rhythms,
                          downbeat=(plan.downbeat if plan is not None and self.downbeat_onsets and self.constrained
                                    else None))
        max_tokens = bar.positions * (1 + 3 * state.max_per_position) + 1
        header = self._header(request, bar, unconditional=False, plan=plan)
        headers = [header] + ([self._header(request, bar, unconditional=True, plan=plan)] if self._rows == 2 else [])
        logits = self._start(request, headers)
        body: list[int] = []
        repeat_weight = self.repeat_weight.get(request.role, 1.0) if self.constrained else 1.0
        relative = self.decoder.relative
        if relative is not None:  # what the relative-pitch head scores from: the last pitch fed, the bar's key
            key = int(relative.key_of[header[self._slot_ids["Key"]]])
            key = key if key >= 0 else None
            context_pitch = next((int(v.pitch[t]) for bar_ids in reversed(self._history) for t in reversed(bar_ids)
                                  if v.pitch[t] >= 0), None)
        while True:
            if relative is not None:
                pitch_next = state.expect not in ("Velocity", "Duration")
                last = state.last_pitch if state.last_pitch is not None else context_pitch
                logits = relative.add(logits, last if pitch_next else None, key if pitch_next else None)
            allowed = self._allowed(state)
            discount = None
            if repeat_weight < 1.0 and len(allowed) > 1:
                previous_top = state.previous_top()
                if previous_top in self._pitch_ids:
                    discount = (self._pitch_ids[previous_top], repeat_weight)
            token = self._sample(logits, scale, allowed, rng, self.temperature, self.top_p, discount)
            if token == self._bar:
                break
            body.append(token)
            state.take(v, token)
            if len(body) > max_tokens:
                break  # a guard: the rules above keep a bar shorter than this
            if self._cache.room() < 1:  # a long bar filled the context: re-open it mid-bar
                logits = self._open(request, headers, body)
            else:
                logits = yield np.full(self._rows, token, np.int64), self._cache  # stepped by the caller
        self._history.append(header + body)
        del self._history[:-64]  # more bars than any context holds
        self._written[request.bar_index] = (bar.positions, state.written)
        self._recent_tops = (self._recent_tops + [t for t in state.onset_tops if t >= 0])[-8:]
        for old in [i for i in self._written if i < request.bar_index - PHRASE_BARS]:
            del self._written[old]
        self.last_tokens += [v.tokens[i] for i in header + body]
        return state.notes

    def _allowed(self, state: "_BarState") -> np.ndarray:
        """Token ids the grammar and the hard rules allow next (int64)."""
        if state.expect == "Velocity":
            return self._velocity_ids
        if state.expect == "Duration":
            allowed = self._durations_ok
            if state.strong is not None and state.passing_tones_short and not state.last_is_chord_tone():
                allowed = self._short_durations  # a melody's tone outside the chord passes: shorter than a beat
            repeated = state.repeated_duration()
            if repeated is not None and repeated in allowed:
                return np.array([repeated], np.int64)
            return allowed
        pitches = self._pitch_candidates(state) if state.position >= 0 else np.zeros(0, np.int64)
        if state.expect == "Pitch":  # right after a Position
            if not len(pitches):
                return np.flatnonzero(self._is_pitch)
            target = state.repeated_pitch()
            if target is not None:  # the motif again: the allowed pitch nearest the earlier bar's interval
                return pitches[[int(np.argmin(np.abs(self.vocab.pitch[pitches] - target)))]]
            return pitches
        # After a note: another pitch at this position, a later position, or the end of the bar.
        later_ok = (self._position_values > state.position) & (self._position_values < state.bar.positions)
        if state.repeat_positions is not None:  # the earlier bar's rhythm: only its next onset, or the end
            later_ok &= np.isin(self._position_values, state.next_repeated_position())
        elif state.downbeat is not None and state.position < 0:  # the real bar starts on its downbeat, or not
            if state.awaits_downbeat():
                later_ok &= self._position_values == 0
            elif (later_ok & (self._position_values != 0)).any():
                later_ok &= self._position_values != 0
        if state.avoid_rhythms:  # no onset from which every way to the bar's end is an earlier bar's rhythm
            trapped = np.array([not state.rhythm_can_differ(int(p)) for p in self._position_values], bool)
            if (later_ok & ~trapped).any():
                later_ok &= ~trapped
        later = self._position_ids[later_ok]
        parts = [later]
        if len(state.pitches_here) < state.max_per_position:
            parts.append(pitches)
        if ((state.ending is None or self._ends_well(state.last_pitch, state.ending) or not any(len(p) for p in parts))
                and not (len(later) and (state.repeat_positions is not None or state.awaits_downbeat()))
                and not (len(later) and state.avoid_rhythms and state.onset_rhythm() in state.avoid_rhythms)):
            parts.append(np.array([self._bar], np.int64))  # an ending bar closes only on its ending
        return np.concatenate(parts)

    @staticmethod
    def _ends_well(pitch: int | None, ending) -> bool:
        if pitch is None or pitch % 12 not in ending.pitch_classes:
            return False
        return ending.next_pitch is None or abs(pitch - ending.next_pitch) <= 12

    def _pitch_candidates(self, state: "_BarState") -> np.ndarray:
        """Allowed pitch ids at the current position: the half bar's mask,
        above the pitches already there (the data writes a chord bottom up),
        within an octave of the previous bar's last note at a seam's first
        onset, and at the last position of a bar with an ending, only pitches
        that end it well (each narrowing only when something is left)."""
        v = self.vocab
        second = state.position >= state.bar.positions // 2
        ok = (state.second_half if second else state.first_half).copy()
        if state.strong is not None and state.position in state.strong_at:
            chord_tones = state.strong[second]
            if (ok & chord_tones).any():
                ok &= chord_tones
        if state.pitches_here:
            ok &= v.pitch > max(state.pitches_here)
        else:
            worn = state.worn_pitch()
            if worn is not None and (ok & (v.pitch != worn)).any():
                ok &= v.pitch != worn  # the pitch already sounded as often in a row as the role allows
        if state.seam_pitch is not None and state.position == state.first_position:
            near = np.abs(v.pitch - state.seam_pitch) <= 12
            if (ok & near).any():
                ok &= near
        ending = state.ending
        if ending is not None and state.position == state.bar.positions - 1:
            good = np.isin(v.pitch % 12, ending.pitch_classes) & self._is_pitch
            if ending.next_pitch is not None:
                good &= np.abs(v.pitch - ending.next_pitch) <= 12
            if (ok & good).any():
                ok &= good
        return np.flatnonzero(ok)

    @staticmethod
    def _sample(logits: np.ndarray, scale: float, allowed: np.ndarray, rng: np.random.Generator,
                temperature: float, top_p: float, discount: tuple[int, float] | None = None) -> int:
        """Draw a token among ``allowed`` ids from the guided logits (rows: the
        conditional, then the unconditional one), with temperature and nucleus
        sampling, by inverse-CDF sampling with one uniform draw. ``discount``:
        (token id, factor): that token's probability times the factor, before
        the nucleus (:data:`ROLE_REPEAT_WEIGHT`). One compiled call,
        :func:`models.fast_step.draw`."""
        discount_id, factor = discount if discount is not None else (-1, 1.0)
        return int(fast_step.draw(np.ascontiguousarray(logits, np.float32), logits.shape[0],
                                  np.ascontiguousarray(allowed, np.int64), float(scale), float(temperature),
                                  float(top_p), int(discount_id), float(factor), rng.random()))


class _BarState:
    """Where the decoding of one model bar stands (grammar state, position,
    notes so far) and the rules that hold for it."""

    def __init__(self, bar: ModelBar, max_per_position: int, seam_pitch: int | None, ending,
                 first_half: np.ndarray, second_half: np.ndarray,
                 strong: tuple[np.ndarray, np.ndarray] | None = None,
                 strong_at: tuple[int, ...] = (0,), passing_tones_short: bool = False,
                 repeat: tuple[list, int] | None = None, max_repeated: int | None = None,
                 earlier_tops: list[int] | None = None,
                 avoid_rhythms: set[tuple[int, ...]] | None = None, downbeat: bool | None = None) -> None:
        self.bar = bar
        # The real bar's downbeat (models.contours.BarPlan.downbeat): True, the first onset is on the
        # downbeat; False, after it; None, no rule. A repeated bar's onsets come from the earlier bar instead.
        self.downbeat = downbeat
        self.avoid_rhythms = avoid_rhythms  # onset rhythms (sorted positions) the bar may not end on
        self.strong_at = strong_at  # positions whose notes are chord tones (when ``strong`` masks are given)
        self.passing_tones_short = passing_tones_short  # a tone outside the chord lasts under a beat
        self.max_repeated = max_repeated
        self._earlier_tops = list(earlier_tops or [])
        self.strong = strong
        self.chord_pitch_classes = tuple(set(chord.pitch_classes()) for chord in bar.chords)
        self.max_per_position = max_per_position
        self.seam_pitch = seam_pitch
        self.ending = ending
        self.first_half, self.second_half = first_half, second_half
        self.expect = "Position"  # after a note (or at the bar's start): Position, Pitch or Bar
        self.position = -1
        self.first_position: int | None = None
        self.pitches_here: list[int] = []
        self.last_pitch: int | None = None
        self.velocity = 0
        self.notes: list[tuple[float, float, int, int]] = []
        self.written: list[tuple[int, int, int]] = []  # (position, pitch, Duration token id) per note
        self.onset_tops: list[int] = []  # the highest pitch written at each onset so far
        # An earlier bar this one repeats (models.contours.BarPlan): its onsets,
        # note lengths and, as a motif or exactly, its top line.
        self.repeat_kind = REPEAT_NONE
        self.repeat_positions: list[int] | None = None
        self._repeat_notes: dict[int, list[tuple[int, int]]] = {}
        self._repeat_tops: list[int] = []
        if repeat is not None and repeat[0] and repeat[1] != REPEAT_NONE:
            notes, self.repeat_kind = repeat
            for position, pitch, duration in sorted(notes):
                self._repeat_notes.setdefault(position, []).append((pitch, duration))
            self.repeat_positions = sorted(self._repeat_notes)
            self._repeat_tops = [self._repeat_notes[p][-1][0] for p in self.repeat_positions]

    def awaits_downbeat(self) -> bool:
        """Whether the bar has no onset yet and its real bar starts on the downbeat (its first onset must)."""
        return self.downbeat is True and self.position < 0

    def worn_pitch(self) -> int | None:
        """The pitch the top line's last ``max_repeated`` notes all sounded
        (across the bar line), which the next onset may not repeat; else None."""
        if self.max_repeated is None:
            return None
        last = self._tops_before()[-self.max_repeated:]
        if len(last) == self.max_repeated and len(set(last)) == 1:
            return last[0]
        return None

    def previous_top(self) -> int | None:
        """The top pitch of the onset before the current one (across the bar
        line), or None at a part's first onset."""
        tops = self._tops_before()
        return tops[-1] if tops else None

    def _tops_before(self) -> list[int]:
        """The top pitches of the part's onsets before the current one, oldest first (the
        last bars' and this bar's so far)."""
        return self._earlier_tops + [t for t in self.onset_tops[:-1] if t >= 0]

    @staticmethod
    def rhythm_of(written: list[tuple[int, int, int]]) -> tuple[int, ...]:
        """The onset positions (sixteenths), sorted, each once, of a bar's
        ``written`` notes ((position, pitch, Duration token id) each)."""
        return tuple(sorted({position for position, _, _ in written}))

    def onset_rhythm(self) -> tuple[int, ...]:
        """The bar's onset positions so far (:meth:`rhythm_of` its notes)."""
        return self.rhythm_of(self.written)

    def rhythm_can_differ(self, position: int, horizon: int = 3) -> bool:
        """Whether, after an onset at ``position``, the bar can still end on a
        rhythm outside :attr:`avoid_rhythms` (some set of the later positions
        added, or none). Checked exactly when at most ``horizon`` positions
        are left (at most 2**horizon endings); with more left, True (more
        endings than a period has earlier bars)."""
        if not self.avoid_rhythms:
            return True
        later = list(range(position + 1, self.bar.positions))
        if len(later) > horizon:
            return True
        prefix = set(self.onset_rhythm()) | {position}
        for mask in range(1 << len(later)):
            ending = {p for i, p in enumerate(later) if mask >> i & 1}
            if tuple(sorted(prefix | ending)) not in self.avoid_rhythms:
                return True
        return False

    def next_repeated_position(self) -> list[int]:
        """The repeated bar's next onset after the current position (a list of 0 or 1)."""
        return [p for p in self.repeat_positions if p > self.position][:1]

    def repeated_duration(self) -> int | None:
        """The ``Duration`` token id the repeated bar gave this note, or None."""
        here = self._repeat_notes.get(self.position)
        if here is None or len(self.pitches_here) > len(here):
            return None
        return here[len(self.pitches_here) - 1][1]

    def repeated_pitch(self) -> int | None:
        """The pitch a repeated motif asks at this onset's first note: the
        earlier bar's first pitch here (an exact repeat), or the last onset's
        top pitch moved by the earlier bar's interval (a motif); None when free."""
        if self.repeat_kind < REPEAT_MOTIF or self.pitches_here or self.position not in self._repeat_notes:
            return None
        onset = self.repeat_positions.index(self.position)
        if len(self._repeat_notes[self.position]) != 1:
            return None  # a chord in the earlier bar: its notes are the model's to choose
        if self.repeat_kind == REPEAT_EXACT:
            return self._repeat_notes[self.position][0][0]
        if onset == 0 or len(self.onset_tops) < 2:
            return None
        return self.onset_tops[-2] + self._repeat_tops[onset] - self._repeat_tops[onset - 1]

    def last_is_chord_tone(self) -> bool:
        """Whether the last pitch is a tone of the chord of the half bar it sounds in."""
        second = self.position >= self.bar.positions // 2
        return self.last_pitch is not None and self.last_pitch % 12 in self.chord_pitch_classes[second]

    def take(self, vocab: Vocabulary, token: int) -> None:
        """Advance past ``token`` (not ``Bar``)."""
        kind = vocab.kind[token]
        if kind == "Position":
            self.position = int(vocab.position[token])
            if self.first_position is None:
                self.first_position = self.position
            self.pitches_here = []
            self.onset_tops.append(-1)
            self.expect = "Pitch"
        elif kind == "Pitch":
            self.last_pitch = int(vocab.pitch[token])
            self.pitches_here.append(self.last_pitch)
            self.onset_tops[-1] = max(self.onset_tops[-1], self.last_pitch)
            self.expect = "Velocity"
        elif kind == "Velocity":
            self.velocity = int(vocab.velocity[token])
            self.expect = "Duration"
        else:
            self.notes.append((self.position / POSITIONS_PER_BEAT, float(vocab.duration_beats[token]),
                               self.last_pitch, self.velocity))
            self.written.append((self.position, self.last_pitch, int(token)))
            self.expect = "Position"
