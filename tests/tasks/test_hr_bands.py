"""Cross-fitted calibrated bands: with several folds, each calibrates on the other folds' test
sessions, never its own (a chronological fold: the earlier folds' only); with one fold, on its
validation sessions; and the band covers about 95% of errors like those."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.cv import Split
from wearjax.eval.calibration import Calibration, fit_calibration
from wearjax.eval.protocols import given_mask
from wearjax.tasks.hr_bands import calibrate_bands, horizons

S, T, W = 6, 1200, 60
PROTOCOLS = ("standard", "generative")


class Data(NamedTuple):
    hr: jax.Array
    mask: jax.Array
    noise: jax.Array


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return Data(
        jnp.asarray(rng.uniform(100, 170, (S, T)), jnp.float32),
        jnp.ones((S, T), bool),
        jnp.asarray(rng.standard_normal((S, T)), jnp.float32),
    )


def _split(tests, vals):
    k = len(tests)
    test, val = np.zeros((k, S), bool), np.zeros((k, S), bool)
    for f, (t, v) in enumerate(zip(tests, vals, strict=True)):
        test[f, t], val[f, v] = True, True
    return Split(test, val, ~test & ~val)


def _run(split, data, sd):
    """Predictions with error SD `sd[i]` on session i, whichever fold predicts it."""

    def predict(model, fold, data, i):
        p = data.hr[i] + sd[i][..., None] * data.noise[i]
        return {"standard": p, "generative": p}

    every = predict(None, 0, data, jnp.arange(S))
    pred = {p: np.asarray(every[p]) for p in PROTOCOLS}
    out = calibrate_bands(
        predict, None, jnp.arange(split.n_folds), data, split, W, pred, batch=None
    )
    return pred, out


def _calibrated_on(used, tested, pred, data, protocol):
    """The band variance of sessions `tested` when calibrated on sessions `used` alone."""
    horizon = horizons(data.mask, W)[protocol]
    rows = jnp.asarray(used)
    mask = data.mask[rows]
    cal = fit_calibration(
        jnp.asarray(pred[protocol][used]), jnp.zeros((len(used), T)), data.hr[rows],
        mask & ~given_mask(mask, W, protocol), horizon[rows],
    )  # fmt: skip
    return cal.variance(jnp.zeros((len(tested), T)), horizon[jnp.asarray(tested)])


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_a_fold_calibrates_on_the_other_folds_test_sessions_never_its_own():
    """Fold 0 tests sessions 0-1 (error SD 2), fold 1 tests 3-4 (SD 10): each fold's band is
    `fit_calibration` on the *other* fold's test sessions, so fold 0's is the wide one. The
    validation sessions (SD 50 here) are not used."""
    data = _data()
    sd = jnp.asarray([2.0, 2.0, 50.0, 10.0, 10.0, 50.0])
    split = _split(tests=([0, 1], [3, 4]), vals=([2], [5]))
    pred, out = _run(split, data, sd)
    for tested, used in (([0, 1], [3, 4]), ([3, 4], [0, 1])):  # per fold
        for p in PROTOCOLS:
            want = _calibrated_on(used, tested, pred, data, p)
            np.testing.assert_allclose(out[f"{p}_var"][tested], want, rtol=1e-4)
            assert np.all(out[f"{p}_var_model"][tested] == 0)  # the "model" has no variance
    sd0, sd1 = (np.sqrt(np.median(out["standard_var"][i])) for i in ([0, 1], [3, 4]))
    np.testing.assert_allclose([sd0, sd1], [10.0, 2.0], rtol=0.15)


def test_a_chronological_fold_calibrates_on_the_earlier_folds_only():
    """Forward chaining over 6 sessions in time order: fold 0 tests session 3 (validation 2),
    fold 1 tests 4 (validation 3), fold 2 tests 5 (validation 4). Fold 0 has no earlier fold
    and calibrates on its validation session, fold 1 on fold 0's test session, fold 2 on those
    of folds 0 and 1: never on a later session."""
    data = _data(2)
    sd = jnp.asarray([50.0, 50.0, 3.0, 6.0, 12.0, 50.0])
    split = Split.chronological(np.arange(S), test_fraction=1 / 6, n_validation=1, n_folds=3)
    np.testing.assert_array_equal(split.owner, [-1, -1, -1, 0, 1, 2])
    pred, out = _run(split, data, sd)
    for tested, used in (([3], [2]), ([4], [3]), ([5], [3, 4])):
        for p in PROTOCOLS:
            want = _calibrated_on(used, tested, pred, data, p)
            np.testing.assert_allclose(out[f"{p}_var"][tested], want, rtol=1e-4)
    for tested, expected_sd in ((3, 3.0), (4, 6.0)):
        got = np.sqrt(np.median(out["standard_var"][tested]))
        np.testing.assert_allclose(got, expected_sd, rtol=0.15)
    assert np.all(np.isnan(out["standard_var"][:3]))  # untested sessions: no band


def test_the_band_covers_95_percent_of_errors_like_the_validation_ones():
    """One fold (as a chronological split) calibrates on its validation sessions; errors of SD
    6 everywhere: the tested sessions' band has SD ~6 and covers ~95% of their errors."""
    data = _data(1)
    split = _split(tests=([0, 1, 2],), vals=([3, 4],))
    pred, out = _run(split, data, jnp.full(S, 6.0))
    for p in PROTOCOLS:
        sd = np.sqrt(out[f"{p}_var"][:3])
        np.testing.assert_allclose(np.median(sd), 6.0, rtol=0.1)
        z = np.abs(pred[p][:3] - np.asarray(data.hr)[:3]) / sd
        assert abs(np.mean(z <= 1.96) - 0.95) < 0.02


