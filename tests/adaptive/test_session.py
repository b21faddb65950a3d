"""The engine core, judged from the audio it renders: where cue changes land,
that gain ramps and crossfades do not click, that layers follow intensity,
that stingers and bridges land on the grid, and that rendering is
deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.mapping import parse_mapping_text
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session
from tests.helpers import SAMPLE_RATE_HZ, fade_silent_frames, first_difference, one_stem_bank, render_frames

CALM = SceneUpdate(emotion="calm", intensity=0.3)  # nearest cue: "low"
AFRAID = SceneUpdate(emotion="afraid")  # nearest cue: "high"


def make_session(bank, soundfont, **kwargs) -> Session:
    return Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, **kwargs)


def tone_amplitude(audio: np.ndarray, frequency_hz: float) -> float:
    """Amplitude of a sine at ``frequency_hz`` in the left channel (single-bin DFT,
    Hann window); exact for whole periods of a pure tone."""
    x = audio[:, 0].astype(np.float64)
    n = len(x)
    window = np.hanning(n)
    phase = np.exp(-2j * np.pi * frequency_hz * np.arange(n) / SAMPLE_RATE_HZ)
    return float(2 * abs(np.sum(x * window * phase)) / window.sum())


def onset_frames(audio: np.ndarray, window: int = 480, threshold: float = 0.5,
                 refractory_frames: int = 9600) -> list[int]:
    """Frames where the envelope (mean of |x| over ``window`` frames, 10 ms)
    rises through ``threshold`` of its maximum, at most one per
    ``refractory_frames`` (0.2 s): the note onsets of a part whose notes decay
    in between."""
    rectified = np.concatenate([[0.0], np.cumsum(np.abs(audio[:, 0].astype(np.float64)))])
    envelope = (rectified[window:] - rectified[:-window]) / window
    above = envelope > threshold * envelope.max()
    onsets: list[int] = []
    for frame in np.flatnonzero(above[1:] & ~above[:-1]) + 1:
        if not onsets or frame - onsets[-1] >= refractory_frames:
            onsets.append(int(frame))
    return onsets


def max_second_difference(audio: np.ndarray) -> float:
    return float(np.abs(np.diff(audio.astype(np.float64), n=2, axis=0)).max())


@pytest.mark.parametrize(
    ("exit", "request_seconds", "boundary_seconds"),
    [
        ("immediate", 1.3, 1.3),
        ("next_beat", 1.3, 1.5),  # 120 bpm: beats every 0.5 s
        ("next_bar", 1.3, 2.0),  # 4/4: bars every 2 s
        ("next_bar", 2.0, 2.0),  # a request on the boundary takes it
        ("next_phrase", 1.3, 8.0),  # phrase = 4 bars
        ("loop_end", 1.3, 4.0),  # loop = 2 bars
    ],
)
def test_cue_change_lands_on_its_quantized_frame(tone_bank, soundfont, exit, request_seconds, boundary_seconds):
    bank = tone_bank(exit=exit, fade_beats=1.0)
    request_frame = round(request_seconds * SAMPLE_RATE_HZ)
    boundary_frame = round(boundary_seconds * SAMPLE_RATE_HZ)
    total = boundary_frame + SAMPLE_RATE_HZ * 2

    changed = make_session(bank, soundfont)
    changed.submit(0, CALM)
    changed.submit(request_frame, AFRAID)
    with_change = render_frames(changed, total)
    unchanged = make_session(bank, soundfont)
    unchanged.submit(0, CALM)
    without_change = render_frames(unchanged, total)

    # The crossfade starts on the boundary frame with the old gains (1 and 0), so
    # everything up to that frame is identical to the unchanged render; the
    # first float32 gain step below 1 comes a few frames later.
    difference = first_difference(with_change, without_change)
    assert difference is not None and boundary_frame < difference <= boundary_frame + fade_silent_frames(24_000)
    cue_changes = [e for e in changed.drain_events() if e.kind == "cue_change" and e.data["cue"] == "high"]
    assert [e.frame for e in cue_changes] == [boundary_frame]
    # After the one-beat crossfade (0.5 s at 120 bpm) only the new cue's 660 Hz tone sounds.
    after = with_change[boundary_frame + SAMPLE_RATE_HZ : boundary_frame + 2 * SAMPLE_RATE_HZ]
    assert tone_amplitude(after, 660.0) > 0.15
    assert tone_amplitude(after, 440.0) < 1e-3


def test_click_detector_sees_a_hard_cut():
    """The click measure used below does catch a gain step (so its passing means something)."""
    t = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    cut = tone.copy()
    cut[20_000:] = 0.0
    bound = 0.3 * (2 * np.pi * 440 / SAMPLE_RATE_HZ) ** 2
    assert max_second_difference(np.stack([tone, tone], 1)) <= bound * 1.01
    assert max_second_difference(np.stack([cut, cut], 1)) > bound * 5


@pytest.mark.parametrize("fade_beats", [0.0, 0.5, 2.0])
def test_crossfades_and_gain_ramps_do_not_click(tone_bank, soundfont, fade_beats):
    """Intensity changes, cue changes both ways and a cut (0-beat fade, 5 ms
    declick): the rendered audio's second difference never exceeds what the
    steady tones themselves produce, so there is no step between two samples."""
    bank = tone_bank(exit="next_beat", fade_beats=fade_beats)
    session = make_session(bank, soundfont)
    session.submit(0, CALM)
    session.submit(round(0.7 * SAMPLE_RATE_HZ), SceneUpdate(intensity=0.9))  # 880 Hz layer fades in
    session.submit(round(1.9 * SAMPLE_RATE_HZ), SceneUpdate(intensity=0.1))  # ... and out again
    session.submit(round(2.2 * SAMPLE_RATE_HZ), AFRAID)
    session.submit(round(4.1 * SAMPLE_RATE_HZ), SceneUpdate(emotion="calm", intensity=0.8))
    audio = render_frames(session, 7 * SAMPLE_RATE_HZ, block_frames=1000)
    kinds = [e.kind for e in session.drain_events()]
    assert kinds.count("transition_start") == 2

    master = 1.0  # the session's default master gain is 0 dB
    omega = lambda f: (2 * np.pi * f / SAMPLE_RATE_HZ) ** 2  # noqa: E731
    steady_bound = master * (0.3 * omega(440) + 0.2 * omega(880) + 0.3 * omega(660))
    assert max_second_difference(audio) <= steady_bound * 1.05


def test_layer_fades_in_from_the_frame_intensity_rises(tone_bank, soundfont):
    bank = tone_bank()
    rise_frame = round(1.1 * SAMPLE_RATE_HZ)
    total = 4 * SAMPLE_RATE_HZ
    rising = make_session(bank, soundfont)
    rising.submit(0, CALM)
    rising.submit(rise_frame, SceneUpdate(intensity=1.0))
    audio = render_frames(rising, total)
    flat = make_session(bank, soundfont)
    flat.submit(0, CALM)
    reference = render_frames(flat, total)

    assert first_difference(audio, reference) == rise_frame + 1  # the ramp's first sample is still 0
    master = 1.0  # the session's default master gain is 0 dB
    fade_frames = SAMPLE_RATE_HZ  # 2 beats at 120 bpm
    before = audio[rise_frame - 24_000 : rise_frame]
    middle = audio[rise_frame + fade_frames // 2 - 2400 : rise_frame + fade_frames // 2 + 2400]
    after = audio[rise_frame + fade_frames : rise_frame + fade_frames + 24_000]
    assert tone_amplitude(before, 880.0) < 1e-4
    # Equal-power law: half-way through, the amplitude is sin(pi/4) of the target.
    assert tone_amplitude(middle, 880.0) == pytest.approx(0.2 * master * np.sin(np.pi / 4), rel=0.03)
    assert tone_amplitude(after, 880.0) == pytest.approx(0.2 * master, rel=0.01)


def test_render_is_identical_whatever_the_block_size(tone_bank, soundfont):
    bank = tone_bank(exit="next_beat", fade_beats=1.0)

    def run(block_frames: int) -> np.ndarray:
        session = make_session(bank, soundfont, seed=3)
        session.submit(0, SceneUpdate(cue="keys", intensity=0.8))
        session.submit(30_000, StingerTrigger("hit"))
        session.submit(70_000, SceneUpdate(cue="", emotion="afraid"))
        session.submit(150_000, SceneUpdate(emotion="joyful"))
        return render_frames(session, 5 * SAMPLE_RATE_HZ, block_frames=block_frames)

    reference = run(4096)
    assert np.abs(reference).max() > 0.01
    for block_frames in (64, 1000, 4095):
        assert np.array_equal(run(block_frames), reference)


def test_stinger_lands_on_the_next_beat(tone_bank, soundfont):
    bank = tone_bank(stinger_quantize="next_beat")
    request_frame = round(1.3 * SAMPLE_RATE_HZ)
    boundary_frame = round(1.5 * SAMPLE_RATE_HZ)
    total = 3 * SAMPLE_RATE_HZ
    with_stinger = make_session(bank, soundfont)
    with_stinger.submit(0, CALM)
    with_stinger.submit(request_frame, StingerTrigger("hit"))
    audio = render_frames(with_stinger, total)
    plain = make_session(bank, soundfont)
    plain.submit(0, CALM)
    reference = render_frames(plain, total)

    onset = first_difference(audio, reference)
    # A MIDI stinger sounds from FluidSynth's next 64-frame block at the latest.
    assert onset is not None and boundary_frame <= onset <= boundary_frame + 64 + 2
    assert [e.frame for e in with_stinger.drain_events() if e.kind == "stinger"] == [boundary_frame]


def test_segment_bridge_plays_between_the_cues(tone_bank, soundfont):
    extra = """
