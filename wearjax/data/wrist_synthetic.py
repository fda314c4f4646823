"""Synthetic wrist PPG, accelerometer and gyroscope of the synthetic runners' sessions.

The synthetic cohort (`wearjax.data.synthetic`) gives each session a noise-free 1 Hz heart
rate (HR), speed and running dynamics; here a watch on the runner's wrist records them, over
one segment of `minutes` cut from each session at a random start, at `rate` Hz (25-128 Hz):
a photoplethysmogram (PPG, a.u.), 3-axis acceleration (g, gravity included) and 3-axis angular
rate (deg/s). The watch sees the heart through the PPG and, faintly, through the
ballistocardiographic (BCG) recoil in the acceleration; the gait shows in all three signals
and corrupts the PPG, as on a real wrist during running.

Beats and steps. The 1 Hz HR and the cadence (x2: steps/min) are interpolated linearly onto
the sample grid and integrated into a beat phase and a step phase (cycles; the rectangle
rule, `cumsum(f) / rate`, from a random start). The beat rate carries a slow random
variability (0.5-1.5 % SD, below 0.15 Hz) and the step rate a gait variability (0.3-1 % SD,
below 0.2 Hz). The references `hr` and `cadence` are 60 x the phase each advances over each
second, i.e. exactly the rate of the simulated beats and steps.

PPG (blood-volume orientation, AC-coupled, in units of the runner's pulse amplitude `a`,
0.5-1.5 a.u.). The pulse is a function of the fractional beat phase (the shape of Allen 2007,
Physiol Meas 28:R1: a systolic peak, then a smaller diastolic wave after a dicrotic notch):

- a systolic Gaussian at phase 0.18-0.25 (SD 0.06-0.08 of a beat) and a diastolic Gaussian
  0.26-0.32 of a beat later (SD 0.07-0.10, 0.3-0.5 of the systolic height);
- respiration at 0.2-0.7 Hz, rising with HR (0.2 Hz at 60 bpm to 0.7 Hz at 180 bpm, x0.85-1.15
  per runner), modulating the pulse amplitude (5-15 %) and the baseline (5-15 % of `a`);
- baseline wander below 0.08 Hz (SD 10-30 % of `a`) and white sensor noise (SD 1-3 % of `a`).

Accelerometer (g). The arm swings in the sagittal plane about the watch's x axis once per
stride (half the step frequency `f`), the angle `A sin(pi f t + phase)`, `A` 20-40 degrees at
3 m/s scaling as sqrt(speed / 3 m/s) (clipped to x0.8-1.3) with 8 % slow variability; the
watch sits `r` 0.25-0.4 m from the swing's pivot. In the arm frame the watch reads:

- gravity and the body's acceleration rotated by the swing: vertical bounce
  `B cos(2 pi (step phase - 0.15))` with `B = k (2 pi f)^2 osc / 2` from the session's
  vertical oscillation `osc` (k 0.7-1.0 for the arm's damping), a landing impact at each step
  (a Gaussian of 0.3-1.2 g x speed / 3 m/s, SD 20-35 ms), fore-aft braking and propulsion
  (0.2-0.4 `B` at the step frequency) and a lateral sway (0.05-0.2 g at the stride frequency);
- the swing's tangential (`r A''`) and centripetal (`r A'^2`) accelerations;
- the BCG: at each beat (at beat phase 0.05-0.12) a biphasic pulse (derivative of a Gaussian,
  SD 40-60 ms) of peak 0.002-0.01 g x `bcg` along a random direction per runner;
- white noise (SD 2-5 mg).

Gyroscope (deg/s): the swing's angular rate about x, a wrist wobble on y (0.2 x the swing rate
at the step frequency) and white noise (SD 0.5-2 deg/s). Both sensors are finally rotated by
the runner's mount: a random rotation of up to 25 degrees about each axis.

Motion artifacts. The PPG gains `severity x a x 0.2 / g x (m + h (m^2 - mean m^2))`, with `m`
the motion part of the acceleration (no BCG, no sensor noise) band-passed to 0.4-8 Hz (the arm
swing at the stride frequency, the step frequency and its harmonics) and mixed over its axes
by a random unit vector per session, and `h` 0.1-0.3 / g a little nonlinearity. The PPG then
saturates at +-(1.7-2.1) `a` (per runner), a level only heavy motion reaches. A Poisson number
of dropouts (`dropouts_per_hour`, each 5-40 s, uniform in the segment) sets the PPG to 0 and
`ppg_ok` False. `severity` is fixed, or drawn log-uniformly per session from a (low, high)
pair. `SEVERITY` names three levels, measured on the default cohort (8 x 3 sessions of 10 min
at 25 Hz, seeds 0 and 1): the artifact's SD over the artifact-free PPG's, the sessions whose
PPG saturates, and the 8 s windows (Hann, zero-padded to 1024 points) whose PPG spectral peak
in 0.5-4 Hz lies within one bin (0.024 Hz) of the window's mean HR (98 % with no motion):

| level | severity | artifact SD / PPG SD | saturated sessions | PPG peak at the HR |
|---|---|---|---|---|
| light | 0.3 | 0.1 | none | 97-98 % |
| moderate | 1.0 | 0.34 | 4 % | 86-92 % |
| heavy | 2.5 | 0.84 | 25-46 % | 42-47 % |

The values are chosen to be plausible for a wrist watch during running, not fitted to a
dataset. Sessions are computed together (NumPy, vectorised over sessions and samples);
`simulate_wrist` is deterministic in `seed`, and `bcg` and `severity` change nothing else.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.data.imu_synthetic import _rotation
from wearjax.data.physiology import running_dynamics
from wearjax.data.synthetic import WORKOUTS, _draw_plan, _simulate_sessions, simulate_cohort

SEVERITY: dict[str, float] = {"light": 0.3, "moderate": 1.0, "heavy": 2.5}
G = 9.81  # m/s^2 per g
ARTIFACT_GAIN = 0.2  # PPG artifact per g of band-passed acceleration, in pulse amplitudes
ARTIFACT_BAND = (0.4, 8.0)  # Hz, the acceleration band that couples into the PPG
_dynamics = jax.jit(jax.vmap(running_dynamics))


class WristSessions(NamedTuple):
    """`S` wrist recordings of `N` samples at `rate` Hz with 1 Hz references on `N1` seconds.

    `ppg [S, N]` a.u. (0 where dropped out), `acc [S, N, 3]` g with gravity, `gyro [S, N, 3]`
    deg/s, `ppg_ok [S, N]` False inside PPG dropouts; `hr [S, N1]` bpm and `cadence [S, N1]`
    steps/min, the rates of the simulated beats and steps over each second; `subject [S]` the
    runner's index, `severity [S]` the motion-artifact severity, `workouts` the workout types.
    """

    ppg: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    ppg_ok: np.ndarray
    hr: np.ndarray
    cadence: np.ndarray
    subject: np.ndarray
    severity: np.ndarray
    workouts: tuple[str, ...]
    rate: float


def _lerp(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of `values [S, K]` (sample k at position k) at `positions [P]`."""
    i = np.clip(np.floor(positions).astype(np.int64), 0, values.shape[1] - 2)
    w = positions - i
    return values[:, i] * (1.0 - w) + values[:, i + 1] * w


