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
