"""Transition rules: which rule applies to a move from one cue to another.

Rules are looked up by specificity, like Wwise's transition matrix and Godot's
AudioStreamInteractive table: an exact (from, to) rule beats (from, "*"),
which beats ("*", to), which beats ("*", "*"). Among rules equally specific,
the last one written wins (a later line overrides an earlier one).
"""

from __future__ import annotations

from collections.abc import Sequence

from adaptive.cue import WILDCARD, CueBank, TransitionRule

DEFAULT_RULE = TransitionRule()
"""The rule used when a bank has none that matches: next bar, a one-beat crossfade."""


def _specificity(rule: TransitionRule, from_cue: str, to_cue: str) -> int | None:
    from_match = 2 if rule.from_cue == from_cue else (0 if rule.from_cue == WILDCARD else None)
    to_match = 1 if rule.to_cue == to_cue else (0 if rule.to_cue == WILDCARD else None)
    if from_match is None or to_match is None:
        return None
    return from_match + to_match


def find_rule(bank: CueBank, from_cue: str, to_cue: str) -> TransitionRule:
    """The most specific rule of ``bank`` for ``from_cue`` → ``to_cue``
    (:data:`DEFAULT_RULE` when none matches)."""
    return find_rule_in(bank.transitions, from_cue, to_cue)


def find_rule_in(rules: Sequence[TransitionRule], from_cue: str, to_cue: str) -> TransitionRule:
    """The most specific of ``rules`` for ``from_cue`` → ``to_cue``, later
    rules winning among equals (:data:`DEFAULT_RULE` when none matches)."""
    best: tuple[int, int] | None = None
    chosen = DEFAULT_RULE
    for index, rule in enumerate(rules):
        score = _specificity(rule, from_cue, to_cue)
        if score is not None and (best is None or (score, index) > best):
            best, chosen = (score, index), rule
    return chosen
