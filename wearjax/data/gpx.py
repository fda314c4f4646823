"""GPX files (GPS Exchange Format 1.0 and 1.1, as watches, Strava and Garmin Connect export
runs), read with `xml.etree`.

Each track (`trk`) whose `type` names a run (`running`, `run`, `trail_running`, Strava's `9`),
or that has no `type`, becomes one `Session` (conventions in `wearjax.data.readers`); its
segments are joined, so the gap between two is a pause like any other. Per track point
(`trkpt`): `time` (ISO 8601; UTC when it names no zone), `ele` (m), and from its `extensions`
(GPX 1.1) or directly inside it (GPX 1.0), whatever their namespace (Garmin's
TrackPointExtension v1 or v2, Cluetrust's gpxdata, or plain), `hr` or `heartrate` (bpm),
`cad` or `cadence` (strides/min, as Garmin and Strava write a run's; a step rate is refused as
in every reader) and `speed` (m/s). The distance is the sum of great-circle
(haversine) distances between consecutive points with a position, on a sphere of the Earth's
mean radius, GPS jumps left out (`cumulative_distance`); without any `speed`, speed is its
change over the 10 s centred on each point, as every reader takes speed from a distance
(`channels.speed_from_distance`): a fix's jitter, which a change from one point to the next
passes on whole, is averaged over the span, as a watch filters its own speed. A negative speed
(an exporter's "invalid") is missing. A track without a `type` is read as a run: check that
a folder of untyped GPX holds no rides. A track that cannot be used is left out when the file
has another that can.
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from jaxtyping import Float

from wearjax.data.channels import point_records
from wearjax.data.readers import (
    MAX_GAP_S,
    to_session,
    usable_parts,
)
from wearjax.data.types import Session
from wearjax.data.validate import MIN_LENGTH_S
from wearjax.data.xml_export import check_times, iso_seconds, number, xml_root
from wearjax.errors import WearjaxFileError

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8
"""The Earth's mean radius (IUGG), the sphere the great-circle distances are taken on."""

EXTENSION_FIELDS = {
    "heart_rate": ("hr", "heartrate"),
    "cadence": ("cad", "cadence"),
    "speed": ("speed",),
}
"""Track point extension elements (local names, any namespace) read into FIT-named fields."""

MAX_STEP_SPEED_MS = 12.5
"""Fastest step between two positions (m/s) that counts as running: a sprinter's top speed."""

RUNNING_TYPES = ("run", "9")
"""A track `type` names a run when, lower-cased, it contains "run" or is Strava's 9."""


