#!/usr/bin/env python3
"""Sessions per server: what each extra session costs (issue 14).

Run by hand (not in CI), from a source checkout::

    python bench/sessions_benchmark.py                          # N = 1, 2, 4, 8; 30 s each
    python bench/sessions_benchmark.py --seconds 600 --write-docs   # the issue's 10 minutes, into docs/benchmarks.md
    python bench/sessions_benchmark.py --sessions 1 2 --seconds 10  # a quick look

For each N, ``adaptive serve`` runs as a subprocess (the default settings:
48 kHz, blocks of 1024 frames, lookahead 40 ms, the default bank and
generator, no recording) and this process plays N games: game 0 joins the
default session, game i > 0 says hello with session ``bench-i`` (made on
demand), so the server holds N sessions. Every game subscribes to events,
reads its session's TCP audio stream (tied to its session by its
``client_id``, sent first) on a thread, and sends ``/adaptive/scene`` at
90 Hz (intensity sweeping 0..1, emotion changing every 15 s, as
``bench/server_benchmark.py``'s session case).

Measured over the run, after ``--warmup`` seconds:

* **CPU**: the server's utime + stime (``/proc/PID/stat``) over the wall
  clock, as a share of one core;
* **RSS**: the server's ``VmRSS`` at the end (after every session was made
  and played);
* **underruns**: every session's, from the lines ``adaptive serve`` prints
  when it stops (the default session's, and the other sessions' sum);
* **gaps**: missing block sequence numbers in the TCP streams the games read
  (a slow reader loses blocks; an underrun does not make a gap);
* **per extra session**: (figure at N - figure at 1) / (N - 1).

The games run in this process on the same machine: their threads (N audio
readers, one sender) take CPU the server then lacks, as a real game on the
same PC would. The load average at the start of each run is printed with it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)  # run from a checkout without installing

from server_benchmark import SAMPLE_RATE_HZ, ServerProcess, gaps, machine, scene_values  # noqa: E402

SECTION_TITLE = "## Sessions per server"
DOCS = REPO / "docs" / "benchmarks.md"
RATE_HZ = 90.0


class Game:
    """One game: OSC hello naming its session, events subscribed, its session's TCP audio read on a thread."""

    def __init__(self, osc_port: int, session: str) -> None:
        self.osc_port = osc_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(15.0)  # making a session takes a while on a loaded machine
        self.session = session
        self.blocks: list[int] = []  # sequence numbers received
        self.audio: socket.socket | None = None
        self.reader: threading.Thread | None = None

    def send(self, name: str, **values) -> None:
        from bridge.protocol import encode_osc

        self.sock.sendto(encode_osc(name, **values), ("127.0.0.1", self.osc_port))

    def hello(self) -> dict:
        from bridge.protocol import Direction, decode_osc

        self.send("hello", reply_port=self.sock.getsockname()[1], sample_rate_hz=SAMPLE_RATE_HZ, channels=2,
                  sample_format="s16", client_name=f"sessions_benchmark {self.session or 'default'}",
                  session=self.session)
        while True:
            decoded = decode_osc(self.sock.recvfrom(65536)[0], Direction.TO_CLIENT)
            if decoded.message.name == "error":
                raise RuntimeError(f"hello refused: {decoded.values}")
            if decoded.message.name == "welcome":
                return decoded.values

    def listen(self, welcome: dict) -> None:
        """Read this session's TCP audio (sending the welcome's client_id first) on a thread."""
        from bridge.audio import read_tcp_blocks

        self.audio = socket.create_connection(("127.0.0.1", welcome["audio_tcp_port"]), timeout=5)
        self.audio.sendall(welcome["client_id"].encode() + b"\n")
        self.audio.settimeout(None)

        def read() -> None:
            try:
                for header, _ in read_tcp_blocks(self.audio):
                    self.blocks.append(header.sequence)
            except OSError:
                pass

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def drain(self) -> None:
        """Read and drop the callbacks waiting at the game's socket."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65536)
        except OSError:
            pass
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(15.0)

    def close(self) -> None:
        if self.audio is not None:
            try:
                self.audio.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.audio.close()
        if self.reader is not None:
            self.reader.join(2)
        self.sock.close()


def run(n_sessions: int, seconds: float, warmup: float) -> dict:
    """N sessions with one 90 Hz game each, for ``seconds``; the server's figures."""
    load = os.getloadavg()[0]
    server = ServerProcess(extra=["--max-sessions", str(max(16, n_sessions))])
    games = [Game(server.osc_port, "" if i == 0 else f"bench-{i}") for i in range(n_sessions)]
    try:
        made_seconds = []
        for game in games:
            started = time.monotonic()
            welcome = game.hello()
            made_seconds.append(time.monotonic() - started)
            game.send("subscribe", stream="events")
            game.listen(welcome)
        time.sleep(warmup)
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        period = 1.0 / RATE_HZ
        start = next_send = time.monotonic()
        sent = 0
        next_drain = start + 1.0
        while (now := time.monotonic()) - start < seconds:
            if now >= next_send:
                values = scene_values(now - start)
                for game in games:
                    game.send("scene", **values)
                sent += 1
                next_send += period
            if now >= next_drain:
                for game in games:
                    game.drain()
                next_drain += 1.0
            time.sleep(max(0.0, next_send - time.monotonic()))
        cpu1, wall1 = server.cpu_seconds(), time.monotonic()
        rss_mb = server.status_kb("VmRSS") / 1024
        threads = server.threads()
        tcp_gaps = sum(gaps([(0, s) for s in game.blocks]) for game in games)
        blocks_received = sum(len(game.blocks) for game in games)
    finally:
        stopped = server.stop()
        for game in games:
            game.close()
    text = "".join(server.stdout)
    others = re.search(r"the other sessions rendered (\d+) blocks with (\d+) underruns", text)
    return {
        "sessions": n_sessions, "seconds": seconds, "load_at_start": load,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0), "rss_mb": rss_mb, "threads": threads,
        "scene_messages_per_game": sent, "achieved_rate_hz": sent / seconds,
        "hello_seconds": made_seconds,
        "underruns_default": stopped["underruns"],
        "underruns_others": int(others.group(2)) if others else None,
        "blocks_default": stopped["blocks"], "blocks_others": int(others.group(1)) if others else None,
        "tcp_gaps": tcp_gaps, "blocks_received": blocks_received,
        "max_block_ms": stopped["max_block_ms"], "max_wake_delay_ms": stopped["max_wake_delay_ms"],
    }