def _filtered(x: np.ndarray, rate: float, lo: float | None, hi: float | None) -> np.ndarray:
    """Zero-phase FFT filter along axis 1: fourth-order Butterworth-like gains at `lo`, `hi`."""
    f = np.fft.rfftfreq(x.shape[1], 1.0 / rate)
    gain = np.ones_like(f)
    if lo is not None:
        gain = gain * (f / lo) ** 4 / (1.0 + (f / lo) ** 4)
    if hi is not None:
        gain = gain / (1.0 + (f / hi) ** 4)
    gain = gain.reshape((-1,) + (1,) * (x.ndim - 2))
    return np.fft.irfft(np.fft.rfft(x, axis=1) * gain, x.shape[1], axis=1)


def _slow_noise(rng: np.random.Generator, shape: tuple[int, int], rate, cutoff) -> np.ndarray:
    """Gaussian noise of unit SD per series, band-limited below `cutoff` Hz along axis 1."""
    x = _filtered(rng.standard_normal(shape), rate, None, cutoff)
    return x / x.std(axis=1, keepdims=True)


def _phase(freq: np.ndarray, rate: float, start: np.ndarray) -> np.ndarray:
    """Cycles completed at each sample of a rate `freq [S, K]` Hz (rectangle rule)."""
    steps = np.cumsum(freq, axis=1) / rate
    return start[:, None] + np.concatenate([np.zeros((len(freq), 1)), steps[:, :-1]], axis=1)


def _per_second(phase: np.ndarray, rate: float, n_seconds: int) -> np.ndarray:
    """60 x the cycles `phase [S, K]` advances over each of `n_seconds` seconds."""
    return 60.0 * np.diff(_lerp(phase, np.arange(n_seconds + 1) * rate), axis=1)


