"""The live mapping of a running server: hot reload of the mapping file and
live tuning (``mapping_set`` / ``mapping_get`` / ``mapping_export``).

Nothing here runs on the render thread. A **watch thread** polls the mapping
file (its modification time and size, then a SHA-256 of its bytes when they
change: no new dependency, and an editor that rewrites the file in place or
by rename is seen either way), parses and checks a changed file against the
bank, and hands a valid one to the session as a
:class:`~adaptive.mapping.MappingChange` input — stamped by the render thread
like any input and applied by the session at the next bar line. An invalid
file is logged and reported to every client (``mapping_error``); the last good
mapping keeps playing.

Live tuning edits the live mapping's TOML text at a key path (tomlkit keeps
the designer's comments and layout), checks the result the same way, and
hands it over the same way. ``mapping_export`` returns that text, so a tweak
made while playing can be kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any, Callable

from adaptive.cue import CueBank
from adaptive.errors import AdaptiveError
from adaptive.mapping import (MappingChange, ResolvedMapping, check_text, format_report, get_value, parse_value,
                              set_value_text)
from bridge.protocol import ERROR_MESSAGE_CHARS, MAPPING_TEXT_BYTES, MAPPING_VALUE_CHARS

log = logging.getLogger("adaptive.mapping")

POLL_SECONDS = 0.25
"""How often the watch thread looks at the mapping file."""


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
    """

    def __init__(self, bank: CueBank, initial: ResolvedMapping, submit: Callable[[MappingChange], None],
                 path: Path | None = None, report_error: Callable[[str, str], None] | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.bank = bank
        self.path = path
        self.submit = submit
        self.report_error = report_error or (lambda path, message: None)
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()  # guards current (socket threads read it, the watch thread replaces it)
        self._current = initial
        self._stat: tuple[int, int] | None = None
        self._digest: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters = {"reloads": 0, "rejected_reloads": 0, "sets": 0, "rejected_sets": 0}
        if path is not None:
            self._stat = self._stat_of(path)
            self._digest = self._digest_of(path)

    @property
    def current(self) -> ResolvedMapping:
        """The last accepted mapping (it plays from the next bar line after it was accepted)."""
        with self._lock:
            return self._current

    # ------------------------------------------------------------------ file watch
    def start(self) -> None:
        """Start the watch thread (``adaptive-mapping-watch``, daemon) if there is a file."""
        if self.path is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="adaptive-mapping-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watch thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # a bug must not end the watch: log it and go on
                log.exception("mapping: error while checking %s", self.path)

    @staticmethod
    def _stat_of(path: Path) -> tuple[int, int] | None:
        try:
            status = path.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size)

    @staticmethod
    def _digest_of(path: Path) -> str | None:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None

    def poll(self) -> bool:
        """Look at the file once; reload it if its content changed.

        Returns:
            True if a valid new mapping was handed to the session.
        """
        assert self.path is not None
        stat = self._stat_of(self.path)
        if stat is None or stat == self._stat:
            return False
        self._stat = stat
        try:
            data = self.path.read_bytes()
        except OSError:
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self._reject_reload(f"{self.path}: not a UTF-8 text file (byte {error.start})")
            return False
        result = check_text(text, self.bank, str(self.path))
        if result.resolved is None:
            self._reject_reload(format_report(str(self.path), result))
            return False
        for line in format_report(str(self.path), result).splitlines():
            log.warning("mapping: %s", line)
        self._accept(result.resolved, str(self.path))
        self.counters["reloads"] += 1
        log.info("mapping: reloaded %s; it plays from the next bar line", self.path)
        return True

    def _reject_reload(self, message: str) -> None:
        self.counters["rejected_reloads"] += 1
        log.error("mapping: %s is invalid; the last good mapping keeps playing:\n%s", self.path, message)
        self.report_error(str(self.path), _shorten(message, ERROR_MESSAGE_CHARS))

    def _accept(self, resolved: ResolvedMapping, source: str) -> None:
        with self._lock:
            self._current = resolved
        self.submit(MappingChange(resolved.text, resolved, source))

    # ------------------------------------------------------------------ live tuning
    def set(self, path: str, value_text: str) -> str:
        """Set the value at ``path`` (JSON or TOML text, see
        :func:`adaptive.mapping.parse_value`) in the live mapping.

        Returns:
            The value now in force at ``path``, as JSON text.

        Raises:
            MappingRejected: a bad path or value, or a mapping the bank does not
                allow (every problem); nothing changed.
        """
        value = parse_value(value_text)
        if isinstance(value, float) and math.isnan(value):
            raise MappingRejected(path, f"{path}: NaN is not allowed")
        with self._lock:
            current = self._current
            try:
                text = set_value_text(current.text, path, value)
            except (ValueError, TypeError) as error:
                self.counters["rejected_sets"] += 1
                raise MappingRejected(path, str(error)) from None
            result = check_text(text, self.bank, "live")
            if result.resolved is None:
                self.counters["rejected_sets"] += 1
                raise MappingRejected(path, "; ".join(f"{p.key}: {p.message}" for p in result.errors))
            self._current = result.resolved
        self.submit(MappingChange(result.resolved.text, result.resolved, "live"))
        self.counters["sets"] += 1
        return self.get(path)

    def get(self, path: str) -> str:
        """The value at ``path`` in the live mapping, as JSON text.

        Raises:
            MappingRejected: no such key, a malformed path, or a value too long for one message.
        """
        try:
            value = get_value(self.current, path)
        except (KeyError, ValueError) as error:
            raise MappingRejected(path, str(error.args[0] if isinstance(error, KeyError) else error)) from None
        text = to_json_text(value)
        if len(text) > MAPPING_VALUE_CHARS:
            raise MappingRejected(path, f"the value of {path} is {len(text)} characters long (allowed in one "
                                        f"message: {MAPPING_VALUE_CHARS}); read a key inside it, or use mapping_export")
        return text

    def export_text(self) -> str:
        """The live mapping as TOML (the designer's file with the live changes)."""
        return self.current.text

    def export_parts(self) -> list[str]:
        """:meth:`export_text` cut into ``mapping_text`` parts."""
        return cut_utf8(self.export_text(), MAPPING_TEXT_BYTES)


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
        return [("mapping_error", {"path": path[:200], "message": _shorten(error.message, ERROR_MESSAGE_CHARS)})]
    except AdaptiveError as error:
        return [("mapping_error", {"path": path[:200], "message": _shorten(str(error), ERROR_MESSAGE_CHARS)})]
