"""The cluster's directory (app/placement.py): where a session lives, and the
rule that places a new one (the fewest sessions among nodes with room; on a
tie the node asked, then the first to join), on a fake clock."""

from __future__ import annotations

import pytest

from app.placement import PENDING_S, DirectoryTable
from tests.helpers import FakeClock


def endpoints(port: int) -> dict:
    return {"host": "127.0.0.1", "osc_port": port, "zmq_control_port": port + 3, "audio_tcp_port": port + 1}


@pytest.fixture
def table():
    clock = FakeClock()
    directory = DirectoryTable(clock)
    directory.register("a", endpoints(9000), capacity=2)
    directory.register("b", endpoints(9100), capacity=2)
    directory.clock_ = clock
    return directory


def test_new_sessions_go_to_the_least_loaded_node_and_stay_there(table):
    assert table.place("s1", asking="a") == ("here", None)  # a tie: the node asked keeps it
    assert table.place("s2", asking="a") == ("elsewhere", endpoints(9100))  # b has fewer now
    assert table.place("s2", asking="b") == ("here", None)  # the client followed the redirect
    assert table.place("s1", asking="b") == ("elsewhere", endpoints(9000))  # a session stays where it lives
    table.confirm("s2", "b")
    assert table.snapshot()["a"]["sessions"] == ["s1"] and table.snapshot()["b"]["sessions"] == ["s2"]


def test_a_full_cluster_refuses_naming_each_nodes_cap(table):
    for session_id in ("s1", "s2", "s3", "s4"):
        kind, _ = table.place(session_id, asking="a")
        assert kind in ("here", "elsewhere")
    kind, message = table.place("s5", asking="b")
    assert kind == "full" and "a 2/2" in message and "b 2/2" in message
    table.forget("s1", "a")
    assert table.place("s5", asking="b") == ("elsewhere", endpoints(9000))


def test_a_redirect_never_followed_stops_counting_after_the_pending_time(table):
    assert table.place("s1", asking="a") == ("here", None)
    assert table.place("s2", asking="a")[0] == "elsewhere"  # pending on b
    assert table.snapshot()["b"]["pending"] == ["s2"]
    table.clock_.advance(PENDING_S)
    assert table.snapshot()["b"] == {"endpoints": endpoints(9100), "capacity": 2, "sessions": [], "pending": []}
    # Asked again, s2 is placed anew (a tie again, a has 1 and b has 0: b).
    assert table.place("s2", asking="a")[0] == "elsewhere"


def test_forget_only_from_the_node_that_hosts_it_and_unregister_drops_a_nodes_sessions(table):
    table.place("s1", asking="a")
    table.forget("s1", "b")  # a stale word from another node changes nothing
    assert table.place("s1", asking="b") == ("elsewhere", endpoints(9000))
    assert table.unregister("a") == ["s1"]
    assert table.place("s1", asking="b") == ("here", None)


def test_a_node_with_no_room_is_never_chosen_and_bad_registrations_are_refused(table):
    table.register("c", endpoints(9200), capacity=0)
    for n in range(4):
        assert table.place(f"s{n}", asking="c")[0] == "elsewhere"
    with pytest.raises(ValueError, match="osc_port"):
        table.register("d", {"host": "x"}, capacity=1)
    with pytest.raises(ValueError, match="capacity"):
        table.register("d", endpoints(9300), capacity=-1)
