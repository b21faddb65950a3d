"""Slew-limited scene smoothing, in session frames."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from adaptive.smoothing import SceneSmoother, Slew, rate_per_frame

RATE_HZ = 48_000


def test_a_slew_moves_at_its_rate_and_stops_on_the_target():
    slew = Slew(0.0, 1.0, 100, rate_per_frame(0.5, RATE_HZ))  # 0.5 per second: 2 s to cover 1.0
    assert slew.value_at(100) == 0.0
    assert math.isclose(slew.value_at(100 + RATE_HZ), 0.5)
    assert slew.value_at(100 + 2 * RATE_HZ) == 1.0
    assert slew.value_at(100 + 10 * RATE_HZ) == 1.0
    assert slew.settle_frame() == 100 + 2 * RATE_HZ


def test_an_infinite_rate_follows_at_once():
    slew = Slew(0.0, -0.7, 0, rate_per_frame(math.inf, RATE_HZ))
    assert slew.value_at(0) == -0.7 and slew.settle_frame() == 0


def test_retarget_starts_from_where_the_value_is():
    slew = Slew(0.0, 1.0, 0, rate_per_frame(1.0, RATE_HZ))
    slew.retarget(RATE_HZ // 4, 0.0)
    assert math.isclose(slew.start_value, 0.25) and slew.target == 0.0
    assert math.isclose(slew.value_at(RATE_HZ // 2), 0.0, abs_tol=1e-12)


@given(start=st.floats(-1, 1), target=st.floats(-1, 1), rate=st.floats(0.01, 100.0),
       frame=st.integers(0, 10 * RATE_HZ))
def test_a_slew_never_overshoots_and_is_settled_from_its_settle_frame(start, target, rate, frame):
    slew = Slew(start, target, 0, rate_per_frame(rate, RATE_HZ))
    value = slew.value_at(frame)
    assert min(start, target) - 1e-12 <= value <= max(start, target) + 1e-12
    # Settled to within rounding at its settle frame (rate * frames may fall one
    # ulp short of the distance there: start 0.01, target -0.05, 0.0117 per second).
    assert abs(slew.value_at(slew.settle_frame()) - target) <= 1e-12


def test_the_smoother_takes_the_first_target_at_once_and_slews_to_later_ones():
    smoother = SceneSmoother(1.0, 1.0, 0.5, RATE_HZ)
    smoother.set_target(1000, 0.5, -0.5, 0.2)
    assert smoother.at(1000) == (0.5, -0.5, 0.2) and smoother.settle_frame() == 1000
    smoother.set_target(2000, -0.5, -0.5, 0.7)
    valence, arousal, intensity = smoother.at(2000 + RATE_HZ // 2)
    assert math.isclose(valence, 0.0, abs_tol=1e-12) and arousal == -0.5 and math.isclose(intensity, 0.45)
    assert smoother.settle_frame() == 2000 + RATE_HZ  # valence: 1.0 at 1/s; intensity: 0.5 at 0.5/s


def test_new_rates_apply_from_the_frame_they_are_set():
    smoother = SceneSmoother(1.0, 1.0, 1.0, RATE_HZ)
    smoother.set_target(0, 0.0, 0.0, 0.0)
    smoother.set_target(0, 1.0, 0.0, 0.0)
    smoother.set_rates(RATE_HZ // 2, math.inf, math.inf, math.inf)
    assert smoother.at(RATE_HZ // 2) == (1.0, 0.0, 0.0)
