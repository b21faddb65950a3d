"""User-facing errors: one clear message naming the file, the entry, what is
wrong and what is allowed. The CLI prints them without a traceback."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError


class AdaptiveError(Exception):
    """A mistake in something the user gave us (a file, a value, a name).

    ``str(error)`` is the complete message, ready to show.
    """


class ConfigError(AdaptiveError):
    """An invalid configuration or input file (cue bank, timeline, mapping)."""


class AssetError(AdaptiveError):
    """A missing or unreadable asset: SoundFont, MIDI file, audio stem."""


def _location(loc: tuple[object, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items() if not info.exclude and name != "folder"]


def _members(annotation: object) -> list[object]:
    """The types a field annotation can hold, with Annotated/Optional/Union unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _step(annotation: object, part: object) -> object | None:
    """The annotation reached from ``annotation`` by one location part."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if isinstance(part, int) and origin in (list, tuple):
            return typing.get_args(member)[0]
        if isinstance(part, str) and origin is dict:
            return typing.get_args(member)[1]
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
    # A tagged union names the chosen member by its tag ("midi", "stem", ...).
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel) and "kind" in member.model_fields:
            kind = member.model_fields["kind"].annotation
            if part in typing.get_args(kind):
                return member
    return None


def _model_at(root: type[BaseModel], loc: tuple[object, ...]) -> type[BaseModel] | None:
    annotation: object = root
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def _clean_loc(loc: tuple[object, ...]) -> tuple[object, ...]:
    # Tagged unions (the tag follows ``source``) and validators add parts to
    # the location that do not help a reader.
    return tuple(p for i, p in enumerate(loc)
                 if not (isinstance(p, str) and ("[" in p or (p in ("midi", "stem", "generated", "theme")
                                                             and i > 0 and loc[i - 1] == "source"))))


def describe_validation_error(
    error: ValidationError,
    path: Path | str,
    what: str,
    root: type[BaseModel] | None = None,
    extra_problems: list[str] | None = None,
    prefix: tuple[object, ...] = (),
) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` listing
    every problem as ``entry: message``, under a ``path: invalid <what>`` header.

    Args:
        error: the pydantic error.
        path: the file the data came from.
        what: what the file is ("cue bank", "timeline"), for the header line.
        root: the model that was validated; lets an unknown field be answered
            with the allowed field names and the closest one.
        extra_problems: more ``entry: message`` lines found by other checks.
        prefix: location parts to put before every entry (e.g. ``("events", 3)``).
    """
    return ConfigError(format_problems(path, what, problem_lines(error, root, prefix) + (extra_problems or [])))


def problem_lines(error: ValidationError, root: type[BaseModel] | None = None,
                  prefix: tuple[object, ...] = (), skip_top_level: bool = False) -> list[str]:
    """``entry: message`` lines for every problem of a pydantic error (see
    :func:`describe_validation_error`); ``skip_top_level`` leaves out errors of
    whole-model validators (when the caller reports those itself)."""
    lines = []
    for item in error.errors(include_url=False):
        if skip_top_level and not item["loc"]:
            continue
        message = item["msg"].removeprefix("Value error, ")
        raw_loc = tuple(item["loc"])
        loc = _clean_loc(raw_loc)
        if item["type"] == "extra_forbidden" and root is not None:
            model = _model_at(root, raw_loc[:-1])
            if model is not None:
                allowed = _field_names(model)
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                message = f"unknown field (allowed: {', '.join(allowed)}){hint}"
        value = item.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None or item["type"] == "extra_forbidden" \
            else f" (got {value!r})"
        lines.append(f"{_location(prefix + loc)}: {message}{shown}")
    return lines


def format_problems(path: Path | str, what: str, lines: list[str]) -> str:
    """The header line and one indented line per problem."""
    count = len(lines)
    return "\n".join([f"{path}: invalid {what} ({count} problem{'s' if count != 1 else ''}):"]
                     + [f"  {line}" for line in lines])
