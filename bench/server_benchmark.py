#!/usr/bin/env python3
"""Real-time server benchmark: reaction latency, input rate, CPU, memory, underruns.

Run by hand (not in CI), from a source checkout::

    python bench/server_benchmark.py                  # every case, print the tables
    python bench/server_benchmark.py --write-docs     # also rewrite "## Real-time server" in docs/benchmarks.md
    python bench/server_benchmark.py --only soak --json soak.json   # just the 10-minute run (e.g. in the background)
    python bench/server_benchmark.py --soak-json soak.json --write-docs  # the rest, with that soak's figures

What it measures (see ``bench/README.md``), with the server's default settings
(48 kHz, blocks of 1024 frames, lookahead 40 ms) and the default cue bank:

* **Reaction latency.** The server runs as a subprocess (``adaptive serve
  --record``); this process is the game: it says hello, syncs clocks with
  ``ping``/``pong`` (NTP-style, the lowest-delay exchange wins), reads the TCP
  audio stream on a thread (wall clock taken at the receipt of each block) and
  sends ``/adaptive/intensity`` changes, each with a unique value, every 50 ms.
  The recording says at which session frame ``F`` each input took effect (the
  render thread stamps it with the first frame not yet rendered: audio from
  ``F`` on is rendered with the new intensity, bit for bit as
  ``adaptive replay`` shows). Latency *to receipt*: message sent -> the TCP
  block containing ``F`` received. Latency *to playback*: message sent -> the
  scheduled playback time of ``F`` (server time ``F / rate``, mapped to this
  process's clock). The target (p99 < 30 ms) is judged on receipt: that is the
  server's own reaction; the time from receipt to playback is the lookahead,
  a buffer the operator chooses (``--lookahead-ms``) against underruns.
* **Input rate.** The server runs in this process (its counters are read
  directly; this process does nothing else meanwhile); a child process blasts
  valid ``/adaptive/scene`` and ``/adaptive/intensity`` messages over loopback
  at increasing rates, ``--rate-seconds`` (5 s) per step, and another child
  reads the TCP audio stream. A step is *sustained* when the server handled
  every message sent (``osc.counters['received']``: none lost in the socket
  buffer) and no new underrun happened.
* **CPU and memory.** ``adaptive serve`` as a subprocess serving one client
  (hello, events subscribed, TCP audio read) that sends ``/adaptive/scene`` at
  90 Hz (intensity sweeping 0..1, emotion changing every 15 s, so cues change
  and transitions play) for ``--cpu-seconds`` (60 s). CPU share of one core:
  utime + stime from ``/proc/PID/stat`` over the run (after 2 s of warm-up)
  divided by its wall clock; memory: ``VmRSS`` from ``/proc/PID/status``,
  sampled every second (the peak and the end) and ``VmHWM``.
* **Underruns over 10 minutes.** The same session for ``--soak-seconds``
  (600 s); the count is the one the server prints when it stops.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

SECTION_TITLE = "## Real-time server"
DOCS = REPO / "docs" / "benchmarks.md"
SAMPLE_RATE_HZ = 48_000

TARGET_LATENCY_P99_MS = 30.0
TARGET_RATE = 10_000
TARGET_CPU_SHARE = 0.15
TARGET_RSS_MB = 500.0
TARGET_UNDERRUNS = 0

EMOTION_CYCLE = ("calm", "tense", "angry", "triumphant", "sorrowful", "eerie")


# =============================================================================
# Helpers: ports, the server subprocess, a client
# =============================================================================
def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HELP: list[str] = []


def _serve_help() -> str:
    if not _HELP:
        _HELP.append(subprocess.run([sys.executable, "-m", "app.cli", "serve", "--help"], cwd=REPO,
                                    capture_output=True, text=True).stdout)
    return _HELP[0]


def _in_process_settings(**values):
    from adaptive.cue import DEFAULT_BANK
    from app.server import ServerSettings

    ports = {name: 0 for name in ServerSettings.model_fields if name.endswith("_port")}
    return ServerSettings(**{"bank": DEFAULT_BANK, **ports, **values})


class ServerProcess:
    """``adaptive serve`` as a subprocess on free loopback ports."""

    def __init__(self, record: Path | None = None, extra: list[str] | None = None) -> None:
        self.osc_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.zmq_port = free_port()
        command = [sys.executable, "-m", "app.cli", "serve", "--osc-port", str(self.osc_port),
                   "--audio-tcp-port", str(self.tcp_port), "--zmq-audio-port", str(self.zmq_port)]
        if record is not None:
            command += ["--record", str(record)]
        command += [option for option in ("--zmq-control-port", "--zmq-events-port") if option in _serve_help()
                    for option in (option, "0")]  # transports other than the ones measured: any free port
        command += extra or []
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True).start()
        if not self._ready.wait(120):  # MuseScore General takes 8-11 CPU s to load; more on a loaded machine
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {''.join(self.stderr)[-2000:]}")
        self.pid = self.proc.pid

    def _pump(self, stream, lines: list[str], is_stdout: bool) -> None:
        for line in stream:
            lines.append(line)
            if is_stdout and line.startswith("adaptive: serving"):
                self._ready.set()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)

    def status_kb(self, key: str) -> int:
        match = re.search(rf"^{key}:\s*(\d+) kB", Path(f"/proc/{self.pid}/status").read_text(), re.MULTILINE)
        return int(match.group(1)) if match else 0

    def threads(self) -> int:
        return int(re.search(
            r"^Threads:\s*(\d+)", Path(f"/proc/{self.pid}/status").read_text(), re.MULTILINE).group(1))

    def stop(self) -> dict:
        """SIGINT, wait, parse the 'stopped' line."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.2)
        text = "".join(self.stdout)
        match = re.search(r"stopped \((\d+) blocks, (\d+) underruns, (\d+) rejected", text)
        if not match:
            raise RuntimeError(f"no 'stopped' line; stdout: {text[-1000:]} stderr: {''.join(self.stderr)[-2000:]}")
        timing = re.search(r"timing: longest block ([\d.]+) ms, latest wake-up ([\d.]+) ms, longest garbage "
                           r"collection ([\d.]+) ms", text)
        return {"blocks": int(match.group(1)), "underruns": int(match.group(2)), "rejected": int(match.group(3)),
                "returncode": self.proc.returncode,
                "max_block_ms": float(timing.group(1)) if timing else None,
                "max_wake_delay_ms": float(timing.group(2)) if timing else None,
                "max_gc_pause_ms": float(timing.group(3)) if timing else None,
                "stalls": re.findall(r"stall at .*", text)}


