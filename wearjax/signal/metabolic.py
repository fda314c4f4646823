"""Metabolic signals: breath-by-breath samples onto a 1 Hz grid, and Savitzky-Golay smoothing.

Gas analysers report VO2 once per breath, at irregular times. The Lab-to-Wrist pipeline
(section 5) puts them on a 1 Hz grid by zero-order hold (each second takes the last breath at or
before it: `zero_order_hold`, for users' own breath tables) and smooths the result with a
Savitzky-Golay filter of window 15 s and order 3. wearjax's file readers
(`data.readers.to_session`) put breaths on the grid otherwise: linearly between breaths up to
`max_gap_s` apart, so a second between two breaths takes part of the next one.

Savitzky & Golay (1964, Anal Chem 36:1627): each output is the value at the window centre of
the least-squares polynomial of order `order` fitted to the `window` samples around it; inside
the series this is a fixed linear combination of the samples. At the ends (the half window
where no centred window fits) the polynomial fitted to the first (last) `window` samples is
evaluated at each position, which is `scipy.signal.savgol_filter`'s `mode="interp"`. The
coefficients are constants computed once in NumPy; the filter itself is `jax.numpy`, so it jits,
vmaps and differentiates.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from wearjax.data.types import SUBJECT_FIELDS
from wearjax.errors import WearjaxDataError
from wearjax.signal.features import feature_names, running_features

SAVGOL_WINDOW = 15  # s, Lab-to-Wrist's smoothing window
SAVGOL_ORDER = 3


def _concrete(x) -> np.ndarray | None:
    """`x` as a NumPy array when its values are known now, None when traced (under jit)."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def zero_order_hold(
    time: Float[Array, " breath"],
    values: Float[Array, " breath"],
    grid: Float[Array, " time"],
) -> tuple[Float[Array, " time"], Bool[Array, " time"]]:
    """Samples at increasing times `time [B]` onto `grid [T]` by zero-order hold.

    Each grid point takes the value of the last sample at or before it; points before the first
    sample have none (value 0, mask False). Returns `(held [T], mask [T])`. An empty `time`
    raises, and so does a decreasing (or NaN) one where its values are concrete (not traced).
    """
    if time.shape[0] == 0:
        raise WearjaxDataError("zero_order_hold: time is empty; pass at least one sample")
    t = _concrete(time)
    if t is not None and not np.all(np.diff(t) >= 0):
        raise WearjaxDataError(
            "zero_order_hold: time must be non-decreasing without NaN; sort time and values "
            "together (np.argsort(time)) first"
        )
    idx = jnp.searchsorted(time, grid, side="right") - 1
    ok = idx >= 0
    held = values[jnp.clip(idx, 0, values.shape[0] - 1)]
    return jnp.where(ok, held, jnp.zeros((), values.dtype)), ok


def hold_observed(
    values: Float[Array, "*batch time"], mask: Bool[Array, "*batch time"]
) -> Float[Array, "*batch time"]:
    """Each second's last observed value at or before it (the first observed one before any):
    masked-out seconds (sensor dropouts, padding) held at the last value seen. A row without any
    observation (`mask` all False: a session without that signal) is NaN throughout."""
    t = jnp.broadcast_to(jnp.arange(values.shape[-1]), values.shape)
    first = jnp.argmax(mask, axis=-1)[..., None]
    last = jax.lax.cummax(jnp.where(mask, t, -1), axis=values.ndim - 1)
    idx = jnp.where(last >= 0, last, jnp.broadcast_to(first, t.shape))
    held = jnp.take_along_axis(values, idx, axis=-1)
    seen = jnp.broadcast_to(jnp.any(mask, axis=-1, keepdims=True), held.shape)
    return jnp.where(seen, held, jnp.full((), jnp.nan, held.dtype))


