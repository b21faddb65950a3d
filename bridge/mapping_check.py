"""Checking mapping changes away from the server's interpreter lock.

A live ``mapping_set`` is about 17 ms of pure Python (tomlkit edits and
writes the text, tomllib parses it again, pydantic validates it, the bank
resolves it), and a reloaded file about 0.25 s more (the lint warnings).
Python threads share one interpreter lock: while the mapping thread did that
work, the OSC receive thread waited up to a switch interval (1 ms) each time
it needed the lock, several times per datagram, and a ping's round trip rose
from 1 ms to a p99 of 10 ms on an idle machine and 79 ms on a loaded one
(issue 13; docs/benchmarks.md, "Mapping changes while pinging"). Moving the
work to another thread cannot help; another process can.

:class:`ProcessChecker` runs :func:`check_set` and :func:`check_file` in one
child process (a fresh interpreter talked to over pipes: the server has
threads, and ``fork`` would copy their locks), shared by every session of
the server and started on first use (about a second of imports, so a server
that never changes its mapping never pays it). What comes back is the
checked mapping, pickled with the bank sent by reference (the server's own
bank object is put back); unpickling it is about 1 ms of the server's time,
against ~30 ms of checking and reading the value back. The child runs at
nice 0 (the server's threads run at nice -10): it holds none of the server's
locks, so a lower priority delays only the change's answer.

:class:`InProcessChecker` does the same work on the calling thread (tools
and tests without a server).

Both give the same result: the same text (so a recording's digests and
replay are unchanged), the same checked mapping, the same answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptive.cue import CueBank
from adaptive.mapping import ResolvedMapping, check_text, format_report, get_value, parse_value, set_value_document
from bridge.protocol import MAPPING_VALUE_CHARS

CHECK_TIMEOUT_SECONDS = 30.0
"""How long the mapping thread waits for the child's answer before it
answers the client with an error (the child's first use includes its imports;
a set then takes tens of milliseconds)."""

WORKER_NICE = 0
"""The child process's nice value (the server's threads run at -10,
``app.server.SERVER_NICE``): it must not take a core from the render thread."""


class MappingRejected(Exception):
    """A mapping change that was refused; nothing changed.

    Attributes:
        path: the key set or read, or the file reloaded.
        message: every problem and what is allowed.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def to_json_text(value: Any) -> str:
    """A mapping value as strict JSON text (RFC 8259, which has no infinities
    or NaN: ``JSON.parse`` in a browser or Node rejects Python's ``-Infinity``).
    An infinite number is written as the string ``"inf"`` or ``"-inf"``
    (TOML's spelling), which :func:`adaptive.mapping.parse_value` reads back
    as the number; a mapping never holds NaN (the schema refuses it).

    Raises:
        ValueError: ``value`` holds a NaN.
    """
    return json.dumps(_finite(value), allow_nan=False, separators=(", ", ": "))


def _finite(value: Any) -> Any:
    """``value`` with every infinite float replaced by ``"inf"`` / ``"-inf"``."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def value_at(resolved: ResolvedMapping, path: str) -> str:
    """The value at ``path`` in ``resolved``, as JSON text (:func:`to_json_text`).

    Raises:
        MappingRejected: no such key, a malformed path, or a value too long
            for one message (over ``bridge.protocol.MAPPING_VALUE_CHARS``).
    """
    try:
        value = get_value(resolved, path)
    except (KeyError, ValueError) as error:
        raise MappingRejected(path, str(error.args[0] if isinstance(error, KeyError) else error)) from None
    text = to_json_text(value)
    if len(text) > MAPPING_VALUE_CHARS:
        raise MappingRejected(path, f"the value of {path} is {len(text)} characters long (allowed in one "
                                    f"message: {MAPPING_VALUE_CHARS}); read a key inside it, or use mapping_export")
    return text


@dataclass(frozen=True)
class SetResult:
    """What checking one ``mapping_set`` gave.

    Attributes:
        resolved: the new mapping checked against the bank (None: refused).
        error: every problem and what is allowed (None: accepted).
        value: the value now at the path, JSON text (:func:`value_at`); None
            when refused, or when it is too long for one message
            (``value_error`` then says so; the change stands).
    """

    resolved: ResolvedMapping | None
    error: str | None
    value: str | None = None
    value_error: str | None = None


@dataclass(frozen=True)
class FileResult:
    """What checking a reloaded mapping file gave.

    Attributes:
        resolved: the mapping checked against the bank (None: invalid).
        report: the errors (invalid) or the lint warnings (valid), as
            :func:`adaptive.mapping.format_report` writes them; "" for none.
    """

    resolved: ResolvedMapping | None
    report: str


# =============================================================================
# The checks (pure functions of their arguments and the document cache)
# =============================================================================
class _DocumentCache:
    """The live mapping's tomlkit document, kept between sets: parsing the
    text is most of a set's cost (tomlkit is pure Python: ~60 ms for the
    default mapping). One per checker (the child keeps its own)."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.document: Any = None

    def take(self, text: str) -> Any:
        """The document of ``text`` (parsed if the cached one is of another
        text); the cache is emptied: the caller edits the document in place."""
        document = self.document if self.text == text else None
        self.text, self.document = None, None
        if document is None:
            import tomlkit

            document = tomlkit.parse(text)
        return document

    def keep(self, text: str, document: Any) -> None:
        self.text, self.document = text, document


