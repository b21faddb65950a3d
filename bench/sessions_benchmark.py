#!/usr/bin/env python3
"""Sessions per server: what each extra session costs (issue 14).

Run by hand (not in CI), from a source checkout::

    python bench/sessions_benchmark.py                          # N = 1, 2, 4, 8; 30 s each
    python bench/sessions_benchmark.py --seconds 600 --write-docs   # the issue's 10 minutes, into docs/benchmarks.md
    python bench/sessions_benchmark.py --sessions 1 2 --seconds 10  # a quick look
    python bench/sessions_benchmark.py --sessions 1 10 20 30 40 --seconds 600 --render-threads 1 0 --write-docs
                                        # sessions per core: the issue's 10 minutes per N, the loop against a thread each

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
* **per extra session**: (figure at N - figure at 1) / (N - 1);
* **sessions per core**: the largest N with 0 underruns and 0 TCP gaps,
  divided by the machine's cores.

``--render-threads`` runs every N with each value of the server's
``render_threads`` (the server's default, ``app.settings.RENDER_THREADS``:
two loops, one per core of this project's machine; 1: one render loop for
all sessions; 0: a render thread per session, as before the loops).

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

from app.settings import RENDER_THREADS  # noqa: E402
from server_benchmark import SAMPLE_RATE_HZ, ServerProcess, gaps, machine, scene_values  # noqa: E402

SECTION_TITLE = "## Sessions per core"
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


def run(n_sessions: int, seconds: float, warmup: float, render_threads: int = RENDER_THREADS) -> dict:
    """N sessions with one 90 Hz game each, for ``seconds``; the server's figures."""
    load = os.getloadavg()[0]
    server = ServerProcess(extra=["--max-sessions", str(max(16, n_sessions)), "--render-threads", str(render_threads)])
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
        "sessions": n_sessions, "render_threads": render_threads, "seconds": seconds, "load_at_start": load,
        "load_at_end": os.getloadavg()[0],
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0), "rss_mb": rss_mb, "threads": threads,
        "scene_messages_per_game": sent, "achieved_rate_hz": sent / seconds,
        "hello_seconds": made_seconds,
        "underruns_default": stopped["underruns"],
        "underruns_others": int(others.group(2)) if others else None,
        "blocks_default": stopped["blocks"], "blocks_others": int(others.group(1)) if others else None,
        "tcp_gaps": tcp_gaps, "blocks_received": blocks_received,
        "max_block_ms": stopped["max_block_ms"], "max_wake_delay_ms": stopped["max_wake_delay_ms"],
    }


def clean(result: dict) -> bool:
    """Whether a run had no underrun and no TCP gap."""
    return (result["underruns_default"] + (result["underruns_others"] or 0)) == 0 and result["tcp_gaps"] == 0


def render_label(render_threads: int) -> str:
    return "one loop" if render_threads == 1 else ("a thread each" if render_threads == 0
                                                   else f"{render_threads} loops")


def markdown(results: list[dict], info: dict, command: str) -> str:
    lines = [
        SECTION_TITLE, "",
        f"Measured {info['date']} with `{command}` on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gb']:.0f} GB, {info['os']}, Python {info['python']}. N sessions in one `adaptive serve` "
        f"(default settings, no recording), each with one game sending `/adaptive/scene` at {RATE_HZ:g} Hz and "
        "reading its session's TCP audio (`bench/sessions_benchmark.py`; the games run on the same machine); "
        "*render*: the server's `render_threads` (loops shared by every session; the server's default is "
        f"{RENDER_THREADS}; or a render thread per session). {info['note']}", "",
        "| sessions | render | run | load at start/end | CPU (share of one core) | RSS | threads "
        "| underruns (default + others) | TCP gaps | longest block | hello of the last session |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        underruns = f"{r['underruns_default']} + {r['underruns_others'] if r['underruns_others'] is not None else 0}"
        load = f"{r['load_at_start']:.1f}/{r.get('load_at_end', r['load_at_start']):.1f}"
        lines.append(f"| {r['sessions']} | {render_label(r.get('render_threads', 0))} | {r['seconds']:g} s | {load} "
                     f"| {r['cpu_share'] * 100:.1f} % | {r['rss_mb']:.0f} MB | {r['threads']} | {underruns} "
                     f"| {r['tcp_gaps']} | {r['max_block_ms']:.1f} ms | {r['hello_seconds'][-1] * 1000:.0f} ms |")
    lines += ["", "Per extra session (against N = 1 with the same render setting), and sessions per core "
              "(the largest N run with 0 underruns and 0 TCP gaps, over the cores):", "",
              "| render | sessions | CPU per extra session | RSS per extra session |", "|---|---:|---:|---:|"]
    for render_threads in sorted({r.get("render_threads", 0) for r in results}, reverse=True):
        runs = [r for r in results if r.get("render_threads", 0) == render_threads]
        base = next((r for r in runs if r["sessions"] == 1), None)
        if base is not None:
            for r in runs:
                if r["sessions"] > 1:
                    extra = r["sessions"] - 1
                    lines.append(f"| {render_label(render_threads)} | {r['sessions']} "
                                 f"| {(r['cpu_share'] - base['cpu_share']) * 100 / extra:.1f} % "
                                 f"| {(r['rss_mb'] - base['rss_mb']) / extra:.1f} MB |")
    lines.append("")
    for render_threads in sorted({r.get("render_threads", 0) for r in results}, reverse=True):
        runs = [r for r in results if r.get("render_threads", 0) == render_threads]
        good = [r["sessions"] for r in runs if clean(r)]
        largest = max(good) if good else 0
        lines.append(f"* {render_label(render_threads)}: the largest N with 0 underruns and 0 gaps: **{largest}** "
                     f"({largest / info['cores']:.1f} per core; N tried: "
                     f"{', '.join(str(r['sessions']) for r in runs)})")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8], help="values of N (default 1 2 4 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per N (default 30; the issue "
                                                                   "asks for 600)")
    parser.add_argument("--render-threads", type=int, nargs="+", default=[RENDER_THREADS],
                        help=f"the server's render_threads, each run for every N (default {RENDER_THREADS}, the "
                             "server's: a loop per core; 1: one loop; 0: a thread per session)")
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
               f"--seconds {args.seconds:g} --render-threads {' '.join(map(str, args.render_threads))}")
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
    for render_threads in args.render_threads:
        for n in args.sessions:
            print(f"N = {n}, render_threads {render_threads}: {args.seconds:g} s ...", flush=True)
            result = run(n, args.seconds, args.warmup, render_threads)
            print(f"  CPU {result['cpu_share'] * 100:.1f} %, RSS {result['rss_mb']:.0f} MB, threads {result['threads']}, "
                  f"underruns {result['underruns_default']} + {result['underruns_others']}, TCP gaps "
                  f"{result['tcp_gaps']}, longest block {result['max_block_ms']:.1f} ms, load "
                  f"{result['load_at_start']:.1f}/{result['load_at_end']:.1f}", flush=True)
            results.append(result)
            if args.json is not None:  # after each run: a long run stopped early keeps what it measured
                info = {**machine(), "date": _dt.date.today().isoformat(), "note": args.note}
                args.json.write_text(json.dumps({"machine": info, "results": results, "command": command},
                                                indent=1) + "\n", encoding="utf-8")
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
