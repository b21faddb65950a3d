"""The cluster's directory, as plain data: which node hosts which session,
and where a new session goes (docs/cluster.md).

:class:`app.cluster.Directory` (a named Ray actor) holds one
:class:`DirectoryTable`; the session host of every node asks it about each
session it does not hold (:class:`app.sessions.SessionPlacement`). Kept free
of Ray so the rule is tested without a cluster (tests/app/test_placement.py).

**The rule.** A session that lives somewhere stays there. A new one goes to
the node with the fewest sessions (made, or placed and not yet made) among
those with room (a node has room for its ``max_sessions`` less its own
default session); on a tie, to the node that was asked (the client is
already there: no redirect), then to the node that joined first. With no
room anywhere the hello is refused, naming the cap.

**Placed, not yet made.** A session placed on another node counts there at
once (so a burst of hellos spreads), but a client may never follow its
redirect: the hosting node confirms the session when it has made it
(:meth:`DirectoryTable.confirm`), and a placement not confirmed within
:data:`PENDING_S` is dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

PENDING_S = 30.0
"""Seconds a session placed on a node stays counted there before that node
says it made it (making one takes 0.5-3 s; a client has 15 s to follow its
redirect and say hello, docs/sessions.md)."""

ENDPOINT_KEYS = ("host", "osc_port", "zmq_control_port", "audio_tcp_port")
"""What a node tells the directory of itself: the fields of a ``session_elsewhere``."""


@dataclass
class NodeRecord:
    """One node of the directory.

    Attributes:
        name: its name (unique in the cluster; the Ray node id's first 12 hex digits).
        endpoints: :data:`ENDPOINT_KEYS` -> value (the node's advertised host and bound ports).
        capacity: sessions it may host besides its default one (its ``max_sessions`` - 1).
        order: when it joined (0 for the first).
        sessions: session id -> None (made there) or the directory clock
            seconds when it was placed there and not yet made.
    """

    name: str
    endpoints: dict[str, Any]
    capacity: int
    order: int
    sessions: dict[str, float | None] = field(default_factory=dict)


class DirectoryTable:
    """Session id -> hosting node, and the placement rule (module docstring).
    Not thread-safe: a Ray actor runs one call at a time.

    Args:
        clock: monotonic seconds (tests pass a fake one).
        pending_s: :data:`PENDING_S`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, pending_s: float = PENDING_S) -> None:
        self.clock = clock
        self.pending_s = pending_s
        self.nodes: dict[str, NodeRecord] = {}
        self.where: dict[str, str] = {}  # session id -> node name
        self._joined = 0

    def register(self, node: str, endpoints: dict[str, Any], capacity: int) -> None:
        """Node ``node`` serves at ``endpoints`` and may host ``capacity``
        sessions (again after a restart: its sessions are forgotten).

        Raises:
            ValueError: an endpoint key missing, or a negative capacity.
        """
        missing = [key for key in ENDPOINT_KEYS if key not in endpoints]
        if missing or capacity < 0:
            raise ValueError(f"node {node!r}: endpoints need {', '.join(ENDPOINT_KEYS)} (missing: {missing}) and a "
                             f"capacity >= 0 (got {capacity})")
        self.unregister(node)
        self.nodes[node] = NodeRecord(node, {key: endpoints[key] for key in ENDPOINT_KEYS}, int(capacity),
                                      self._joined)
        self._joined += 1

    def unregister(self, node: str) -> list[str]:
        """Node ``node`` left (stopped, or its Ray node died): its sessions
        are forgotten (their clients say hello again and are placed anew);
        returns their ids."""
        record = self.nodes.pop(node, None)
        if record is None:
            return []
        for session_id in record.sessions:
            self.where.pop(session_id, None)
        return list(record.sessions)

    def _expire(self) -> None:
        now = self.clock()
        for record in self.nodes.values():
            stale = [s for s, placed in record.sessions.items() if placed is not None and now - placed >= self.pending_s]
            for session_id in stale:
                del record.sessions[session_id]
                self.where.pop(session_id, None)

    def place(self, session_id: str, asking: str) -> tuple[str, Any]:
        """Where session ``session_id`` lives, asked by node ``asking``,
        placing it by the rule if it lives nowhere.

        Returns:
            ``("here", None)``: on ``asking`` (make it, or it is made);
            ``("elsewhere", endpoints)``: on another node (its :data:`ENDPOINT_KEYS`);
            ``("full", message)``: nowhere has room (the message names the caps).
        """
        self._expire()
        node = self.where.get(session_id)
        if node is None:
            candidates = [r for r in self.nodes.values() if len(r.sessions) < r.capacity]
            if not candidates:
                caps = ", ".join(f"{r.name} {len(r.sessions)}/{r.capacity}" for r in self.nodes.values()) or "none"
                return ("full", f"every node of the cluster holds as many sessions as it may (sessions/cap by node: "
                                f"{caps}; each node's max_sessions less its default session): end a session, wait "
                                "for an idle one to end, or add a node")
            best = min(candidates, key=lambda r: (len(r.sessions), r.name != asking, r.order))
            node = best.name
            self.where[session_id] = node
            best.sessions[session_id] = None if node == asking else self.clock()
        if node == asking:
            return ("here", None)
        return ("elsewhere", dict(self.nodes[node].endpoints))

    def confirm(self, session_id: str, node: str) -> None:
        """Node ``node`` made session ``session_id`` (it stops counting as
        pending; a session made on a node the directory did not place it on,
        e.g. after the directory restarted, is recorded there)."""
        record = self.nodes.get(node)
        if record is None:
            return
        other = self.where.get(session_id)
        if other is not None and other != node and other in self.nodes:
            self.nodes[other].sessions.pop(session_id, None)
        self.where[session_id] = node
        record.sessions[session_id] = None

    def forget(self, session_id: str, node: str) -> None:
        """Session ``session_id`` no longer lives on ``node`` (it ended, or
        could not be made); nothing if the directory has it elsewhere."""
        if self.where.get(session_id) != node:
            return
        del self.where[session_id]
        record = self.nodes.get(node)
        if record is not None:
            record.sessions.pop(session_id, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every node: its endpoints, capacity and sessions (``pending``:
        placed, not yet made), in the order they joined."""
        self._expire()
        return {r.name: {"endpoints": dict(r.endpoints), "capacity": r.capacity,
                         "sessions": sorted(s for s, placed in r.sessions.items() if placed is None),
                         "pending": sorted(s for s, placed in r.sessions.items() if placed is not None)}
                for r in sorted(self.nodes.values(), key=lambda r: r.order)}