class Client:
    """The game: a UDP socket for OSC, a TCP audio reader thread, a clock offset."""

    def __init__(self, osc_port: int, tcp_port: int) -> None:
        from bridge.audio import read_tcp_blocks

        self.osc_port = osc_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.blocks: list[tuple[float, int, int, int]] = []  # (receipt monotonic, sequence, first_frame, n_frames)
        self.audio = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
        self.audio.settimeout(None)

        def read() -> None:
            try:
                for header, _ in read_tcp_blocks(self.audio):
                    self.blocks.append((time.monotonic(), header.sequence, header.first_frame, header.n_frames))
            except OSError:
                pass

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def send(self, name: str, **values) -> float:
        from bridge.protocol import encode_osc

        datagram = encode_osc(name, **values)
        sent = time.monotonic()
        self.sock.sendto(datagram, ("127.0.0.1", self.osc_port))
        return sent

    def receive(self, name: str) -> dict:
        from bridge.protocol import Direction, decode_osc

        while True:
            datagram, _ = self.sock.recvfrom(65536)
            decoded = decode_osc(datagram, Direction.TO_CLIENT)
            if decoded.message.name == name:
                return decoded.values

    def hello(self) -> dict:
        self.send("hello", reply_port=self.sock.getsockname()[1], sample_rate_hz=SAMPLE_RATE_HZ, channels=2,
                  sample_format="s16", client_name="server_benchmark")
        return self.receive("welcome")

    def sync(self, pings: int = 20) -> tuple[float, float]:
        """Offset such that server_time = monotonic() - offset, from the
        lowest-delay ping/pong; returns (offset, its round trip)."""
        best = None
        for sequence in range(pings):
            t1 = self.send("ping", sequence=sequence)
            pong = self.receive("pong")
            t4 = time.monotonic()
            receive = pong["receive_time_s"] + pong["receive_time_us"] / 1e6
            send = pong["send_time_s"] + pong["send_time_us"] / 1e6
            delay = (t4 - t1) - (send - receive)
            offset = ((t1 - receive) + (t4 - send)) / 2  # monotonic - server time
            if best is None or delay < best[1]:
                best = (offset, delay)
            time.sleep(0.005)
        return best

    def close(self) -> None:
        try:
            self.audio.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.audio.close()
        self.reader.join(2)
        self.sock.close()


