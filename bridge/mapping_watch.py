"""The live mapping of a running server: hot reload of the mapping file and
live tuning (``mapping_set`` / ``mapping_get`` / ``mapping_export``).

Nothing here runs on the render thread, and nothing slow runs on a socket
thread. One **mapping thread** (``adaptive-mapping``) does every change, in
order: it polls the mapping file, and it takes live-tuning changes from a
bounded queue. A socket thread only checks the rate limit and puts a
``mapping_set`` in the queue (:meth:`MappingControl.request_set`); the answer
(``mapping_value`` or ``mapping_error``) is sent back to the client from the
mapping thread when the change has been checked (checking a change took
~150 ms on the one OSC receive thread: a ping waited a second behind 20 sets
a second, issue 13). A full queue or a client over the rate limit gets a
``mapping_error`` at once naming the limit; nothing changed.

**Hot reload.** The file's status (size, modification and change times,
inode) is polled. A change is acted on only once the file has **stopped
changing**: the same status seen at two polls at least :data:`SETTLE_SECONDS`
apart, and again after the file was read. What that guarantees: nobody wrote
to the file for the settle time. A writer that pauses longer than that in the
middle of a file (a slow network copy, a script that writes line by line) is
indistinguishable from a finished one by its status, so save the mapping
**atomically**, as editors do (vim, VS Code, JetBrains IDEs, Emacs by
default): write a temporary file in the same folder and rename it over the
mapping (``os.replace``; ``mv``). A rename is atomic: the watched path holds
the old file or the new one, never a half-written one. A file larger than
:data:`adaptive.mapping.MAX_MAPPING_BYTES` is refused without being read.
A valid file is handed to the session as a
:class:`~adaptive.mapping.MappingChange` input — stamped by the render thread
like any input and applied by the session at the next bar line. An invalid
file is logged and reported to every client (``mapping_error``); the last good
mapping keeps playing.

**Live tuning** edits the live mapping's TOML text at a key path (tomlkit
keeps the designer's comments and layout), checks the result the same way
(without the lint warnings, which cost most of the time), and hands it over
the same way, with the key path and value, so the recording stores the
change and not the whole mapping.

**Where the checking runs.** Checking is pure Python (~17 ms a set, ~0.25 s
a reloaded file) and would hold the interpreter's lock that the socket
threads need; a server hands it to a child process
(:class:`bridge.mapping_check.ProcessChecker`), and the mapping thread only
waits for the answer. ``mapping_export`` returns that text, so a
tweak made while playing can be kept.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from adaptive.cue import CueBank
from adaptive.errors import AdaptiveError
from adaptive.mapping import MAX_MAPPING_BYTES, MappingChange, ResolvedMapping, set_value_text
from bridge.log_limit import RateLimitedLog
from bridge.mapping_check import (InProcessChecker, MappingRejected, ProcessChecker, to_json_text,  # noqa: F401
                                  value_at)  # to_json_text: part of this module's interface
from bridge.protocol import ERROR_MESSAGE_CHARS, MAPPING_TEXT_BYTES

log = logging.getLogger("adaptive.mapping")

POLL_SECONDS = 0.25
"""How often the mapping thread looks at the mapping file."""

SETTLE_SECONDS = 0.5
"""How long (seconds) the file's status must stay the same before a change is
acted on. Longer than the 1-2 s timestamp granularity of some file systems
would be safer still; the size and inode are compared too, and a file that
changes while it is read is not used."""

SET_QUEUE_LENGTH = 8
"""Live-tuning changes waiting for the mapping thread before new ones are refused."""

SETS_PER_SECOND = 10.0
"""Live-tuning changes accepted per second, all clients together, on average
(a token bucket; a burst of :data:`SET_BURST` passes at once). A change costs
the checker about 20 ms of CPU with the default mapping (tomlkit edit
and full check; in a child process in a server, see
:mod:`bridge.mapping_check`): 10 a second is under a quarter of a core. Faster than any designer
turns a knob; a client over it gets ``mapping_error`` naming the limit."""

MAX_BUSY_SHARE = 0.5
"""The largest share of the time the mapping thread spends applying changes:
after each it rests as long as the change took. Checked on the mapping
thread (no child process), a change holds the interpreter's lock that the
socket threads need, so a ping waits behind it; resting bounds that, and a
flood of changes fills the queue (and is refused) instead."""

SET_BURST = 10
"""Live-tuning changes accepted at once after a quiet time (the token bucket's size)."""

Reply = tuple[str, dict[str, Any]]


def cut_utf8(text: str, limit_bytes: int) -> list[str]:
    """``text`` cut into parts of at most ``limit_bytes`` UTF-8 bytes, between characters."""
    parts, current, size = [], [], 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > limit_bytes:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current or not parts:
        parts.append("".join(current))
    return parts


_STOP = object()


class MappingControl:
    """The live mapping of one session, its file watch and its live tuning.

    Args:
        bank: the session's cue bank (every change is checked against it).
        initial: the mapping the session starts with.
        submit: hands a :class:`MappingChange` to the real-time session (thread-safe).
        path: the mapping file to watch (None: nothing to watch; live tuning still works).
        report_error: called with ``(path, message)`` when a reloaded file is
            invalid, to tell every client (thread-safe, must not block).
        poll_seconds: how often the file is looked at.
        settle_seconds: see :data:`SETTLE_SECONDS`.
        max_bytes: the largest mapping text (file or live result), UTF-8 bytes.
        queue_length: see :data:`SET_QUEUE_LENGTH`.
        sets_per_second, set_burst: the rate limit of live tuning, see :data:`SETS_PER_SECOND`.
        clock: monotonic clock in seconds (tests pass a fake one).
        bank_path: the session's cue bank file; :meth:`export_text` names it
            by this absolute path, so an exported mapping works from any folder
            (None: the text's own ``bank`` is kept).
        checker: where changes are checked (:mod:`bridge.mapping_check`):
            a server passes the shared :class:`~bridge.mapping_check.ProcessChecker`,
            so the checking holds none of its interpreter lock; None checks on
            the mapping thread (or the caller's thread, without one).

    Attributes:
        counters: ``reloads``, ``rejected_reloads`` (invalid or too large
            files), ``sets``, ``rejected_sets`` (invalid changes),
            ``refused_sets_rate`` and ``refused_sets_queue`` (over the rate
            limit, queue full), ``reply_errors`` (an answer could not be sent),
            ``internal_errors`` (a bug; the client is answered all the same).
    """

    def __init__(self, bank: CueBank, initial: ResolvedMapping, submit: Callable[[MappingChange], None],
                 path: Path | None = None, report_error: Callable[[str, str], None] | None = None,
                 poll_seconds: float = POLL_SECONDS, *, settle_seconds: float = SETTLE_SECONDS,
                 max_bytes: int = MAX_MAPPING_BYTES, queue_length: int = SET_QUEUE_LENGTH,
                 sets_per_second: float = SETS_PER_SECOND, set_burst: int = SET_BURST,
                 clock: Callable[[], float] = time.monotonic, bank_path: Path | None = None,
                 checker: InProcessChecker | ProcessChecker | None = None) -> None:
        if not sets_per_second > 0 or set_burst < 1 or queue_length < 1:
            raise ValueError(f"sets_per_second ({sets_per_second}) must be > 0, set_burst ({set_burst}) and "
                             f"queue_length ({queue_length}) >= 1")
        self.bank = bank
        self.bank_path = bank_path.resolve() if bank_path is not None else None
        self.path = path
        self.submit = submit
        self.report_error = report_error or (lambda path, message: None)
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.max_bytes = max_bytes
        self.sets_per_second = float(sets_per_second)
        self.set_burst = int(set_burst)
        self._clock = clock
        self._lock = threading.Lock()  # guards the swap of current (held for no work)
        self._current = initial
        # The file's status as last seen, when it was first seen so, and as last acted on.
        self._seen: tuple | None = None
        self._seen_at = 0.0
        self._acted_on: tuple | None = None
        self._digest: str | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_length)
        self._checker = checker if checker is not None else InProcessChecker()
        self._rate_lock = threading.Lock()
        self._tokens = float(set_burst)
        self._tokens_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters = {"reloads": 0, "rejected_reloads": 0, "sets": 0, "rejected_sets": 0,
                         "refused_sets_rate": 0, "refused_sets_queue": 0, "reply_errors": 0, "internal_errors": 0}
        self._log = RateLimitedLog(log)
        if path is not None:
            self._seen = self._acted_on = self._stat_of(path)
            self._seen_at = clock()
            self._digest = self._digest_of(path)

    @property
    def current(self) -> ResolvedMapping:
        """The last accepted mapping (it plays from the next bar line after it was accepted).
        Never waits for a change being checked."""
        return self._current

    # ------------------------------------------------------------------ the mapping thread
    def start(self) -> None:
        """Start the mapping thread (``adaptive-mapping``, daemon): it polls the
        file (if any) and applies queued live-tuning changes."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="adaptive-mapping", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the mapping thread (queued changes are dropped unanswered)."""
        self._stop.set()
        try:
            self._jobs.put_nowait(_STOP)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        next_poll = self._clock()
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=self.poll_seconds)
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            try:
                if job is not None:
                    started = time.perf_counter()
                    self._apply_set(*job)
                    # Rest as long as it worked: at most half a core, and the interpreter's lock
                    # free for the socket and render threads half the time, whatever the load.
                    self._stop.wait((time.perf_counter() - started) * (1.0 / MAX_BUSY_SHARE - 1.0))
                if self.path is not None and self._clock() >= next_poll:
                    next_poll = self._clock() + self.poll_seconds
                    self.poll()
            except Exception as error:  # a bug must not end the thread: count it, log it (once per 10 s), go on
                self.counters["internal_errors"] += 1
                self._log.error("internal", "mapping: internal error: %r", error, exc_info=True)

    # ------------------------------------------------------------------ file watch
    @staticmethod
    def _stat_of(path: Path) -> tuple | None:
        """What tells a change: modification and change times (ns), size, inode."""
        try:
            status = path.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_ctime_ns, status.st_size, status.st_ino)

    def _digest_of(self, path: Path) -> str | None:
        try:
            with path.open("rb") as file:
                return hashlib.sha256(file.read(self.max_bytes + 1)).hexdigest()
        except OSError:
            return None

    def poll(self) -> bool:
        """Look at the file once (the mapping thread does it every
        ``poll_seconds``); reload it if its content changed and it has stopped
        changing (see the module docstring).

        Returns:
            True if a valid new mapping was handed to the session.
        """
        assert self.path is not None
        stat = self._stat_of(self.path)
        now = self._clock()
        if stat != self._seen:  # changing (or gone): wait until it has stayed so for the settle time
            self._seen, self._seen_at = stat, now
            return False
        if stat is None or stat == self._acted_on or now - self._seen_at < self.settle_seconds:
            return False
        size = stat[2]
        if size > self.max_bytes:
            self._acted_on = stat  # reported once, until it changes again
            self._reject_reload(f"{self.path}: the mapping file is {size} bytes (allowed: at most {self.max_bytes} "
                                "bytes, MAX_MAPPING_BYTES); not read")
            return False
        try:
            with self.path.open("rb") as file:
                data = file.read(self.max_bytes + 1)
        except OSError:
            return False
        if self._stat_of(self.path) != stat or len(data) != size:  # written while read: not settled after all
            self._seen = None
            return False
        self._acted_on = stat
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self._reject_reload(f"{self.path}: not a UTF-8 text file (byte {error.start})")
            return False
        try:
            result = self._checker.check_file(self.bank, text, str(self.path))
        except BaseException:
            self._digest = self._acted_on = None  # not checked: try again at the next poll
            raise
        if result.resolved is None:
            self._reject_reload(result.report)
            return False
        for line in result.report.splitlines():
            log.warning("mapping: %s", line)
        self._accept(MappingChange(result.resolved.text, result.resolved, str(self.path)))
        self.counters["reloads"] += 1
        log.info("mapping: reloaded %s; it plays from the next bar line", self.path)
        return True

    def _reject_reload(self, message: str) -> None:
        self.counters["rejected_reloads"] += 1
        log.error("mapping: %s is invalid; the last good mapping keeps playing:\n%s", self.path, message)
        self.report_error(str(self.path), _shorten(message, ERROR_MESSAGE_CHARS))

    def _accept(self, change: MappingChange) -> None:
        assert change.resolved is not None
        with self._lock:
            self._current = change.resolved
        self.submit(change)

    # ------------------------------------------------------------------ live tuning
    def request_set(self, path: str, value_text: str, reply: Callable[[list[Reply]], None]) -> list[Reply]:
        """A ``mapping_set`` from a socket thread: never waits, never checks the mapping.

        Without a started mapping thread (tests, tools) the change is made at
        once, on the caller's thread.

        Args:
            path, value_text: as :meth:`set`.
            reply: called with the answer (``[("mapping_value", ...)]`` or
                ``[("mapping_error", ...)]``) from the mapping thread once the
                change is checked; must not block (the transports queue it).

        Returns:
            The answer to send now: ``[]`` when the change was queued, or a
            ``mapping_error`` when it was refused (rate limit, full queue).
        """
        if self._thread is None:
            return mapping_replies("mapping_set", {"path": path, "value": value_text}, self)
        if not self._take_token():
            self.counters["refused_sets_rate"] += 1
            return [_error_reply(path, f"too many mapping changes (allowed: {self.sets_per_second:g} a second, "
                                       f"bursts of {self.set_burst}); nothing changed, send it again later")]
        try:
            self._jobs.put_nowait((path, value_text, reply))
        except queue.Full:
            self.counters["refused_sets_queue"] += 1
            return [_error_reply(path, f"the server is still applying {self._jobs.maxsize} mapping changes "
                                       "(allowed: that many waiting); nothing changed, send it again later")]
        return []

    def _take_token(self) -> bool:
        with self._rate_lock:
            now = self._clock()
            self._tokens = min(float(self.set_burst), self._tokens + (now - self._tokens_at) * self.sets_per_second)
            self._tokens_at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def _apply_set(self, path: str, value_text: str, reply: Callable[[list[Reply]], None]) -> None:
        try:
            replies = mapping_replies("mapping_set", {"path": path, "value": value_text}, self)
        except Exception as error:  # a bug: the client still gets an answer, and it is counted
            self.counters["internal_errors"] += 1
            self._log.error("internal", "mapping: internal error setting %s: %r", path, error, exc_info=True)
            replies = [_error_reply(path, f"the server failed applying this change ({type(error).__name__}); "
                                          "it is counted, nothing changed")]
        try:
            reply(replies)
        except Exception:  # the client's transport is closing: the change stands
            self.counters["reply_errors"] += 1

    def set(self, path: str, value_text: str) -> str:
        """Set the value at ``path`` (JSON or TOML text, see
        :func:`adaptive.mapping.parse_value`) in the live mapping, now: the
        calling thread (the mapping thread, or a test) waits for the checker.
        Socket threads call :meth:`request_set`.

        Returns:
            The value now in force at ``path``, as JSON text.

        Raises:
            MappingRejected: a bad path or value, a mapping the bank does not
                allow (every problem), or one larger than ``max_bytes``; nothing changed.
            bridge.mapping_check.CheckerError: a
                :class:`~bridge.mapping_check.ProcessChecker`'s child did not answer; nothing changed.
        """
        result = self._checker.check_set(self.bank, self._current.text, path, value_text, self.max_bytes)
        if result.resolved is None:
            self.counters["rejected_sets"] += 1
            raise MappingRejected(path, result.error or "refused")
        self._accept(MappingChange(result.resolved.text, result.resolved, "live", path, value_text))
        self.counters["sets"] += 1
        if result.value is None:  # accepted, but the value cannot be sent back in one message
            raise MappingRejected(path, result.value_error or "")
        return result.value

    def get(self, path: str) -> str:
        """The value at ``path`` in the live mapping, as JSON text.

        Raises:
            MappingRejected: no such key, a malformed path, or a value too long for one message.
        """
        return value_at(self.current, path)

    def export_text(self) -> str:
        """The live mapping as TOML (the designer's file with the live changes),
        its ``bank`` the absolute path of the bank this session plays (when
        known): the file's own ``bank`` is relative to the file's folder, which
        the exported copy does not share."""
        text = self.current.text
        if self.bank_path is None:
            return text
        import tomlkit

        entry = tomlkit.string(str(self.bank_path))
        entry.comment("absolute: the bank the server played when this was exported")
        return set_value_text(text, "bank", entry)

    def export_parts(self) -> list[str]:
        """:meth:`export_text` cut into ``mapping_text`` parts."""
        return cut_utf8(self.export_text(), MAPPING_TEXT_BYTES)


