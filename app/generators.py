"""The part generators the composition root hands to the engine: the model
generator of ``models/`` registered in :mod:`adaptive.registry`, as the default."""

from __future__ import annotations

import sys

from adaptive.errors import ConfigError
from adaptive.generator import PartGenerator
from adaptive.registry import register_generator

DEFAULT_GENERATOR = "model"
"""The generator of generated layers (without their own ``source.generator``),
generated bridges and generated stingers when a session is not told otherwise:
the trained model (``models/``); ``"rule_based"`` is the simpler part played
when the model misses a deadline, and can be chosen with ``--generator``."""


def load_model_generator() -> PartGenerator:
    """The model part generator (``models.generate.ModelPartGenerator``, a
    PyTorch Transformer) with its committed checkpoint, inferring on one
    thread. Imported only when asked for, so the engine imports without
    PyTorch.

    Raises:
        ConfigError: ``models.generate`` (or PyTorch) cannot be imported, or the
            checkpoint cannot be loaded; the message names what is missing.
    """

    def unavailable(error: ImportError) -> ConfigError:
        missing = getattr(error, "name", None) or str(error)
        return ConfigError(
            f"generator 'model' is not available: models.generate.ModelPartGenerator cannot be imported "
            f"({missing} is missing: {error}); install the project with its dependencies ('./run setup') "
            f"or choose --generator rule_based"
        )

    try:
        from models.generate import ModelPartGenerator
    except ImportError as error:
        raise unavailable(error) from None
    try:
        return ModelPartGenerator(checkpoint=None, threads=1)
    except ImportError as error:  # a dependency imported when the model loads
        raise unavailable(error) from None
    except Exception as error:  # a missing or corrupt checkpoint, a torch failure
        raise ConfigError(
            f"generator 'model': cannot load its checkpoint ({type(error).__name__}: {error}); "
            f"choose --generator rule_based to play without the model"
        ) from None


def register_generators() -> None:
    """Register the model generator as the default (idempotent)."""
    register_generator(DEFAULT_GENERATOR, load_model_generator, default=True)



def describe_generator(name: str) -> str:
    """``name`` as ``adaptive serve`` names it at start: the model generator
    with its checkpoint file (``model (…/models/generator.pt)``), any other by its name."""
    if name != DEFAULT_GENERATOR:
        return name
    try:
        from models.checkpoint import DEFAULT_CHECKPOINT
    except ImportError:
        return name
    return f"{name} ({DEFAULT_CHECKPOINT})"


class ModelBarBatcher:
    """The generation scheduler's batcher (:class:`adaptive.generation.BarBatcher`)
    for the model generator: :class:`models.batching.BarBatcher`, imported
    only once a model generator exists (so a server playing the rule-based
    generator never imports PyTorch). Admits nothing before that."""

    def __init__(self) -> None:
        self._batcher = None

    def _inner(self):
        if self._batcher is None:
            from models.batching import BarBatcher

            self._batcher = BarBatcher()
        return self._batcher

    def admits(self, generator: PartGenerator) -> bool:
        """Whether ``generator`` is a model generator whose bars can be batched."""
        if "models.generate" not in sys.modules:  # no model generator can have been made
            return False
        return self._inner().admits(generator)

    def begin(self, generator, request):
        """See :meth:`models.batching.BarBatcher.begin`."""
        return self._inner().begin(generator, request)

    def step(self, bars) -> None:
        """See :meth:`models.batching.BarBatcher.step`."""
        self._inner().step(bars)

    def drop(self, bar) -> None:
        """See :meth:`models.batching.BarBatcher.drop`."""
        self._inner().drop(bar)

    def release(self, generator) -> None:
        """See :meth:`models.batching.BarBatcher.release`."""
        if self._batcher is not None:
            self._batcher.release(generator)
