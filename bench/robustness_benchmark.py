#!/usr/bin/env python3
"""Security and robustness benchmark: hostile input must not cost the music.

Run by hand (not in CI), from a source checkout::

    python bench/robustness_benchmark.py                    # every case, print the tables
    python bench/robustness_benchmark.py --only zmq tcp     # some cases
    python bench/robustness_benchmark.py --write-docs       # also rewrite its section of docs/benchmarks.md
    python bench/robustness_benchmark.py --only zmq --server-repo /tmp/old-checkout   # the same against older code

Cases (see ``bench/README.md``); the server is ``adaptive serve`` in a
subprocess with the default bank (what a game would run), the attacker a
child process on loopback with no credentials:

* ``zmq`` — ``--zmq-frames`` (20 000) ZeroMQ control frames, an equal share
  of each kind (invalid JSON, wrong types, mutated valid messages, 10 000-deep
  nesting, 5 000-digit integers, frames of 64 KiB-1 MiB, frames over 1 MiB,
  extra frames), interleaved, as fast as the server takes them. Figures:
  whether the server survived, underruns, longest block, replies per kind,
  internal errors, bytes of log.
* ``mapping`` — ``/adaptive/mapping/set`` at ``--set-rate`` (20) a second for
  ``--set-seconds`` (30), each adding a key, while a second client pings 20
  times a second: ping round trip (p50/p99/max), sets answered/refused,
  recording growth, underruns.
* ``tcp`` — one TCP audio reader at 1/10 real time and ``--idle-readers``
  (16) that never read, for ``--tcp-seconds`` (40): blocks the slow reader
  received and lost, how far behind real time its newest block was, whether
  it was disconnected, whether the idle ones were dropped (freeing their
  slots) and a normal reader could connect.
* ``tcp_credentials`` — ``adaptive serve --credentials``, twice
  ``--idle-readers`` connections that send no token and never read, each
  re-opened as soon as the server drops it, for ``--tcp-seconds``: the
  blocks an authenticated listener gets in 1 s, every 5 s.
* ``mapping_file`` — the watched mapping file replaced by a valid one padded
  to ``--padded-mb`` (50) MB: refused or not, the server's peak memory, underruns.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.server_benchmark import ServerProcess, summary  # noqa: E402  (after the path is set)

SECTION_TITLE = "## Security and robustness"
DOCS = REPO / "docs" / "benchmarks.md"
SAMPLE_RATE_HZ = 48_000
BLOCK_BYTES = 32 + 1024 * 2 * 2  # one TCP audio block: header + 1024 frames of int16 stereo
SLOW_READER_RCVBUF_BYTES = 8 * 1024
"""The slow reader's own receive buffer (Linux doubles it): what it buffers is
read at a tenth of real time, so each KiB there is 50 ms behind whatever the server does."""

ZMQ_KINDS = ("invalid_json", "wrong_types", "mutated_valid", "deep_nesting", "huge_integer", "large_frame",
             "oversized_frame", "extra_frames", "valid")


# =============================================================================
# The server under test
# =============================================================================
class Server(ServerProcess):
    """``adaptive serve`` from ``repo`` (this checkout by default), with its
    ZeroMQ control endpoint read from what it prints, and its log counted."""

    def __init__(self, repo: Path, record: Path | None = None, extra: list[str] | None = None) -> None:
        import bench.server_benchmark as base

        saved = base.REPO
        base.REPO = repo  # ServerProcess runs `python -m app.cli serve` in base.REPO
        try:
            super().__init__(record=record, extra=extra)
        finally:
            base.REPO = saved
        match = None
        deadline = time.monotonic() + 10.0  # the endpoint lines come after "serving" (read by another thread)
        while time.monotonic() < deadline:
            match = re.search(r"control\s+(tcp://\S+)", "".join(self.stdout))
            if match is not None:
                break
            time.sleep(0.05)
        self.control_endpoint = match.group(1) if match else None

    def log_bytes(self) -> int:
        return sum(len(line.encode()) for line in self.stderr)

    def alive(self) -> bool:
        return self.proc.poll() is None


# =============================================================================
# Case: hostile ZeroMQ control frames
# =============================================================================
def zmq_frames(count: int, seed: int = 13) -> list[tuple[str, list[bytes]]]:
    """``count`` frames, an equal share of each kind in ``ZMQ_KINDS``, shuffled: ``(kind, frames)``."""
    rng = random.Random(seed)
    valid = [json.dumps(m).encode() for m in (
        {"type": "intensity", "intensity": 0.5}, {"type": "scene", "emotion": "calm", "intensity": 0.6,
                                                  "location": "forest"},
        {"type": "ping", "sequence": 7}, {"type": "emotion", "emotion": "calm"})]

    def make(kind: str) -> list[bytes]:
        if kind == "invalid_json":
            return [rng.choice([b"{", b"{'type': 1}", b"\xff\xfe", b"nul", b'{"type": "ping",}',
                                bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))])]
        if kind == "wrong_types":
            return [json.dumps(rng.choice([
                {"type": "intensity", "intensity": "loud"}, {"type": 5}, [1, 2, 3], {"type": "scene"},
                {"type": "ping", "sequence": -1.5}, {"type": "emotion", "emotion": None},
                {"type": "intensity", "intensity": [0.5] * 100}, {"type": "hello", "reply_port": {"a": 1}}])).encode()]
        if kind == "mutated_valid":
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            return [bytes(data)]
        if kind == "deep_nesting":
            depth = 10_000
            return [rng.choice([b"[" * depth + b"]" * depth,
                                b'{"type": "intensity", "intensity": ' + b"[" * depth + b"]" * depth + b"}"])]
        if kind == "huge_integer":
            return [b'{"type": "ping", "sequence": ' + b"9" * 5000 + b"}"]
        if kind == "large_frame":
            return [b'{"type": "ping", "pad": "' + b"x" * rng.randint(64 * 1024, 1000 * 1024) + b'"}']
        if kind == "oversized_frame":
            return [b"x" * (1024 * 1024 + 1024)]
        if kind == "extra_frames":
            return [b"junk", rng.choice(valid)]
        return [rng.choice(valid)]

    share = count // len(ZMQ_KINDS)
    frames = [(kind, make(kind)) for kind in ZMQ_KINDS for _ in range(share)]
    rng.shuffle(frames)
    return frames


def zmq_attacker(endpoint: str, count: int) -> None:
    """Child process: send the frames, read replies as they come; print what came back."""
    import zmq

    frames = zmq_frames(count)
    context = zmq.Context()

    def connect():
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100)
        sock.connect(endpoint)
        return sock

    sock = connect()
    replies: dict[str, int] = {}
    codes: dict[str, int] = {}
    sent: dict[str, int] = {}
    pending: list[str] = []  # kinds of frames sent whose answer has not come (in order: one socket)

    def drain(timeout_ms: int) -> None:
        while sock.poll(timeout_ms):
            message = json.loads(sock.recv_multipart()[-1])
            timeout_ms = 0
            kind = pending.pop(0) if pending else "?"
            replies[kind] = replies.get(kind, 0) + 1
            code = message.get("code", message["type"])
            codes[code] = codes.get(code, 0) + 1

    start = time.monotonic()
    for kind, parts in frames:
        if kind == "oversized_frame":  # libzmq drops the connection: a socket of its own, fresh each time
            throwaway = connect()
            throwaway.send_multipart(parts)
            sent[kind] = sent.get(kind, 0) + 1
            throwaway.poll(20)
            throwaway.close()
            continue
        sock.send_multipart(parts)
        sent[kind] = sent.get(kind, 0) + 1
        if kind not in ("valid",) or json.loads(parts[-1]).get("type") == "ping":
            pending.append(kind)
        drain(0)
    drain(2000)
    seconds = time.monotonic() - start
    sock.close()
    context.term()
    print(json.dumps({"sent": sent, "replies": replies, "codes": codes, "seconds": seconds}), flush=True)


def handler_cost(repeats: int = 300) -> dict:
    """What one hostile frame costs the thread that handles it, in this
    process: the way it was handled before (``json.loads`` raised, caught as
    an internal error, ``log.exception``: a traceback formatted and written)
    against now (:func:`bridge.protocol.decode_json` turns it into a
    ``ProtocolError``, answered). Milliseconds per frame (mean and worst),
    and the garbage collections it set off."""
    import gc
    import logging

    from bridge.protocol import ProtocolError, decode_json

    logger = logging.getLogger("bench.cost")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 (kept for the run)

    def before(payload: bytes) -> None:
        try:
            json.loads(payload)
        except Exception:  # what reached ZmqServer's catch-all
            logger.exception("ZeroMQ: internal error handling a message")

    def after(payload: bytes) -> None:
        try:
            decode_json(payload)
        except ProtocolError:
            pass

    frames = {"deep_nesting": b"[" * 10_000 + b"]" * 10_000,
              "huge_integer": b'{"type": "ping", "sequence": ' + b"9" * 5000 + b"}"}
    out: dict = {}
    for kind, payload in frames.items():
        for label, handle in (("before", before), ("after", after)):
            gc.collect()
            collections_before = sum(stat["collections"] for stat in gc.get_stats())
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                handle(payload)
                times.append((time.perf_counter() - started) * 1000.0)
            out[f"{kind}_{label}"] = {"mean_ms": sum(times) / len(times), "max_ms": max(times),
                                      "collections": sum(stat["collections"] for stat in gc.get_stats())
                                      - collections_before}
    return out


def run_zmq(repo: Path, count: int) -> dict:
    server = Server(repo)
    try:
        time.sleep(2.0)  # warm-up
        child = _child("_zmq", server.control_endpoint, str(count))
        out, _ = child.communicate(timeout=600)
        attacker = json.loads(out.strip().splitlines()[-1])
        time.sleep(1.0)
        alive = server.alive()
    finally:
        stopped = server.stop()
    return {"frames": count, "alive": alive, "log_bytes": server.log_bytes(), **stopped, "attacker": attacker,
            "internal_errors_logged": sum(1 for line in server.stderr if "internal error" in line),
            "tracebacks": sum(1 for line in server.stderr if line.startswith("Traceback"))}


# =============================================================================
# Case: random and mutated OSC datagrams
# =============================================================================
def osc_attacker(port: int, count: int, rate: float, seed: int = 20261201) -> None:
    """Child process: ``count`` datagrams at ``rate`` a second from one socket
    that never says hello, built by the fuzz test's generators
    (``tests/bridge/test_server_fuzz.py``: 35 % certainly invalid, 35 %
    mutated valid messages, 15 % random bytes, 15 % valid); print what was
    sent and how much came back."""
    from tests.bridge.test_server_fuzz import VALID, certainly_invalid, mutated, random_bytes

    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sent = {"invalid": 0, "mutated": 0, "random": 0, "valid": 0}
    sent_bytes = replies = reply_bytes = 0
    start = time.monotonic()
    for index in range(count):
        roll = rng.random()
        kind = "invalid" if roll < 0.35 else "mutated" if roll < 0.7 else "random" if roll < 0.85 else "valid"
        datagram = (certainly_invalid(rng)[1] if kind == "invalid" else mutated(rng) if kind == "mutated"
                    else random_bytes(rng) if kind == "random" else rng.choice(VALID))
        try:
            sock.sendto(datagram, ("127.0.0.1", port))
        except OSError:  # a datagram the kernel refuses: not sent
            continue
        sent[kind] += 1
        sent_bytes += len(datagram)
        try:
            while True:
                reply_bytes += len(sock.recv(65536))
                replies += 1
        except BlockingIOError:
            pass
        time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
    print(json.dumps({"sent": sent, "sent_bytes": sent_bytes, "replies": replies, "reply_bytes": reply_bytes,
                      "seconds": time.monotonic() - start}), flush=True)


def run_osc(repo: Path, count: int, rate: float) -> dict:
    server = Server(repo)
    try:
        time.sleep(2.0)  # warm-up
        child = _child("_osc", str(server.osc_port), str(count), str(rate))
        out, _ = child.communicate(timeout=count / rate + 600)
        attacker = json.loads(out.strip().splitlines()[-1])
        time.sleep(1.0)
        alive = server.alive()
    finally:
        stopped = server.stop()
    return {"datagrams": count, "rate": rate, "alive": alive, "log_bytes": server.log_bytes(), **stopped,
            "attacker": attacker, "tracebacks": sum(1 for line in server.stderr if line.startswith("Traceback"))}


# =============================================================================
# Case: mapping changes 20 times a second, ping round trip
# =============================================================================
def mapping_setter(port: int, rate: float, seconds: float) -> None:
    """Child: /adaptive/mapping/set at ``rate`` a second, each adding a key; print answers."""
    from bridge.protocol import Direction, decode_osc, encode_osc

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.001)
    sock.sendto(encode_osc("hello", reply_port=sock.getsockname()[1], client_name="setter", sample_format="s16",
                           sample_rate_hz=48000, channels=2),
                ("127.0.0.1", port))
    answers: dict[str, int] = {}
    messages: dict[str, int] = {}
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds + 2.0:
        if elapsed < seconds and sent < elapsed * rate:
            # a new emotion each time: the mapping grows, as in the run
            sock.sendto(encode_osc("mapping_set", path=f"emotions.made_up_{sent}", value="[0.1, 0.2]"),
                        ("127.0.0.1", port))
            sent += 1
        try:
            data = sock.recv(65536)
        except OSError:  # timeout included
            continue
        try:
            decoded = decode_osc(data, Direction.TO_CLIENT)
        except Exception:
            continue
        name = decoded.message.name
        if name in ("mapping_value", "mapping_error"):
            answers[name] = answers.get(name, 0) + 1
            if name == "mapping_error":
                key = decoded.values["message"][:40]
                messages[key] = messages.get(key, 0) + 1
    print(json.dumps({"sent": sent, "answers": answers, "errors": messages}), flush=True)


def pinger(port: int, rate: float, seconds: float) -> None:
    """Child: ping at ``rate`` a second; print the round trips (ms).

    It asks for the server's priority (nice -10, ``app.server.SERVER_NICE``)
    first: on a loaded machine a client at nice 0 waits for a core itself,
    and its round trips then measure the load rather than the server (a
    game's client runs on its own machine). Whether it got it is printed."""
    from bridge.protocol import Direction, decode_osc, encode_osc

    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    sock.sendto(encode_osc("hello", reply_port=sock.getsockname()[1], client_name="pinger", sample_format="s16",
                           sample_rate_hz=48000, channels=2),
                ("127.0.0.1", port))
    round_trips, lost = [], 0
    start = time.monotonic()
    sequence = 0
    while time.monotonic() - start < seconds:
        sequence += 1
        sent_at = time.perf_counter()
        sock.sendto(encode_osc("ping", sequence=sequence), ("127.0.0.1", port))
        while True:
            try:
                decoded = decode_osc(sock.recv(65536), Direction.TO_CLIENT)
            except socket.timeout:
                lost += 1
                break
            if decoded.message.name == "pong" and decoded.values["sequence"] == sequence:
                round_trips.append((time.perf_counter() - sent_at) * 1000.0)
                break
        time.sleep(max(0.0, start + sequence / rate - time.monotonic()))
    print(json.dumps({"round_trips_ms": round_trips, "lost": lost, "nice": os.getpriority(os.PRIO_PROCESS, 0)}),
          flush=True)


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of process ``pid`` by
    thread name (threads of one name summed), and of its child processes
    alive now, as ``"child:" + name`` (``/proc``, Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}

    def stat(path: Path) -> tuple[str, list[str]] | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        name = text[text.index("(") + 1:text.rindex(")")]
        return name, text[text.rindex(")") + 2:].split()

    for task in Path(f"/proc/{pid}/task").glob("*"):
        found = stat(task / "stat")
        if found:
            name, fields = found
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    for proc in Path("/proc").glob("[0-9]*"):
        found = stat(proc / "stat")
        if found and found[1][1] == str(pid):
            name, fields = found
            out["child:" + name] = out.get("child:" + name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def run_mapping(repo: Path, rate: float, seconds: float, ping_rate: float = 20.0) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "session.jsonl"
        server = Server(repo, record=record)
        try:
            time.sleep(2.0)
            quiet = _child("_ping", str(server.osc_port), str(ping_rate), "5")
            baseline = json.loads(quiet.communicate(timeout=60)[0].strip().splitlines()[-1])
            size_before = record.stat().st_size
            cpu_before = thread_cpu_s(server.proc.pid)
            ping = _child("_ping", str(server.osc_port), str(ping_rate), str(seconds))
            setter = _child("_set", str(server.osc_port), str(rate), str(seconds))
            pings = json.loads(ping.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1])
            sets = json.loads(setter.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1])
            cpu_after = thread_cpu_s(server.proc.pid)
            alive = server.alive()
        finally:
            stopped = server.stop()
        size_after = record.stat().st_size
    cpu = {name: round(value - cpu_before.get(name, 0.0), 3) for name, value in cpu_after.items()
           if value - cpu_before.get(name, 0.0) > 0}
    return {"rate": rate, "seconds": seconds, "ping_rate": ping_rate, "pinger_nice": pings.get("nice"),
            "alive": alive, "baseline_ping_ms": summary(baseline["round_trips_ms"]),
            "ping_ms": summary(pings["round_trips_ms"]), "pings_lost": pings["lost"], "sets": sets,
            "cpu_s_during_sets": cpu,
            "recording_bytes_before": size_before, "recording_bytes_after": size_after, **stopped}


