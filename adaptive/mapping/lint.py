"""Checking a mapping: every error at once with its line (TOML syntax, fields,
names the bank does not have) and warnings for legal but likely wrong
things; reading, checking and resolving a mapping file."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adaptive.cue import WILDCARD, CueBank, StemSource
from adaptive.emotion import NAMED_EMOTIONS
from adaptive.errors import ConfigError, problem_lines
from adaptive.gain import SILENCE_DB
from adaptive.mapping.positions import dotted, key_lines, line_of
from adaptive.mapping.resolution import ResolvedMapping, resolve
from adaptive.mapping.schema import PLANE_GRID_POINTS, Mapping
def did_you_mean(name: str, allowed: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``allowed`` to ``name``, or nothing."""
    close = difflib.get_close_matches(name, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(kind: str, name: object, allowed: list[str], extra: str = "") -> str:
    shown = ", ".join(allowed) or "none defined"
    return f"unknown {kind} {name!r} (allowed: {extra}{shown}){did_you_mean(str(name), allowed)}"


def reference_problems(data: dict[str, Any], bank: CueBank) -> list[tuple[tuple, str]]:
    """Names in a (possibly invalid) mapping's raw data that the bank does
    not have: ``[(key path, message)]``. Works on raw data so that these are
    reported together with field errors."""
    problems: list[tuple[tuple, str]] = []
    cue_names = [cue.name for cue in bank.cues]
    segment_names = [segment.name for segment in bank.segments]
    layers = {cue.name: [layer.name for layer in cue.layers] for cue in bank.cues + bank.segments}
    stingers = [stinger.name for stinger in bank.stingers]
    locations = data.get("locations") if isinstance(data.get("locations"), dict) else {}
    default = data.get("default_location")
    if isinstance(default, str) and default not in locations:
        problems.append((("default_location",), _unknown("location", default, sorted(locations))))
    for location, table in locations.items():
        cues = table.get("cues") if isinstance(table, dict) else None
        names = cues if isinstance(cues, list) else list(cues) if isinstance(cues, dict) else []
        for name in names:
            if isinstance(name, str) and name not in cue_names:
                problems.append((("locations", location, "cues", name), _unknown("cue", name, cue_names)))
    cue_table = data.get("cues") if isinstance(data.get("cues"), dict) else {}
    for name, spec in cue_table.items():
        if name not in layers:
            problems.append((("cues", name), _unknown("cue or segment", name, cue_names + segment_names)))
            continue
        if not isinstance(spec, dict):
            continue
        for layer in spec.get("layers", {}) if isinstance(spec.get("layers"), dict) else {}:
            if layer not in layers[name]:
                problems.append((("cues", name, "layers", layer),
                                 _unknown("layer", layer, layers[name]).replace(" (allowed", f" of {name!r} (allowed", 1)))
        if spec.get("bpm_range") is not None and name in cue_names:
            cue = bank.playable_cue(name)
            if any(isinstance(layer.source, StemSource) for layer in cue.layers):
                stems = ", ".join(layer.name for layer in cue.layers if isinstance(layer.source, StemSource))
                problems.append((("cues", name, "bpm_range"), f"cue {name!r} plays audio stems ({stems}), which "
                                 "cannot change tempo (allowed: bpm_range only on cues of MIDI and generated layers)"))
    transitions = data.get("transitions")
    for index, rule in enumerate(transitions if isinstance(transitions, list) else []):
        if not isinstance(rule, dict):
            continue
        for end in ("from", "to"):
            name = rule.get(end, WILDCARD)
            if isinstance(name, str) and name != WILDCARD and name not in cue_names:
                problems.append((("transitions", index, end), _unknown("cue", name, cue_names, "'*' or ")))
        bridge = rule.get("bridge")
        if isinstance(bridge, dict) and bridge.get("kind") == "segment":
            segment = bridge.get("segment")
            if isinstance(segment, str) and segment not in segment_names:
                problems.append((("transitions", index, "bridge", "segment"), _unknown("segment", segment, segment_names)))
    start = data.get("start") if isinstance(data.get("start"), dict) else {}
    emotions = sorted(set(NAMED_EMOTIONS) | set(data["emotions"] if isinstance(data.get("emotions"), dict) else {}))
    if isinstance(start.get("emotion"), str) and start["emotion"] not in emotions:
        problems.append((("start", "emotion"), _unknown("emotion", start["emotion"], emotions)))
    stinger_table = data.get("stingers") if isinstance(data.get("stingers"), dict) else {}
    for name, spec in stinger_table.items():
        source = spec.get("source", name) if isinstance(spec, dict) else name
        if isinstance(source, str) and source not in stingers:
            key = ("stingers", name, "source") if isinstance(spec, dict) and "source" in spec else ("stingers", name)
            problems.append((key, _unknown("bank stinger", source, stingers)))
    return problems


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`check_mapping`: ``line`` (1-based, 0 when not
    known), the dotted ``key`` and the ``message`` (what is wrong, what is allowed)."""

    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.message}"


def warnings_for(resolved: ResolvedMapping) -> list[tuple[tuple, str]]:
    """Things that are legal but probably wrong: cues never chosen anywhere on
    the plane at a location, cues no location offers, overlapping regions,
    layers that never sound, transition rules from a cue to itself."""
    found: list[tuple[tuple, str]] = []
    mapping, bank = resolved.mapping, resolved.bank
    axis = [-1.0 + 2.0 * i / (PLANE_GRID_POINTS - 1) for i in range(PLANE_GRID_POINTS)]
    names = list(mapping.locations) or [""]
    for location in names:
        areas = resolved.areas(location)
        won = {resolved.choose_cue(v, a, location, None) for v in axis for a in axis}
        for area in areas:
            if area.cue not in won:
                key = ("locations", location, "cues", area.cue) if mapping.locations else ("cues", area.cue)
                found.append((key, f"cue {area.cue!r} is never chosen: every point of the plane is nearer another "
                                   "cue's point or region (move its point, or give it a region)"))
        regions = [a for a in areas if a.region is not None]
        for i, first in enumerate(regions):
            for second in regions[i + 1:]:
                r1, r2 = first.region, second.region
                assert r1 is not None and r2 is not None
                if (min(r1.valence[1], r2.valence[1]) > max(r1.valence[0], r2.valence[0])
                        and min(r1.arousal[1], r2.arousal[1]) > max(r1.arousal[0], r2.arousal[0])):
                    found.append((("locations", location, "cues", second.cue, "region"),
                                  f"region overlaps the region of {first.cue!r}: inside both, the cue whose region "
                                  "centre is nearer plays"))
    if mapping.locations:
        offered = {cue for table in mapping.locations.values() for cue in table.cues}
        if mapping.default_location is None:
            offered |= {area.cue for area in resolved.areas("\0no location\0")}
        for cue in bank.cues:
            if cue.name not in offered:
                found.append((("cues", cue.name), f"cue {cue.name!r} is offered at no location: it plays only when "
                                                  "forced (add it to a location's cues)"))
    for cue in bank.cues + bank.segments:
        for layer in cue.layers:
            curve, _ = resolved.layer_gain(cue.name, layer.name)
            if all(gain_db <= SILENCE_DB for _, gain_db in curve.breakpoints):
                found.append((("cues", cue.name, "layers", layer.name, "gain_curve"),
                              f"layer {layer.name!r} of {cue.name!r} never sounds: its gain curve is silent at "
                              "every intensity"))
    for index, rule in enumerate(mapping.transitions or []):
        if rule.from_cue == rule.to_cue and rule.from_cue != WILDCARD:
            found.append((("transitions", index), f"a rule from {rule.from_cue!r} to itself is never used (the "
                                                  "playing cue is never asked for again)"))
    return found


@dataclass
class CheckResult:
    """What :func:`check_mapping` found: the resolved mapping (None if there
    are errors), every error and every warning."""

    resolved: ResolvedMapping | None
    errors: list[Problem]
    warnings: list[Problem]


def _validation_locations(error: ValidationError) -> list[tuple[tuple, str]]:
    out = []
    for item, line in zip(error.errors(include_url=False), problem_lines(error, Mapping)):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p in ("function-after",))))
        message = line.split(": ", 1)[1] if ": " in line else line
        if "is not allowed (allowed:" in message and message.endswith(")") and " (got " in message:
            message = message[: message.rindex(" (got ")]  # the value is already in the message
        out.append((loc, message))
    return out


def check_text(text: str, bank: CueBank, source: str = "<text>", *, warnings: bool = True) -> CheckResult:
    """Check a mapping's TOML text against ``bank``: every error (TOML syntax,
    fields, names the bank does not have) and, when there are none and
    ``warnings`` is true, the warnings. Never raises for a bad mapping.

    The warnings cost most of the time (they choose a cue at every point of a
    grid over the plane: about 0.25 s for the default mapping on the
    benchmark machine, against 15 ms for the rest); live tuning leaves them out."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+)", str(error))
        return CheckResult(None, [Problem(int(match.group(1)) if match else 0, "(syntax)",
                                          f"not valid TOML: {error}")], [])
    lines = key_lines(text)
    found: list[tuple[tuple, str]] = []
    mapping = None
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        found.extend(_validation_locations(error))
    found.extend(reference_problems(data, bank))
    errors = [Problem(line_of(lines, key), dotted(key), message) for key, message in found]
    errors.sort(key=lambda p: (p.line == 0, p.line))
    if errors or mapping is None:
        return CheckResult(None, errors, [])
    resolved = resolve(mapping, bank, text=text, source=source)
    if not warnings:
        return CheckResult(resolved, [], [])
    found_warnings = [Problem(line_of(lines, key), dotted(key), message) for key, message in warnings_for(resolved)]
    found_warnings.sort(key=lambda p: (p.line == 0, p.line))
    return CheckResult(resolved, [], found_warnings)


