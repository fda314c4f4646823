"""Cross-fitted calibrated bands: each fold calibrates on the validation sessions of every fold
except the sessions it tests, and its band covers about 95% of errors like those."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.eval.calibration import fit_calibration
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


def test_a_fold_calibrates_on_every_folds_validation_but_never_its_own_test_sessions():
    """Fold 1 validates on session 0, which fold 0 tests: fold 0 calibrates on session 2 alone
    (SD 2), fold 1 on sessions 0 and 2 (SD 10 and 2): exactly `fit_calibration` on those."""
    data = _data()
    sd = jnp.asarray([10.0, 2.0, 2.0, 10.0, 10.0, 10.0])
    split = _split(tests=([0, 1], [3, 4]), vals=([2], [0]))
    pred, out = _run(split, data, sd)
    horizon = horizons((S, T), W)
    for tested, used in (([0, 1], [2]), ([3, 4], [0, 2])):  # per fold
        for p in PROTOCOLS:
            rows = jnp.asarray(used)
            mask = data.mask[rows]
            cal = fit_calibration(
                jnp.asarray(pred[p][used]), jnp.zeros((len(used), T)), data.hr[rows],
                mask & ~given_mask(mask, W, p), horizon[p][rows],
            )  # fmt: skip
            want = cal.variance(jnp.zeros((len(tested), T)), horizon[p][jnp.asarray(tested)])
            np.testing.assert_allclose(out[f"{p}_var"][tested], want, rtol=1e-4)
            assert np.all(out[f"{p}_var_model"][tested] == 0)  # the "model" has no variance
    assert np.median(out["standard_var"][[0, 1]]) < np.median(out["standard_var"][[3, 4]])


def test_the_band_covers_95_percent_of_errors_like_the_validation_ones():
    """One fold (as a chronological split), errors of SD 6 everywhere: the tested sessions' band
    has SD ~6 and covers ~95% of their errors."""
    data = _data(1)
    split = _split(tests=([0, 1, 2],), vals=([3, 4],))
    pred, out = _run(split, data, jnp.full(S, 6.0))
    for p in PROTOCOLS:
        sd = np.sqrt(out[f"{p}_var"][:3])
        np.testing.assert_allclose(np.median(sd), 6.0, rtol=0.1)
        z = np.abs(pred[p][:3] - np.asarray(data.hr)[:3]) / sd
        assert abs(np.mean(z <= 1.96) - 0.95) < 0.02


def test_horizons_restart_at_each_window_and_at_the_session_start():
    h = horizons((2, 150), W)
    np.testing.assert_array_equal(h["standard"][1], np.arange(150) % W)
    np.testing.assert_array_equal(h["generative"][0], np.arange(150))
