"""The offline driver: a session rendered as fast as it goes, with stamped
inputs submitted at their frames. Rendering a timeline, replaying a recording,
the tests, the tools and the benchmarks all drive a session through it.

Each input is submitted when the session has rendered exactly up to its frame,
as the real-time runner (:mod:`adaptive.realtime`) does: what the session had
scheduled for that frame already (a cue change on its boundary) runs before
the input in both, so an offline render of a served session's inputs is the
served audio bit for bit (docs/engine.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from adaptive.scene import SessionInput
from adaptive.session import Session

StampedInput = tuple[int, SessionInput]
"""An input with the session frame at which it takes effect."""


def render_offline(session: Session, end_frame: int, inputs: Iterable[StampedInput] = (), *,
                   block_frames: int | None = None,
                   on_block: Callable[[int], None] | None = None) -> np.ndarray:
    """Render ``session`` from its current frame to ``end_frame``, submitting
    each of ``inputs`` (in frame order; equal frames keep their order) when
    the render reaches its frame.

    Args:
        block_frames: the largest block rendered at once (default: the
            session's ``max_block_frames``); any size gives the same audio.
        on_block: called with the frames rendered after each block (progress).

    Returns:
        The audio from the session's frame on, shape ``(end_frame - start, 2)``, float32.

    Raises:
        InputError: an input the session refuses (what was rendered stays rendered).
    """
    block_frames = block_frames or session.max_block_frames
    start = session.frame
    audio = np.empty((max(0, end_frame - start), 2), np.float32)

    def render_to(frame: int) -> None:
        while session.frame < frame:
            n = min(block_frames, frame - session.frame)
            position = session.frame - start
            audio[position : position + n] = session.render(n)
            if on_block is not None:
                on_block(n)

    for frame, item in sorted(inputs, key=lambda stamped: stamped[0]):
        render_to(min(frame, end_frame))
        session.submit(frame, item)
    render_to(end_frame)
    return audio
