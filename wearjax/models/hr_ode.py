"""Neural ODE model of heart rate during running (Lab-to-Wrist, appendix B.1).

The same encoder + GRU backbone as the Kalman model (`hr_kalman.HRKalman`) gives the temporal
state `s_t`, carried across windows. A demand network gives `d_t = d(s_t)` for every second, a
level head the HR the features call for, `A_t = 140 + 30 l(s_t)` bpm, and a head on the state
at each 60 s window's first second its SD `sigma_hat` (bpm). The latent HR `g` (in the window's
units, `h = mu_hat + sigma_hat g`) follows

    dg/dt = r_t [d(t) + (A_t + b_t - mu_hat) / sigma_hat - g(t)],
    g(0)  = (h_init - mu_hat) / sigma_hat,

i.e. `h` relaxes toward `A_t + b_t + sigma_hat d_t` bpm at a rate `r_t` per minute, solved with
classical RK4 at fixed 1 s steps (`models.ode`). The time unit is our reading of the published
text, which does not state it: in seconds, g would follow d within about a second and the ODE
would add nothing to a direct decoder (nor would the initial HR matter after a few seconds); in
minutes the latent's time constant is 60 s, the order of heart rate kinetics (onset 20-45 s,
recovery slower), and d can still move g quickly by sitting far from it. The rate `r_t =
exp(log(10) tanh(rho(s_t)))` is learned (1 at initialisation, between 1/10 and 10): onset and
recovery kinetics differ, and a fixed 60 s time constant held the model back in transitions.

The target is anchored (the published text does not say how the window mean is formed):
`b_t = exp(-(t - k) / tau) (h_k - A_k)` is how far the known HR `h_k` sat from the level at the
second `k` it was known, fading over a learned `tau` (initially 10 min; the same rule as the
Kalman model's, `hr_base.known_offset`), and `mu_hat = A + b` at the window's first second.
Under the standard protocol the known HR is the window's first second: the target starts at it
and moves as the level the features call for moves (steady features hold it). Under the
generative protocol it is the session's first second: the offset fades and the target returns
to the level. An earlier form, `mu_hat` an offset from the window's (carried) start and `d`
alone setting the target, made every window's target relative to the last one's prediction:
errors added up window after window like a random walk and the generative rollout drifted
(14.8 bpm MAE on the shared real runs, 2.4 times the Kalman model's); and `d`, which does not see
the known HR, could not say "stay where you are" in steady running.

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

The model is deterministic: `HRPrediction.var` is zero; its predictive band is fitted on validation
residuals (`eval.calibration`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from wearjax.models.backbone import Backbone, GRUImpl, dense
from wearjax.models.hr_base import (
    AbstractHRModel,
    HRPrediction,
    check_window,
    faded_offset,
    measured_hr,
)
from wearjax.models.hr_kalman import (
    ANCHOR_TIME,
    HR_MAX,
    HR_MIN,
    OBS_CENTER,
    OBS_SCALE,
    SD_SCALE,
)
from wearjax.models.ode import Adjoint, Engine, replace_static, rk4_step, solve


class Demand(eqx.Module):
    """d(s_t): a two-layer MLP on the temporal state, applied to all seconds at once."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, in_size: int, width: int = 32, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(in_size, width, key=k1)
        out = eqx.nn.Linear(width, 1, key=k2)
        # d starts near zero: an untrained model relaxes to the anchored level
        self.out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (0.01 * out.weight, 0 * out.bias))

    def __call__(self, s: Float[Array, "*batch hidden"]) -> Float[Array, " *batch"]:
        a = jax.nn.leaky_relu(dense(self.hidden.weight, self.hidden.bias, s))
        return dense(self.out.weight, self.out.bias, a)[..., 0]


TIME_UNIT = 60.0  # seconds per unit of the ODE's time
RATE_RANGE = 2.302585  # log(10): the learned rate spans 1/10 to 10 times the unit's