def check_set(bank: CueBank, current_text: str, path: str, value_text: str, max_bytes: int,
              cache: _DocumentCache | None = None) -> SetResult:
    """The live mapping ``current_text`` with the value at ``path`` set to
    ``value_text`` (JSON or TOML text, :func:`adaptive.mapping.parse_value`),
    checked against ``bank`` without the lint warnings.

    Args:
        max_bytes: the largest mapping text allowed, UTF-8 bytes.
        cache: a document cache to reuse between sets (None: parse every time).

    Returns:
        The checked mapping, or the error naming what is wrong and what is
        allowed (a bad path or value, a problem with the bank, a NaN, a
        mapping over ``max_bytes``). Never raises for a bad change.
    """
    value = parse_value(value_text)
    if isinstance(value, float) and math.isnan(value):
        return SetResult(None, f"{path}: NaN is not allowed")
    cache = cache or _DocumentCache()
    document = cache.take(current_text)
    try:
        text = set_value_document(document, path, value)
    except (ValueError, TypeError) as error:
        return SetResult(None, str(error))
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        return SetResult(None, f"the mapping would be {size} bytes (allowed: at most {max_bytes} bytes, "
                               "MAX_MAPPING_BYTES)")
    result = check_text(text, bank, "live", warnings=False)
    if result.resolved is None:
        return SetResult(None, "; ".join(f"{p.key}: {p.message}" for p in result.errors))
    cache.keep(text, document)
    try:
        return SetResult(result.resolved, None, value_at(result.resolved, path))
    except MappingRejected as error:
        return SetResult(result.resolved, None, None, error.message)


def check_file(bank: CueBank, text: str, source: str) -> FileResult:
    """A reloaded mapping file's ``text`` checked against ``bank``, with the
    lint warnings. Never raises for a bad mapping."""
    result = check_text(text, bank, source)
    report = format_report(source, result) if result.errors or result.warnings else ""
    return FileResult(result.resolved, report)


# =============================================================================
# Checkers
# =============================================================================
class InProcessChecker:
    """Runs the checks on the calling thread."""

    def __init__(self) -> None:
        self._cache = _DocumentCache()

    def check_set(self, bank: CueBank, current_text: str, path: str, value_text: str, max_bytes: int) -> SetResult:
        """See :func:`check_set`."""
        return check_set(bank, current_text, path, value_text, max_bytes, self._cache)

    def check_file(self, bank: CueBank, text: str, source: str) -> FileResult:
        """See :func:`check_file`."""
        return check_file(bank, text, source)

    def close(self) -> None:
        """Nothing to stop."""