def markdown(results: list[dict], info: dict, command: str) -> str:
    base = next((r for r in results if r["sessions"] == 1), None)
    lines = [
        SECTION_TITLE, "",
        f"Measured {info['date']} with `{command}` on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gb']:.0f} GB, {info['os']}, Python {info['python']}. N sessions in one `adaptive serve` "
        f"(default settings, no recording), each with one game sending `/adaptive/scene` at {RATE_HZ:g} Hz and "
        "reading its session's TCP audio (`bench/sessions_benchmark.py`; the games run on the same machine). "
        f"{info['note']}", "",
        "| sessions | run | load at start | CPU (share of one core) | RSS | underruns (default + others) "
        "| TCP gaps | longest block | hello of the last session |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        underruns = f"{r['underruns_default']} + {r['underruns_others'] if r['underruns_others'] is not None else 0}"
        lines.append(f"| {r['sessions']} | {r['seconds']:g} s | {r['load_at_start']:.1f} | {r['cpu_share'] * 100:.1f} % "
                     f"| {r['rss_mb']:.0f} MB | {underruns} | {r['tcp_gaps']} | {r['max_block_ms']:.1f} ms "
                     f"| {r['hello_seconds'][-1] * 1000:.0f} ms |")
    if base is not None:
        lines += ["", "Per extra session (against N = 1):", "",
                  "| sessions | CPU per extra session | RSS per extra session |", "|---:|---:|---:|"]
        for r in results:
            if r["sessions"] > 1:
                extra = r["sessions"] - 1
                lines.append(f"| {r['sessions']} | {(r['cpu_share'] - base['cpu_share']) * 100 / extra:.1f} % "
                             f"| {(r['rss_mb'] - base['rss_mb']) / extra:.0f} MB |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8], help="values of N (default 1 2 4 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per N (default 30; the issue "
                                                                   "asks for 600)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the last hello before measuring")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    parser.add_argument("--note", default="", help="a sentence about the machine's load, for the docs")
    parser.add_argument("--from-json", type=Path, help="report the results of an earlier --json run (runs nothing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if any(n < 1 for n in args.sessions) or args.seconds <= 0:
        print("sessions must be >= 1 and seconds > 0", file=sys.stderr)
        return 2
    command = (f"python bench/sessions_benchmark.py --sessions {' '.join(map(str, args.sessions))} "
               f"--seconds {args.seconds:g}")
    if args.from_json is not None:
        earlier = json.loads(args.from_json.read_text(encoding="utf-8"))
        info = {**earlier["machine"], "note": args.note or earlier["machine"].get("note", "")}
        results = earlier["results"]
        command = earlier.get("command", command)
        section = markdown(results, info, command)
        print(section)
        if args.write_docs:
            from docs_section import write_section

            write_section(DOCS, SECTION_TITLE, section)
        return 0
    results = []
    for n in args.sessions:
        print(f"N = {n}: {args.seconds:g} s ...", flush=True)
        result = run(n, args.seconds, args.warmup)
        print(f"  CPU {result['cpu_share'] * 100:.1f} %, RSS {result['rss_mb']:.0f} MB, underruns "
              f"{result['underruns_default']} + {result['underruns_others']}, TCP gaps {result['tcp_gaps']}, "
              f"load at start {result['load_at_start']:.1f}", flush=True)
        results.append(result)
    info = {**machine(), "date": _dt.date.today().isoformat(), "note": args.note}
    section = markdown(results, info, command)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "results": results, "command": command}, indent=1) + "\n",
                             encoding="utf-8")
    if args.write_docs:
        from docs_section import write_section

        write_section(DOCS, SECTION_TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
