"""Predictive bands of the HR models, calibrated per fold on out-of-sample residuals
(`eval.calibration`) and applied to the sessions it tests; for every HR kind, the personalised
ODE included (a deterministic model's band comes from residuals alone).

Cross-fitted, in the spirit of CV+ (Barber et al., 2021): with several folds, fold k
calibrates on the test sessions of every other fold, each predicted by the model that held it
out, and never on its own test sessions. Two simpler choices fell short on held-out synthetic
runners (generative band 76-86%, target 93-97%): a fold's own validation runner alone is one
draw of a new runner's level offset (a variance estimated from one draw is usually too small),
and every fold's validation sessions, pooled, are the ones early stopping chose the epoch on,
so their errors are smaller than a new runner's. Test residuals of the other folds are neither.
A single-fold split (chronological) has no other fold: it calibrates on its own validation
sessions, and says so in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split, predict_per_fold
from wearjax.eval.calibration import fit_calibration
from wearjax.eval.protocols import PROTOCOLS, given_mask, starting_window


def horizons(mask: jax.typing.ArrayLike, window: int) -> dict[str, jax.Array]:
    """Per protocol, the seconds since the model last started from a known HR, `[..., T]`
    like `mask`. Standard: since the start of the window whose HR the window actually starts
    from (`standard_initial`): its own first second when observed, else the last observed
    window start before it, else the session's first observed second, so the band keeps
    growing through a gap that hides window starts. Generative: since the session's first
    second (the rollout starts there from the first measured HR)."""
    mask = jnp.asarray(mask, bool)
    t = jnp.arange(mask.shape[-1], dtype=jnp.int32)

    @partial(jnp.vectorize, signature="(t)->(t)")
    def standard(m):
        last = starting_window(m, window)
        origin = jnp.where(last >= 0, last * window, jnp.argmax(m))  # first observed second
        return jnp.maximum(t - jnp.repeat(origin, window)[: t.shape[0]], 0)

    generative = jnp.broadcast_to(t, mask.shape)
    return {
        "standard": standard(mask).astype(jnp.float32),
        "generative": generative.astype(jnp.float32),
    }


def calibrate_bands(
    predict: Callable, model, fold, data, split: Split, window: int, pred: dict, *, batch=8
) -> dict:
    """Per fold and protocol, `fit_calibration` on out-of-sample residuals (the module
    docstring: the other folds' test sessions, or with one fold its validation sessions
    predicted by `predict`, as for `cv.predict_held_out`), applied to the fold's test sessions
    in `pred` (`{protocol}` and, optionally, `{protocol}_var` `[S, T]`, each session predicted
    by its own fold). `data` has `hr` and `mask` `[S, T]`. Returns `pred` with `{protocol}_var`
    calibrated and the model's own variance (zeros when it has none) as
    `{protocol}_var_model`. A session no fold tests has no band: its variance is NaN."""
    horizon = horizons(data.mask, window)
    owner = split.owner
    fit = jax.jit(jax.vmap(fit_calibration, in_axes=(None, None, None, 0, None)))
    if split.n_folds > 1:  # the other folds' test sessions
        source = {k: jnp.asarray(v) for k, v in pred.items()}
        hr, mask, h = data.hr, data.mask & jnp.asarray(owner >= 0)[:, None], horizon
        usable = (owner[None, :] >= 0) & (owner[None, :] != np.arange(split.n_folds)[:, None])
    else:  # one fold: its validation sessions
        val, idx, ok = predict_per_fold(
            predict, model, fold, data, split, batch=batch, which="validation"
        )
        idx, ok = idx.reshape(-1), ok.reshape(-1)
        source = {k: v.reshape((-1,) + v.shape[2:]) for k, v in val.items()}
        hr, mask = data.hr[idx], data.mask[idx] & jnp.asarray(ok)[:, None]
        h = {p: horizon[p][idx] for p in PROTOCOLS}
        usable = np.ones((1, len(idx)), bool)
    out = dict(pred)
    for p in PROTOCOLS:
        scored = mask & ~given_mask(mask, window, p)
        var = source.get(f"{p}_var", jnp.zeros_like(source[p]))
        cal = fit(source[p], var, hr, scored[None] & jnp.asarray(usable)[:, :, None], h[p])
        cal = jax.tree_util.tree_map(lambda c: c[np.maximum(owner, 0)][:, None], cal)
        own = np.asarray(pred.get(f"{p}_var", np.zeros_like(pred[p])))
        out[f"{p}_var_model"] = own
        var = np.asarray(cal.variance(jnp.asarray(own), horizon[p]))
        out[f"{p}_var"] = np.where((owner >= 0)[:, None], var, np.nan)  # no fold tests it
    return out
