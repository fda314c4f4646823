"""Checks that refuse a recording the readers cannot use, each with the reason and the fix.

They run on a file's records before the 1 Hz grid is built (see `wearjax.data.readers`), so a
bad file fails at once with a one-line `WearjaxFileError` (and a folder load skips it, giving
the reason) instead of becoming a session that later yields NaN metrics:

- **Time order** (`check_time_order`): a clock stepping back now and then is tolerated (the
  fewest records are dropped that leave the rest in time order, `in_time_order`), but
  timestamps that mostly go back, e.g. rows written newest first, are refused.
- **Length** (`check_length`): a session shorter than `MIN_LENGTH_S` (one row, or every row at
  the same time) is refused; CPET tests apply the same minimum to their span of VO2.
- **Speed** (`check_speed`): negative speeds, and a moving median above `MAX_SPEED_MS`
  (speed in km/h read as m/s).
- **Gait** (`check_gait`): a median stride (speed over stride rate) above `MAX_STRIDE_M` (a
  speed in mph or km/h read as m/s), or a moving median under `MIN_SPEED_MS` (a distance in
  km read as metres).
- **Cadence** (`check_cadence`): a median in strides/min above `MAX_STRIDES_PER_MIN` (a step
  rate read as a stride rate).
- **Declared units** (`check_declared_units`): a speed declared in km/h (or mph) whose
  moving median is then slower than a walk, or a cadence declared in steps/min that is then
  under 50 strides/min: the file is in the default unit already, unless the other channel,
  undeclared, makes the gait a walk's (`is_walk`).
- **Magnitude** (`check_magnitude`): a finite value beyond float32's range (`FLOAT32_MAX`), which
  a session would store as inf: a corrupt cell such as `1e39`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from jaxtyping import Float

from wearjax.errors import WearjaxFileError

MIN_VO2_ML_MIN = 50.0
"""VO2 below this (mL/min, after the unit) is no reading: a body at rest takes up 150-400
mL/min; rows of 0 while a gas analyser warms up would be the test's first VO2 (the value the
model is given) and divide MAPE by almost nothing. The CPET readers read them as missing
(`data.cpet` counts them in `metadata`, `vo2_below_floor_masked`)."""

MIN_LENGTH_S = 60.0
"""Shortest session (s on the 1 Hz grid) a reader accepts: one model window (60 s). Shorter
recordings (a single row, equal timestamps, a run stopped at once) hold nothing to learn or
score; pass `min_length_s` to a reader to accept them."""

MAX_SPEED_MS = 8.0
"""Median moving speed (m/s; 29 km/h) above which a running speed is taken to be in km/h: a
whole session faster than a world-record marathon pace (5.7 m/s) by a margin, while any run of
8 km/h or more exported in km/h lands above it."""

MAX_STRIDES_PER_MIN = 130.0
"""Median running cadence above which a strides/min source is taken to be in steps/min."""

SPEED_FIELDS = ("enhanced_speed", "speed")
"""Source fields holding speed, checked for negative values."""

CADENCE_UNIT_FIX = (
    'read it with cadence_unit="steps/min" (--cadence-unit steps/min on the command line)'
)
"""The fix a FIT or TCX reader names for a cadence in steps/min read as strides/min."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest magnitude a session stores (its arrays are float32, about 3.4e38)."""


def in_time_order(time: Float[np.ndarray, " record"]) -> np.ndarray:
    """`[R]` bool: the records kept where timestamps go back, the most that stay in time
    order (a longest non-decreasing run of the finite timestamps, found by patience sorting):
    one record a GPS glitch dates 20 min ahead costs that record, not every record after it.
    NaN timestamps are never kept."""
    import bisect

    index = np.flatnonzero(np.isfinite(time))
    t = time[index]
    keep = np.zeros(time.shape[0], bool)
    if not t.size:
        return keep
    with np.errstate(over="ignore"):  # -1e308 then 1e308: a step of inf, still forward
        ordered = bool(np.all(np.diff(t) >= 0))
    if ordered:
        keep[index] = True
        return keep
    tails: list[float] = []  # the smallest last time of an ordered run of each length
    ends: list[int] = []  # where that run ends
    before = np.full(t.size, -1)
    for i, v in enumerate(t.tolist()):  # a file's records, at the edge, only when out of order
        k = bisect.bisect_right(tails, v)
        if k == len(tails):
            tails.append(v)
            ends.append(i)
        else:
            tails[k], ends[k] = v, i
        before[i] = ends[k - 1] if k else -1
    i = ends[-1]
    while i >= 0:
        keep[index[i]] = True
        i = before[i]
    return keep


