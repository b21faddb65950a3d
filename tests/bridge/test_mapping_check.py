"""Mapping changes checked in a child process (issue 13: a ping waited behind
the mapping thread's checking, which held the interpreter's lock): the same
answers as checking in the server's own process, the server's own bank in
the result, a dead child replaced, and a failed check answered, not lost."""

from __future__ import annotations

import pytest

from adaptive.mapping import parse_mapping_text
from bridge.mapping_check import CheckerError, InProcessChecker, ProcessChecker
from bridge.mapping_watch import MappingControl, mapping_replies
from tests.helpers import FakeClock, wait_until

QUIET = "# the designer's notes\n[smoothing]\nhysteresis = 0.15\n"
SETS = [("smoothing.hysteresis", "0.4"),
        ("cues.low.layers.upper.gain_curve", "[[0, -inf], [1, -3]]"),
        ("smoothing.hysteresis", "9"),  # refused: over the schema's limit
        ("emotions.made_up", "[0.1, 0.2]"),
        ("smoothing.hysterisis", "0.1"),  # refused: unknown key
        ("transitions", '[{"from": "*", "to": "high", "exit": "next_beat"}]')]


@pytest.fixture
def checker():
    checker = ProcessChecker(timeout_seconds=60.0)
    yield checker
    checker.close()


def test_a_child_process_gives_the_same_answers_as_this_process(tone_bank, checker):
    bank = tone_bank()
    here = MappingControl(bank, parse_mapping_text(QUIET, bank), lambda change: None)
    there_changes = []
    there = MappingControl(bank, parse_mapping_text(QUIET, bank), there_changes.append, checker=checker)
    for path, value in SETS:
        answer = mapping_replies("mapping_set", {"path": path, "value": value}, here)
        assert mapping_replies("mapping_set", {"path": path, "value": value}, there) == answer, path
    assert there.current.text == here.current.text  # so a recording's digests and replay are unchanged
    assert there.current.mapping == here.current.mapping
    assert there.counters["sets"] == 4 and there.counters["rejected_sets"] == 2
    # The change handed to the session plays with the server's own bank (sent by reference, not copied).
    assert there_changes[-1].resolved is there.current and there.current.bank is bank
    assert checker.starts == 1  # one child for every check
    # A reloaded file: the same mapping and the same lint report.
    text = QUIET + "[cues.low.layers.upper]\nfade_beats = 2\n"
    mine, theirs = InProcessChecker().check_file(bank, text, "m.toml"), checker.check_file(bank, text, "m.toml")
    assert theirs.report == mine.report and theirs.resolved.mapping == mine.resolved.mapping
    broken = checker.check_file(bank, text + "[[transitions]]\nto = 'hgih'\n", "m.toml")
    assert broken.resolved is None and "unknown cue 'hgih'" in broken.report


def test_a_child_that_died_is_replaced(tone_bank, checker):
    bank = tone_bank()
    control = MappingControl(bank, parse_mapping_text(QUIET, bank), lambda change: None, checker=checker)
    assert control.set("smoothing.hysteresis", "0.3") == "0.3"
    checker._child.kill()
    checker._child.wait()
    assert control.set("smoothing.hysteresis", "0.35") == "0.35"
    assert checker.starts == 2


class FailingOnce:
    """A checker whose child fails the first check, then works."""

    def __init__(self) -> None:
        self.inner = InProcessChecker()
        self.failed = False

    def check_set(self, *args):
        if not self.failed:
            self.failed = True
            raise CheckerError("the mapping checker process failed (EOFError); nothing changed, send it again")
        return self.inner.check_set(*args)


def test_a_failed_check_is_answered_and_the_next_change_works(tone_bank):
    bank = tone_bank()
    control = MappingControl(bank, parse_mapping_text(QUIET, bank), lambda change: None, clock=FakeClock(),
                             checker=FailingOnce())
    control.start()
    answers: list = []
    try:
        assert control.request_set("smoothing.hysteresis", "0.2", answers.extend) == []
        assert control.request_set("smoothing.hysteresis", "0.3", answers.extend) == []
        assert wait_until(lambda: len(answers) == 2, timeout_seconds=10.0)
    finally:
        control.close()
    (first, failed), (second, applied) = answers
    assert first == "mapping_error" and "CheckerError" in failed["message"] and "nothing changed" in failed["message"]
    assert second == "mapping_value" and applied["value"] == "0.3"
    assert control.counters["internal_errors"] == 1 and control.current.text.endswith("hysteresis = 0.3\n")