def _relax(t, g, u, args):
    """The latent dynamics dg/dt = rate (d - g), per second (t in minutes); `u = (d, rate)`."""
    del t, args
    d, rate = u
    return rate * (d - g) / TIME_UNIT


class ODEStream(NamedTuple):
    """`HRODE.step`'s state: second count, GRU state, the latent `g` and frame `(mu_hat,
    sigma_hat)` of the current window, the previous second's inputs (demand, target in bpm,
    rate), and the last known HR's second and offset from the level (bpm)."""

    t: Int[Array, ""]
    gru: Float[Array, "layer hidden"]
    g: Float[Array, ""]
    mu: Float[Array, ""]
    sigma: Float[Array, ""]
    demand: Float[Array, ""]
    target: Float[Array, ""]
    rate: Float[Array, ""]
    hr: Float[Array, ""]
    known_at: Float[Array, ""]
    offset: Float[Array, ""]


class HRODE(AbstractHRModel):
    """GRU backbone + neural ODE decoder; sizes as published: (128, 2) and (64, 3).

    `engine` ("diffrax" or "scan") and `adjoint` ("checkpoint" or "backsolve", Diffrax only)
    choose how the ODE is solved; both engines give the same numbers (`models.ode`).
    """

    backbone: Backbone
    window_head: eqx.nn.Linear
    level: eqx.nn.Linear
    demand: Demand
    rate: eqx.nn.Linear
    log_anchor_time: Float[Array, ""]  # log seconds: fading time of the known HR's offset
    window: int = eqx.field(static=True)
    engine: Engine = eqx.field(static=True)
    adjoint: Adjoint = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)
    learned_rate: bool = eqx.field(static=True)

    def __init__(
        self,
        n_features: int,
        hidden: int = 128,
        n_layers: int = 2,
        *,
        window: int = 60,
        dropout: float = 0.1,
        gru_impl: GRUImpl = "autodiff",
        engine: Engine = "diffrax",
        adjoint: Adjoint = "checkpoint",
        checkpoints: int | None = None,
        learned_rate: bool = True,
        key: PRNGKeyArray,
    ):
        k = jax.random.split(key, 5)
        self.backbone = Backbone(
            n_features, hidden, n_layers, dropout=dropout, gru_impl=gru_impl, key=k[0]
        )
        self.window_head = eqx.nn.Linear(hidden, 1, key=k[1])
        level = eqx.nn.Linear(hidden, 1, key=k[3])
        # the level starts nearly flat: an untrained model holds the known HR
        self.level = eqx.tree_at(
            lambda m: (m.weight, m.bias), level, (0.01 * level.weight, 0 * level.bias)
        )
        self.demand = Demand(hidden, key=k[2])
        rate = eqx.nn.Linear(hidden, 1, key=k[4])
        # the rate starts at 1: the relaxation time is TIME_UNIT until training moves it
        self.rate = eqx.tree_at(
            lambda m: (m.weight, m.bias), rate, (0 * rate.weight, 0 * rate.bias)
        )
        self.log_anchor_time = jnp.zeros(()) + math.log(ANCHOR_TIME)  # not weakly typed
        self.window = window
        self.engine = engine
        self.adjoint = adjoint
        self.checkpoints = checkpoints
        self.learned_rate = learned_rate

    def with_engine(
        self, engine: Engine, adjoint: Adjoint | None = None, checkpoints: int | None = None
    ) -> HRODE:
        """The same model solved by another engine (adjoint, checkpoints: `models.ode.solve`;
        each kept from this model unless given)."""
        kept = self.checkpoints if checkpoints is None else checkpoints
        return replace_static(
            self, engine=engine, adjoint=adjoint or self.adjoint, checkpoints=kept
        )

    @property
    def _solver(self) -> dict:
        return dict(engine=self.engine, adjoint=self.adjoint, checkpoints=self.checkpoints)

    # -- pieces that do not depend on the ODE state ------------------------------------------
    def encode(self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None):
        """Per window: the backbone state at its first second `[N, H]`, the demand `d`, the
        level `A` (bpm) and the rate `[N, W + 1]` (the last column is the next window's first
        second; the last window repeats its last)."""
        t = x.shape[0]
        check_window(t, self.window)
        s, _ = self.backbone(x, None, key=key)
        s = s.reshape(t // self.window, self.window, s.shape[-1])
        d = self.demand(s)  # [N, W]
        level = OBS_CENTER + OBS_SCALE * dense(self.level.weight, self.level.bias, s)[..., 0]
        rate = self._rate(s)
        return s[:, 0], _with_next_first(d), _with_next_first(level), _with_next_first(rate)

    def _rate(self, s: Float[Array, "*batch hidden"]) -> Float[Array, " *batch"]:
        """The relaxation rate of every second; 1 (a 60 s time constant) without
        `learned_rate`, the fixed reading kept for comparison."""
        raw = dense(self.rate.weight, self.rate.bias, s)[..., 0]
        if not self.learned_rate:
            return jnp.ones_like(raw)
        return jnp.exp(RATE_RANGE * jnp.tanh(raw))

    def _frames(self, encoded, offset, since):
        """Per window `mu_hat`, `sigma_hat` (bpm) and the ODE's inputs `(demand in its units,
        rate)` `[N, W + 1]`, from the known HR's `offset` from `A` (bpm) and the seconds `since`
        it was known."""
        s_start, d, level, rate = encoded
        target = level + jnp.exp(-since / jnp.exp(self.log_anchor_time)) * offset
        mu = target[:, 0]
        raw = dense(self.window_head.weight, self.window_head.bias, s_start)[:, 0]
        sigma = 0.5 + SD_SCALE * jax.nn.softplus(raw)
        return mu, sigma, (d + (target - mu[:, None]) / sigma[:, None], rate)

    def _solve_window(self, mu, sigma, u, h_init):
        """HR over one window and one second beyond (bpm, `[W + 1]`) from `h_init`."""
        g0 = (jnp.clip(h_init, HR_MIN, HR_MAX) - mu) / sigma
        return jnp.clip(mu + sigma * solve(_relax, g0, u, **self._solver), HR_MIN, HR_MAX)

    def standard(self, encoded, hr_init: Float[Array, " window"]) -> HRPrediction:
        """All windows as one ODE with a state per window (their starts are all known), which
        Diffrax solves faster than a vmap of per-window solves."""
        level = encoded[2]
        hr_init = jnp.asarray(hr_init, level.dtype)  # the parameters' dtype
        since = jnp.arange(level.shape[1], dtype=level.dtype)[None, :]
        offset = (hr_init - level[:, 0])[:, None]
        mu, sigma, u = self._frames(encoded, offset, since)
        g0 = (jnp.clip(hr_init, HR_MIN, HR_MAX) - mu) / sigma
        g = solve(_relax, g0, jax.tree_util.tree_map(jnp.transpose, u), **self._solver)
        hr = jnp.clip(mu[:, None] + sigma[:, None] * g[:-1].T, HR_MIN, HR_MAX).reshape(-1)
        return HRPrediction(hr, jnp.zeros_like(hr), mu, sigma)

    def generative(self, encoded, hr0: Float[Array, ""]) -> HRPrediction:
        """One `lax.scan` over windows, each starting where the previous one's ODE ended."""
        level = encoded[2]
        hr0 = jnp.asarray(hr0, level.dtype)  # the parameters' dtype: the scan's carry
        n, w1 = level.shape
        since = (self.window * jnp.arange(n)[:, None] + jnp.arange(w1)[None, :]).astype(level.dtype)
        mu, sigma, u = self._frames(encoded, hr0 - level[0, 0], since)

        def body(h, w):
            hr = self._solve_window(*w, h)
            return hr[-1], hr[:-1]

        _, hr = jax.lax.scan(body, hr0, (mu, sigma, u))
        hr = hr.reshape(-1)
        return HRPrediction(hr, jnp.zeros_like(hr), mu, sigma)

    # -- one second at a time ----------------------------------------------------------------
    def init_stream(self, hr0: Float[Array, ""]) -> ODEStream:
        hr0 = jnp.asarray(hr0, self.log_anchor_time.dtype)  # the parameters' dtype, not weak
        z = jnp.zeros((), hr0.dtype)
        gru = self.backbone.gru.init_state(hr0.dtype)
        return ODEStream(jnp.asarray(0), gru, z, z, z + 1, z, z, z + 1, hr0, z, z)

    def step(
        self, state: ODEStream, x_t: Float[Array, " feature"], hr_t: Float[Array, ""] | None = None
    ) -> tuple[ODEStream, Float[Array, ""], Float[Array, ""]]:
        """One second (`AbstractHRModel.step`): the RK4 step from the previous second in the
        current window's frame; at a window's first second the next frame, as `generative`
        starts it. A measured `hr_t` restarts the ODE from it and anchors the target there, as
        the standard protocol does at a window start: the stream from `init_stream(hr0)` equals
        `rollout(x, hr0)` with nothing measured and the standard protocol with HR measured at
        every window start (tests/models/test_stream.py). The variance is zero."""
        dtype = state.hr.dtype
        hr_t, measured = measured_hr(hr_t, dtype)
        x_t = jnp.asarray(x_t, dtype)  # the state's dtype, whatever the inputs'
        first = state.t == 0
        t = state.t.astype(dtype)
        tau = jnp.exp(self.log_anchor_time)
        s_t, gru = self.backbone.step(x_t, state.gru)
        d = self.demand(s_t)
        level = OBS_CENTER + OBS_SCALE * self.level(s_t)[0]
        rate = self._rate(s_t)
        # the step from t - 1 to t, in the current frame, with the anchor as it was
        end = level + faded_offset(state.offset, t - state.known_at, tau)
        in_frame = lambda dem, tgt, r: (dem + (tgt - state.mu) / state.sigma, r)  # noqa: E731
        a = in_frame(state.demand, state.target, state.rate)
        b = in_frame(d, end, rate)
        m = jax.tree_util.tree_map(lambda u, v: 0.5 * (u + v), a, b)
        g = rk4_step(_relax, jnp.zeros((), dtype), state.g, a, m, b, None)
        h = jnp.clip(state.mu + state.sigma * g, HR_MIN, HR_MAX)
        # a known HR (the first second, or a measured one) restarts the ODE and the anchor
        known = first | measured
        h_known = jnp.where(first, state.hr, hr_t)
        offset = jnp.where(known, h_known - level, state.offset)
        known_at = jnp.where(known, t, state.known_at)
        target = level + faded_offset(offset, t - known_at, tau)
        start = state.t % self.window == 0
        sigma = 0.5 + SD_SCALE * jax.nn.softplus(self.window_head(s_t)[0])
        mu, sigma = jnp.where(start, target, state.mu), jnp.where(start, sigma, state.sigma)
        h = jnp.where(known, h_known, h)
        g = jnp.where(start | known, (jnp.clip(h, HR_MIN, HR_MAX) - mu) / sigma, g)
        hr = jnp.clip(mu + sigma * g, HR_MIN, HR_MAX)
        new = ODEStream(state.t + 1, gru, g, mu, sigma, d, target, rate, hr, known_at, offset)
        return new, hr, jnp.zeros((), dtype)


def _with_next_first(v: Float[Array, "window time"]) -> Float[Array, "window time_plus_1"]:
    """`[N, W] -> [N, W + 1]`: each window with the next one's first second appended (the last
    window repeats its last)."""
    return jnp.concatenate([v, jnp.concatenate([v[1:, :1], v[-1:, -1:]])], axis=1)
