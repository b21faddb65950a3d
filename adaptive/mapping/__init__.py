"""The sound designer's mapping: how scene state uses the cue bank.

The cue bank is the music material (cues, their layers' sources, segments,
stinger phrases). The mapping is a TOML file (``docs/mapping.md``) that decides
how the game's scene state plays it:

* **emotions** — named emotions → valence/arousal points (the built-in ones
  of :mod:`adaptive.emotion`, which the file may move or add to);
* **locations** — per location, which cues may play and which part of the
  valence/arousal plane each covers (its point: nearest cue wins; or an
  explicit rectangle ``region``), and a ``default_location`` for the rest;
* **cues** — per cue, per layer: the intensity → gain curve (dB or linear)
  and fade length in beats; a tempo range the cue's tempo follows arousal in;
* **conditioning** — emotion → generator conditioning (mode, density,
  velocity, register);
* **transitions** — the transition table keyed by (from cue, to cue) with a
  ``"*"`` wildcard (replaces the bank's table when given);
* **stingers** — the names the game triggers, each playing a bank stinger
  (``source``) with its own quantization and gain;
* **smoothing** — slew rates, hysteresis and a minimum time in a cue.

Anything the mapping leaves out falls back to what the bank says, so a bank
without a mapping plays as it always did (:meth:`ResolvedMapping.from_bank`).

The package, one module per job:

* :mod:`~adaptive.mapping.schema` — the file's schema (frozen pydantic models);
* :mod:`~adaptive.mapping.resolution` — :class:`ResolvedMapping`, the mapping
  with the bank's values filled in, and the questions a session asks it;
* :mod:`~adaptive.mapping.lint` — :func:`check_mapping` reports every problem
  at once with its line, and warnings for legal but likely wrong things;
  :func:`load_mapping` raises them;
* :mod:`~adaptive.mapping.positions` — the line of every key of the TOML text;
* :mod:`~adaptive.mapping.tuning` — live tuning of one value, and
  :class:`MappingChange`: a :class:`ResolvedMapping` is frozen, a new one
  replaces it as a whole, at a bar line.
"""

from adaptive.mapping.lint import (MAX_MAPPING_BYTES, CheckResult, Problem, check_mapping, check_text, format_report,
                                   load_mapping, mapping_bank_path, parse_mapping_text, read_mapping_text)
from adaptive.mapping.positions import dotted, key_lines, line_of
from adaptive.mapping.resolution import CueArea, ResolvedMapping, resolve
from adaptive.mapping.schema import DEFAULT_MAPPING, MAX_LINEAR_GAIN, PLANE_GRID_POINTS, Mapping
from adaptive.mapping.tuning import (MappingChange, get_value, parse_value, set_value_document, set_value_text,
                                    split_path)

__all__ = ["DEFAULT_MAPPING", "MAX_LINEAR_GAIN", "MAX_MAPPING_BYTES", "PLANE_GRID_POINTS", "CheckResult", "CueArea", "Mapping",
           "MappingChange", "Problem", "ResolvedMapping", "check_mapping", "check_text", "dotted", "format_report",
           "get_value", "key_lines", "line_of", "load_mapping", "mapping_bank_path", "parse_mapping_text",
           "parse_value", "read_mapping_text", "resolve", "set_value_document", "set_value_text", "split_path"]