def _wrapped(cycles: np.ndarray) -> np.ndarray:
    """Signed distance to the nearest whole cycle, in [-0.5, 0.5)."""
    return (cycles + 0.5) % 1.0 - 0.5


def _gaussian(x: np.ndarray, sd) -> np.ndarray:
    return np.exp(-0.5 * (x / sd) ** 2)


def _runner_sessions(seed: int, n_subjects: int, sessions_per_subject: int, minutes: float):
    """The synthetic cohort's sessions with their noise-free HR, cadence and oscillation."""
    key = jax.random.key(seed)
    low = max(20.0, minutes + 1.0)
    cohort, physiology = simulate_cohort(
        key,
        n_subjects,
        sessions_per_subject,
        min_minutes=low,
        max_minutes=low + 20.0,
        return_physiology=True,
    )
    # the same jitted call as simulate_cohort's (a cache hit) for the truth it drops
    keys = _draw_plan(key, n_subjects, sessions_per_subject)[-1]
    workouts = jnp.asarray([WORKOUTS.index(w) for w in cohort.workouts], jnp.int32)
    sessions, _ = _simulate_sessions(
        keys, physiology, cohort.runner, workouts, cohort.lengths, cohort.x.shape[1]
    )
    dynamics = _dynamics(physiology[cohort.runner], sessions.speed, sessions.grade)
    series = (sessions.hr_clean, dynamics["cadence"], dynamics["vertical_oscillation"])
    series += (sessions.speed,)
    return (
        np.asarray(cohort.lengths),
        np.asarray(cohort.runner),
        cohort.workouts,
        *(np.asarray(a, np.float64) for a in series),
    )


