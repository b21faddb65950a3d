"""The realness measures: features of literal melodies, and a classifier that
separates different music and cannot separate music from itself."""

from __future__ import annotations

import numpy as np
import pytest

from models.realness import FEATURE_NAMES, RolePiece, classifier_accuracy, features, statistic_ranges, statistics


def melody(pitches, onsets=None, beats_per_bar=4.0, tonic=0) -> RolePiece:
    onsets = np.arange(len(pitches), dtype=float) if onsets is None else np.asarray(onsets, float)
    return RolePiece(onsets, np.ones(len(pitches)), np.asarray(pitches), beats_per_bar,
                     int(np.ceil((onsets.max() + 1) / beats_per_bar)), tonic)


def test_statistics_of_a_literal_melody():
    # C D E C | C D E C: steps and a skip, the second bar repeats the first.
    piece = melody([60, 62, 64, 60, 60, 62, 64, 60])
    stats = statistics(piece)
    assert stats["tonic_share"] == pytest.approx(4 / 8)
    assert stats["step_share"] == pytest.approx(4 / 7)    # 60-62, 62-64 twice
    assert stats["repeat_share"] == pytest.approx(1 / 7)  # 60-60 across the bar line
    assert stats["leap_share"] == 0.0
    assert stats["bar_rhythm_repetition"] == 0.5 and stats["bar_repetition"] == 0.5  # bar 2 of 2 repeats bar 1
    assert stats["notes_per_beat"] == 1.0
    vector = features(piece)
    assert vector.shape == (len(FEATURE_NAMES),) and np.isfinite(vector).all()
    assert vector[FEATURE_NAMES.index("pc_0")] == pytest.approx(0.5)
    assert vector[FEATURE_NAMES.index("interval_2")] == pytest.approx(4 / 7)  # four rising steps of 2
    assert vector[FEATURE_NAMES.index("interval_-4")] == pytest.approx(2 / 7)


def test_the_classifier_separates_stepwise_tunes_from_leaping_ones_and_not_a_set_from_itself():
    rng = np.random.default_rng(0)

    def walk(step_sizes):
        pitches = [67]
        for _ in range(15):
            pitches.append(int(np.clip(pitches[-1] + rng.choice(step_sizes) * rng.choice([-1, 1]), 55, 85)))
        return melody(pitches, tonic=7)

    stepwise = [walk([1, 2]) for _ in range(40)]
    leaping = [walk([5, 7, 9]) for _ in range(40)]
    apart = classifier_accuracy(stepwise, leaping, trees=60, draws=3)
    assert apart["balanced_accuracy"] > 0.9 and apart["draws"] == 3
    assert apart["top_features"][0][0] in ("step_share", "leap_share", "mean_abs_interval", "interval_std")
    more_stepwise = [walk([1, 2]) for _ in range(40)]
    assert classifier_accuracy(stepwise, more_stepwise, trees=60, draws=3)["balanced_accuracy"] < 0.7
    ranges = statistic_ranges(stepwise, leaping)
    assert ranges["step_share"]["inside"] is False and ranges["leap_share"]["generated_median"] > 0.8
    assert statistic_ranges(stepwise, more_stepwise)["step_share"]["inside"] is True


def test_the_figure_is_a_mean_over_draws_each_with_its_own_subsample():
    """Repeated cross-validation: every draw subsamples the larger set and
    splits the folds anew, so a draw's figures differ; the mean of several
    is reported, with their spread."""
    rng = np.random.default_rng(1)

    def walk(step_sizes, n):
        pitches = [67]
        for _ in range(n):
            pitches.append(int(np.clip(pitches[-1] + rng.choice(step_sizes) * rng.choice([-1, 1]), 55, 85)))
        return melody(pitches, tonic=7)

    real = [walk([1, 2, 3], 15) for _ in range(20)]
    generated = [walk([1, 2, 3, 4], 15) for _ in range(60)]
    single = [classifier_accuracy(real, generated, seed=s, trees=40, draws=1)["balanced_accuracy"] for s in range(4)]
    mean = classifier_accuracy(real, generated, seed=0, trees=40, draws=4)
    assert len(set(single)) > 1  # the subsample and the folds matter
    assert mean["balanced_accuracy"] == pytest.approx(np.mean(single))
    assert mean["draw_sd"] == pytest.approx(np.std(single))
