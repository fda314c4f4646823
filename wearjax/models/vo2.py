"""Dual-pathway neural Kalman model of oxygen uptake (Lab-to-Wrist, section 5, appendix B.4).

Only the first second of VO2, `v_0` (mL/min), is known (the studies give the first second of
the smoothed series by default, a cubic fitted to the first 15 s: `tasks.vo2`'s
`first_second`); the rest of the session is predicted
from wearable features `x_t` in one `lax.scan`. Backbone: MLP encoder -> bidirectional GRU
(each layer a forward `GRULayer` and one run on the reversed sequence, outputs concatenated)
-> `s_t [2H]`, which sees the whole session (offline estimation). `v_0` enters the encoder too
(`u_0 = v_0 / VO2_UNIT - 1`), so the network knows the subject's calibration. Per second, heads
on `s_t` give (VO2 in L/min, `VO2_UNIT` mL/min, inside the model):

    o_t     = w_0 + f_obs(s_t)                      learned observation
    Q_t, R_t = softplus(.)                          process and measurement noise
    g_t                                             learned gain correction
    lo_t < 0 < hi_t                                 clamp of the update (L/min per s)
    tau_t  = sigmoid(.)                             trend
    d_t    = w_0 + f_dir(s_t)                       direct pathway
    alpha_t = sigmoid(.)                            blend

with `w_0 = v_0 / VO2_UNIT` (L/min; `u_0`, centred, is only the encoder's input), and the
filter's state, in L/min, starting at `w_0` at seconds -1 and 0 with variance `P_0`:

    v_trend = v_{t-1} + tau_t (v_{t-1} - v_{t-2})                  trend pathway (the prior)
    P^-     = P_{t-1} + Q_t
    k_t     = sigmoid(log P^- - log R_t + g_t)                     learned gain
    v_KF    = v_trend + clamp(k_t (o_t - v_trend), lo_t, hi_t)    clamped Kalman update
    P_t     = (1 - k_t) P^-
    v_t     = alpha_t d_t + (1 - alpha_t) v_KF                     learned blend

Our reading of the published text: it writes the update from v_{t-1}; we take the trend pathway
as the filter's prediction, so with `tau = 0` the update is exactly `v_{t-1} + clamp(k (o -
v_{t-1}), lo, hi)`, and the blended `v_t` is carried (the direct pathway corrects the filter's
drift). All heads depend only on `s_t`, so they run for every second before the scan; the scan
body (`vo2_kalman_step`) holds the handful of scalar operations that must be sequential.

Window heads on the mean of `s_t` over each 60 s window give its mean `mu_hat`, SD `sigma_hat`
and `Delta95_hat`, the 95th percentile of |v_t - v_{t-1}| inside it (our reading of Delta95: a
window's largest typical second-to-second change), for the auxiliary loss.

Variants "128-4" and "256-2": the paper names them by two numbers without saying what the second
counts. We read them as (GRU width per direction, number of GRU layers): 128-4 is a deeper and
narrower stack of four bidirectional layers of 128 units, 256-2 the two-layer stack of 256 units
the text describes. `VARIANTS` maps the names to `(hidden, layers)`.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from wearjax.models.backbone import Encoder, GRUImpl, GRULayer, check_gru_impl, dense

VO2_UNIT = 1000.0  # mL/min per model unit (L/min)
VARIANTS: dict[str, tuple[int, int]] = {"128-4": (128, 4), "256-2": (256, 2)}
# Shifts added before softplus: an untrained filter has process noise ~(50 mL/min)^2 per s,
# measurement noise ~(350 mL/min)^2 and a known start, so its gain starts near 0.1.
Q_SHIFT, R_SHIFT, P0_SHIFT = -6.0, -2.0, -8.0
RATE_UNIT = 0.05  # L/min per s: scale of the clamp bounds (softplus(0) x 50 mL/min/s)
N_STEP_HEADS = 9  # o, Q, R, g, lo, hi, tau, d, alpha


class VO2StepInputs(NamedTuple):
    """Per-second head outputs that do not depend on the filter state (model units)."""

    obs: Float[Array, "*time"]
    q: Float[Array, "*time"]
    r: Float[Array, "*time"]
    gain_shift: Float[Array, "*time"]
    lo: Float[Array, "*time"]
    hi: Float[Array, "*time"]
    trend: Float[Array, "*time"]
    direct: Float[Array, "*time"]
    alpha: Float[Array, "*time"]


class VO2Carry(NamedTuple):
    """Filter state: the last two outputs and the filter variance (model units)."""

    v1: Float[Array, ""]
    v2: Float[Array, ""]
    var: Float[Array, ""]


class VO2Prediction(NamedTuple):
    """VO2 of one session (mL/min): `vo2 [T]`, its Kalman pathway `kalman [T]`, direct pathway
    `direct [T]`, blend `alpha [T]` and filter variance `var [T]` ((mL/min)^2); window statistics
    `mu [N]`, `sigma [N]`, `delta95 [N]` (mL/min) of the windows asked for."""

    vo2: Float[Array, " time"]
    kalman: Float[Array, " time"]
    direct: Float[Array, " time"]
    alpha: Float[Array, " time"]
    var: Float[Array, " time"]
    mu: Float[Array, " window"]
    sigma: Float[Array, " window"]
    delta95: Float[Array, " window"]


def vo2_kalman_step(carry: VO2Carry, inputs: VO2StepInputs) -> tuple[VO2Carry, tuple]:
    """One second of the dual-pathway filter (module docstring); returns the new carry and
    `(v_t, v_KF, P_t)`. Pure and scalar: the body of the model's scan."""
    v1, v2, var = carry
    prior = v1 + inputs.trend * (v1 - v2)
    var_pred = var + inputs.q
    k = jax.nn.sigmoid(jnp.log(var_pred) - jnp.log(inputs.r) + inputs.gain_shift)
    v_kf = prior + jnp.clip(k * (inputs.obs - prior), inputs.lo, inputs.hi)
    var_new = (1.0 - k) * var_pred
    v = inputs.alpha * inputs.direct + (1.0 - inputs.alpha) * v_kf
    return VO2Carry(v, v1, var_new), (v, v_kf, var_new)


