"""The HR task's baselines (Lab-to-Wrist Table 1): (a) the known HR held, (b) a linear
regression of HR on the features, fitted per fold on its training runners. `data` and `fold`
are `tasks.hr`'s `HRData` and `HRFold`, `config` its `HRStudyConfig`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.eval.protocols import hold_baseline


@jax.jit
def _linear_fit(features, hr, weight, ridge):
    """Weighted ridge regression HR ~ [1, features] (one fold)."""
    x = jnp.concatenate([jnp.ones(features.shape[:-1] + (1,), features.dtype), features], -1)
    w = weight.astype(features.dtype)
    xtx = jnp.einsum("stf,st,stg->fg", x, w, x)
    xty = jnp.einsum("stf,st,st->f", x, w, hr)
    reg = ridge * jnp.sum(w) * jnp.eye(x.shape[-1], dtype=x.dtype).at[0, 0].set(0.0)
    return jnp.linalg.solve(xtx + reg, xty)


def linear_baseline(data, fold, split: Split, ridge: float) -> np.ndarray:
    """Baseline (b): HR regressed linearly on the (normalised) features of each second,
    fitted per fold on its training runners; the same prediction serves both protocols."""

    def one(normalizer, w):
        f = normalizer.apply(data.features)
        beta = _linear_fit(f, data.hr, w, ridge)
        return beta[0] + f @ beta[1:]

    train_weight = jnp.asarray(split.train)[:, :, None] & data.mask[None]
    preds = jax.lax.map(lambda a: one(*a), (fold.normalizer, train_weight))  # [K, S, T]
    owner = np.maximum(split.owner, 0)  # fold that held each session out
    return np.asarray(preds)[owner, np.arange(len(owner))]


def baselines(data, fold, split: Split, config) -> dict:
    """Baseline predictions per protocol: (a) the known HR held, (b) linear regression."""
    lin = linear_baseline(data, fold, split, config.ridge)
    hold = {
        p: np.asarray(
            jax.vmap(lambda h, m, p=p: hold_baseline(h, m, config.window, p))(data.hr, data.mask)
        )
        for p in ("standard", "generative")
    }
    return {"baseline_hold": hold, "baseline_linear": {"standard": lin, "generative": lin}}
