"""Training losses. Masked averages come from `wearjax.eval.metrics`, the one place they live."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from wearjax.eval.metrics import mae


def window_moments(
    hr: Float[Array, "*batch window time"], mask: Bool[Array, "*batch window time"]
) -> tuple[Array, Array, Array]:
    """Masked mean and (population) SD of HR in each window, and whether the window has at
    least two observed seconds (the moments of other windows are not used)."""
    n = jnp.sum(mask, axis=-1)
    safe_n = jnp.maximum(n, 1).astype(hr.dtype)
    mu = jnp.sum(jnp.where(mask, hr, 0.0), axis=-1) / safe_n
    dev = jnp.where(mask, hr - mu[..., None], 0.0)
    sigma = jnp.sqrt(jnp.sum(dev**2, axis=-1) / safe_n)
    return mu, sigma, n >= 2


def hr_kalman_loss(
    hr_pred: Float[Array, "*batch time"],
    mu_hat: Float[Array, "*batch window"],
    sigma_hat: Float[Array, "*batch window"],
    hr: Float[Array, "*batch time"],
    mask: Bool[Array, "*batch time"],
    given: Bool[Array, "*batch time"],
    window: int,
    aux_weight: float = 0.1,
) -> Float[Array, ""]:
    """Lab-to-Wrist HR loss: masked MAE + aux_weight (|mu_hat - mu| + |sigma_hat - sigma|).

    The MAE runs over observed seconds that were not given to the model (`given`: the known
    initial samples); `mu`, `sigma` are each window's observed HR mean and SD.
    """
    shape = hr.shape[:-1] + (hr.shape[-1] // window, window)
    mu, sigma, ok = window_moments(hr.reshape(shape), mask.reshape(shape))
    aux = jnp.where(jnp.any(ok), mae(mu_hat, mu, ok) + mae(sigma_hat, sigma, ok), 0.0)
    scored = mask & ~given
    main = jnp.where(jnp.any(scored), mae(hr_pred, hr, scored), 0.0)
    return main + aux_weight * aux
