"""Pictures of a mapping and of a session, for sound designers (matplotlib,
Agg backend: no display needed).

* :func:`plot_mapping` — per location, the valence/arousal plane coloured by
  the cue the mapping chooses there (nearest point or explicit region,
  computed on a grid with the same code the session uses), region outlines,
  cue points and the named emotions; and the transition table as a graph over
  the cues' points, each arrow numbered and listed with its exit point, fade
  and bridge.
* :func:`plot_session` — emotion, intensity, the playing cue, transitions,
  stingers, mapping changes and layer gains over time, from the events of a
  render (``adaptive render --events``) or of a replayed session recording.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from adaptive.cue import WILDCARD
from adaptive.errors import ConfigError
from adaptive.mapping import PLANE_GRID_POINTS, ResolvedMapping

REGION_GRID_POINTS = 201
"""Points per axis of the grid the cue areas are drawn on (step 0.01)."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cue_colors(names: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    palette = plt.get_cmap("tab10")
    return {name: palette(index % 10) for index, name in enumerate(names)}


def plot_mapping(resolved: ResolvedMapping, output: Path | str, title: str | None = None) -> None:
    """Draw ``resolved`` to a PNG at ``output``. See the module docstring.

    Raises:
        ConfigError: the file cannot be written.
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    mapping, bank = resolved.mapping, resolved.bank
    cue_names = [cue.name for cue in bank.cues]
    colors = _cue_colors(cue_names)
    locations = list(mapping.locations) or [""]
    columns = min(3, max(2, len(locations)))
    rows = math.ceil(len(locations) / columns) + 1
    figure = plt.figure(figsize=(5.6 * columns, 5.6 * rows))
    grid = figure.add_gridspec(rows, columns, hspace=0.32, wspace=0.28)
    axes = [figure.add_subplot(grid[i // columns, i % columns]) for i in range(len(locations))]
    graph_ax = figure.add_subplot(grid[rows - 1, 0])
    table_ax = figure.add_subplot(grid[rows - 1, 1:])
    axis = np.linspace(-1.0, 1.0, REGION_GRID_POINTS)
    cmap = ListedColormap([colors[name] for name in cue_names])
    emotions = sorted(resolved.emotions.items(), key=lambda item: (item[1].arousal, item[1].valence))
    for ax, location in zip(axes, locations):
        index = {name: i for i, name in enumerate(cue_names)}
        chosen = np.array([[index[resolved.choose_cue(v, a, location, None)] for v in axis] for a in axis])
        ax.imshow(chosen, origin="lower", extent=(-1, 1, -1, 1), cmap=cmap, vmin=-0.5,
                  vmax=len(cue_names) - 0.5, alpha=0.35, interpolation="nearest", aspect="equal")
        for area in resolved.areas(location):
            # Cues are named by colour (the legend), so no label can hide an emotion's.
            if area.region is not None:
                (v0, v1), (a0, a1) = area.region.valence, area.region.arousal
                ax.add_patch(Rectangle((v0, a0), v1 - v0, a1 - a0, fill=False, lw=2.2, ls="--",
                                       edgecolor=colors[area.cue]))
            else:
                ax.plot(*area.point, marker="X", markersize=12, color=colors[area.cue], markeredgecolor="black",
                        zorder=4)
        points = [area.point for area in resolved.areas(location) if area.region is None]
        for n, (name, point) in enumerate(emotions):
            ax.plot(point.valence, point.arousal, "o", markersize=3.5, color="black", zorder=5)
            x_pt, y_pt, align = _emotion_label_offset(point.valence, point.arousal, len(name), n, points)
            ax.annotate(name, (point.valence, point.arousal), xytext=(x_pt, y_pt), textcoords="offset points",
                        fontsize=7, color="#333333", ha=align, zorder=5)
        label = location or "(every location)"
        if location and location == mapping.default_location:
            label += " (default)"
        ax.set_title(f"location: {label}")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("valence (unpleasant → pleasant)")
        ax.set_ylabel("arousal (calm → excited)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
    lines = _transition_graph(graph_ax, resolved, colors)
    table_ax.axis("off")
    table_ax.set_title("transition rules (most specific wins; among equals the later)", loc="left")
    table_ax.text(0.0, 0.98, "\n".join(lines), transform=table_ax.transAxes, fontsize=9.5, va="top", ha="left",
                  family="monospace")
    handles = [Patch(facecolor=colors[name], alpha=0.6, label=name) for name in cue_names]
    handles.append(plt.Line2D([], [], marker="X", ls="", color="grey", markeredgecolor="black", label="cue point"))
    handles.append(Patch(fill=False, ls="--", edgecolor="black", label="explicit region"))
    handles.append(plt.Line2D([], [], marker="o", ls="", color="black", markersize=4, label="named emotion"))
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(handles),
                  frameon=False, fontsize=10)
    figure.suptitle(title or f"mapping of bank {bank.name!r} ({resolved.source})", fontsize=14, y=0.985)
    _save(figure, output)


EMOTION_LABEL_CHAR_WIDTH = 0.045
"""Width of one character of an emotion's label on the plane (fontsize 7 on a
5.6-inch panel spanning 2.1 units: about 4 points, 0.045 units): enough to
tell whether a label runs over a cue's marker or off the plane."""

