"""`half_time`'s step bounds: `hr[start - 1]` is the baseline, so `start` must be at least 1."""

import numpy as np
import pytest

from wearjax.errors import WearjaxDataError
from wearjax.eval.halftimes import half_time


def _reference_half_time(hr, start, end):
    """NumPy loop: the first second after `start` past half the change, linear in between."""
    base, final = hr[start - 1], hr[end - 1]
    target = base + 0.5 * (final - base)
    sign = np.sign(final - base)
    for k in range(end - start):
        if (hr[start + k] - target) * sign >= 0:
            if k == 0:
                return 0.0
            a, b = (hr[start + k - 1] - target) * sign, (hr[start + k] - target) * sign
            return k - 1 + (-a) / (b - a)
    return float("nan")


@pytest.mark.parametrize(("start", "end"), [(0, 50), (-3, 50), (10, 10), (20, 10), (10, 51)])
def test_half_time_refuses_a_step_outside_the_series(start, end):
    hr = 80 + 60 * (1 - np.exp(-np.arange(50.0) / 8.0))
    with pytest.raises(WearjaxDataError, match="start"):
        half_time(hr, start, end)


def test_half_time_at_the_bounds_equals_a_loop():
    hr = np.concatenate([np.full(5, 80.0), 80 + 60 * (1 - np.exp(-np.arange(45.0) / 8.0))])
    for start, end in [(1, 50), (5, 50), (5, 30)]:
        assert half_time(hr, start, end) == pytest.approx(_reference_half_time(hr, start, end))