# =============================================================================
# Case: a slow TCP audio reader and readers that never read
# =============================================================================
def slow_reader(port: int, seconds: float, speed: float) -> None:
    """Child: read the TCP audio stream at ``speed`` x real time (bytes/s); print what arrived."""
    from bridge.audio import read_tcp_blocks

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_RCVBUF_BYTES)  # before connecting: the window
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    print("connected", flush=True)
    bytes_per_second = SAMPLE_RATE_HZ * 4 * speed
    start = time.monotonic()
    blocks, lags, sequences, disconnected = 0, [], [], False

    class Paced:
        def recv(self, n: int) -> bytes:
            allowed = int((time.monotonic() - start) * bytes_per_second) - got[0]
            if allowed <= 0:
                time.sleep(0.01)
                allowed = int((time.monotonic() - start) * bytes_per_second) - got[0]
            chunk = sock.recv(max(1, min(n, allowed, 4096)))
            got[0] += len(chunk)
            return chunk

    got = [0]
    first_frame0 = None
    try:
        for header, _ in read_tcp_blocks(Paced(), recv_bytes=4096):  # type: ignore[arg-type]
            now = time.monotonic() - start
            if first_frame0 is None:
                first_frame0 = header.first_frame - now * SAMPLE_RATE_HZ
            blocks += 1
            sequences.append(header.sequence)
            # How far behind real time the block just read is (s): the server's now minus its frame.
            lags.append(now - (header.first_frame - first_frame0) / SAMPLE_RATE_HZ)
            if now > seconds:
                break
        else:
            disconnected = True
    except OSError:
        disconnected = True
    elapsed = time.monotonic() - start
    sock.close()
    skipped = sum(b - a - 1 for a, b in zip(sequences, sequences[1:]) if b > a + 1)
    print(json.dumps({"blocks": blocks, "skipped_blocks": skipped, "lag_s": summary(lags),
                      "lag_last_s": lags[-1] if lags else None, "disconnected": disconnected,
                      "seconds": elapsed}), flush=True)


