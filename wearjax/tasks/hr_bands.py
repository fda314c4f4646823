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
A chronological split (`Split.chronological`) calibrates each fold on the test sessions of
the folds before it, so a band never uses the future; its first fold, and a single-fold split,
have no such fold and calibrate on their own validation sessions (the weaker choice above).
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

# one calibration per fold, vmapped; one jitted program for every model of a study (a wrapper
# made per call would compile again for each)
_fit_per_fold = jax.jit(jax.vmap(fit_calibration, in_axes=(None, None, None, 0, None)))


def horizons(mask: jax.typing.ArrayLike, window: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Per protocol, the seconds since the model last started from a known HR, `[..., T]`
    like `mask`. Standard: since the start of the window whose HR the window actually starts
    from (`standard_initial`): its own first second when observed, else the last observed
    window start before it, else the session's first observed second, so the band keeps
    growing through a gap that hides window starts. Generative: since the session's first
    second (the rollout starts there from the first measured HR). In `dtype` (the
    predictions'; `eval.calibration` casts a horizon to theirs in any case); the seconds are
    counted in JAX's default integer, as `starting_window`'s indices (int64 under x64)."""
    mask = jnp.asarray(mask, bool)
    t = jnp.arange(mask.shape[-1])

    @partial(jnp.vectorize, signature="(t)->(t)")
    def standard(m):
        last = starting_window(m, window)
        origin = jnp.where(last >= 0, last * window, jnp.argmax(m))  # first observed second
        return jnp.maximum(t - jnp.repeat(origin, window)[: t.shape[0]], 0)

    generative = jnp.broadcast_to(t, mask.shape)
    return {
        "standard": standard(mask).astype(dtype),
        "generative": generative.astype(dtype),
    }


def calibrate_bands(
    predict: Callable, model, fold, data, split: Split, window: int, pred: dict, *, batch=8
) -> dict:
    """Per fold and protocol, `fit_calibration` on out-of-sample residuals (the module
    docstring: the test sessions of the folds `split.calibrate_from` names, by default every
    other fold; a fold with none, its validation sessions predicted by `predict`, as for
    `cv.predict_held_out`), applied to the fold's test sessions
    in `pred` (`{protocol}` and, optionally, `{protocol}_var` `[S, T]`, each session predicted
    by its own fold). `data` has `hr` and `mask` `[S, T]`. Returns `pred` with `{protocol}_var`
    calibrated and the model's own variance (zeros when it has none) as
    `{protocol}_var_model`. A session no fold tests has no band: its variance is NaN."""
    horizon = horizons(data.mask, window)
    owner = split.owner
    k = split.n_folds
    sources = split.calibrate_from
    sources = ~np.eye(k, dtype=bool) if sources is None else np.asarray(sources, bool)
    # [K, S]: fold k calibrates on session s when a fold it draws on tests s
    usable = (owner >= 0)[None, :] & sources[:, np.maximum(owner, 0)]
    rows = {p: (jnp.asarray(pred[p]), _model_var(pred, p)) for p in PROTOCOLS}
    hr, mask, h = data.hr, data.mask, horizon
    lacking = ~usable.any(1)
    if lacking.any():  # those folds calibrate on their own validation sessions
        val, idx, ok = predict_per_fold(
            predict, model, fold, data, split, batch=batch, which="validation"
        )
        m = idx.shape[1]
        own = np.zeros((k, k * m), bool)
        own[np.repeat(np.arange(k), m), np.arange(k * m)] = (lacking[:, None] & ok).reshape(-1)
        usable = np.concatenate([usable, own], axis=1)
        idx = jnp.asarray(idx.reshape(-1))
        flat = {key: v.reshape((-1,) + v.shape[2:]) for key, v in val.items()}
        extra = {p: (flat[p], _model_var(flat, p)) for p in PROTOCOLS}
        rows = {
            p: tuple(jnp.concatenate(pair) for pair in zip(rows[p], extra[p], strict=True))
            for p in PROTOCOLS
        }
        hr, mask = jnp.concatenate([hr, data.hr[idx]]), jnp.concatenate([mask, data.mask[idx]])
        h = {p: jnp.concatenate([horizon[p], horizon[p][idx]]) for p in PROTOCOLS}
    out = dict(pred)
    for p in PROTOCOLS:
        scored = mask & ~given_mask(mask, window, p)
        cal = _fit_per_fold(*rows[p], hr, scored[None] & jnp.asarray(usable)[:, :, None], h[p])
        cal = jax.tree_util.tree_map(lambda c: c[np.maximum(owner, 0)][:, None], cal)
        own = np.asarray(_model_var(pred, p))
        out[f"{p}_var_model"] = own
        var = np.asarray(cal.variance(jnp.asarray(own), horizon[p]))
        out[f"{p}_var"] = np.where((owner >= 0)[:, None], var, np.nan)  # no fold tests it
    return out


def _model_var(pred: dict, protocol: str):
    """The model's own variance of a protocol's predictions, zeros for a deterministic one."""
    var = pred.get(f"{protocol}_var")
    return jnp.zeros_like(jnp.asarray(pred[protocol])) if var is None else jnp.asarray(var)
