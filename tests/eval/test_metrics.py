"""Masked metrics against hand-computed values and a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.eval.metrics import (
    HR_ZONES,
    bias,
    mae,
    mape,
    pearson_r,
    r2,
    rmse,
    sd_diff,
    smooth_hr,
    summarize,
    transition_mask,
    zone_masks,
)

METRICS = {
    "mae": mae,
    "rmse": rmse,
    "mape": mape,
    "pearson_r": pearson_r,
    "r2": r2,
    "bias": bias,
    "sd_diff": sd_diff,
}

# pred - true = [0, -1, 1, -2]; worked out by hand below.
PRED = [1.0, 2.0, 3.0, 4.0]
TRUE = [1.0, 3.0, 2.0, 6.0]
HAND = {
    "mae": 1.0,  # (0 + 1 + 1 + 2) / 4
    "rmse": np.sqrt(1.5),  # sqrt((0 + 1 + 1 + 4) / 4)
    "mape": 100 * (0 + 1 / 3 + 1 / 2 + 2 / 6) / 4,
    "pearson_r": 7 / np.sqrt(5 * 14),  # sum dp*dt = 7, sum dp^2 = 5, sum dt^2 = 14
    "r2": 1 - 6 / 14,  # SS_res = 6, SS_tot = 14
    "bias": -0.5,
    "sd_diff": np.sqrt(5 / 3),  # deviations +-0.5, +-1.5 from the bias; ddof = 1
}


def _arrays(pred, true, mask):
    return jnp.asarray(pred, jnp.float32), jnp.asarray(true, jnp.float32), jnp.asarray(mask)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_matches_hand_value(name):
    p, t, m = _arrays(PRED, TRUE, [True] * 4)
    assert np.isclose(float(METRICS[name](p, t, m)), HAND[name], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_masked_values_do_not_leak(name):
    # The same four samples, scattered in a 2-D array among NaN and huge masked-out values.
    pred = np.full((2, 4), np.nan, np.float32)
    true = np.full((2, 4), 1e30, np.float32)
    mask = np.zeros((2, 4), bool)
    pred[[0, 0, 1, 1], [0, 3, 1, 2]] = PRED
    true[[0, 0, 1, 1], [0, 3, 1, 2]] = TRUE
    true[1, 3] = np.nan
    mask[[0, 0, 1, 1], [0, 3, 1, 2]] = True
    value = METRICS[name](*_arrays(pred, true, mask))
    assert np.isclose(float(value), HAND[name], rtol=1e-6)


def _numpy_metrics(pred, true, mask):
    p, t = pred[mask].astype(np.float64), true[mask].astype(np.float64)
    d = p - t
    return {
        "mae": np.mean(np.abs(d)),
        "rmse": np.sqrt(np.mean(d**2)),
        "mape": 100 * np.mean(np.abs(d) / np.abs(t)),
        "pearson_r": np.corrcoef(p, t)[0, 1],
        "r2": 1 - np.sum(d**2) / np.sum((t - t.mean()) ** 2),
        "bias": np.mean(d),
        "sd_diff": np.std(d, ddof=1),
    }


def test_metrics_match_numpy_float64_reference():
    rng = np.random.default_rng(0)
    true = rng.uniform(90, 190, (5, 300)).astype(np.float32)
    pred = (true + rng.normal(2, 8, true.shape)).astype(np.float32)
    mask = rng.random(true.shape) > 0.3
    pred[~mask] = np.nan
    expected = _numpy_metrics(pred, true, mask)
    for name, fn in METRICS.items():
        assert np.isclose(float(fn(*_arrays(pred, true, mask))), expected[name], rtol=1e-4)


def test_undefined_metrics_are_nan():
    p, t, m = _arrays(PRED, TRUE, [False] * 4)
    for fn in METRICS.values():
        assert np.isnan(float(fn(p, t, m)))
    one = jnp.asarray([True, False, False, False])
    assert np.isnan(float(sd_diff(p, t, one)))
    assert float(mae(p, t, one)) == 0.0
    flat = jnp.full(4, 120.0, jnp.float32)
    assert np.isnan(float(pearson_r(p, flat, m | True)))
    assert np.isnan(float(r2(p, flat, m | True)))


def test_zone_masks_use_fixed_bpm_edges():
    assert HR_ZONES == (130.0, 160.0)
    true = jnp.asarray([100.0, 129.9, 130.0, 159.9, 160.0, 200.0, np.nan], jnp.float32)
    mask = jnp.asarray([True] * 6 + [False])
    zones = zone_masks(true, mask)
    assert np.array_equal(zones["low"], [1, 1, 0, 0, 0, 0, 0])
    assert np.array_equal(zones["medium"], [0, 0, 1, 1, 0, 0, 0])
    assert np.array_equal(zones["high"], [0, 0, 0, 0, 1, 1, 0])


def test_transition_mask_marks_the_seconds_around_a_step():
    # HR 100 for 60 s, then 140. The 5-s average ramps 100, 108, 116, 124, 132, 140 over
    # t = 57..62, so s(t + 10) - s(t - 10) >= 10 exactly for t = 49 (116 - 100) to
    # t = 70 (140 - 124); t = 48 gives 108 - 100 and t = 71 gives 140 - 132.
    true = jnp.asarray([100.0] * 60 + [140.0] * 60, jnp.float32)
    mask = jnp.ones(120, bool)
    moving = np.asarray(transition_mask(true, mask))
    assert np.array_equal(np.flatnonzero(moving), np.arange(49, 71))


def test_transition_mask_ignores_padding_and_masked_values():
    # A steady session followed by zero padding, and a NaN under the mask inside it.
    true = np.concatenate([np.full(100, 150.0), np.zeros(20)]).astype(np.float32)
    true[40] = np.nan
    mask = np.arange(120) < 100
    mask[40] = False
    assert not np.any(np.asarray(transition_mask(jnp.asarray(true), jnp.asarray(mask))))


def _transition_reference(true, mask, half_width=10, threshold=10.0, width=5):
    """Float64 loop over seconds following the documented definition."""
    size, r = len(true), width // 2
    s = np.zeros(size)
    ok = np.zeros(size, bool)
    for t in range(size):
        idx = [k for k in range(t - r, t + r + 1) if 0 <= k < size and mask[k]]
        if idx:
            s[t], ok[t] = np.mean([float(true[k]) for k in idx]), True
    out = np.zeros(size, bool)
    for t in range(size):
        if not mask[t]:
            continue
        right = max(k for k in range(t, min(t + half_width, size - 1) + 1) if ok[k])
        left = min(k for k in range(max(t - half_width, 0), t + 1) if ok[k])
        out[t] = abs(s[right] - s[left]) >= threshold
    return out


def test_transition_mask_matches_loop_reference_with_gaps():
    rng = np.random.default_rng(1)
    true = (140 + np.cumsum(rng.normal(0, 1.5, (3, 200)), axis=-1)).astype(np.float32)
    mask = rng.random(true.shape) > 0.2
    mask[0, 150:] = False  # padding
    mask[1, 30:45] = False  # a dropout longer than the window
    got = np.asarray(transition_mask(jnp.asarray(true), jnp.asarray(mask)))
    for i in range(3):
        assert np.array_equal(got[i], _transition_reference(true[i], mask[i]))
    assert got.any() and (~got & mask).any()


def _batch(seed=2):
    rng = np.random.default_rng(seed)
    base = np.where(np.arange(240) < 120, 110.0, 165.0)
    true = (base + rng.normal(0, 3, (3, 240))).astype(np.float32)
    pred = (true + rng.normal(1, 5, true.shape)).astype(np.float32)
    mask = rng.random(true.shape) > 0.1
    mask[2, 200:] = False
    return jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask)


def test_summarize_counts_and_subsets():
    pred, true, mask = _batch()
    out = summarize(pred, true, mask)
    n = int(mask.sum())
    assert int(out["n"]) == n
    assert int(out["n_low"]) + int(out["n_medium"]) + int(out["n_high"]) == n
    assert int(out["n_transition"]) + int(out["n_steady"]) == n
    assert int(out["n_medium"]) == 0 or float(out["mae_medium"]) >= 0
    moving = np.asarray(transition_mask(true, mask))
    expected = np.mean(np.abs(np.asarray(pred) - np.asarray(true))[moving])
    assert np.isclose(float(out["mae_transition"]), expected, rtol=1e-5)
    for name, fn in METRICS.items():
        assert np.isclose(float(out[name]), float(fn(pred, true, mask)), equal_nan=True)


def test_summarize_empty_subset_is_nan_with_zero_count():
    true = jnp.full((1, 60), 120.0, jnp.float32)
    out = summarize(true + 1, true, jnp.ones((1, 60), bool))
    assert int(out["n_high"]) == 0 and np.isnan(float(out["mae_high"]))
    assert int(out["n_transition"]) == 0 and np.isnan(float(out["mae_transition"]))
    assert float(out["mae_low"]) == 1.0 and float(out["mae_steady"]) == 1.0


def test_vmap_and_jit_match_per_item():
    pred, true, mask = _batch()
    batched = jax.vmap(summarize)(pred, true, mask)
    jitted = jax.jit(jax.vmap(summarize))(pred, true, mask)
    for i in range(3):
        single = summarize(pred[i], true[i], mask[i])
        item = {k: v[i] for k, v in batched.items()}
        assert tree_allclose(item, single, rtol=1e-5)
        assert tree_allclose({k: v[i] for k, v in jitted.items()}, single, rtol=1e-5)


def test_float64(x64):
    p = jnp.asarray(PRED, jnp.float64)
    t = jnp.asarray(TRUE, jnp.float64)
    m = jnp.ones(4, bool)
    for name, fn in METRICS.items():
        value = fn(p, t, m)
        assert value.dtype == jnp.float64
        assert np.isclose(float(value), HAND[name], rtol=1e-12)


def test_predictive_scores_match_scipy_and_a_numerical_crps():
    from scipy import integrate, stats

    from wearjax.eval.metrics import gaussian_crps, predictive_scores

    rng = np.random.default_rng(0)
    pred = rng.normal(140, 10, 50)
    sd = rng.uniform(1, 8, 50)
    true = pred + sd * rng.normal(0, 1.3, 50)
    mask = rng.uniform(size=50) > 0.2
    got = predictive_scores(*(jnp.asarray(a) for a in (pred, sd**2, true, mask)))
    m = mask
    np.testing.assert_allclose(got["nll"], -stats.norm.logpdf(true, pred, sd)[m].mean(), rtol=1e-5)
    np.testing.assert_allclose(got["mean_sd"], sd[m].mean(), rtol=1e-6)
    inside = np.abs(true - pred) <= 2 * sd
    np.testing.assert_allclose(got["coverage_2sd"], inside[m].mean(), rtol=1e-6)

    def crps(mu, s, y):  # the definition: integral of (F(x) - 1{x >= y})^2 dx
        f = lambda x: (stats.norm.cdf(x, mu, s) - (x >= y)) ** 2  # noqa: E731
        lo, hi = min(mu, y) - 12 * s, max(mu, y) + 12 * s
        return integrate.quad(f, lo, y, limit=200)[0] + integrate.quad(f, y, hi, limit=200)[0]

    ref = np.mean([crps(pred[i], sd[i], true[i]) for i in np.flatnonzero(m)])
    np.testing.assert_allclose(got["crps"], ref, rtol=1e-4)
    # as the variance vanishes the CRPS is the absolute error: a loss that extends the MAE
    tiny = gaussian_crps(jnp.asarray(pred), jnp.full(pred.shape, 1e-8), jnp.asarray(true))
    np.testing.assert_allclose(tiny, np.abs(pred - true), atol=2e-3)
    # a mask of another shape broadcast and miscounted: coverage 3.85 with a [T] mask on [4, T]
    many = [jnp.asarray(np.tile(a, (4, 1))) for a in (pred, sd**2, true)]
    with pytest.raises((ValueError, TypeError), match="shape"):  # TypeError: the test hook
        predictive_scores(*many, jnp.asarray(mask))


def test_predictive_scores_are_nan_where_undefined():
    """No scored second, or a scored second whose variance is NaN or infinite: every score is
    NaN (as `summarize`'s MAE of an empty subset), not 0 (a perfect-looking band) nor a
    coverage that counts those seconds as misses (NaN) or hits (infinite). A bad variance
    outside the mask is ignored: the scores are those of the scored seconds alone."""
    from scipy import stats

    from wearjax.eval.metrics import predictive_scores

    rng = np.random.default_rng(1)
    pred = rng.normal(140, 10, 40).astype(np.float32)
    var = rng.uniform(1, 60, 40).astype(np.float32)
    true = (pred + rng.normal(0, 5, 40)).astype(np.float32)
    mask = rng.uniform(size=40) > 0.3

    def scores(v, m):
        got = predictive_scores(*(jnp.asarray(a) for a in (pred, v, true, m)))
        return {k: float(x) for k, x in got.items()}

    assert summarize(*(jnp.asarray(a) for a in (pred, true, np.zeros(40, bool))))["mae"] != 0.0
    for got in (
        scores(var, np.zeros(40, bool)),
        scores(np.where(np.arange(40) == np.argmax(mask), np.nan, var), mask),
        scores(np.where(np.arange(40) == np.argmax(mask), np.inf, var), mask),
    ):
        assert set(got) == {"coverage_2sd", "mean_sd", "nll", "crps"}
        assert all(np.isnan(x) for x in got.values()), got
    nan_pred = np.where(np.arange(40) == np.argmax(mask), np.nan, pred).astype(np.float32)
    got = predictive_scores(*(jnp.asarray(a) for a in (nan_pred, var, true, mask)))
    assert all(np.isnan(float(x)) for x in got.values())  # a NaN prediction: no silent miss
    nan_true = np.where(np.arange(40) == np.argmax(mask), np.nan, true).astype(np.float32)
    got = predictive_scores(*(jnp.asarray(a) for a in (pred, var, nan_true, mask)))
    assert all(np.isnan(float(x)) for x in got.values())  # nor a NaN target scored
    # NaN and infinity outside the mask leave the scored seconds' scores as they are
    bad = np.where(mask, var, np.where(np.arange(40) % 2 == 0, np.nan, np.inf)).astype(np.float32)
    got, sd = scores(bad, mask), np.sqrt(var.astype(np.float64))
    np.testing.assert_allclose(got["mean_sd"], sd[mask].mean(), rtol=1e-5)
    inside = np.abs(true.astype(np.float64) - pred) <= 2 * sd
    np.testing.assert_allclose(got["coverage_2sd"], inside[mask].mean(), rtol=1e-6)
    nll = -stats.norm.logpdf(true, pred, sd)[mask].mean()
    np.testing.assert_allclose(got["nll"], nll, rtol=1e-5)


def test_smoothing_wider_than_the_series_is_the_mean_of_what_it_covers():
    """A smoothing window over twice the series' length used to slice from the end and fail to
    broadcast; it now averages every second of the series (a centred moving mean)."""
    hr = jnp.asarray([100.0, 110.0])
    ok = jnp.asarray([True, True])
    smoothed, defined = smooth_hr(hr, ok, width=7)
    np.testing.assert_allclose(smoothed, [105.0, 105.0])
    assert np.all(np.asarray(defined))
    assert not np.any(np.asarray(transition_mask(hr, ok, smooth=7)))
