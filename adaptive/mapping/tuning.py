"""Live tuning: reading and setting one value of the live mapping by its key
path (``adaptive send mapping_set``), and the mapping change a session plays
from the next bar line."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from adaptive.mapping.lint import did_you_mean
from adaptive.mapping.positions import dotted
from adaptive.mapping.resolution import ResolvedMapping


def split_path(path: str) -> list[str | int]:
    """A mapping key path (``locations.forest.cues.explore.region``,
    ``transitions.2.fade_beats`` or ``transitions[2].fade_beats``; a part with
    dots goes in double quotes) as its parts.

    Raises:
        ValueError: an empty or malformed path.
    """
    parts: list[str | int] = []
    for match in re.finditer(r'"([^"]*)"|\[(\d+)\]|([^.\[\]"]+)|(\.)', path):
        quoted, index, bare, dot = match.groups()
        if dot:
            continue
        if index is not None:
            parts.append(int(index))
        elif quoted is not None:
            parts.append(quoted)
        else:
            parts.append(int(bare) if bare.isdigit() else bare)
    if not parts or "".join(m.group(0) for m in re.finditer(r'"[^"]*"|\[\d+\]|[^.\[\]"]+|\.', path)) != path:
        raise ValueError(f"mapping path {path!r} is not allowed (allowed: keys separated by dots, e.g. "
                         "smoothing.hysteresis or locations.forest.cues.explore.region)")
    return parts


def parse_value(text: str) -> Any:
    """A value given as text: JSON (``0.3``, ``[[0, -60], [1, 0]]``,
    ``{"valence": [0, 1], "arousal": [-1, 0]}``), else a TOML value
    (``-inf``, ``{ valence = [0, 1], arousal = [-1, 0] }``), else the text
    itself as a string (``next_bar``). In JSON, the strings ``"inf"`` and
    ``"-inf"`` stand for the infinities (strict JSON has none; the server's
    ``mapping_value`` writes them so)."""
    try:
        return _infinities(json.loads(text))
    except ValueError:
        pass
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _infinities(value: Any) -> Any:
    """``value`` (parsed JSON) with the strings ``"inf"``, ``"+inf"`` and ``"-inf"`` as floats."""
    if isinstance(value, str) and value in ("inf", "+inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {key: _infinities(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_infinities(item) for item in value]
    return value


def get_value(resolved: ResolvedMapping, path: str) -> Any:
    """The value at ``path`` in the live mapping: as written in it, else the
    default the mapping format gives, or the bank's transition table (enums
    as their names).

    Raises:
        KeyError: no such key, with the keys there are.
        ValueError: a malformed path.
    """
    parts = split_path(path)
    written = resolved.data()
    effective = _plain(resolved.mapping.model_dump(by_alias=True, exclude_none=True))
    effective.setdefault("transitions", [_plain(rule.model_dump(by_alias=True, exclude_none=True))
                                         for rule in resolved.transition_rules()])
    for source in (written, effective):
        node: Any = source
        for part in parts:
            node = _child(node, part)
            if node is _MISSING:
                break
        else:
            return node
    node = written
    for index, part in enumerate(parts):
        nxt = _child(node, part)
        if nxt is _MISSING:
            keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            raise KeyError(f"no key {dotted(tuple(parts[: index + 1]))!r} in the mapping "
                           f"(keys here: {', '.join(str(k) for k in keys) or 'none'}){did_you_mean(str(part), [str(k) for k in keys])}")
        node = nxt
    raise AssertionError("unreachable")


def _plain(value: Any) -> Any:
    import enum

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


_MISSING = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def set_value_text(text: str, path: str, value: Any) -> str:
    """The mapping TOML ``text`` with the value at ``path`` replaced (tables
    on the way created as needed), comments and layout kept (tomlkit).

    Raises:
        ValueError: a malformed path, or a path through something that is not a table or list.
    """
    import tomlkit

    return set_value_document(tomlkit.parse(text), path, value)


def set_value_document(document: Any, path: str, value: Any) -> str:
    """As :func:`set_value_text`, on a parsed ``tomlkit`` document, which is
    changed in place (tables on the way may be created even when it raises:
    parse the text again then). Returns the new text. Parsing is most of the
    cost of a set (tomlkit is pure Python: ~60 ms for the default mapping), so
    the live mapping keeps its document between sets; the text is the same as
    :func:`set_value_text` gives on the text (tomlkit round-trips exactly),
    which replay relies on and checks (the recording's digests).

    Raises:
        ValueError: as :func:`set_value_text`.
    """
    import tomlkit

    parts = split_path(path)
    node: Any = document
    for index, part in enumerate(parts[:-1]):
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise ValueError(f"{dotted(tuple(parts[: index + 1]))}: no such entry (allowed: an index below "
                                 f"{len(node) if isinstance(node, list) else 0})")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"{dotted(tuple(parts[:index]))} is not a table, so it has no key {part!r}")
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise ValueError(f"{dotted(tuple(parts))}: no such entry")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise ValueError(f"{dotted(tuple(parts[:-1]))} is not a table, so it has no key {last!r}")
        node[last] = value
    return tomlkit.dumps(document)


@dataclass(frozen=True)
class MappingChange:
    """An input: play by another mapping from the next bar line on.

    ``text`` is the new mapping's TOML; ``resolved`` is it checked against
    the session's bank (filled in by the session when only the text is given,
    as on replay). A change made by setting one value (live tuning) also
    carries ``path`` (the key path) and ``value`` (the value as the client
    sent it, text for :func:`parse_value`): a recording then stores only
    those, and replay rebuilds ``text`` with :func:`set_value_text` from the
    mapping before it. A whole new file (hot reload) has both None and is
    stored whole."""

    text: str
    resolved: ResolvedMapping | None = None
    source: str = "<live>"
    path: str | None = None
    value: str | None = None