def simulate_wrist(
    n_subjects: int = 8,
    sessions_per_subject: int = 3,
    *,
    minutes: float = 10.0,
    rate: float = 25.0,
    severity: float | tuple[float, float] = (0.3, 2.5),
    bcg: float = 1.0,
    dropouts_per_hour: float = 6.0,
    seed: int = 0,
) -> WristSessions:
    """Wrist PPG, acceleration and angular rate of `n_subjects` x `sessions_per_subject`
    synthetic runs, one `minutes` segment of each at `rate` Hz (see the module docstring).

    The sessions are `simulate_cohort(jax.random.key(seed), n_subjects, sessions_per_subject,
    min_minutes=20, max_minutes=40)`'s (for `minutes` > 19: `minutes` + 1 to `minutes` + 21),
    HR and cadence noise-free. `severity`: a number for every session, or (low, high) to draw
    each log-uniformly; `bcg` scales the BCG (0: none). Built for `rate` 25-128 Hz (>= 20).
    """
    if not 0.0 < minutes or not rate >= 20.0:
        raise ValueError(f"need minutes > 0 and rate >= 20 Hz, got {minutes} and {rate}")
    if isinstance(severity, tuple | list):
        low, high = (float(v) for v in severity)
        if not 0.0 < low <= high:
            raise ValueError(f"need 0 < low <= high for a severity range, got {severity}")
    elif not float(severity) >= 0.0:
        raise ValueError(f"need severity >= 0, got {severity}")
    if bcg < 0.0 or dropouts_per_hour < 0.0:
        raise ValueError(f"need bcg, dropouts_per_hour >= 0, got {bcg}, {dropouts_per_hour}")
    lengths, runner, workouts, hr_1hz, cadence_1hz, osc_1hz, speed_1hz = _runner_sessions(
        seed, n_subjects, sessions_per_subject, minutes
    )
    rng = np.random.default_rng(seed)
    s = len(lengths)
    n1 = int(round(minutes * 60.0))
    n = int(round(minutes * 60.0 * rate))
    n_ext = max(n, int(np.ceil(n1 * rate))) + 2  # samples, covering every reference second
    n_sec = int(np.ceil(n_ext / rate)) + 2  # 1 Hz values needed to interpolate them
    t = np.arange(n_ext) / rate

    def u(lo, hi, size=s):
        return rng.uniform(lo, hi, size)

    # the segment, the severity; per-runner traits (indexed by session through `runner`)
    start = rng.integers(0, lengths - n_sec + 1)
    cut = start[:, None] + np.arange(n_sec)
    hr_s, cad_s, osc_s, speed_s = (
        _lerp(np.take_along_axis(a, cut, axis=1), t)
        for a in (hr_1hz, cadence_1hz, osc_1hz, speed_1hz)
    )
    sev_u = u(0.0, 1.0)
    if isinstance(severity, tuple | list):
        sev = np.exp(np.log(low) + (np.log(high) - np.log(low)) * sev_u)
    else:
        sev = np.full(s, float(severity))
    mount = _rotation(np.deg2rad(u(-25.0, 25.0, (n_subjects, 3))))[runner]  # [S, 3, 3]
    amp_ppg, sys_at, sys_sd, dia_lag, dia_sd, dia_ratio, resp_factor, clip_level = (
        u(lo, hi, n_subjects)[runner]
        for lo, hi in (
            (0.5, 1.5),
            (0.18, 0.25),
            (0.06, 0.08),
            (0.26, 0.32),
            (0.07, 0.10),
            (0.3, 0.5),
            (0.85, 1.15),
            (1.7, 2.1),
        )
    )
    swing_deg, radius, impact, impact_sd, damping, bcg_g, bcg_at, bcg_sd = (
        u(lo, hi, n_subjects)[runner]
        for lo, hi in (
            (20.0, 40.0),
            (0.25, 0.4),
            (0.3, 1.2),
            (0.02, 0.035),
            (0.7, 1.0),
            (0.002, 0.01),
            (0.05, 0.12),
            (0.04, 0.06),
        )
    )
    bcg_dir = rng.standard_normal((n_subjects, 3))[runner]
    bcg_dir /= np.linalg.norm(bcg_dir, axis=1, keepdims=True)
    fore_aft, sway = u(0.2, 0.4), u(0.05, 0.2)
    acc_sd, gyro_sd = u(0.002, 0.005), u(0.5, 2.0)
    hrv_sd, gait_sd = u(0.005, 0.015), u(0.003, 0.01)
    am_depth, bm_depth, bm_lag = u(0.05, 0.15), u(0.05, 0.15), u(0.0, 1.0)
    wander_sd, noise_sd, bend = u(0.1, 0.3), u(0.01, 0.03), u(0.1, 0.3)
    mix = rng.standard_normal((s, 3))
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    starts = u(0.0, 1.0, (4, s))  # beat, step, breath phases; swing phase

    # beats and steps
    f_beat = hr_s / 60.0 * (1.0 + hrv_sd[:, None] * _slow_noise(rng, (s, n_ext), rate, 0.15))
    beat = _phase(f_beat, rate, starts[0])
    f_step = 2.0 * cad_s / 60.0 * (1.0 + gait_sd[:, None] * _slow_noise(rng, (s, n_ext), rate, 0.2))
    step = _phase(f_step, rate, starts[1])
    hr_ref = _per_second(beat, rate, n1)
    cadence_ref = _per_second(step, rate, n1)

    # PPG
    bpm_excess = np.clip((hr_s - 60.0) / 120.0, 0.0, 1.0)
    f_breath = np.clip(resp_factor[:, None] * (0.2 + 0.5 * bpm_excess), 0.2, 0.7)
    breath = 2.0 * np.pi * _phase(f_breath, rate, starts[2])
    col = (slice(None), None)
    pulse = _gaussian(_wrapped(beat - sys_at[col]), sys_sd[col])
    pulse += dia_ratio[col] * _gaussian(_wrapped(beat - sys_at[col] - dia_lag[col]), dia_sd[col])
    pulse -= np.sqrt(2.0 * np.pi) * (sys_sd + dia_ratio * dia_sd)[col]  # AC coupling
    ppg = pulse * (1.0 + am_depth[col] * np.sin(breath))
    ppg += bm_depth[col] * np.sin(breath + 2.0 * np.pi * bm_lag[col])
    ppg += wander_sd[col] * _slow_noise(rng, (s, n_ext), rate, 0.08)
    ppg += noise_sd[col] * rng.standard_normal((s, n_ext))

    # arm swing (about x, once per stride) and the body's acceleration in the world frame
    amp = np.deg2rad(swing_deg)[col] * np.sqrt(np.clip(speed_s / 3.0, 0.8**2, 1.3**2))
    amp = amp * (1.0 + 0.08 * _slow_noise(rng, (s, n_ext), rate, 0.3))
    stride = np.pi * step + 2.0 * np.pi * starts[3][col]  # radians
    w = np.pi * f_step  # rad/s of the stride
    angle, rate_x, accel_x = (
        amp * np.sin(stride),
        amp * w * np.cos(stride),
        -amp * w**2 * np.sin(stride),
    )
    bounce = damping[col] * (2.0 * np.pi * f_step) ** 2 * osc_s / 2000.0 / G  # g
    landing = _gaussian(_wrapped(step) / f_step, impact_sd[col])
    vertical = 1.0 + bounce * np.cos(2.0 * np.pi * (step - 0.15))
    vertical += impact[col] * speed_s / 3.0 * landing
    forward = -fore_aft[col] * bounce * np.sin(2.0 * np.pi * step)
    lateral = sway[col] * np.sin(stride)
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    arm = np.stack(
        [
            lateral,
            cos_a * forward + sin_a * vertical + radius[col] * accel_x / G,
            -sin_a * forward + cos_a * vertical + radius[col] * rate_x**2 / G,
        ],
        axis=-1,
    )
    motion = np.einsum("sij,snj->sni", mount, arm)
    tau = _wrapped(beat - bcg_at[col]) / f_beat / bcg_sd[col]
    recoil = bcg * bcg_g[col] * -tau * np.exp(0.5 - 0.5 * tau**2)  # g, peak bcg * bcg_g
    acc = motion + recoil[..., None] * np.einsum("sij,sj->si", mount, bcg_dir)[:, None]
    acc += acc_sd[:, None, None] * rng.standard_normal((s, n_ext, 3))
    deg = np.rad2deg(rate_x)
    gyro_arm = np.stack([deg, 0.2 * deg * np.cos(2.0 * np.pi * step), 0.0 * deg], axis=-1)
    gyro = np.einsum("sij,snj->sni", mount, gyro_arm)
    gyro += gyro_sd[:, None, None] * rng.standard_normal((s, n_ext, 3))

    # motion artifacts, saturation and dropouts in the PPG
    moving = np.einsum("sni,si->sn", _filtered(motion, rate, *ARTIFACT_BAND), mix)
    artifact = moving + bend[col] * (moving**2 - np.mean(moving**2, axis=1, keepdims=True))
    ppg = ppg + ARTIFACT_GAIN * sev[col] * artifact
    ppg = amp_ppg[col] * np.clip(ppg, -clip_level[col], clip_level[col])
    counts = rng.poisson(dropouts_per_hour * n1 / 3600.0, s)
    k = max(int(counts.max()), 1)
    span = np.minimum(u(5.0, 40.0, (s, k)), n1)
    begin = u(0.0, 1.0, (s, k)) * (n1 - span)
    active = np.arange(k)[None] < counts[:, None]
    inside = (t[None, None, :n] >= begin[..., None]) & (
        t[None, None, :n] < (begin + span)[..., None]
    )
    ppg_ok = ~np.any(inside & active[..., None], axis=1)

    return WristSessions(
        ppg=np.where(ppg_ok, ppg[:, :n], 0.0).astype(np.float32),
        acc=acc[:, :n].astype(np.float32),
        gyro=gyro[:, :n].astype(np.float32),
        ppg_ok=ppg_ok,
        hr=hr_ref.astype(np.float32),
        cadence=cadence_ref.astype(np.float32),
        subject=runner.astype(np.int32),
        severity=sev.astype(np.float32),
        workouts=tuple(workouts),
        rate=float(rate),
    )


