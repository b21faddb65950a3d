#!/usr/bin/env python3
"""Soak: a server with credentials and a client per role, at 90 Hz, for an hour.

Run by hand (not in CI), from a source checkout::

    python bench/soak_benchmark.py                        # 3600 s, print the table
    python bench/soak_benchmark.py --duration-s 1500 --json soak.json --write-docs
    python bench/soak_benchmark.py --report-json soak.json --write-docs   # the docs from an earlier run

What it does (issue 13: "a one-hour soak at 90 Hz with a client per role →
0 underruns and flat memory after warm-up"):

* ``adaptive credentials`` in a temporary folder, then ``adaptive serve
  --credentials`` on loopback (default bank, blocks of 1024 frames, lookahead
  40 ms, real-time priority), so every client proves its role with the HMAC
  hello and the TCP audio reader must name its client.
* **control**: hello as ``control``, ``/adaptive/scene`` at ``--rate-hz`` (90)
  with the intensity sweeping and the emotion changing every 15 s (cue
  changes and transitions), a stinger every 30 s.
* **listener**: hello as ``listener``, events and MIDI subscribed, TCP audio
  read; each block's arrival is compared with its playback time (clock
  synchronized by ping/pong): a block that arrives after its playback time is
  an underrun as the game hears it.
* **audience**: hello as ``audience``, events subscribed.
* Every client renews its lease by ping (:class:`bridge.client.AdaptiveClient`).
* Every ``--sample-s`` (10) s: the server's RSS, CPU seconds, threads, blocks
  the listener received, sequence gaps, late blocks, messages each client got.
* At the end: the underruns the server counted (its ``stopped`` line), the
  RSS trend after the warm-up (``--warmup-s``, 120) as a least-squares slope
  in MB per hour, and the errors any client received.

``--autogroup-nice N`` writes N to ``/proc/<server pid>/autogroup`` (Linux,
root): on a machine shared with other work (a training run on every core),
it gives the server's session its share of the cores, as a deployment would
by running the server alone.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.server_benchmark import SAMPLE_RATE_HZ, ServerProcess, scene_values, summary  # noqa: E402

SECTION_TITLE = "## Soak: a client per role at 90 Hz"
DOCS = REPO / "docs" / "benchmarks.md"
STINGER = "discovery"
"""The stinger the control client plays every 30 s (one of the default bank's)."""


class RoleClient:
    """One client of ``role``: hello with its secret, its messages counted by name."""

    def __init__(self, port: int, role: str, secret: str) -> None:
        from bridge.client import AdaptiveClient

        self.role = role
        self.client = AdaptiveClient(port=port, client_name=f"soak-{role}", role=role, secret=secret)
        self.welcome = self.client.hello()
        self.counts: dict[str, int] = {}
        self.errors: list[dict] = []
        self._running = True
        self._drain = threading.Thread(target=self._drain_loop, name=f"soak-{role}", daemon=True)
        self._drain.start()

    def _drain_loop(self) -> None:
        while self._running:
            try:
                decoded = self.client._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            name = decoded.message.name
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "error" and len(self.errors) < 20:
                self.errors.append(decoded.values)

    def close(self) -> None:
        self._running = False
        self._drain.join(2)
        self.client.close()


class AudioReader:
    """The listener's TCP audio: blocks counted, gaps, and how far ahead of playback each arrived."""

    def __init__(self, client, offset_s: float) -> None:
        self.sock = client.connect_audio(timeout=5.0)
        self.sock.settimeout(None)
        self.offset_s = offset_s  # local monotonic seconds = server seconds + offset_s
        self.blocks = 0
        self.gaps = 0
        self.late = 0
        self.ahead_ms: list[float] = []
        self._last_sequence: int | None = None
        self._thread = threading.Thread(target=self._read, name="soak-audio", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from bridge.audio import read_tcp_blocks

        try:
            for header, _ in read_tcp_blocks(self.sock):
                arrived = time.monotonic()
                if self._last_sequence is not None and header.sequence != self._last_sequence + 1:
                    self.gaps += 1
                self._last_sequence = header.sequence
                self.blocks += 1
                ahead = (header.first_frame / SAMPLE_RATE_HZ + self.offset_s - arrived) * 1000.0
                if self.blocks > 20:  # the first blocks are the start-up's
                    self.ahead_ms.append(ahead)
                    self.late += ahead < 0
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(2)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(2)


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) samples, in MB per hour (None: under 3 samples)."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600.0


def run(duration_s: float, rate_hz: float, sample_s: float, warmup_s: float, autogroup_nice: int | None,
        client_nice: int | None = None) -> dict:
    from bridge.access import load_credentials

    if client_nice is not None:  # before the server starts: it would inherit a lower value
        try:
            os.setpriority(os.PRIO_PROCESS, 0, client_nice)
        except OSError:
            pass
    clients_nice = os.getpriority(os.PRIO_PROCESS, 0)

    with tempfile.TemporaryDirectory() as folder:
        credentials = Path(folder) / "credentials"
        subprocess.run([sys.executable, "-m", "app.cli", "credentials", str(credentials)], cwd=REPO, check=True,
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        secrets = {role.value: secret for role, secret in load_credentials(credentials).secrets.items()}
        server = ServerProcess(extra=["--credentials", str(credentials)])
        autogroup = None
        if autogroup_nice is not None:
            try:
                Path(f"/proc/{server.pid}/autogroup").write_text(str(autogroup_nice))
                autogroup = Path(f"/proc/{server.pid}/autogroup").read_text().strip()
            except OSError as error:
                autogroup = f"not set ({error})"
        clients: list[RoleClient] = []
        reader = None
        try:
            control, listener, audience = (RoleClient(server.osc_port, role, _secret_text(secrets[role]))
                                           for role in ("control", "listener", "audience"))
            clients = [control, listener, audience]
            listener.client.subscribe("events")
            listener.client.subscribe("midi")
            audience.client.subscribe("events")
            sync = listener.client.sync_clock()
            reader = AudioReader(listener.client, -sync.offset_seconds)
            samples, rss_after_warmup = [], []
            period = 1.0 / rate_hz
            start = time.monotonic()
            next_send, next_sample, next_stinger = start, start, start + 30.0
            sent = 0
            cpu0 = server.cpu_seconds()
            while (now := time.monotonic()) - start < duration_s:
                elapsed = now - start
                if now >= next_send:
                    control.client.scene(**scene_values(elapsed))
                    sent += 1
                    next_send += period
                if now >= next_stinger:
                    control.client.stinger(STINGER)
                    next_stinger += 30.0
                if now >= next_sample:
                    rss_mb = server.status_kb("VmRSS") / 1024
                    sample = {"t_s": round(elapsed, 1), "rss_mb": round(rss_mb, 1),
                              "cpu_s": round(server.cpu_seconds() - cpu0, 2), "threads": server.threads(),
                              "blocks": reader.blocks, "gaps": reader.gaps, "late_blocks": reader.late,
                              "messages": {c.role: sum(c.counts.values()) for c in clients}}
                    samples.append(sample)
                    if elapsed >= warmup_s:
                        rss_after_warmup.append((elapsed, rss_mb))
                    if len(samples) % max(1, int(60 / sample_s)) == 0:
                        print(f"  {elapsed:.0f}/{duration_s:.0f} s: RSS {rss_mb:.0f} MB, late blocks {reader.late}, "
                              f"gaps {reader.gaps}", file=sys.stderr, flush=True)
                    next_sample += sample_s
                time.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
            wall = time.monotonic() - start
            cpu = server.cpu_seconds() - cpu0
            hwm = server.status_kb("VmHWM") / 1024
            alive = server.proc.poll() is None
        finally:
            if reader is not None:
                reader.close()
            for client in clients:
                try:
                    client.client.goodbye()
                except OSError:
                    pass
                client.close()
            stopped = server.stop()
    rss = [s["rss_mb"] for s in samples]
    return {"duration_s": duration_s, "wall_s": wall, "rate_hz": rate_hz, "scenes_sent": sent, "clients_nice": clients_nice,
            "autogroup": autogroup, "alive": alive, "cpu_share": cpu / wall,
            "rss_start_mb": rss[0] if rss else None, "rss_end_mb": rss[-1] if rss else None,
            "rss_peak_mb": max(rss) if rss else None, "vm_hwm_mb": hwm,
            "rss_after_warmup_min_mb": min((m for _, m in rss_after_warmup), default=None),
            "rss_after_warmup_max_mb": max((m for _, m in rss_after_warmup), default=None),
            "rss_slope_mb_per_hour": slope_mb_per_hour(rss_after_warmup), "warmup_s": warmup_s,
            "blocks": reader.blocks if reader else 0, "gaps": reader.gaps if reader else 0,
            "late_blocks": reader.late if reader else 0, "ahead_ms": summary(reader.ahead_ms) if reader else {},
            "messages": {c.role: dict(sorted(c.counts.items())) for c in clients},
            "client_errors": {c.role: c.errors for c in clients if c.errors},
            "samples": samples, **{f"server_{k}": v for k, v in stopped.items()}}


def _secret_text(secret: str | bytes) -> str:
    return secret.decode("utf-8") if isinstance(secret, bytes) else secret


# =============================================================================
# Report
# =============================================================================
def markdown(result: dict, info: dict) -> str:
    r = result
    lines = [SECTION_TITLE, "",
             f"Measured {info['date']} with `python bench/soak_benchmark.py {info['args']}` on {info['machine']}; "
             f"{info['load']}. The server's autogroup: {r['autogroup'] or 'left as it was'}; the clients ran at "
             f"nice {r.get('clients_nice', 0)} (the server's threads at -10). A block that reaches the listener "
             "after its playback time is late as the game would hear it, whether the server or the listener's "
             "own wait for a core made it so; the server's underrun count says which.", "",
             f"`adaptive serve --credentials` (default bank, blocks of 1024 frames, lookahead 40 ms, real-time "
             f"priority) in a subprocess for {r['wall_s'] / 60:.1f} min, with three clients on loopback, each "
             "proving its role with the HMAC hello and renewing its lease by ping: **control** sends "
             f"`/adaptive/scene` at {r['rate_hz']:g} Hz (intensity sweeping, the emotion changing every 15 s: cue "
             f"changes and transitions) and the stinger `{STINGER}` every 30 s; **listener** subscribes to events "
             "and MIDI and reads the TCP audio (after naming its client); **audience** subscribes to events.", "",
             "| figure | value |", "|---|---:|",
             f"| server still running at the end | {r['alive']} |",
             f"| scenes sent | {r['scenes_sent']:,} |",
             f"| blocks rendered (server) | {r['server_blocks']:,} |",
             f"| underruns (server's count) | {r['server_underruns']} |",
             f"| blocks the listener received | {r['blocks']:,} |",
             f"| sequence gaps at the listener | {r['gaps']} |",
             f"| blocks that arrived after their playback time | {r['late_blocks']} |",
             f"| audio ahead of playback at arrival, min / p50 (ms) | {r['ahead_ms'].get('min', 0):.1f} / "
             f"{r['ahead_ms'].get('p50', 0):.1f} |",
             f"| longest block (render + sinks, ms) | {r['server_max_block_ms']} |",
             f"| latest wake-up of the render thread (ms) | {r['server_max_wake_delay_ms']} |",
             f"| server CPU (share of one core) | {r['cpu_share']:.1%} |",
             f"| RSS at the first sample / peak / end (MB) | {r['rss_start_mb']:.0f} / {r['rss_peak_mb']:.0f} / "
             f"{r['rss_end_mb']:.0f} |",
             f"| RSS after {r['warmup_s']:g} s of warm-up, min / max (MB) | {r['rss_after_warmup_min_mb']:.1f} / "
             f"{r['rss_after_warmup_max_mb']:.1f} |",
             f"| RSS trend after the warm-up (least squares, MB per hour) | "
             f"{r['rss_slope_mb_per_hour'] if r['rss_slope_mb_per_hour'] is None else round(r['rss_slope_mb_per_hour'], 2)} |",
             f"| errors received by the clients | {sum(len(v) for v in r['client_errors'].values())} |",
             f"| stalls the server reported (a block or a wake-up over 15 ms) | {len(r.get('server_stalls', []))} |",
             "", "Messages each client received: " + "; ".join(
                 f"{role}: " + ", ".join(f"{name} {count:,}" for name, count in counts.items())
                 for role, counts in r["messages"].items()) + ".", ""]
    if r["late_blocks"] and not r["server_underruns"]:
        lines += [f"The server counted no underrun and its latest wake-up was {r['server_max_wake_delay_ms']} ms late, "
                  f"inside the 40 ms lookahead, so the {r['late_blocks']} late arrival(s) at the listener (at most "
                  f"{-r['ahead_ms'].get('min', 0):.1f} ms late) are the listener's own delay (nice "
                  f"{r.get('clients_nice', 0)} on the loaded machine) or its clock synchronization's error; "
                  "`--client-nice -10` takes that out of a run.", ""]
    if r["rss_slope_mb_per_hour"] is not None:
        lines += [f"Memory after the warm-up moved between {r['rss_after_warmup_min_mb']:.1f} and "
                  f"{r['rss_after_warmup_max_mb']:.1f} MB: a trend of {r['rss_slope_mb_per_hour']:.1f} MB per hour "
                  f"({r['rss_slope_mb_per_hour'] / r['rss_end_mb']:.2%} of the RSS, the table below shows when)"
                  "; whether it levels off entirely needs a longer run.", ""]
    if r["duration_s"] < 3600:
        lines += [f"**A shorter soak than the issue's hour** ({r['duration_s'] / 60:g} min), on a machine shared with "
                  "other work: see the load above.", ""]
    samples = r["samples"]
    if samples:
        step = max(1, len(samples) // 12)
        lines += ["RSS and the listener's audio over time:", "", "| time (min) | RSS (MB) | server CPU s | blocks "
                  "received | gaps | late blocks |", "|---:|---:|---:|---:|---:|---:|"]
        for sample in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            lines.append(f"| {sample['t_s'] / 60:.1f} | {sample['rss_mb']:.1f} | {sample['cpu_s']:.1f} | "
                         f"{sample['blocks']:,} | {sample['gaps']} | {sample['late_blocks']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=3600.0, help="how long (default 3600 s)")
    parser.add_argument("--rate-hz", type=float, default=90.0, help="scene messages a second (default 90)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="left out of the RSS trend (default 120)")
    parser.add_argument("--autogroup-nice", type=int, default=None,
                        help="write this to the server's /proc/PID/autogroup (e.g. -8; Linux, root)")
    parser.add_argument("--client-nice", type=int, default=None,
                        help="run the clients at this nice value (e.g. -10, the server's; a game's clients run on "
                             "their own machine, not behind a training run)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--report-json", type=Path, help="run nothing: report the figures of an earlier --json")
    parser.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    from bench.docs_section import machine_facts, publish

    if args.report_json:
        saved = json.loads(args.report_json.read_text())
        info, result = saved["info"], saved["result"]
    else:
        info = {"date": time.strftime("%Y-%m-%d"), "args": " ".join(argv),
                "machine": "{cpu}, {cores} cores".format(**machine_facts()),
                "load": f"load average {open('/proc/loadavg').read().split()[0]} at the start"}
        result = run(args.duration_s, args.rate_hz, args.sample_s, args.warmup_s, args.autogroup_nice,
                     args.client_nice)
        info["load"] += f", {open('/proc/loadavg').read().split()[0]} at the end"
    if args.json:
        args.json.write_text(json.dumps({"info": info, "result": result}, indent=1))
    text = markdown(result, info)
    publish(text, args.write_docs, DOCS, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
