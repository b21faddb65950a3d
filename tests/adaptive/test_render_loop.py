"""One render loop for many sessions (adaptive/realtime.py, ``RenderLoop``):
each session keeps its own clock, frames, recording and counters; the loop
renders them on one thread, one wake-up per block period, the least-ahead
session first. On a fake clock, the loop driven pass by pass (``run_once``),
except the thread's lifetime (integration)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adaptive.realtime import RealtimeSession, RenderLoop
from adaptive.recording import Recording, replay
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session
from tests.helpers import FakeClock, wait_until

RATE = 48_000
BLOCK = 1024


class Collector:
    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.sequences: list[int] = []

    def __call__(self, block) -> None:
        self.audio.append(block.audio.copy())
        self.sequences.append(block.sequence)

    def joined(self) -> np.ndarray:
        return np.concatenate(self.audio)


def runner_on(loop, clock, tone_bank, soundfont, tmp_path=None, name="s", seed=7):
    session = Session(tone_bank(), soundfont=soundfont, sample_rate_hz=RATE, seed=seed)
    recording = None
    if tmp_path is not None:
        recording = Recording.for_session(tmp_path / f"{name}.jsonl", session, tmp_path / "bank.toml")
    runner = RealtimeSession(session, block_frames=BLOCK, lookahead_ms=40.0, clock=clock,
                             sleep=getattr(clock, "sleep", time.sleep), recording=recording, loop=loop)
    sink = Collector()
    runner.add_sink(sink)
    return runner, sink


def play(loop: RenderLoop, clock: FakeClock, seconds: float, inputs=None) -> int:
    """Drive the loop for ``seconds`` of the fake clock; ``inputs``: {time s: [(runner, input)]}, submitted
    when the clock passes them. Returns the loop's sleeps."""
    inputs = sorted((inputs or {}).items())
    end = clock.now + seconds
    start = clock.now
    sleeps = 0
    while clock.now < end:
        while inputs and clock.now - start >= inputs[0][0]:
            for runner, item in inputs.pop(0)[1]:
                runner.submit(item)
        wait = loop.run_once()
        if wait > 0.0:
            clock.sleep(wait)
            sleeps += 1
    return sleeps


def test_sessions_on_one_loop_replay_bit_for_bit_and_stay_independent(tone_bank, soundfont, tmp_path):
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    a, a_sink = runner_on(loop, clock, tone_bank, soundfont, tmp_path, "a")
    b, b_sink = runner_on(loop, clock, tone_bank, soundfont, tmp_path, "b")
    a.submit(SceneUpdate(emotion="calm", intensity=0.2))
    b.submit(SceneUpdate(emotion="calm", intensity=0.2))
    a.start()
    clock.advance(0.013)  # b joins later: its own clock starts later
    b.start()
    # Only a hears the stinger and the intensity changes.
    play(loop, clock, 3.0, {0.5: [(a, SceneUpdate(intensity=0.9))], 1.1: [(a, StingerTrigger("hit"))],
                            1.7: [(a, SceneUpdate(intensity=0.1))]})
    a.stop()
    b.stop()
    for runner, sink, name in ((a, a_sink, "a"), (b, b_sink, "b")):
        served = sink.joined()
        assert served.shape[0] == runner.frames_rendered > 2 * RATE
        assert sink.sequences == list(range(len(sink.sequences)))
        assert runner.counters["underruns"] == 0
        replayed = replay(tmp_path / f"{name}.jsonl", soundfont=soundfont)
        assert np.array_equal(replayed[: served.shape[0]], served)
    # b's audio is that of a session alone given only b's inputs.
    clock2 = FakeClock(max_sleep_seconds=0.05)
    loop2 = RenderLoop(clock2.sleep, start_thread=False)
    alone, alone_sink = runner_on(loop2, clock2, tone_bank, soundfont)
    alone.submit(SceneUpdate(emotion="calm", intensity=0.2))
    alone.start()
    play(loop2, clock2, 3.0)
    alone.stop()
    n = min(b.frames_rendered, alone.frames_rendered)
    assert np.array_equal(alone_sink.joined()[:n], b_sink.joined()[:n])
    assert not np.array_equal(a_sink.joined()[:n], b_sink.joined()[:n])  # a's inputs changed a only
    for runner in (a, b, alone):
        runner.session.close()