CUE_MARKER_RADIUS = 0.07
"""Radius of a cue point's marker (markersize 12 points) on the plane, in valence/arousal units."""


def _emotion_label_offset(valence: float, arousal: float, characters: int, n: int,
                          markers: list[tuple[float, float]]) -> tuple[float, float, str]:
    """Where an emotion's label goes: ``(x offset, y offset)`` in points and
    the horizontal alignment. Right of the dot unless it would run off the
    plane or over a cue's marker, then left; clear of a marker on the dot
    itself (e.g. "triumphant" on the triumph cue's point); below or above the
    dot alternately so neighbours' labels do not touch."""
    width = characters * EMOTION_LABEL_CHAR_WIDTH
    dy_pt = -9 if n % 2 else 3

    def runs_over(low: float, high: float) -> bool:
        y_low = arousal + (dy_pt - 1) / 60 - CUE_MARKER_RADIUS  # 60 points per unit, roughly
        y_high = arousal + (dy_pt + 8) / 60 + CUE_MARKER_RADIUS
        return any(low - CUE_MARKER_RADIUS < v < high + CUE_MARKER_RADIUS and y_low < a < y_high for v, a in markers)

    on_marker = any(math.hypot(v - valence, a - arousal) < CUE_MARKER_RADIUS for v, a in markers)
    gap = 9.0 if on_marker else 4.0
    gap_units = gap / 60 + (CUE_MARKER_RADIUS if on_marker else 0.0)
    right = (valence + gap_units, valence + gap_units + width)
    left = (valence - gap_units - width, valence - gap_units)
    right_ok = right[1] <= 1.04 and not runs_over(*right)
    left_ok = left[0] >= -1.04 and not runs_over(*left)
    if right_ok or not left_ok:
        return gap, dy_pt, "left"
    return -gap, dy_pt, "right"


ARROW_RAD = 0.18
"""Curvature of a transition arrow (matplotlib ``arc3``: the control point sits
``rad`` times the chord's length to the right of its middle), so the arrows
of a -> b and b -> a do not lie on each other."""

LOOP_RAD = -1.6
"""Curvature of the loop of a rule from a node to itself (``* → *``): it
bulges 0.16 units to the right of the node."""

ARROWHEAD_CENTER_UNITS = 0.2
"""Distance from a node's centre to the middle of an arrowhead ending on it,
on the graph's plane (the node's radius, 11 points, plus half the head's
length; about 110 points per unit at this figure size)."""

LABEL_CLEARANCE_UNITS = 0.15
"""How far a rule's number stays from any arrowhead's middle."""

NODE_CLEARANCE_UNITS = 0.17
"""How far a rule's number stays from any node's centre."""


