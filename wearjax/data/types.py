"""Core data types: a recording (`Session`), a padded stack of them (`Cohort`), and windows.

Data become padded, masked arrays here, once; every model downstream is a pure function of
these arrays. Channels are stored in canonical device units (see `CHANNEL_UNITS`); the
published feature transformations live in `wearjax.signal.features`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from wearjax.errors import WearjaxDataError

# Canonical raw channels of a running session on a 1 Hz grid and their units. Readers map
# vendor fields onto these names; a source may provide any subset.
CHANNEL_UNITS: dict[str, str] = {
    "speed": "m/s",
    "cadence": "strides/min",  # FIT convention: one stride = two steps
    "vertical_oscillation": "mm",
    "stance_time_percent": "%",  # ground contact time as a percentage of the stride
    "vertical_ratio": "%",  # vertical oscillation / step length x 100
    "step_length": "mm",
    "altitude": "m",
}

# Per-session subject scalars, stored in `Cohort.subject` in this order.
SUBJECT_FIELDS: tuple[str, ...] = ("height_m", "weight_kg", "age_years", "sex_male")


class Session(eqx.Module):
    """One recording on a 1 Hz grid.

    `x [T, C]` raw channels named by `channels` (units in `CHANNEL_UNITS`), `hr [T]` in bpm and
    `vo2 [T]` in mL/min (NaN where absent), `mask [T]` True where HR is observed, `vo2_mask [T]`
    likewise for VO2. `subject` holds the `SUBJECT_FIELDS` scalars (NaN when unknown).
    """

    # dimensions are checked by __check_init__, which names the field and the fix
    x: Float[np.ndarray, "_time _channel"]
    hr: Float[np.ndarray, " _time"]
    vo2: Float[np.ndarray, " _time"]
    mask: Bool[np.ndarray, " _time"]
    vo2_mask: Bool[np.ndarray, " _time"]
    subject: Float[np.ndarray, " _4"]
    runner: str = eqx.field(static=True)
    channels: tuple[str, ...] = eqx.field(static=True)
    source: str = eqx.field(static=True, default="")
    workout: str = eqx.field(static=True, default="")

    def __check_init__(self):
        t = self.x.shape[0]
        if self.x.ndim != 2 or self.x.shape[1] != len(self.channels):
            raise WearjaxDataError(
                f"{self.source or 'session'}: x has shape {self.x.shape}, expected "
                f"[time, {len(self.channels)}] for channels {self.channels}"
            )
        for name in ("hr", "vo2", "mask", "vo2_mask"):
            if getattr(self, name).shape != (t,):
                raise WearjaxDataError(
                    f"{self.source or 'session'}: field {name!r} has shape "
                    f"{getattr(self, name).shape}, expected ({t},) to match x"
                )
        unknown = [c for c in self.channels if c not in CHANNEL_UNITS]
        if unknown:
            raise WearjaxDataError(
                f"{self.source or 'session'}: unknown channels {unknown}; "
                f"known channels are {sorted(CHANNEL_UNITS)}"
            )

    @property
    def length(self) -> int:
        return int(self.x.shape[0])


class Cohort(eqx.Module):
    """Sessions stacked and zero-padded to one length bucket `T` (a multiple of the bucket).

    `mask` is False in the padding and wherever HR is missing; padded values are 0, never
    NaN, so masked gradients stay finite. `runner [S]` indexes `runner_names`.
    """

    x: Float[Array, "session time channel"]
    hr: Float[Array, "session time"]
    vo2: Float[Array, "session time"]
    mask: Bool[Array, "session time"]
    vo2_mask: Bool[Array, "session time"]
    lengths: Int[Array, " session"]
    runner: Int[Array, " session"]
    subject: Float[Array, "session 4"]
    channels: tuple[str, ...] = eqx.field(static=True)
    runner_names: tuple[str, ...] = eqx.field(static=True)
    workouts: tuple[str, ...] = eqx.field(static=True, default=())

    @property
    def n_sessions(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_runners(self) -> int:
        return len(self.runner_names)

    @property
    def valid(self) -> Bool[Array, "session time"]:
        """True inside each session's recorded length (padding excluded)."""
        t = jnp.arange(self.x.shape[1])
        return t[None, :] < self.lengths[:, None]


def bucket_length(length: int, bucket: int) -> int:
    """Smallest multiple of `bucket` that holds `length` samples."""
    if bucket <= 0:
        raise ValueError(f"bucket must be positive, got {bucket}")
    return max(bucket, -(-int(length) // bucket) * bucket)


def stack_sessions(sessions: list[Session], *, bucket: int = 600) -> Cohort:
    """Pad sessions to a common length bucket and stack them into a `Cohort`.

    All sessions must share one channel list. NaN channel values (a sensor that dropped out)
    are replaced by the previous finite value of that channel (zero-order hold), or 0 before the
    first one; NaN targets are masked out and stored as 0.
    """
    if not sessions:
        raise WearjaxDataError("no sessions to stack: the cohort would be empty")
    channels = sessions[0].channels
    for s in sessions:
        if s.channels != channels:
            raise WearjaxDataError(
                f"{s.source or s.runner}: channels {s.channels} differ from the cohort's "
                f"{channels}; select a common subset before stacking"
            )
    t_max = bucket_length(max(s.length for s in sessions), bucket)
    n, c = len(sessions), len(channels)
    x = np.zeros((n, t_max, c), np.float32)
    hr = np.zeros((n, t_max), np.float32)
    vo2 = np.zeros((n, t_max), np.float32)
    mask = np.zeros((n, t_max), bool)
    vo2_mask = np.zeros((n, t_max), bool)
    subject = np.zeros((n, len(SUBJECT_FIELDS)), np.float32)
    names = sorted({s.runner for s in sessions})
    runner = np.array([names.index(s.runner) for s in sessions], np.int32)
    for i, s in enumerate(sessions):
        t = s.length
        x[i, :t] = _hold_nan(np.asarray(s.x, np.float32))
        ok = np.asarray(s.mask) & np.isfinite(s.hr)
        hr[i, :t] = np.where(ok, s.hr, 0.0)
        mask[i, :t] = ok
        okv = np.asarray(s.vo2_mask) & np.isfinite(s.vo2)
        vo2[i, :t] = np.where(okv, s.vo2, 0.0)
        vo2_mask[i, :t] = okv
        subject[i] = np.nan_to_num(np.asarray(s.subject, np.float32), nan=0.0)
    return Cohort(
        x=jnp.asarray(x),
        hr=jnp.asarray(hr),
        vo2=jnp.asarray(vo2),
        mask=jnp.asarray(mask),
        vo2_mask=jnp.asarray(vo2_mask),
        lengths=jnp.asarray([s.length for s in sessions], jnp.int32),
        runner=jnp.asarray(runner),
        subject=jnp.asarray(subject),
        channels=channels,
        runner_names=tuple(names),
        workouts=tuple(s.workout for s in sessions),
    )


def _hold_nan(x: np.ndarray) -> np.ndarray:
    """Replace NaN by the last finite value along time (per channel); 0 before the first."""
    out = x.copy()
    finite = np.isfinite(out)
    idx = np.where(finite, np.arange(out.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    held = np.take_along_axis(np.where(finite, out, 0.0), idx, axis=0)
    seen = np.maximum.accumulate(finite, axis=0)
    return np.where(seen, held, 0.0).astype(x.dtype)