def test_horizons_restart_at_each_window_and_at_the_session_start():
    h = horizons(jnp.ones((2, 150), bool), W)
    np.testing.assert_array_equal(h["standard"][1], np.arange(150) % W)
    np.testing.assert_array_equal(h["generative"][0], np.arange(150))


def test_standard_horizon_keeps_growing_through_a_gap_that_hides_window_starts():
    """HR missing from second 100 to 400 (window starts 120-360 unobserved): the standard
    protocol starts those windows from the HR at second 60 (`standard_initial`), so the
    horizon counts from 60 until the next observed window start (420). Before the first
    observed second it counts from that second."""
    t = np.arange(600)
    mask = (t < 100) | (t > 400)
    h = np.asarray(horizons(jnp.asarray(mask), W)["standard"])
    expected = np.where(t < 60, t, np.where(t < 420, t - 60, t % W))
    np.testing.assert_array_equal(h, expected)
    late = np.asarray(horizons(jnp.asarray(t >= 75), W)["standard"])  # first HR at 75 s
    np.testing.assert_array_equal(late[75:120], t[75:120] - 75)
    np.testing.assert_array_equal(late[:75], 0)
    np.testing.assert_array_equal(late[120:], t[120:] % W)
    # the calibrated SD grows through the gap instead of restarting every window
    cal = Calibration(jnp.float32(1.0), jnp.float32(1.0), jnp.float32(0.5))
    sd = np.sqrt(np.asarray(cal.variance(jnp.zeros(600), jnp.asarray(h))))
    assert np.all(np.diff(sd[60:420]) > 0) and sd[419] > 1.5 * sd[59]  # 10.6 vs 5.3 bpm


def test_horizons_under_x64_feed_a_float64_calibration(x64):
    """Under x64 the window indices are int64: `horizons` counts in the same integer (strict
    promotion refuses int32 - int64), in the float dtype asked for (float32 by default), and
    `fit_calibration` of float64 predictions takes either, with the same values as without x64
    (the test above's loop reference)."""
    t = np.arange(600)
    mask = jnp.asarray((t < 100) | (t > 400))
    expected = np.where(t < 60, t, np.where(t < 420, t - 60, t % W))
    h = horizons(mask, W)
    h64 = horizons(mask, W, jnp.float64)
    assert h["standard"].dtype == jnp.float32 and h64["generative"].dtype == jnp.float64
    np.testing.assert_array_equal(h["standard"], expected)
    np.testing.assert_array_equal(h64["standard"], expected)
    rng = np.random.default_rng(0)
    pred = jnp.asarray(rng.uniform(100, 170, 600))
    hr = pred + jnp.asarray(rng.normal(0, 3, 600))
    args = (pred, jnp.zeros(600), hr, mask & ~given_mask(mask, W, "standard"))
    cal = fit_calibration(*args, h["standard"], steps=20)
    assert cal.floor.dtype == jnp.float64
    ref = fit_calibration(*args, h64["standard"], steps=20)
    for a, b in zip(cal, ref, strict=True):
        np.testing.assert_array_equal(a, b)
