"""Sessions on a Ray cluster (docs/cluster.md): ``adaptive cluster``.

The only module of the project that imports Ray (the optional extra
``pip install '.[cluster]'``; tests/test_import_contract.py checks it), and
only :mod:`app.cli` imports it, when ``adaptive cluster`` runs.

Why Ray: it already does what a cluster of session servers needs and this
project should not write itself: starting a process on a chosen machine and
keeping it alive (an actor pinned to a node), a named, cluster-wide object
every node can call (the directory actor), noticing nodes that join or die,
and a deployment story on Kubernetes (KubeRay). The music stays in the
project's own server: each node runs an ordinary :class:`app.server.Server`.

* :class:`SessionNode` (one Ray actor per Ray node, pinned to it) runs a
  :class:`app.server.Server` on that node with its own ports: its default
  session and every session placed on it. Its session host asks the
  directory about each session it does not hold (:class:`RayPlacement`).
* :class:`Directory` (a named Ray actor, :data:`DIRECTORY_NAME` in
  :data:`NAMESPACE`) maps session id -> node and places new sessions
  (:class:`app.placement.DirectoryTable`: the least-loaded node with room).
* :func:`run_cluster` (the driver, ``adaptive cluster --address HEAD``)
  starts the directory and a node actor on every alive Ray node (and on
  nodes that join later), prints each node's endpoints, and stops them all
  on SIGINT/SIGTERM. The actors live as long as the driver (they are not
  detached): stopping it frees the ports.

A client says hello to any node; for a session hosted elsewhere, or placed
elsewhere, the node answers ``session_elsewhere`` with the hosting node's
endpoints and the client says hello there (docs/protocol.md).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from app.placement import DirectoryTable
from bridge.protocol import ProtocolError
from bridge.sessions import SessionElsewhere

log = logging.getLogger("adaptive.cluster")

NAMESPACE = "adaptive"
"""The Ray namespace of the directory and the node actors."""

DIRECTORY_NAME = "adaptive-directory"
"""The directory actor's name (``ray.get_actor(DIRECTORY_NAME, namespace=NAMESPACE)``)."""

PLACE_TIMEOUT_S = 5.0
"""Seconds a node waits for the directory's answer before refusing a hello
with ``internal`` (the directory answers in about a millisecond; its node may be gone)."""

NODE_START_TIMEOUT_S = 120.0
"""Seconds the driver waits for a node actor to start its server (importing
the engine and making the default session took 5-15 s on a loaded 2-core machine)."""

WATCH_INTERVAL_S = 5.0
"""How often (seconds) the driver looks for Ray nodes that joined or died."""

ADVERTISE_HOST_ENV = "ADAPTIVE_ADVERTISE_HOST"
"""Environment variable of a node's process: the host clients reach that node at (docs/cluster.md)."""

HEAD_RESOURCE = "node:__internal_head__"
"""The resource only Ray's head node has (how ``--no-head-sessions`` knows it)."""

NODE_NAME_CHARS = 12
"""A node's name: the first hex digits of its Ray node id."""


@ray.remote(num_cpus=0)
class Directory:
    """The cluster's directory (a named Ray actor): a
    :class:`app.placement.DirectoryTable` behind Ray calls, one at a time.
    Its methods are the table's (``register``, ``unregister``, ``place``,
    ``confirm``, ``forget``, ``snapshot``)."""

    def __init__(self) -> None:
        self.table = DirectoryTable()

    def register(self, node: str, endpoints: dict[str, Any], capacity: int) -> None:
        self.table.register(node, endpoints, capacity)

    def unregister(self, node: str) -> list[str]:
        return self.table.unregister(node)

    def place(self, session_id: str, asking: str) -> tuple[str, Any]:
        return self.table.place(session_id, asking)

    def confirm(self, session_id: str, node: str) -> None:
        self.table.confirm(session_id, node)

    def forget(self, session_id: str, node: str) -> None:
        self.table.forget(session_id, node)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.table.snapshot()


class RayPlacement:
    """The :class:`app.sessions.SessionPlacement` of one node: asks the
    directory actor (a blocking Ray call, on the session host's placement
    thread); ``forget`` and ``confirm`` are sent without waiting.

    Args:
        directory: the directory actor's handle.
        node: this node's name.
        timeout_s: :data:`PLACE_TIMEOUT_S`.
    """

    def __init__(self, directory: Any, node: str, timeout_s: float = PLACE_TIMEOUT_S) -> None:
        self.directory = directory
        self.node = node
        self.timeout_s = timeout_s

    def place(self, session_id: str) -> SessionElsewhere | None:
        """None: make it here; else the redirect to the hosting node.

        Raises:
            ProtocolError: ``not_allowed``: every node is at its cap.
            ray.exceptions.GetTimeoutError, ray.exceptions.RayError: the directory cannot be asked.
        """
        kind, value = ray.get(self.directory.place.remote(session_id, self.node), timeout=self.timeout_s)
        if kind == "here":
            return None
        if kind == "full":
            raise ProtocolError("not_allowed", value)
        return SessionElsewhere(session_id, value["host"], value["osc_port"], value["zmq_control_port"],
                                value["audio_tcp_port"])

    def confirm(self, session_id: str) -> None:
        """This node made session ``session_id``."""
        self.directory.confirm.remote(session_id, self.node)

    def forget(self, session_id: str) -> None:
        """Session ``session_id`` no longer lives here."""
        self.directory.forget.remote(session_id, self.node)