def scene_values(t: float) -> dict:
    """The scene a game sends at time t (s): intensity sweeping, emotion every 15 s."""
    return {"emotion": EMOTION_CYCLE[int(t // 15) % len(EMOTION_CYCLE)],
            "intensity": 0.5 + 0.5 * math.sin(2 * math.pi * t / 20.0), "location": "forest"}


def gaps(blocks: list) -> int:
    sequences = [b[1] for b in blocks]
    return sum(1 for a, b in zip(sequences, sequences[1:]) if b != a + 1)


# =============================================================================
# Case: one session with 90 Hz scene updates (CPU, memory, underruns)
# =============================================================================
def run_session(seconds: float, rate_hz: float = 90.0, warmup: float = 2.0, label: str = "session") -> dict:
    server = ServerProcess()
    client = Client(server.osc_port, server.tcp_port)
    try:
        client.hello()
        client.send("subscribe", stream="events")
        offset, _ = client.sync(10)
        time.sleep(warmup)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        rss_samples = []
        sent = 0
        next_sample = wall0
        period = 1.0 / rate_hz
        start = time.monotonic()
        next_send = start
        last_print = start
        while True:
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= seconds:
                break
            if now >= next_send:
                client.send("scene", **scene_values(elapsed))
                sent += 1
                next_send += period
            if now >= next_sample:
                rss_samples.append(server.status_kb("VmRSS") / 1024)
                next_sample += 1.0
            if now - last_print >= 60:
                print(f"  [{label}] {elapsed:.0f}/{seconds:.0f} s, RSS {rss_samples[-1]:.0f} MB", flush=True)
                last_print = now
            time.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
        cpu1, wall1 = server.cpu_seconds(), time.monotonic()
        rss_end = server.status_kb("VmRSS") / 1024
        hwm = server.status_kb("VmHWM") / 1024
        threads = server.threads()
        blocks_received = len(client.blocks)
        tcp_gaps = gaps(client.blocks)
        # Client side: how far ahead of its playback time each block arrived; late ones (< 0) with their time.
        ahead = [((b[2] / SAMPLE_RATE_HZ + offset) - b[0]) * 1000 for b in list(client.blocks)[20:]]
        late_at = [round(b[0] - start, 2) for b, a in zip(list(client.blocks)[20:], ahead) if a < 0]
    finally:
        stopped = server.stop()
        client.close()
    return {
        "seconds": seconds, "rate_hz": rate_hz, "messages_sent": sent, "achieved_rate_hz": sent / seconds,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0), "cpu_seconds": cpu1 - cpu0, "wall_seconds": wall1 - wall0,
        "rss_peak_mb": max(rss_samples + [rss_end]), "rss_end_mb": rss_end, "rss_start_mb": rss_samples[0],
        "vm_hwm_mb": hwm, "threads": threads, "ahead_ms": summary(ahead), "late_blocks_at_s": late_at[:50],
        "blocks_received": blocks_received, "tcp_gaps": tcp_gaps,
        **{f"server_{k}": v for k, v in stopped.items()},
    }


# =============================================================================
# Case: reaction latency
# =============================================================================
def run_latency(trials: int, interval: float = 0.05) -> dict:
    from adaptive.recording import load_recording

    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "latency.jsonl"
        server = ServerProcess(record=record)
        client = Client(server.osc_port, server.tcp_port)
        try:
            welcome = client.hello()
            lookahead_ms = welcome["lookahead_ms"]
            client.send("scene", emotion="calm", intensity=0.1, location="forest")
            time.sleep(1.0)
            offset, round_trip = client.sync()
            sends = []
            for i in range(trials):
                value = 0.2 + 0.6 * i / trials  # unique per trial (float32 keeps them apart)
                sends.append((client.send("intensity", intensity=value), value))
                time.sleep(interval)
            time.sleep(0.5)
            offset_end, round_trip_end = client.sync()
        finally:
            stopped = server.stop()
            client.close()
        _, inputs, _ = load_recording(record)
    import numpy as np

    frames = {}
    for frame, item in inputs:
        if getattr(item, "intensity", None) is not None and item.emotion is None:
            frames[round(float(np.float32(item.intensity)), 6)] = frame
    blocks = sorted(client.blocks, key=lambda b: b[2])
    starts = [b[2] for b in blocks]
    import bisect

    to_receipt, to_playback, missing = [], [], 0
    for sent, value in sends:
        frame = frames.get(round(float(np.float32(value)), 6))
        if frame is None:
            missing += 1
            continue
        index = bisect.bisect_right(starts, frame) - 1
        if index < 0 or not starts[index] <= frame < starts[index] + blocks[index][3]:
            missing += 1
            continue
        to_receipt.append((blocks[index][0] - sent) * 1000)
        playback = frame / SAMPLE_RATE_HZ + (offset + offset_end) / 2
        to_playback.append((playback - sent) * 1000)
    # Where the audio is relative to playback when it arrives: the lookahead actually held.
    ahead = [((b[2] / SAMPLE_RATE_HZ + offset) - b[0]) * 1000 for b in client.blocks[50:]]
    return {
        "trials": trials, "matched": len(to_receipt), "missing": missing, "lookahead_ms": lookahead_ms,
        "receipt_ms": summary(to_receipt), "playback_ms": summary(to_playback), "ahead_ms": summary(ahead),
        "sync_round_trip_ms": round_trip * 1000, "clock_drift_ms": (offset_end - offset) * 1000,
        "tcp_gaps": gaps(client.blocks), **{f"server_{k}": v for k, v in stopped.items()},
    }


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return {"min": ordered[0], "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": ordered[-1],
            "mean": statistics.fmean(ordered), "n": len(ordered)}


# =============================================================================
# Case: sustained input rate (server in this process, blaster in a child)
# =============================================================================
def blast(port: int, rate: float, seconds: float) -> None:
    """Child process: send valid scene inputs at ``rate`` per second for ``seconds``; print the count."""
    from bridge.protocol import encode_osc

    datagrams = [encode_osc("scene", emotion="calm", intensity=i / 100, location="forest") for i in range(100)]
    datagrams += [encode_osc("intensity", intensity=i / 100) for i in range(100)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    address = ("127.0.0.1", port)
    start = time.monotonic()
    sent = 0
    batch = max(1, int(rate / 1000))  # send in 1 ms batches
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            for _ in range(min(batch, due - sent)):
                try:
                    sock.sendto(datagrams[sent % len(datagrams)], address)
                except OSError:
                    pass
                sent += 1
        time.sleep(0.0005)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}), flush=True)


