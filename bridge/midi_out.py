"""MIDI out of a running session: a Standard MIDI File recording and an
optional virtual MIDI port.

Both are sinks of :class:`adaptive.realtime.RealtimeSession` (``on_block``),
called on the render thread, so ``on_block`` only appends to memory:

* :class:`MidiFileRecorder` keeps its own copy of every note event (the
  runner trims ``session.midi_events`` in long sessions) and writes the file
  with :func:`adaptive.midifile.write_midi` when closed, after the render thread
  has stopped. Note events are tiny: a 10-minute session is ~100k of them.
* :class:`VirtualMidiPort` opens a virtual MIDI output port (mido with the
  python-rtmidi backend; Linux ALSA/JACK and macOS CoreMIDI have them, Windows
  does not) and sends each note from its own thread at the server time the note
  is scheduled to play (``frame / sample_rate_hz``), with the channels of
  :class:`bridge.dispatch.MidiChannels` and a program change whenever a channel
  first plays a part.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from adaptive.errors import AdaptiveError
from adaptive.synth import PERCUSSION_CHANNEL
from adaptive.voice import NOTE_ON
from bridge.dispatch import MidiChannels

log = logging.getLogger("adaptive.midi_out")

ALSA_SEQUENCER = "/dev/snd/seq"
"""The device ALSA virtual MIDI ports need on Linux."""

DEFAULT_PORT_NAME = "adaptive"

MAX_PENDING_BLOCKS = 2048
"""Blocks of note events :class:`VirtualMidiPort` holds before dropping (about
11 s of 256-frame blocks at 48 kHz; normally it holds the lookahead, a few blocks)."""

MAX_WAIT_SECONDS = 0.002
"""The sender thread sleeps at most this long at a time (new notes and
:meth:`VirtualMidiPort.close` are picked up that fast)."""


class MidiFileRecorder:
    """Records every note a session plays, for a Standard MIDI File.

    Add :meth:`on_block` as a sink; after the runner is stopped, :meth:`close`
    writes the file.
    """

    def __init__(self) -> None:
        self._events: list = []
        self.end_frame = 0
        """The frame after the last block seen (where the recording ends)."""

    def on_block(self, block: Any) -> None:
        """Sink (render thread): keep the block's note events. No I/O."""
        if block.midi:
            self._events.extend(block.midi)
        self.end_frame = block.first_frame + block.frame_count

    @property
    def events(self) -> list:
        """A copy of the note events recorded so far."""
        return list(self._events)

    def close(self, path: Path | str | None, session: Any, end_frame: int | None = None) -> None:
        """Write the recording as a type-1 SMF (nothing if ``path`` is None).
        Call it after the render thread has stopped.

        Args:
            path: output file, or None to write nothing.
            session: the :class:`adaptive.session.Session` (``parts``,
                ``tempo_changes``, ``sample_rate_hz``).
            end_frame: where the recording ends: notes still held get a note-off
                there (default: the end of the last block seen).

        Raises:
            AdaptiveError: the file cannot be written.
        """
        if path is None:
            return
        from adaptive.midifile import write_midi

        end = self.end_frame if end_frame is None else end_frame
        try:
            write_midi(path, list(self._events), dict(session.parts), list(session.tempo_changes),
                       session.sample_rate_hz, end_frame=end)
        except OSError as error:
            raise AdaptiveError(f"cannot write the MIDI file {path}: {error.strerror or error}") from None


def open_virtual_output(name: str = DEFAULT_PORT_NAME):
    """Open a virtual MIDI output port named ``name`` with mido's python-rtmidi backend.

    Raises:
        AdaptiveError: python-rtmidi is not installed, the platform has no
            virtual ports (Windows), Linux has no ALSA sequencer, or the port
            cannot be opened; the message says what is missing.
    """
    try:
        import rtmidi  # noqa: F401  (python-rtmidi)
    except ImportError:
        raise AdaptiveError("virtual MIDI port: python-rtmidi is not installed "
                            "(install python-rtmidi: pip install python-rtmidi)") from None
    if sys.platform.startswith("win"):
        raise AdaptiveError("virtual MIDI port: Windows has no virtual MIDI ports "
                            "(use a loopback driver such as loopMIDI, or --midi-file)")
    if sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQUENCER):
        raise AdaptiveError(f"virtual MIDI port: no ALSA sequencer: virtual MIDI ports need {ALSA_SEQUENCER} "
                            "(load the snd-seq kernel module, or run where sound devices exist; "
                            "--midi-file works everywhere)")
    import mido

    try:
        backend = mido.Backend("mido.backends.rtmidi", load=True, use_environ=False)
        return backend.open_output(name, virtual=True)
    except Exception as error:  # rtmidi.SystemError and friends
        raise AdaptiveError(f"virtual MIDI port: cannot open a virtual MIDI port named {name!r}: {error}") from None


