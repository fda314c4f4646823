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

# Further 1 Hz input channels of a cardiopulmonary exercise test (CPET), beside speed and HR.
CPET_CHANNEL_UNITS: dict[str, str] = {
    "work_rate": "W",  # ergometer power or load
    "vco2": "mL/min",  # CO2 output
    "ve": "L/min",  # minute ventilation
}

# Every channel a `Session.x` may hold, in canonical order.
SESSION_CHANNEL_UNITS: dict[str, str] = {**CHANNEL_UNITS, **CPET_CHANNEL_UNITS}

# Per-session subject scalars, stored in `Cohort.subject` in this order.
SUBJECT_FIELDS: tuple[str, ...] = ("height_m", "weight_kg", "age_years", "sex_male")

# Names `Session.signal` gives the 1 Hz fields; `Session.signals` may not reuse them.
BUILTIN_SIGNALS: tuple[str, ...] = ("running", "hr", "vo2")


class Signal(eqx.Module):
    """A regularly sampled signal: sample k is at `k / rate_hz` s from the session's start.

    `values [T, C]` float (NaN where absent), `mask [T]` True where the sample is observed,
    `channels` and `units` one name each per column, `rate_hz` samples per second.
    """

    values: Float[np.ndarray, "_time _channel"]
    rate_hz: float = eqx.field(static=True, converter=float)
    mask: Bool[np.ndarray, " _time"]
    channels: tuple[str, ...] = eqx.field(static=True, converter=tuple)
    units: tuple[str, ...] = eqx.field(static=True, converter=tuple)

    def __check_init__(self):
        values, mask, c = self.values, self.mask, len(self.channels)
        if values.ndim != 2 or values.shape[1] != c:
            raise WearjaxDataError(
                f"Signal field 'values' has shape {values.shape}, expected [time, {c}] for "
                f"channels {self.channels}; reshape one channel to [T, 1]"
            )
        if len(self.units) != c:
            raise WearjaxDataError(
                f"Signal field 'units' has {len(self.units)} entries for {c} channels "
                f"{self.channels}; give one unit per channel ('' when unitless)"
            )
        if mask.shape != (values.shape[0],) or mask.dtype != np.bool_:
            raise WearjaxDataError(
                f"Signal field 'mask' is {mask.dtype}{list(mask.shape)}, expected "
                f"bool[{values.shape[0]}] to match values; pass one bool per sample"
            )
        if not (np.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise WearjaxDataError(
                f"Signal field 'rate_hz' is {self.rate_hz}, expected a positive number of "
                "samples per second; pass the sensor's sampling rate"
            )

    @property
    def length(self) -> int:
        return int(self.values.shape[0])

    @property
    def duration_s(self) -> float:
        """Seconds the samples cover: `T / rate_hz`."""
        return self.length / self.rate_hz

    @property
    def times_s(self) -> Float[np.ndarray, " time"]:
        """Time of each sample in seconds from the session's start: `k / rate_hz`."""
        return np.arange(self.length) / self.rate_hz


START_TIME = "start_time_s"  # `Session.metadata` key: second 0 on the file's clock


class Session(eqx.Module):
    """One recording: 1 Hz running channels and targets, plus named signals at any rate.

    `x [T, C]` raw channels named by `channels` (units in `SESSION_CHANNEL_UNITS`), `hr [T]` in
    bpm and `vo2 [T]` in mL/min (NaN where absent), `mask [T]` True where HR is observed,
    `vo2_mask [T]` likewise for VO2. `subject` holds the `SUBJECT_FIELDS` scalars (NaN when
    unknown). `signals` holds further sensors at their own rates (e.g. "ppg" at 64 Hz, "acc"
    at 32 Hz), `targets` reference series at any rate (e.g. "hr" at 0.5 Hz), and `metadata`
    (key, value) notes of the reader, e.g. `("vo2_unit", "L/min")`.
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
    signals: dict[str, Signal] = eqx.field(default_factory=dict)
    targets: dict[str, Signal] = eqx.field(default_factory=dict)
    metadata: tuple[tuple[str, str], ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        where = self.source or "session"
        t = self.x.shape[0]
        if self.x.ndim != 2 or self.x.shape[1] != len(self.channels):
            raise WearjaxDataError(
                f"{where}: x has shape {self.x.shape}, expected "
                f"[time, {len(self.channels)}] for channels {self.channels}"
            )
        for name in ("hr", "vo2", "mask", "vo2_mask"):
            if getattr(self, name).shape != (t,):
                raise WearjaxDataError(
                    f"{where}: field {name!r} has shape "
                    f"{getattr(self, name).shape}, expected ({t},) to match x"
                )
        unknown = [c for c in self.channels if c not in SESSION_CHANNEL_UNITS]
        if unknown:
            raise WearjaxDataError(
                f"{where}: unknown channels {unknown}; "
                f"known channels are {sorted(SESSION_CHANNEL_UNITS)}"
            )
        for field in ("signals", "targets"):
            for name, value in getattr(self, field).items():
                if not isinstance(name, str) or not isinstance(value, Signal):
                    raise WearjaxDataError(
                        f"{where}: field {field!r} maps {name!r} to {type(value).__name__}; "
                        "map signal names to Signal"
                    )
        reserved = sorted(set(self.signals) & set(BUILTIN_SIGNALS))
        if reserved:
            raise WearjaxDataError(
                f"{where}: field 'signals' uses the built-in names {reserved}; "
                f"rename them (the 1 Hz {', '.join(BUILTIN_SIGNALS)} fields own these names)"
            )

    @property
    def length(self) -> int:
        return int(self.x.shape[0])

    @property
    def start_time_s(self) -> float | None:
        """Second 0 on the file's own clock (seconds, in the file's epoch: Unix time for FIT
        and TCX), as the reader found it; None where the source has no clock."""
        value = dict(self.metadata).get(START_TIME)
        return None if value is None else float(value)

    def signal(self, name: str) -> Signal:
        """The named signal: one of `signals`, or a built-in 1 Hz one: "running" (`x`, mask
        True where every channel is finite), "hr" (bpm) or "vo2" (mL/min)."""
        if name in self.signals:
            return self.signals[name]
        if name == "running":
            units = tuple(SESSION_CHANNEL_UNITS[c] for c in self.channels)
            mask = np.all(np.isfinite(self.x), axis=1)
            return Signal(self.x, 1.0, mask, self.channels, units)
        if name in ("hr", "vo2"):
            values = np.asarray(getattr(self, name))
            ok = np.asarray(self.mask if name == "hr" else self.vo2_mask) & np.isfinite(values)
            return Signal(values[:, None], 1.0, ok, (name,), ("bpm" if name == "hr" else "mL/min",))
        raise WearjaxDataError(
            f"{self.source or 'session'}: no signal {name!r}; this session has "
            f"{sorted([*BUILTIN_SIGNALS, *self.signals])}"
        )


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
    are replaced by the previous finite value of that channel (zero-order hold), or the first
    one before it (0 for a channel with none); NaN targets are masked out and stored as 0.
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
    """Replace NaN by the last finite value along time (per channel); before the first one,
    by that first value (0 for a channel with none). A leading gap read as 0 would put a step
    into the channel, and a recording whose altitude starts blank would climb from 0 m."""
    out = x.copy()
    finite = np.isfinite(out)
    first = np.argmax(finite, axis=0)  # 0 where a channel has no finite value at all
    idx = np.where(finite, np.arange(out.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    seen = np.maximum.accumulate(finite, axis=0)
    idx = np.where(seen, idx, first[None])
    held = np.take_along_axis(np.where(finite, out, 0.0), idx, axis=0)
    return held.astype(x.dtype)
