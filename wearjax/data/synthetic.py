"""A synthetic cohort of runners: wearjax's built-in default data.

Each runner gets a physiology (`RunnerPhysiology`); each session gets a workout, a speed and
grade profile, 1 Hz running-dynamics channels, heart rate (HR) from a physiological response
model, breath-by-breath VO2 and chest-strap-like noise and dropouts. The HR model is deliberately
of a different functional form from wearjax's learned models (a GRU + Kalman filter and a
first-order neural ODE): oxygen demand from a metabolic equation, a linear %HRR ~ %VO2R map with
a soft ceiling, asymmetric first-order kinetics and a drift driven by accumulated hard work.

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
  32:70; here as a fraction of VO2R). Breath-by-breath VO2 carries large interbreath noise
  (Lamarra et al. 1987, J Appl Physiol 62:2003): 6 % plus 50 mL/min per breath here, with
  breaths every 2.05-3.3 s (0.3-0.49 Hz) during running.
- VO2max: 40-60 mL/kg/min (women) and 46-70 (men) at 20, recreational to well-trained
  runners, less 0.15 mL/kg/min per year of age.
- Running dynamics: cadence of 78-88 strides/min at 3 m/s (156-176 steps/min), rising by
  2.5-5.5 strides/min per m/s as runners lengthen their stride more than they quicken it
  (Cavanagh & Kram 1989, Med Sci Sports Exerc 21:467); ground contact of 220-280 ms at 3 m/s,
  falling as v^-(0.6..0.9); vertical oscillation 65-100 mm; these give the 6-10 % vertical
  ratio and 30-40 % stance time typical of consumer running-dynamics sensors.
- A 1500 m race is run above the speed at VO2max (here 105-112 % of it).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from wearjax.data.types import CHANNEL_UNITS, Cohort, bucket_length

WORKOUTS: tuple[str, ...] = (
    "easy",
    "tempo",
    "long",
    "intervals",
    "hiit",
    "hills",
    "fartlek",
    "incremental",
    "race_1500",
)

# Session length of each workout type as a span of [min_minutes, max_minutes] (fractions).
_DURATION_SPAN = np.array(
    [
        [0.0, 0.5],  # easy
        [0.15, 0.55],  # tempo
        [0.75, 1.0],  # long
        [0.15, 0.55],  # intervals
        [0.0, 0.35],  # hiit
        [0.15, 0.55],  # hills
        [0.1, 0.6],  # fartlek
        [0.0, 0.3],  # incremental
        [0.0, 0.3],  # race_1500
    ]
)
# Amplitude of the gentle random terrain per workout type (track sessions are flat).
_TERRAIN = (1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)

REST_VO2 = 3.5  # mL/kg/min, one MET
DRIFT_INTENSITY = 0.6  # fraction of VO2R above which drift accumulates
HR_KNEE = 0.85  # fraction of HRR where the soft ceiling starts
VO2_KNEE = 0.9  # fraction of VO2R where the VO2 soft ceiling starts
SPEED_FLOOR = 1.5  # m/s, the slowest walk-jog in any profile

# Chest strap: white noise, an AR(1) component and rare single-second spikes (bpm).
_HR_WHITE_SD = 0.8
_HR_AR_SD = 1.5
_HR_AR_COEF = 0.97
_HR_SPIKE_RATE = 1.0 / 900.0
_DROPOUTS_PER_HOUR = 3.0
_MAX_DROPOUTS_PER_HOUR = 8
# Per-channel measurement noise, in CHANNEL_UNITS order.
_CHANNEL_NOISE = {
    "speed": 0.04,
    "cadence": 0.7,
    "vertical_oscillation": 2.5,
    "stance_time_percent": 0.4,
    "vertical_ratio": 0.15,
    "step_length": 12.0,
    "altitude": 0.4,
}


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


class SyntheticSession(NamedTuple):
    """One simulated session on `n_time` seconds (zero past its duration).

    Observed: `x [T, C]` channels in `CHANNEL_UNITS` order, `hr`, `mask`, `vo2`, `vo2_mask`.
    Truth: `speed` m/s and `grade` (rise/run) driving the physiology, noise-free `hr_clean` bpm
    and `vo2_clean` mL/min.
    """

    x: Float[Array, "time channel"]
    hr: Float[Array, " time"]
    mask: Bool[Array, " time"]
    vo2: Float[Array, " time"]
    vo2_mask: Bool[Array, " time"]
    speed: Float[Array, " time"]
    grade: Float[Array, " time"]
    hr_clean: Float[Array, " time"]
    vo2_clean: Float[Array, " time"]


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


def _count_until(times, n_time):
    """How many of `times` (s, >= 0) are <= t, for each second t < n_time."""
    first_second = jnp.ceil(times).astype(jnp.int32)
    marks = jnp.zeros(n_time, jnp.int32).at[first_second].add(1, mode="drop")
    return jnp.cumsum(marks)


def _repeats(t, start, block, work, rest):
    """Phase of a work/rest repeat block: (in block, in work, block end)."""
    period = work + rest
    n = jnp.floor(jnp.maximum(block, 0.0) / period)
    end = start + n * period
    phase = jnp.mod(t - start, period)
    return (t >= start) & (t < end), phase < work, end


def workout_profile(
    key: PRNGKeyArray,
    physiology: RunnerPhysiology,
    workout: Int[ArrayLike, ""],
    duration: Int[ArrayLike, ""],
    n_time: int,
) -> tuple[Float[Array, " time"], Float[Array, " time"]]:
    """Speed (m/s) and grade over `n_time` seconds for one runner's session of `duration` s.

    All `WORKOUTS` profiles are built and the `workout`-th is selected, so the function is
    vmappable over sessions. Speeds come from the runner's intensities (fractions of VO2R)
    and change over ~5 s (a box filter); grade is gentle terrain as a function of distance,
    or repeated hills inside the hills workout's block.
    """
    p = physiology
    t = jnp.arange(n_time, dtype=jnp.result_type(float))
    d = jnp.asarray(duration).astype(t.dtype)
    k_u, k_seg = jax.random.split(key)
    u = jax.random.uniform(k_u, (24,), dtype=t.dtype)

    def v_at(intensity, grade=0.0):
        return jnp.maximum(speed_at_intensity(p, intensity, grade), 1.8)

    v_max = speed_at_intensity(p, 1.0)
    two_pi = 2.0 * np.pi
    wobble = (
        1.0
        + 0.02 * jnp.sin(two_pi * t / (180.0 + 300.0 * u[0]) + two_pi * u[1])
        + 0.01 * jnp.sin(two_pi * t / (40.0 + 60.0 * u[2]) + two_pi * u[3])
    )
    warm = jnp.minimum(600.0, 0.15 * d)
    cool = jnp.minimum(600.0, 0.12 * d)
    warm_speed = v_at(0.42 + 0.15 * jnp.clip(t / warm, 0.0, 1.0))
    cool_speed = v_at(0.5)
    jog = v_at(0.45)

    def frame(core, end):
        return jnp.where(t < warm, warm_speed, jnp.where(t < end, core, cool_speed))

    easy = v_at(0.58 + 0.08 * u[4]) * wobble * jnp.where((t < 180.0) | (t > d - 180.0), 0.9, 1.0)
    tempo = frame(p.threshold_speed * (0.99 + 0.04 * u[5]) * wobble, d - cool)
    long = v_at(0.65 + 0.05 * u[22]) * (1.0 + 0.5 * (wobble - 1.0)) * jnp.where(t < 300, 0.9, 1.0)

    work = 120.0 + 180.0 * u[6]
    _, on, end = _repeats(t, warm, d - warm - cool, work, work * (0.5 + 0.5 * u[7]))
    intervals = frame(jnp.where(on, v_at(0.92 + 0.08 * u[8]), jog), end)

    sprint = jnp.minimum(v_max * (1.15 + 0.15 * u[9]), 8.5)
    _, on, end = _repeats(t, warm, d - warm - cool, 15.0 + 25.0 * u[10], 45.0 + 45.0 * u[11])
    hiit = frame(jnp.where(on, sprint, SPEED_FLOOR), end)

    hill_grade = 0.05 + 0.05 * u[12]
    up = 45.0 + 75.0 * u[13]
    v_up = v_at(0.88 + 0.1 * u[14], hill_grade)
    v_down = 1.1 * jog
    in_hills, climbing, end = _repeats(t, warm, d - warm - cool, up, up * v_up / v_down)
    hills = frame(jnp.where(climbing, v_up, v_down), end)

    n_segments = n_time // 30 + 2
    seconds, efforts = jax.random.uniform(k_seg, (2, n_segments), t.dtype)
    seconds = 30.0 + 150.0 * seconds
    efforts = 0.55 + 0.43 * efforts
    segment = _count_until(warm + jnp.cumsum(seconds), n_time)
    fartlek = frame(v_at(efforts[jnp.minimum(segment, n_segments - 1)]), d - cool)

    ramp_start = jnp.minimum(600.0, 0.2 * d)
    stages = jnp.clip(jnp.floor(0.45 * (d - ramp_start) / 60.0), 6.0, 15.0)
    v_start = v_at(0.5)
    v_peak = v_max * (1.02 + 0.06 * u[15])
    stage = jnp.clip(jnp.floor((t - ramp_start) / 60.0), 0.0, stages - 1.0)
    exhausted = ramp_start + 60.0 * stages
    incremental = jnp.where(
        t < ramp_start,
        v_at(0.45),
        jnp.where(
            t < exhausted,
            v_start + (v_peak - v_start) * stage / (stages - 1.0),
            jnp.where(t < exhausted + 120.0, SPEED_FLOOR, cool_speed),
        ),
    )

    v_race = v_max * (1.05 + 0.07 * u[21])
    race_time = 1500.0 / v_race
    race_start = jnp.maximum(0.5 * (d - race_time), 0.0)
    progress = (t - race_start) / race_time
    pacing = jnp.where(progress < 0.1, 1.04, jnp.where(progress > 0.85, 1.05, 0.985))
    strides = jnp.zeros_like(t, dtype=bool)
    for before in (240.0, 160.0, 80.0):  # three 15 s strides before the start
        strides = strides | ((t >= race_start - before) & (t < race_start - before + 15.0))
    race = jnp.where(
        t < race_start,
        jnp.where(strides, v_race, v_at(0.55)),
        jnp.where(progress < 1.0, v_race * pacing, cool_speed),
    )

    profiles = jnp.stack([easy, tempo, long, intervals, hiit, hills, fartlek, incremental, race])
    raw = jnp.maximum(profiles[workout], SPEED_FLOOR)
    padded = jnp.pad(raw, 2)  # a 5 s moving average: accelerations over ~5 s
    speed = sum(padded[i : i + n_time] for i in range(5)) / 5.0

    distance = jnp.cumsum(speed)
    k_t = u[16:21]
    amplitude = jnp.asarray(_TERRAIN, t.dtype)[workout] * (0.006 + 0.014 * k_t[0])
    terrain = (
        amplitude
        * (
            jnp.sin(two_pi * distance / (800.0 + 1700.0 * k_t[1]) + two_pi * k_t[2])
            + 0.5 * jnp.sin(two_pi * distance / (200.0 + 400.0 * k_t[3]) + two_pi * k_t[4])
        )
        / 1.5
    )
    on_hill = (jnp.asarray(workout) == WORKOUTS.index("hills")) & in_hills
    grade = jnp.where(on_hill, jnp.where(climbing, hill_grade, -hill_grade), terrain)
    return speed, grade


def _ar1(innovations, start, coef):
    """AR(1) series x[t] = coef x[t-1] + innovations[t], from x[-1] = start."""

    def step(state, e):
        state = coef * state + e
        return state, state

    _, out = jax.lax.scan(step, start, innovations)
    return out


def simulate_session(
    key: PRNGKeyArray,
    physiology: RunnerPhysiology,
    workout: Int[ArrayLike, ""],
    duration: Int[ArrayLike, ""],
    n_time: int,
) -> SyntheticSession:
    """Simulate one session of `duration` s for one runner (scalar `physiology` leaves).

    Arrays run over `n_time` >= `duration` seconds and are zero (masks False) past `duration`.
    HR drops out over a few 5-60 s segments per hour, never in the first 60 s; VO2 is sampled
    once per breath (every 2.05-3.3 s) and held until the next breath.
    """
    p = physiology
    dtype = jnp.result_type(float)
    t = jnp.arange(n_time, dtype=dtype)
    d = jnp.asarray(duration).astype(dtype)
    recorded = t < d
    # Few, large draws: every jax.random call adds a hash to the compiled graph.
    n_channels = len(CHANNEL_UNITS)
    n_drop = max(4, int(np.ceil(_MAX_DROPOUTS_PER_HOUR * n_time / 3600.0)))
    k_profile, k_uniform, k_normal, k_scalar = jax.random.split(key, 4)
    uniform = jax.random.uniform(k_uniform, (3, n_time + 2), dtype)
    normal = jax.random.normal(k_normal, (4 + n_channels, n_time + 2), dtype)
    scalar = jax.random.uniform(k_scalar, (3, n_drop), dtype)

    speed, grade = workout_profile(k_profile, p, workout, duration, n_time)
    hr0 = p.hr_rest + 8.0 + 12.0 * scalar[0, 0]
    hr_clean = heart_rate_response(p, speed, grade, hr0)
    vo2_clean = vo2_response(p, speed, grade)

    # Chest strap: white + AR(1) noise, rare spikes, dropouts.
    white = _HR_WHITE_SD * normal[0, :n_time]
    ar_sd = _HR_AR_SD * np.sqrt(1.0 - _HR_AR_COEF**2)
    ar = _ar1(ar_sd * normal[1, :n_time], _HR_AR_SD * normal[1, n_time], _HR_AR_COEF)
    spike = 2.0 * uniform[1, :n_time] - 1.0
    spike = jnp.where(
        uniform[0, :n_time] < _HR_SPIKE_RATE, jnp.sign(spike) * (8.0 + 12.0 * jnp.abs(spike)), 0.0
    )
    hr_observed = hr_clean + white + ar + spike

    starts = jnp.floor(60.0 + scalar[0] * jnp.maximum(d - 65.0, 0.0))
    lengths = jnp.floor(5.0 + 56.0 * scalar[1])
    active = scalar[2] < jnp.minimum(_DROPOUTS_PER_HOUR * d / 3600.0 / n_drop, 1.0)
    dropped = active[:, None] & (t[None, :] >= starts[:, None])
    dropped = dropped & (t[None, :] < starts[:, None] + lengths[:, None])
    mask = recorded & ~jnp.any(dropped, axis=0)

    # Breath-by-breath VO2, zero-order hold onto the 1 Hz grid.
    n_breaths = n_time // 2 + 2
    intervals = 2.05 + 1.25 * uniform[2, :n_breaths]
    breath_time = jnp.cumsum(intervals) - intervals[0]
    at = jnp.clip(jnp.floor(breath_time).astype(jnp.int32), 0, n_time - 1)
    breath = vo2_clean[at] * (1.0 + 0.06 * normal[2, :n_breaths]) + 50.0 * normal[3, :n_breaths]
    breath = jnp.maximum(breath, 50.0)
    breath_index = _count_until(breath_time, n_time) - 1
    vo2 = breath[jnp.clip(breath_index, 0, n_breaths - 1)]

    # Running dynamics and altitude, with measurement noise.
    clean = running_dynamics(p, speed, grade)
    clean["speed"] = speed
    altitude0 = 800.0 * scalar[1, 0]
    clean["altitude"] = altitude0 + jnp.cumsum(speed * grade) - speed[0] * grade[0]
    x = jnp.stack([clean[c] for c in CHANNEL_UNITS], axis=1)
    sd = jnp.asarray([[_CHANNEL_NOISE[c] for c in CHANNEL_UNITS]], dtype)
    x = x + normal[4:, :n_time].T * sd
    x = jnp.maximum(x, 0.0)

    return SyntheticSession(
        x=jnp.where(recorded[:, None], x, 0.0),
        hr=jnp.where(mask, hr_observed, 0.0),
        mask=mask,
        vo2=jnp.where(recorded, vo2, 0.0),
        vo2_mask=recorded,
        speed=jnp.where(recorded, speed, 0.0),
        grade=jnp.where(recorded, grade, 0.0),
        hr_clean=jnp.where(recorded, hr_clean, 0.0),
        vo2_clean=jnp.where(recorded, vo2_clean, 0.0),
    )


@functools.partial(jax.jit, static_argnames=("n_runners", "sessions_per_runner"))
def _draw_plan(key, n_runners, sessions_per_runner):
    """Physiology, workout cycle offset, per-runner session order, length draws, session keys."""
    k_phys, k_cycle, k_order, k_length, k_sessions = jax.random.split(key, 5)
    n_sessions = n_runners * sessions_per_runner
    order = jax.vmap(lambda k: jax.random.permutation(k, sessions_per_runner))(
        jax.random.split(k_order, n_runners)
    )
    return (
        sample_physiology(k_phys, n_runners),
        jax.random.randint(k_cycle, (), 0, len(WORKOUTS)),
        order,
        jax.random.uniform(k_length, (n_sessions,)),
        jax.random.split(k_sessions, n_sessions),
    )


@functools.partial(jax.jit, static_argnames=("n_time",))
def _simulate_sessions(keys, physiology, runner, workouts, durations, n_time):
    p = physiology[runner]
    sessions = jax.vmap(simulate_session, in_axes=(0, 0, 0, 0, None))(
        keys, p, workouts, durations, n_time
    )
    subject = jnp.stack([p.height, p.weight, p.age, p.sex_male], axis=1)
    return sessions, subject


def simulate_cohort(
    key: PRNGKeyArray,
    n_runners: int = 12,
    sessions_per_runner: int = 9,
    *,
    min_minutes: float = 20.0,
    max_minutes: float = 120.0,
    bucket: int = 600,
    return_physiology: bool = False,
) -> Cohort | tuple[Cohort, RunnerPhysiology]:
    """Simulate `n_runners` x `sessions_per_runner` sessions as a padded `Cohort`.

    Workout types cycle through `WORKOUTS` across the cohort from a random offset (so every
    type appears once the cohort has at least `len(WORKOUTS)` sessions), each runner's sessions
    in a random order; each type's length is drawn from its own span of
    [`min_minutes`, `max_minutes`]. The Python wrapper draws the plan and picks the padded
    length; the sessions are simulated by one jitted vmap. Deterministic in `key`.
    """
    if n_runners < 1 or sessions_per_runner < 1:
        raise ValueError(
            f"need at least one runner and one session each, got n_runners={n_runners}, "
            f"sessions_per_runner={sessions_per_runner}"
        )
    if not 0.0 < min_minutes <= max_minutes:
        raise ValueError(
            f"need 0 < min_minutes <= max_minutes, got {min_minutes} and {max_minutes}"
        )
    physiology, offset, order, uniform, keys = _draw_plan(key, n_runners, sessions_per_runner)
    n_sessions = n_runners * sessions_per_runner
    cycle = (np.arange(n_sessions) + int(offset)) % len(WORKOUTS)
    workouts = cycle.reshape(n_runners, sessions_per_runner)
    workouts = np.take_along_axis(workouts, np.asarray(order), axis=1).reshape(-1)
    runner = np.repeat(np.arange(n_runners), sessions_per_runner)

    span = _DURATION_SPAN[workouts]
    fraction = span[:, 0] + (span[:, 1] - span[:, 0]) * np.asarray(uniform, np.float64)
    minutes = min_minutes + (max_minutes - min_minutes) * fraction
    durations = np.maximum(np.round(60.0 * minutes), 1).astype(np.int32)
    n_time = bucket_length(int(durations.max()), bucket)

    sessions, subject = _simulate_sessions(
        keys,
        physiology,
        jnp.asarray(runner, jnp.int32),
        jnp.asarray(workouts, jnp.int32),
        jnp.asarray(durations),
        n_time,
    )
    cohort = Cohort(
        x=sessions.x.astype(jnp.float32),
        hr=sessions.hr.astype(jnp.float32),
        vo2=sessions.vo2.astype(jnp.float32),
        mask=sessions.mask,
        vo2_mask=sessions.vo2_mask,
        lengths=jnp.asarray(durations, jnp.int32),
        runner=jnp.asarray(runner, jnp.int32),
        subject=subject.astype(jnp.float32),
        channels=tuple(CHANNEL_UNITS),
        runner_names=tuple(f"runner{r:02d}" for r in range(n_runners)),
        workouts=tuple(WORKOUTS[w] for w in workouts),
    )
    return (cohort, physiology) if return_physiology else cohort


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