def haversine_m(
    lat: Float[np.ndarray, " point"], lon: Float[np.ndarray, " point"]
) -> Float[np.ndarray, " step"]:
    """Great-circle distance (m) between consecutive points (degrees), on a sphere of
    `EARTH_RADIUS_M`; NaN where either point lacks a position."""
    phi, lam = np.radians(lat), np.radians(lon)
    h = (
        np.sin(np.diff(phi) / 2) ** 2
        + np.cos(phi[:-1]) * np.cos(phi[1:]) * np.sin(np.diff(lam) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def cumulative_distance(
    lat: Float[np.ndarray, " point"],
    lon: Float[np.ndarray, " point"],
    time: Float[np.ndarray, " point"] | None = None,
    *,
    path: str | Path = "positions",
) -> Float[np.ndarray, " point"]:
    """Distance (m) run up to each point: 0 at the first point with a position, the
    great-circle steps between consecutive points with one summed; NaN at points without
    (a latitude beyond +-90 or a longitude beyond +-180 is no position). With `time` (s),
    GPS jumps are left out: a point reached and left faster than `MAX_STEP_SPEED_MS` (a fix
    off the route) loses its position, and a step faster than that (a fix that jumped and
    stayed) adds no distance; both are counted in a warning naming `path`."""
    ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    idx = np.flatnonzero(ok)
    out = np.full(lat.shape, np.nan)
    if idx.size == 0:
        return out
    step = haversine_m(lat[idx], lon[idx])
    fast = np.zeros(step.shape, bool)
    if time is not None and idx.size > 1:
        dt = np.maximum(np.diff(time[idx]), 1.0)  # whole-second times: at least 1 s a step
        fast = ~(step <= MAX_STEP_SPEED_MS * dt)  # NaN times count as fast
        spike = np.concatenate([[False], fast[:-1] & fast[1:], [False]])
        if spike.any():  # drop the off-route fixes, then measure the bridging steps again
            idx = idx[~spike]
            step = haversine_m(lat[idx], lon[idx])
            dt = np.maximum(np.diff(time[idx]), 1.0)
            fast = ~(step <= MAX_STEP_SPEED_MS * dt)
        if spike.any() or fast.any():
            logger.warning(
                "%s: GPS jumps left out: %d positions off the route, %d steps faster than %g m/s",
                path, int(spike.sum()), int(fast.sum()), MAX_STEP_SPEED_MS,
            )  # fmt: skip
    out[idx] = np.concatenate([[0.0], np.cumsum(np.where(fast, 0.0, step))])
    return out


def _is_run(track: ET.Element) -> bool:
    kind = (track.findtext("{*}type") or "").strip().lower()
    return not kind or "run" in kind or kind in RUNNING_TYPES


def _point_fields(points: list[ET.Element]) -> dict[str, np.ndarray]:
    """FIT-named fields from each point's elements, in its `extensions` (GPX 1.1) or directly
    in the point (GPX 1.0's `speed`, vendor elements), NaN where a point has none."""
    out = {name: np.full(len(points), np.nan) for name in EXTENSION_FIELDS}
    for i, point in enumerate(points):  # a parser's walk over the file's points
        for element in point.iter():
            local = element.tag.rsplit("}", 1)[-1].lower()
            for name, tags in EXTENSION_FIELDS.items():
                if local in tags and np.isnan(out[name][i]):
                    out[name][i] = number(element.text)
    return out


def read_gpx(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    cadence_unit: str = "strides/min",
    min_length_s: float = MIN_LENGTH_S,
    pauses: str = "stop",
) -> list[Session]:
    """The running tracks of a GPX file, one `Session` each, on a 1 Hz grid.

    `runner` defaults to the file's stem; `pauses` as for `data.readers.to_session`;
    `require_hr` raises when a track has no heart rate; `cadence_unit="steps/min"` reads an
    exporter that writes steps. Raises `WearjaxFileError` for an empty file, invalid XML, a
    file that is not GPX, or one without a running track with timed points.
    """
    path = Path(path)
    root = xml_root(path, "gpx", "export the run as GPX again", "a .gpx export")
    tracks = root.findall("{*}trk")
    if not tracks:
        raise WearjaxFileError(
            path, "the GPX file has no track (trk): routes and waypoints are not recordings",
            "export the recorded activity as GPX",
        )  # fmt: skip
    running = [(k, t) for k, t in enumerate(tracks, start=1) if _is_run(t)]
    if not running:
        kinds = sorted({(t.findtext("{*}type") or "").strip() for t in tracks})
        raise WearjaxFileError(
            path,
            f"no running track (track types: {', '.join(kinds)})",
            "wearjax reads runs only; pass a running activity",
        )
    attempts = []
    for k, track in running:
        points = track.findall("{*}trkseg/{*}trkpt")
        if not points:
            continue
        texts = [p.findtext("{*}time") for p in points]
        time = np.array([iso_seconds(t) for t in texts])
        check_times(texts, time, path, "GPX", "export the run again")
        lat = np.array([number(p.get("lat")) for p in points])
        lon = np.array([number(p.get("lon")) for p in points])
        fields = _point_fields(points)
        fields["speed"] = np.where(fields["speed"] >= 0, fields["speed"], np.nan)  # -1: invalid
        fields["enhanced_altitude"] = np.array([number(p.findtext("{*}ele")) for p in points])
        fields["distance"] = cumulative_distance(lat, lon, time, path=path)
        fix = "GPX speed is in m/s"
        records = point_records(time, fields, path, cadence_unit=cadence_unit, speed_fix=fix)
        workout = path.stem if len(tracks) == 1 else f"{path.stem}#{k}"
        build = functools.partial(
            to_session, records, path=path, runner=path.stem if runner is None else runner,
            workout=workout, max_gap_s=max_gap_s, min_length_s=min_length_s, pauses=pauses,
        )  # fmt: skip
        attempts.append((workout, build))
    sessions = usable_parts(path, attempts, require_hr=require_hr, what="running track")
    if not sessions:
        raise WearjaxFileError(
            path, "its running track has no points", "pass an activity with a recorded track"
        )
    return sessions
