"""What the server does with a message, whatever transport carried it: the
shared half of the OSC and ZeroMQ endpoints.

* :func:`to_input` turns a validated scene or stinger message into an engine
  input, checking names against the cue bank.
* :func:`event_messages` and :func:`midi_messages` turn what a rendered block
  produced into callback messages ``(name, values)``, which each transport
  encodes its own way (:func:`bridge.protocol.encode_osc` or ``encode_json``).
"""

from __future__ import annotations

from typing import Any

from adaptive.cue import CueBank
from adaptive.scene import SceneUpdate, StingerTrigger, validate_update
from adaptive.synth import PERCUSSION_CHANNEL
from bridge.protocol import Decoded, ProtocolError

SCENE_MESSAGES = ("scene", "emotion", "emotion_point", "intensity", "location", "cue", "stinger")
"""Messages that become engine inputs."""

MAPPING_MESSAGES = ("mapping_set", "mapping_get", "mapping_export")
"""Messages answered by the live mapping (:func:`bridge.mapping_watch.mapping_replies`)."""


def split_time(frame: int, sample_rate_hz: int) -> tuple[int, int]:
    """Server time of ``frame`` (seconds since the session started) as
    (whole seconds, microseconds)."""
    seconds, remainder = divmod(frame, sample_rate_hz)
    return int(seconds), int(remainder * 1_000_000 // sample_rate_hz)


def split_seconds(seconds: float) -> tuple[int, int]:
    """``seconds`` (>= 0) as (whole seconds, microseconds)."""
    whole = int(seconds)
    return whole, min(999_999, int(round((seconds - whole) * 1_000_000)))


def to_input(decoded: Decoded, bank: CueBank, mapping: Any = None) -> SceneUpdate | StingerTrigger:
    """The engine input for a scene or stinger message, its names checked
    against ``mapping`` (a :class:`adaptive.mapping.ResolvedMapping`: its
    emotions and stinger names) or, without one, the bank and built-in emotions.

    Raises:
        ProtocolError: ``unknown_name`` for a name the bank or the emotion
            table does not have (with the allowed names), ``out_of_range``
            for values the engine refuses.
    """
    name, values = decoded.message.name, decoded.values
    if name == "stinger":
        try:
            (mapping.stinger if mapping is not None else bank.stinger)(values["stinger"])
        except KeyError as error:
            raise ProtocolError("unknown_name", str(error.args[0])) from None
        return StingerTrigger(values["stinger"])
    builders = {
        "scene": lambda v: SceneUpdate(emotion=v["emotion"], intensity=v["intensity"], location=v["location"]),
        "emotion": lambda v: SceneUpdate(emotion=v["emotion"]),
        "emotion_point": lambda v: SceneUpdate(valence=v["valence"], arousal=v["arousal"]),
        "intensity": lambda v: SceneUpdate(intensity=v["intensity"]),
        "location": lambda v: SceneUpdate(location=v["location"]),
        "cue": lambda v: SceneUpdate(cue=v["cue"]),
    }
    update = builders[name](values)
    try:
        if mapping is not None:
            validate_update(update, bank, mapping.emotion)
        else:
            validate_update(update, bank)
    except KeyError as error:
        raise ProtocolError("unknown_name", str(error.args[0])) from None
    except ValueError as error:
        raise ProtocolError("out_of_range", str(error)) from None
    return update


WIRE_EVENT_KINDS = frozenset({"beat", "bar", "cue_change", "transition_start", "transition_end", "stinger",
                              "mapping", "mapping_error"})
"""Music event kinds that become callback messages (see :func:`event_messages`)."""


def wire_events(events: list) -> list:
    """The events of ``events`` that :func:`event_messages` sends, so a sink
    can skip (and not wake its thread for) a block of only internal events
    (scene, follow, gains: one per input)."""
    return [event for event in events if event.kind in WIRE_EVENT_KINDS]


def event_messages(events: list, sample_rate_hz: int) -> list[tuple[str, dict[str, Any]]]:
    """Callback messages for a block's music events (beats, bars, cue changes,
    transitions, stingers, mapping changes; a ``mapping_error`` event from the
    mapping watch), in order; scene, follow, gains and error events are not sent."""
    out = []
    for event in events:
        time_s, time_us = split_time(event.frame, sample_rate_hz)
        stamp = {"frame": event.frame, "time_s": time_s, "time_us": time_us}
        data = event.data
        if event.kind == "beat":
            out.append(("beat", dict(stamp, cue=data["cue"][:64], bar_index=data["bar_index"],
                                     beat_in_bar=data["beat_in_bar"], bpm=data["bpm"])))
        elif event.kind == "bar":
            out.append(("bar", dict(stamp, cue=data["cue"][:64], bar_index=data["bar_index"])))
        elif event.kind == "cue_change":
            out.append(("cue_change", dict(stamp, cue=data["cue"][:64], previous=(data["previous"] or "")[:64])))
        elif event.kind in ("transition_start", "transition_end"):
            out.append(("transition", dict(stamp, phase=event.kind.removeprefix("transition_"),
                                           from_cue=data["cue"][:64], to_cue=data["to"][:64])))
        elif event.kind == "stinger":
            out.append(("stinger_played", dict(stamp, stinger=data["name"])))
        elif event.kind == "mapping":
            out.append(("mapping_changed", dict(stamp, source=data["source"][-200:])))
        elif event.kind == "mapping_error":
            out.append(("mapping_error", {"path": data["path"][-200:], "message": data["message"]}))
    return out


class MidiChannels:
    """Gives each part a MIDI channel on first use (percussion parts share
    channel 10), the same way for every transport."""

    def __init__(self, part_info: dict) -> None:
        self.part_info = part_info
        self._channels: dict[str, int] = {}

    def channel(self, part: str) -> int:
        """The 0-based MIDI channel of ``part``."""
        if part not in self._channels:
            info = self.part_info.get(part)
            if info is not None and info.percussion:
                self._channels[part] = PERCUSSION_CHANNEL
            else:
                melodic = [c for c in range(16) if c != PERCUSSION_CHANNEL]
                taken = sum(1 for c in self._channels.values() if c != PERCUSSION_CHANNEL)
                self._channels[part] = melodic[taken % len(melodic)]
        return self._channels[part]

    def messages(self, midi: list, sample_rate_hz: int) -> list[tuple[str, dict[str, Any]]]:
        """``midi`` callback messages for a block's note events."""
        out = []
        for event in midi:
            time_s, time_us = split_time(event.frame, sample_rate_hz)
            status = (0x90 if event.kind == 1 else 0x80) | self.channel(event.part)
            out.append(("midi", {"frame": event.frame, "time_s": time_s, "time_us": time_us, "status": status,
                                 "data1": event.pitch, "data2": event.velocity, "part": event.part[:64]}))
        return out


def welcome_values(sample_rate_hz: int, now_seconds: float, welcome: dict[str, Any]) -> dict[str, Any]:
    """Arguments of the ``welcome`` answer to ``hello``: the protocol version,
    the session's rate, server time now (seconds since the session started)
    and the endpoint's own fields (session_id, block_frames, lookahead_ms,
    audio_tcp_port)."""
    from bridge.protocol import PROTOCOL_VERSION

    time_s, time_us = split_seconds(now_seconds)
    return {"protocol_version": PROTOCOL_VERSION, "sample_rate_hz": sample_rate_hz, "time_s": time_s,
            "time_us": time_us, **welcome}


def pong_values(sequence: int, received_seconds: float, sent_seconds: float) -> dict[str, Any]:
    """Arguments of the ``pong`` answer to ``ping``: the ping's sequence and the
    server times (seconds since the session started) it arrived and the pong leaves."""
    receive_s, receive_us = split_seconds(received_seconds)
    send_s, send_us = split_seconds(sent_seconds)
    return {"sequence": sequence, "receive_time_s": receive_s, "receive_time_us": receive_us,
            "send_time_s": send_s, "send_time_us": send_us}
