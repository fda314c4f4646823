"""Neural Kalman model of heart rate during running (Lab-to-Wrist, appendix B.2).

Backbone: features `x_t` -> MLP encoder -> GRU -> temporal state `s_t`, carried across windows.
Per 60 s window, heads on `s_t` at the window's first second (so the model is causal and runs
one second at a time, `models.stream`) give the window's HR mean `mu_hat` and SD `sigma_hat`
(bpm), the initial velocity and covariance. `mu_hat` is predicted as an offset from the window's
initial HR `h_0` (known or carried over): `mu_hat = h_0 + 10 bpm * head`. The published text
does not fix this parameterisation; the offset form keeps the decoder independent of a
runner's absolute HR level, which features cannot reveal. The learned observation is an
absolute HR target `a_t = 140 + 30 * f_obs(s_t)` bpm (the level the features call for) plus the
known HR's offset `b_t` (below), entered in the window's units `y_t = (a_t + b_t - mu_hat) /
sigma_hat`, so the gain sets how fast HR relaxes toward it. HR is filtered in normalised units
`g = (h - mu_hat) / sigma_hat` with state `z = (g, g_dot)`:

    z^- = f_tr(z, s_t)              = (g + g_dot, g_dot) + MLP(s_t, z)
    y_t = (a_t + b_t - mu_hat) / sigma_hat  learned observation, a_t = 140 + 30 f_obs(s_t) bpm
    k   = f_gain(P + Q_t, R_t)       learned scalar gain: sigmoid(log P^-_g - log R + MLP)
    g  += k nu,  g_dot += 0.5 k nu,  P <- (P + Q_t) diag(1 - k, 1 - 0.5 k),  nu = y_t - g^-

then `h = sigma_hat * g + mu_hat`, clipped to [HR_MIN, HR_MAX] bpm; the velocity state `g_dot`
is clipped to +-MAX_RATE bpm/s, not the change per second, to which the MLP's correction and
the update `k nu` add (a trained model can move faster than MAX_RATE).
As published, measured HR enters as each window's initial condition: under the standard
protocol the first sample of every window, under the generative protocol the first second of the
session (each later window starts from the previous window's last prediction). It also sets the
observation's level (not in the paper): the target is `a_t + b_t`, where `b_t =
hr_base.known_offset` is how far the last known HR sat from `a` there, fading over a learned
time `tau` (initially 10 min). Without it a runner whose HR runs above or below the training
cohort's at the same effort is pulled toward the cohort's level, and in steady running the
filter loses to simply holding the known HR; with it the held HR is the model's limit when the
features do not change, and `a` (a regression on the features) is its limit far from any known
HR: both baselines are special cases the training can stay near.

Through sensor dropouts (`assimilate`, not in the paper): the generative rollout, in which every
second with a measured HR `h^m_t` is also assimilated, in window units `m_t = (h^m_t - mu_hat) /
sigma_hat`, by a scalar Kalman update after the learned one (`filters.learned_gain`,
`measurement_update`): `k_m = P_g / (P_g + R^m)`, `R^m = (measurement_sd / sigma_hat)^2`,
`g += k_m (m_t - g)`, `g_dot += 0.5 k_m (m_t - g)`, `P <- P diag(1 - k_m, 1 - 0.5 k_m)`. Where the
sensor drops out the learned dynamics bridge the gap from the last assimilated state. No extra
parameters: a model trained by the HR study is used as it is.

Everything that does not depend on the filter state (the GRU, the observation, the noises, the
context half of f_tr) is computed for all seconds before the filter's scan.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from wearjax.errors import WearjaxDataError
from wearjax.filters.learned_gain import (
    LearnedGainState,
    learned_gain_filter,
    learned_gain_step,
    measurement_update,
)
from wearjax.models.backbone import Backbone, GRUImpl, dense
from wearjax.models.hr_base import (
    AbstractHRModel,
    HRPrediction,
    check_window,
    faded_offset,
    known_offset,
    measured_hr,
)
from wearjax.models.hr_kalman_nets import Gain, Transition

HR_MIN, HR_MAX = 30.0, 230.0  # physiological clip, bpm
MAX_RATE = 5.0  # bpm/s, larger than any HR change seen in running
OBS_CENTER, OBS_SCALE = 140.0, 30.0  # bpm parameterisation of the absolute observation
MEAN_SCALE, SD_SCALE = 10.0, 5.0  # bpm scales of the window mean (offset) and SD heads
# Initial scales (added before softplus) of process noise, observation noise and initial
# covariance: an untrained filter trusts a measured start (gain ~0.003/s) and learns from there.
Q_SHIFT, R_SHIFT, P0_SHIFT = -8.0, 2.0, -5.0
VELOCITY_WEIGHT = 0.5  # the damped velocity update g_dot += 0.5 k nu
# SD of a measured (optical, wrist) HR sample in `assimilate`, bpm. Wrist optical HR agrees with
# a chest strap to about 2-3 bpm during steady running, and its errors are correlated over tens
# of seconds, which a per-second white-noise model overstates the information of: we take the
# top of that range.
MEASUREMENT_SD = 3.0
ANCHOR_TIME = 600.0  # initial fading time of the known HR's offset from the target, seconds


def _weights(dtype) -> Float[Array, " 2"]:
    """The damped update weights (1, VELOCITY_WEIGHT) of (g, g_dot)."""
    return jnp.asarray([1.0, VELOCITY_WEIGHT], dtype)


class WindowInputs(NamedTuple):
    """Everything the filter of a window needs that does not depend on HR (`encode`); a
    leading axis of windows `[N, ...]` where stacked."""

    offset: Float[Array, "*window"]  # mean offset from the window's initial HR (bpm)
    sigma: Float[Array, "*window"]  # window SD (bpm)
    gdot0: Float[Array, "*window"]  # initial velocity (window units)
    p0: Float[Array, "*window 2"]  # initial covariance (window units)
    target: Float[Array, "*window time"]  # absolute observation a_t (bpm)
    q: Float[Array, "*window time 2"]  # process noise
    r: Float[Array, "*window time"]  # observation noise
    context: Float[Array, "*window time width"]  # f_tr's context projection of s_t


class Measurements(NamedTuple):
    """Measured HR of a window to assimilate: `hr [W]` (bpm, ignored where not `measured`),
    `measured [W]` and the measurement noise variance `noise` (bpm^2)."""

    hr: Float[Array, "*window time"]
    measured: Bool[Array, "*window time"]
    noise: Float[Array, ""]


class KalmanStream(NamedTuple):
    """`HRKalman.step`'s state: second count, GRU state, the filter state and frame of the
    current window, the last prediction (bpm, bpm^2) and the last known HR's second and offset
    from the observation target (bpm)."""

    t: Int[Array, ""]
    gru: Float[Array, "layer hidden"]
    filt: LearnedGainState
    mu: Float[Array, ""]
    sigma: Float[Array, ""]
    lower: Float[Array, " 2"]
    upper: Float[Array, " 2"]
    hr: Float[Array, ""]
    var: Float[Array, ""]
    known_at: Float[Array, ""]
    offset: Float[Array, ""]


class HRKalman(AbstractHRModel):
    """GRU backbone + learned-gain Kalman filter; sizes as published: (128, 2) and (64, 3)."""

    backbone: Backbone
    window_head: eqx.nn.Linear
    step_head: eqx.nn.Linear
    transition: Transition
    gain: Gain
    carry_noise: Float[Array, ""]  # softplus -> variance added to a carried start (g units)
    log_anchor_time: Float[Array, ""]  # log seconds: fading time of the known HR's offset
    window: int = eqx.field(static=True)
    has_variance: ClassVar[bool] = True

    def __init__(
        self,
        n_features: int,
        hidden: int = 128,
        n_layers: int = 2,
        *,
        window: int = 60,
        dropout: float = 0.1,
        gru_impl: GRUImpl = "autodiff",
        key: PRNGKeyArray,
    ):
        k = jax.random.split(key, 5)
        self.backbone = Backbone(
            n_features, hidden, n_layers, dropout=dropout, gru_impl=gru_impl, key=k[0]
        )
        head = eqx.nn.Linear(hidden, 5, key=k[1])
        # the mean offset and initial velocity start near zero: an untrained filter holds h_0
        small = jnp.asarray([0.01, 1.0, 0.01, 1.0, 1.0])
        self.window_head = eqx.tree_at(
            lambda m: (m.weight, m.bias), head, (head.weight * small[:, None], head.bias * small)
        )
        self.step_head = eqx.nn.Linear(hidden, 4, key=k[2])
        self.transition = Transition(hidden, key=k[3])
        self.gain = Gain(key=k[4])
        self.carry_noise = jnp.zeros(())
        self.log_anchor_time = jnp.zeros(()) + math.log(ANCHOR_TIME)  # not weakly typed
        self.window = window

    # -- pieces that do not depend on the filter state -------------------------------------
    def _window_params(self, s: Float[Array, "window time hidden"]) -> tuple:
        """Per window, from the state at its first second: mean offset from h_0 (bpm), SD
        (bpm), initial velocity and covariance."""
        raw = jax.vmap(self.window_head)(s[:, 0])
        offset = MEAN_SCALE * raw[:, 0]
        sigma = 0.5 + SD_SCALE * jax.nn.softplus(raw[:, 1])
        gdot0 = raw[:, 2]
        p0 = jax.nn.softplus(raw[:, 3:5] + P0_SHIFT) + 1e-4
        return offset, sigma, gdot0, p0

    def _step_inputs(self, s: Float[Array, "*batch hidden"]):
        raw = dense(self.step_head.weight, self.step_head.bias, s)
        a = OBS_CENTER + OBS_SCALE * raw[..., 0]
        q = jax.nn.softplus(raw[..., 1:3] + Q_SHIFT) + 1e-5
        r = jax.nn.softplus(raw[..., 3] + R_SHIFT) + 1e-5
        return a, q, r, self.transition.project(s)

    def _window_start(self, params: tuple, h_init, var_init, carried, measurement=None):
        """A window's frame and initial filter state from its start `h_init` (bpm): `(init,
        mu_hat, lower, upper)`, with the window parameters `params = (offset, sigma, gdot0,
        p0)` (`_window_params`). At a carried start a `Measurements` of the first second is
        assimilated where measured (`_filter_window` says more)."""
        offset, sigma, gdot0, p0 = params
        mu = h_init + offset
        inflation = jnp.where(carried, jax.nn.softplus(self.carry_noise), 0.0)
        p0 = p0.at[0].add(var_init / sigma**2 + inflation)
        bound = jnp.stack([(HR_MAX - mu) / sigma, MAX_RATE / sigma])
        lower = jnp.stack([(HR_MIN - mu) / sigma, -MAX_RATE / sigma])
        g0 = jnp.clip((h_init - mu) / sigma, lower[0], bound[0])
        init = LearnedGainState(jnp.stack([g0, jnp.clip(gdot0, lower[1], bound[1])]), p0)
        if measurement is not None:
            # a NaN where nothing was measured must not reach the arithmetic (its gradient)
            hr = jnp.where(measurement.measured, measurement.hr, mu)
            m, noise = (hr - mu) / sigma, measurement.noise / sigma**2
            weights = _weights(m.dtype)
            mean0, var0 = measurement_update(
                init, m, measurement.measured & carried, noise, weights
            )
            init = LearnedGainState(jnp.clip(mean0, lower, bound), var0)
        return init, mu, lower, bound

    def _filter_window(
        self,
        w: WindowInputs,
        h_init: Float[Array, ""],
        var_init: Float[Array, ""],
        carried: Bool[Array, ""] | None = None,
        measurements: Measurements | None = None,
    ):
        """Filter one window of W seconds from `h_init` (bpm); returns `hr [W]`, `var [W]`
        and the window mean `mu_hat`.

        A measured start (`carried` False, `var_init` 0) starts with the head's covariance. A
        start carried over from the previous window adds that window's final variance
        `var_init` (bpm^2) and a learned inflation `softplus(carry_noise)` for the model error
        the filter cannot see, so the gain trusts the observation more after a carried start.
        `carried` defaults to `var_init > 0` (only a carried start has a variance).

        Optional `measurements` are assimilated where measured, in every step, and at a carried
        start (a measured start already is its measurement).
        """
        offset, sigma, gdot0, p0, a, q, r, ctx = w
        carried = var_init > 0 if carried is None else carried
        first = None
        if measurements is not None:  # the first second's measurement (`noise` is per window)
            first = Measurements(measurements.hr[0], measurements.measured[0], measurements.noise)
        init, mu, lower, bound = self._window_start(
            (offset, sigma, gdot0, p0), h_init, var_init, carried, first
        )
        y = (a - mu) / sigma
        extra = {}
        if measurements is not None:
            extra = dict(
                measurement=(jnp.where(measurements.measured, measurements.hr, mu)[1:] - mu)
                / sigma,
                measured=measurements.measured[1:],
                measurement_noise=measurements.noise / sigma**2,
            )
        steps = learned_gain_filter(
            init,
            ctx[1:],
            q[1:],
            r[1:],
            y[1:],
            transition=self.transition,
            gain=self.gain,
            update_weights=_weights(y.dtype),
            lower=lower,
            upper=bound,
            **extra,
        )
        g = jnp.concatenate([init.mean[:1], steps.mean[:, 0]])
        pg = jnp.concatenate([init.var[:1], steps.var[:, 0]])
        return mu + sigma * g, sigma**2 * pg, mu

    # -- protocols (AbstractHRModel) ---------------------------------------------------------
    def encode(self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None):
        """Per window: the heads' window parameters and every second's filter inputs."""
        t = x.shape[0]
        check_window(t, self.window)
        s, _ = self.backbone(x, None, key=key)
        s = s.reshape(t // self.window, self.window, s.shape[-1])
        return WindowInputs(*self._window_params(s), *self._step_inputs(s))

    def _anchored(
        self,
        encoded: WindowInputs,
        hr: Float[Array, "window time"],
        known: Bool[Array, "window time"],
    ) -> WindowInputs:
        """The observation target `a_t + b_t`, with `b_t` the offset of the known HR (`known`
        seconds of `hr`, bpm) from `a` (`known_offset`)."""
        a = encoded.target
        b = known_offset(
            a.reshape(-1), hr.reshape(-1), known.reshape(-1), jnp.exp(self.log_anchor_time)
        )
        return encoded._replace(target=a + b.reshape(a.shape))

    def standard(self, encoded, hr_init: Float[Array, " window"]) -> HRPrediction:
        """Each window filtered from its measured first HR; windows in parallel."""
        hr_init = jnp.asarray(hr_init, encoded.target.dtype)  # the parameters' dtype
        start = jnp.zeros(encoded.target.shape, bool).at[:, 0].set(True)
        encoded = self._anchored(encoded, jnp.where(start, hr_init[:, None], 0.0), start)
        hr, var, mu = jax.vmap(self._filter_window)(
            encoded, hr_init, jnp.zeros_like(hr_init), jnp.zeros(hr_init.shape, bool)
        )
        return HRPrediction(hr.reshape(-1), var.reshape(-1), mu, encoded.sigma)

    def generative(self, encoded, hr0: Float[Array, ""]) -> HRPrediction:
        """One `lax.scan` over windows; each starts from the last prediction of the one before,
        and from its variance: a carried start is uncertain, a measured one is not."""
        hr0 = jnp.asarray(hr0, encoded.target.dtype)  # the parameters' dtype
        first = jnp.zeros(encoded.target.shape, bool).at[0, 0].set(True)
        encoded = self._anchored(encoded, jnp.where(first, hr0, 0.0), first)
        return self._rollout_windows(encoded, hr0)

    def _rollout_windows(
        self, per_window: WindowInputs, hr0, measurements: Measurements | None = None
    ) -> HRPrediction:
        """Generative scan over windows, assimilating `measurements` (`[N, W]`) if given."""

        def body(carry, w):
            params, meas = w
            hr, var, mu = self._filter_window(params, *carry, measurements=meas)
            return (hr[-1], var[-1], jnp.asarray(True)), (hr, var, mu)

        hr0 = jnp.asarray(hr0, per_window.target.dtype)  # the carry keeps one dtype
        init = (hr0, jnp.zeros_like(hr0), jnp.asarray(False))
        _, (hr, var, mu) = jax.lax.scan(body, init, (per_window, measurements))
        return HRPrediction(hr.reshape(-1), var.reshape(-1), mu, per_window.sigma)

    def assimilate(
        self,
        x: Float[Array, "time feature"],
        hr: Float[Array, " time"],
        measured: Bool[Array, " time"],
        *,
        measurement_sd: float | Float[Array, ""] = MEASUREMENT_SD,
    ) -> HRPrediction:
        """HR through sensor dropouts: the generative rollout with measured HR assimilated.

        The first window starts from the first measured HR (as `rollout` from it), each later
        one from the previous window's last prediction and variance; every second after the first
        with `measured[t]` True assimilates `hr[t]` (bpm) as a measurement with SD `measurement_sd`
        (bpm; default `MEASUREMENT_SD`, optical wrist HR). `hr` is ignored where not measured.
        With only the first second measured this is `rollout(x, hr[0])`. One `lax.scan`.
        With no second measured there is no HR to start from: concrete inputs are refused
        (traced ones give HR from `hr[0]`, the caller's to mask).
        """
        if not isinstance(measured, jax.core.Tracer) and not bool(jnp.any(measured)):
            raise WearjaxDataError(
                "assimilate: no second of `measured` is True, so no HR to start from; give the "
                "HR of one second at least (or predict with rollout(x, hr0) from a known HR)"
            )
        n = x.shape[0] // self.window
        shape = (n, self.window)
        hr = jnp.asarray(hr, self.log_anchor_time.dtype)  # the parameters' dtype
        per_window = self._anchored(self.encode(x), hr.reshape(shape), measured.reshape(shape))
        noise = jnp.square(jnp.asarray(measurement_sd, hr.dtype))
        measurements = Measurements(
            hr.reshape(shape),
            measured.reshape(shape),
            jnp.broadcast_to(noise, (n,)),
        )
        return self._rollout_windows(per_window, hr[jnp.argmax(measured)], measurements)

    # -- one second at a time ----------------------------------------------------------------
    def init_stream(self, hr0: Float[Array, ""]) -> KalmanStream:
        hr0 = jnp.asarray(hr0, self.log_anchor_time.dtype)  # the parameters' dtype, not weak
        z, two = jnp.zeros((), hr0.dtype), jnp.zeros((2,), hr0.dtype)
        gru = self.backbone.gru.init_state(hr0.dtype)
        return KalmanStream(
            jnp.asarray(0), gru, LearnedGainState(two, two), z, z + 1, two, two, hr0, z, z, z
        )

    def step(
        self,
        state: KalmanStream,
        x_t: Float[Array, " feature"],
        hr_t: Float[Array, ""] | None = None,
        *,
        measurement_sd: float = MEASUREMENT_SD,
    ) -> tuple[KalmanStream, Float[Array, ""], Float[Array, ""]]:
        """One second of `assimilate` (`AbstractHRModel.step`): a measured `hr_t` is assimilated
        with SD `measurement_sd`; the stream from `init_stream(hr0)` equals `assimilate(x, hr,
        measured)` with `hr[0] = hr0` measured, and `rollout(x, hr0)` with nothing else
        measured (tests/models/test_stream.py)."""
        dtype = state.hr.dtype
        hr_t, measured = measured_hr(hr_t, dtype)
        x_t = jnp.asarray(x_t, dtype)  # the state's dtype, whatever the inputs'
        first = state.t == 0
        t = state.t.astype(dtype)
        s_t, gru = self.backbone.step(x_t, state.gru)
        a, q, r, ctx = self._step_inputs(s_t)
        known = first | measured
        offset = jnp.where(known, jnp.where(first, state.hr, hr_t) - a, state.offset)
        known_at = jnp.where(known, t, state.known_at)
        target = a + faded_offset(offset, t - known_at, jnp.exp(self.log_anchor_time))
        noise = jnp.square(jnp.asarray(measurement_sd, dtype))

        def window_start(_):
            params = tuple(p[0] for p in self._window_params(s_t[None, None]))
            carried = ~first
            var0 = jnp.where(first, jnp.zeros((), dtype), state.var)
            meas = Measurements(hr_t, measured, noise)
            init, mu, lower, upper = self._window_start(params, state.hr, var0, carried, meas)
            return init, mu, params[1], lower, upper

        def within(_):
            mu, sigma = state.mu, state.sigma
            out = learned_gain_step(
                state.filt,
                ctx,
                q,
                r,
                (target - mu) / sigma,
                True,
                transition=self.transition,
                gain=self.gain,
                update_weights=_weights(dtype),
                lower=state.lower,
                upper=state.upper,
                measurement=(jnp.where(measured, hr_t, mu) - mu) / sigma,
                measured=measured,
                measurement_noise=noise / sigma**2,
            )
            return LearnedGainState(out.mean, out.var), mu, sigma, state.lower, state.upper

        start = state.t % self.window == 0
        filt, mu, sigma, lower, upper = jax.lax.cond(start, window_start, within, None)
        hr, var = mu + sigma * filt.mean[0], sigma**2 * filt.var[0]
        new = KalmanStream(
            state.t + 1, gru, filt, mu, sigma, lower, upper, hr, var, known_at, offset
        )
        return new, hr, var
