"""Canonical running channels from a source's fields (FIT record names, also the columns of
running CSV exports): the field mapping, declared units and speed from distance, shared by the
FIT, TCX and CSV readers (`wearjax.data.readers` holds the rest of their conventions).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from jaxtyping import Float

from wearjax.data.readers import Records
from wearjax.data.types import CHANNEL_UNITS
from wearjax.data.validate import (
    CADENCE_UNIT_FIX,
    check_cadence,
    check_declared_units,
    check_gait,
    check_magnitude,
    check_speed,
    in_time_order,
)
from wearjax.errors import WearjaxFileError

# FIT record fields the readers map onto canonical channels (see `running_channels`); running
# CSV exports use the same names.
RECORD_FIELDS = (
    "speed",
    "enhanced_speed",
    "altitude",
    "enhanced_altitude",
    "cadence",
    "fractional_cadence",
    "stance_time",
    "stance_time_percent",
    "vertical_ratio",
    "vertical_oscillation",
    "step_length",
)

# Accepted source units per canonical channel, as factors to the canonical unit.
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "speed": {"m/s": 1.0, "km/h": 1 / 3.6, "mph": 0.44704},
    "cadence": {"strides/min": 1.0, "steps/min": 0.5},
    "vertical_oscillation": {"mm": 1.0, "cm": 10.0},
    "stance_time_percent": {"%": 1.0},
    "vertical_ratio": {"%": 1.0},
    "step_length": {"mm": 1.0, "cm": 10.0, "m": 1000.0},
    "altitude": {"m": 1.0, "ft": 0.3048},
}


def unit_factors(units: Mapping[str, str] | None, path: str | Path) -> dict[str, float]:
    """Factors taking each channel from the declared source `units` to `CHANNEL_UNITS`.

    Channels not named in `units` are taken to be in their canonical units already.
    """
    units = dict(units or {})
    factors = dict.fromkeys(CHANNEL_UNITS, 1.0)
    for channel, unit in units.items():
        if channel not in UNIT_FACTORS:
            raise WearjaxFileError(
                path,
                f"units given for unknown channel {channel!r}",
                f"name one of {sorted(UNIT_FACTORS)}",
            )
        if unit not in UNIT_FACTORS[channel]:
            raise WearjaxFileError(
                path,
                f"unknown unit {unit!r} for {channel}",
                f"use one of {sorted(UNIT_FACTORS[channel])}",
            )
        factors[channel] = UNIT_FACTORS[channel][unit]
    return factors


def running_channels(
    fields: Mapping[str, Float[np.ndarray, " record"]],
    *,
    path: str | Path,
    units: Mapping[str, str] | None = None,
) -> dict[str, Float[np.ndarray, " record"]]:
    """Canonical channels from FIT record field names (also the columns of FIT-to-CSV exports).

    Per record: `enhanced_speed` (m/s) where finite, else `speed`; `enhanced_altitude` (m), else
    `altitude`; `cadence` + `fractional_cadence` (strides/min); `stance_time_percent` (%), else
    `stance_time` (ms) as a percentage of the stride; `vertical_ratio` (%);
    `vertical_oscillation` (mm); `step_length` (mm). `units` declares sources in other units
    (see `UNIT_FACTORS`). Channels with no field are left out.
    """
    factors = unit_factors(units, path)

    def field(name: str) -> np.ndarray | None:
        v = fields.get(name)
        if v is None:
            return None
        check_magnitude(v, f"field {name!r}", path)  # before unit factors could overflow it
        return np.asarray(v, np.float64)

    def preferred(first: str, second: str) -> np.ndarray | None:
        a, b = field(first), field(second)
        if a is None or b is None:
            return a if b is None else b
        return np.where(np.isfinite(a), a, b)

    out: dict[str, np.ndarray] = {}
    speed = preferred("enhanced_speed", "speed")
    if speed is not None:
        out["speed"] = speed * factors["speed"]
    cadence = field("cadence")
    if cadence is not None:
        fractional = field("fractional_cadence")
        if fractional is not None:
            cadence = cadence + np.where(np.isnan(fractional), 0.0, fractional)  # inf stays inf
        out["cadence"] = cadence * factors["cadence"]
    for name in ("vertical_oscillation", "step_length", "vertical_ratio"):
        v = field(name)
        if v is not None:
            out[name] = v * factors[name]
    percent = field("stance_time_percent")
    stance_ms = field("stance_time")
    if stance_ms is not None and "cadence" in out:
        strides = out["cadence"]
        with np.errstate(divide="ignore", invalid="ignore"):
            from_ms = np.where(strides > 0, stance_ms * strides / 600.0, np.nan)
        percent = from_ms if percent is None else np.where(np.isfinite(percent), percent, from_ms)
    if percent is not None:
        out["stance_time_percent"] = percent
    altitude = preferred("enhanced_altitude", "altitude")
    if altitude is not None:
        out["altitude"] = altitude * factors["altitude"]
    check_declared_units(out, units or {}, path)
    check_gait(out, path)
    return out


SPEED_SPAN_S = 10.0
"""Seconds of distance each speed taken from a distance spans (`speed_from_distance`)."""


def speed_from_distance(
    time: Float[np.ndarray, " record"],
    distance: Float[np.ndarray, " record"],
    *,
    span_s: float = SPEED_SPAN_S,
) -> Float[np.ndarray, " record"]:
    """Speed (m/s) at each record from the cumulative distance (m): its change between the
    first and the last records with a time and distance within `span_s / 2` seconds either
    side, over the time between them. A centred difference, so a GPS fix's jitter, which a
    difference from one second to the next passes on whole, is averaged over the span, as a
    watch filters the speed it records; near the ends and a pause longer than half the span
    it is one-sided. A record with no other one in its span (sparse "smart" recording), or
    whose span holds a distance that goes back (a reset), takes the change since the previous
    record's time instead. Records that share a time (several points a second, their times
    cut to the second) are one reading, at the last of them. Where timestamps go back, the
    records the readers keep (`validate.in_time_order`) are the ones read; the others get NaN.
    NaN too for a lone record and where the distance went back since the previous time."""
    if not span_s >= 0:
        raise ValueError(f"span_s must be a number of seconds >= 0, got {span_s!r}")
    speed = np.full(time.shape, np.nan)
    finite = np.isfinite(time) & np.isfinite(distance)
    ok = np.flatnonzero(finite)
    ok = ok[in_time_order(time[ok])]  # a glitched timestamp costs its record, not the span
    if ok.size < 2:
        return speed
    t, d = time[ok], distance[ok]
    back = np.concatenate([[0], np.cumsum(np.diff(d) < 0)])  # decreases up to each record
    last = np.searchsorted(t, t, side="right") - 1  # the last record at this time
    prev = np.searchsorted(t, t, side="left") - 1  # the last one at an earlier time
    start = np.searchsorted(t, t - span_s / 2, side="left")  # the first time in the span
    start = np.searchsorted(t, t[start], side="right") - 1  # ... its last record
    end = np.searchsorted(t, t + span_s / 2, side="right") - 1
    dt, dd = t[end] - t[start], d[end] - d[start]
    step_dt, step_dd = t - t[np.maximum(prev, 0)], d[last] - d[np.maximum(prev, 0)]
    step = (dt <= 0) | (back[end] > back[start])  # nothing else in the span, or a reset in it
    dt, dd = np.where(step, step_dt, dt), np.where(step, step_dd, dd)
    first = step & (prev < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed[ok] = np.where(~first & (dt > 0) & (dd >= 0), dd / dt, np.nan)
    return speed


def needs_speed_from_distance(fields: Mapping[str, np.ndarray]) -> bool:
    """No finite speed (`enhanced_speed`, `speed`) but a finite `distance`: a treadmill or
    GPS-less run whose speed every reader then takes from the distance (`speed_from_distance`),
    so FIT, TCX and CSV exports of it give the same channels."""
    speeds = [fields[n] for n in ("enhanced_speed", "speed") if n in fields]
    has = lambda v: bool(np.isfinite(v).any())  # noqa: E731
    return not any(has(v) for v in speeds) and "distance" in fields and has(fields["distance"])


def point_records(
    time: Float[np.ndarray, " record"],
    fields: Mapping[str, Float[np.ndarray, " record"]],
    path: str | Path,
    *,
    cadence_unit: str,
    speed_fix: str,
) -> Records:
    """`Records` of an XML export's points (TCX, GPX): FIT-named `fields` (NaN where a point
    lacks one; speed from the `distance` where none is recorded) on canonical channels,
    checked (speed in m/s, refused with `speed_fix`; cadence a stride rate), with the HR and
    the distance."""
    if needs_speed_from_distance(fields):
        fields = {**fields, "speed": speed_from_distance(time, fields["distance"])}
    fields = {n: v for n, v in fields.items() if np.isfinite(v).any()}
    channels = running_channels(fields, path=path, units={"cadence": cadence_unit})
    check_speed(fields, channels.get("speed"), path, unit="m/s", fix=speed_fix)
    if "cadence" in channels:
        check_cadence(channels["cadence"], path, CADENCE_UNIT_FIX)
    return Records(
        time=time,
        channels=channels,
        hr=fields.get("heart_rate", time * np.nan),
        distance=fields.get("distance"),
    )
