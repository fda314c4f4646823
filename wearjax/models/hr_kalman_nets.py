"""The learned pieces of the HR Kalman model's filter (`hr_kalman.HRKalman`): the transition
f_tr and the scalar gain f_gain. Both start as their textbook forms (a constant-velocity prior,
the scalar Kalman gain) with a learned correction initialised near zero."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from wearjax.models.backbone import dense


class Transition(eqx.Module):
    """f_tr: constant-velocity prior plus a learned correction from (s_t, z)."""

    context: eqx.nn.Linear
    state: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, hidden: int, width: int = 32, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.context = eqx.nn.Linear(hidden, width, key=k1)
        self.state = eqx.nn.Linear(2, width, use_bias=False, key=k2)
        out = eqx.nn.Linear(width, 2, key=k3)
        self.out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (0.01 * out.weight, 0 * out.bias))

    def project(self, s: Float[Array, "*batch hidden"]) -> Float[Array, "*batch width"]:
        """The part that depends only on s_t, computed for all seconds outside the scan."""
        return dense(self.context.weight, self.context.bias, s)

    def __call__(self, z: Float[Array, " 2"], context: Float[Array, " width"]):
        a = jax.nn.leaky_relu(context + self.state.weight @ z)
        prior = jnp.stack([z[0] + z[1], z[1]])
        return prior + self.out.weight @ a + self.out.bias


class Gain(eqx.Module):
    """f_gain: a scalar gain in (0, 1) from the predicted covariance and observation noise.

    A learned correction, starting at zero, to the logit of the scalar Kalman gain
    P^-_g / (P^-_g + R): k = sigmoid(log P^-_g - log R + MLP(log P^-, log R))."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, width: int = 16, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(3, width, key=k1)
        out = eqx.nn.Linear(width, 1, key=k2)
        self.out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (0.01 * out.weight, 0 * out.bias))

    def __call__(self, var_pred: Float[Array, " 2"], r: Float[Array, ""]) -> Float[Array, ""]:
        u = jnp.log(jnp.concatenate([var_pred, r[None]]))
        return jax.nn.sigmoid(u[0] - u[2] + self.out(jax.nn.tanh(self.hidden(u)))[0])
