"""Predictive bands calibrated on out-of-sample residuals.

A filter's own variance describes the noise its equations assume, not the errors it makes on a
new runner (trained by MAE alone, the HR Kalman model's +-2 SD band covered 13-16% of true HR
on the shared runs), and a deterministic model (the HR ODE) has none. Each fold therefore
fits, on residuals of sessions it never trained or stopped on and never its own test sessions
(the other folds' test sessions, `tasks.hr_bands`; with one fold, its validation sessions),
a predictive variance of the form

    s^2(t) = kappa^2 (a v(t) + b + c h(t) H / (h(t) + H)),        H = GROWTH_TIME

where `v` is the model's variance (zero for a deterministic model), `h` the seconds since HR was
last known under the protocol (the window start, the session's first second, the last measured
second) and `a, b, c >= 0` minimise the Gaussian negative log-likelihood of those
residuals (Adam in log space, `optax`). The growth term says that errors grow with the time
since the last known HR and level off after about `H`, when the prediction no longer depends on
that HR. Then `kappa` rescales the band so that 95% of those residuals fall within
+-1.96 s (a split-conformal-style step: it keeps the coverage near its target when residuals
are heavier tailed than a Gaussian; the guarantee is approximate, since a session's residuals
are correlated and the calibration runners are few). Pure JAX; `vmap` it over folds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float

from wearjax.models.hr_base import last_known

GROWTH_TIME = 600.0  # seconds over which the horizon term levels off
COVERAGE = 0.95
Z = 1.959964  # the Gaussian's two-sided 95% quantile


class Calibration(NamedTuple):
    """Coefficients of the calibrated variance (see the module docstring); stacked over folds
    where fitted per fold."""

    model: Float[Array, "*fold"]  # kappa^2 a
    floor: Float[Array, "*fold"]  # kappa^2 b, bpm^2
    growth: Float[Array, "*fold"]  # kappa^2 c, bpm^2 per second of horizon

    def variance(
        self, var: Float[Array, "*batch time"], horizon: Float[Array, "*batch time"]
    ) -> Float[Array, "*batch time"]:
        """Calibrated predictive variance from the model's `var` and the `horizon` (s, cast to
        `var`'s dtype)."""
        horizon = jnp.asarray(horizon, jnp.result_type(var))
        return _variance(jnp.stack([self.model, self.floor, self.growth]), var, horizon)


def _variance(coef, var, horizon):
    h = horizon * GROWTH_TIME / (horizon + GROWTH_TIME)
    return coef[0] * var + coef[1] + coef[2] * h


def seconds_since(known: Bool[Array, " time"], dtype=jnp.float32) -> Float[Array, " time"]:
    """Seconds since the last `known` second (counted from the first known one before it), in
    `dtype` (the predictions'; `fit_calibration` casts a horizon to theirs in any case)."""
    return jnp.abs(jnp.arange(known.shape[0]) - last_known(known)).astype(dtype)


def fit_calibration(
    pred: Float[Array, "*batch time"],
    var: Float[Array, "*batch time"],
    hr: Float[Array, "*batch time"],
    scored: Bool[Array, "*batch time"],
    horizon: Float[Array, "*batch time"],
    *,
    steps: int = 300,
    learning_rate: float = 0.05,
) -> Calibration:
    """Fit the calibrated variance to the residuals `hr - pred` on the `scored` seconds.

    `var` is the model's variance (zeros for a deterministic model), `horizon` the seconds since
    HR was last known. With no scored second the result is NaN: a fold with no validation data
    has nothing to calibrate on. It computes in `pred`'s dtype: `var`, `hr` and `horizon` are
    cast to it (float32 seconds from `seconds_since` or `tasks.hr_bands.horizons` are exact)."""
    if not (pred.shape == var.shape == hr.shape == scored.shape == horizon.shape):
        raise ValueError(
            f"pred {pred.shape}, var {var.shape}, hr {hr.shape}, scored {scored.shape} and "
            f"horizon {horizon.shape} must share one shape"
        )
    dtype = jnp.result_type(pred)
    var, hr, horizon = (jnp.asarray(a, dtype) for a in (var, hr, horizon))
    # NaN outside `scored` is ignored: in the residual, the variance and the horizon alike
    r2 = jnp.where(scored, jnp.square(hr - pred), 0.0)
    var, horizon = jnp.where(scored, var, 0.0), jnp.where(scored, horizon, 0.0)
    w = scored.astype(r2.dtype)
    n = jnp.sum(w)
    mean_r2 = jnp.sum(w * r2) / n
    h = horizon * GROWTH_TIME / (horizon + GROWTH_TIME)
    mean_h = jnp.maximum(jnp.sum(w * h) / n, 1.0)

    def nll(u):
        s2 = _variance(jnp.exp(u), var, horizon) + 1e-6
        return 0.5 * jnp.sum(w * (jnp.log(s2) + r2 / s2)) / n

    # start: the model's variance as it is, half the residual variance in each other term
    u0 = jnp.log(jnp.stack([1.0, 0.5 * mean_r2, 0.5 * mean_r2 / mean_h]).astype(r2.dtype))
    optimizer = optax.adam(learning_rate)

    def step(carry, _):
        u, state = carry
        grad = jax.grad(nll)(u)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int count with floats
            updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(u, updates), state), None

    (u, _), _ = jax.lax.scan(step, (u0, optimizer.init(u0)), None, length=steps)
    coef = jnp.exp(u)
    z = jnp.sqrt(r2 / (_variance(coef, var, horizon) + 1e-6))
    kappa = jnp.nanquantile(jnp.where(scored, z, jnp.nan), COVERAGE) / Z
    coef = coef * jnp.square(kappa)
    return Calibration(coef[0], coef[1], coef[2])