@functools.cache
def savgol_matrices(window: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 coefficients: interior `c [window]` (`y_t = c . x[t-h : t+h+1]`), and the end
    matrices `start [h, window]`, `end [h, window]` for the first and last `h = window // 2`
    outputs from the first and last `window` samples."""
    if window % 2 == 0 or window < 1:
        raise WearjaxDataError(f"Savitzky-Golay window must be a positive odd number, got {window}")
    if not 0 <= order < window:
        raise WearjaxDataError(f"Savitzky-Golay order must be in [0, {window}), got {order}")
    h = window // 2
    centred = np.vander(np.arange(-h, h + 1, dtype=np.float64), order + 1, increasing=True)
    interior = np.linalg.pinv(centred)[0]  # the constant term: the fit's value at the centre
    at = np.vander(np.arange(window, dtype=np.float64), order + 1, increasing=True)
    hat = at @ np.linalg.pinv(at)  # fitted values of a window from its samples
    return interior, hat[:h], hat[window - h :]


def savgol_smooth(
    x: Float[Array, " time"],
    length: Int[Array, ""] | int | None = None,
    *,
    window: int = SAVGOL_WINDOW,
    order: int = SAVGOL_ORDER,
) -> Float[Array, " time"]:
    """Savitzky-Golay smoothing of `x [T]` (module docstring), equal to
    `scipy.signal.savgol_filter(x[:length], window, order)` on the first `length` samples
    (default all) and 0 on the padding after them; needs `window <= length <= x.shape[0]`.

    `length` may be traced (a cohort's per-session lengths under `vmap`); a concrete one outside
    that range raises, a traced one below `window` makes the whole output NaN.
    """
    size = x.shape[0]
    if size < window:
        raise WearjaxDataError(
            f"series of {size} samples is shorter than the Savitzky-Golay window {window}"
        )
    known = None if length is None else _concrete(length)
    if known is not None and not window <= int(known) <= size:
        raise WearjaxDataError(
            f"savgol_smooth: length {int(known)} is outside [{window}, {size}] (the window, the "
            "series); drop sessions shorter than the window, or pass a smaller window"
        )
    interior, start, end = (jnp.asarray(m, x.dtype) for m in savgol_matrices(window, order))
    h = window // 2
    n = jnp.asarray(size if length is None else length, jnp.int32)
    t = jnp.arange(size, dtype=jnp.int32)
    taps = jnp.clip(t[:, None] + jnp.arange(-h, h + 1, dtype=jnp.int32)[None, :], 0, size - 1)
    y = x[taps] @ interior
    head = start @ x[:window]
    tail = end @ jax.lax.dynamic_slice_in_dim(x, jnp.maximum(n - window, 0), window)
    y = y.at[:h].set(head)
    y = jax.lax.dynamic_update_slice_in_dim(y, tail, jnp.maximum(n - h, h), 0)
    y = jnp.where(t < n, y, jnp.zeros((), x.dtype))
    return jnp.where(n >= window, y, jnp.full((), jnp.nan, x.dtype))  # too short: no fit


# Laboratory channels (`data.CPET_CHANNEL_UNITS`) as VO2 features: name and scale to O(1).
_CPET_FEATURES = {"work_rate": ("work_rate_hw", 100.0), "vco2": ("vco2_l_min", 1000.0),
                  "ve": ("ve_10l_min", 10.0)}  # fmt: skip
# Subject fields (`SUBJECT_FIELDS` names) used as time-constant VO2 features.
_SUBJECT_FEATURES = ("age_years", "sex_male", "height_m", "weight_kg")
GRADE_SPAN_S = 15  # s over which grade is rise over run (altitude is too noisy per second)
MIN_RUN_M = 5.0  # m: below this run over GRADE_SPAN_S the grade is 0 (standing still)


def _running(channels) -> tuple[str, ...]:
    """The running channels of `channels` (the rest are laboratory channels or unknown)."""
    return tuple(c for c in channels if c not in _CPET_FEATURES)


def metabolic_feature_names(channels: tuple[str, ...], *, has_hr: bool = True) -> tuple[str, ...]:
    """Names of the `metabolic_features` of a source with these raw channels (and HR)."""
    names = ["hr_bpm"] if has_hr else []
    running = _running(channels)
    if running:
        names += list(feature_names(running))
    names += [_CPET_FEATURES[c][0] for c in channels if c in _CPET_FEATURES]
    if "speed" in channels:
        names.append("distance_km")
        if "altitude" in channels:
            names.append("grade")
    names += ["window_index", "elapsed_min"]
    return tuple(names) + _SUBJECT_FEATURES


def metabolic_features(
    x: Float[Array, "time channel"],
    channels: tuple[str, ...],
    subject: Float[Array, " 4"],
    hr: Float[Array, " time"] | None,
    hr_mask: Bool[Array, " time"] | None,
    *,
    window: int = 60,
) -> Float[Array, "time feature"]:
    """The VO2 model's inputs for one session, for whatever subset of signals it has.

    Columns (names from `metabolic_feature_names`, in this order): HR in bpm, held over
    dropouts (`hold_observed`; omitted when `hr` is None); the running features of
    `signal.features.running_features` (pace, cadence, ... for the running channels present);
    work rate, VCO2 and VE of laboratory files, scaled to O(1) (`_CPET_FEATURES`);
    cumulative distance in km and grade (rise over run across `GRADE_SPAN_S` s) when speed (and
    altitude) exist; the 60 s window index and elapsed minutes; age, sex, height and weight.
    Pure `jax.numpy`: `hr` may be a model's prediction inside a jitted chain. `hr` needs its
    `hr_mask` (the seconds it was observed); a concrete `hr_mask` without any True raises (pass
    `hr=None` for a session without HR), a traced one gives a NaN HR column (`hold_observed`).
    """
    if hr is not None:
        if hr_mask is None:
            raise WearjaxDataError(
                "metabolic_features: hr is given but hr_mask is None; pass hr_mask (the seconds "
                "HR was observed, e.g. jnp.isfinite(hr)) or hr=None"
            )
        seen = _concrete(hr_mask)
        if seen is not None and not seen.any():
            raise WearjaxDataError(
                "metabolic_features: hr_mask has no observed second; pass hr=None and "
                "hr_mask=None for a session without HR"
            )
    t = jnp.arange(x.shape[0])
    dtype = x.dtype
    columns: list[Array] = []
    if hr is not None:
        columns.append(hold_observed(hr, hr_mask).astype(dtype))
    running = _running(channels)
    if running:
        f, _ = running_features(x[:, [channels.index(c) for c in running]], running, subject)
        columns.extend(f[:, i] for i in range(f.shape[1]))
    for c in channels:
        if c in _CPET_FEATURES:
            columns.append(x[:, channels.index(c)] / _CPET_FEATURES[c][1])
    if "speed" in channels:
        distance = jnp.cumsum(x[:, channels.index("speed")])
        columns.append(distance / 1000.0)
        if "altitude" in channels:
            altitude = x[:, channels.index("altitude")]
            before = jnp.maximum(t - GRADE_SPAN_S, 0)
            run = distance - distance[before]
            rise = altitude - altitude[before]
            ok = run > MIN_RUN_M
            columns.append(jnp.where(ok, rise / jnp.where(ok, run, 1.0), 0.0))
    columns.append((t // window).astype(dtype))
    columns.append(t.astype(dtype) / 60.0)
    for field in _SUBJECT_FEATURES:
        value = subject[SUBJECT_FIELDS.index(field)].astype(dtype)
        columns.append(jnp.broadcast_to(value, t.shape))
    return jnp.stack(columns, axis=-1)
