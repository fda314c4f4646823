"""Predictive bands of the HR models, calibrated per fold on its validation sessions
(`eval.calibration`) and applied to the sessions it tests; for every HR kind, the personalised
ODE included (a deterministic model's band comes from its validation residuals alone)."""

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
    """Per fold and protocol, `fit_calibration` on the fold's validation sessions predicted as
    its test sessions are (`predict`, as for `cv.predict_held_out`; `data` has `hr` and `mask`
    `[S, T]`), applied to `pred` (`{protocol}` and, optionally, `{protocol}_var` `[S, T]`).
    Returns `pred` with `{protocol}_var` calibrated and the model's own variance (zeros when it
    has none) as `{protocol}_var_model`."""
    val, idx, ok = predict_per_fold(
        predict, model, fold, data, split, batch=batch, which="validation"
    )
    hr, mask = data.hr[idx], data.mask[idx] & jnp.asarray(ok)[..., None]  # [K, M, T]
    horizon = horizons(data.mask.shape, window)
    owner = np.maximum(split.owner, 0)
    out = dict(pred)
    for p in PROTOCOLS:
        scored = mask & ~given_mask(mask, window, p)
        val_var = val.get(f"{p}_var", jnp.zeros_like(val[p]))
        cal = jax.jit(jax.vmap(fit_calibration))(val[p], val_var, hr, scored, horizon[p][idx])
        cal = jax.tree_util.tree_map(lambda c: c[owner][:, None], cal)  # each session's fold
        own = np.asarray(pred.get(f"{p}_var", np.zeros_like(pred[p])))
        out[f"{p}_var_model"] = own
        out[f"{p}_var"] = np.asarray(cal.variance(jnp.asarray(own), horizon[p]))
    return out
