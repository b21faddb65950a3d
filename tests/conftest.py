"""The whole suite runs with the generators the composition root registers
(``app.generators``), as the ``adaptive`` command does."""

from app.generators import register_generators

register_generators()

# Hypothesis' 200 ms per-example deadline fails round-trip tests on a loaded
# machine (another process training a model): the deadline measures the
# machine, not the code. Every example still runs.
from hypothesis import settings  # noqa: E402

settings.register_profile("adaptive", deadline=None)
settings.load_profile("adaptive")