class BiGRU(eqx.Module):
    """Bidirectional GRU stack: per layer a forward and a backward `GRULayer`, outputs
    concatenated, `[T, I] -> [T, 2H]`. Each direction's input projections run outside its scan."""

    forward: tuple[GRULayer, ...]
    backward: tuple[GRULayer, ...]

    def __init__(
        self,
        in_size: int,
        hidden: int,
        n_layers: int,
        *,
        impl: GRUImpl = "autodiff",
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, 2 * n_layers).reshape(n_layers, 2)
        sizes = [in_size] + [2 * hidden] * (n_layers - 1)
        self.forward = tuple(
            GRULayer(n, hidden, impl=impl, key=k[0]) for n, k in zip(sizes, keys, strict=True)
        )
        self.backward = tuple(
            GRULayer(n, hidden, impl=impl, key=k[1]) for n, k in zip(sizes, keys, strict=True)
        )

    def __call__(
        self, x: Float[Array, "time in"], length: Int[Array, ""] | int | None = None
    ) -> Float[Array, "time out"]:
        """Both directions over `x`; with `length` (a session padded to a cohort's length)
        the backward pass starts at the session's last second, so no second of the session
        reads the padding (its outputs past `length` are the padding's own)."""
        t = jnp.arange(x.shape[0])
        flip = t[::-1] if length is None else jnp.where(t < length, length - 1 - t, t)
        for fwd, bwd in zip(self.forward, self.backward, strict=True):
            h0 = jnp.zeros((fwd.hidden,), x.dtype)
            x = jnp.concatenate([fwd(x, h0), bwd(x[flip], h0)[flip]], axis=-1)
        return x