def check_time_order(time: Float[np.ndarray, " record"], path: str | Path) -> None:
    """Refuse timestamps that go back at least as often as they go forward, or that would leave
    fewer than half the timestamped records in time order (`in_time_order`). NaN timestamps
    are ignored."""
    t = time[np.isfinite(time)]
    with np.errstate(over="ignore"):  # -1e308 then 1e308: a step of inf, still forward
        step = np.diff(t)
    back = int(np.sum(step < 0))
    if back == 0:
        return
    kept = int(in_time_order(t).sum())
    if back >= np.sum(step > 0) or 2 * kept < t.size:
        raise WearjaxFileError(
            path,
            f"timestamps are not increasing: {back} of {step.size} steps between records go "
            "backwards",
            "sort the rows by time or export again",
        )


def check_length(length: int, records: int, path: str | Path, min_length_s: float) -> None:
    """Refuse a session of `length` s (from `records` records) shorter than `min_length_s`."""
    if length < min_length_s:
        raise WearjaxFileError(
            path,
            f"the recording spans {length} s ({records} record{'s' * (records != 1)}); need at "
            f"least {min_length_s:g} s",
            "use a longer recording, or check that its timestamps advance",
        )


def check_speed(
    fields: Mapping[str, Float[np.ndarray, " record"]],
    speed: Float[np.ndarray, " record"] | None,
    path: str | Path,
    *,
    unit: str,
    fix: str,
) -> None:
    """Refuse negative values in a source speed field (`SPEED_FIELDS` of `fields`), and a
    `speed` (m/s, read from `unit`) whose median over moving records exceeds `MAX_SPEED_MS`;
    `fix` says how to read such a file."""
    for name in SPEED_FIELDS:
        values = fields.get(name)
        if values is None:
            continue
        negative = values[values < 0]
        if negative.size:
            raise WearjaxFileError(
                path,
                f"field {name!r} has {negative.size} negative speeds (lowest {negative.min():g})",
                "speed cannot be negative: export the recording again, or leave those values empty",
            )
    if speed is None:
        return
    moving = speed[np.isfinite(speed) & (speed > 0)]
    median = float(np.median(moving)) if moving.size else 0.0
    if median > MAX_SPEED_MS:
        looks = "it looks like km/h" if unit == "m/s" else f"check that it is in {unit}"
        raise WearjaxFileError(
            path,
            f"median speed while moving is {median:.1f} m/s ({3.6 * median:.0f} km/h), faster "
            f"than any runner (above {MAX_SPEED_MS:g} m/s): {looks}",
            fix,
        )


MAX_STRIDE_M = 4.0
"""Median stride (m: 60 x median moving speed / median stride rate) no runner exceeds over a
session: an elite marathon pace is 5.7 m/s at 92-95 strides/min, 3.6-3.7 m. A run's speed
in mph read as m/s makes 2.24x its stride (a 10 min/mile run at 80 strides/min: 4.5 m), in
km/h 3.6x."""
MIN_SPEED_MS = 0.3
"""Median moving speed (m/s) under which a session is no walk or run: a distance in km read
as metres makes its speed 1000x too small."""