def read_audio_child(port: int, seconds: float) -> None:
    """Child process: read the TCP audio stream for ``seconds``; print blocks and gaps."""
    from bridge.audio import read_tcp_blocks

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sequences = []
    deadline = time.monotonic() + seconds
    for header, _ in read_tcp_blocks(sock):
        sequences.append(header.sequence)
        if time.monotonic() > deadline:
            break
    sock.close()
    print(json.dumps({"blocks": len(sequences), "gaps": sum(1 for a, b in zip(sequences, sequences[1:]) if b != a + 1)}),
          flush=True)


def client_child(osc_port: int, tcp_port: int, seconds: float) -> None:
    """Child process: one game client (hello, events, TCP audio read, 90 Hz scenes) for ``seconds``."""
    client = Client(osc_port, tcp_port)
    client.hello()
    client.send("subscribe", stream="events")
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        client.send("scene", **scene_values(elapsed))
        sent += 1
        time.sleep(max(0.0, start + sent / 90.0 - time.monotonic()))
    blocks, tcp_gaps = len(client.blocks), gaps(client.blocks)
    client.close()
    print(json.dumps({"sent": sent, "blocks": blocks, "gaps": tcp_gaps}), flush=True)


def run_threads(seconds: float) -> dict:
    """Where the CPU goes: the server in this process, one client (a child
    process) at 90 Hz, CPU time of each server thread from /proc/self/task."""
    from app.server import Server

    server = Server(_in_process_settings())
    server.start()
    child = _child("_client", str(server.osc.port), str(server.audio_tcp.port), str(seconds + 3))
    ticks = os.sysconf("SC_CLK_TCK")

    def per_thread() -> dict:
        out = {}
        for thread in threading.enumerate():
            try:
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, TypeError):
                continue
            out[thread.name] = (int(fields[11]) + int(fields[12])) / ticks
        return out

    def process() -> float:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    try:
        time.sleep(2.0)
        t0, p0, w0 = per_thread(), process(), time.monotonic()
        time.sleep(seconds)
        t1, p1, w1 = per_thread(), process(), time.monotonic()
    finally:
        child.communicate(timeout=seconds + 30)
        server.close()
    wall = w1 - w0
    threads = {name: (t1[name] - t0.get(name, 0.0)) / wall for name in t1}
    named = sum(threads.values())
    threads["(other threads: FluidSynth, ZeroMQ I/O)"] = max(0.0, (p1 - p0) / wall - named)
    return {"seconds": seconds, "process_share": (p1 - p0) / wall,
            "threads": dict(sorted(threads.items(), key=lambda kv: -kv[1]))}