def hr_windows(
    n_subjects: int = 8,
    sessions_per_subject: int = 2,
    *,
    minutes: float = 6.0,
    window_s: float = 8.0,
    seed: int = 1,
):
    """Labelled windows for an HR-regression probe: non-overlapping `window_s` windows of PPG
    and ACC x/y/z at 25 Hz without a PPG dropout, as `imu.LabelledWindows` (one class, "hr"),
    and the mean reference HR of each window (bpm)."""
    from wearjax.data.imu import LabelledWindows

    w = simulate_wrist(n_subjects, sessions_per_subject, minutes=minutes, seed=seed)
    n = round(window_s * w.rate)
    k = w.ppg.shape[1] // n
    series = np.concatenate([w.ppg[..., None], w.acc], axis=-1)[:, : k * n]
    x = series.reshape(-1, n, 4)
    whole = w.ppg_ok[:, : k * n].reshape(-1, n).all(axis=1)
    sec = round(window_s)
    hr = w.hr[:, : k * sec].reshape(-1, sec).mean(axis=1)
    session = np.repeat(np.arange(len(w.subject)), k)
    out = LabelledWindows(
        x[whole].astype(np.float32), np.zeros(int(whole.sum()), np.int32),
        w.subject[session][whole].astype(np.int32), session[whole].astype(np.int32), ("hr",),
        ("ppg", "acc_x", "acc_y", "acc_z"), {"ppg": (0,), "acc": (1, 2, 3)}, float(w.rate),
    )  # fmt: skip
    return out, hr[whole].astype(np.float32)