def test_one_wake_up_per_block_period_whatever_the_number_of_sessions(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    runners = []
    for i in range(3):
        runner, _ = runner_on(loop, clock, tone_bank, soundfont)
        runner.start()
        runners.append(runner)
        loop.run_once()
        clock.advance(0.007 * (i + 1))  # joined at different moments, out of phase
    play(loop, clock, 0.5)  # settle
    sleeps = play(loop, clock, 2.0)
    periods = 2.0 / (BLOCK / RATE)
    assert sleeps <= periods + 2  # one wake-up per period, not three
    assert all(r.counters["underruns"] == 0 for r in runners)
    frames = [r.frames_rendered for r in runners]
    assert max(frames) - min(frames) <= BLOCK  # each kept pace on its own clock
    for runner in runners:
        runner.stop()
        runner.session.close()


def test_a_session_ending_leaves_the_loop_playing_the_others(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    a, _ = runner_on(loop, clock, tone_bank, soundfont)
    b, b_sink = runner_on(loop, clock, tone_bank, soundfont)
    a.start()
    b.start()
    play(loop, clock, 1.0)
    a.stop()
    assert not a.running and b.running
    ended_at = a.frames_rendered
    blocks_before = len(b_sink.audio)
    play(loop, clock, 1.0)
    assert a.frames_rendered == ended_at  # nothing more of it is rendered
    assert len(b_sink.audio) - blocks_before >= int(1.0 * RATE / BLOCK) - 1
    assert b.counters["underruns"] == 0 and len(loop) == 1
    b.stop()
    assert len(loop) == 0
    for runner in (a, b):
        runner.session.close()


def test_a_session_that_fails_leaves_alone_and_the_others_play_on(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    bad, _ = runner_on(loop, clock, tone_bank, soundfont)
    good, good_sink = runner_on(loop, clock, tone_bank, soundfont)
    bad.start()
    good.start()
    play(loop, clock, 0.3)
    bad.session.render = lambda n: (_ for _ in ()).throw(RuntimeError("a bug in this session"))
    play(loop, clock, 1.0)
    assert isinstance(bad.failure, RuntimeError) and not bad.running
    assert good.failure is None and good.running and good.counters["underruns"] == 0
    assert good_sink.sequences == list(range(len(good_sink.sequences)))
    bad.stop()  # as the host does for a failed session: returns at once
    good.stop()
    for runner in (bad, good):
        runner.session.close()


def test_the_session_with_least_audio_ahead_renders_first(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    slow, _ = runner_on(loop, clock, tone_bank, soundfont)
    other, _ = runner_on(loop, clock, tone_bank, soundfont)
    slow.start()
    other.start()
    play(loop, clock, 0.2)
    order: list[str] = []
    for runner, name in ((slow, "slow"), (other, "other")):
        render = runner.session.render

        def recorded(n, render=render, name=name):
            order.append(name)
            return render(n)

        runner.session.render = recorded
    # slow falls behind (a 60 ms stall): it is rendered first, one block per pass, not in a burst.
    clock.advance(0.06)
    assert loop.run_once() == 0.0
    assert order[0] == "slow" and order.count("slow") == 1
    play(loop, clock, 0.5)
    assert slow.counters["underruns"] == 1 and other.counters["underruns"] == 1
    assert slow.frames_ahead() > 0 and other.frames_ahead() > 0  # both caught up
    for runner in (slow, other):
        runner.stop()
        runner.session.close()


@pytest.mark.integration
def test_the_loop_thread_starts_with_the_first_session_and_ends_with_the_last(tone_bank, soundfont):
    loop = RenderLoop()
    a, a_sink = runner_on(loop, time.monotonic, tone_bank, soundfont)
    a.start()
    assert loop.running
    assert wait_until(lambda: len(a_sink.audio) >= 5, timeout_seconds=10.0)
    b, b_sink = runner_on(loop, time.monotonic, tone_bank, soundfont)
    b.start()
    assert wait_until(lambda: len(b_sink.audio) >= 5, timeout_seconds=10.0)
    a.stop()
    assert loop.running
    b.stop()
    assert wait_until(lambda: not loop.running, timeout_seconds=5.0)
    # A session joining later starts it again.
    c, c_sink = runner_on(loop, time.monotonic, tone_bank, soundfont)
    c.start()
    assert wait_until(lambda: len(c_sink.audio) >= 3, timeout_seconds=10.0)
    c.stop()
    for runner in (a, b, c):
        runner.session.close()


def test_a_sessions_server_time_is_fixed_when_start_returns(tone_bank, soundfont):
    # A client may sync its clock as soon as the welcome comes: the loop must not move the session's time later.
    clock = FakeClock(max_sleep_seconds=0.05)
    loop = RenderLoop(clock.sleep, start_thread=False)
    first, _ = runner_on(loop, clock, tone_bank, soundfont)
    first.start()
    clock.advance(0.0123)
    second, _ = runner_on(loop, clock, tone_bank, soundfont)
    second.start()
    assert second.frames_rendered >= second.lookahead_frames  # its first lookahead rendered by start()
    before = second.server_time_seconds()
    assert 0.0 <= before < BLOCK / RATE  # moved back onto the loop's grid by less than a block
    loop.run_once()
    assert second.server_time_seconds() == before
    play(loop, clock, 0.5)
    assert second.counters["underruns"] == 0 and first.counters["underruns"] == 0
    for runner in (first, second):
        runner.stop()
        runner.session.close()