def _child(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE,
                            text=True, env=env)


def run_rate(rates: list[int], seconds: float) -> dict:
    from app.server import Server

    server = Server(_in_process_settings())
    server.start()
    steps = []
    total_seconds = len(rates) * (seconds + 1.5) + 5
    reader = _child("_read_audio", str(server.audio_tcp.port), str(total_seconds))
    try:
        time.sleep(1.5)
        for rate in rates:
            before = dict(server.osc.counters), dict(server.realtime.counters)
            cpu0, wall0 = time.process_time(), time.monotonic()
            child = _child("_blast", str(server.osc.port), str(rate), str(seconds))
            out, _ = child.communicate(timeout=seconds + 30)
            time.sleep(0.5)  # let the server drain its socket buffer
            cpu1, wall1 = time.process_time(), time.monotonic()
            after = dict(server.osc.counters), dict(server.realtime.counters)
            result = json.loads(out.strip().splitlines()[-1])
            received = after[0].get("received", 0) - before[0].get("received", 0)
            underruns = after[1]["underruns"] - before[1]["underruns"]
            late = after[1]["late_frames"] - before[1]["late_frames"]
            step = {"rate": rate, "sent": result["sent"], "achieved_rate": result["sent"] / result["seconds"],
                    "received": received, "lost": result["sent"] - received, "underruns": underruns,
                    "late_frames": late, "internal_errors": after[0].get("internal_errors", 0),
                    "server_cpu_share": (cpu1 - cpu0) / (wall1 - wall0)}
            step["sustained"] = step["lost"] == 0 and underruns == 0 and step["achieved_rate"] >= 0.95 * rate
            steps.append(step)
            print(f"  rate {rate:>6}/s: sent {step['sent']}, handled {received}, lost {step['lost']}, "
                  f"underruns {underruns}, late frames {late}, server CPU {step['server_cpu_share']:.0%}", flush=True)
            if not step["sustained"] and rate >= TARGET_RATE * 2:
                break
            time.sleep(1.0)
    finally:
        server.close()
        reader_out, _ = reader.communicate(timeout=30)
    audio = json.loads(reader_out.strip().splitlines()[-1]) if reader_out.strip() else {}
    sustained = [s["rate"] for s in steps if s["sustained"]]
    return {"steps": steps, "best_sustained": max(sustained) if sustained else 0, "seconds": seconds,
            "audio_reader": audio, "failure": repr(server.realtime.failure)}


