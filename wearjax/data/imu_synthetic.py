"""A synthetic wrist-IMU activity set: standing, walking, easy run, intervals, stairs.

Each subject wears the watch at its own orientation (a random rotation up to 25 degrees about
each axis) and has its own step-frequency factor (x0.9-1.1), arm-swing factor (x0.7-1.3) and
sensor noise. A window of `window_s` seconds at `rate` Hz holds 3-axis acceleration (m/s^2,
gravity included) and 3-axis angular rate (rad/s) of the wrist:

- the forearm swings about the sensor's x axis once per stride (half the step frequency `f`):
  angle `A sin(pi f t + phase)`, so gravity rotates through the y-z plane and the gyroscope's x
  axis reads the swing's angular rate;
- the body bounces once per step (`b sin(2 pi f t)` on the vertical) and, when running, lands
  with a short impact (a Gaussian pulse of `I` m/s^2, 25 ms wide) at each step;
- standing: no steps; postural sway (0.2-0.5 Hz, under 3 degrees) and an occasional gesture.

| activity | f (Hz) | A (deg) | b (m/s^2) | I (m/s^2) | other |
|---|---|---|---|---|---|
| standing | - | - | - | - | sway, gestures |
| walking | 1.6-2.0 | 15-25 | 1.0-2.5 | 0-3 | (a) |
| easy run | 2.5-2.9 | 30-45 | 3-5.5 | 8-15 | |
| intervals | 2.8-3.3 | 35-55 | 4-7 | 11-20 | (b) |
| stairs | 1.5-1.9 | 10-25 | 1.5-3 | 1-4 | (a), (c) |

(a) the arm held still (x0.15 swing; a hand on the rail) in 30% of windows; (b) a recovery
jog (x0.85 f, x0.75 A) for the last part of half the windows; (c) the body pitched 5-15 deg
forward and a step-up surge every other step.

The values are chosen to be plausible for a wrist sensor, not fitted to a dataset; walking and
stairs, easy run and intervals overlap on purpose. Vectorised over
windows (NumPy); `simulate_activities` returns an `LabelledWindows` to split by subject.
"""

from __future__ import annotations

import numpy as np

from wearjax.data.imu import IMU_MODALITIES, LabelledWindows

