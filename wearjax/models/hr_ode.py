"""Neural ODE model of heart rate during running (Lab-to-Wrist, appendix B.1).

The same encoder + GRU backbone as the Kalman model (`hr_kalman.HRKalman`) gives the temporal
state `s_t`, carried across windows. Per 60 s window, heads on the window-mean of `s_t` give the
window's HR mean `mu_hat` and SD `sigma_hat` (bpm). A demand network gives `d_t = d(s_t)` for
every second, and the latent HR `g` (in the window's units, `h = mu_hat + sigma_hat g`) follows

    dg/dt = d(t) - g(t),        g(0) = (h_0 - mu_hat) / sigma_hat,

with t in minutes, solved with classical RK4 at fixed 1 s steps (`models.ode`). The time unit is
our reading of the published text, which does not state it: in seconds, g would follow d within
about a second and the ODE would add nothing to a direct decoder (nor would the initial HR
matter after a few seconds); in minutes the latent's time constant is 60 s, the order of heart
rate kinetics (onset 20-45 s, recovery slower), and d can still move g quickly by sitting far
from it. `mu_hat` is an offset from `h_0` given by a head on the window-mean state and on
`(h_0 - 140) / 30`, so the model can pull an implausible carried start back (the generative
protocol) while keeping the known level where the features say nothing about it.

`d` is known at whole seconds (it depends only on `s_t`, so it is computed for all seconds before
the solver runs); between seconds it is the straight line joining its two neighbours, so the RK4
stages of the step from second i to i+1 see `d_i`, `(d_i + d_{i+1}) / 2` and `d_{i+1}`. HR is
clipped to [HR_MIN, HR_MAX] bpm.

Each window is solved over W steps, from its first second to the first second of the next
window (the demand there is the next window's first; the last window repeats its last): the
first W states are the window's prediction and the last is where the next window starts under
the generative protocol, so a carried start is the ODE's own continuation (no one-second hold).
Under the standard protocol the next window starts from its measured first second instead, and
windows are solved in parallel (vmap).

The model is deterministic: `HRPrediction.var` is zero.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from wearjax.models.backbone import Backbone, dense
from wearjax.models.hr_base import AbstractHRModel, HRPrediction, check_window
from wearjax.models.hr_kalman import (
    HR_MAX,
    HR_MIN,
    MEAN_SCALE,
    OBS_CENTER,
    OBS_SCALE,
    SD_SCALE,
)
from wearjax.models.ode import Adjoint, Engine, replace_static, solve


class Demand(eqx.Module):
    """d(s_t): a two-layer MLP on the temporal state, applied to all seconds at once."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, in_size: int, width: int = 32, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(in_size, width, key=k1)
        out = eqx.nn.Linear(width, 1, key=k2)
        # d starts near zero, so g relaxes to 0 and an untrained model holds h_0 (+ offset)
        self.out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (0.01 * out.weight, 0 * out.bias))

    def __call__(self, s: Float[Array, "*batch hidden"]) -> Float[Array, " *batch"]:
        a = jax.nn.leaky_relu(dense(self.hidden.weight, self.hidden.bias, s))
        return dense(self.out.weight, self.out.bias, a)[..., 0]


TIME_UNIT = 60.0  # seconds per unit of the ODE's time


def _relax(t, g, d, args):
    """The latent dynamics dg/dt = d - g, per second (t in minutes)."""
    del t, args
    return (d - g) / TIME_UNIT


