"""Reflection and amplification: the largest reply an unverified source gets,
divided by its request (target: at most 1; issue 13).

An OSC endpoint (``bridge.osc_server.OscServer``, with the embedded bank and a
live mapping, no render thread) listens on loopback with ``trust_loopback``
off, so the benchmark's loopback sockets stand for a source off loopback that
has not done the cookie round trip. One socket sends; every hello names a
second socket's port as its reply port (the "victim" of a spoofed hello); both
count every byte that comes back. The requests: every message a client may
send, each with valid arguments (the mapping export, the hello and the ping
included), then ``--fuzz`` random and mutated datagrams (seeded). Run without
and with credentials. Each request waits ``--settle-ms`` for its replies.

    .venv/bin/python bench/reflection_benchmark.py [--fuzz 2000] [--write-docs]
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.docs_section import machine_facts, write_section  # noqa: E402

TITLE = "## Reflection and amplification (unverified sources)"


def requests(fuzz: int, seed: int, reply_port: int) -> list[tuple[str, bytes]]:
    """(kind, datagram) pairs: every client message with valid values, then fuzz."""
    from bridge.protocol import BY_NAME, MESSAGES, Direction, encode_osc

    samples = {
        "hello": dict(reply_port=reply_port, sample_rate_hz=48_000, channels=2, sample_format="s16", client_name=""),
        "goodbye": {}, "ping": dict(sequence=1), "subscribe": dict(stream="midi"),
        "unsubscribe": dict(stream="midi"), "scene": dict(emotion="calm", intensity=0.5, location="forest"),
        "emotion": dict(emotion="calm"), "emotion_point": dict(valence=0.1, arousal=0.2),
        "intensity": dict(intensity=0.5), "location": dict(location="forest"), "cue": dict(cue=""),
        "stinger": dict(stinger="danger"), "mapping_set": dict(path="smoothing.hysteresis", value="0.3"),
        "mapping_get": dict(path="smoothing.hysteresis"), "mapping_export": {},
        "play_theme": dict(theme="hero"), "session_end": dict(session_id=""),
    }
    assert set(samples) == {m.name for m in MESSAGES if m.direction is Direction.TO_SERVER}
    out = [(name, encode_osc(name, **values)) for name, values in samples.items()]
    # The smallest hello there is (as oscsend sends it: 5 arguments, empty name): 44 bytes.
    import struct

    out.append(("hello (5 arguments)", b"/adaptive/hello\x00,iiiss\x00\x00" + struct.pack(">iii", reply_port, 48_000, 2)
                + b"s16\x00\x00\x00\x00\x00"))
    out.append(("mapping_export (bare)", b"/adaptive/mapping/export\x00\x00\x00\x00,\x00\x00\x00"))
    rng = random.Random(seed)
    valid = [datagram for _, datagram in out]
    for _ in range(fuzz):
        base = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            if action < 0.4 and base:
                base[rng.randrange(len(base))] = rng.randrange(256)
            elif action < 0.7:
                del base[rng.randrange(len(base)) if base else 0:][: rng.randint(0, 8)]
            else:
                base += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        out.append(("fuzz", bytes(base) or b"\x00"))
    return [(kind, datagram) for kind, datagram in out if datagram]


def measure(credentials, fuzz: int, seed: int, settle_s: float) -> dict:
    """Send every request from one loopback socket to an OscServer that treats
    loopback as unverified; what came back to the sender and the reply port."""
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from bridge.mapping_watch import MappingControl
    from bridge.osc_server import OscServer
    from bridge.protocol import ProtocolError

    bank = load_bank(DEFAULT_BANK)
    mapping = MappingControl(bank, load_mapping(DEFAULT_MAPPING, bank), lambda change: None)
    server = OscServer(bank, lambda item: None, time.monotonic, 48_000,
                       {"session_id": "bench", "block_frames": 1024, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                       port=0, mapping=mapping, credentials=credentials, trust_loopback=False)
    # Count each request once the server has answered it (or refused it): the replies that came back by then
    # are that request's, whatever the machine's load.
    answered = [0]
    handle = server.handle

    def handle_and_count(datagram, source, received_seconds=None):
        try:
            handle(datagram, source, received_seconds)
        except ProtocolError as error:
            server._reject(source, error, len(datagram))
        finally:
            answered[0] += 1

    server.handle = handle_and_count
    server.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    for sock in (sender, victim):
        sock.setblocking(False)
    worst = {"ratio": 0.0, "kind": "", "request": 0, "reply": 0}
    sent_bytes = received_bytes = replies = 0
    by_kind: dict[str, float] = {}
    try:
        for index, (kind, datagram) in enumerate(requests(fuzz, seed, victim.getsockname()[1])):
            sender.sendto(datagram, ("127.0.0.1", server.port))
            sent_bytes += len(datagram)
            while answered[0] <= index:
                time.sleep(0.0002)
            deadline = time.monotonic() + settle_s
            got = 0
            while time.monotonic() < deadline:
                for sock in (sender, victim):
                    try:
                        while True:
                            data = sock.recv(65536)
                            got += len(data)
                            replies += 1
                    except BlockingIOError:
                        pass
                time.sleep(0.0005)
            received_bytes += got
            ratio = got / len(datagram)
            by_kind[kind] = max(by_kind.get(kind, 0.0), ratio)
            if ratio > worst["ratio"]:
                worst = {"ratio": ratio, "kind": kind, "request": len(datagram), "reply": got}
    finally:
        sender.close()
        victim.close()
        server.close()
    return {"requests": len(requests(fuzz, seed, 1)), "sent_bytes": sent_bytes, "received_bytes": received_bytes,
            "replies": replies, "worst": worst, "by_kind": by_kind, "clients": len(server.clients),
            "withheld": server.counters["withheld_unverified"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, default=2000, help="random and mutated datagrams (default 2000)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--settle-ms", type=float, default=3.0, help="wait for replies to each request, ms")
    parser.add_argument("--write-docs", action="store_true", help="rewrite this section of docs/benchmarks.md")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # one warning per refused datagram: not what is measured
    from bridge.access import create_credentials, load_credentials

    with tempfile.TemporaryDirectory() as folder:
        create_credentials(Path(folder))
        credentials = load_credentials(Path(folder))
        results = {"without credentials": measure(None, args.fuzz, args.seed, args.settle_ms / 1000),
                   "with credentials": measure(credentials, args.fuzz, args.seed, args.settle_ms / 1000)}
    facts = machine_facts()
    lines = [TITLE, "",
             "`bench/reflection_benchmark.py`: what a source that has not shown it receives (no cookie round trip) "
             "gets back, per request, at its own address and at the reply port its hello names (a spoofed hello's "
             "victim). Target (issue 13): the largest reply ÷ its request at most 1.", "",
             f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['os']}, Python {facts['python']}; "
             f"run on {time.strftime('%Y-%m-%d')} while other work (a model training, other test runs) loaded the "
             f"machine — the figures are byte counts, not timings, so load does not change them.", "",
             "| server | requests | bytes sent | bytes back | replies | largest reply ÷ request | of | clients made |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for name, r in results.items():
        w = r["worst"]
        lines.append(f"| {name} | {r['requests']} | {r['sent_bytes']} | {r['received_bytes']} | {r['replies']} | "
                     f"{w['ratio']:.2f} | {w['kind']} ({w['reply']} B for {w['request']} B) | {r['clients']} |")
    lines += ["", "Largest reply ÷ request by message (without credentials / with):", "",
              "| request | without | with |", "|---|---:|---:|"]
    a, b = results["without credentials"]["by_kind"], results["with credentials"]["by_kind"]
    for kind in a:
        lines.append(f"| {kind} | {a[kind]:.2f} | {b.get(kind, 0.0):.2f} |")
    lines += ["", f"Before roles and cookies (issue 13's table): a 32-byte `mapping/export` got 6.8 KB back (×213), "
              "and a 44-byte hello naming a victim's port streamed beats and bars there for ever. Now a hello gets "
              "one 40-byte `retry` (at its reply port, so a spoofed one reaches the victim no larger than the "
              "hello), an error is cut to the request's size or withheld, and a pong (44 B for a 24-B ping) or an "
              "export is withheld until the cookie round trip has made the source a client.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", TITLE, text)
        print("wrote docs/benchmarks.md")
    return 0 if all(r["worst"]["ratio"] <= 1.0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
