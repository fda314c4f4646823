"""Garmin Training Center (TCX) files, read with `xml.etree`.

Each `Activity` whose `Sport` is `Running` becomes one `Session` (conventions in
`wearjax.data.readers`). Per `Trackpoint`: `Time` (ISO 8601; UTC when it names no zone),
`HeartRateBpm/Value` (bpm), `AltitudeMeters` (m), and from the ActivityExtension v2 `TPX`
element `Speed` (m/s) and `RunCadence` (strides/min, as Garmin writes it; `Cadence` of the
trackpoint itself when there is no `RunCadence`). Without any `Speed`, speed is the change in
`DistanceMeters` over the 10 s centred on each trackpoint (`channels.speed_from_distance`). An
activity that cannot be used
(out of time order, shorter than `min_length_s`: `wearjax.data.validate`) is left out when the
file has another that can; a file without any raises that activity's error.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

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
    root = xml_root(path, "TrainingCenterDatabase", "export the activity as TCX again",
                    "a Garmin Training Center (.tcx) export")  # fmt: skip
    # an Activity directly under Activities, or in a MultiSportSession's FirstSport/NextSport
    # (a brick or duathlon; until 2026-12-07 those read as "no running activity")
    activities = root.findall("{*}Activities//{*}Activity")
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
        fix = "TCX speed is in m/s: export the activity again"
        records = point_records(time, fields, path, cadence_unit=cadence_unit, speed_fix=fix)
        workout = stem if len(activities) == 1 else f"{stem}#{k}"
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
