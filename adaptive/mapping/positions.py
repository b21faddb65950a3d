"""Source positions: the line of every key of a mapping's TOML text, so a
problem can be reported where the sound designer wrote it (tomllib gives no
positions)."""

from __future__ import annotations

import json
import re


_KEY_PART = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_\-]+)\s*')


def _split_key(text: str) -> list[str] | None:
    """The parts of a dotted TOML key (``a."b.c".d``), or None if it is not one."""
    parts, position = [], 0
    while True:
        match = _KEY_PART.match(text, position)
        if match is None:
            return None
        token = match.group(1)
        parts.append(token[1:-1] if token[0] in "\"'" else token)
        position = match.end()
        if position == len(text):
            return parts
        if text[position] != ".":
            return None
        position += 1


def _scan(text: str) -> tuple[str, int]:
    """``text`` with strings blanked and the comment cut, and its bracket depth change."""
    out, depth, quote, index = [], 0, "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                quote = ""
            out.append(" " if char != quote else char)
        elif char in "\"'":
            quote = char
            out.append(char)
        elif char == "#":
            break
        else:
            depth += (char in "[{") - (char in "]}")
            out.append(char)
        index += 1
    return "".join(out), depth


def key_lines(text: str) -> dict[tuple, int]:
    """The 1-based line of every table header and key of a TOML document, by
    key path (array-of-tables entries by index: ``("transitions", 2, "exit")``).

    Neither :mod:`tomllib` nor tomlkit reports positions, so this reads the
    document's lines itself; it only has to find keys in a document that
    tomllib has already parsed. Keys inside inline tables and multi-line
    values are found at the line of the key that holds them.
    """
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()
    depth = 0
    multiline = ""

    def resolve_path(parts: list[str]) -> tuple:
        out: tuple = ()
        for part in parts:
            out += (part,)
            if out in counts:
                out += (counts[out] - 1,)
        return out

    for number, raw in enumerate(text.splitlines(), start=1):
        if multiline:
            if multiline in raw:
                multiline = ""
            continue
        if depth > 0:
            depth += _scan(raw)[1]
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parts = _split_key(line[2 : line.find("]]")])
            if parts:
                base = resolve_path(parts[:-1]) + (parts[-1],)
                counts[base] = counts.get(base, 0) + 1
                current = base + (counts[base] - 1,)
                lines.setdefault(base, number)
                lines.setdefault(current, number)
            continue
        if line.startswith("["):
            parts = _split_key(line[1 : line.find("]")])
            if parts:
                current = resolve_path(parts)
                lines.setdefault(current, number)
            continue
        cleaned, _ = _scan(line)
        if "=" not in cleaned:
            continue
        key_text = line[: cleaned.index("=")]
        parts = _split_key(key_text.rstrip())
        if not parts:
            continue
        lines.setdefault(current + tuple(parts), number)
        value = line[cleaned.index("=") + 1 :].strip()
        for quotes in ('"""', "'''"):
            if value.startswith(quotes) and value.count(quotes) == 1:
                multiline = quotes
        if not multiline:
            depth = _scan(value)[1]
    return lines


def line_of(lines: dict[tuple, int], key: tuple) -> int:
    """The line of ``key``, or of its nearest enclosing key (0: unknown)."""
    key = tuple(key)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return 0


def dotted(key: tuple) -> str:
    """A key path as text: ``locations.forest.cues.explore`` / ``transitions[2].exit``."""
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part)
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                name = json.dumps(name)
            text += ("." if text else "") + name
    return text or "(top level)"