ACTIVITIES = ("standing", "walking", "easy_run", "intervals", "stairs")
G = 9.81
# per activity: step frequency, swing amplitude (deg), bounce, impact ranges (low, high)
_RANGES = {
    "walking": ((1.6, 2.0), (15, 25), (1.0, 2.5), (0.0, 3.0)),
    "easy_run": ((2.5, 2.9), (30, 45), (3.0, 5.5), (8.0, 15.0)),
    "intervals": ((2.8, 3.3), (35, 55), (4.0, 7.0), (11.0, 20.0)),
    "stairs": ((1.5, 1.9), (10, 25), (1.5, 3.0), (1.0, 4.0)),
}


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices `[..., 3, 3]` from angles `[..., 3]` (radians) about x, y, z."""
    sx, sy, sz = np.moveaxis(np.sin(angles), -1, 0)
    cx, cy, cz = np.moveaxis(np.cos(angles), -1, 0)
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*cx.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*cx.shape, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*cx.shape, 3, 3)
    return rz @ ry @ rx


def impact_pulse(step_phase: np.ndarray, f: np.ndarray, *, width_s: float = 0.025) -> np.ndarray:
    """A landing's unit Gaussian pulse, `width_s` seconds wide, 0.3 rad of step phase after
    each step begins: the phase distance is taken around the circle, so a pulse whose left
    tail crosses the step boundary is whole (the distance from the unwrapped phase cut the
    tail off there)."""
    d = np.mod(step_phase - 0.3 + np.pi, 2 * np.pi) - np.pi
    return np.exp(-0.5 * (d / (2 * np.pi * width_s * np.maximum(f, 0.1))) ** 2)


def simulate_activities(
    n_subjects: int = 10,
    windows_per_activity: int = 24,
    *,
    rate: float = 25.0,
    window_s: float = 8.0,
    seed: int = 0,
) -> LabelledWindows:
    """`windows_per_activity` windows of every activity for each of `n_subjects` subjects."""
    rng = np.random.default_rng(seed)
    k = len(ACTIVITIES)
    n = n_subjects * k * windows_per_activity
    subject = np.repeat(np.arange(n_subjects), k * windows_per_activity)
    y = np.tile(np.repeat(np.arange(k), windows_per_activity), n_subjects)
    t = np.arange(round(window_s * rate)) / rate  # [T]
    # subject traits
    mount = _rotation(np.deg2rad(rng.uniform(-25, 25, (n_subjects, 3))))[subject]  # [N, 3, 3]
    step_factor = rng.uniform(0.9, 1.1, n_subjects)[subject]
    swing_factor = rng.uniform(0.7, 1.3, n_subjects)[subject]
    noise_sd = rng.uniform(0.05, 0.2, n_subjects)[subject]
    # per-window gait parameters (standing: zeros)
    f, amp, bounce, impact = (np.zeros(n) for _ in range(4))
    for c, name in enumerate(ACTIVITIES):
        if name not in _RANGES:
            continue
        rows = y == c
        for out, (lo, hi) in zip((f, amp, bounce, impact), _RANGES[name], strict=True):
            out[rows] = rng.uniform(lo, hi, rows.sum())
    f *= step_factor
    still_arm = np.isin(y, [ACTIVITIES.index("walking"), ACTIVITIES.index("stairs")])
    still_arm &= rng.random(n) < 0.3
    amp = np.deg2rad(amp) * swing_factor * np.where(still_arm, 0.15, 1.0)
    # intervals: a recovery jog for a random part of half the windows
    jog = (y == ACTIVITIES.index("intervals")) & (rng.random(n) < 0.5)
    cut = rng.uniform(0.3, 0.7, n) * t[-1]
    slow = jog[:, None] & (t[None] > cut[:, None])  # [N, T]
    fi = np.where(slow, f[:, None] * 0.85, f[:, None])
    ai = np.where(slow, amp[:, None] * 0.75, amp[:, None])
    step_phase = 2 * np.pi * np.cumsum(fi, axis=1) / rate + rng.uniform(0, 2 * np.pi, (n, 1))
    swing = ai * np.sin(step_phase / 2)  # [N, T] forearm angle about x
    # standing: sway and an occasional gesture
    standing = y == ACTIVITIES.index("standing")
    sway = np.deg2rad(rng.uniform(0.5, 3, n))[:, None] * np.sin(
        2 * np.pi * rng.uniform(0.2, 0.5, n)[:, None] * t[None] + rng.uniform(0, 6.3, (n, 1))
    )
    gesture_at = rng.uniform(0, t[-1], n)[:, None]
    gesture = (
        (rng.random(n) < 0.4)[:, None]
        * np.deg2rad(30)
        * np.exp(-0.5 * ((t[None] - gesture_at) / 0.4) ** 2)
    )
    angle = np.where(standing[:, None], sway + gesture, swing)
    pitch = np.where(y == ACTIVITIES.index("stairs"), np.deg2rad(rng.uniform(5, 15, n)), 0.0)
    # vertical acceleration: bounce, landing impacts, the stairs' step-up surge
    pulse = impact_pulse(step_phase, fi)
    surge = (
        (y == ACTIVITIES.index("stairs"))[:, None] * 1.5 * np.clip(np.sin(step_phase / 2), 0, None)
    )
    vertical = bounce[:, None] * np.sin(step_phase) + impact[:, None] * pulse + surge
    # wrist frame: gravity + vertical motion, rotated by the swing (about x) and the pitch
    world = np.zeros((n, len(t), 3))
    world[..., 2] = G + vertical
    world[..., 0] = 0.3 * bounce[:, None] * np.cos(step_phase)  # fore-aft sway of the arm
    rot = _rotation(np.stack([angle, np.broadcast_to(pitch[:, None], angle.shape), 0 * angle], -1))
    acc = np.einsum("ntij,ntj->nti", np.swapaxes(rot, -1, -2), world)
    gyro = np.zeros_like(acc)
    angle_rate = np.gradient(angle, 1 / rate, axis=1)
    gyro[..., 0] = angle_rate
    gyro[..., 1] = 0.2 * angle_rate * np.cos(step_phase)
    acc = np.einsum("nij,ntj->nti", mount, acc)
    gyro = np.einsum("nij,ntj->nti", mount, gyro)
    acc += noise_sd[:, None, None] * rng.normal(size=acc.shape)
    gyro += 0.1 * noise_sd[:, None, None] * rng.normal(size=gyro.shape)
    x = np.concatenate([acc, gyro], axis=-1).astype(np.float32)
    return LabelledWindows(
        x, y.astype(np.int32), subject.astype(np.int32), np.arange(n, dtype=np.int32),
        ACTIVITIES, ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
        dict(IMU_MODALITIES), float(rate),
    )  # fmt: skip