# =============================================================================
# Machine, report
# =============================================================================
def machine() -> dict:
    from docs_section import machine_facts

    facts = machine_facts()
    if facts.pop("virtual"):
        facts["cpu"] += ", virtual machine (KVM guest)"
    return {**facts, "load": os.getloadavg()[0]}


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def markdown(results: dict, info: dict, command: str) -> str:
    from app.server import ServerSettings

    lat, rate, cpu, soak = (results.get(k) for k in ("latency", "rate", "cpu", "soak"))
    defaults = {name: field.default for name, field in ServerSettings.model_fields.items()}
    block_ms = 1000.0 * defaults["block_frames"] / defaults["sample_rate_hz"]
    lines = [
        SECTION_TITLE, "",
        f"Measured {info['date']} with `{command}` (add `--write-docs` to rewrite this section; "
        "`bench/README.md` says what is measured). The server with its default settings: "
        f"{defaults['sample_rate_hz'] / 1000:g} kHz, blocks of {defaults['block_frames']} frames ({block_ms:.1f} ms), "
        f"lookahead {defaults['lookahead_ms']:g} ms, the default cue bank, loopback only.", "",
        "### Machine", "",
        f"- CPU: {info['cpu']}",
        f"- Cores: {info['cores']} (nothing pinned: the server's render, OSC and TCP threads share them with the client)",
        f"- Memory: {info['memory_gb']:.1f} GiB",
        f"- OS: {info['os']}",
        f"- Python {info['python']}, numpy {info['numpy']}",
        "",
    ]
    if lat:
        r, p = lat["receipt_ms"], lat["playback_ms"]
        lines += [
            "### Reaction latency", "",
            f"{lat['trials']} `/adaptive/intensity` changes, one every 50 ms, to `adaptive serve --record` in a "
            f"subprocess ({lat['matched']} matched to their frame in the recording). The frame an input takes effect "
            "at is the one the render thread stamps it with (recorded; the audio from it on is rendered with the "
            "new intensity). Clocks are matched with ping/pong "
            f"(best round trip {lat['sync_round_trip_ms']:.2f} ms, drift over the run {lat['clock_drift_ms']:+.3f} ms).", "",
            "| from the message sent to | min ms | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
            f"| receipt of the TCP block holding that frame | {r['min']:.1f} | {r['p50']:.1f} | {r['p90']:.1f} | "
            f"{r['p99']:.1f} | {r['max']:.1f} |",
            f"| scheduled playback of that frame | {p['min']:.1f} | {p['p50']:.1f} | {p['p90']:.1f} | "
            f"{p['p99']:.1f} | {p['max']:.1f} |",
            "",
            f"Audio arrives {lat['ahead_ms']['p50']:.1f} ms (median; min {lat['ahead_ms']['min']:.1f} ms) ahead of its "
            f"playback time: the {lat['lookahead_ms']:g} ms lookahead. The target is judged on receipt: that is the "
            "server's reaction (the OSC thread hands the input over, the render thread stamps it within one block "
            "and renders the block that starts with it when playback frees a block of lookahead); receipt to playback "
            "is the lookahead, a buffer the operator sets (`--lookahead-ms`) to trade latency against underruns.", "",
        ]
    if rate:
        lines += [
            "### Input rate", "",
            f"The server in the benchmark's process (which only sleeps meanwhile), one child process blasting valid "
            f"`/adaptive/scene` and `/adaptive/intensity` messages over loopback for {rate['seconds']:g} s per step, "
            "another reading the TCP audio. *handled*: datagrams the server read and processed (the rest were lost "
            "in the socket buffer). Sustained: all handled, no new underrun.", "",
            "| rate msgs/s | sent | achieved msgs/s | handled | lost | new underruns | late frames | server CPU (cores) | sustained |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in rate["steps"]:
            lines.append(f"| {s['rate']} | {s['sent']} | {s['achieved_rate']:.0f} | {s['received']} | {s['lost']} | "
                         f"{s['underruns']} | {s['late_frames']} | {s['server_cpu_share']:.2f} | "
                         f"{'yes' if s['sustained'] else 'no'} |")
        lines += [""]
    for title, run in (("### One session at 90 Hz: CPU and memory", cpu), ("### 10-minute run at 90 Hz", soak)):
        if not run:
            continue
        lines += [
            title, "",
            f"`adaptive serve` in a subprocess; one client: hello, events subscribed, TCP audio read, "
            f"`/adaptive/scene` at {run['achieved_rate_hz']:.1f} Hz for {run['seconds']:g} s (intensity sweeping "
            "0..1 over 20 s, the emotion changing every 15 s through "
            f"{', '.join(EMOTION_CYCLE)}: cue changes and transitions).", "",
            "| CPU (one core) | RSS start MB | RSS peak MB | RSS end MB | VmHWM MB | threads | blocks | underruns | TCP gaps | rejected |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {run['cpu_share']:.1%} | {run['rss_start_mb']:.0f} | {run['rss_peak_mb']:.0f} | {run['rss_end_mb']:.0f} | "
            f"{run['vm_hwm_mb']:.0f} | {run['threads']} | {run['server_blocks']} | {run['server_underruns']} | "
            f"{run['tcp_gaps']} | {run['server_rejected']} |",
            "",
        ]
        if run.get("ahead_ms"):
            late = run.get("late_blocks_at_s") or []
            lines += [f"At the client, audio arrived {run['ahead_ms']['p50']:.1f} ms (median) and at least "
                      f"{run['ahead_ms']['min']:.1f} ms ahead of its playback time"
                      + (f"; blocks arrived late {len(late)} times, at {', '.join(f'{x:g}' for x in late[:10])} s "
                         "into the run." if late else "; no block arrived late."), ""]
        if run.get("by_thread"):
            bt = run["by_thread"]
            lines += [
                f"Where it goes: the same client (a child process) against the server run inside the benchmark's "
                f"process for {bt['seconds']:g} s, CPU time of each thread from `/proc/self/task` "
                f"(process total {bt['process_share']:.1%} of one core):", "",
                "| thread | share of one core |", "|---|---:|",
                *[f"| {re.sub(r'-[0-9]+$', '', name)} | {share:.1%} |" for name, share in bt["threads"].items()
                  if share >= 0.001], "",
            ]
        if run is soak and soak.get("note"):
            lines += [soak["note"], ""]
    lines += ["### Targets", "", "| target | judged on | result | |", "|---|---|---|---|"]
    if lat:
        p99 = lat["receipt_ms"]["p99"]
        lines.append(f"| reaction p99 < {TARGET_LATENCY_P99_MS:g} ms | message sent -> TCP receipt of the block holding "
                     f"its frame | p99 {p99:.1f} ms | {_verdict(p99 < TARGET_LATENCY_P99_MS)} |")
    if rate:
        best = rate["best_sustained"]
        lines.append(f"| >= {TARGET_RATE} msgs/s with no underrun | highest step sustained {rate['seconds']:g} s, nothing "
                     f"lost | {best} msgs/s | {_verdict(best >= TARGET_RATE)} |")
    if cpu:
        lines.append(f"| CPU <= {TARGET_CPU_SHARE:.0%} of one core | server process utime + stime / wall, 90 Hz scene | "
                     f"{cpu['cpu_share']:.1%} | {_verdict(cpu['cpu_share'] <= TARGET_CPU_SHARE)} |")
        lines.append(f"| RSS <= {TARGET_RSS_MB:g} MB | peak VmRSS sampled each second, and VmHWM | "
                     f"{max(cpu['rss_peak_mb'], cpu['vm_hwm_mb']):.0f} MB | "
                     f"{_verdict(max(cpu['rss_peak_mb'], cpu['vm_hwm_mb']) <= TARGET_RSS_MB)} |")
    if soak:
        lines.append(f"| {TARGET_UNDERRUNS} underruns in {soak['seconds'] / 60:g} min at 90 Hz | the count the server "
                     f"prints when it stops | {soak['server_underruns']} | "
                     f"{_verdict(soak['server_underruns'] <= TARGET_UNDERRUNS)} |")
    lines += [""]
    notes = []
    if cpu and soak and abs(soak["cpu_share"] - cpu["cpu_share"]) > 0.02:
        notes.append(f"The CPU share moves with the machine: {cpu['cpu_share']:.1%} over the {cpu['seconds']:g} s run, "
                     f"{soak['cpu_share']:.1%} over the {soak['seconds']:g} s run.")
    if soak and soak.get("server_max_block_ms") is not None:
        notes.append(f"Timing inside the server over the {soak['seconds'] / 60:g}-minute run (printed when it stops): "
                     f"longest block (render + sinks) {soak['server_max_block_ms']:.1f} ms, latest wake-up of the "
                     f"render thread {soak['server_max_wake_delay_ms']:.1f} ms after it asked, longest garbage "
                     f"collection {soak['server_max_gc_pause_ms']:.1f} ms; audio arrived at least "
                     f"{soak['ahead_ms']['min']:.1f} ms ahead of its playback time.")
    notes.append("What got the server here (each measured on this machine, docs/engine.md): sinks that do no work for "
                 "streams nobody subscribes to and wake no thread per block (the ZeroMQ sockets are XPUBs; the TCP "
                 "stream is written from the render thread with a non-blocking send); one wake-up of the render "
                 "thread per block (it had also woken every 5 ms to look for inputs, which changed no stamp), and "
                 "blocks of 1024 frames: on this virtual machine a wake-up costs far more than the frames it renders "
                 "(the same 90 Hz session offline, `Session.render(512)` with a 10 ms sleep between blocks, took "
                 "7.8-9.3 % of a core; without the sleeps 3.3 %), so the share went from 11-16 % at 512 frames to "
                 "8-10 % at 1024, for about 10 ms more reaction time; `gc.freeze()` after start-up (full "
                 "collections had paused every thread 20-60 ms; now under 2 ms); and scheduling: the render thread asks for SCHED_FIFO and the "
                 "server's threads run at nice -10 (a stall of 77-115 ms had come from the render thread, or the "
                 "thread holding the GIL, being preempted by other processes), with a 1 ms interpreter switch "
                 "interval (a waking render thread waited up to 5 ms for the GIL).")
    if notes:
        lines += ["### Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    """Replace (or add) the "## Real-time server" section of ``path``, leaving the others."""
    from docs_section import write_section

    write_section(path, SECTION_TITLE, section)


def run_profile(seconds: float) -> None:
    """cProfile of the render thread of an in-process server fed at 90 Hz."""
    import cProfile
    import pstats

    from app.server import Server

    server = Server(_in_process_settings())
    profile = cProfile.Profile()
    original = server.realtime.run_once

    def profiled() -> float:
        return profile.runcall(original)

    server.realtime.run_once = profiled
    server.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    from bridge.protocol import encode_osc

    start = time.monotonic()
    while (t := time.monotonic() - start) < seconds:
        sock.sendto(encode_osc("scene", **scene_values(t)), ("127.0.0.1", server.osc.port))
        time.sleep(1 / 90)
    server.close()
    pstats.Stats(profile).sort_stats("tottime").print_stats(20)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=("latency", "rate", "cpu", "soak"),
                        help="only these cases (default: all)")
    parser.add_argument("--trials", type=int, default=200, help="latency trials (default 200)")
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 15000, 20000, 30000, 40000],
                        help="input rate steps, msgs/s")
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="seconds per rate step (default 5)")
    parser.add_argument("--cpu-seconds", type=float, default=60.0, help="CPU and memory run (default 60)")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="underrun run (default 600)")
    parser.add_argument("--soak-json", type=Path, help="take the soak figures from this --json file instead of running it")
    parser.add_argument("--report-json", type=Path, help="run nothing: report the figures of this --json file")
    parser.add_argument("--json", type=Path, help="write every figure, raw, as JSON")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    parser.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=float, metavar="SECONDS",
                        help="instead: a cProfile of the render thread serving 90 Hz scene updates")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_blast"]:
        blast(int(argv[1]), float(argv[2]), float(argv[3]))
        return 0
    if argv[:1] == ["_client"]:
        client_child(int(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    if argv[:1] == ["_read_audio"]:
        read_audio_child(int(argv[1]), float(argv[2]))
        return 0
    args = build_parser().parse_args(argv)
    if args.profile:
        run_profile(args.profile)
        return 0
    cases = args.only or ["latency", "rate", "cpu", "soak"]
    if args.soak_json and "soak" in cases:
        cases.remove("soak")
    info = {**machine(), "date": _dt.date.today().isoformat()}
    results: dict = {}
    if args.report_json:
        saved = json.loads(args.report_json.read_text())
        info, results, cases = saved["machine"], saved["results"], []
    if "soak" in cases:
        print(f"soak: {args.soak_seconds:g} s at 90 Hz ...", flush=True)
        results["soak"] = run_session(args.soak_seconds, label="soak")
    if "latency" in cases:
        print(f"latency: {args.trials} trials ...", flush=True)
        results["latency"] = run_latency(args.trials)
    if "rate" in cases:
        print("input rate ...", flush=True)
        results["rate"] = run_rate(args.rates, args.rate_seconds)
    if "cpu" in cases:
        print(f"CPU and memory: {args.cpu_seconds:g} s at 90 Hz ...", flush=True)
        results["cpu"] = run_session(args.cpu_seconds, label="cpu")
        print("CPU by thread: 20 s ...", flush=True)
        results["cpu"]["by_thread"] = run_threads(20.0)
    if args.soak_json:
        saved_soak = json.loads(args.soak_json.read_text())
        results["soak"] = saved_soak["results"]["soak"]
        results["soak"]["note"] = (f"Measured in a run of its own (`--only soak --json {args.soak_json.name}`, "
                                   f"{saved_soak['machine']['date']}; load average "
                                   f"{saved_soak['machine'].get('load', 0):.2f} at its start).")
    command = "python bench/server_benchmark.py" + (f" --soak-json {args.soak_json.name}" if args.soak_json else "")
    if args.report_json:
        command += f" --report-json {args.report_json.name}"
    section = markdown(results, info, command)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1, default=str) + "\n")
    if args.write_docs:
        write_docs(args.docs, section)
        print(f"rewrote '{SECTION_TITLE}' in {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