@ray.remote(num_cpus=0)
class SessionNode:
    """One node's server (a Ray actor pinned to its node): an
    :class:`app.server.Server` with the cluster's settings, its sessions
    placed by the directory, registered there with its endpoints.

    Args:
        node: its name (unique in the cluster).
        settings_values: :class:`app.settings.ServerSettings` fields
            (JSON-able), the same for every node; the recording and MIDI
            file, if asked for, go to ``STEM.NODE.SUFFIX`` (``run.jsonl`` ->
            ``run.6142eb385d28.jsonl``; its sessions' beside it, docs/sessions.md).
        advertise_host: the host clients reach this node at (None:
            ``$ADAPTIVE_ADVERTISE_HOST`` on this node, e.g. a Kubernetes
            node's external address from the downward API; else the bind
            host, or this Ray node's IP address when binding every interface).

    Raises:
        AdaptiveError: the server cannot start (a port, the SoundFont, the bank).
    """

    def __init__(self, node: str, settings_values: dict[str, Any], advertise_host: str | None) -> None:
        from app.generators import register_generators
        from app.server import Server
        from app.settings import ServerSettings

        register_generators()  # before the settings: they name a generator of the registry
        logging.basicConfig(level=logging.INFO, format=f"adaptive[{node}]: %(message)s", stream=sys.stderr)
        self.node = node
        settings_values = dict(settings_values)
        for key in ("record", "midi_file"):  # nodes may share a disk: each writes under its own name
            if settings_values.get(key):
                path = Path(settings_values[key])
                settings_values[key] = str(path.with_name(f"{path.stem}.{node}{path.suffix}"))
        settings = ServerSettings.from_values(settings_values, "")
        directory = ray.get_actor(DIRECTORY_NAME, namespace=NAMESPACE)
        self.placement = RayPlacement(directory, node)
        self.server = Server(settings, placement=self.placement)
        self.server.sessions.add_started_listener(lambda hosted: self.placement.confirm(hosted.session_id))
        self.server.start()
        host = (advertise_host or os.environ.get(ADVERTISE_HOST_ENV)
                or (settings.host if settings.host not in ("0.0.0.0", "::", "") else ray.util.get_node_ip_address()))
        self.endpoint_values = {"node": node, "host": host, "osc_port": self.server.osc.port,
                                "zmq_control_port": _port_of(self.server.zmq.control_endpoint),
                                "zmq_events_port": _port_of(self.server.zmq.events_endpoint),
                                "audio_tcp_port": self.server.audio_tcp.port,
                                "zmq_audio_port": _port_of(self.server.audio_zmq.endpoint)}
        ray.get(directory.register.remote(node, self.endpoint_values, settings.max_sessions - 1))

    def endpoints(self) -> dict[str, Any]:
        """This node's name, advertised host and bound ports."""
        return dict(self.endpoint_values)

    def stats(self) -> dict[str, Any]:
        """Its sessions now, the session host's counters, and its default
        session's blocks and underruns."""
        return {"node": self.node, "sessions": self.server.sessions.session_ids(),
                "counters": dict(self.server.sessions.counters),
                "blocks": self.server.realtime.counters["blocks"],
                "underruns": self.server.realtime.counters["underruns"]}

    def close(self) -> None:
        """Stop the server (every session ends, ``server_stop``)."""
        self.server.close()


def _port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def node_name(node_id: str) -> str:
    """A node's name from its Ray node id (its first :data:`NODE_NAME_CHARS` hex digits)."""
    return node_id[:NODE_NAME_CHARS]


