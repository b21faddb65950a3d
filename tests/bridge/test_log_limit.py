"""Rate-limited warnings: the first of a kind, then a count."""

from __future__ import annotations

import logging

import pytest

from bridge.log_limit import RateLimitedLog
from tests.helpers import FakeClock


def test_repeated_warnings_are_logged_once_per_window_with_the_count_left_out(caplog):
    clock = FakeClock()
    limited = RateLimitedLog(logging.getLogger("test.limit"), window_seconds=10.0, clock=clock)
    with caplog.at_level("WARNING", logger="test.limit"):
        logged = [limited.warning("rejected_malformed", "rejected %d", n) for n in range(1235)]
        assert limited.warning("rejected_too_large", "too large") is True  # another kind: its own window
        clock.advance(9.9)
        assert limited.warning("rejected_malformed", "rejected %d", 9999) is False
        clock.advance(0.2)
        assert limited.warning("rejected_malformed", "rejected %d", 10_000) is True
    assert logged[0] is True and not any(logged[1:])
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["rejected 0", "too large", "rejected 10000 (and 1235 more like this in the last 10 s)"]
    limited.warning("rejected_malformed", "x")
    caplog.clear()
    with caplog.at_level("WARNING", logger="test.limit"):
        limited.flush()
    assert [record.getMessage() for record in caplog.records] == [
        "1 more rejected_malformed in the last 10 s, not logged one by one"]
    with pytest.raises(ValueError, match="window_seconds must be > 0"):
        RateLimitedLog(logging.getLogger("x"), window_seconds=0)