def _bezier(start: tuple[float, float], control: tuple[float, float], end: tuple[float, float],
            t: float) -> tuple[float, float]:
    """The point at ``t`` (0..1) of the quadratic Bézier curve ``start``, ``control``, ``end`` (an ``arc3`` arrow)."""
    return ((1 - t) ** 2 * start[0] + 2 * (1 - t) * t * control[0] + t**2 * end[0],
            (1 - t) ** 2 * start[1] + 2 * (1 - t) * t * control[1] + t**2 * end[1])


def _toward(point: tuple[float, float], target: tuple[float, float], distance: float) -> tuple[float, float]:
    """``point`` moved ``distance`` toward ``target`` (where an arrow ending at ``point`` has its head)."""
    length = math.dist(point, target) or 1.0
    return (point[0] + (target[0] - point[0]) * distance / length, point[1] + (target[1] - point[1]) * distance / length)


def _transition_graph(ax, resolved: ResolvedMapping, colors: dict[str, Any]) -> list[str]:
    """The transition table as numbered arrows between the cues' bank points
    ("*" off the plane); returns the numbered rules as lines of text."""
    from matplotlib.patches import FancyArrowPatch

    bank = resolved.bank
    positions = {cue.name: (cue.valence, cue.arousal) for cue in bank.cues}
    wildcard = (-1.35, 1.25)
    rules = resolved.transition_rules()
    for name, (v, a) in positions.items():
        ax.plot(v, a, "o", markersize=22, color=colors[name], alpha=0.8, markeredgecolor="black", zorder=3)
        ax.annotate(name, (v, a), xytext=(0, -22), textcoords="offset points", ha="center", fontsize=9,
                    weight="bold", zorder=4, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.75))
    ax.plot(*wildcard, "s", markersize=20, color="white", markeredgecolor="black", zorder=3)
    ax.text(*wildcard, WILDCARD, ha="center", va="center", fontsize=14, zorder=4)
    ax.annotate("any cue", wildcard, xytext=(0, 14), textcoords="offset points", ha="center", fontsize=8)
    lines = []
    arrows: list[tuple[int, tuple[float, float], tuple[float, float], tuple[float, float]]] = []
    for number, rule in enumerate(rules, start=1):
        bridge = rule.bridge.kind.value
        if bridge == "segment":
            bridge = f"segment {rule.bridge.segment}"
        elif bridge == "generated":
            bridge = f"{rule.bridge.bars} generated bar{'s' if rule.bridge.bars != 1 else ''}"
        else:
            bridge = "no bridge"
        lines.append(f"{number}. {rule.from_cue} → {rule.to_cue}: {rule.exit.value}, fade {rule.fade_beats:g} beats, "
                     f"{bridge}")
        start = positions.get(rule.from_cue, wildcard)
        end = positions.get(rule.to_cue, wildcard)
        if start == end:  # (*, *), or a cue to itself: a loop arrow out of the node and back into it
            x, y = start
            loop_start, loop_end = (x + 0.11, y + 0.1), (x + 0.11, y - 0.1)
            ax.add_patch(FancyArrowPatch(loop_start, loop_end, arrowstyle="-|>", mutation_scale=12, lw=1.3,
                                         connectionstyle=f"arc3,rad={LOOP_RAD}", shrinkA=0, shrinkB=0,
                                         color="#444444", zorder=2))
            control = (x + 0.11 + LOOP_RAD * -0.2, y)  # arc3: rad times (dy, -dx) from the chord's middle
            ax.text(*_bezier(loop_start, control, loop_end, 0.5), str(number), fontsize=8, ha="center",
                    va="center", zorder=5, bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec="black"))
            continue
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.3,
                                     connectionstyle=f"arc3,rad={ARROW_RAD}", shrinkA=14, shrinkB=14,
                                     color="#444444", zorder=2))
        dx, dy = end[0] - start[0], end[1] - start[1]
        control = ((start[0] + end[0]) / 2 + ARROW_RAD * dy, (start[1] + end[1]) / 2 - ARROW_RAD * dx)
        arrows.append((number, start, control, end))
    # Labels sit on their arrow's curve, at the first place (middle first) clear
    # of every arrowhead and every node, so none hides an arrowhead.
    heads = [_toward(end, control, ARROWHEAD_CENTER_UNITS) for _, _, control, end in arrows]
    nodes = list(positions.values()) + [wildcard]
    for number, start, control, end in arrows:
        candidates = [_bezier(start, control, end, t) for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.25)]
        clear = [p for p in candidates
                 if all(math.dist(p, head) > LABEL_CLEARANCE_UNITS for head in heads)
                 and all(math.dist(p, node) > NODE_CLEARANCE_UNITS for node in nodes)]
        ax.text(*(clear or candidates)[0], str(number), fontsize=8, ha="center", va="center", zorder=5,
                bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec="black"))
    ax.set_xlim(-1.6, 1.2)
    ax.set_ylim(-1.1, 1.5)
    ax.set_aspect("equal")
    ax.set_title("transitions (cues at their bank points)")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    return lines


