"""Audience mode as a show sees it over OSC (docs/audience.md): audience
phones say hello with the audience role and vote, the control client keeps
the scene and may weigh the audience, votes are rate-limited per phone, land
in the session's recording and replay bit for bit. On fake clocks, through
the same harness as tests/app/test_sessions.py (no thread, no socket)."""

from __future__ import annotations

import json

import numpy as np

from adaptive.recording import replay
from app.sessions import recording_path
from tests.app.test_sessions import Served, cues_sent, served  # noqa: F401  (the fixture)


def audience_hello(s: Served, port: int) -> dict:
    (_, name, values), = s.send("hello", port, reply_port=port, sample_rate_hz=48_000, channels=2,
                                sample_format="s16", client_name=f"phone-{port}", role="audience", cookie="",
                                proof="", session="")
    assert name == "welcome" and values["role"] == "audience"
    return values


def vote(s: Served, port: int, emotion: str = "", valence: float = 0.0, arousal: float = 0.0,
         intensity: float = -1.0) -> list:
    return s.send("audience_vote", port, emotion=emotion, valence=valence, arousal=arousal, intensity=intensity)


def test_audience_phones_vote_the_control_client_weighs_them_and_the_recording_replays(served, tmp_path):
    s = served()
    s.hello(7000)  # the control client (no credentials: control)
    s.send("scene", 7000, emotion="calm", intensity=0.3, location="")
    phones = [7101, 7102, 7103]
    for port in phones:
        audience_hello(s, port)
    s.play(0.5)
    for port in phones[:2]:
        assert vote(s, port, "afraid", intensity=0.75) == []
    assert vote(s, phones[2], "", 0.5, -0.5) == []  # a point
    # The mean of afraid, afraid and (0.5, -0.5) is (-0.23, 0.3): nearer cue "high" than "low".
    assert cues_sent(s.play(2.5), 7000) == ["high"]  # on the next bar line
    # An audience phone may not set the scene: forbidden, naming the role needed.
    (_, name, error), = s.send("scene", phones[0], emotion="calm", intensity=0.1, location="")
    assert name == "error" and error["code"] == "forbidden"
    assert "needs the control role" in error["message"] and "has the audience role" in error["message"]
    (_, name, error), = s.send("audience_weight", phones[0], weight=0.0)
    assert error["code"] == "forbidden"
    assert s.send("audience_weight", 7000, weight=0.5) == []
    # Half the audience, half calm (0.4, -0.6): (0.08, -0.15), back to "low"; the phones hear it too.
    heard = s.play(2.5)
    assert cues_sent(heard, 7000) == ["low"] and cues_sent(heard, phones[0]) == ["low"]
    default = s.host.default
    served_audio = np.concatenate(s.audio["default"])
    default.realtime.stop()
    lines = [json.loads(line) for line in recording_path(tmp_path / "run.jsonl", "default").read_text().splitlines()]
    votes = [line for line in lines if line.get("type") == "audience_vote"]
    assert [(line["emotion"], line["valence"], line["intensity"]) for line in votes] == [
        ("afraid", None, 0.75), ("afraid", None, 0.75), (None, 0.5, None)]
    assert len({line["voice"] for line in votes}) == 3 and all(len(line["voice"]) < 32 for line in votes)
    assert [line["weight"] for line in lines if line.get("type") == "audience_weight"] == [0.5]
    replayed = replay(recording_path(tmp_path / "run.jsonl", "default"))
    assert np.array_equal(replayed[: len(served_audio)], served_audio)


def test_an_audience_phone_voting_past_ten_a_second_is_answered_rate_limited_and_counted(served):
    s = served()
    audience_hello(s, 7101)
    answers = [vote(s, 7101, "tense") for _ in range(12)]  # at one instant of the fake clock
    assert answers[:10] == [[]] * 10
    for answer in answers[10:]:
        (_, name, error), = answer
        assert name == "error" and error["code"] == "rate_limited" and "at most 10 a second" in error["message"]
    assert s.osc.counters["rejected_rate_limited"] == 2 and s.osc.dispatcher.counters["votes_rate_limited"] == 2
    s.play(0.55)  # session time 25 blocks (0.53 s) later: five tokens back (the bucket counts on the session clock)
    assert [vote(s, 7101, "tense") for _ in range(5)] == [[]] * 5
    assert vote(s, 7101, "tense")[0][1] == "error"


def test_adaptive_send_vote_takes_a_name_or_a_point_and_an_optional_intensity():
    import pytest

    from adaptive.errors import AdaptiveError
    from app.cli import _send_values

    assert _send_values("vote", ["tense"]) == {"emotion": "tense", "valence": 0.0, "arousal": 0.0, "intensity": -1.0}
    assert _send_values("vote", ["tense", "0.8"])["intensity"] == 0.8
    assert _send_values("vote", ["-0.5", "0.25", "1"]) == {"emotion": "", "valence": -0.5, "arousal": 0.25,
                                                           "intensity": 1.0}
    with pytest.raises(AdaptiveError, match=r"vote takes EMOTION \[INTENSITY\] or VALENCE AROUSAL \[INTENSITY\]"):
        _send_values("vote", [])
    with pytest.raises(AdaptiveError, match=r"argument 'valence' is 2.0 \(allowed: a number from -1 to 1\)"):
        _send_values("vote", ["2", "0"])
