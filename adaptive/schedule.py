"""The schedule: actions stamped with the frame at which they take effect, and
the music events they report.

A session runs every action due at a frame before rendering that frame
(actions due at the same frame run in the order they were scheduled), so
the audio does not depend on how rendering is split into blocks.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

from adaptive.events import EventKind, MusicEvent


class Schedule:
    """Stamped actions and the events they emit.

    Attributes:
        frame_now: the frame at which the action being run takes effect (the
            render position).
        events: music events emitted since the session last drained them.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._cancelled: set[int] = set()
        self.frame_now = 0
        self.events: list[MusicEvent] = []

    def at(self, frame: int, action: Callable[[], None]) -> int:
        """Run ``action`` at ``frame``; returns an id for :meth:`cancel`."""
        sequence = next(self._sequence)
        heapq.heappush(self._heap, (frame, sequence, action))
        return sequence

    def cancel(self, action_id: int) -> None:
        """Do not run the action scheduled as ``action_id``."""
        self._cancelled.add(action_id)

    def emit(self, frame: int, kind: EventKind, **data: Any) -> None:
        """Report a music event at ``frame``."""
        self.events.append(MusicEvent(frame, kind, data))

    def run_due(self, position: int) -> None:
        """Run every action due at or before ``position``, with :attr:`frame_now` set to it."""
        heap = self._heap
        while heap and heap[0][0] <= position:
            _, sequence, action = heapq.heappop(heap)
            if sequence in self._cancelled:
                self._cancelled.discard(sequence)
                continue
            self.frame_now = position
            action()

    def next_frame(self, end: int) -> int:
        """The frame of the next action, or ``end`` if none comes before it."""
        return min(end, self._heap[0][0]) if self._heap else end
