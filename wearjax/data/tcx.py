"""Garmin Training Center (TCX) files, read with `xml.etree`.

Each `Activity` whose `Sport` is `Running` becomes one `Session` (conventions in
`wearjax.data.readers`). Per `Trackpoint`: `Time` (ISO 8601; UTC when it names no zone),
`HeartRateBpm/Value` (bpm), `AltitudeMeters` (m), and from the ActivityExtension v2 `TPX`
element `Speed` (m/s) and `RunCadence` (strides/min, as Garmin writes it; `Cadence` of the
trackpoint itself when there is no `RunCadence`). Without any `Speed`, speed is the change in
`DistanceMeters` over the time between consecutive trackpoints. An activity that cannot be used
(out of time order, shorter than `min_length_s`: `wearjax.data.validate`) is left out when the
file has another that can; a file without any raises that activity's error.
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path

import numpy as np

from wearjax.data.channels import needs_speed_from_distance, running_channels, speed_from_distance
from wearjax.data.readers import (
    MAX_GAP_S,
    Records,
    check_times,
    iso_seconds,
    number,
    read_bytes,
    to_session,
    usable_parts,
)
from wearjax.data.types import Session
from wearjax.data.validate import CADENCE_UNIT_FIX, MIN_LENGTH_S, check_cadence, check_speed
from wearjax.errors import WearjaxFileError

logger = logging.getLogger(__name__)

# Trackpoint children (paths with any namespace) read into FIT-named fields.
TRACKPOINT_FIELDS = {
    "heart_rate": "{*}HeartRateBpm/{*}Value",
    "enhanced_altitude": "{*}AltitudeMeters",
    "distance": "{*}DistanceMeters",
    "speed": "{*}Extensions/{*}TPX/{*}Speed",
    "run_cadence": "{*}Extensions/{*}TPX/{*}RunCadence",
    "cadence": "{*}Cadence",
}


def read_tcx(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    cadence_unit: str = "strides/min",
    min_length_s: float = MIN_LENGTH_S,
    pauses: str = "stop",
) -> list[Session]:
    """The running activities of a TCX file, one `Session` each, on a 1 Hz grid.

    `runner` defaults to the file's stem; `pauses` as for `data.readers.to_session`;
    `require_hr` raises when an activity has no heart rate; `cadence_unit="steps/min"` reads
    an exporter that writes steps. Raises `WearjaxFileError` for an empty file, invalid XML,
    a file that is not TCX, or one without a running activity with trackpoints.
    """
    path = Path(path)
    data = read_bytes(path)
    try:
        root = ET.parse(BytesIO(data)).getroot()
    except (ET.ParseError, LookupError) as err:  # LookupError: an unknown declared encoding
        raise WearjaxFileError(
            path, f"not valid XML ({err})", "export the activity as TCX again"
        ) from err
    if not root.tag.endswith("TrainingCenterDatabase"):
        raise WearjaxFileError(
            path,
            f"not a TCX file (its root element is {root.tag!r})",
            "pass a Garmin Training Center (.tcx) export",
        )
    activities = root.findall("{*}Activities/{*}Activity")
    running = [
        (k, a) for k, a in enumerate(activities, start=1) if a.get("Sport", "").lower() == "running"
    ]
    if not running:
        sports = sorted({a.get("Sport", "?") for a in activities})
        raise WearjaxFileError(
            path,
            f"no running activity (sports: {', '.join(sports) or 'none'})",
            "wearjax reads runs only; pass a running activity",
        )
    stem = path.stem
    attempts = []
    for k, activity in running:
        points = activity.findall("{*}Lap/{*}Track/{*}Trackpoint")
        if not points:
            continue
        texts = [p.findtext("{*}Time") for p in points]
        time = np.array([iso_seconds(t) for t in texts])
        check_times(texts, time, path, "TCX", "export the activity again")
        fields = {
            name: np.array([number(p.findtext(xpath)) for p in points])
            for name, xpath in TRACKPOINT_FIELDS.items()
        }
        if np.isfinite(fields["run_cadence"]).any():
            fields["cadence"] = fields["run_cadence"]
        if needs_speed_from_distance(fields):
            fields["speed"] = speed_from_distance(time, fields["distance"])
        fields = {n: v for n, v in fields.items() if np.isfinite(v).any()}
        channels = running_channels(fields, path=path, units={"cadence": cadence_unit})
        fix = "TCX speed is in m/s: export the activity again"
        check_speed(fields, channels.get("speed"), path, unit="m/s", fix=fix)
        if "cadence" in channels:
            check_cadence(channels["cadence"], path, CADENCE_UNIT_FIX)
        workout = stem if len(activities) == 1 else f"{stem}#{k}"
        records = Records(
            time=time,
            channels=channels,
            hr=fields.get("heart_rate", time * np.nan),
            distance=fields.get("distance"),
        )
        build = functools.partial(
            to_session, records, path=path, runner=stem if runner is None else runner,
            workout=workout, max_gap_s=max_gap_s, min_length_s=min_length_s, pauses=pauses,
        )  # fmt: skip
        attempts.append((workout, build))
    sessions = usable_parts(path, attempts, require_hr=require_hr, what="running activity")
    if not sessions:
        raise WearjaxFileError(
            path, "its running activity has no trackpoints", "pass an activity with a track"
        )
    return sessions
