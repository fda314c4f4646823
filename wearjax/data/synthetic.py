"""A synthetic cohort of runners: wearjax's built-in default data.

Each runner gets a physiology (`RunnerPhysiology`); each session gets a workout and a speed and
grade profile, from which the response models of `wearjax.data.physiology` give 1 Hz
running-dynamics channels, heart rate (HR) and VO2, observed with chest-strap-like HR noise and
dropouts and as breath-by-breath VO2.

Where the numbers come from:

- Breath-by-breath VO2 carries large interbreath noise (Lamarra et al. 1987, J Appl Physiol
  62:2003): 6 % plus 50 mL/min per breath here, with breaths every 2.05-3.3 s (0.3-0.49 Hz)
  during running.
- A 1500 m race is run above the speed at VO2max (here 105-112 % of it).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from wearjax.data.physiology import (
    RunnerPhysiology,
    heart_rate_response,
    running_dynamics,
    sample_physiology,
    speed_at_intensity,
    vo2_response,
)
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
