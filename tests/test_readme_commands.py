"""Every command of README.md's shell blocks, run as a newcomer runs them,
in the README's order, from a folder that holds only the repository's
``examples/`` (so ``out/`` does not exist yet): ``./run adaptive ...`` (the
same program as ``app.cli.main``, run in this process: the test suite's
interpreter has the dependencies ``./run`` installs) and liblo's ``oscsend``, against a real
``adaptive serve`` started as ``./run serve`` starts it (on free ports: the
README's 9000 is swapped for the server's port).

Not run: the emotion-walk render with the model (80 s of music; its options
are parsed, and tests/test_golden_outputs.py renders the same timeline and
mapping bit for bit)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.cli import build_parser, main
from tests.helpers import free_ports

REPO = Path(__file__).resolve().parent.parent
SERVER_COMMANDS = {"send", "monitor", "mapping"}
"""``adaptive`` subcommands that talk to a running server (they get ``--port``)."""
NOT_RUN = ("examples/emotion-walk.toml",)


def readme_commands(path: Path = REPO / "README.md") -> list[list[str]]:
    """The commands of a README's plain fenced blocks (not ```toml): lines
    starting with ``./run`` or ``oscsend``, continuation lines joined,
    comments dropped, as argument lists."""
    commands = []
    for block in re.findall(r"^```\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and (words[0] == "./run" or words[0] == "oscsend"):
                commands.append(words)
    return commands


def test_the_readme_shows_the_commands_a_newcomer_needs():
    commands = [" ".join(words[:3]) for words in readme_commands()]
    for expected in ("./run serve", "./run test", "./run adaptive render", "./run adaptive send",
                     "./run adaptive monitor", "./run adaptive check", "./run adaptive mapping", "oscsend 127.0.0.1 9000"):
        assert any(command.startswith(expected) for command in commands), expected
    # Every `adaptive` command parses (options as the parser knows them).
    for words in readme_commands():
        if words[:2] == ["./run", "adaptive"]:
            build_parser().parse_args(words[2:])


@dataclass
class Ran:
    """What a command printed and returned."""

    returncode: int
    stdout: str
    stderr: str


def _run(words: list[str], port: int, capsys) -> Ran:
    """Run one README command in the current folder: ``oscsend`` as a
    program, ``./run adaptive ARGS`` as ``adaptive ARGS`` in this process
    (``app.cli.main``, what the console script calls; starting an
    interpreter per command cost this test minutes on a loaded machine)."""
    if words[0] == "oscsend":
        command = [words[0], words[1], str(port) if words[2] == "9000" else words[2], *words[3:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return Ran(result.returncode, result.stdout, result.stderr)
    args = words[2:]
    if args[0] in SERVER_COMMANDS:
        at = 2 if args[0] == "mapping" else 1
        args = args[:at] + ["--port", str(port)] + args[at:]
    capsys.readouterr()
    returncode = main(args)
    captured = capsys.readouterr()
    return Ran(returncode, captured.out, captured.err)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed; ./run test installs it")
def test_every_readme_command_works_as_written(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "clone"
    folder.mkdir()
    monkeypatch.chdir(folder)
    (folder / "examples").symlink_to(REPO / "examples")
    commands = [words for words in readme_commands()
                if words[:2] not in (["./run", "serve"], ["./run", "test"], ["./run", "setup"])  # the suite runs this
                and not any(name in words for name in NOT_RUN)]

    def needs_server(words: list[str]) -> bool:
        return words[0] == "oscsend" or words[2] in SERVER_COMMANDS or "kept.toml" in words  # kept: exported

    ran: dict[str, Ran] = {}

    def run_all(selected: list[list[str]], port: int) -> None:
        for words in selected:
            result = _run(words, port, capsys)
            assert result.returncode == 0, (words, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (words, result.stderr)
            ran[" ".join(words[:5])] = result

    # First what needs no server (a render competing with a live server took twice as long), ...
    run_all([words for words in commands if not needs_server(words)], 0)
    # ... then a server started as `./run serve` starts it, and what talks to it, in the README's order.
    osc, audio, zmq_audio, control, events = free_ports(5)
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--osc-port", str(osc),
                               "--audio-tcp-port", str(audio), "--zmq-audio-port", str(zmq_audio),
                               "--zmq-control-port", str(control), "--zmq-events-port", str(events)],
                              cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    try:
        deadline = time.monotonic() + 60
        line = ""
        while not line.startswith("events"):
            line = server.stdout.readline()
            assert line and time.monotonic() < deadline, server.stderr.read() if not line else "no start"
        run_all([words for words in commands if needs_server(words)], osc)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert len(ran) == len(commands) >= 14, list(ran)

    assert "created the folder out" in ran["./run adaptive render examples/walk.toml -o"].stderr
    assert (folder / "out" / "walk.wav").stat().st_size > 48000 * 4 * 90
    for produced in ("out/map.png", "out/walk.png", "out/kept.png", "kept.toml"):
        assert (folder / produced).is_file(), produced
    # The monitor runs first, before anything was sent: the music plays already, beats and bars come.
    monitor = next(result for command, result in ran.items() if "monitor" in command)
    assert re.search(r"beat +explore bar \d+ beat \d", monitor.stdout), monitor.stdout
    assert "0 errors" in ran["./run adaptive check kept.toml"].stdout
    assert "smoothing.hysteresis = 0.25" in ran["./run adaptive send mapping_set smoothing.hysteresis"].stdout
