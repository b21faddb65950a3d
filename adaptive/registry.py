"""The part generators a session can play, by name: a registry the
composition root fills (``app.generators``), so the engine names no plugin.

The engine registers only its own :class:`~adaptive.generator.RuleBasedGenerator`
(``"rule_based"``, also the fallback of a late bar); ``app`` adds the model
generator of ``models/`` and makes it the default. A cue bank's
``source.generator``, a recording's header and ``--generator`` name an entry.
"""

from __future__ import annotations

from typing import Callable

from adaptive.errors import ConfigError
from adaptive.generator import PartGenerator, RuleBasedGenerator

GENERATORS: dict[str, Callable[[], PartGenerator]] = {"rule_based": RuleBasedGenerator}
"""Part generator factories by name. Each call makes a new instance (a part
owns its instance: a model generator keeps a KV cache per instance)."""

_DEFAULT = ["rule_based"]  # the default generator's name (a list: set by register_generator)


def register_generator(name: str, factory: Callable[[], PartGenerator], *, default: bool = False) -> None:
    """Make ``factory`` the generator called ``name``; with ``default``, also
    the one a session plays when not told which (:func:`default_generator`)."""
    GENERATORS[name] = factory
    if default:
        _DEFAULT[0] = name


def default_generator() -> str:
    """The generator of generated layers without their own
    ``source.generator``, of generated bridges and of generated stingers when
    a session is not told otherwise."""
    return _DEFAULT[0]


def make_generator(name: str) -> PartGenerator:
    """A new instance of the generator registered as ``name``.

    Raises:
        ConfigError: unknown name, or the generator cannot be loaded.
    """
    factory = GENERATORS.get(name)
    if factory is None:
        raise ConfigError(f"unknown generator {name!r} (allowed: {', '.join(GENERATORS)})")
    return factory()
