#!/usr/bin/env python3
"""Audience mode: many audience clients voting at 10 Hz into one session
(issue 14, docs/audience.md).

Run by hand (not in CI), from a source checkout::

    python bench/audience_benchmark.py                               # 100 and 300 clients, 30 s each
    python bench/audience_benchmark.py --clients 1000 --seconds 60   # the issue's 1 000 (on a quiet machine)
    python bench/audience_benchmark.py --clients 100 300 --write-docs  # into docs/benchmarks.md

For each N, ``adaptive serve`` runs as a subprocess (the default settings:
48 kHz, blocks of 1024 frames, lookahead 40 ms, the default bank and
generator) with a mapping whose ``[audience]`` aggregates the ``mean`` of a
2 s window every 250 ms, ``--max-clients`` and ``--max-clients-per-host``
raised to N + 2, and ``--record`` on. This process plays:

* N audience clients: one UDP socket each, hello with the audience role
  (every client gets beat/bar callbacks, left unread), then a vote every
  100 ms each (staggered), all sent by one thread. Client i votes the point
  ``(v_i, 0.5)`` with ``v_i`` spread over [-0.9, 0.9] and intensity 0.25 or
  0.75, and from the middle of the run ``(-v_i, -0.5)``;
* one listener reading the TCP audio stream on a thread.

Measured over the run:

* **underruns** of the session and **gaps** in the listener's TCP stream
  (missing block sequence numbers);
* **CPU**: the server's utime + stime (``/proc/PID/stat``) over the wall
  clock, as a share of one core; and this process's (the clients');
* **votes**: sent, and recorded (the recording's ``audience_vote`` lines),
  and refused (the server's ``rejected`` count: rate limits, caps);
* **aggregation**: the recording's votes are run through the session's own
  aggregation (:class:`adaptive.audience.Audience`, on the recorded frames,
  at every 250 ms grid frame): the share of grid frames, once a full window
  into each phase, at which all N voices counted and the mean equals the
  mean of what the clients sent (exactly, from their float32 values).

The clients run in this process on the same machine, so their CPU is CPU
the server lacks.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)  # run from a checkout without installing

from server_benchmark import SAMPLE_RATE_HZ, Client, ServerProcess, gaps, machine  # noqa: E402

SECTION_TITLE = "## Audience mode"
DOCS = REPO / "docs" / "benchmarks.md"
VOTE_HZ = 10.0
WINDOW_S = 2.0
INTERVAL_MS = 250.0


def vote_point(index: int, n_clients: int, second_phase: bool) -> tuple[float, float, float]:
    """(valence, arousal, intensity) client ``index`` votes, as float32 values (what OSC carries)."""
    import numpy as np

    valence = -0.9 + 1.8 * index / max(1, n_clients - 1)
    arousal, intensity = 0.5, 0.25 if index % 2 else 0.75
    if second_phase:
        valence, arousal = -valence, -arousal
    return tuple(float(np.float32(x)) for x in (valence, arousal, intensity))  # type: ignore[return-value]


def hello_all(osc_port: int, n_clients: int) -> list[socket.socket]:
    """N UDP sockets, each said hello with the audience role and got its welcome."""
    from bridge.protocol import Direction, decode_osc, encode_osc

    sockets = []
    for index in range(n_clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10.0)
        sock.sendto(encode_osc("hello", reply_port=sock.getsockname()[1], sample_rate_hz=SAMPLE_RATE_HZ, channels=2,
                               sample_format="s16", client_name=f"phone-{index}", role="audience"),
                    ("127.0.0.1", osc_port))
        while True:
            decoded = decode_osc(sock.recvfrom(65536)[0], Direction.TO_CLIENT)
            if decoded.message.name == "error":
                raise RuntimeError(f"hello {index} refused: {decoded.values}")
            if decoded.message.name == "welcome":
                break
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # callbacks left unread: the kernel drops them
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def check_aggregation(record: Path, n_clients: int, phase_frame: int) -> dict:
    """Run the recorded votes through the session's aggregation on the 250 ms
    grid; the share of grid frames (a full window into each phase) where all N
    voices count and the mean is exactly what the clients sent."""
    from adaptive.audience import Audience, AudienceAggregate, aggregate_votes
    from adaptive.emotion import NAMED_EMOTIONS
    from adaptive.recording_format import AudienceVoteLine

    # The vote lines read as the recording reader reads them (the header's generator is not loaded here).
    lines = [json.loads(line) for line in record.read_text().splitlines()[1:] if line.strip()]
    votes = [(line["frame"], AudienceVoteLine.model_validate(line).item()) for line in lines
             if line.get("type") == "audience_vote"]
    end_frame = max((line["frame"] for line in lines if "frame" in line), default=0)
    interval = round(INTERVAL_MS * SAMPLE_RATE_HZ / 1000)
    window = round(WINDOW_S * SAMPLE_RATE_HZ)
    expected = {}
    for phase in (False, True):
        points = [vote_point(i, n_clients, phase) for i in range(n_clients)]
        expected[phase] = (math.fsum(p[0] for p in points) / n_clients, math.fsum(p[1] for p in points) / n_clients,
                           math.fsum(p[2] for p in points) / n_clients)
    audience, position, checked, correct = Audience(), 0, 0, 0
    first_vote = votes[0][0] if votes else 0
    for grid in range(interval, end_frame, interval):
        while position < len(votes) and votes[position][0] <= grid:
            audience.add(*votes[position])
            position += 1
        counted = audience.in_window(grid, window)
        phase = grid >= phase_frame
        settled = grid >= (phase_frame if phase else first_vote) + window
        if not settled or (not phase and grid >= phase_frame):
            continue
        checked += 1
        if len(counted) == n_clients:
            result = aggregate_votes(counted, AudienceAggregate.MEAN, NAMED_EMOTIONS)
            if (result.valence, result.arousal, result.intensity) == expected[phase]:
                correct += 1
    return {"votes_recorded": len(votes), "voices_recorded": len({item.voice for _, item in votes}),
            "grid_frames_checked": checked, "grid_frames_correct": correct}


def run(n_clients: int, seconds: float, warmup: float) -> dict:
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="audience_benchmark_"))
    mapping = folder / "mapping.toml"
    mapping.write_text(f'[audience]\naggregate = "mean"\nwindow_s = {WINDOW_S}\ninterval_ms = {INTERVAL_MS}\n')
    record = folder / "show.jsonl"
    server = ServerProcess(record=record, extra=["--mapping", str(mapping), "--max-clients", str(n_clients + 2),
                                                 "--max-clients-per-host", str(n_clients + 2)])
    listener = phones = None
    try:
        listener = Client(server.osc_port, server.tcp_port)
        listener.hello()
        started = time.monotonic()
        phones = hello_all(server.osc_port, n_clients)
        hello_seconds = time.monotonic() - started
        from bridge.protocol import encode_osc

        datagrams = {phase: [encode_osc("audience_vote", emotion="", valence=v, arousal=a, intensity=i)
                             for v, a, i in (vote_point(index, n_clients, phase) for index in range(n_clients))]
                     for phase in (False, True)}
        address = ("127.0.0.1", server.osc_port)
        period = 1.0 / VOTE_HZ
        time.sleep(warmup)
        cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.monotonic()
        start = time.monotonic()
        due = [start + period * index / n_clients for index in range(n_clients)]  # staggered over 100 ms
        sent, late_sends = 0, 0
        while (now := time.monotonic()) - start < seconds:
            phase = now - start >= seconds / 2
            for index in range(n_clients):
                if due[index] <= now:
                    try:
                        phones[index].sendto(datagrams[phase][index], address)
                        sent += 1
                    except BlockingIOError:
                        late_sends += 1
                    due[index] += period
                    if due[index] < now:  # fell behind: skip, never burst past 10 Hz
                        due[index] = now + period
                        late_sends += 1
            time.sleep(max(0.0, min(due) - time.monotonic()))
        cpu1, own1, wall1 = server.cpu_seconds(), time.process_time(), time.monotonic()
        rss_mb = server.status_kb("VmRSS") / 1024
    finally:
        stopped = server.stop()
        if listener is not None:
            listener.close()
        for sock in phones or []:
            sock.close()
    # The phase change's frame: the first recorded vote with arousal -0.5.
    lines = [json.loads(line) for line in record.read_text().splitlines()[1:]]
    phase_frame_estimate = next((line["frame"] for line in lines if line.get("type") == "audience_vote"
                                 and line.get("arousal") == -0.5), 0)
    aggregation = check_aggregation(record, n_clients, phase_frame_estimate)
    blocks = listener.blocks if listener is not None else []
    return {
        "clients": n_clients, "seconds": seconds, "load_at_start": load, "hello_seconds": hello_seconds,
        "votes_sent": sent, "vote_rate_hz": sent / seconds / n_clients, "late_sends": late_sends,
        "server_cpu_share": (cpu1 - cpu0) / (wall1 - wall0), "clients_cpu_share": (own1 - own0) / (wall1 - wall0),
        "rss_mb": rss_mb, "underruns": stopped["underruns"], "rejected": stopped["rejected"],
        "blocks": stopped["blocks"], "tcp_blocks": len(blocks), "tcp_gaps": gaps(blocks),
        "max_block_ms": stopped["max_block_ms"], "max_wake_delay_ms": stopped["max_wake_delay_ms"], **aggregation,
    }


def markdown(results: list[dict], info: dict, command: str) -> str:
    lines = [
        SECTION_TITLE, "",
        f"Measured {info['date']} with `{command}` on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gb']:.0f} GB, {info['os']}, Python {info['python']}. One `adaptive serve` (default "
        "settings, `--record`, a mapping with `[audience]` mean over 2 s every 250 ms), N audience clients on "
        "loopback (one UDP socket each, one sending thread in the benchmark's process) voting 10 times a second "
        "each, one listener reading the TCP audio stream (`bench/audience_benchmark.py`). "
        f"{info['note']}", "",
        "| clients | run | load at start | votes/s (per client) | server CPU (share of one core) | clients' CPU "
        "| RSS | underruns | TCP gaps | refused votes | votes recorded | aggregate correct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['clients']} | {r['seconds']:g} s | {r['load_at_start']:.1f} | {r['votes_sent'] / r['seconds']:.0f} "
            f"({r['vote_rate_hz']:.2f}) | {100 * r['server_cpu_share']:.1f} % | {100 * r['clients_cpu_share']:.1f} % "
            f"| {r['rss_mb']:.0f} MB | {r['underruns']} | {r['tcp_gaps']} | {r['rejected']} "
            f"| {r['votes_recorded']} of {r['votes_sent']} ({r['voices_recorded']} voices) "
            f"| {r['grid_frames_correct']} of {r['grid_frames_checked']} grid frames |")
    lines += ["", "*Aggregate correct*: the recorded votes run through the session's own aggregation at every "
              "250 ms grid frame from a full window into each half of the run (the clients change their votes "
              "half way): all N voices counted and the mean equal, exactly, to the mean of what the clients sent.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 300], help="audience clients per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="voting time per run (default 30)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after the hellos before measuring")
    parser.add_argument("--note", default="", help="a sentence for the docs (e.g. the machine's load)")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    results = []
    for n in args.clients:
        result = run(n, args.seconds, args.warmup)
        print(json.dumps(result), flush=True)
        results.append(result)
    facts = machine()
    info = {**facts, "date": _dt.date.today().isoformat(), "note": args.note}
    command = (f"python bench/audience_benchmark.py --clients {' '.join(map(str, args.clients))} "
               f"--seconds {args.seconds:g}")
    text = markdown(results, info, command)
    from docs_section import publish

    publish(text, args.write_docs, DOCS, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