class ProcessChecker:
    """Runs the checks in one child process (see the module docstring):
    ``python -c`` running :func:`_worker_main`, which reads requests from its
    standard input and writes answers to its standard output, each a 4-byte
    big-endian length and a pickle. (Not ``multiprocessing``: its ``spawn``
    re-imports the parent's main script in the child, which fails for a
    script without a ``__main__`` guard that starts a server.)

    Thread-safe: sessions' mapping threads may call it at once; their checks
    take turns. A child that dies (killed, out of memory) or does not answer
    in time is ended and replaced at the next check; the check it was doing
    raises :class:`CheckerError`.

    Args:
        timeout_seconds: see :data:`CHECK_TIMEOUT_SECONDS`.

    Attributes:
        starts: how many child processes were started (1 while all is well).
    """

    def __init__(self, timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()  # one check at a time through the pipes
        self._child: subprocess.Popen | None = None
        self._banks: dict[int, tuple[CueBank, bytes, str]] = {}  # id(bank) -> (bank, pickled, digest)
        self.starts = 0

    def _bank(self, bank: CueBank) -> tuple[bytes, str]:
        entry = self._banks.get(id(bank))
        if entry is None or entry[0] is not bank:
            data = pickle.dumps(bank, protocol=pickle.HIGHEST_PROTOCOL)
            entry = (bank, data, hashlib.sha256(data).hexdigest())
            if len(self._banks) >= 4:  # one bank per server in practice; tests make many
                self._banks.clear()
            self._banks[id(bank)] = entry
        return entry[1], entry[2]

    def _start(self) -> subprocess.Popen:
        root = str(Path(__file__).resolve().parent.parent)  # the folder holding the bridge package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *sys.path]))
        self.starts += 1
        return subprocess.Popen([sys.executable, "-c", "from bridge.mapping_check import _worker_main; _worker_main()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)

    def _end(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()

    def _exchange(self, request: tuple) -> bytes:
        """Send one request, return the answer's bytes (under the lock)."""
        if self._child is None or self._child.poll() is not None:
            self._end()
            try:
                self._child = self._start()
            except OSError as error:
                raise CheckerError(f"the mapping checker process cannot start ({error}); nothing changed") from None
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            child.stdin.write(len(data).to_bytes(4, "big") + data)
            child.stdin.flush()
            size = int.from_bytes(_read_exactly(child.stdout, 4, self.timeout_seconds), "big")
            return _read_exactly(child.stdout, size, self.timeout_seconds)
        except (OSError, EOFError, TimeoutError) as error:
            self._end()
            raise CheckerError(f"the mapping checker process failed ({type(error).__name__}: {error}); "
                               "nothing changed, send it again") from None

    def _run(self, name: str, bank: CueBank, *args: Any) -> Any:
        data, digest = self._bank(bank)
        with self._lock:
            answer = self._exchange((name, digest, None, args))
            if answer == _NEED_BANK:  # the bank travels only until the child has it
                answer = self._exchange((name, digest, data, args))
        return _BankUnpickler(io.BytesIO(answer), bank).load()

    def check_set(self, bank: CueBank, current_text: str, path: str, value_text: str, max_bytes: int) -> SetResult:
        """See :func:`check_set`.

        Raises:
            CheckerError: the child died or did not answer within ``timeout_seconds``.
        """
        return self._run("set", bank, current_text, path, value_text, max_bytes)

    def check_file(self, bank: CueBank, text: str, source: str) -> FileResult:
        """See :func:`check_file`; raises as :meth:`check_set`."""
        return self._run("file", bank, text, source)

    def close(self) -> None:
        """End the child process (a later check starts another)."""
        with self._lock:
            self._end()


class CheckerError(Exception):
    """The checker's child process died or did not answer in time; the change was not made."""


def _read_exactly(stream: Any, size: int, timeout_seconds: float) -> bytes:
    """``size`` bytes from the pipe ``stream``, waiting at most ``timeout_seconds`` in all.

    Raises:
        EOFError: the pipe closed first.
        TimeoutError: not all there in time.
    """
    deadline = time.monotonic() + timeout_seconds
    parts, left = [], size
    fd = stream.fileno()
    while left > 0:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            raise TimeoutError(f"no answer within {timeout_seconds:g} s")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the checker process ended")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


_shared: ProcessChecker | None = None
_shared_lock = threading.Lock()


def shared_checker() -> ProcessChecker:
    """The process's one :class:`ProcessChecker` (every session of a server shares its child)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ProcessChecker()
        return _shared


# =============================================================================
# The child process
# =============================================================================
_NEED_BANK = b"send the bank"
_worker_banks: dict[str, CueBank] = {}
_worker_cache = _DocumentCache()


def _worker_main() -> None:
    """The child process: answer requests from standard input until it closes."""
    try:  # leave the server's raised priority (see WORKER_NICE)
        os.nice(max(0, WORKER_NICE - os.getpriority(os.PRIO_PROCESS, 0)))
    except (AttributeError, OSError):  # not POSIX, or refused: it still works
        pass
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")  # the pipe to the server, kept for answers only:
    os.dup2(2, 1)  # anything a library prints goes to standard error, not into the answers
    sys.stdout = sys.stderr
    while True:
        head = requests.read(4)
        if len(head) < 4:
            return
        name, digest, data, args = pickle.loads(requests.read(int.from_bytes(head, "big")))
        answer = _worker_call(name, digest, data, args)
        answers.write(len(answer).to_bytes(4, "big") + answer)
        answers.flush()


def _worker_call(name: str, digest: str, data: bytes | None, args: tuple) -> bytes:
    """In the child: one check, against the bank of ``digest`` (sent once)."""
    bank = _worker_banks.get(digest)
    if bank is None:
        if data is None:
            return _NEED_BANK
        if len(_worker_banks) >= 4:  # one bank per server in practice; tests may send several
            _worker_banks.clear()
        bank = _worker_banks[digest] = pickle.loads(data)
    result = check_set(bank, *args, cache=_worker_cache) if name == "set" else check_file(bank, *args)
    out = io.BytesIO()
    _BankPickler(out, bank).dump(result)
    return out.getvalue()


class _BankPickler(pickle.Pickler):
    """Pickles a result with the bank as a reference: the checked mapping
    holds the bank, and the server has its own (one bank object per server;
    unpickling a copy at each change would cost time and memory)."""

    def __init__(self, file: io.BytesIO, bank: CueBank) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.bank = bank

    def persistent_id(self, obj: Any) -> str | None:
        return "bank" if obj is self.bank else None


class _BankUnpickler(pickle.Unpickler):
    """Unpickles what :class:`_BankPickler` wrote, with the server's own bank."""

    def __init__(self, file: io.BytesIO, bank: CueBank) -> None:
        super().__init__(file)
        self.bank = bank

    def persistent_load(self, pid: Any) -> Any:
        if pid != "bank":
            raise pickle.UnpicklingError(f"unknown reference {pid!r} (allowed: 'bank')")
        return self.bank
