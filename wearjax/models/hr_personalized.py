"""Personalised heart-rate ODE (Nazaret, Tonekaboni, Darnell, Ren, Sapiro & Miller 2023,
"Modeling personalized heart rate response to exercise and environmental factors with
wearables data", npj Digital Medicine 6:207).

State `(HR, D)` in bpm, t in seconds:

    dHR/dt = e^A f_min(HR) f_max(HR) (D - HR) / 60 + R [ (HRmin - HR)_+ - (HR - HRmax)_+ ]
    dD/dt  = e^B (I(t) - D) / 60
    f_min  = ((HR - HRmin) / 60)^alpha,    f_max = ((HRmax - HR) / 60)^beta

HR relaxes towards the demand `D`, fastest mid-range and slower near either bound (the shape set
by alpha and beta); outside [HRmin, HRmax] a hard restoring term of rate `R = RESTORE_RATE` pushes
it back.

wearjax's asymmetric form (`asymmetric=True`, the default) changes how HR falls. While D < HR
the rate is `rho e^A / 60`, with a per-runner recovery factor rho in [0.2, 2] and no level shape,
so a recovery is mono-exponential towards D; rises keep the published shape:

    dHR/dt = e^A f_min f_max (D - HR) / 60    while D >= HR,
    dHR/dt = rho e^A (D - HR) / 60            while D < HR    (+ the restoring term).

Two reasons. In the published form the rate depends on the HR level only, so a rise and a
recovery through the same HR range take about as long, whereas HR recovery after exercise is
vagally mediated and slower than its onset, and its early phase is described by a single
exponential time constant (Imai et al. 1994, J Am Coll Cardiol 24:1529; the synthetic cohort's
runners recover 1.4-2.2 times slower). And with the shape on falls too, the shape that slows a
rise near HRmax also slows every recovery that starts there, and a fitted rho grows to undo it:
`experiments/hr_personal_ode.py` measured recoveries from moderate HR 8-28 % too fast with the
factor on the shaped rate, and within 11 % for every held-out runner with this form. The field
is continuous at D = HR, where both rates multiply zero. `asymmetric=False` is the published
model; the experiment compares the two. `D` relaxes towards the exercise intensity

    I(t) = a(speed_t, grade_t; e) x fatigue(t),   fatigue(t) = 1 + phi t / 3600 s,

where `a`, bounded to [30, 250] bpm, is a small activity network of speed, grade and the runner's
embedding, and phi >= 0 a per-runner fatigue rate (HR drifting up at constant work).

Each runner has an embedding `e` (learned for training runners, calibrated for new ones, see
`tasks.hr_personal`), decoded linearly and squashed to the bounded parameters of `BOUNDS`:
A, B in [-3, 5]; alpha, beta in [0.1, 3]; HRmin in [40, 90]; HRmax in [140, 210] bpm; phi in
[0, 0.3] per hour; rho in [0.2, 2].

Solved with RK4 at 1 s (`models.ode`, either engine). The published equations are in minutes; in
seconds, a relaxation rate above 2.78 /s makes RK4 at 1 s unstable, so the two rates are capped at
`MAX_RATE` = 2 /s (a time constant of 0.5 s, far quicker than any heart-rate response;
reached by the HR rate from A of about 2.7 with steep shapes, alpha and beta near 3, whatever
the bounds, and by the recovery rate only with B near its upper bound). Outside [HRmin, HRmax]
the restoring term adds `RESTORE_RATE`, so there a capped HR rate gives 3 /s, where RK4 at
1 s overshoots (a known limit, left so the trained figures stay reproducible: it needs A near
4 or more and HR held below HRmin, e.g. a measured resting HR in the standard protocol). The
intensity depends on the inputs and `e` only, so it is computed for all seconds before the
solver runs; between seconds it is linear.

Protocols as for the other HR models: generative, one solve of the whole session from its first
second (D starts equal to HR, a runner at steady state); standard, 60 s windows solved one after
another (`lax.scan`) with HR reset to each window's measured first second and D carried on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from wearjax.models.backbone import dense
from wearjax.models.hr_base import AbstractHRModel, HRPrediction, check_window, measured_hr
from wearjax.models.hr_kalman import HR_MAX, HR_MIN
from wearjax.models.ode import Adjoint, Engine, replace_static, rk4_step, solve

# (low, high) of each decoded parameter, in `PersonalParams` order
BOUNDS: dict[str, tuple[float, float]] = {
    "log_rate_hr": (-3.0, 5.0),  # A
    "log_rate_demand": (-3.0, 5.0),  # B
    "alpha": (0.1, 3.0),
    "beta": (0.1, 3.0),
    "hr_min": (40.0, 90.0),
    "hr_max": (140.0, 210.0),
    "fatigue": (0.0, 0.3),  # phi, per hour
    "recovery": (0.2, 2.0),  # rho: HR falls at the rate rho e^A / 60 (asymmetric form)
}
# where an untrained model (and a runner with e = 0) starts: time constants of about 50 s (HR)
# and 20 s (demand), linear shape, typical HR bounds
_START = {
    "log_rate_hr": 0.0,
    "log_rate_demand": 1.0,
    "alpha": 1.0,
    "beta": 1.0,
    "hr_min": 60.0,
    "hr_max": 190.0,
    "fatigue": 0.05,
    "recovery": 1.0,
}
DEMAND_BOUNDS = (30.0, 250.0)  # bpm, the activity network's range
RESTORE_RATE = 1.0  # 1/s, the hard restoring term outside [HRmin, HRmax]
MAX_RATE = 2.0  # 1/s, RK4 at 1 s is stable below 2.78
_FLOOR = 0.5  # bpm: f_min, f_max are evaluated at least this far inside the bounds
SPEED_CENTER, SPEED_SCALE, GRADE_SCALE = 3.0, 1.0, 0.1  # activity-network input scaling


class PersonalParams(NamedTuple):
    """One runner's ODE parameters (see `BOUNDS`)."""

    log_rate_hr: Float[Array, "*runner"]
    log_rate_demand: Float[Array, "*runner"]
    alpha: Float[Array, "*runner"]
    beta: Float[Array, "*runner"]
    hr_min: Float[Array, "*runner"]
    hr_max: Float[Array, "*runner"]
    fatigue: Float[Array, "*runner"]
    recovery: Float[Array, "*runner"]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _field(
    y: Float[Array, " 2"], intensity: Float[Array, ""] | float, p: PersonalParams, asymmetric
):
    hr, demand = y[0], y[1]
    f_min = (jnp.maximum(hr - p.hr_min, _FLOOR) / 60.0) ** p.alpha
    f_max = (jnp.maximum(p.hr_max - hr, _FLOOR) / 60.0) ** p.beta
    shape = f_min * f_max
    if asymmetric:
        shape = jnp.where(demand < hr, p.recovery, shape)
    rate = jnp.minimum(jnp.exp(p.log_rate_hr) * shape / 60.0, MAX_RATE)
    restore = RESTORE_RATE * (jax.nn.relu(p.hr_min - hr) - jax.nn.relu(hr - p.hr_max))
    d_hr = rate * (demand - hr) + restore
    d_demand = jnp.minimum(jnp.exp(p.log_rate_demand) / 60.0, MAX_RATE) * (intensity - demand)
    return jnp.stack([d_hr, d_demand])


