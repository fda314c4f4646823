"""Metabolic pipeline: zero-order hold and Savitzky-Golay against NumPy/SciPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from wearjax.data.types import CHANNEL_UNITS, SUBJECT_FIELDS
from wearjax.errors import WearjaxDataError
from wearjax.signal.metabolic import (
    hold_observed,
    metabolic_feature_names,
    metabolic_features,
    savgol_smooth,
    zero_order_hold,
)


def reference_hold(time, values, grid):
    """Literal loop: the last sample at or before each grid point."""
    out, ok = np.zeros(len(grid)), np.zeros(len(grid), bool)
    for i, g in enumerate(grid):
        before = np.flatnonzero(time <= g)
        if before.size:
            out[i], ok[i] = values[before[-1]], True
    return out, ok


def test_zero_order_hold_matches_loop():
    rng = np.random.default_rng(0)
    time = np.cumsum(rng.uniform(1.5, 4.0, 80)) + 0.7  # breaths, first after t = 0
    values = rng.normal(2000.0, 300.0, 80)
    grid = np.arange(0.0, 250.0)
    held, ok = zero_order_hold(jnp.asarray(time), jnp.asarray(values), jnp.asarray(grid))
    ref, ref_ok = reference_hold(time, values, grid)
    np.testing.assert_array_equal(np.asarray(ok), ref_ok)
    np.testing.assert_allclose(np.asarray(held), np.where(ref_ok, ref, 0.0), rtol=1e-6)


def test_hold_observed_fills_dropouts():
    v = jnp.asarray([5.0, 1.0, 2.0, 3.0, 4.0, 6.0])
    m = jnp.asarray([False, True, False, False, True, False])
    np.testing.assert_allclose(np.asarray(hold_observed(v, m)), [1.0, 1.0, 1.0, 1.0, 4.0, 4.0])


@pytest.mark.parametrize(("window", "order"), [(15, 3), (7, 2), (5, 0)])
def test_savgol_matches_scipy(x64, window, order):
    x = np.random.default_rng(1).normal(size=200).cumsum()
    got = savgol_smooth(jnp.asarray(x), window=window, order=order)
    ref = scipy.signal.savgol_filter(x, window, order)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-10)


def test_savgol_padded_length_under_vmap():
    """Per-session lengths (traced under vmap) smooth each session as SciPy would alone."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 120)).astype(np.float32).cumsum(axis=1)
    lengths = np.array([120, 47, 15])
    x[1, 47:] = 0.0
    x[2, 15:] = 0.0
    got = jax.jit(jax.vmap(savgol_smooth))(jnp.asarray(x), jnp.asarray(lengths))
    for i, n in enumerate(lengths):
        ref = scipy.signal.savgol_filter(x[i, :n].astype(np.float64), 15, 3)
        np.testing.assert_allclose(np.asarray(got[i, :n]), ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(got[i, n:]), 0.0)


def test_savgol_rejects_short_series_and_bad_window():
    with pytest.raises(WearjaxDataError, match="shorter than"):
        savgol_smooth(jnp.zeros(10))
    with pytest.raises(WearjaxDataError, match="odd"):
        savgol_smooth(jnp.zeros(30), window=14)


def test_metabolic_features_for_any_subset():
    t = 130
    channels = tuple(CHANNEL_UNITS)
    x = jnp.tile(jnp.asarray([[3.0, 80.0, 80.0, 35.0, 8.0, 1000.0, 100.0]]), (t, 1))
    x = x.at[:, channels.index("altitude")].set(100.0 + 0.09 * jnp.arange(t, dtype=jnp.float32))
    subject = jnp.asarray([1.8, 70.0, 30.0, 1.0])
    hr = jnp.full((t,), 150.0)
    f = metabolic_features(x, channels, subject, hr, jnp.ones((t,), bool))
    names = metabolic_feature_names(channels)
    assert f.shape == (t, len(names))
    col = dict(zip(names, np.asarray(f).T, strict=True))
    np.testing.assert_allclose(col["grade"][20:], 0.03, rtol=1e-4)
    np.testing.assert_allclose(col["distance_km"][-1], 3.0 * t / 1000, rtol=1e-5)
    np.testing.assert_allclose(col["window_index"][[0, 59, 60, 129]], [0, 0, 1, 2])
    np.testing.assert_allclose(col["weight_kg"], subject[SUBJECT_FIELDS.index("weight_kg")])
    # a CPET source: HR and subject only
    g = metabolic_features(jnp.zeros((t, 0)), (), subject, hr, jnp.ones((t,), bool))
    assert g.shape == (t, len(metabolic_feature_names(())))
    assert metabolic_feature_names(())[:3] == ("hr_bpm", "window_index", "elapsed_min")


