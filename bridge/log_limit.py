"""Rate-limited warnings: a flood of bad input must not become a flood of log.

A hostile or broken client can send thousands of rejected messages a second;
logging one line each wrote 25 MB of log per 200 000 datagrams, and a
traceback each 9.6 MB per 20 000 ZeroMQ frames (issue 13). :class:`RateLimitedLog`
logs the first message of each kind, then only counts the others until its
window (10 s) has passed; the next one logged says how many were left out::

    OSC: rejected a datagram from 127.0.0.1:5000: ... (and 1234 more like this in the last 10 s)

The counters of the transports still count every message: the log is for a
person, the counters for monitoring.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

WINDOW_SECONDS = 10.0
"""How long (seconds) after a logged warning others of its kind are only counted."""


class RateLimitedLog:
    """Logs at most one message per kind per window, with the count of those left out.

    Args:
        logger: where the messages go.
        window_seconds: see :data:`WINDOW_SECONDS`.
        clock: monotonic clock in seconds (tests pass a fake one).

    Thread-safe: the transports' threads share one.
    """

    def __init__(self, logger: logging.Logger, window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self.logger = logger
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, list[float | int]] = {}  # kind -> [window start, messages left out since]

    def log(self, level: int, kind: str, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``message % args`` at ``level`` unless a message of ``kind`` was
        logged less than a window ago (then only count it). Returns whether it
        was logged. The text is formatted only when it is logged; with
        ``exc_info`` the exception being handled is logged with it (so at most
        one traceback per kind per window)."""
        now = self._clock()
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is not None and now - entry[0] < self.window_seconds:
                entry[1] += 1
                return False
            left_out = int(entry[1]) if entry is not None else 0
            self._kinds[kind] = [now, 0]
        if left_out:
            message += " (and %d more like this in the last %g s)"
            args = (*args, left_out, self.window_seconds)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, kind: str, message: str, *args: Any) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, kind, message, *args)

    def error(self, kind: str, message: str, *args: Any, exc_info: bool = False) -> bool:
        """:meth:`log` at ERROR."""
        return self.log(logging.ERROR, kind, message, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Log the counts still left out (e.g. when the server stops), one line per kind."""
        with self._lock:
            pending = [(kind, int(entry[1])) for kind, entry in self._kinds.items() if entry[1]]
            self._kinds.clear()
        for kind, count in pending:
            self.logger.warning("%d more %s in the last %g s, not logged one by one", count, kind,
                                self.window_seconds)