[[transitions]]
from = "low"
to = "high"
exit = "next_bar"
fade_beats = 1
bridge = { kind = "segment", segment = "lead_in" }
"""
    bank = tone_bank(extra=extra)
    session = make_session(bank, soundfont)
    session.submit(0, CALM)
    session.submit(round(0.5 * SAMPLE_RATE_HZ), AFRAID)
    audio = render_frames(session, 6 * SAMPLE_RATE_HZ)
    events = session.drain_events()
    changes = [(e.frame, e.data["cue"]) for e in events if e.kind == "cue_change"]
    bar = 2 * SAMPLE_RATE_HZ  # one 4/4 bar at 120 bpm
    assert changes == [(0, "low"), (bar, "lead_in"), (2 * bar, "high")]
    during = audio[bar + 24_000 : 2 * bar]
    after = audio[2 * bar + 24_000 : 2 * bar + 72_000]
    assert tone_amplitude(during, 550.0) > 0.15 and tone_amplitude(during, 660.0) < 1e-3
    assert tone_amplitude(after, 660.0) > 0.15
    bar_events = [e for e in events if e.kind == "bar" and bar <= e.frame < 2 * bar]
    assert [e.data["cue"] for e in bar_events] == ["lead_in"]


def test_hysteresis_holds_the_cue_under_noisy_input(tone_bank, soundfont):
    """Emotion sent at 90 Hz, hovering with noise around the midpoint between two
    cues: the mapping's hysteresis keeps one cue; without it the cue thrashes."""
    rng = np.random.default_rng(0)

    def transitions(hysteresis: float) -> int:
        bank = tone_bank(exit="immediate")
        mapping = parse_mapping_text(f"[smoothing]\nhysteresis = {hysteresis}\n", bank)
        session = make_session(bank, soundfont, mapping=mapping)
        session.submit(0, SceneUpdate(valence=0.01, arousal=-0.01, intensity=0.5))
        step = SAMPLE_RATE_HZ // 90
        for i in range(1, 90 * 4):
            noise = rng.uniform(-0.05, 0.05, 2)  # moves the distance gap by < 0.15
            session.submit(i * step, SceneUpdate(valence=float(np.clip(noise[0], -1, 1)),
                                                 arousal=float(np.clip(noise[1], -1, 1))))
        render_frames(session, 4 * SAMPLE_RATE_HZ)
        return sum(1 for e in session.drain_events() if e.kind == "transition_start")

    assert transitions(0.15) == 0
    assert transitions(0.0) > 10