class HRODE(AbstractHRModel):
    """GRU backbone + neural ODE decoder; sizes as published: (128, 2) and (64, 3).

    `engine` ("diffrax" or "scan") and `adjoint` ("checkpoint" or "backsolve", Diffrax only)
    choose how the ODE is solved; both engines give the same numbers (`models.ode`).
    """

    backbone: Backbone
    window_head: eqx.nn.Linear
    demand: Demand
    window: int = eqx.field(static=True)
    engine: Engine = eqx.field(static=True)
    adjoint: Adjoint = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)

    def __init__(
        self,
        n_features: int,
        hidden: int = 128,
        n_layers: int = 2,
        *,
        window: int = 60,
        dropout: float = 0.1,
        engine: Engine = "diffrax",
        adjoint: Adjoint = "checkpoint",
        checkpoints: int | None = None,
        key: PRNGKeyArray,
    ):
        k = jax.random.split(key, 3)
        self.backbone = Backbone(n_features, hidden, n_layers, dropout=dropout, key=k[0])
        head = eqx.nn.Linear(hidden + 1, 2, key=k[1])
        # the mean offset starts near zero: an untrained model holds h_0
        small = jnp.asarray([0.01, 1.0])
        self.window_head = eqx.tree_at(
            lambda m: (m.weight, m.bias), head, (head.weight * small[:, None], head.bias * small)
        )
        self.demand = Demand(hidden, key=k[2])
        self.window = window
        self.engine = engine
        self.adjoint = adjoint
        self.checkpoints = checkpoints

    def with_engine(
        self, engine: Engine, adjoint: Adjoint | None = None, checkpoints: int | None = None
    ) -> HRODE:
        """The same model solved by another engine (adjoint, checkpoints: `models.ode.solve`)."""
        return replace_static(
            self, engine=engine, adjoint=adjoint or self.adjoint, checkpoints=checkpoints
        )

    @property
    def _solver(self) -> dict:
        return dict(engine=self.engine, adjoint=self.adjoint, checkpoints=self.checkpoints)

    # -- pieces that do not depend on the ODE state ------------------------------------------
    def encode(self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None):
        """Per window: the mean backbone state `[N, H]` and the demand `[N, W + 1]` (the last
        column is the next window's first second; the last window repeats its last)."""
        t = x.shape[0]
        check_window(t, self.window)
        s, _ = self.backbone(x, None, key=key)
        s = s.reshape(t // self.window, self.window, s.shape[-1])
        d = self.demand(s)  # [N, W]
        after = jnp.concatenate([d[1:, :1], d[-1:, -1:]])
        return s.mean(axis=1), jnp.concatenate([d, after], axis=1)

    def _frame(self, s_mean, h_init):
        """A window's `mu_hat`, `sigma_hat` (bpm) and initial latent `g(0)` from its start."""
        h_init = jnp.clip(h_init, HR_MIN, HR_MAX)
        level = ((h_init - OBS_CENTER) / OBS_SCALE)[None]
        raw = self.window_head(jnp.concatenate([s_mean, level]))
        mu = h_init + MEAN_SCALE * raw[0]
        sigma = 0.5 + SD_SCALE * jax.nn.softplus(raw[1])
        return mu, sigma, (h_init - mu) / sigma

    def _solve_window(self, s_mean, d, h_init):
        """HR over one window and one second beyond (bpm, `[W + 1]`) from `h_init`, the
        window mean `mu_hat` and SD `sigma_hat`."""
        mu, sigma, g0 = self._frame(s_mean, h_init)
        g = solve(_relax, g0, d, **self._solver)
        return jnp.clip(mu + sigma * g, HR_MIN, HR_MAX), mu, sigma

    def standard(self, encoded, hr_init: Float[Array, " window"]) -> HRPrediction:
        """All windows as one ODE with a state per window (their starts are all known), which
        Diffrax solves faster than a vmap of per-window solves."""
        s_mean, d = encoded
        mu, sigma, g0 = jax.vmap(self._frame)(s_mean, hr_init)
        g = solve(_relax, g0, d.T, **self._solver)  # [W + 1, N]
        hr = jnp.clip(mu[:, None] + sigma[:, None] * g[:-1].T, HR_MIN, HR_MAX).reshape(-1)
        return HRPrediction(hr, jnp.zeros_like(hr), mu, sigma)

    def generative(self, encoded, hr0: Float[Array, ""]) -> HRPrediction:
        """One `lax.scan` over windows, each starting where the previous one's ODE ended."""
        s_mean, d = encoded

        def body(h, w):
            hr, mu, sigma = self._solve_window(*w, h)
            return hr[-1], (hr[:-1], mu, sigma)

        _, (hr, mu, sigma) = jax.lax.scan(body, hr0, (s_mean, d))
        hr = hr.reshape(-1)
        return HRPrediction(hr, jnp.zeros_like(hr), mu, sigma)
