"""Training losses of the HR and VO2 tasks (Lab-to-Wrist appendix B). Masked averages come from
`wearjax.eval.metrics`, the one place they live."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

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


def window_statistics(
    v: Float[Array, "*batch time"],
    mask: Bool[Array, "*batch time"],
    starts: Int[Array, " window"],
    window: int,
) -> tuple[Array, Array, Array, Array]:
    """Mean, (population) SD and Delta95, the 95th percentile of |v_t - v_{t-1}|, of each
    `window`-second window starting at `starts`, and whether the window is wholly observed
    (the statistics of other windows are not used)."""
    idx = starts[:, None] + jnp.arange(window, dtype=starts.dtype)[None, :]
    w = v[..., idx]  # [*batch, N, W]
    ok = jnp.all(mask[..., idx], axis=-1)
    mu = jnp.mean(w, axis=-1)
    sigma = jnp.std(w, axis=-1)
    delta95 = jnp.percentile(jnp.abs(jnp.diff(w, axis=-1)), 95.0, axis=-1)
    return mu, sigma, delta95, ok


def vo2_kalman_loss(
    vo2_pred: Float[Array, "*batch time"],
    window_pred: tuple[Array, Array, Array],
    vo2: Float[Array, "*batch time"],
    mask: Bool[Array, "*batch time"],
    given: Bool[Array, "*batch time"],
    starts: Int[Array, " window"],
    weights,
    *,
    window: int = 60,
    first_weight: float = 1.0,
    second_weight: float = 1.0,
    unit: float = 1000.0,
) -> Float[Array, ""]:
    """Lab-to-Wrist VO2 loss (appendix B.5), in units of `unit` mL/min (L/min by default):

        base MAE + dynamics (first_weight |D1| + second_weight |D2|)
                 + aux (|mu_hat - mu| + |sigma_hat - sigma| + |Delta95_hat - Delta95|)

    with `weights` a `train.schedules.CurriculumWeights` (base, dynamics, aux). The MAE runs over
    observed seconds not `given` to the model; D1, D2 are the errors of the predicted first and
    second differences where every second involved is observed (our reading of the published
    "|first differences|": the dynamics should match the measured ones, not vanish); the
    window statistics (`window_statistics`) are those of the windows at `starts` (overlapping
    in training), predicted by the model as `window_pred = (mu_hat, sigma_hat, Delta95_hat)`.
    """
    pred, true = vo2_pred / unit, vo2 / unit
    scored = mask & ~given
    main = jnp.where(jnp.any(scored), mae(pred, true, scored), 0.0)
    m1 = mask[..., 1:] & mask[..., :-1]
    d1p, d1t = jnp.diff(pred, axis=-1), jnp.diff(true, axis=-1)
    first = jnp.where(jnp.any(m1), mae(d1p, d1t, m1), 0.0)
    m2 = m1[..., 1:] & m1[..., :-1]
    second = jnp.where(jnp.any(m2), mae(jnp.diff(d1p, axis=-1), jnp.diff(d1t, axis=-1), m2), 0.0)
    stats = window_statistics(true, mask, starts, window)
    ok = stats[3]
    aux = sum(
        (
            jnp.where(jnp.any(ok), mae(p / unit, t, ok), 0.0)
            for p, t in zip(window_pred, stats[:3], strict=True)
        ),
        jnp.zeros((), pred.dtype),
    )
    dynamics = first_weight * first + second_weight * second
    return weights.base * main + weights.dynamics * dynamics + weights.aux * aux