MAX_MAPPING_BYTES = 1 << 20
"""The largest mapping text accepted, in UTF-8 bytes (1 MiB; the default
mapping is 6.5 KB). A file padded to 50 MB took 564 MB of memory to parse and
its garbage collection paused the audio (issue 13); a larger file or a live
change that would grow the mapping past it is refused with this limit named."""


def read_mapping_text(path: Path | str, max_bytes: int = MAX_MAPPING_BYTES) -> str:
    """The text of a mapping file of at most ``max_bytes`` bytes.

    Raises:
        ConfigError: it cannot be read, is larger than ``max_bytes``, or is not UTF-8.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ConfigError(f"{path}: the mapping is larger than {max_bytes} bytes (allowed: at most "
                              f"{max_bytes} bytes, MAX_MAPPING_BYTES)")
        return data.decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the mapping ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a mapping is TOML in UTF-8") from None


def check_mapping(path: Path | str, bank: CueBank) -> CheckResult:
    """:func:`check_text` on a file.

    Raises:
        ConfigError: the file cannot be read.
    """
    return check_text(read_mapping_text(path), bank, str(path))


def format_report(source: str, result: CheckResult) -> str:
    """Errors and warnings as lines ``FILE:LINE: error: KEY: message``."""
    out = []
    for kind, problems in (("error", result.errors), ("warning", result.warnings)):
        for problem in problems:
            where = f"{source}:{problem.line}" if problem.line else source
            out.append(f"{where}: {kind}: {problem.key}: {problem.message}")
    return "\n".join(out)


def parse_mapping_text(text: str, bank: CueBank, source: str = "<text>") -> ResolvedMapping:
    """Check and resolve a mapping's TOML text.

    Raises:
        ConfigError: every error, each with its line, key and what is allowed.
    """
    result = check_text(text, bank, source)
    if result.resolved is None:
        count = len(result.errors)
        header = f"{source}: invalid mapping ({count} problem{'s' if count != 1 else ''}):"
        raise ConfigError("\n".join([header] + [f"  {problem}" for problem in result.errors]))
    return result.resolved


def load_mapping(path: Path | str, bank: CueBank) -> ResolvedMapping:
    """Read, check and resolve a mapping file against ``bank``.

    Raises:
        ConfigError: unreadable, or invalid (every problem with its line).
    """
    return parse_mapping_text(read_mapping_text(path), bank, str(path))


def mapping_bank_path(path: Path | str) -> Path | None:
    """The bank a mapping file names (``bank = "..."``, relative to the
    mapping's folder), or None (unreadable files give None: the load reports them)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    bank = data.get("bank")
    return (path.resolve().parent / bank) if isinstance(bank, str) else None


