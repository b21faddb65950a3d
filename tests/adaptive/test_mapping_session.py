"""The session playing by a mapping, judged from its events and audio:
smoothing holds a cue under noisy 90 Hz input, a minimum time in a cue, a
mapping change lands on the next bar and ramps the gains without a click,
a bad one changes nothing, recordings replay mapping changes bit for bit,
stinger names and tempo ranges."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.mapping import MappingChange, parse_mapping_text
from adaptive.offline import render_offline
from adaptive.recording import Recording, replay
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import InputError, Session
from tests.helpers import SAMPLE_RATE_HZ, render_frames
from tests.adaptive.test_session import max_second_difference, tone_amplitude

BAR_FRAMES = 2 * SAMPLE_RATE_HZ  # cue "low": 120 bpm, 4/4


def session_with(bank, soundfont, mapping_text: str | None = None, **kwargs) -> Session:
    mapping = parse_mapping_text(mapping_text, bank) if mapping_text is not None else None
    return Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, mapping=mapping, **kwargs)


def noisy_input(session: Session, seconds: float, spread: float, seed: int = 0) -> None:
    """Emotion sent 90 times a second, with uniform noise of +-``spread``
    around the midpoint between cues "low" (0.5, -0.5) and "high" (-0.5, 0.5)."""
    rng = np.random.default_rng(seed)
    step = SAMPLE_RATE_HZ // 90
    session.submit(0, SceneUpdate(valence=0.05, arousal=-0.05, intensity=0.5))
    for i in range(1, int(90 * seconds)):
        v, a = rng.uniform(-spread, spread, 2)
        session.submit(i * step, SceneUpdate(valence=float(v), arousal=float(a)))


def cue_changes(session: Session) -> list[tuple[int, str]]:
    return [(e.frame, e.data["cue"]) for e in session.drain_events() if e.kind == "cue_change"]


SMOOTHED = "[smoothing]\nvalence_per_second = 0.5\narousal_per_second = 0.5\nhysteresis = 0.15\nmin_cue_bars = 1\n"
UNSMOOTHED = "[smoothing]\nhysteresis = 0.0\n"


def test_smoothing_holds_the_cue_under_noisy_input_that_flips_it_every_frame(tone_bank, soundfont):
    """Noise of +-0.4 moves the distance gap between the two cues by far more
    than the hysteresis: unsmoothed, the cue follows it (a change every few
    input frames); slewed at 0.5/s with hysteresis and a one-bar minimum, the
    music stays on one cue."""
    bank = tone_bank(exit="immediate", fade_beats=0.0)
    changes = {}
    for name, text in (("smoothed", SMOOTHED), ("unsmoothed", UNSMOOTHED)):
        session = session_with(bank, soundfont, text)
        noisy_input(session, 4.0, spread=0.4)
        render_frames(session, 4 * SAMPLE_RATE_HZ)
        changes[name] = len(cue_changes(session))
        session.close()
    assert changes["smoothed"] == 1  # the first cue, then no change
    assert changes["unsmoothed"] > 100  # of 360 inputs


def test_smoothing_is_in_frames_so_block_size_does_not_change_the_audio(tone_bank, soundfont):
    bank = tone_bank(exit="immediate", fade_beats=0.5)
    renders = []
    for block in (64, 1000, 4096):
        session = session_with(bank, soundfont, SMOOTHED.replace("min_cue_bars = 1", "min_cue_bars = 0")
                               .replace("0.15", "0.0"), max_block_frames=block)
        session.submit(0, SceneUpdate(emotion="calm", intensity=0.2))
        session.submit(SAMPLE_RATE_HZ // 2, SceneUpdate(emotion="afraid", intensity=0.9))
        renders.append(render_frames(session, 4 * SAMPLE_RATE_HZ, block))
        follow = [e for e in session.drain_events() if e.kind == "follow"]
        session.close()
        # The slew reaches "afraid" gradually: at 0.5/s, 1.1 in valence takes 2.2 s of follow steps.
        assert len(follow) > 40 and follow[-1].data["valence"] == pytest.approx(-0.6)
    assert np.array_equal(renders[0], renders[1]) and np.array_equal(renders[0], renders[2])


def test_a_cue_plays_its_minimum_time_before_the_mapping_moves_on(tone_bank, soundfont):
    bank = tone_bank(exit="immediate", fade_beats=0.0)
    results = {}
    for bars in (0, 2):
        session = session_with(bank, soundfont, f"[smoothing]\nmin_cue_bars = {bars}\n")
        session.submit(0, SceneUpdate(emotion="calm"))
        session.submit(SAMPLE_RATE_HZ // 2, SceneUpdate(emotion="afraid"))
        render_frames(session, 6 * SAMPLE_RATE_HZ)
        results[bars] = cue_changes(session)
        session.close()
    assert results[0] == [(0, "low"), (SAMPLE_RATE_HZ // 2, "high")]
    assert results[2] == [(0, "low"), (2 * BAR_FRAMES, "high")]  # held for two bars of "low"


LOUD_UPPER = "[cues.low.layers.upper]\ngain_curve = [[0.0, -6.0], [1.0, -6.0]]\nfade_beats = 2\n"


def test_a_mapping_change_takes_effect_at_the_next_bar_and_ramps_without_a_click(tone_bank, soundfont):
    bank = tone_bank()
    session = session_with(bank, soundfont)
    session.submit(0, SceneUpdate(emotion="calm", intensity=0.3))  # "upper" (880 Hz) is silent at 0.3
    session.submit(SAMPLE_RATE_HZ // 2, MappingChange(LOUD_UPPER, None, "test"))
    audio = render_frames(session, 4 * SAMPLE_RATE_HZ)
    events = session.drain_events()
    session.close()
    assert [e.frame for e in events if e.kind == "mapping"] == [BAR_FRAMES]
    before = audio[SAMPLE_RATE_HZ : BAR_FRAMES]
    after = audio[3 * SAMPLE_RATE_HZ + SAMPLE_RATE_HZ // 4 : 4 * SAMPLE_RATE_HZ]  # after the 2-beat (1 s) ramp
    assert tone_amplitude(before, 880.0) < 1e-3
    assert tone_amplitude(after, 880.0) == pytest.approx(0.2 * 10 ** (-6 / 20), rel=0.02)
    assert tone_amplitude(after, 440.0) == pytest.approx(0.3, rel=0.02)
    # No click: the ramp is no rougher than the steady tones (second difference).
    steady = max_second_difference(after)
    assert max_second_difference(audio[BAR_FRAMES - 100 : BAR_FRAMES + SAMPLE_RATE_HZ]) <= steady * 1.01


def test_an_invalid_mapping_change_is_refused_and_changes_nothing(tone_bank, soundfont):
    bank = tone_bank()
    renders = []
    for bad in (False, True):
        session = session_with(bank, soundfont)
        session.submit(0, SceneUpdate(emotion="calm", intensity=0.3))
        if bad:
            with pytest.raises(InputError, match=r"line 2: cues.low.layers.upper.gain_curve: 30 dB"):
                session.submit(1000, MappingChange("[cues.low.layers.upper]\ngain_curve = [[0.0, 30.0]]\n"))
            assert session.counters["rejected_inputs"] == 1
        renders.append(render_frames(session, 3 * SAMPLE_RATE_HZ))
        session.close()
    assert np.array_equal(renders[0], renders[1])


def test_a_recording_replays_mapping_changes_bit_for_bit(tone_bank, soundfont, tmp_path):
    bank = tone_bank()
    initial = "[smoothing]\nintensity_per_second = 0.5\n"
    session = session_with(bank, soundfont, initial)
    recording = Recording.for_session(tmp_path / "session.jsonl", session, bank.folder / "bank.toml")
    inputs = [(0, SceneUpdate(emotion="calm", intensity=0.3)),
              (SAMPLE_RATE_HZ // 2, MappingChange(initial + LOUD_UPPER, None, "mapping.toml")),
              (SAMPLE_RATE_HZ, SceneUpdate(intensity=0.9)),
              (int(2.5 * SAMPLE_RATE_HZ), StingerTrigger("hit"))]
    total = 4 * SAMPLE_RATE_HZ
    audio = render_offline(session, total, inputs)  # as the real-time runner does: render up to the frame, then submit
    for frame, item in inputs:
        recording.write_input(frame, item)
    recording.close(total)
    session.close()
    text = (tmp_path / "session.jsonl").read_text()
    assert '"type": "mapping"' in text and "intensity_per_second" in text.splitlines()[0]
    assert np.array_equal(replay(tmp_path / "session.jsonl"), audio)


def test_a_mapping_stinger_name_plays_its_source_with_its_own_quantize(tone_bank, soundfont):
    bank = tone_bank(stinger_quantize="immediate")
    session = session_with(bank, soundfont, '[stingers.boom]\nsource = "hit"\nquantize = "next_bar"\n')
    session.submit(0, SceneUpdate(emotion="calm"))
    session.submit(SAMPLE_RATE_HZ // 2, StingerTrigger("boom"))
    session.submit(SAMPLE_RATE_HZ // 2, StingerTrigger("hit"))
    with pytest.raises(InputError, match="allowed: boom, hit"):
        session.submit(0, StingerTrigger("bam"))
    render_frames(session, 3 * SAMPLE_RATE_HZ)
    played = [(e.frame, e.data["name"], e.data.get("source")) for e in session.drain_events() if e.kind == "stinger"]
    session.close()
    assert played == [(SAMPLE_RATE_HZ // 2, "hit", None), (BAR_FRAMES, "boom", "hit")]


def test_a_cue_starts_at_the_tempo_its_range_gives_the_arousal(tone_bank, soundfont):
    bank = tone_bank()
    session = session_with(bank, soundfont, "[cues.keys]\nbpm_range = [80.0, 120.0]\n")
    session.submit(0, SceneUpdate(valence=0.8, arousal=0.5, intensity=0.5))  # nearest: keys
    render_frames(session, SAMPLE_RATE_HZ)
    change = next(e for e in session.drain_events() if e.kind == "cue_change")
    session.close()
    assert change.data["cue"] == "keys" and change.data["bpm"] == pytest.approx(110.0)


def test_a_mapping_change_that_adds_generated_bridges_needs_their_synthesizers(tone_bank, soundfont):
    bank = tone_bank()  # no generated bridges in the bank
    rule = '[[transitions]]\nbridge = { kind = "generated", bars = 1 }\n'
    without = session_with(bank, soundfont)
    with pytest.raises(InputError, match="generated bridges"):
        without.submit(0, MappingChange(rule))
    without.close()
    live = session_with(bank, soundfont, generated_bridges=True)  # as the server makes it
    live.submit(0, SceneUpdate(emotion="calm"))
    live.submit(1000, MappingChange(rule))
    live.submit(3 * SAMPLE_RATE_HZ, SceneUpdate(emotion="afraid"))
    render_frames(live, 7 * SAMPLE_RATE_HZ)
    cues = [cue for _, cue in cue_changes(live)]
    live.close()
    assert cues == ["low", "bridge:low->high", "high"]


def test_generated_layers_are_asked_for_what_the_mappings_conditioning_says(soundfont, monkeypatch):
    from adaptive import generator as generator_module, registry
    from adaptive.cue import DEFAULT_BANK, load_bank

    requests = []

    class RecordingGenerator(generator_module.RuleBasedGenerator):
        def generate_bar(self, request):
            requests.append(request)
            return super().generate_bar(request)

    monkeypatch.setitem(registry.GENERATORS, "rule_based", RecordingGenerator)
    bank = load_bank(DEFAULT_BANK)
    text = ('[conditioning]\nmode = "valence"\nvelocity = [[-1.0, 30.0], [1.0, 32.0]]\n'
            'density_notes_per_beat = [[-1.0, 2.0], [1.0, 2.0]]\n')
    session = session_with(bank, soundfont, text, generator="rule_based")
    session.submit(0, SceneUpdate(valence=0.5, arousal=-0.4, intensity=1.0))  # explore, harp arpeggio audible
    render_frames(session, 8 * SAMPLE_RATE_HZ)
    session.close()
    asked = [r for r in requests if r.role == "arpeggio"]  # the layer's bars, and bridges made ahead
    assert any(r.valence == 0.5 for r in asked), "the generated layer asked for no bars"
    assert all(r.conditioning is not None for r in asked)
    assert all(r.conditioning.mode == ("major" if r.valence >= 0.0 else "minor") for r in asked)
    assert all(r.conditioning.velocity == 31 and r.conditioning.notes_per_beat == 2.0 for r in asked)
    played = [note for note in session.midi_events if note.part == "explore/arpeggio" and note.velocity > 0]
    assert played and all(note.velocity in (31, 41) for note in played)  # 31, and 41 on accented steps