def test_savgol_refuses_a_concrete_length_shorter_than_the_window():
    """A ramp of 12 samples padded to 40: SciPy refuses a window longer than the series."""
    ramp = np.zeros(40, np.float32)
    ramp[:12] = np.arange(12)
    with pytest.raises(ValueError):
        scipy.signal.savgol_filter(ramp[:12], 15, 3)
    with pytest.raises(WearjaxDataError, match="length 12"):
        savgol_smooth(jnp.asarray(ramp), 12)
    with pytest.raises(WearjaxDataError, match="length 41"):
        savgol_smooth(jnp.asarray(ramp), jnp.asarray(41))


def test_savgol_traced_length_shorter_than_the_window_gives_nan():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 40)).astype(np.float32).cumsum(axis=1)
    x[1, 12:] = 0.0
    got = np.asarray(jax.jit(jax.vmap(savgol_smooth))(jnp.asarray(x), jnp.asarray([40, 12])))
    assert np.isnan(got[1]).all()
    ref = scipy.signal.savgol_filter(x[0].astype(np.float64), 15, 3)
    np.testing.assert_allclose(got[0], ref, rtol=1e-4, atol=1e-4)


def test_zero_order_hold_refuses_empty_or_decreasing_time():
    grid = jnp.arange(5.0)
    with pytest.raises(WearjaxDataError, match="time is empty"):
        zero_order_hold(jnp.zeros(0), jnp.zeros(0), grid)
    with pytest.raises(WearjaxDataError, match="time must be non-decreasing"):
        zero_order_hold(jnp.asarray([0.0, 3.0, 1.0]), jnp.asarray([1.0, 2.0, 3.0]), grid)
    # equal times are fine: the later sample holds, as in the loop
    time, values = np.asarray([0.5, 2.0, 2.0]), np.asarray([1.0, 2.0, 3.0])
    held, ok = zero_order_hold(jnp.asarray(time), jnp.asarray(values), grid)
    ref, ref_ok = reference_hold(time, values, np.arange(5.0))
    np.testing.assert_array_equal(np.asarray(ok), ref_ok)
    np.testing.assert_array_equal(np.asarray(held), ref)


def _reference_hold_observed(values, mask):
    """Literal loop over one row; NaN throughout without any observation."""
    if not mask.any():
        return np.full(values.shape, np.nan)
    out, last = np.empty(values.shape), values[np.argmax(mask)]
    for t in range(len(values)):
        last = values[t] if mask[t] else last
        out[t] = last
    return out


def test_hold_observed_row_without_observation_is_nan():
    """A stacked cohort with an HR-less session: that row is NaN, not the row's first value."""
    rng = np.random.default_rng(6)
    values = rng.normal(150.0, 10.0, (3, 20)).astype(np.float32)
    mask = rng.random((3, 20)) < 0.4
    mask[1] = False
    got = np.asarray(hold_observed(jnp.asarray(values), jnp.asarray(mask)))
    for row in range(3):
        np.testing.assert_array_equal(got[row], _reference_hold_observed(values[row], mask[row]))
    assert np.isnan(got[1]).all()


def test_metabolic_features_refuses_hr_without_its_mask():
    t = 30
    subject = jnp.asarray([1.8, 70.0, 30.0, 1.0])
    hr = jnp.full((t,), 150.0)
    with pytest.raises(WearjaxDataError, match="hr_mask is None"):
        metabolic_features(jnp.zeros((t, 0)), (), subject, hr, None)
    with pytest.raises(WearjaxDataError, match="hr_mask has no observed second"):
        metabolic_features(jnp.zeros((t, 0)), (), subject, hr, jnp.zeros((t,), bool))
    # traced, an unobserved HR is a NaN column rather than a made-up value
    f = jax.jit(metabolic_features, static_argnums=1)(
        jnp.zeros((t, 0)), (), subject, hr, jnp.zeros((t,), bool)
    )
    assert np.isnan(np.asarray(f)[:, 0]).all() and np.isfinite(np.asarray(f)[:, 1:]).all()
