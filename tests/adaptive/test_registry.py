"""The generator registry: the engine's own generator, and what the root adds."""

from __future__ import annotations

import pytest

from adaptive.errors import ConfigError
from adaptive.generator import RuleBasedGenerator
from adaptive.registry import GENERATORS, default_generator, make_generator, register_generator


def test_the_engine_knows_its_rule_based_generator_and_the_root_adds_the_model():
    assert isinstance(make_generator("rule_based"), RuleBasedGenerator)
    assert list(GENERATORS)[:2] == ["rule_based", "model"]  # registered by app.generators (tests/conftest.py)
    assert default_generator() == "model"


def test_an_unknown_generator_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown generator 'oracle' \(allowed: rule_based, model"):
        make_generator("oracle")


def test_a_registered_generator_is_made_anew_each_time(monkeypatch):
    monkeypatch.setitem(GENERATORS, "twin", RuleBasedGenerator)
    assert make_generator("twin") is not make_generator("twin")
    register_generator("model", GENERATORS["model"], default=True)  # idempotent
    assert default_generator() == "model"