def check_gait(channels: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Refuse a speed (m/s) that the cadence (strides/min) makes longer strides than any
    runner's (`MAX_STRIDE_M`: mph or km/h read as m/s), or a median moving speed under
    `MIN_SPEED_MS` (a distance in km), naming the unit to declare."""
    speed = channels.get("speed")
    if speed is None:
        return
    moving = speed[np.isfinite(speed) & (speed > 0)]
    if not moving.size:
        return
    median = float(np.median(moving))
    if median < MIN_SPEED_MS:
        raise WearjaxFileError(
            path,
            f"median moving speed is {median:.3g} m/s ({3.6 * median:.2g} km/h), slower than "
            "any walk: a distance in km read as metres makes this",
            "export the distance in metres (or the speed in m/s)",
        )
    cadence = channels.get("cadence")
    strides = cadence[np.isfinite(cadence) & (cadence > 0)] if cadence is not None else []
    if len(strides) and 60.0 * median / float(np.median(strides)) > MAX_STRIDE_M:
        rate = float(np.median(strides))
        raise WearjaxFileError(
            path,
            f"a median {median:.2f} m/s at {rate:.0f} strides/min makes strides "
            f"{60 * median / rate:.1f} m long, longer than any runner's (over {MAX_STRIDE_M:g} m): "
            f"the speed looks like mph ({0.44704 * median:.2f} m/s) or km/h read as m/s",
            'declare a CSV\'s speed unit (units={"speed": "mph"}; --speed-unit mph or km/h), '
            "give a distance in metres, or check that a FIT or TCX file (m/s) records a run",
        )


def check_cadence(cadence: Float[np.ndarray, " record"], path: str | Path, fix: str) -> None:
    """Refuse a cadence in strides/min whose median is a step rate (see `MAX_STRIDES_PER_MIN`)."""
    moving = cadence[np.isfinite(cadence) & (cadence > 0)]
    if moving.size and np.median(moving) > MAX_STRIDES_PER_MIN:
        raise WearjaxFileError(
            path,
            f"median cadence {np.median(moving):.0f} strides/min is a step rate, not a stride "
            "rate (one stride = two steps)",
            fix,
        )


def check_magnitude(values, name: str, path: str | Path) -> None:
    """Refuse finite `values` beyond `FLOAT32_MAX`: stored as float32 they would become inf (a
    value no sensor reports; a corrupt cell). NaN and inf are left to the caller (missing)."""
    v = np.asarray(values, np.float64).reshape(-1)
    big = np.flatnonzero(np.isfinite(v) & (np.abs(v) > FLOAT32_MAX))
    if big.size:
        raise WearjaxFileError(
            path,
            f"{name} holds {v[big[0]]:g}, beyond the range of a float32 session (3.4e38)",
            "the value is corrupt: export the recording again, or leave that value empty",
        )


MIN_DECLARED_SPEED_MS = {"km/h": 1.25, "mph": 2.0}
"""Median moving speed (m/s) under which a speed declared in that unit is taken to be m/s
already: a walk (4.5 km/h; 4.5 mph), where a run's m/s read in the unit lands (2.2-4.5 m/s
runs read as 0.6-1.25 m/s in km/h, 1.0-2.0 m/s in mph)."""
MIN_DECLARED_STRIDES = 50.0
"""Median cadence (strides/min) under which a cadence declared in steps/min is taken to be a
stride rate already (runners take 75-95 strides, 150-190 steps, a minute), unless the speed
shows a walk (`is_walk`)."""
WALK_STRIDE_M = (0.9, 1.6)
"""Strides (m: median speed over median stride rate) of a walk slow enough to meet the checks
above (under 100 steps a minute, or 4.5 km/h): 1.0-1.5 m. A run's m/s read in km/h or mph
makes its strides 0.5-1.2 m at a runner's stride rate, and a stride rate read as steps doubles
a walk's stride to 1.8 m or more."""
MAX_WALK_STRIDES = 65.0
"""Stride rate (strides/min, 130 steps) a walk stays under; runners take 75-95."""


def is_walk(speed: float, strides: float) -> bool:
    """A median speed (m/s) and stride rate (strides/min) that make a walk's gait."""
    low, high = WALK_STRIDE_M
    return strides < MAX_WALK_STRIDES and low <= 60.0 * speed / strides <= high


def check_declared_units(channels: Mapping[str, np.ndarray], units: Mapping[str, str],
                         path: str | Path) -> None:  # fmt: skip
    """Refuse a declared speed or cadence unit that this file's values contradict: in a folder
    of mixed exports a unit fix that one file needs would otherwise divide another's speed by
    3.6 or halve its cadence without a word. A slow speed or cadence is accepted when the
    other channel, in its default unit, makes it a walk's (`is_walk`)."""

    def moving_median(v):
        v = v[np.isfinite(v) & (v > 0)]
        return float(np.median(v)) if v.size else None

    speed = moving_median(channels["speed"]) if "speed" in channels else None
    strides = moving_median(channels["cadence"]) if "cadence" in channels else None
    # a slow value is a walk only by the other channel in its own unit: with both declared, a
    # file in m/s and strides would shrink to a walk's gait, and is refused as before
    speed_declared = units.get("speed", "m/s") != "m/s"
    cadence_declared = units.get("cadence", "strides/min") != "strides/min"
    floor = MIN_DECLARED_SPEED_MS.get(units.get("speed", "m/s"), 0.0)
    if speed is not None and speed < floor:
        judge = strides is not None and not cadence_declared
        if not (judge and is_walk(speed, strides)):
            gait = (f"strides {60 * speed / strides:.2f} m long at {strides:.0f} strides/min, "
                    "not a walk's" if judge else "a walk")  # fmt: skip
            raise WearjaxFileError(
                path,
                f"read as {units['speed']}, its median moving speed is {speed:.2f} m/s "
                f"({3.6 * speed:.1f} km/h), {gait}; read as m/s it is a run: it looks like m/s",
                "read this file without the speed unit (in a folder of mixed exports, give it "
                "its own folder)",
            )
    if units.get("cadence") != "steps/min" or strides is None or strides >= MIN_DECLARED_STRIDES:
        return
    judge = speed is not None and not speed_declared
    if not (judge and is_walk(speed, strides)):
        long = f", strides {60 * speed / strides:.1f} m long at its speed:" if judge else ","
        raise WearjaxFileError(
            path,
            f"read as steps/min, its median cadence is {2 * strides:.0f} steps/min{long} a "
            "stride rate (runners take 150-190 steps a minute)",
            "read this file as strides/min (in a folder of mixed exports, give it its own folder)",
        )
