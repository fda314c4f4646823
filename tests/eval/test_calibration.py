"""Validation-calibrated predictive bands against known noise models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.eval.calibration import GROWTH_TIME, Calibration, fit_calibration, seconds_since
from wearjax.eval.metrics import predictive_scores


def _problem(seed: int, n: int = 40, t: int = 600, heavy: bool = False):
    """Residuals whose variance is 2 v + 4 + 0.05 h_eff (bpm^2), Gaussian or Student-t(3)."""
    rng = np.random.default_rng(seed)
    known = rng.random((n, t)) < 0.01
    known[:, 0] = True
    horizon = np.asarray(jax.vmap(seconds_since)(jnp.asarray(known)))
    var = rng.uniform(0.0, 5.0, (n, t))
    h = horizon * GROWTH_TIME / (horizon + GROWTH_TIME)
    sd = np.sqrt(2.0 * var + 4.0 + 0.05 * h)
    noise = rng.standard_t(3, (n, t)) / np.sqrt(3.0) if heavy else rng.standard_normal((n, t))
    pred = rng.uniform(100, 180, (n, t))
    return pred, var, pred + sd * noise, ~known, horizon


def test_seconds_since_matches_a_loop():
    known = np.array([False, False, True, False, False, True, True, False])
    expected, last = [], None
    for i, k in enumerate(known):
        last = i if k else last
        expected.append(i - last if last is not None else 2 - i)  # before: to the first known
    np.testing.assert_array_equal(seconds_since(jnp.asarray(known)), expected)


def test_recovers_a_gaussian_noise_model_and_covers_95_percent_of_new_data():
    pred, var, hr, scored, horizon = _problem(0)
    cal = fit_calibration(*map(jnp.asarray, (pred, var, hr, scored, horizon)), steps=600)
    # kappa ~ 1 for Gaussian residuals: the coefficients are those of the noise model
    np.testing.assert_allclose([cal.model, cal.floor, cal.growth], [2.0, 4.0, 0.05], rtol=0.15)
    pred, var, hr, scored, horizon = _problem(1)  # fresh data from the same model
    s2 = cal.variance(jnp.asarray(var), jnp.asarray(horizon))
    scores = predictive_scores(jnp.asarray(pred), s2, jnp.asarray(hr), jnp.asarray(scored))
    assert abs(float(scores["coverage_2sd"]) - 0.954) < 0.01


def test_hr_missing_outside_the_scored_seconds_is_ignored():
    """NaN HR in a dropout, unscored, gave NaN coefficients (0 x NaN in the weighted sums)."""
    pred, var, hr, scored, horizon = _problem(0)
    gaps = hr.copy()
    gaps[~scored] = np.nan
    args = lambda h: map(jnp.asarray, (pred, var, h, scored, horizon))  # noqa: E731
    np.testing.assert_array_equal(fit_calibration(*args(gaps)), fit_calibration(*args(hr)))
    with pytest.raises((ValueError, TypeError), match="shape|scored"):  # TypeError: the test hook
        fit_calibration(*map(jnp.asarray, (pred, var, hr, scored[0], horizon)))


def test_heavy_tails_still_get_the_stated_coverage():
    """A Gaussian fit of Student-t residuals under-covers; the conformal step restores 95%."""
    pred, var, hr, scored, horizon = _problem(2, heavy=True)
    cal = fit_calibration(*map(jnp.asarray, (pred, var, hr, scored, horizon)))
    pred, var, hr, scored, horizon = _problem(3, heavy=True)
    s2 = cal.variance(jnp.asarray(var), jnp.asarray(horizon))
    z = np.abs(hr - pred) / np.sqrt(np.asarray(s2))
    assert abs(np.mean(z[scored] <= 1.959964) - 0.95) < 0.01


def test_deterministic_model_and_vmap_over_folds():
    """A zero model variance (the HR ODE) is calibrated from the horizon alone; folds vmap."""
    problems = [_problem(s) for s in (4, 5)]
    stacked = [jnp.stack([jnp.asarray(p[i]) for p in problems]) for i in range(5)]
    stacked[1] = jnp.zeros_like(stacked[1])
    cal = jax.vmap(fit_calibration)(*stacked)
    assert isinstance(cal, Calibration) and cal.floor.shape == (2,)
    one = fit_calibration(*(a[1] for a in stacked))
    np.testing.assert_allclose(cal.floor[1], one.floor, rtol=1e-5)
    assert np.all(np.asarray(cal.floor) > 4.0)  # the model term is gone: the floor takes it


def test_float64_predictions_calibrate_with_float32_or_float64_horizons(x64):
    """Under x64 a horizon follows the predictions' dtype: `seconds_since(known, dtype)`, and
    `fit_calibration` / `Calibration.variance` cast a float32 horizon (exact whole seconds) to
    the predictions' float64, giving the fit of the float64 horizon bit for bit."""
    pred, var, hr, scored, horizon = (jnp.asarray(a) for a in _problem(6, n=8))
    known = jnp.asarray(np.asarray(~scored))
    h32, h64 = (
        jax.vmap(seconds_since)(known),
        jax.vmap(lambda k: seconds_since(k, jnp.float64))(known),
    )
    assert (h32.dtype, h64.dtype, pred.dtype) == (jnp.float32, jnp.float64, jnp.float64)
    np.testing.assert_array_equal(h64, horizon)
    want = fit_calibration(pred, var, hr, scored, h64, steps=50)
    got = fit_calibration(pred, var, hr, scored, h32, steps=50)
    assert got.floor.dtype == jnp.float64
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.variance(var, h32), want.variance(var, h64))


def test_nan_outside_scored_is_ignored_in_the_variance_and_horizon_too():
    """NaN in `var` or `horizon` at a second that is not scored changes nothing (it made every
    term NaN through 0 x NaN)."""
    rng = np.random.default_rng(3)
    pred = jnp.asarray(rng.normal(120, 5, (2, 50)), jnp.float32)
    hr = pred + jnp.asarray(rng.normal(0, 3, (2, 50)), jnp.float32)
    var = jnp.full((2, 50), 4.0, jnp.float32)
    horizon = jnp.tile(jnp.arange(50, dtype=jnp.float32), (2, 1))
    scored = jnp.asarray(rng.uniform(size=(2, 50)) < 0.7)
    clean = fit_calibration(pred, var, hr, scored, horizon)
    spoil = lambda a: jnp.where(scored, a, jnp.nan)  # noqa: E731
    for args in ((spoil(var), horizon), (var, spoil(horizon))):
        got = fit_calibration(pred, args[0], hr, scored, args[1])
        np.testing.assert_array_equal(np.asarray(list(got)), np.asarray(list(clean)))