class VirtualMidiPort:
    """Plays a session's notes on a virtual MIDI output port, in time.

    Args:
        part_info: part → :class:`adaptive.session.PartInfo` (``session.parts``;
            read when a part first plays).
        sample_rate_hz: the session rate (frame ``f`` is due at ``f / rate`` s).
        server_time_seconds: the runner's clock (``RealtimeSession.server_time_seconds``).
        name: the port name clients see.
        offset_seconds: added to every note's due time (e.g. to line up with
            the audio clients' output latency).
        max_pending_blocks: see :data:`MAX_PENDING_BLOCKS`.
        open_port: opens the port given the name (tests pass a fake one);
            default :func:`open_virtual_output`.

    Raises:
        AdaptiveError: the port cannot be opened (see :func:`open_virtual_output`).
    """

    def __init__(
        self,
        part_info: dict,
        sample_rate_hz: int,
        server_time_seconds: Callable[[], float],
        name: str = DEFAULT_PORT_NAME,
        *,
        offset_seconds: float = 0.0,
        max_pending_blocks: int = MAX_PENDING_BLOCKS,
        open_port: Callable[[str], Any] | None = None,
    ) -> None:
        self.name = name
        self.sample_rate_hz = int(sample_rate_hz)
        self.offset_seconds = float(offset_seconds)
        self.max_pending_blocks = int(max_pending_blocks)
        self._time = server_time_seconds
        self._channels = MidiChannels(part_info)
        self._part_info = part_info
        self._pending: deque[list] = deque()
        self._owner: dict[int, str] = {}
        self._held: dict[tuple[int, int], int] = {}
        self._running = threading.Event()
        self._closed = False
        self.counters: dict[str, int] = {"sent": 0, "late": 0, "dropped": 0, "send_errors": 0}
        """``sent`` messages; ``late``: notes sent more than 5 ms after they
        were due; ``dropped`` note events (queue full); ``send_errors``."""
        self._port = (open_port or open_virtual_output)(name)
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="adaptive-midi-out", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ render thread
    def on_block(self, block: Any) -> None:
        """Sink (render thread): enqueue the block's notes; never blocks."""
        if not block.midi:
            return
        if len(self._pending) >= self.max_pending_blocks:
            self.counters["dropped"] += len(block.midi)
            return
        self._pending.append(block.midi)

    # ------------------------------------------------------------------ sender thread
    def _run(self) -> None:
        import mido

        rate = self.sample_rate_hz
        while self._running.is_set():
            try:
                notes = self._pending.popleft()
            except IndexError:
                time.sleep(MAX_WAIT_SECONDS)
                continue
            for note in sorted(notes, key=lambda n: (n.frame, n.kind)):
                due = note.frame / rate + self.offset_seconds
                while self._running.is_set():
                    wait = due - self._time()
                    if wait <= 0.0:
                        break
                    time.sleep(min(wait, MAX_WAIT_SECONDS))
                if not self._running.is_set():
                    return
                if self._time() - due > 0.005:
                    self.counters["late"] += 1
                for message in self._messages(note, mido):
                    self._send(message)

    def _messages(self, note: Any, mido: Any) -> list:
        channel = self._channels.channel(note.part)
        key = (channel, note.pitch)
        if note.kind == NOTE_ON:
            out = []
            if self._owner.get(channel) != note.part:
                self._owner[channel] = note.part
                info = self._part_info.get(note.part)
                if channel != PERCUSSION_CHANNEL:
                    out.append(mido.Message("program_change", channel=channel,
                                            program=info.program if info is not None else 0))
            self._held[key] = self._held.get(key, 0) + 1
            out.append(mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity))
            return out
        count = self._held.get(key, 0)
        if count <= 1:
            self._held.pop(key, None)
        else:
            self._held[key] = count - 1
        return [mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)]

    def _send(self, message: Any) -> None:
        try:
            self._port.send(message)
            self.counters["sent"] += 1
        except Exception:
            self.counters["send_errors"] += 1
            if self.counters["send_errors"] == 1:
                log.exception("virtual MIDI port %r: send failed", self.name)

    # ------------------------------------------------------------------ control
    def close(self, timeout: float = 2.0) -> None:
        """Stop the sender thread, turn off every note still held, close the
        port. Notes not yet sent are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._running.clear()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        import mido

        for (channel, pitch), count in sorted(self._held.items()):
            for _ in range(count):
                self._send(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
        self._held.clear()
        try:
            self._port.close()
        except Exception:
            log.exception("virtual MIDI port %r: close failed", self.name)

    def stats(self) -> dict[str, int]:
        """Counters plus the blocks waiting to be sent."""
        return {**self.counters, "pending_blocks": len(self._pending)}