def run_tcp(repo: Path, seconds: float, idle: int) -> dict:
    server = Server(repo)
    try:
        time.sleep(2.0)
        reader = _child("_slow", str(server.tcp_port), str(seconds), "0.1")
        assert reader.stdout.readline().strip() == "connected"  # it holds a slot; the idle ones take the rest
        time.sleep(0.5)
        idle_socks = []
        for _ in range(idle):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.tcp_port))
            idle_socks.append(s)
        probes = []
        for _ in range(int(seconds // 5)):
            time.sleep(5.0)
            probes.append(_probe_reader(server.tcp_port))
        slow = json.loads(reader.communicate(timeout=seconds + 60)[0].strip().splitlines()[-1])
        for s in idle_socks:
            s.close()
        alive = server.alive()
    finally:
        stopped = server.stop()
    return {"seconds": seconds, "idle_readers": idle, "alive": alive, "slow": slow,
            "probe_blocks": probes, **stopped}


def run_tcp_credentials(repo: Path, seconds: float, hostile: int) -> dict:
    """With credentials: ``hostile`` connections that send no token and never
    read, re-opened as soon as the server drops one, while every 5 s a
    listener that proved its role (HMAC hello, then its client_id on the TCP
    connection) counts the blocks it gets in 1 s."""
    from bridge.access import load_credentials
    from bridge.client import AdaptiveClient

    with tempfile.TemporaryDirectory() as folder:
        credentials = Path(folder) / "credentials"
        subprocess.run([sys.executable, "-m", "app.cli", "credentials", str(credentials)], cwd=repo, check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(repo)))
        secrets = {role.value: secret for role, secret in load_credentials(credentials).secrets.items()}
        server = Server(repo, extra=["--credentials", str(credentials)])
        try:
            time.sleep(2.0)
            stop = threading.Event()
            opened = [0]

            def attacker() -> None:
                socks: list[socket.socket] = []
                while not stop.is_set():
                    socks = [s for s in socks if _still_open(s)]
                    while len(socks) < hostile and not stop.is_set():
                        try:
                            s = socket.create_connection(("127.0.0.1", server.tcp_port), timeout=1)
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                            socks.append(s)
                            opened[0] += 1
                        except OSError:
                            break
                    time.sleep(0.05)
                for s in socks:
                    s.close()

            thread = threading.Thread(target=attacker, daemon=True)
            thread.start()
            probes = []
            for _ in range(int(seconds // 5)):
                time.sleep(5.0)
                client = AdaptiveClient(port=server.osc_port, client_name="listener", role="listener",
                                        secret=secrets["listener"])
                try:
                    client.hello()
                    probes.append(_count_blocks(client.connect_audio(timeout=2.0)))
                except (OSError, TimeoutError, RuntimeError):
                    probes.append(0)
                finally:
                    client.close()
            stop.set()
            thread.join(timeout=5)
            alive = server.alive()
        finally:
            stopped = server.stop()
    return {"seconds": seconds, "hostile": hostile, "hostile_opened": opened[0], "alive": alive,
            "probe_blocks": probes, **stopped}


def _still_open(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open (a closed one reads EOF or errors without blocking)."""
    try:
        sock.setblocking(False)
        return sock.recv(65536, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _count_blocks(sock: socket.socket) -> int:
    """Blocks read from an audio connection in 1 s (0 when it is refused or starved)."""
    from bridge.audio import read_tcp_blocks

    sock.settimeout(2.0)
    count, deadline = 0, time.monotonic() + 1.0
    try:
        for _ in read_tcp_blocks(sock):
            count += 1
            if time.monotonic() > deadline:
                break
    except OSError:
        pass
    finally:
        sock.close()
    return count


def _probe_reader(port: int) -> int:
    """Blocks a fresh, normal reader receives in 1 s (0: refused or starved)."""
    from bridge.audio import read_tcp_blocks

    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.settimeout(2.0)
        count, deadline = 0, time.monotonic() + 1.0
        for _ in read_tcp_blocks(sock):
            count += 1
            if time.monotonic() > deadline:
                break
        sock.close()
        return count
    except OSError:
        return 0


# =============================================================================
# Case: a mapping file padded to 50 MB
# =============================================================================
def run_mapping_file(repo: Path, padded_mb: float) -> dict:
    from adaptive.mapping import DEFAULT_MAPPING

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mapping.toml"
        original = DEFAULT_MAPPING.read_text(encoding="utf-8")
        path.write_text(original, encoding="utf-8")
        server = Server(repo, extra=["--mapping", str(path)])
        try:
            time.sleep(2.0)
            rss_before = server.status_kb("VmRSS")
            padding = "# " + "padding " * 12 + "\n"
            lines = int(padded_mb * 1e6 / len(padding))
            temporary = path.with_suffix(".tmp")
            temporary.write_text(original + padding * lines, encoding="utf-8")
            os.replace(temporary, path)
            time.sleep(15.0)
            peak_kb = server.status_kb("VmHWM")
            alive = server.alive()
        finally:
            stopped = server.stop()
    log = "".join(server.stderr)
    return {"padded_mb": padded_mb, "alive": alive, "rss_before_mb": rss_before / 1024, "peak_rss_mb": peak_kb / 1024,
            "refused": "MAX_MAPPING_BYTES" in log or "invalid" in log, "reloaded": "reloaded" in log, **stopped}


# =============================================================================
# Report
# =============================================================================
def _table(rows: list[tuple[str, object, object]], before: bool) -> list[str]:
    """Markdown table rows ``| figure | after | before |`` (the before column only if measured)."""
    def show(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    out = ["| figure | after | before |" if before else "| figure | value |", "|---|---:|---:|" if before else "|---|---:|"]
    for name, after, old in rows:
        out.append(f"| {name} | {show(after)} | {show(old)} |" if before else f"| {name} | {show(after)} |")
    return out


def markdown(results: dict, info: dict) -> str:
    lines = [SECTION_TITLE, "",
             f"Measured {info['date']} with `python bench/robustness_benchmark.py {info['args']}` on "
             f"{info['machine']}, **under load**: {info['load']}. Each case starts `adaptive serve` (default bank, "
             "blocks of 1024 frames, lookahead 40 ms, real-time priority) in a subprocess; the hostile client is "
             "another process on loopback, without credentials. The 'before' column, where given, is the same "
             f"run against {info.get('before', 'the code before issue 13' + chr(39) + 's changes')} (`--before-repo`), "
             "on the same machine and load; with this load, timings vary from run to run. The before-and-after "
             "tables against the code before issue 13 (a303359) are in this section as of commit a935b93 "
             "(`git show a935b93:docs/benchmarks.md`).", ""]
    if "osc" in results:
        o = results["osc"]
        a = o["attacker"]
        lines += ["### OSC datagrams: random and mutated", "",
                  f"{o['datagrams']:,} datagrams at {o['rate']:g} a second from one socket that never says hello, "
                  "made by the fuzz test's generators (`tests/bridge/test_server_fuzz.py`): certainly invalid "
                  "(NaN, infinities, oversized, unknown addresses, wrong or unsupported type tags, bundles, out of "
                  "range), mutated valid messages (bit flips, truncation, insertion, deletion, splicing, tags), "
                  "random bytes, and valid messages.", ""]
        lines += _table([("server still running", o["alive"], None),
                         ("datagrams sent (invalid / mutated / random / valid)",
                          " / ".join(f"{a['sent'][k]:,}" for k in ("invalid", "mutated", "random", "valid")), None),
                         ("rejected by the server (counted)", o["rejected"], None),
                         ("underruns", o["underruns"], None),
                         ("longest block (ms)", o["max_block_ms"], None),
                         ("latest wake-up of the render thread (ms)", o["max_wake_delay_ms"], None),
                         ("replies received (errors)", int(a["replies"]), None),
                         ("tracebacks logged", o["tracebacks"], None),
                         ("bytes of log", o["log_bytes"], None)], False)
        lines += ["", f"The attack took {a['seconds']:.0f} s. The attacker is on loopback, which the server "
                  "trusts as verified (no other machine can send from it), so its errors come back whole; what an "
                  "unverified source gets back is measured by `bench/reflection_benchmark.py`, with that trust "
                  "off (next section).", ""]
    if "zmq" in results:
        z, b = results["zmq"], results.get("zmq_before") or {}
        lines += ["### ZeroMQ control frames of every kind", "",
                  f"{z['frames']} frames, an equal share of each kind ({', '.join(ZMQ_KINDS)}), shuffled, sent as fast "
                  f"as the server took them ({z['attacker']['seconds']:.0f} s).", ""]
        answers = lambda r: sum(r["attacker"]["replies"].values()) if r else None  # noqa: E731
        lines += _table([("server still running", z["alive"], b.get("alive")),
                         ("underruns", z["underruns"], b.get("underruns")),
                         ("longest block (ms)", z["max_block_ms"], b.get("max_block_ms")),
                         ("latest wake-up of the render thread (ms)", z["max_wake_delay_ms"], b.get("max_wake_delay_ms")),
                         ("longest garbage collection (ms)", z["max_gc_pause_ms"], b.get("max_gc_pause_ms")),
                         ("bytes of log", z["log_bytes"], b.get("log_bytes")),
                         ("tracebacks logged", z["tracebacks"], b.get("tracebacks")),
                         ("answers received", answers(z), answers(b))], bool(b))
        cost = results.get("handler_cost")
        if cost:
            lines += ["", "**Why it underran, and what changed.** Before, a 10 000-deep nesting (`RecursionError`) "
                      "or a 5 000-digit integer (`ValueError`) escaped the protocol's checks and reached the "
                      "transport's catch-all, which logged a full traceback for each frame, with no answer. "
                      "Handling one such frame, measured in this process "
                      f"({'mean / worst, ms'}): deep nesting {cost['deep_nesting_before']['mean_ms']:.2f} / "
                      f"{cost['deep_nesting_before']['max_ms']:.1f} before, {cost['deep_nesting_after']['mean_ms']:.2f} / "
                      f"{cost['deep_nesting_after']['max_ms']:.1f} now; huge integer "
                      f"{cost['huge_integer_before']['mean_ms']:.2f} / {cost['huge_integer_before']['max_ms']:.1f} "
                      f"before, {cost['huge_integer_after']['mean_ms']:.3f} / {cost['huge_integer_after']['max_ms']:.1f} "
                      "now. That time is Python holding the interpreter lock (formatting a traceback reads the source "
                      "line of every frame, and 6.8 MB of log was written), on a thread that "
                      "runs at the server's raised priority: thousands of such frames a minute kept the render "
                      "thread waiting for the lock past its 40 ms lookahead, more often the more the machine was "
                      "loaded (issue 13: 12-13 underruns per 20 000 frames, blocks up to 204 ms late; 3 in the "
                      "before-and-after run of 2026-12-01 on a303359). Now "
                      "`decode_json` answers both as `malformed`/`out_of_range`, any other exception in a handler is "
                      "answered with code `internal` and counted, and the log says each kind of problem once per "
                      "10 s with a count (`bridge/log_limit.py`). No lock is shared with the render thread (it "
                      "takes none on the input path: the inbox is a `SimpleQueue`)."]
        lines += ["", "Answers by code: " + ", ".join(f"{k} {v}" for k, v in sorted(z["attacker"]["codes"].items()))
                  + (" (before: " + ", ".join(f"{k} {v}" for k, v in sorted(b["attacker"]["codes"].items())) + ")"
                     if b else "") + ".", ""]
    if "mapping" in results:
        m, b = results["mapping"], results.get("mapping_before") or {}
        growth = lambda r: r["recording_bytes_after"] - r["recording_bytes_before"] if r else None  # noqa: E731
        ping = lambda r, key: r["ping_ms"].get(key) if r else None  # noqa: E731
        lines += ["### Mapping changes while pinging", "",
                  f"`/adaptive/mapping/set` {m['rate']:g} times a second for {m['seconds']:g} s, each adding an "
                  f"emotion (the mapping grows), while another client pings {m.get('ping_rate', 20):g} times a second "
                  "(OSC, loopback). 'quiet' is 5 s of pings just before.", ""]
        lines += _table([("ping round trip, quiet, p50 (ms)", m["baseline_ping_ms"].get("p50"),
                          b.get("baseline_ping_ms", {}).get("p50")),
                         ("ping round trip, quiet, p99 (ms)", m["baseline_ping_ms"].get("p99"),
                          b.get("baseline_ping_ms", {}).get("p99")),
                         ("ping round trip during the sets, p50 (ms)", ping(m, "p50"), ping(b, "p50")),
                         ("ping round trip during the sets, p99 (ms)", ping(m, "p99"), ping(b, "p99")),
                         ("ping round trip during the sets, max (ms)", ping(m, "max"), ping(b, "max")),
                         ("pings answered (one at a time: the next is sent after the pong)", ping(m, "n"),
                          ping(b, "n")),
                         ("pings lost (no pong within 1 s)", m["pings_lost"], b.get("pings_lost")),
                         ("sets sent", m["sets"]["sent"], b.get("sets", {}).get("sent")),
                         ("sets applied (mapping_value)", m["sets"]["answers"].get("mapping_value", 0),
                          b.get("sets", {}).get("answers", {}).get("mapping_value")),
                         ("sets refused (mapping_error)", m["sets"]["answers"].get("mapping_error", 0),
                          b.get("sets", {}).get("answers", {}).get("mapping_error")),
                         ("recording growth (bytes)", growth(m), growth(b)),
                         ("underruns", m["underruns"], b.get("underruns"))], bool(b))
        if m["sets"]["errors"]:
            lines += ["", "Refusals: " + "; ".join(f"\"{k}...\" x{v}" for k, v in m["sets"]["errors"].items()) + "."]
        cpu = lambda r, name: sum(v for k, v in r.get("cpu_s_during_sets", {}).items()  # noqa: E731
                                  if k.startswith("child:") == (name == "child")) if r else None
        if "cpu_s_during_sets" in m:
            lines += ["", "CPU seconds during the sets (from `/proc`; on a loaded machine wall time misleads): "
                      f"the server process {cpu(m, 'server'):.2f} s"
                      + (f" (before: {cpu(b, 'server'):.2f} s)" if b and "cpu_s_during_sets" in b else "")
                      + f", its mapping checker child {cpu(m, 'child'):.2f} s"
                      + (f" (before: {cpu(b, 'child'):.2f} s)" if b and "cpu_s_during_sets" in b else "") + "."]
        target_met = m["ping_ms"].get("p99", 1e9) < 10.0
        lines += ["", f"Issue 13's target, a ping's p99 under 10 ms during the sets: **{'met' if target_met else 'not met'} "
                  f"here** (p99 {m['ping_ms'].get('p99', 0):.1f} ms, median {m['ping_ms'].get('p50', 0):.1f} ms). "
                  f"The pinger ran at nice {m.get('pinger_nice')}, the server's priority: at nice 0 on a loaded "
                  "machine, its own wait for a core would be measured, not the server's. "
                  "**Why pings waited, and what changed.** A set had left the receive thread already (it waits in "
                  "the mapping thread's queue of 8 behind the rate limit, 10 a second), but checking it is ~30 ms of "
                  "pure Python (tomlkit writes the text, tomllib parses it, pydantic validates it, the value is read "
                  "back), and Python threads share one interpreter lock: the receive thread waited up to a switch "
                  "interval (1 ms) each time it needed the lock, several times per ping, and longer when the "
                  "machine's load kept the mapping thread off a core while it held the lock. A probe thread "
                  "sleeping 0.5 ms in a loop beside 150 sets saw its wake-up late by up to 94 ms (a garbage "
                  "collection of the sets' objects) and 10 ms after `gc.freeze()`. Now the checking runs in a "
                  "child process (`bridge/mapping_check.py`, started on the first change, shared by the sessions); "
                  "the mapping thread waits for its answer without the lock and unpickles the checked mapping "
                  "(~1.3 ms of the server's CPU per set, against ~30 ms). What is left of the tail is the "
                  f"machine's: the quiet p99 of the same run, before any set, was "
                  f"{m['baseline_ping_ms'].get('p99', 0):.1f} ms. The last published run, with the checks on the "
                  "mapping thread and the pinger at nice 0, had a p99 of 78.6 ms (load average 6.5-7.7). "
                  "Issue 13's first run (before any of its "
                  "changes) had each set take ~150 ms of the one receive thread: 25 pings answered in 30 s, and "
                  "each set stored the whole mapping in the recording."]
        lines += [""]
    if "tcp" in results:
        t, b = results["tcp"], results.get("tcp_before") or {}
        slow = lambda r, key: r["slow"].get(key) if r else None  # noqa: E731
        lag = lambda r, key: r["slow"]["lag_s"].get(key) if r and r["slow"]["lag_s"] else None  # noqa: E731
        lines += ["### TCP audio: a reader at 1/10 real time, and readers that never read", "",
                  f"One reader at 1/10 real time (8 KiB receive buffer) for {t['seconds']:g} s, then "
                  f"{t['idle_readers']} connections that never read (the server serves 16 at a time); every 5 s a "
                  "fresh normal reader connects and counts the blocks it gets in 1 s (about 47 when served).", ""]
        lines += _table([("slow reader: blocks received", slow(t, "blocks"), slow(b, "blocks")),
                         ("slow reader: blocks lost (sequence gaps)", slow(t, "skipped_blocks"), slow(b, "skipped_blocks")),
                         ("slow reader: behind real time, median (s)", lag(t, "p50"), lag(b, "p50")),
                         ("slow reader: behind real time, max (s)", lag(t, "max"), lag(b, "max")),
                         ("slow reader disconnected", slow(t, "disconnected"), slow(b, "disconnected")),
                         ("fresh readers: blocks in 1 s, every 5 s", " ".join(map(str, t["probe_blocks"])),
                          " ".join(map(str, b["probe_blocks"])) if b else None),
                         ("underruns", t["underruns"], b.get("underruns"))], bool(b))
        lines += [""]
    if "tcp_credentials" in results:
        t = results["tcp_credentials"]
        lines += ["### TCP audio with credentials: hostile connections against an authenticated listener", "",
                  f"`adaptive serve --credentials`; {t['hostile']} connections that send no token and never read, "
                  f"each re-opened as soon as the server drops it ({t['hostile_opened']} opened in "
                  f"{t['seconds']:g} s), while every 5 s a listener proves its role (HMAC hello, then its client_id "
                  "on the TCP connection) and counts the blocks it gets in 1 s (about 47 when served).", ""]
        lines += _table([("authenticated listener: blocks in 1 s, every 5 s", " ".join(map(str, t["probe_blocks"])),
                          None),
                         ("server alive", t["alive"], None),
                         ("underruns", t["underruns"], None)], False)
        lines += [""]
    if "mapping_file" in results:
        f, b = results["mapping_file"], results.get("mapping_file_before") or {}
        lines += ["### A mapping file padded to 50 MB", "",
                  f"The watched mapping replaced (atomically) by the same mapping padded with comments to "
                  f"{f['padded_mb']:g} MB; 15 s observed.", ""]
        lines += _table([("refused", f["refused"], b.get("refused")),
                         ("reloaded", f["reloaded"], b.get("reloaded")),
                         ("server's memory before the file (MB)", f["rss_before_mb"], b.get("rss_before_mb")),
                         ("server's peak memory (MB)", f["peak_rss_mb"], b.get("peak_rss_mb")),
                         ("longest block (ms)", f["max_block_ms"], b.get("max_block_ms")),
                         ("underruns", f["underruns"], b.get("underruns"))], bool(b))
        lines += [""]
    return "\n".join(lines) + "\n"


def _child(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE,
                            text=True, env=env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    children = {"_zmq": lambda a: zmq_attacker(a[0], int(a[1])),
                "_osc": lambda a: osc_attacker(int(a[0]), int(a[1]), float(a[2])),
                "_set": lambda a: mapping_setter(int(a[0]), float(a[1]), float(a[2])),
                "_ping": lambda a: pinger(int(a[0]), float(a[1]), float(a[2])),
                "_slow": lambda a: slow_reader(int(a[0]), float(a[1]), float(a[2]))}
    if argv and argv[0] in children:
        children[argv[0]](argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=("osc", "zmq", "mapping", "tcp", "tcp_credentials",
                                                      "mapping_file"),
                        default=["osc", "zmq", "mapping", "tcp", "tcp_credentials", "mapping_file"])
    parser.add_argument("--osc-datagrams", type=int, default=100_000)
    parser.add_argument("--osc-rate", type=float, default=4000.0, help="OSC datagrams a second")
    parser.add_argument("--zmq-frames", type=int, default=20_000)
    parser.add_argument("--set-rate", type=float, default=20.0)
    parser.add_argument("--set-seconds", type=float, default=30.0)
    parser.add_argument("--ping-rate", type=float, default=50.0, help="pings a second during the mapping case")
    parser.add_argument("--tcp-seconds", type=float, default=40.0)
    parser.add_argument("--idle-readers", type=int, default=16)
    parser.add_argument("--padded-mb", type=float, default=50.0)
    parser.add_argument("--server-repo", type=Path, default=REPO, help="run the server from this checkout")
    parser.add_argument("--before-repo", type=Path, default=None,
                        help="also run every case against this checkout (the 'before' column)")
    parser.add_argument("--before-label", default="the code before issue 13's changes",
                        help="what the --before-repo checkout is, for the docs")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--report-json", type=Path, help="run nothing: report the figures of an earlier --json")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    from bench.docs_section import machine_facts, publish

    if args.report_json:
        results = json.loads(args.report_json.read_text())
    else:
        results = {"info": {"date": time.strftime("%Y-%m-%d"), "args": " ".join(argv),
                            "machine": "{cpu}, {cores} cores".format(**machine_facts()),
                            "before": args.before_label,
                            "load": f"load average {open('/proc/loadavg').read().split()[0]} at the start "
                                    "(a model training and other work on the same 2 cores)"}}
        for case in args.only:
            print(f"running {case} ...", file=sys.stderr, flush=True)
            if case == "zmq":
                results["handler_cost"] = handler_cost()
            run = {"osc": lambda repo: run_osc(repo, args.osc_datagrams, args.osc_rate),
                   "zmq": lambda repo: run_zmq(repo, args.zmq_frames),
                   "mapping": lambda repo: run_mapping(repo, args.set_rate, args.set_seconds, args.ping_rate),
                   "tcp": lambda repo: run_tcp(repo, args.tcp_seconds, args.idle_readers),
                   "tcp_credentials": lambda repo: run_tcp_credentials(repo, args.tcp_seconds, 2 * args.idle_readers),
                   "mapping_file": lambda repo: run_mapping_file(repo, args.padded_mb)}[case]
            results[case] = run(args.server_repo)
            if args.before_repo is not None:
                print(f"running {case} on {args.before_repo} ...", file=sys.stderr, flush=True)
                results[f"{case}_before"] = run(args.before_repo)
            results["info"]["load_end"] = open("/proc/loadavg").read().split()[0]
            if args.json:  # after each case: a later case's failure keeps the figures so far
                args.json.write_text(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    text = markdown(results, results["info"])
    publish(text, args.write_docs, DOCS, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
