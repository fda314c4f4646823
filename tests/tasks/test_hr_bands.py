"""Per-fold calibrated bands: each tested session gets the band its own fold's validation
sessions call for."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.tasks.hr_bands import calibrate_bands, horizons

S, T, W = 6, 1200, 60


class Data(NamedTuple):
    hr: jax.Array
    mask: jax.Array
    noise: jax.Array


def test_each_session_gets_its_folds_band():
    """Fold k predicts with errors of SD 2 (k = 0) or 10 (k = 1) bpm; calibrated on its own
    validation session, each fold's tested sessions get a band of that width covering ~95%."""
    none = np.zeros(S, bool)
    test = np.stack([none.copy(), none.copy()])
    val, train = test.copy(), test.copy()
    test[0, [0, 1]], val[0, 2], train[0, 3:] = True, True, True
    test[1, [3, 4]], val[1, 5], train[1, :3] = True, True, True
    split = Split(test, val, train)
    rng = np.random.default_rng(0)
    data = Data(
        jnp.asarray(rng.uniform(100, 170, (S, T)), jnp.float32),
        jnp.ones((S, T), bool),
        jnp.asarray(rng.standard_normal((S, T)), jnp.float32),
    )
    scale = jnp.asarray([2.0, 10.0])  # the "model" of each fold

    def predict(model, fold, data, i):
        p = data.hr[i] + model * data.noise[i]
        return {"standard": p, "generative": p}

    pred = {p: np.zeros((S, T), np.float32) for p in ("standard", "generative")}
    for k, sessions in enumerate(([0, 1], [3, 4])):
        for i in sessions:
            pred["standard"][i] = pred["generative"][i] = predict(scale[k], k, data, i)["standard"]
    out = calibrate_bands(predict, scale, jnp.arange(2), data, split, W, pred, batch=None)
    for k, sessions in enumerate(([0, 1], [3, 4])):
        for p in ("standard", "generative"):
            sd = np.sqrt(out[f"{p}_var"][sessions])
            assert np.all(out[f"{p}_var_model"][sessions] == 0)  # the "model" has no variance
            np.testing.assert_allclose(np.median(sd), float(scale[k]), rtol=0.15)
            z = np.abs(pred[p][sessions] - np.asarray(data.hr)[sessions]) / sd
            assert abs(np.mean(z <= 1.96) - 0.95) < 0.02


def test_horizons_restart_at_each_window_and_at_the_session_start():
    h = horizons((2, 150), W)
    np.testing.assert_array_equal(h["standard"][1], np.arange(150) % W)
    np.testing.assert_array_equal(h["generative"][0], np.arange(150))
