"""User-facing errors: one clear message naming the file, the entry, what is
wrong and what is allowed. The CLI prints them without a traceback."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


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


def describe_validation_error(error: ValidationError, path: Path | str, what: str) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` listing
    every problem as ``path: entry: message``.

    Args:
        error: the pydantic error.
        path: the file the data came from.
        what: what the file is ("cue bank", "timeline"), for the header line.
    """
    lines = [f"{path}: invalid {what} ({error.error_count()} problem{'s' if error.error_count() != 1 else ''}):"]
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        # Tagged unions add the tag to the location; it does not help a reader.
        loc = tuple(p for p in item["loc"] if p not in ("midi", "stem", "generated", "function-after[_check_curve(), list[tuple[float, float]]]"))
        value = item.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
        lines.append(f"  {_location(loc)}: {message}{shown}")
    return ConfigError("\n".join(lines))