def test_rendered_tempo_matches_the_cue(tone_bank, soundfont):
    """The 'keys' cue plays a piano note on every beat at 100 bpm: the onsets
    found in the audio are 0.6 s apart."""
    session = make_session(tone_bank(), soundfont)
    session.submit(0, SceneUpdate(cue="keys"))
    audio = render_frames(session, 8 * SAMPLE_RATE_HZ)
    onsets_seconds = np.array(onset_frames(audio)) / SAMPLE_RATE_HZ
    intervals = np.diff(onsets_seconds)
    assert len(intervals) >= 10
    assert 60.0 / np.median(intervals) == pytest.approx(100.0, rel=0.01)


def test_loud_mix_never_clips(tone_bank, soundfont, tmp_path):
    """Cue gain +12 dB on loud layers: the limiter keeps every sample inside the ceiling."""
    from adaptive.cue import load_bank

    bank = tone_bank()
    text = (bank.folder / "bank.toml").read_text().replace('name = "low"\n', 'name = "low"\ngain_db = 12.0\n', 1)
    (bank.folder / "loud.toml").write_text(text)
    loud = load_bank(bank.folder / "loud.toml")
    session = make_session(loud, soundfont, master_gain_db=6.0)
    session.submit(0, SceneUpdate(emotion="calm", intensity=1.0))
    audio = render_frames(session, 2 * SAMPLE_RATE_HZ)
    ceiling = 10 ** (-0.3 / 20)
    assert np.abs(audio).max() <= ceiling
    assert np.abs(audio).max() > 0.8  # loud, limited, not silenced
    assert session.counters["limited_blocks"] > 0