def _error_reply(path: str, message: str) -> Reply:
    return ("mapping_error", {"path": path[:200], "message": _shorten(message, ERROR_MESSAGE_CHARS)})


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters and 900 UTF-8 bytes (so an
    OSC ``mapping_error`` with its path stays inside one datagram)."""
    limit_bytes = min(limit, 900)
    if len(text) <= limit and len(text.encode("utf-8")) <= limit_bytes:
        return text
    return cut_utf8(text, limit_bytes - 3)[0] + "..."


def mapping_replies(name: str, values: dict[str, Any], control: MappingControl | None) -> list[tuple[str, dict]]:
    """The replies to a ``mapping_set``, ``mapping_get`` or ``mapping_export``
    message, for any transport: ``[(message name, values)]``."""
    path = values.get("path", "")
    if control is None:
        return [("mapping_error", {"path": path, "message": "this server has no live mapping"})]
    try:
        if name == "mapping_set":
            return [("mapping_value", {"path": path, "value": control.set(path, values["value"])})]
        if name == "mapping_get":
            return [("mapping_value", {"path": path, "value": control.get(path)})]
        parts = control.export_parts()
        return [("mapping_text", {"index": i, "count": len(parts), "text": part}) for i, part in enumerate(parts)]
    except MappingRejected as error:
        return [_error_reply(path, error.message)]
    except AdaptiveError as error:
        return [_error_reply(path, str(error))]
