"""Predictive bands of the HR models, calibrated per fold on validation residuals
(`eval.calibration`) and applied to the sessions it tests; for every HR kind, the personalised
ODE included (a deterministic model's band comes from its validation residuals alone).

Cross-fitted: fold k calibrates on the validation sessions of *every* fold (each predicted by
the model of the fold that held it out for validation) except those fold k tests. One fold's
validation runner alone is too few: far from a known HR the error is mostly the runner's level
offset, one draw per runner, and a variance estimated from one draw is usually too small
(chi-square with one degree of freedom: median 0.45 of its mean), which left the generative
band at 76-85% on held-out synthetic runners. Pooling the folds' out-of-sample residuals, in
the spirit of CV+ (Barber et al., 2021), gives every fold several runners' worth while never
touching its own test sessions. A single-fold split (chronological) is unchanged."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split, predict_per_fold
from wearjax.eval.calibration import fit_calibration
from wearjax.eval.protocols import PROTOCOLS, given_mask


def horizons(shape: tuple[int, ...], window: int) -> dict[str, jax.Array]:
    """Per protocol, the seconds since the model last started from a known HR, `shape` (`[...,
    T]`): the window's first second (standard), the session's (generative: the rollout starts
    at second 0 from the first measured HR)."""
    t = jnp.broadcast_to(jnp.arange(shape[-1], dtype=jnp.float32), shape)
    return {"standard": t % window, "generative": t}


def calibrate_bands(
    predict: Callable, model, fold, data, split: Split, window: int, pred: dict, *, batch=8
) -> dict:
    """Per fold and protocol, `fit_calibration` on the validation sessions of all folds but
    those the fold tests (see the module docstring), each predicted as test sessions are
    (`predict`, as for `cv.predict_held_out`; `data` has `hr` and `mask` `[S, T]`), applied to
    `pred` (`{protocol}` and, optionally, `{protocol}_var` `[S, T]`). Returns `pred` with
    `{protocol}_var` calibrated and the model's own variance (zeros when it has none) as
    `{protocol}_var_model`."""
    val, idx, ok = predict_per_fold(
        predict, model, fold, data, split, batch=batch, which="validation"
    )
    idx, ok = idx.reshape(-1), ok.reshape(-1)  # the folds' validation tables pooled: [K M]
    val = {k: v.reshape((-1,) + v.shape[2:]) for k, v in val.items()}
    hr, mask = data.hr[idx], data.mask[idx] & jnp.asarray(ok)[:, None]  # [K M, T]
    usable = jnp.asarray(~split.test[:, idx])  # [K, K M]: residuals fold k may calibrate on
    horizon = horizons(data.mask.shape, window)
    owner = np.maximum(split.owner, 0)
    fit = jax.jit(jax.vmap(fit_calibration, in_axes=(None, None, None, 0, None)))
    out = dict(pred)
    for p in PROTOCOLS:
        scored = mask & ~given_mask(mask, window, p)
        val_var = val.get(f"{p}_var", jnp.zeros_like(val[p]))
        cal = fit(val[p], val_var, hr, scored[None] & usable[:, :, None], horizon[p][idx])
        cal = jax.tree_util.tree_map(lambda c: c[owner][:, None], cal)  # each session's fold
        own = np.asarray(pred.get(f"{p}_var", np.zeros_like(pred[p])))
        out[f"{p}_var_model"] = own
        out[f"{p}_var"] = np.asarray(cal.variance(jnp.asarray(own), horizon[p]))
    return out
