"""The schedule: stamped actions run in frame order, then in the order scheduled."""

from __future__ import annotations

from adaptive.events import EventKind
from adaptive.schedule import Schedule


def test_actions_run_by_frame_then_by_order_with_frame_now_set():
    schedule = Schedule()
    ran = []
    schedule.at(10, lambda: ran.append(("b", schedule.frame_now)))
    schedule.at(5, lambda: ran.append(("a", schedule.frame_now)))
    schedule.at(10, lambda: ran.append(("c", schedule.frame_now)))
    assert schedule.next_frame(100) == 5
    schedule.run_due(9)
    assert ran == [("a", 9)]  # run at the position reached, which is at or after its frame
    schedule.run_due(10)
    assert ran == [("a", 9), ("b", 10), ("c", 10)]
    assert schedule.next_frame(100) == 100


def test_a_cancelled_action_does_not_run_and_actions_may_schedule_more():
    schedule = Schedule()
    ran = []
    cancelled = schedule.at(3, lambda: ran.append("cancelled"))
    schedule.at(3, lambda: schedule.at(3, lambda: ran.append("scheduled by an action")))
    schedule.cancel(cancelled)
    schedule.run_due(3)
    assert ran == ["scheduled by an action"]


def test_events_are_kept_with_their_frame_and_kind():
    schedule = Schedule()
    schedule.emit(7, EventKind.BAR, cue="x", bar_index=0)
    (event,) = schedule.events
    assert (event.frame, event.kind, event.data) == (7, "bar", {"cue": "x", "bar_index": 0})