def hr_field(t, y: Float[Array, " 2"], intensity: Float[Array, ""] | float, p: PersonalParams):
    """The right-hand side d(HR, D)/dt (bpm/s) of the published personalised ODE (`p.recovery`
    is not used)."""
    del t
    return _field(y, intensity, p, asymmetric=False)


def asymmetric_hr_field(
    t, y: Float[Array, " 2"], intensity: Float[Array, ""] | float, p: PersonalParams
):
    """d(HR, D)/dt (bpm/s) of wearjax's asymmetric form: while D < HR the HR rate is
    `p.recovery e^A / 60`, without the level shape."""
    del t
    return _field(y, intensity, p, asymmetric=True)


class PersonalHRODE(eqx.Module):
    """Per-runner embeddings, their decoder and the activity network of the personalised ODE.

    `embedding [R, E]` holds one row per runner of the cohort it was trained on; a runner it has
    not seen is given a calibrated embedding (`tasks.hr_personal.calibrate`). `for_runner(e)`
    is one runner's `AbstractHRModel`, whose inputs are the activity inputs `u [T, 2]`: speed
    (m/s) and grade (rise/run), see `tasks.hr_personal.activity_inputs`.
    """

    embedding: Float[Array, "runner embed"]
    decoder: eqx.nn.Linear
    activity_hidden: eqx.nn.Linear
    activity_out: eqx.nn.Linear
    window: int = eqx.field(static=True)
    asymmetric: bool = eqx.field(static=True)
    engine: Engine = eqx.field(static=True)
    adjoint: Adjoint = eqx.field(static=True)
    checkpoints: int | None = eqx.field(static=True)

    def __init__(
        self,
        n_runners: int,
        embed: int = 8,
        width: int = 32,
        *,
        window: int = 60,
        asymmetric: bool = True,
        engine: Engine = "diffrax",
        adjoint: Adjoint = "checkpoint",
        checkpoints: int | None = None,
        key: PRNGKeyArray,
    ):
        k = jax.random.split(key, 4)
        self.embedding = 0.01 * jax.random.normal(k[0], (n_runners, embed))
        decoder = eqx.nn.Linear(embed, len(BOUNDS), key=k[1])
        start = jnp.asarray(
            [_logit((_START[n] - lo) / (hi - lo)) for n, (lo, hi) in BOUNDS.items()]
        )
        self.decoder = eqx.tree_at(lambda m: (m.weight, m.bias), decoder, (decoder.weight, start))
        self.activity_hidden = eqx.nn.Linear(2 + embed, width, key=k[2])
        self.activity_out = eqx.nn.Linear(width, 1, key=k[3])
        self.window = window
        self.asymmetric = asymmetric
        self.engine = engine
        self.adjoint = adjoint
        self.checkpoints = checkpoints

    def with_engine(
        self, engine: Engine, adjoint: Adjoint | None = None, checkpoints: int | None = None
    ) -> PersonalHRODE:
        """The same model solved by another engine (adjoint, checkpoints: `models.ode.solve`;
        each kept from this model unless given)."""
        kept = self.checkpoints if checkpoints is None else checkpoints
        return replace_static(
            self, engine=engine, adjoint=adjoint or self.adjoint, checkpoints=kept
        )

    @property
    def _solver(self) -> dict:
        return dict(engine=self.engine, adjoint=self.adjoint, checkpoints=self.checkpoints)

    @property
    def field(self):
        """The right-hand side this model integrates: `asymmetric_hr_field` or `hr_field`."""
        return asymmetric_hr_field if self.asymmetric else hr_field

    def params(self, e: Float[Array, "*runner embed"]) -> PersonalParams:
        """The bounded ODE parameters of embedding(s) `e`."""
        raw = dense(self.decoder.weight, self.decoder.bias, e)
        values = [
            lo + (hi - lo) * jax.nn.sigmoid(raw[..., i])
            for i, (lo, hi) in enumerate(BOUNDS.values())
        ]
        p = PersonalParams(*values)
        return p if self.asymmetric else p._replace(recovery=jnp.ones_like(p.recovery))

    def intensity(
        self, e: Float[Array, " embed"], u: Float[Array, "time 2"], p: PersonalParams, start=0
    ) -> Float[Array, " time"]:
        """I(t) = a(speed, grade; e) x (1 + phi t / 3600) for every second (bpm); `u`'s first
        row is second `start` of the session."""
        scaled = jnp.stack([(u[:, 0] - SPEED_CENTER) / SPEED_SCALE, u[:, 1] / GRADE_SCALE], axis=-1)
        z = jnp.concatenate([scaled, jnp.broadcast_to(e, (u.shape[0], e.shape[0]))], axis=-1)
        h = jax.nn.leaky_relu(dense(self.activity_hidden.weight, self.activity_hidden.bias, z))
        a = dense(self.activity_out.weight, self.activity_out.bias, h)[:, 0]
        lo, hi = DEMAND_BOUNDS
        hours = (start + jnp.arange(u.shape[0], dtype=u.dtype)) / 3600.0
        return (lo + (hi - lo) * jax.nn.sigmoid(a)) * (1.0 + p.fatigue * hours)

    def _run(self, p: PersonalParams, intensity, starts, reset: bool) -> HRPrediction:
        """`starts [N]` are the windows' measured first HR (bpm). With `reset` (standard) each
        window's HR starts there and D carries on: a `lax.scan` over windows, each solved up to
        the next window's first second. Without (generative) only the first does, and the whole
        session is one solve (the same numbers as chaining the windows, with one solver loop)."""
        t = intensity.shape[0]
        starts = jnp.asarray(starts, intensity.dtype)  # the parameters' dtype: the carry's
        y0 = jnp.stack([starts[0], starts[0]])
        if reset:
            i = intensity.reshape(t // self.window, self.window)
            after = jnp.concatenate([i[1:, :1], i[-1:, -1:]])
            inputs = jnp.concatenate([i, after], axis=1)  # [N, W + 1]: each window's last step

            def body(y, w):
                inten, start = w
                ys = solve(self.field, jnp.stack([start, y[1]]), inten, p, **self._solver)
                return ys[-1], ys[:-1, 0]

            _, hr = jax.lax.scan(body, y0, (inputs, starts))
        else:
            hr = solve(self.field, y0, intensity, p, **self._solver)[:, 0]
            hr = hr.reshape(t // self.window, self.window)
        mu, sigma = hr.mean(axis=1), hr.std(axis=1)
        hr = jnp.clip(hr.reshape(-1), HR_MIN, HR_MAX)
        return HRPrediction(hr, jnp.zeros_like(hr), mu, sigma)

    def for_runner(self, e: Float[Array, " embed"]) -> PersonalRunner:
        """The HR model (`AbstractHRModel`) of one runner with embedding `e`."""
        return PersonalRunner(model=self, e=e, window=self.window)

    def runner_embedding(self, runner: Int[Array, ""]) -> Float[Array, " embed"]:
        return self.embedding[runner]


class PersonalStream(NamedTuple):
    """`PersonalRunner.step`'s state: second count, `(HR, D)` (bpm) and the previous second's
    intensity (bpm)."""

    t: Int[Array, ""]
    y: Float[Array, " 2"]
    intensity: Float[Array, ""]


class PersonalRunner(AbstractHRModel):
    """The personalised ODE of one runner: `x = u [T, 2]`, speed (m/s) and grade (rise/run)."""

    model: PersonalHRODE
    e: Float[Array, " embed"]
    window: int = eqx.field(static=True)

    def encode(self, x: Float[Array, "time 2"], *, key: PRNGKeyArray | None = None):
        """The runner's bounded ODE parameters and the intensity of every second."""
        del key  # deterministic
        check_window(x.shape[0], self.window)
        p = self.model.params(self.e)
        x = jnp.asarray(x, self.e.dtype)  # computed in the parameters' dtype
        return p, self.model.intensity(self.e, x, p)

    def standard(self, encoded, hr_init: Float[Array, " window"]) -> HRPrediction:
        """Each window's HR starts from its first second `hr_init` (bpm); D carries on."""
        return self.model._run(*encoded, hr_init, reset=True)

    def generative(self, encoded, hr0: Float[Array, ""]) -> HRPrediction:
        """Only the session's first HR `hr0` (bpm) is known: one solve of the whole session."""
        n = encoded[1].shape[0] // self.window
        return self.model._run(*encoded, jnp.broadcast_to(hr0, (n,)), reset=False)

    def init_stream(self, hr0: Float[Array, ""]) -> PersonalStream:
        hr0 = jnp.asarray(hr0, self.e.dtype)  # the parameters' dtype, not weak
        return PersonalStream(jnp.asarray(0), jnp.stack([hr0, hr0]), jnp.zeros((), hr0.dtype))

    def step(
        self, state: PersonalStream, x_t: Float[Array, " 2"], hr_t: Float[Array, ""] | None = None
    ) -> tuple[PersonalStream, Float[Array, ""], Float[Array, ""]]:
        """One second (`AbstractHRModel.step`): the RK4 step from the previous second; a
        measured `hr_t` resets HR and D carries on, as the standard protocol does at a window
        start. From `init_stream(hr0)` the stream equals `rollout(x, hr0)` with nothing measured
        and the standard protocol with HR measured at every window start. Variance zero."""
        dtype = state.y.dtype
        hr_t, measured = measured_hr(hr_t, dtype)
        x_t = jnp.asarray(x_t, dtype)  # the state's dtype, whatever the inputs'
        t = state.t.astype(dtype)
        p = self.model.params(self.e)
        now = self.model.intensity(self.e, x_t[None], p, start=t)[0]
        mid = 0.5 * (state.intensity + now)
        y = rk4_step(self.model.field, t - 1, state.y, state.intensity, mid, now, p)
        y = jnp.where(state.t == 0, state.y, y)
        y = y.at[0].set(jnp.where(measured & (state.t > 0), hr_t, y[0]))
        hr = jnp.clip(y[0], HR_MIN, HR_MAX)
        return PersonalStream(state.t + 1, y, now), hr, jnp.zeros((), dtype)
