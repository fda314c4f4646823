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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


class LearnedGainState(NamedTuple):
    mean: Float[Array, " state"]
    var: Float[Array, " state"]


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
) -> LearnedGainStep:
    """One predict/update step of the learned-gain filter (equations in the module docstring)."""
    mean_pred = transition(state.mean, context)
    var_pred = state.var + q
    k = jnp.where(observed, gain(var_pred, r), jnp.zeros((), var_pred.dtype))
    nu = y - mean_pred[0]
    mean = mean_pred + update_weights * (k * nu)
    var = var_pred * (1.0 - update_weights * k)
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
) -> LearnedGainStep:
    """Run `learned_gain_step` over time with one `lax.scan`; returns stacked steps `[T, ...]`.

    `contexts` is a pytree with leading time axis. Everything that does not depend on the
    state (observations, noises, context projections) should be computed before the call.
    Bounds may be constant `[D]` or per step `[T, D]`.
    """
    t = y.shape[0]
    observed = jnp.ones((t,), bool) if observed is None else observed
    lower = None if lower is None else jnp.broadcast_to(lower, (t, init.mean.shape[0]))
    upper = None if upper is None else jnp.broadcast_to(upper, (t, init.mean.shape[0]))

    def body(state, inputs):
        c, q_t, r_t, y_t, o_t, lo, hi = inputs
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
        )
        return LearnedGainState(out.mean, out.var), out

    _, steps = jax.lax.scan(body, init, (contexts, q, r, y, observed, lower, upper))
    return steps
