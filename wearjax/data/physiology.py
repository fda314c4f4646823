"""Runner physiology and the noise-free response models of the synthetic cohort.

`RunnerPhysiology` holds each runner's parameters (`sample_physiology` draws them); the models
map a 1 Hz speed (m/s) and grade (rise/run) profile to oxygen demand (mL/kg/min), heart rate
(HR, bpm), VO2 (mL/min) and running dynamics. The HR model is deliberately of a different
functional form from wearjax's learned models (a GRU + Kalman filter and a first-order neural
ODE): oxygen demand from a metabolic equation, a linear %HRR ~ %VO2R map with a soft ceiling,
asymmetric first-order kinetics and a drift driven by accumulated hard work.

Where the numbers come from (parameter ranges are drawn uniformly inside them):

- Maximal HR: Tanaka, Monahan & Seals (2001, J Am Coll Cardiol 37:153) fitted
  HRmax = 208 - 0.7 age over 18,712 subjects; individuals scatter about it by several bpm, so
  we add N(0, 6 bpm). Resting HR of 40-75 bpm falls with aerobic fitness.
- Oxygen demand: the ACSM metabolic equation for running, VO2 = 0.2 v + 0.9 v grade + 3.5
  (mL/kg/min, v in m/min), with the net cost (the terms other than 3.5) scaled by a per-runner
  economy factor of 0.9-1.1: Saunders, Pyne, Telford & Hawley (2004, Sports Med 34:465) review
  differences in running economy of this order between runners of similar VO2max. Downhill we
  keep half of the grade term's saving: the cost of running downhill falls less than a
  symmetric grade term implies and stops falling on steep slopes (Minetti et al. 2002,
  J Appl Physiol 93:1039).
- HR from demand: Swain et al. (1994, Med Sci Sports Exerc 26:112) showed that %HRR runs above
  %VO2max at low intensities, and Swain & Leutholtz (1997, Med Sci Sports Exerc 29:410) that it
  matches %VO2R, the percentage of the VO2 reserve VO2max - 3.5. We use that identity, with a
  tanh knee above 85 % of HRR so that supramaximal demand approaches HRmax without passing it.
- HR kinetics: first order, faster on (time constants 20-45 s) than off (1.4-2.2 times slower);
  the recovery is vagally mediated and slower than the onset (Imai et al. 1994, J Am Coll
  Cardiol 24:1529).
- Cardiovascular drift: HR rises at constant work during prolonged exercise, by roughly
  10-20 % over an hour of moderate work (Coyle & Gonzalez-Alonso 2001, Exerc Sport Sci Rev
  29:88). We add 0.08-0.25 bpm per minute spent above 60 % of VO2R.
- VO2 kinetics: phase II time constants of 20-40 s in healthy adults, and above the lactate
  threshold a slow component that adds VO2 over minutes and pushes it towards VO2max (Poole &
  Jones 2012, Compr Physiol 2:933); we draw 0.4-0.8 mL of slow component per mL of demand
  above threshold, built with a 200-400 s time constant. The lactate threshold of trained
  runners sits at roughly 70-88 % of VO2max (Bassett & Howley 2000, Med Sci Sports Exerc
  32:70; here as a fraction of VO2R).
- VO2max: 40-60 mL/kg/min (women) and 46-70 (men) at 20, recreational to well-trained
  runners, less 0.15 mL/kg/min per year of age.
- Running dynamics: cadence of 78-88 strides/min at 3 m/s (156-176 steps/min), rising by
  2.5-5.5 strides/min per m/s as runners lengthen their stride more than they quicken it
  (Cavanagh & Kram 1989, Med Sci Sports Exerc 21:467); ground contact of 220-280 ms at 3 m/s,
  falling as v^-(0.6..0.9); vertical oscillation 65-100 mm; these give the 6-10 % vertical
  ratio and 30-40 % stance time typical of consumer running-dynamics sensors.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

REST_VO2 = 3.5  # mL/kg/min, one MET
DRIFT_INTENSITY = 0.6  # fraction of VO2R above which drift accumulates
HR_KNEE = 0.85  # fraction of HRR where the soft ceiling starts
VO2_KNEE = 0.9  # fraction of VO2R where the VO2 soft ceiling starts


class RunnerPhysiology(eqx.Module):
    """The true physiology of each runner: arrays of shape [runner] (or scalars for one runner).

    Units: heights m, weights kg, HR bpm, time constants s, `drift_rate` bpm per minute above
    `DRIFT_INTENSITY`, `vo2max` mL/kg/min, `economy` a factor on the ACSM net cost,
    `threshold_speed` m/s (lactate threshold on the flat), `slow_gain` VO2 slow component per
    unit of demand above threshold, cadence strides/min at 3 m/s and per m/s, vertical
    oscillation mm at 3 m/s and per m/s, ground contact ms at 3 m/s and its speed exponent.
    `runner_physiology[i]` selects runner(s) `i`.
    """

    age: Float[Array, "*runner"]
    sex_male: Float[Array, "*runner"]
    height: Float[Array, "*runner"]
    weight: Float[Array, "*runner"]
    hr_rest: Float[Array, "*runner"]
    hr_max: Float[Array, "*runner"]
    tau_on: Float[Array, "*runner"]
    tau_off: Float[Array, "*runner"]
    drift_rate: Float[Array, "*runner"]
    vo2max: Float[Array, "*runner"]
    economy: Float[Array, "*runner"]
    threshold_speed: Float[Array, "*runner"]
    tau_vo2: Float[Array, "*runner"]
    slow_gain: Float[Array, "*runner"]
    tau_slow: Float[Array, "*runner"]
    cadence_base: Float[Array, "*runner"]
    cadence_slope: Float[Array, "*runner"]
    oscillation_base: Float[Array, "*runner"]
    oscillation_slope: Float[Array, "*runner"]
    contact_base: Float[Array, "*runner"]
    contact_exponent: Float[Array, "*runner"]

    def __getitem__(self, runner) -> RunnerPhysiology:
        return jax.tree.map(lambda a: a[runner], self)


def sample_physiology(key: PRNGKeyArray, n_runners: int) -> RunnerPhysiology:
    """Draw `n_runners` physiologies from the ranges in the module docstring."""
    k_uniform, k_normal = jax.random.split(key)
    uniforms = jax.random.uniform(k_uniform, (21, n_runners))
    normals = jax.random.normal(k_normal, (4, n_runners))

    def u(i, lo, hi):
        return lo + (hi - lo) * uniforms[i]

    sex = (uniforms[0] < 0.5).astype(uniforms.dtype)
    age = u(1, 20.0, 55.0)
    height = jnp.where(sex > 0.5, 1.78 + 0.07 * normals[0], 1.65 + 0.06 * normals[0])
    height = jnp.clip(height, 1.50, 2.00)
    weight = u(3, 19.0, 24.5) * height**2  # body-mass index of runners
    vo2max = jnp.where(sex > 0.5, u(4, 46.0, 70.0), u(4, 40.0, 60.0)) - 0.15 * (age - 20.0)
    hr_max = jnp.clip(208.0 - 0.7 * age + 6.0 * normals[1], 160.0, 210.0)
    hr_rest = jnp.clip(78.0 - 0.45 * vo2max + 4.0 * normals[2], 40.0, 75.0)
    tau_on = u(7, 20.0, 45.0)
    tau_off = tau_on * u(8, 1.4, 2.2)
    economy = u(9, 0.9, 1.1)
    threshold = u(10, 0.70, 0.88)
    threshold_speed = _speed_at(vo2max, economy, threshold, 0.0)
    cadence_base = 83.0 - 20.0 * (height - 1.72) + 2.5 * normals[3]
    return RunnerPhysiology(
        age=age,
        sex_male=sex,
        height=height,
        weight=weight,
        hr_rest=hr_rest,
        hr_max=hr_max,
        tau_on=tau_on,
        tau_off=tau_off,
        drift_rate=u(12, 0.08, 0.25),
        vo2max=vo2max,
        economy=economy,
        threshold_speed=threshold_speed,
        tau_vo2=u(13, 20.0, 40.0),
        slow_gain=u(14, 0.4, 0.8),
        tau_slow=u(15, 200.0, 400.0),
        cadence_base=jnp.clip(cadence_base, 76.0, 92.0),
        cadence_slope=u(16, 2.5, 5.5),
        oscillation_base=u(17, 65.0, 100.0),
        oscillation_slope=u(18, -3.0, 4.0),
        contact_base=u(19, 220.0, 280.0),
        contact_exponent=u(20, 0.6, 0.9),
    )


def _speed_at(vo2max, economy, intensity, grade):
    net = intensity * (vo2max - REST_VO2)
    return net / (economy * (0.2 + 0.9 * grade)) / 60.0


def speed_at_intensity(
    physiology: RunnerPhysiology, intensity: ArrayLike, grade: ArrayLike = 0.0
) -> Float[Array, "*shape"]:
    """Speed (m/s) at which the ACSM demand is `intensity` x VO2R on an uphill `grade`."""
    p = physiology
    return _speed_at(p.vo2max, p.economy, jnp.asarray(intensity), jnp.asarray(grade))


def oxygen_demand(
    speed: Float[Array, "*time"], grade: Float[Array, "*time"], economy: ArrayLike
) -> Float[Array, "*time"]:
    """Steady-state oxygen demand (mL/kg/min): ACSM VO2 = 0.2 v + 0.9 v grade + 3.5 (v m/min).

    The net cost is scaled by `economy`; downhill grades save half of what the equation says
    and the net cost never drops below 0.1 mL/kg per metre.
    """
    grade_eff = jnp.where(grade > 0.0, grade, 0.5 * grade)
    cost = jnp.maximum(0.2 + 0.9 * grade_eff, 0.1)
    return REST_VO2 + economy * cost * (60.0 * jnp.maximum(speed, 0.0))


def _soft_ceiling(u: Array, knee: float) -> Array:
    """Identity on [0, knee], then a tanh approaching 1; 0 below 0."""
    u = jnp.maximum(u, 0.0)
    over = jnp.maximum(u - knee, 0.0) / (1.0 - knee)
    return jnp.where(u <= knee, u, knee + (1.0 - knee) * jnp.tanh(over))


def heart_rate_target(
    physiology: RunnerPhysiology, demand: Float[Array, " time"]
) -> Float[Array, " time"]:
    """Drifting steady-state HR (bpm) for one runner from the demand (mL/kg/min) over time.

    %HRR = %VO2R (Swain & Leutholtz 1997) plus a drift of `drift_rate` bpm per minute already
    spent above `DRIFT_INTENSITY` of VO2R (Coyle & Gonzalez-Alonso 2001), under a soft ceiling
    at HRmax.
    """
    p = physiology
    intensity = (demand - REST_VO2) / (p.vo2max - REST_VO2)
    above = (intensity > DRIFT_INTENSITY).astype(demand.dtype)
    seconds_above = jnp.cumsum(above) - above  # before second t
    reserve = p.hr_max - p.hr_rest
    fraction = intensity + p.drift_rate * (seconds_above / 60.0) / reserve
    return p.hr_rest + reserve * _soft_ceiling(fraction, HR_KNEE)


def heart_rate_kinetics(
    target: Float[Array, " time"], hr0: ArrayLike, tau_on: ArrayLike, tau_off: ArrayLike
) -> Float[Array, " time"]:
    """Asymmetric first-order HR kinetics, dHR/dt = (target - HR) / tau, on a 1 s grid.

    Each step is the exact solution over one second with the target held:
    HR[t+1] = target[t] + (HR[t] - target[t]) exp(-1 / tau), tau = `tau_on` when the target is
    above HR and `tau_off` otherwise. Returns HR[0] = `hr0`, HR[1], ..., HR[T-1].
    """
    decay_on = jnp.exp(-1.0 / jnp.asarray(tau_on, target.dtype))
    decay_off = jnp.exp(-1.0 / jnp.asarray(tau_off, target.dtype))

    def step(hr, target_t):
        decay = jnp.where(target_t > hr, decay_on, decay_off)
        return target_t + (hr - target_t) * decay, hr

    _, hr = jax.lax.scan(step, jnp.asarray(hr0, target.dtype), target)
    return hr


def heart_rate_response(
    physiology: RunnerPhysiology,
    speed: Float[Array, " time"],
    grade: Float[Array, " time"],
    hr0: ArrayLike,
) -> Float[Array, " time"]:
    """Noise-free HR (bpm) of one runner over a speed (m/s) and grade profile, from `hr0`."""
    demand = oxygen_demand(speed, grade, physiology.economy)
    target = heart_rate_target(physiology, demand)
    return heart_rate_kinetics(target, hr0, physiology.tau_on, physiology.tau_off)


def vo2_response(
    physiology: RunnerPhysiology, speed: Float[Array, " time"], grade: Float[Array, " time"]
) -> Float[Array, " time"]:
    """Noise-free VO2 (mL/min) of one runner over a speed and grade profile.

    Phase II: first order towards the demand with `tau_vo2`; above the threshold demand a slow
    component of `slow_gain` x the excess, first order with `tau_slow` (Poole & Jones 2012);
    the sum under a soft ceiling at VO2max. Starts from standing (1.5 MET).
    """
    p = physiology
    demand = oxygen_demand(speed, grade, p.economy)
    threshold = oxygen_demand(p.threshold_speed, jnp.zeros_like(p.threshold_speed), p.economy)
    slow_target = p.slow_gain * jnp.maximum(demand - threshold, 0.0)
    decay = jnp.stack([jnp.exp(-1.0 / p.tau_vo2), jnp.exp(-1.0 / p.tau_slow)]).astype(demand.dtype)
    targets = jnp.stack([demand, slow_target], axis=1)

    def step(state, target_t):
        return target_t + (state - target_t) * decay, state

    start = jnp.asarray([1.5 * REST_VO2, 0.0], demand.dtype)
    _, state = jax.lax.scan(step, start, targets)
    total = state[:, 0] + state[:, 1]
    fraction = _soft_ceiling((total - REST_VO2) / (p.vo2max - REST_VO2), VO2_KNEE)
    return p.weight * (REST_VO2 + (p.vo2max - REST_VO2) * fraction)


def running_dynamics(
    physiology: RunnerPhysiology, speed: Float[Array, " time"], grade: Float[Array, " time"]
) -> dict[str, Float[Array, " time"]]:
    """Noise-free cadence, vertical oscillation, stance %, vertical ratio and step length.

    Cadence (strides/min) rises linearly with speed and slightly uphill; step length (mm) is
    speed / step frequency; vertical oscillation changes mildly with speed (less below
    2.5 m/s); ground contact falls as speed^-exponent and stance % is contact / stride time
    x 100; vertical ratio is oscillation / step length x 100.
    """
    p = physiology
    v = jnp.maximum(speed, 0.5)
    cadence = p.cadence_base + p.cadence_slope * (v - 3.0) + 40.0 * grade
    cadence = jnp.clip(cadence, 55.0, 115.0)
    step_length = 1000.0 * v / (2.0 * cadence / 60.0)
    oscillation = jnp.clip(p.oscillation_base + p.oscillation_slope * (v - 3.0), 40.0, 150.0)
    oscillation = oscillation * jnp.clip(v / 2.5, 0.6, 1.0)  # a slow shuffle bounces less
    contact_ms = p.contact_base * (v / 3.0) ** (-p.contact_exponent)
    stride_ms = 60000.0 / cadence
    return {
        "cadence": cadence,
        "vertical_oscillation": oscillation,
        "stance_time_percent": 100.0 * contact_ms / stride_ms,
        "vertical_ratio": 100.0 * oscillation / step_length,
        "step_length": step_length,
    }


@functools.partial(jax.jit, static_argnames=("step_up", "step_down", "n_time"))
def hr_step_response(
    physiology: RunnerPhysiology,
    runner: Int[ArrayLike, ""],
    *,
    speed_low: Float[ArrayLike, ""] | None = None,
    speed_high: Float[ArrayLike, ""] | None = None,
    step_up: int = 300,
    step_down: int = 900,
    n_time: int = 1800,
) -> tuple[Float[Array, " time"], Float[Array, " time"]]:
    """Noise-free HR of `runner` on the flat for a speed step up at `step_up`, down at `step_down`.

    Speeds default to the runner's 35 % and 55 % of VO2R, below the drift intensity and the HR
    ceiling, so the response is purely first order: the HR half-times after the steps are
    ln 2 x `tau_on` and ln 2 x `tau_off`. Starts at the low-speed steady state. Returns
    `(speed, hr)`, each [n_time].
    """
    p = physiology[runner]
    low = speed_at_intensity(p, 0.35) if speed_low is None else jnp.asarray(speed_low)
    high = speed_at_intensity(p, 0.55) if speed_high is None else jnp.asarray(speed_high)
    t = jnp.arange(n_time)
    speed = jnp.where((t >= step_up) & (t < step_down), high, low).astype(jnp.result_type(float))
    grade = jnp.zeros_like(speed)
    hr0 = heart_rate_target(p, oxygen_demand(speed[:1], grade[:1], p.economy))[0]
    return speed, heart_rate_response(p, speed, grade, hr0)