def test_stem_at_another_rate_is_resampled(tmp_path, soundfont):
    from tests.helpers import write_sine

    write_sine(tmp_path / "tone44.wav", 441.0, 2.0, sample_rate_hz=44_100)
    session = make_session(one_stem_bank(tmp_path, "tone44.wav"), soundfont)
    session.submit(0, SceneUpdate(intensity=0.5))
    audio = render_frames(session, SAMPLE_RATE_HZ)
    spectrum = np.abs(np.fft.rfft(audio[:, 0].astype(np.float64) * np.hanning(len(audio)), n=8 * len(audio)))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE_HZ / (8 * len(audio))
    assert peak_hz == pytest.approx(441.0, abs=0.5)


def test_stem_tail_overlaps_the_next_loop(tmp_path, soundfont):
    """A stem longer than its loop rings over the next loop's start."""
    import soundfile

    loop_frames = 2 * SAMPLE_RATE_HZ  # one bar at 120 bpm
    stem = np.zeros((loop_frames + 12_000, 2), np.float32)
    stem[:, 0] = np.linspace(0.0, 0.3, len(stem), dtype=np.float32)  # below the limiter's knee
    soundfile.write(str(tmp_path / "ramp.wav"), stem, SAMPLE_RATE_HZ, subtype="FLOAT")
    session = make_session(one_stem_bank(tmp_path, "ramp.wav"), soundfont, master_gain_db=0.0)
    session.submit(0, SceneUpdate(intensity=0.5))
    audio = render_frames(session, loop_frames + 20_000)
    expected = stem[loop_frames : loop_frames + 12_000, 0] + stem[:12_000, 0]
    assert np.allclose(audio[loop_frames : loop_frames + 12_000, 0], expected, atol=1e-6)
    assert np.allclose(audio[loop_frames + 12_000 : loop_frames + 20_000, 0], stem[12_000:20_000, 0], atol=1e-6)


GENERATED_BANK = """
[[cues]]
name = "gen"
bpm = 120
key = "D major"
chords = ["D", "G", "A", "Bm"]
loop_bars = 4
  [[cues.layers]]
  name = "arpeggio"
  program = 46
  source = { kind = "generated", generator = "rule_based", role = "arpeggio" }

[[stingers]]
name = "rise"
key = "C major"
source = { kind = "midi", file = "stinger.mid", track = "rise" }
quantize = "immediate"
"""


def test_generated_layer_follows_the_chords_and_reconditions_at_bar_lines(tmp_path, soundfont):
    from adaptive.cue import load_bank
    from tests.helpers import write_midi

    write_midi(tmp_path / "stinger.mid", {"rise": [(0.0, 0.5, 60, 100), (0.5, 0.5, 64, 100), (1.0, 1.0, 67, 100)]})
    (tmp_path / "bank.toml").write_text(GENERATED_BANK)
    bank = load_bank(tmp_path / "bank.toml")
    session = make_session(bank, soundfont)
    bar_frames = 2 * SAMPLE_RATE_HZ
    session.submit(0, SceneUpdate(valence=0.5, arousal=-1.0, intensity=1.0))
    # Bars are asked for one bar ahead, with the emotion current then. The
    # emotion changes mid-bar 1: bar 2, asked for at bar 1's downbeat, stays
    # calm; bar 3, asked for at bar 2's downbeat, follows.
    session.submit(round(1.5 * bar_frames), SceneUpdate(valence=0.5, arousal=1.0))
    render_frames(session, 4 * bar_frames)
    onsets = [e for e in session.midi_events if e.kind == 1]
    per_bar = [[e for e in onsets if bar * bar_frames <= e.frame < (bar + 1) * bar_frames] for bar in range(4)]
    assert [len(notes) for notes in per_bar] == [4, 4, 4, 16]  # 1 note per beat when calm, 4 when excited
    for bar, notes in enumerate(per_bar):
        chord_tones = set(bank.cue("gen").chord_at_bar(bar).pitch_classes())
        assert {e.pitch % 12 for e in notes} <= chord_tones
    assert np.mean([e.velocity for e in per_bar[3]]) > np.mean([e.velocity for e in per_bar[0]]) + 30


def test_stinger_is_transposed_to_the_playing_key(tmp_path, soundfont):
    from adaptive.cue import load_bank
    from tests.helpers import write_midi

    write_midi(tmp_path / "stinger.mid", {"rise": [(0.0, 0.5, 60, 100), (0.5, 0.5, 64, 100), (1.0, 1.0, 67, 100)]})
    (tmp_path / "bank.toml").write_text(GENERATED_BANK)
    session = make_session(load_bank(tmp_path / "bank.toml"), soundfont)
    session.submit(0, SceneUpdate(intensity=0.0))
    session.submit(10_000, StingerTrigger("rise"))
    render_frames(session, SAMPLE_RATE_HZ)
    stinger_notes = [e.pitch for e in session.midi_events if e.part == "stinger/rise" and e.kind == 1]
    assert stinger_notes == [62, 66, 69]  # written in C major, played in D major
