"""The learned-gain filter of the HR and VO2 models, as a component users can import.

State: a mean `z [D]` whose first component is observed, and a diagonal covariance `p [D]`.
One step, given a context `c_t` (anything the learned functions need, e.g. a GRU state),
process noise `q_t [D]`, observation noise `r_t` and an observation `y_t`:

    z^- = transition(z, c_t)                     prediction
    p^- = p + q_t                                diagonal covariance prediction
    k   = gain(p^-, r_t)                         learned scalar gain in (0, 1)
    nu  = y_t - z^-_0                            innovation
    z   = z^- + w * k * nu                       w = (1, 0.5) for (HR, HR velocity)
    p   = p^- * (1 - w * k)

(Lab-to-Wrist, appendix B.2: g += k nu, g_dot += 0.5 k nu, P <- (P + Q) diag(1 - k, 1 - 0.5 k).)
Where `observed[t]` is False the update is skipped (k = 0): the state is the prediction, so a
sensor dropout is bridged by the learned dynamics. Optional `lower`/`upper` bounds clip the state
(physiological range). `transition` and `gain` are any callables, e.g. `eqx.Module`s.

Measured observations (optional). A direct measurement `m_t` of the first component (same units)
with noise variance `R^m_t` is assimilated after the learned update by a second scalar update
with the exact Kalman gain of the diagonal state and the same damped weights `w`:

    k_m = p_0 / (p_0 + R^m_t)                    p, z: the state after the learned update
    z  += w * k_m * (m_t - z_0)
    p  *= 1 - w * k_m

(`measurement_update`). Where `measured[t]` is False this update is skipped (k_m = 0) and the
measurement's value is ignored, so a dropout of the measuring sensor (optical HR) is bridged by
the learned dynamics; the bounds clip the state after both updates. Without a measurement the
filter is exactly the one above.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from wearjax.errors import WearjaxDataError


class LearnedGainState(NamedTuple):
    mean: Float[Array, " state"]
    var: Float[Array, " state"]


def measurement_update(
    state: LearnedGainState,
    measurement: Float[Array, ""],
    measured: Bool[Array, ""] | bool,
    measurement_noise: Float[Array, ""],
    update_weights: Float[Array, " state"],
) -> LearnedGainState:
    """Assimilate a direct measurement of the state's first component (module docstring).

    `k_m = var[0] / (var[0] + measurement_noise)`, `mean += w k_m (measurement - mean[0])`,
    `var *= 1 - w k_m`; the identity where `measured` is False, whatever `measurement` and
    `measurement_noise` hold there (NaN included: both are masked before they are used, so
    values and gradients stay finite).
    """
    zero = jnp.zeros((), state.var.dtype)
    # an unused noise may be NaN: through the untaken branch its gradient would still be NaN
    noise = jnp.where(measured, measurement_noise, 1.0)
    k = jnp.where(measured, state.var[0] / (state.var[0] + noise), zero)
    nu = jnp.where(measured, measurement - state.mean[0], zero)
    mean = state.mean + update_weights * (k * nu)
    var = state.var * (1.0 - update_weights * k)
    return LearnedGainState(mean, var)


class LearnedGainStep(NamedTuple):
    """What the filter emits at each step: the updated state, the gain and the innovation."""

    mean: Float[Array, " state"]
    var: Float[Array, " state"]
    gain: Float[Array, ""]
    innovation: Float[Array, ""]


def learned_gain_step(
    state: LearnedGainState,
    context: Any,
    q: Float[Array, " state"],
    r: Float[Array, ""],
    y: Float[Array, ""],
    observed: Bool[Array, ""] | bool,
    *,
    transition: Callable[[Array, Any], Array],
    gain: Callable[[Array, Array], Array],
    update_weights: Float[Array, " state"],
    lower: Float[Array, " state"] | None = None,
    upper: Float[Array, " state"] | None = None,
    measurement: Float[Array, ""] | None = None,
    measured: Bool[Array, ""] | bool | None = None,
    measurement_noise: Float[Array, ""] | float | None = None,
) -> LearnedGainStep:
    """One predict/update step of the learned-gain filter (equations in the module docstring).

    With a `measurement` (and its `measurement_noise` variance), `measurement_update` follows
    the learned update where `measured` (default True) holds. `gain` and `innovation` are those
    of the learned update (both 0 where not `observed`, where `y` may be NaN).
    """
    _check_measurement(measurement, measured, measurement_noise)
    mean_pred = transition(state.mean, context)
    var_pred = state.var + q
    r = jnp.where(observed, r, 1.0)  # as `y`: an unused r (NaN, say) must not reach gradients
    k = jnp.where(observed, gain(var_pred, r), jnp.zeros((), var_pred.dtype))
    # where not observed, y may be NaN: 0 * NaN would spread it (and its gradient) everywhere
    nu = jnp.where(observed, jnp.where(observed, y, mean_pred[0]) - mean_pred[0], 0.0)
    mean = mean_pred + update_weights * (k * nu)
    var = var_pred * (1.0 - update_weights * k)
    if measurement is not None:
        measured = True if measured is None else measured
        mean, var = measurement_update(
            LearnedGainState(mean, var), measurement, measured, measurement_noise, update_weights
        )
    if lower is not None or upper is not None:
        mean = jnp.clip(mean, lower, upper)
    return LearnedGainStep(mean, var, k, nu)


def learned_gain_filter(
    init: LearnedGainState,
    contexts: Any,
    q: Float[Array, "time state"],
    r: Float[Array, " time"],
    y: Float[Array, " time"],
    observed: Bool[Array, " time"] | None = None,
    *,
    transition: Callable[[Array, Any], Array],
    gain: Callable[[Array, Array], Array],
    update_weights: Float[Array, " state"],
    lower: Float[Array, "time state"] | Float[Array, " state"] | None = None,
    upper: Float[Array, "time state"] | Float[Array, " state"] | None = None,
    measurement: Float[Array, " time"] | None = None,
    measured: Bool[Array, " time"] | None = None,
    measurement_noise: Float[Array, " time"] | Float[Array, ""] | float | None = None,
) -> LearnedGainStep:
    """Run `learned_gain_step` over time with one `lax.scan`; returns stacked steps `[T, ...]`.

    `contexts` is a pytree with leading time axis. Everything that does not depend on the
    state (observations, noises, context projections) should be computed before the call.
    Bounds may be constant `[D]` or per step `[T, D]`. Optional measurements `[T]` of the first
    component, assimilated where `measured [T]` (default: every step) with noise variance
    `measurement_noise` (scalar or `[T]`; required with a measurement).
    """
    _check_measurement(measurement, measured, measurement_noise)
    _check_observed(y, observed, "y", "observed")
    if measurement is not None:
        _check_observed(measurement, measured, "measurement", "measured")
    t = y.shape[0]
    observed = jnp.ones((t,), bool) if observed is None else observed
    lower = None if lower is None else jnp.broadcast_to(lower, (t, init.mean.shape[0]))
    upper = None if upper is None else jnp.broadcast_to(upper, (t, init.mean.shape[0]))
    if measurement is not None:
        measured = jnp.ones((t,), bool) if measured is None else measured
        measurement_noise = jnp.broadcast_to(jnp.asarray(measurement_noise, init.var.dtype), (t,))

    def body(state, inputs):
        c, q_t, r_t, y_t, o_t, lo, hi, m_t, mo_t, mr_t = inputs
        out = learned_gain_step(
            state,
            c,
            q_t,
            r_t,
            y_t,
            o_t,
            transition=transition,
            gain=gain,
            update_weights=update_weights,
            lower=lo,
            upper=hi,
            measurement=m_t,
            measured=mo_t,
            measurement_noise=mr_t,
        )
        return LearnedGainState(out.mean, out.var), out

    xs = (contexts, q, r, y, observed, lower, upper, measurement, measured, measurement_noise)
    _, steps = jax.lax.scan(body, init, xs)
    return steps


def _check_observed(values, where, name: str, mask_name: str) -> None:
    """Refuse NaN or inf in concrete `values [T]` at a step where `where [T]` (default every
    step) holds: one would spread through every later state. Traced inputs are the caller's
    to mask (the models mask theirs before the scan)."""
    if any(isinstance(a, jax.core.Tracer) for a in (values, where)):
        return
    bad = ~np.isfinite(np.asarray(values)) & (True if where is None else np.asarray(where))
    if np.any(bad):
        raise WearjaxDataError(
            f"{name} is not finite (NaN or inf) at step {int(np.argmax(bad))}, where "
            f"{mask_name} is True; set {mask_name}[t] = False where it is missing"
        )


def _check_measurement(measurement, measured, measurement_noise) -> None:
    if measurement is None and (measured is not None or measurement_noise is not None):
        raise ValueError("`measured` and `measurement_noise` need a `measurement`")
    if measurement is not None and measurement_noise is None:
        raise ValueError("a `measurement` needs its `measurement_noise` (a variance)")
