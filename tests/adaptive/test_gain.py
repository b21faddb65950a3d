"""Gain curves, equal-power ramps and the limiter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive.gain import GainCurve, GainRamp, amplitude_to_db, db_to_amplitude
from adaptive.mixer import SoftLimiter


def test_db_conversions():
    assert db_to_amplitude(0.0) == 1.0
    assert db_to_amplitude(-6.0) == pytest.approx(0.501, abs=1e-3)
    assert db_to_amplitude(-math.inf) == 0.0
    assert amplitude_to_db(0.0) == -math.inf
    assert amplitude_to_db(db_to_amplitude(-17.5)) == pytest.approx(-17.5)


def test_gain_curve_interpolates_in_db_and_fades_from_silence():
    curve = GainCurve(((0.0, -math.inf), (0.4, -math.inf), (0.6, -12.0), (1.0, 0.0)))
    assert curve.amplitude(0.0) == 0.0
    assert curve.amplitude(0.4) == 0.0
    assert curve.amplitude(0.5) == pytest.approx(db_to_amplitude(-12.0) / 2)  # linear from silence
    assert curve.amplitude(0.8) == pytest.approx(db_to_amplitude(-6.0))  # dB-linear between finite points
    assert curve.amplitude(1.5) == 1.0


def test_ramp_follows_the_equal_power_law():
    ramp = GainRamp(0.0)
    ramp.ramp_to(1.0, 1_000, 1_000)
    envelope = ramp.envelope(1_000, 1_001)
    t = np.arange(1_001) / 1_000
    assert np.allclose(envelope, np.sin(np.pi * t / 2), atol=1e-6)
    fade_out = GainRamp(1.0)
    fade_out.ramp_to(0.0, 0, 1_000)
    # Equal power: the squares of a fade-in and a fade-out of the same length sum to 1.
    assert np.allclose(fade_out.envelope(0, 1_000) ** 2 + ramp.envelope(1_000, 1_000) ** 2, 1.0, atol=1e-6)


@given(start=st.floats(0, 4), target=st.floats(0, 4), length=st.integers(48, 96_000),
       split=st.integers(1, 95_999))
def test_ramp_has_no_step_and_does_not_depend_on_block_split(start, target, length, split):
    ramp = GainRamp(start)
    ramp.ramp_to(target, 10, length)
    whole = ramp.envelope(0, length + 20)
    split = min(split, length + 19)
    parts = np.concatenate([ramp.envelope(0, split), ramp.envelope(split, length + 20 - split)])
    assert np.array_equal(whole, parts)
    # The largest step between two samples is the steepest slope of the
    # equal-power curve: (pi/2) * max(gain) / length per sample (a fade from
    # silence, g = g1 sin(pi t / 2)), plus float32 rounding.
    largest = max(start, target)
    assert np.abs(np.diff(whole.astype(np.float64))).max() <= largest * (np.pi / 2) / length * 1.001 + 1e-6


def test_retargeting_mid_ramp_starts_from_the_current_value():
    ramp = GainRamp(0.0)
    ramp.ramp_to(1.0, 0, 1_000)
    middle = ramp.value_at(500)
    ramp.ramp_to(0.2, 500, 1_000)
    assert ramp.value_at(500) == pytest.approx(middle)
    assert ramp.value_at(1_500) == pytest.approx(0.2)


def test_limiter_is_transparent_below_the_knee_and_bounded_above():
    limiter = SoftLimiter(knee_db=-6.0, ceiling_db=-0.3)
    quiet = np.linspace(-0.5, 0.5, 1001, dtype=np.float32)
    kept = quiet.copy()
    assert not limiter.process(kept)
    assert np.array_equal(kept, quiet)
    loud = np.linspace(-40.0, 40.0, 100_001, dtype=np.float32)
    limited = loud.copy()
    assert limiter.process(limited)
    assert np.abs(limited).max() <= db_to_amplitude(-0.3)
    assert np.all(np.diff(limited) >= 0)  # monotonic: no fold-over
    knee = db_to_amplitude(-6.0)
    just_above = np.array([knee + 1e-4], np.float32)
    limiter.process(just_above)
    assert just_above[0] == pytest.approx(knee + 1e-4, abs=1e-5)  # continuous at the knee