def _save(figure, output: Path | str) -> None:
    plt = _pyplot()
    try:
        figure.savefig(str(output), dpi=100, bbox_inches="tight", pil_kwargs={"optimize": True})
    except OSError as error:
        raise ConfigError(f"{output}: cannot write the plot ({error.strerror or error})") from None
    finally:
        plt.close(figure)


# ---------------------------------------------------------------------------- session


def load_events(path: Path | str, soundfont: Path | str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Events as dicts (``frame``, ``type`` and the event's fields) and the
    sample rate, from a render's events JSON or a session recording (replayed
    offline to get its events).

    Raises:
        ConfigError: the file is neither, or is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    first = text.lstrip()[:200]
    if '"adaptive-recording"' in first.splitlines()[0] if first else False:
        from adaptive.recording import load_recording, replay

        header, _, _ = load_recording(path)
        events: list = []
        replay(path, soundfont=soundfont, events=events)
        return ([{"frame": e.frame, "type": e.kind, **e.data} for e in events], header.sample_rate_hz)
    try:
        data = json.loads(text)
        rows, rate = data["events"], int(data["sample_rate_hz"])
        if not isinstance(rows, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not an events file ({{\"sample_rate_hz\": .., \"events\": [..]}}, from "
                          "'adaptive render --events') or a session recording ('adaptive serve --record')") from None
    return rows, rate


def plot_session(events: list[dict[str, Any]], sample_rate_hz: int, output: Path | str,
                 title: str | None = None, cue_order: list[str] | None = None) -> None:
    """Draw a session's events to a PNG at ``output``: emotion, intensity,
    the playing cue with transitions, stingers and mapping changes, and layer
    gains, over time (seconds). ``cue_order`` (the bank's cues and segments)
    gives each cue the colour it has in :func:`plot_mapping`.

    Raises:
        ConfigError: the file cannot be written.
    """
    plt = _pyplot()

    def seconds(event: dict[str, Any]) -> float:
        return event["frame"] / sample_rate_hz

    events = sorted(events, key=lambda e: e["frame"])
    end = max((seconds(e) for e in events), default=1.0)
    end = max(end, 1e-3)
    cues = [e["cue"] for e in events if e["type"] == "cue_change"]
    names = list(dict.fromkeys(c for c in (cue_order or []) + cues if not c.startswith("bridge:")))
    colors = _cue_colors(names)
    figure, (ax_emotion, ax_intensity, ax_cue, ax_gain) = plt.subplots(
        4, 1, figsize=(13, 10), sharex=True, gridspec_kw={"height_ratios": [1.2, 1.0, 0.9, 1.8]})

    scene = [e for e in events if e["type"] == "scene"]
    follow = [e for e in events if e["type"] == "follow"]
    for key, color in (("valence", "tab:blue"), ("arousal", "tab:red")):
        _steps(ax_emotion, scene, key, end, seconds, color, f"{key} asked", ls="--", lw=1.0, alpha=0.6)
        _followed(ax_emotion, follow, key, end, seconds, color, f"{key} followed")
    ax_emotion.set_ylim(-1.1, 1.1)
    ax_emotion.set_ylabel("emotion (-1..1)")
    ax_emotion.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _steps(ax_intensity, scene, "intensity", end, seconds, "tab:green", "intensity asked", ls="--", lw=1.0, alpha=0.6)
    _followed(ax_intensity, follow, "intensity", end, seconds, "tab:green", "intensity followed")
    ax_intensity.set_ylim(-0.05, 1.05)
    ax_intensity.set_ylabel("intensity (0..1)")
    ax_intensity.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    changes = [e for e in events if e["type"] == "cue_change"]
    _draw_cues(ax_cue, events, changes, end, seconds, colors)
    for change in (e for e in events if e["type"] == "mapping"):  # on every axis
        for ax in (ax_emotion, ax_intensity, ax_cue, ax_gain):
            ax.axvline(seconds(change), color="black", ls=":", lw=1.5)
        ax_cue.text(seconds(change), 0.92, " mapping changed", fontsize=7.5, color="black", va="top")
    _draw_gains(ax_gain, events, changes, end, seconds, colors, sample_rate_hz)
    ax_gain.set_xlabel("time (seconds)")
    ax_gain.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False, ncol=1)
    ax_gain.set_xlim(0, end)
    for ax in (ax_emotion, ax_intensity, ax_gain):
        ax.grid(True, alpha=0.3)
    figure.suptitle(title or "session", fontsize=13)
    figure.tight_layout()
    _save(figure, output)


def _draw_cues(ax_cue, events: list[dict[str, Any]], changes: list[dict[str, Any]], end: float, seconds,
               colors: dict[str, Any]) -> None:
    """The playing cue as a bar per cue, transitions above it, stingers below."""
    plt = _pyplot()
    # The playing cue: a bar per cue from its downbeat to the next cue's.
    for index, change in enumerate(changes):
        start = seconds(change)
        stop = seconds(changes[index + 1]) if index + 1 < len(changes) else end
        name = change["cue"]
        color = colors.get(name, "lightgrey")
        ax_cue.broken_barh([(start, max(stop - start, 1e-3))], (0.3, 0.4), facecolors=color,
                           edgecolor="black", lw=0.5)
        if stop - start > end * 0.011 * len(name):
            ax_cue.text(start + (stop - start) / 2, 0.5, name.replace("bridge:", "bridge "), ha="center",
                        va="center", fontsize=8, clip_on=True)
    for start_event in (e for e in events if e["type"] == "transition_start"):
        finish = next((seconds(e) for e in events if e["type"] == "transition_end" and e["frame"] >= start_event["frame"]
                       and e["cue"] == start_event["cue"] and e["to"] == start_event["to"]), seconds(start_event))
        ax_cue.axvspan(seconds(start_event), max(finish, seconds(start_event) + end * 0.002), ymin=0.72, ymax=0.85,
                       color="black", alpha=0.6)
    stingers = [e for e in events if e["type"] == "stinger"]
    for n, stinger in enumerate(stingers):
        ax_cue.axvline(seconds(stinger), ymin=0.0, ymax=0.28, color="tab:pink", lw=1.5)
        ax_cue.text(seconds(stinger), 0.02 + 0.1 * (n % 2), " " + stinger["name"], fontsize=7.5, color="tab:pink",
                    va="bottom")
    ax_cue.set_ylim(0, 1)
    ax_cue.set_yticks([])
    ax_cue.set_ylabel("cue")
    from matplotlib.patches import Patch

    # Every block's colour in the legend (a bridge or a short segment is too narrow for its name).
    in_lane: dict[str, Any] = {}
    for change in changes:
        name = change["cue"]
        label = "generated bridge" if name.startswith("bridge:") else name
        in_lane.setdefault(label, colors.get(name, "lightgrey"))
    handles = [Patch(facecolor=color, edgecolor="black", lw=0.5, label=label) for label, color in in_lane.items()]
    handles += [Patch(color="black", alpha=0.6, label="transition (start → end)"),
                plt.Line2D([], [], color="tab:pink", label="stinger"),
                plt.Line2D([], [], color="black", ls=":", label="mapping change")]
    ax_cue.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.05), fontsize=7.5, frameon=False,
                  ncol=2 if len(handles) > 6 else 1, columnspacing=0.8, handlelength=1.4, labelspacing=0.3)


def _draw_gains(ax_gain, events: list[dict[str, Any]], changes: list[dict[str, Any]], end: float, seconds,
                colors: dict[str, Any], sample_rate_hz: int) -> None:
    # Layer gains: each layer's equal-power ramps (adaptive.gain.GainRamp, as the
    # session renders them) toward the targets of the gains events, drawn
    # only while the layer's cue plays (from its downbeat to the next cue's).
    from adaptive.gain import GainRamp, amplitude_to_db, db_to_amplitude

    floor_db = -40.0
    playing: dict[str, list[tuple[float, float]]] = {}
    for index, change in enumerate(changes):
        stop = seconds(changes[index + 1]) if index + 1 < len(changes) else end
        playing.setdefault(change["cue"], []).append((seconds(change), stop))
    targets: dict[str, list[tuple[int, float, int]]] = {}
    for event in (e for e in events if e["type"] == "gains"):
        for layer, (gain_db, fade_frames) in event["layers"].items():
            amplitude = 0.0 if gain_db is None else db_to_amplitude(gain_db)
            targets.setdefault(f"{event['cue']}/{layer}", []).append((event["frame"], amplitude, fade_frames))
    sample_frames = np.linspace(0, end * sample_rate_hz, 2000).astype(np.int64)
    for key, changes_of_layer in sorted(targets.items()):
        cue = key.split("/")[0]
        if cue not in playing:
            continue
        ramp = GainRamp(changes_of_layer[0][1])
        values = np.empty(len(sample_frames))
        position = 0
        for index, frame in enumerate(sample_frames):
            while position < len(changes_of_layer) and changes_of_layer[position][0] <= frame:
                at, amplitude, fade = changes_of_layer[position]
                ramp.ramp_to(amplitude, at, fade)
                position += 1
            values[index] = max(floor_db, amplitude_to_db(ramp.value_at(int(frame))))
        times = sample_frames / sample_rate_hz
        active = np.zeros(len(times), bool)
        for first, last in playing[cue]:
            active |= (times >= first) & (times <= last)
        values[~active] = np.nan
        if np.all(np.isnan(values)) or np.nanmax(values) <= floor_db:
            continue
        layer_number = sum(1 for other in targets if other.split("/")[0] == cue and other < key)
        ax_gain.plot(times, values, ls=("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))[layer_number % 5],
                     color=colors.get(cue, "grey"), lw=1.6, label=key)
    ax_gain.set_ylim(floor_db - 2, 14)
    ax_gain.set_ylabel(f"layer gain (dB; {floor_db:g} = silent)")


def _steps(ax, scene: list[dict[str, Any]], key: str, end: float, seconds, color, label: str, **style) -> None:
    points = [(seconds(e), e[key]) for e in scene if e.get(key) is not None]
    if not points:
        return
    xs = [t for t, _ in points] + [end]
    ys = [v for _, v in points] + [points[-1][1]]
    ax.step(xs, ys, where="post", color=color, label=label, **style)


def _followed(ax, rows: list[dict[str, Any]], key: str, end: float, seconds, color, label: str) -> None:
    """The smoothed value: each ``follow`` event holds until the next (they
    come every 50 ms of session time while a slew moves, so a slew is drawn
    as fine steps; a jump stays a jump)."""
    points = [(seconds(row), row[key]) for row in rows if row["type"] == "follow"]
    if not points:
        return
    points.append((end, points[-1][1]))
    xs, ys = zip(*points)
    ax.step(xs, ys, where="post", color=color, lw=1.8, label=label)
