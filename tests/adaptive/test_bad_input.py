"""Bad input: every user mistake gives one clear error naming the file, the
entry and what is allowed, never a traceback; and a session that rejects an
input keeps playing, exactly as if the input had never been sent.

Covers timelines (:func:`adaptive.timeline.load_timeline`), cue banks
(:func:`adaptive.cue.load_bank` and the assets a :class:`~adaptive.session.Session`
loads), SoundFonts, live session inputs and the ``adaptive render`` command.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from . import bad_input_fixtures as fx
except ImportError:  # tests/adaptive is not a package: imported from its own folder
    import bad_input_fixtures as fx

from app import cli
from adaptive.cue import load_bank
from adaptive.emotion import NAMED_EMOTIONS
from adaptive.errors import AdaptiveError, AssetError, ConfigError
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import InputError, Session
from adaptive.stem import load_stem
from adaptive.timeline import load_timeline

REPO_ROOT = Path(__file__).resolve().parents[2]

needs_soundfont = pytest.mark.skipif(not fx.SOUNDFONT.is_file(), reason=f"{fx.SOUNDFONT} is not installed")


def assert_clear(message: str, *, file: Path | str | None = None, entry: tuple[str, ...] = (),
                 allowed: tuple[str, ...] = (), allowed_any: tuple[str, ...] = ()) -> None:
    """The message names ``file``, every fragment of ``entry`` and ``allowed``,
    at least one of ``allowed_any``, and holds no traceback."""
    assert "Traceback" not in message, message
    if file is not None:
        assert str(file) in message, f"file {file} not named in:\n{message}"
    for fragment in entry:
        assert fragment in message, f"entry {fragment!r} not named in:\n{message}"
    for fragment in allowed:
        assert fragment in message, f"allowed {fragment!r} not stated in:\n{message}"
    if allowed_any:
        assert any(fragment in message for fragment in allowed_any), \
            f"none of {allowed_any} stated in:\n{message}"


# ======================================================================== fixtures
@pytest.fixture(scope="module")
def shared_bank(tmp_path_factory: pytest.TempPathFactory):
    """The valid tiny bank, loaded once (for timeline and session tests)."""
    return load_bank(fx.make_bank(tmp_path_factory.mktemp("bank")))


def _timeline(tmp_path: Path, text: str, suffix: str = ".toml") -> Path:
    return fx.write_timeline(tmp_path, text, "timeline" + suffix)


def _events(*events: str, duration: float = 2.0) -> str:
    """A TOML timeline with ``duration`` and one ``[[events]]`` table per argument."""
    return f"duration_seconds = {duration}\n" + "".join(f"\n[[events]]\n{body}\n" for body in events)


# ======================================================================== timelines
TIMELINE_CASES = [
    # id, text, suffix, entry fragments, allowed fragments (all), allowed fragments (any)
    pytest.param(_events("time_seconds = 0\nemotion = \"calm\"", "time_seconds = = 1\nintensity = 0.2"), ".toml",
                 ("line 8",), ("TOML",), (), id="toml-syntax-error"),
    pytest.param('{"duration_seconds": 2,\n "events": [{"time_seconds": 0,, "emotion": "calm"}]}', ".json",
                 ("line 2", "column"), ("JSON",), (), id="json-syntax-error"),
    pytest.param("[[events]]\ntime_seconds = 0\nemotion = \"calm\"\n", ".toml",
                 ("duration_seconds",), ("required",), (), id="missing-duration"),
    pytest.param(_events("time_seconds = 0\nintensity = 1.5"), ".toml",
                 ("events[0].intensity", "1.5"), (), ("less than or equal to 1", "0..1", "0 to 1"),
                 id="intensity-1.5"),
    pytest.param(_events("time_seconds = 0\nvalence = 0.5"), ".toml",
                 ("events[0]",), ("valence", "arousal", "together"), (), id="valence-without-arousal"),
    pytest.param(_events("time_seconds = inf\nintensity = 0.1"), ".toml",
                 ("events[0].time_seconds", "inf"), ("finite",), (), id="toml-inf-time"),
    pytest.param(_events("time_seconds = 0\nintensity = inf"), ".toml",
                 ("events[0].intensity", "inf"), (), ("finite", "less than or equal to 1"), id="toml-inf-intensity"),
    pytest.param(_events("time_seconds = -1\nintensity = 0.1"), ".toml",
                 ("events[0].time_seconds", "-1"), (), ("greater than or equal to 0", ">= 0"), id="negative-time"),
    pytest.param(_events("time_seconds = 0\nintensity = 0.1", "time_seconds = 5\nintensity = 0.3"), ".toml",
                 ("events[1].time_seconds", "5"), ("duration_seconds", "2"), (), id="time-beyond-duration"),
    pytest.param(_events("time_seconds = 0.5\nemotion = \"grumpy\""), ".toml",
                 ("events[0]", "'grumpy'"), tuple(NAMED_EMOTIONS), (), id="unknown-emotion"),
    pytest.param(_events("time_seconds = 0\ncue = \"boss\""), ".toml",
                 ("events[0]", "'boss'"), ("calm", "battle"), (), id="unknown-cue"),
    pytest.param(_events("time_seconds = 0\nemotion = \"calm\"", "time_seconds = 1\nstinger = \"boom\""), ".toml",
                 ("events[1]", "'boom'"), ("hit",), (), id="unknown-stinger"),
    pytest.param(_events("time_seconds = 0"), ".toml",
                 ("events[0]",), ("emotion", "valence", "intensity", "location", "cue", "stinger"), (),
                 id="empty-event"),
    pytest.param('{"duration_seconds": 2, "events": [{"time_seconds": 0, "emotion": "nope"}]}', ".json",
                 ("events[0]", "'nope'"), ("calm",), (), id="json-unknown-emotion"),
    pytest.param("[1, 2]", ".json", (), ("duration_seconds",), (), id="json-not-an-object"),
    pytest.param(_events("time_seconds = 0\nintensity = 0.2", duration=0), ".toml",
                 ("duration_seconds",), ("greater than 0",), (), id="zero-duration"),
]


@pytest.mark.parametrize(("text", "suffix", "entry", "allowed", "allowed_any"), TIMELINE_CASES)
def test_timeline_error_names_file_entry_and_allowed(tmp_path, shared_bank, text, suffix, entry, allowed, allowed_any):
    path = _timeline(tmp_path, text, suffix)
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, entry=entry, allowed=allowed, allowed_any=allowed_any)


def test_valid_timeline_loads(tmp_path, shared_bank):
    timeline = load_timeline(_timeline(tmp_path, fx.VALID_TIMELINE), shared_bank)
    assert timeline.duration_seconds == 2.0
    assert len(timeline.inputs()) == 3


def test_missing_timeline_file(tmp_path, shared_bank):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, allowed_any=("No such file", "not found", "cannot read"))


def test_binary_timeline_file(tmp_path, shared_bank):
    path = tmp_path / "timeline.toml"
    path.write_bytes(b"\xff\xfe\x00 binary \x80\x81")
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, allowed=("TOML or JSON",))


def test_timeline_name_problems_are_all_listed(tmp_path, shared_bank):
    """Unknown emotion, stinger and cue in three events: one error listing all three."""
    path = _timeline(tmp_path, _events("time_seconds = 0\nemotion = \"grumpy\"", "time_seconds = 1\nstinger = \"boom\"",
                                       "time_seconds = 1.5\ncue = \"boss\""))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    message = str(info.value)
    assert_clear(message, file=path, entry=("events[0]", "events[1]", "events[2]", "'grumpy'", "'boom'", "'boss'"))
    assert "3 problems" in message


def test_timeline_mixed_problems_are_all_listed(tmp_path, shared_bank):
    path = _timeline(tmp_path, _events(
        "time_seconds = 0\nemotion = \"grumpy\"",   # unknown emotion (bank check)
        "time_seconds = 0.5\nintensity = 1.5",       # out of range (field check)
        "time_seconds = 1\nstinger = \"boom\"",      # unknown stinger (bank check)
        "time_seconds = 3\nintensity = 0.2",         # past the end (model check)
        "time_seconds = 4\nintensity = 0.2",         # past the end too
    ))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path,
                 entry=("events[0]", "'grumpy'", "events[1].intensity", "events[2]", "'boom'", "events[3]", "events[4]"))


@pytest.mark.parametrize(("text", "suffix", "entry"), [
    pytest.param(_events("time_seconds = 0\nvalence = nan\narousal = 0.1"), ".toml", "events[0].valence", id="toml-nan-valence"),
    pytest.param('{"duration_seconds": 2, "events": [{"time_seconds": 0, "intensity": NaN}]}', ".json",
                 "events[0].intensity", id="json-nan-intensity"),
    pytest.param('{"duration_seconds": 2, "events": [{"time_seconds": NaN, "intensity": 0.5}]}', ".json",
                 "events[0].time_seconds", id="json-nan-time"),
    pytest.param("duration_seconds = nan\n", ".toml", "duration_seconds", id="toml-nan-duration"),
])
def test_timeline_nan_is_reported_as_not_finite(tmp_path, shared_bank, text, suffix, entry):
    path = _timeline(tmp_path, text, suffix)
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    message = str(info.value)
    assert_clear(message, file=path, entry=(entry,), allowed=("finite",))
    assert "less than or equal" not in message and "greater than or equal" not in message


@pytest.mark.parametrize(("text", "suffix"), [
    pytest.param(_events("time_seconds = 0\nvalence = nan\narousal = 0.1"), ".toml", id="toml-nan-valence"),
    pytest.param('{"duration_seconds": 2, "events": [{"time_seconds": 0, "intensity": NaN}]}', ".json", id="json-nan"),
    pytest.param("duration_seconds = nan\n", ".toml", id="toml-nan-duration"),
])
def test_timeline_nan_is_rejected(tmp_path, shared_bank, text, suffix):
    """Whatever the wording, NaN never gets through and the error names file and entry."""
    path = _timeline(tmp_path, text, suffix)
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, allowed=("nan",))


def test_timeline_typo_field_lists_allowed_fields(tmp_path, shared_bank):
    path = _timeline(tmp_path, _events("time_seconds = 0\nintensty = 0.3"))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, entry=("events[0].intensty",),
                 allowed=("intensity", "emotion", "valence", "arousal", "stinger"))


def test_timeline_typo_field_is_rejected(tmp_path, shared_bank):
    path = _timeline(tmp_path, _events("time_seconds = 0\nintensty = 0.3"))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, entry=("events[0].intensty",))


def test_timeline_bool_intensity_is_rejected(tmp_path, shared_bank):
    path = _timeline(tmp_path, _events("time_seconds = 0\nintensity = true"))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, entry=("events[0].intensity",))


def test_timeline_segment_is_not_a_cue(tmp_path, shared_bank):
    path = _timeline(tmp_path, _events("time_seconds = 0\ncue = \"bridge\""))
    with pytest.raises(ConfigError) as info:
        load_timeline(path, shared_bank)
    assert_clear(str(info.value), file=path, entry=("events[0]", "'bridge'"), allowed=("calm", "battle"))


# ======================================================================== cue banks
def _set(path: str, value):
    """A mutation setting ``data[...]`` at a dotted path with [i] indices."""
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]

    def mutate(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _duplicate_cue(data):
    copy = dict(data["cues"][0])
    data["cues"].append(copy)


def _duplicate_layer(data):
    data["cues"][0]["layers"][1]["name"] = "pad"


BANK_CASES = [
    # mutation, entry fragments, allowed fragments
    pytest.param(_set("transitions[0].to", "batle"), ("transitions[0].to", "'batle'"), ("'*'", "battle", "calm"),
                 id="unknown-cue-in-transition"),
    pytest.param(_set("transitions[1].bridge.segment", "nope"), ("transitions[1].bridge.segment", "'nope'"),
                 ("bridge",), id="bridge-names-missing-segment"),
    pytest.param(_set("cues[0].key", "H major"), ("cues[0].key", "'H major'"), ("A-G", "D minor"), id="bad-key"),
    pytest.param(_set("cues[1].chords", ["Dm", "Xq7"]), ("cues[1].chords", "'Xq7'"), ("A-G", "'maj7'", "'m'"),
                 id="bad-chord"),
    pytest.param(_set("cues[0].layers[1].gain_curve", [[0.0, -6.0], [0.5, 0.0], [0.4, 0.0]]),
                 ("cues[0].layers[1].gain_curve",), ("strictly increasing",), id="gain-curve-not-increasing"),
    pytest.param(_set("cues[0].layers[0].gain_curve", [[0.0, 0.0], [1.0, 20.0]]),
                 ("cues[0].layers[0].gain_curve", "20"), ("+12",), id="gain-curve-too-loud"),
    pytest.param(_set("cues[1].bpm", 500), ("cues[1].bpm", "500"), ("300",), id="bpm-too-high"),
    pytest.param(_set("cues[1].bpm", 5), ("cues[1].bpm", "5"), ("20",), id="bpm-too-low"),
    pytest.param(_duplicate_cue, ("'calm'",), ("more than once",), id="duplicate-cue"),
    pytest.param(_duplicate_layer, ("cues[0]", "pad"), ("unique",), id="duplicate-layer"),
    pytest.param(_set("cues[1].layers[0].source.kind", "sample"), ("cues[1].layers[0].source", "'sample'"),
                 ("'midi'", "'stem'", "'generated'"), id="unknown-source-kind"),
    pytest.param(_set("cues[0].meter", "4-4"), ("cues[0].meter", "'4-4'"), ("'4/4'",), id="bad-meter"),
    pytest.param(_set("stingers[0].quantize", "next_beet"), ("stingers[0].quantize", "next_beet"),
                 ("next_beat", "next_bar"), id="bad-quantize"),
    pytest.param(_set("cues[0].layers[1].program", 128), ("cues[0].layers[1].program", "128"), ("127",),
                 id="program-out-of-range"),
    pytest.param(_set("cues[1].layers[1].source.style", "jazz"), ("cues[1].layers[1].source", "'jazz'"),
                 ("game", "pop", "folk", "chorale"), id="unknown-generator-style"),
]


@pytest.mark.parametrize(("mutate", "entry", "allowed"), BANK_CASES)
def test_bank_error_names_file_entry_and_allowed(tmp_path, mutate, entry, allowed):
    data = fx.base_bank()
    mutate(data)
    path = fx.make_bank(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, entry=entry, allowed=allowed)


def test_bank_toml_syntax_error_has_line(tmp_path):
    path = tmp_path / "bank.toml"
    path.write_text('name = "tiny"\n\n[[cues]]\nname = "calm"\nbpm = \n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, entry=("line 5",), allowed=("TOML",))


def test_missing_bank_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, allowed_any=("No such file", "not found"))


def test_valid_bank_loads_and_builds_a_session(tmp_path):
    bank = load_bank(fx.make_bank(tmp_path))
    assert [cue.name for cue in bank.cues] == ["calm", "battle"]
    if fx.SOUNDFONT.is_file():
        Session(bank, soundfont=fx.SOUNDFONT).close()


def test_bank_not_utf8(tmp_path):
    path = tmp_path / "bank.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, allowed=("UTF-8",))


def test_bank_problems_are_all_listed(tmp_path):
    data = fx.base_bank()
    for mutate in (_set("cues[0].key", "H major"), _set("cues[1].bpm", 500), _set("transitions[0].to", "batle")):
        mutate(data)
    path = fx.make_bank(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, entry=("cues[0].key", "cues[1].bpm", "transitions[0].to"))


def test_bank_typo_field_lists_allowed_fields(tmp_path):
    data = fx.base_bank()
    data["cues"][0]["loop_bar"] = 2
    path = fx.make_bank(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, entry=("cues[0].loop_bar",), allowed=("loop_bars",))


# ------------------------------------------------------------ assets (loaded by the Session)
def _broken_stem(kind: str):
    """Bank where only cues[0].layers[0] ('calm'/'pad') uses the broken stem ``broken.wav``."""
    def setup(folder: Path, data: dict) -> Path:
        data["cues"][0]["layers"][0]["source"]["file"] = "broken.wav"
        if kind == "corrupt":
            fx.write_random_bytes(folder / "broken.wav")
        elif kind == "3-channels":
            fx.write_stem(folder / "broken.wav", channels=3)
        return folder / "broken.wav"
    return setup


def _broken_midi(kind: str, where: str = "layer"):
    """Bank where only cues[0].layers[1] ('calm'/'lead'), or only stingers[0], uses ``broken.mid``."""
    def setup(folder: Path, data: dict) -> Path:
        source = data["cues"][0]["layers"][1]["source"] if where == "layer" else data["stingers"][0]["source"]
        source["file"] = "broken.mid"
        if kind == "corrupt":
            fx.write_random_bytes(folder / "broken.mid")
        elif kind == "truncated":
            fx.write_midi(folder / "broken.mid")
            (folder / "broken.mid").write_bytes((folder / "broken.mid").read_bytes()[:40])
        elif kind == "no-such-track":
            fx.write_midi(folder / "broken.mid")
            source["track"] = "leed"
        return folder / "broken.mid"
    return setup


ASSET_CASES = [
    # setup, entry (index form, name form), allowed fragments
    pytest.param(_broken_stem("missing"), ("cues[0].layers[0]", ("'calm'", "'pad'")), ("not found",), id="missing-stem"),
    pytest.param(_broken_stem("corrupt"), ("cues[0].layers[0]", ("'calm'", "'pad'")), ("WAV", "FLAC", "OGG"),
                 id="corrupt-stem"),
    pytest.param(_broken_stem("3-channels"), ("cues[0].layers[0]", ("'calm'", "'pad'")), ("3 channels", "1 or 2"),
                 id="stem-3-channels"),
    pytest.param(_broken_midi("missing"), ("cues[0].layers[1]", ("'calm'", "'lead'")), ("not found",),
                 id="missing-midi"),
    pytest.param(_broken_midi("corrupt"), ("cues[0].layers[1]", ("'calm'", "'lead'")), ("Standard MIDI File",),
                 id="corrupt-midi"),
    pytest.param(_broken_midi("no-such-track"), ("cues[0].layers[1]", ("'calm'", "'lead'")),
                 ("'leed'", "lead", "drums", "hit"), id="midi-track-not-there"),
    pytest.param(_broken_midi("missing", where="stinger"), ("stingers[0]", ("'hit'",)), ("not found",),
                 id="missing-stinger-midi"),
]


def _asset_error(tmp_path: Path, setup) -> tuple[str, Path]:
    data = fx.base_bank()
    asset = setup(tmp_path, data)
    bank = load_bank(fx.make_bank(tmp_path, data))  # the bank itself is valid
    with pytest.raises(AssetError) as info:
        Session(bank, soundfont=fx.SOUNDFONT)
    return str(info.value), asset


@needs_soundfont
@pytest.mark.parametrize(("setup", "entry", "allowed"), ASSET_CASES)
def test_asset_error_names_file_and_allowed(tmp_path, setup, entry, allowed):
    message, asset = _asset_error(tmp_path, setup)
    assert_clear(message, file=asset, allowed=allowed)


@needs_soundfont
@pytest.mark.parametrize(("setup", "entry", "allowed"), ASSET_CASES)
def test_asset_error_names_entry(tmp_path, setup, entry, allowed):
    message, asset = _asset_error(tmp_path, setup)
    index_form, name_form = entry
    assert index_form in message or all(name in message for name in name_form), message


@needs_soundfont
def test_corrupt_stem_message_does_not_say_missing(tmp_path):
    message, _ = _asset_error(tmp_path, _broken_stem("corrupt"))
    assert "does not exist" not in message, message


@needs_soundfont
def test_truncated_midi_message_says_why(tmp_path):
    message, asset = _asset_error(tmp_path, _broken_midi("truncated"))
    assert_clear(message, file=asset, allowed=("Standard MIDI File",))
    assert "()" not in message, message


@needs_soundfont
def test_truncated_midi_is_an_asset_error(tmp_path):
    message, asset = _asset_error(tmp_path, _broken_midi("truncated"))
    assert_clear(message, file=asset, allowed=("Standard MIDI File",))


@needs_soundfont
@pytest.mark.parametrize("division", [b"\x00\x00", b"\xe7\x28"], ids=["ticks-per-beat-0", "smpte-division"])
def test_midi_bad_time_division(tmp_path, division):
    def setup(folder: Path, data: dict) -> Path:
        data["cues"][0]["layers"][1]["source"]["file"] = "broken.mid"
        fx.write_midi(folder / "broken.mid")
        raw = bytearray((folder / "broken.mid").read_bytes())
        raw[12:14] = division  # MThd division field
        (folder / "broken.mid").write_bytes(bytes(raw))
        return folder / "broken.mid"

    message, asset = _asset_error(tmp_path, setup)
    assert_clear(message, file=asset, allowed_any=("ticks per beat", "ticks per quarter", "division"))


@needs_soundfont
def test_stem_at_44100_is_resampled(tmp_path):
    stem = fx.write_stem(tmp_path / "pad44.wav", seconds=0.5, rate=44_100)
    audio = load_stem(stem, 48_000)
    assert audio.shape == (round(22_050 * 48_000 / 44_100), 2) == (24_000, 2)
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() > 0.1
    data = fx.base_bank()
    data["cues"][0]["layers"][0]["source"]["file"] = "pad44.wav"
    bank = load_bank(fx.make_bank(tmp_path, data))
    session = Session(bank, soundfont=fx.SOUNDFONT)  # not an error
    try:
        session.submit(0, SceneUpdate(emotion="calm"))
        assert np.abs(session.render(4096)).max() > 0.0
    finally:
        session.close()


@needs_soundfont
def test_unknown_generator(tmp_path):
    data = fx.base_bank()
    data["cues"][1]["layers"][1]["source"]["generator"] = "transformer"
    path = fx.make_bank(tmp_path, data)
    with pytest.raises(AdaptiveError) as info:
        Session(load_bank(path), soundfont=fx.SOUNDFONT)  # raised by either step
    assert_clear(str(info.value), entry=("'transformer'",), allowed=("rule_based",))
    message = str(info.value)
    assert "cues[1].layers[1]" in message or ("'battle'" in message and "'arp'" in message), message


def test_unknown_generator_rejected_by_load_bank(tmp_path):
    data = fx.base_bank()
    data["cues"][1]["layers"][1]["source"]["generator"] = "transformer"
    path = fx.make_bank(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_bank(path)
    assert_clear(str(info.value), file=path, entry=("cues[1].layers[1]", "'transformer'"), allowed=("rule_based",))


# ======================================================================== SoundFonts
@pytest.fixture
def truncated_soundfont(tmp_path) -> Path:
    path = tmp_path / "truncated.sf2"
    with open(fx.SOUNDFONT, "rb") as handle:
        path.write_bytes(handle.read(10 * 1024))
    return path


@needs_soundfont
@pytest.mark.parametrize("kind", ["missing", "random-bytes", "truncated", "directory"])
def test_bad_soundfont(tmp_path, shared_bank, kind, request):
    if kind == "missing":
        path, allowed = tmp_path / "nope.sf2", ("not found",)
    elif kind == "random-bytes":
        path, allowed = fx.write_random_bytes(tmp_path / "random.sf2"), ("not a SoundFont", ".sf2")
    elif kind == "truncated":
        path, allowed = request.getfixturevalue("truncated_soundfont"), ("truncated",)
    else:
        path, allowed = tmp_path, ("folder", ".sf2")
    with pytest.raises(AssetError) as info:
        Session(shared_bank, soundfont=path)
    assert_clear(str(info.value), file=path, allowed=allowed)


@needs_soundfont
def test_soundfont_env_missing(tmp_path, shared_bank, monkeypatch):
    missing = tmp_path / "gone.sf2"
    monkeypatch.setenv("ADAPTIVE_SOUNDFONT", str(missing))
    with pytest.raises(AssetError) as info:
        Session(shared_bank)
    assert_clear(str(info.value), file=missing, allowed=("not found",))


@needs_soundfont
def test_soundfont_env_missing_names_the_variable(tmp_path, shared_bank, monkeypatch):
    missing = tmp_path / "gone.sf2"
    monkeypatch.setenv("ADAPTIVE_SOUNDFONT", str(missing))
    with pytest.raises(AssetError) as info:
        Session(shared_bank)
    assert_clear(str(info.value), file=missing, entry=("ADAPTIVE_SOUNDFONT",))


# ======================================================================== session inputs
TOTAL_FRAMES = 3 * fx.SAMPLE_RATE_HZ  # calm -> battle leaves at the next bar (2 s), through a 1-bar segment
BLOCK = 4096


def _play(bank, bad_inputs=()) -> tuple[np.ndarray, list, Session, list[str]]:
    """Calm at intensity 0.8; after one block a stinger and a move to battle
    (through the 'bridge' segment); then ``bad_inputs``, each of which must be
    rejected; then render to :data:`TOTAL_FRAMES`."""
    session = Session(bank, soundfont=fx.SOUNDFONT, seed=5)
    try:
        session.submit(0, SceneUpdate(emotion="calm", intensity=0.8))
        blocks = [session.render(BLOCK).copy()]
        session.submit(session.frame + 1000, StingerTrigger("hit"))
        session.submit(session.frame + 2000, SceneUpdate(emotion="angry"))
        errors = []
        for item in bad_inputs:
            with pytest.raises(InputError) as info:
                session.submit(session.frame + 500, item)
            errors.append(str(info.value))
            blocks.append(session.render(BLOCK).copy())  # keeps playing between bad inputs
        while sum(len(b) for b in blocks) < TOTAL_FRAMES:
            blocks.append(session.render(min(BLOCK, TOTAL_FRAMES - sum(len(b) for b in blocks))).copy())
        events = [(e.frame, e.kind, e.data) for e in session.drain_events()]
        return np.concatenate(blocks), events, session, errors
    finally:
        session.close()


@pytest.fixture(scope="module")
def reference_play(shared_bank):
    if not fx.SOUNDFONT.is_file():
        pytest.skip(f"{fx.SOUNDFONT} is not installed")
    audio, events, session, _ = _play(shared_bank)
    kinds = [kind for _, kind, _ in events]
    assert "stinger" in kinds and "transition_start" in kinds  # the valid inputs did schedule music
    assert any(kind == "cue_change" and data["cue"] == "bridge" for _, kind, data in events)
    assert np.abs(audio).max() > 0.01
    return audio, events


BAD_INPUTS = [
    pytest.param(SceneUpdate(emotion="nope"), ("'nope'",) + tuple(NAMED_EMOTIONS), id="unknown-emotion"),
    pytest.param(SceneUpdate(intensity=1.5), ("intensity", "1.5", "0", "1"), id="intensity-1.5"),
    pytest.param(SceneUpdate(intensity=-0.1), ("intensity", "-0.1", "0", "1"), id="intensity-negative"),
    pytest.param(SceneUpdate(valence=math.nan, arousal=0.2), ("valence", "nan", "-1", "1"), id="nan-valence"),
    pytest.param(SceneUpdate(valence=0.2, arousal=math.inf), ("arousal", "inf", "-1", "1"), id="inf-arousal"),
    pytest.param(SceneUpdate(valence=0.2), ("valence", "arousal", "together"), id="valence-without-arousal"),
    pytest.param(StingerTrigger("boom"), ("'boom'", "hit"), id="unknown-stinger"),
    pytest.param(SceneUpdate(cue="boss"), ("'boss'", "calm", "battle"), id="unknown-forced-cue"),
]


@needs_soundfont
@pytest.mark.parametrize(("bad", "fragments"), BAD_INPUTS)
def test_rejected_input_changes_nothing(shared_bank, reference_play, bad, fragments):
    """The bad input raises InputError with what is allowed; the audio and the
    music events are bit-identical to a session that never got it, so the
    stinger and the transition scheduled before it still happen."""
    audio, events, session, errors = _play(shared_bank, [bad])
    assert_clear(errors[0], allowed=fragments)
    assert session.counters["rejected_inputs"] == 1
    reference_audio, reference_events = reference_play
    assert np.array_equal(audio, reference_audio)
    assert events == reference_events


@needs_soundfont
def test_many_rejected_inputs_change_nothing(shared_bank, reference_play):
    audio, events, session, errors = _play(shared_bank, [param.values[0] for param in BAD_INPUTS])
    assert len(errors) == len(BAD_INPUTS) == session.counters["rejected_inputs"]
    assert np.array_equal(audio, reference_play[0])
    assert events == reference_play[1]


@needs_soundfont
def test_session_keeps_taking_inputs_after_a_rejected_one(shared_bank):
    session = Session(shared_bank, soundfont=fx.SOUNDFONT)
    try:
        session.submit(0, SceneUpdate(emotion="calm"))
        session.render(BLOCK)
        with pytest.raises(InputError):
            session.submit(session.frame, StingerTrigger("boom"))
        session.submit(session.frame, StingerTrigger("hit"))  # a good one right after is taken
        for _ in range(8):
            assert np.isfinite(session.render(BLOCK)).all()
        assert any(event.kind == "stinger" for event in session.drain_events())
    finally:
        session.close()


def test_input_error_is_an_adaptive_error():
    assert issubclass(InputError, AdaptiveError)


@needs_soundfont
def test_forcing_a_segment_is_rejected(shared_bank):
    session = Session(shared_bank, soundfont=fx.SOUNDFONT)
    try:
        with pytest.raises(InputError) as info:
            session.submit(0, SceneUpdate(cue="bridge"))
        assert_clear(str(info.value), allowed=("calm", "battle"))
    finally:
        session.close()


# ======================================================================== CLI
@pytest.fixture
def cli_files(tmp_path):
    """A valid bank, a valid 1 s timeline and a bad one."""
    bank = fx.make_bank(tmp_path / "bank")
    good = _timeline(tmp_path, _events("time_seconds = 0\nemotion = \"calm\"", duration=1.0))
    bad = fx.write_timeline(tmp_path, _events("time_seconds = 0\nemotion = \"grumpy\""), "bad.toml")
    bad_bank_data = fx.base_bank()
    bad_bank_data["cues"][0]["key"] = "H major"
    bad_bank = fx.make_bank(tmp_path / "bad_bank", bad_bank_data)
    return {"bank": bank, "good": good, "bad": bad, "bad_bank": bad_bank, "out": tmp_path / "out.wav",
            "dir": tmp_path}


def _assert_cli_error(status: int, out: str, err: str, *fragments: str) -> None:
    assert status == 2, (status, out, err)
    assert "Traceback" not in out + err, out + err
    assert err.lstrip().startswith("adaptive: error:"), err
    assert err.count("adaptive: error:") == 1, err
    assert out == "", out
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@needs_soundfont
@pytest.mark.parametrize("case", ["bad-timeline", "missing-timeline", "bad-bank", "missing-bank", "missing-soundfont",
                                  "output-folder-blocked"])
def test_cli_render_user_mistakes(cli_files, capsys, monkeypatch, case):
    monkeypatch.setenv("ADAPTIVE_CACHE", str(cli_files["dir"] / "cache"))
    timeline, bank, soundfont = cli_files["good"], cli_files["bank"], str(fx.SOUNDFONT)
    out = cli_files["out"]
    expected: tuple[str, ...]
    if case == "bad-timeline":
        timeline, expected = cli_files["bad"], (str(cli_files["bad"]), "events[0]", "'grumpy'", "calm")
    elif case == "missing-timeline":
        timeline = cli_files["dir"] / "nope.toml"
        expected = (str(timeline),)
    elif case == "bad-bank":
        bank, expected = cli_files["bad_bank"], (str(cli_files["bad_bank"]), "cues[0].key", "'H major'")
    elif case == "missing-bank":
        bank = cli_files["dir"] / "nope" / "bank.toml"
        expected = (str(bank),)
    elif case == "missing-soundfont":
        soundfont, expected = "/nope.sf2", ("/nope.sf2", "not found")
    else:
        (cli_files["dir"] / "a-file").write_text("not a folder")
        out = cli_files["dir"] / "a-file" / "sub" / "out.wav"
        expected = (str(out), "cannot create the folder")
    status = cli.main(["render", str(timeline), "-o", str(out), "--bank", str(bank), "--soundfont", soundfont,
                       "--no-progress"])
    captured = capsys.readouterr()
    _assert_cli_error(status, captured.out, captured.err, *expected)
    assert not out.exists()


def test_cli_bank_command_bad_bank(cli_files, capsys):
    status = cli.main(["bank", "--bank", str(cli_files["bad_bank"])])
    captured = capsys.readouterr()
    _assert_cli_error(status, captured.out, captured.err, str(cli_files["bad_bank"]), "cues[0].key")


@needs_soundfont
@pytest.mark.parametrize("option", ["-o", "--midi", "--events"])
def test_cli_render_unwritable_output(cli_files, capsys, monkeypatch, option):
    monkeypatch.setenv("ADAPTIVE_CACHE", str(cli_files["dir"] / "cache"))
    folder = cli_files["dir"] / "a-folder"
    folder.mkdir()
    outputs = {"-o": str(cli_files["out"])}
    outputs[option] = str(folder)
    argv = ["render", str(cli_files["good"]), "--bank", str(cli_files["bank"]), "--soundfont", str(fx.SOUNDFONT),
            "--no-progress"]
    for flag, value in outputs.items():
        argv += [flag, value]
    status = cli.main(argv)
    captured = capsys.readouterr()
    assert status == 2
    assert "Traceback" not in captured.out + captured.err
    assert str(folder) in captured.err


@needs_soundfont
def test_cli_render_creates_missing_output_folders_and_says_so(cli_files, capsys, monkeypatch):
    """`adaptive render TIMELINE -o out/walk.wav` in a fresh clone: no `out/` yet."""
    monkeypatch.setenv("ADAPTIVE_CACHE", str(cli_files["dir"] / "cache"))
    out = cli_files["dir"] / "out" / "deeper" / "walk.wav"
    events = cli_files["dir"] / "elsewhere" / "walk.json"
    status = cli.main(["render", str(cli_files["good"]), "-o", str(out), "--events", str(events),
                       "--bank", str(cli_files["bank"]), "--soundfont", str(fx.SOUNDFONT), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert out.stat().st_size > 44 and events.is_file()
    assert f"created the folder {out.parent}" in captured.err
    assert f"created the folder {events.parent}" in captured.err


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ADAPTIVE_CACHE"] = str(cwd / "cache")
    env.pop("ADAPTIVE_SOUNDFONT", None)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@needs_soundfont
def test_cli_subprocess_bad_timeline_has_no_traceback(cli_files):
    result = _run_cli("render", str(cli_files["bad"]), "-o", str(cli_files["out"]), "--bank", str(cli_files["bank"]),
                      "--soundfont", str(fx.SOUNDFONT), "--no-progress", cwd=cli_files["dir"])
    _assert_cli_error(result.returncode, result.stdout, result.stderr, str(cli_files["bad"]), "'grumpy'")
    assert not cli_files["out"].exists()


@needs_soundfont
def test_cli_subprocess_truncated_soundfont_is_an_error(cli_files, truncated_soundfont):
    result = _run_cli("render", str(cli_files["good"]), "-o", str(cli_files["out"]), "--bank", str(cli_files["bank"]),
                      "--soundfont", str(truncated_soundfont), "--no-progress", cwd=cli_files["dir"])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("adaptive: error:") == 1
    assert str(truncated_soundfont) in result.stderr


@needs_soundfont
@pytest.mark.parametrize("case", ["truncated-soundfont", "random-bytes-stem"])
def test_cli_subprocess_stderr_is_only_the_error(cli_files, truncated_soundfont, case):
    bank, soundfont = cli_files["bank"], fx.SOUNDFONT
    if case == "truncated-soundfont":
        soundfont = truncated_soundfont
    else:
        fx.write_random_bytes(bank.parent / fx.STEM_FILE)
    result = _run_cli("render", str(cli_files["good"]), "-o", str(cli_files["out"]), "--bank", str(bank),
                      "--soundfont", str(soundfont), "--no-progress", cwd=cli_files["dir"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.lstrip().startswith("adaptive: error:"), result.stderr