class ClusterDriver:
    """The directory and a node actor per alive Ray node (``adaptive cluster``).

    Args:
        settings_values: the server settings every node runs with.
        advertise_host: as :class:`SessionNode`'s.
        head_sessions: serve on Ray's head node too (False: only on worker
            nodes, as on Kubernetes where the head pod is kept for Ray itself).

    Attributes:
        nodes: node name -> its actor handle.
        endpoints: node name -> its endpoints, once started.
    """

    def __init__(self, settings_values: dict[str, Any], advertise_host: str | None = None,
                 head_sessions: bool = True) -> None:
        self.settings_values = settings_values
        self.advertise_host = advertise_host
        self.head_sessions = head_sessions
        self.directory = Directory.options(name=DIRECTORY_NAME, namespace=NAMESPACE).remote()
        self.nodes: dict[str, Any] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}

    def add_new_nodes(self) -> list[str]:
        """Start a node actor on every alive Ray node without one, wait for
        them to serve; drop the actors of dead nodes (and their sessions
        from the directory). Returns the names of the nodes started.

        Raises:
            ray.exceptions.RayError: a node actor failed to start (its error names why).
        """
        alive = {node_name(n["NodeID"]): n["NodeID"] for n in ray.nodes()
                 if n["Alive"] and (self.head_sessions or HEAD_RESOURCE not in n.get("Resources", {}))}
        for name in [name for name in self.nodes if name not in alive]:
            log.warning("Ray node %s left: its sessions are forgotten", name)
            self.nodes.pop(name)
            self.endpoints.pop(name, None)
            self.directory.unregister.remote(name)
        started = {}
        for name, node_id in alive.items():
            if name in self.nodes:
                continue
            actor = SessionNode.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                name=f"adaptive-node-{name}", namespace=NAMESPACE, max_concurrency=4,
            ).remote(name, self.settings_values, self.advertise_host)
            self.nodes[name] = actor
            started[name] = actor.endpoints.remote()
        for name, pending in started.items():
            self.endpoints[name] = ray.get(pending, timeout=NODE_START_TIMEOUT_S)
        return list(started)

    def stats(self) -> list[dict[str, Any]]:
        """Every node's :meth:`SessionNode.stats`."""
        return ray.get([actor.stats.remote() for actor in self.nodes.values()], timeout=30)

    def close(self) -> None:
        """Stop every node's server (its sessions end, told ``server_stop``) and the actors."""
        try:
            ray.get([actor.close.remote() for actor in self.nodes.values()], timeout=30)
        except Exception:  # a node that is gone cannot be stopped: go on
            log.exception("error stopping the nodes")
        for actor in [*self.nodes.values(), self.directory]:
            ray.kill(actor)
        self.nodes.clear()


def run_cluster(address: str, settings_values: dict[str, Any], advertise_host: str | None = None,
                endpoints_file: Path | None = None, head_sessions: bool = True) -> int:
    """``adaptive cluster``: connect to the Ray cluster at ``address``
    (``HOST:PORT`` of its head, or ``auto``), serve on every node until
    SIGINT or SIGTERM; returns the exit status.

    ``endpoints_file``: where to write every node's endpoints as JSON once
    they serve (and again when nodes join or leave). ``head_sessions``: as
    :class:`ClusterDriver`'s.

    Raises:
        ConnectionError: no Ray cluster at ``address``.
    """
    logging.basicConfig(level=logging.INFO, format="adaptive: %(message)s", stream=sys.stderr)
    ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs handlers of its own
        signal.signal(signum, lambda *_: stop.set())
    driver = ClusterDriver(settings_values, advertise_host, head_sessions)
    try:
        driver.add_new_nodes()
        _announce(driver, endpoints_file)
        while not stop.wait(WATCH_INTERVAL_S):
            before = set(driver.endpoints)
            driver.add_new_nodes()
            if set(driver.endpoints) != before:
                _announce(driver, endpoints_file)
    finally:
        for stats in _safely(driver.stats):
            print(f"adaptive: node {stats['node']}: sessions {', '.join(stats['sessions'])}; default session "
                  f"{stats['blocks']} blocks, {stats['underruns']} underruns; "
                  f"{stats['counters'].get('hellos_elsewhere', 0)} hellos sent to another node", flush=True)
        driver.close()
        ray.shutdown()
    return 0


def _safely(call) -> list:
    try:
        return call()
    except Exception:
        log.exception("cannot read the nodes' figures")
        return []


def _announce(driver: ClusterDriver, endpoints_file: Path | None) -> None:
    """Print each node's endpoints; write them to ``endpoints_file`` (atomically)."""
    for name, values in sorted(driver.endpoints.items()):
        host = values["host"]
        print(f"node {name}  osc udp://{host}:{values['osc_port']}  audio tcp://{host}:{values['audio_tcp_port']}  "
              f"control tcp://{host}:{values['zmq_control_port']}  events tcp://{host}:{values['zmq_events_port']}",
              flush=True)
    if endpoints_file is not None:
        partial = endpoints_file.with_name(endpoints_file.name + ".partial")
        partial.write_text(json.dumps(driver.endpoints, indent=2, sort_keys=True), encoding="utf-8")
        partial.replace(endpoints_file)