def _small_head(n_in: int, n_out: int, scale: float, *, key) -> eqx.nn.Linear:
    head = eqx.nn.Linear(n_in, n_out, key=key)
    return eqx.tree_at(lambda m: (m.weight, m.bias), head, (scale * head.weight, 0 * head.bias))


class VO2Kalman(eqx.Module):
    """Encoder + bidirectional GRU + dual-pathway learned-gain filter (module docstring)."""

    encoder: Encoder
    gru: BiGRU
    step_head: eqx.nn.Linear
    window_head: eqx.nn.Linear
    log_p0: Float[Array, ""]
    window: int = eqx.field(static=True)

    def __init__(
        self,
        n_features: int,
        hidden: int = 256,
        n_layers: int = 2,
        *,
        window: int = 60,
        dropout: float = 0.1,
        gru_impl: GRUImpl = "autodiff",
        key: PRNGKeyArray,
    ):
        k = jax.random.split(key, 4)
        self.encoder = Encoder(n_features + 1, hidden, dropout=dropout, key=k[0])
        self.gru = BiGRU(hidden, hidden, n_layers, impl=gru_impl, key=k[1])
        # small initial heads: an untrained model holds v_0 with a moderate gain
        self.step_head = _small_head(2 * hidden, N_STEP_HEADS, 0.1, key=k[2])
        self.window_head = _small_head(2 * hidden, 3, 0.1, key=k[3])
        self.log_p0 = jnp.zeros(()) + P0_SHIFT  # not weak-typed: training must not retrace
        self.window = window

    def states(
        self,
        x: Float[Array, "time feature"],
        v0: Float[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
        length: Int[Array, ""] | int | None = None,
    ) -> Float[Array, "time state"]:
        """`s_t [T, 2H]` from features and the known first second `v0` (mL/min); `length`:
        the session's seconds where `x` is padded (`BiGRU`)."""
        u0 = jnp.broadcast_to(v0 / VO2_UNIT - 1.0, x.shape[:1] + (1,)).astype(x.dtype)
        return self.gru(self.encoder(jnp.concatenate([x, u0], axis=-1), key=key), length)

    def step_inputs(self, s: Float[Array, "time state"], v0: Float[Array, ""]) -> VO2StepInputs:
        """Every head that does not depend on the filter state, for all seconds at once."""
        raw = dense(self.step_head.weight, self.step_head.bias, s)
        u0 = v0 / VO2_UNIT
        return VO2StepInputs(
            obs=u0 + raw[:, 0],
            q=jax.nn.softplus(raw[:, 1] + Q_SHIFT) + 1e-6,
            r=jax.nn.softplus(raw[:, 2] + R_SHIFT) + 1e-6,
            gain_shift=raw[:, 3],
            lo=-RATE_UNIT * jax.nn.softplus(raw[:, 4]),
            hi=RATE_UNIT * jax.nn.softplus(raw[:, 5]),
            trend=jax.nn.sigmoid(raw[:, 6] - 2.0),
            direct=u0 + raw[:, 7],
            alpha=jax.nn.sigmoid(raw[:, 8]),
        )

    def window_stats(
        self,
        s: Float[Array, "time state"],
        v0: Float[Array, ""],
        starts: Int[Array, " window"],
    ) -> tuple[Float[Array, " window"], Float[Array, " window"], Float[Array, " window"]]:
        """`mu_hat`, `sigma_hat`, `Delta95_hat` (mL/min) of the `window`-second windows starting
        at `starts`, from the window means of `s_t` (cumulative sums: any overlap). Concrete
        `starts` must lie in `0..T - window` (indexing would clamp them to other windows)."""
        if not isinstance(starts, jax.core.Tracer):
            bad = np.flatnonzero(
                (np.asarray(starts) < 0) | (np.asarray(starts) > len(s) - self.window)
            )
            if bad.size:
                raise ValueError(
                    f"window starts {np.asarray(starts)[bad][:5].tolist()} lie outside 0.."
                    f"{len(s) - self.window} for {len(s)} s and {self.window} s windows"
                )
        total = jnp.concatenate([jnp.zeros_like(s[:1]), jnp.cumsum(s, axis=0)])
        mean = (total[starts + self.window] - total[starts]) / self.window
        raw = dense(self.window_head.weight, self.window_head.bias, mean)
        mu = v0 + VO2_UNIT * raw[:, 0]
        sigma = 0.1 * VO2_UNIT * jax.nn.softplus(raw[:, 1])
        delta95 = 0.05 * VO2_UNIT * jax.nn.softplus(raw[:, 2])
        return mu, sigma, delta95

    def filter(self, inputs: VO2StepInputs, v0: Float[Array, ""]):
        """The scan of `vo2_kalman_step` from `v0` (mL/min) over seconds 1..T-1; returns
        `(vo2, kalman, var)` over all T seconds, in mL/min and (mL/min)^2."""
        dtype = inputs.obs.dtype  # the heads' (a cohort's float32 v0 under x64 stays float64)
        u0 = (v0 / VO2_UNIT).astype(dtype)
        var0 = jax.nn.softplus(self.log_p0).astype(dtype)
        init = VO2Carry(u0, u0, var0)
        rest = jax.tree_util.tree_map(lambda a: a[1:], inputs)
        _, (v, v_kf, var) = jax.lax.scan(vo2_kalman_step, init, rest)
        first = jnp.reshape(v0, (1,)).astype(v.dtype)  # exactly the given second
        return (
            jnp.concatenate([first, VO2_UNIT * v]),
            jnp.concatenate([first, VO2_UNIT * v_kf]),
            VO2_UNIT**2 * jnp.concatenate([jnp.reshape(var0, (1,)), var]),
        )

    def rollout(
        self,
        x: Float[Array, "time feature"],
        v0: Float[Array, ""],
        *,
        starts: Int[Array, " window"] | None = None,
        key: PRNGKeyArray | None = None,
        length: Int[Array, ""] | int | None = None,
    ) -> VO2Prediction:
        """The whole session from its first second `v0` (mL/min): one backbone pass, one scan.

        `starts` (default: non-overlapping windows covering the session, which must then be a
        multiple of `window` long) are the windows whose statistics are returned. `length`:
        the session's seconds where `x` is padded to a cohort's length; the backward GRU then
        starts at the session's end, so its seconds do not depend on the padding.
        """
        if starts is None:
            if x.shape[0] % self.window:
                raise ValueError(
                    f"session length {x.shape[0]} s is not a multiple of the {self.window} s "
                    "window: pad it, or pass the window starts"
                )
            starts = jnp.arange(0, x.shape[0], self.window)
        v0 = jnp.asarray(v0, self.step_head.weight.dtype)  # a float32 cohort's, x64 weights
        s = self.states(x, v0, key=key, length=length)
        inputs = self.step_inputs(s, v0)
        vo2, kalman, var = self.filter(inputs, v0)
        mu, sigma, delta95 = self.window_stats(s, v0, starts)
        return VO2Prediction(
            vo2=vo2,
            kalman=kalman,
            direct=VO2_UNIT * inputs.direct,
            alpha=inputs.alpha,
            var=var,
            mu=mu,
            sigma=sigma,
            delta95=delta95,
        )

    __call__ = rollout


def build_vo2_model(
    n_features: int,
    variant: str | tuple[int, int],
    *,
    window: int = 60,
    gru_impl: str = "autodiff",
    key: PRNGKeyArray,
) -> VO2Kalman:
    """A `VO2Kalman` of a named variant (`VARIANTS`) or an explicit `(hidden, layers)`; `gru_impl`
    chooses how its GRU layers run (`models.backbone.GRU_IMPLS`)."""
    check_gru_impl(gru_impl)
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f"unknown VO2 variant {variant!r}: choose one of {sorted(VARIANTS)}")
        variant = VARIANTS[variant]
    hidden, layers = variant
    return VO2Kalman(n_features, hidden, layers, window=window, gru_impl=gru_impl, key=key)
