"""The shared running CSVs written as FIT, TCX and GPX files, so the HR study runs on the
formats watches and their apps export.

    python experiments/running_csv_as_fit_tcx.py [--data ../shared/data/running-csv] --out DIR
    python experiments/running_csv_hr.py --data DIR/fit --out ...
    python experiments/running_csv_hr.py --data DIR/tcx --out ...
    python experiments/running_csv_hr.py --data DIR/gpx --out ...

Each CSV row (a FIT export, one per second) becomes a FIT `record` message, written with the
independent encoder `fit-tool` (the `test` extra) and read back by the vendor's SDK
(`wearjax.data.garmin_fit`), and a TCX `Trackpoint` (Garmin's TrainingCenterDatabase v2 with
the ActivityExtension `Speed` and `RunCadence`). Fields: time, heart rate, cadence (strides/min)
+ fractional cadence, distance, enhanced altitude and speed. Rows with a missing value keep the
others (the field is left out of that record, as a watch does). A GPX `trkpt` has no distance
or speed field, and these runs have no positions: each point is placed due north of 60 N, 25 E
at the run's distance so far (linearly interpolated across rows without one), so the reader's
great-circle distance gives the CSV's back and its speed is the distance's change per second,
not the watch's speed; HR and cadence (whole strides/min) in Garmin's TrackPointExtension v1.
`--gps-noise M` also writes `DIR/gpx_noisy`, each fix moved by a receiver-like error that
drifts (SD M metres north and east, correlated over 20 s: `gps_error`), as a watch's recorded
track wanders around the true one.

`--dynamics` also writes `DIR/fit_dynamics`: the same FIT files with running-dynamics fields a
chest or foot pod would add (step length, vertical oscillation, vertical ratio, stance time and
its percentage), *derived* from each second's speed and cadence plus noise (`dynamics`: not
measured, so they carry no information beyond speed and cadence), and without the
`user_profile` message (no height). It checks that the HR study copes with a watch that
records every channel the model reads, and with a height it does not know.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "running-csv"
FIELDS = ("heart_rate", "cadence", "fractional_cadence", "distance", "enhanced_altitude",
          "enhanced_speed")  # fmt: skip


def _rows(path: Path) -> list[dict]:
    """`(epoch ms, {field: value})` per CSV row with a timestamp; missing values dropped."""
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            t = datetime.fromisoformat(row["timestamp"])
            values = {}
            for name in FIELDS:
                text = row.get(name, "")
                if text not in ("", "nan") and math.isfinite(float(text)):
                    values[name] = float(text)
            out.append((round(t.timestamp() * 1000), values))
    return out


def dynamics(values: dict, rng) -> dict:
    """Running-dynamics fields of one second, in FIT units, from its speed (m/s) and cadence
    (strides/min); none while standing or walking slowly (no foot-pod reading). Textbook
    shapes, not a fitted model: step length = speed / step rate; vertical oscillation 8-9 cm
    falling with speed; stance 300 ms at 3 m/s, shorter when faster, about 40% of the stride
    (mm, %, ms)."""
    v, c = values.get("enhanced_speed"), values.get("cadence")
    if v is None or c is None or v < 1.5 or c < 60:
        return {}
    stride_s = 60.0 / c  # one stride = two steps
    step_mm = 1000.0 * v * stride_s / 2.0
    vo_mm = max(50.0, 85.0 - 4.0 * (v - 3.0) + rng.normal(0.0, 3.0))
    stance_ms = max(150.0, 300.0 - 30.0 * (v - 3.0) + rng.normal(0.0, 8.0))
    return {
        "step_length": step_mm,
        "vertical_oscillation": vo_mm,
        "vertical_ratio": 100.0 * vo_mm / step_mm,
        "stance_time": stance_ms,
        "stance_time_percent": 100.0 * stance_ms / (1000.0 * stride_s),  # of the stride
    }


def write_fit(rows: list, path: Path) -> None:
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.record_message import RecordMessage
    from fit_tool.profile.messages.session_message import SessionMessage
    from fit_tool.profile.profile_type import FileType, Manufacturer, Sport

    builder = FitFileBuilder(auto_define=True)
    file_id = FileIdMessage()
    ids = dict(type=FileType.ACTIVITY, manufacturer=Manufacturer.GARMIN.value, product=0,
               serial_number=1, time_created=rows[0][0])  # fmt: skip
    for name, value in ids.items():
        setattr(file_id, name, value)
    builder.add(file_id)
    for ms, values in rows:
        record = RecordMessage()
        record.timestamp = ms
        for name, value in values.items():
            setattr(record, name, round(value) if name == "heart_rate" else value)
        builder.add(record)
    session = SessionMessage()
    session.timestamp = rows[-1][0]
    session.start_time = rows[0][0]
    session.total_elapsed_time = (rows[-1][0] - rows[0][0]) / 1000
    session.sport = Sport.RUNNING
    builder.add(session)
    path.write_bytes(builder.build().to_bytes())


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat()


def write_tcx(rows: list, path: Path) -> None:
    points = []
    for ms, v in rows:
        parts = [f"<Time>{_iso(ms)}</Time>"]
        if "enhanced_altitude" in v:
            parts.append(f"<AltitudeMeters>{v['enhanced_altitude']:.3f}</AltitudeMeters>")
        if "distance" in v:
            parts.append(f"<DistanceMeters>{v['distance']:.2f}</DistanceMeters>")
        if "heart_rate" in v:
            parts.append(f"<HeartRateBpm><Value>{round(v['heart_rate'])}</Value></HeartRateBpm>")
        ext = []
        if "enhanced_speed" in v:
            ext.append(f"<ns3:Speed>{v['enhanced_speed']:.3f}</ns3:Speed>")
        if "cadence" in v:
            cadence = v["cadence"] + v.get("fractional_cadence", 0.0)
            ext.append(f"<ns3:RunCadence>{round(cadence)}</ns3:RunCadence>")
        if ext:
            parts.append(f"<Extensions><ns3:TPX>{''.join(ext)}</ns3:TPX></Extensions>")
        points.append(f"<Trackpoint>{''.join(parts)}</Trackpoint>")
    start = escape(_iso(rows[0][0]))
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/'
        'TrainingCenterDatabase/v2" xmlns:ns3="http://www.garmin.com/xmlschemas/'
        'ActivityExtension/v2"><Activities><Activity Sport="Running">'
        f'<Id>{start}</Id><Lap StartTime="{start}"><Track>'
        + "".join(points)
        + "</Track></Lap></Activity></Activities></TrainingCenterDatabase>\n"
    )


EARTH_RADIUS_M = 6_371_008.8  # the sphere `wearjax.data.gpx` takes distances on


def gps_error(n: int, sd_m: float, rng, *, correlation_s: float = 20.0) -> np.ndarray:
    """`[n, 2]` north and east position errors (m) one second apart: each a stationary AR(1)
    process of SD `sd_m` whose correlation falls by 1/e over `correlation_s` seconds (a
    receiver's error drifts with the satellites and the multipath rather than jumping each
    fix; the 20 s default is our assumption, not a measured receiver's)."""
    rho = math.exp(-1.0 / correlation_s)
    shocks = rng.normal(0.0, sd_m * math.sqrt(1.0 - rho**2), (n, 2))
    shocks[0] = rng.normal(0.0, sd_m, 2)
    return lfilter([1.0], [1.0, -rho], shocks, axis=0)


def write_gpx(rows: list, path: Path, error_m: np.ndarray | None = None) -> None:
    """`error_m [n, 2]`: north and east errors (m) added to each fix (`gps_error`)."""
    ms = np.array([r[0] for r in rows], float)
    known = np.array(["distance" in v for _, v in rows])
    d = np.array([v.get("distance", np.nan) for _, v in rows])
    d = np.interp(ms, ms[known], d[known]) if known.any() else np.zeros(len(rows))
    north, east = (d, np.zeros_like(d)) if error_m is None else (d + error_m[:, 0], error_m[:, 1])
    lat = 60.0 + np.degrees(north / EARTH_RADIUS_M)
    lon = 25.0 + np.degrees(east / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    points = []
    for (t, v), a, o in zip(rows, lat, lon, strict=True):
        parts = []
        if "enhanced_altitude" in v:
            parts.append(f"<ele>{v['enhanced_altitude']:.3f}</ele>")
        parts.append(f"<time>{_iso(t)}</time>")
        ext = []
        if "heart_rate" in v:
            ext.append(f"<gpxtpx:hr>{round(v['heart_rate'])}</gpxtpx:hr>")
        if "cadence" in v:
            cadence = v["cadence"] + v.get("fractional_cadence", 0.0)
            ext.append(f"<gpxtpx:cad>{round(cadence)}</gpxtpx:cad>")
        if ext:
            parts.append("<extensions><gpxtpx:TrackPointExtension>" + "".join(ext)
                         + "</gpxtpx:TrackPointExtension></extensions>")  # fmt: skip
        points.append(f'<trkpt lat="{a:.8f}" lon="{o:.8f}">{"".join(parts)}</trkpt>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="wearjax" '
        'xmlns="http://www.topografix.com/GPX/1/1" xmlns:gpxtpx="http://www.garmin.com/'
        'xmlschemas/TrackPointExtension/v1"><trk><type>running</type><trkseg>'
        + "".join(points)
        + "</trkseg></trk></gpx>\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dynamics", action="store_true", help="also write DIR/fit_dynamics (see the docstring)"
    )
    parser.add_argument(
        "--gps-noise", type=float, default=0.0, metavar="M",
        help="also write DIR/gpx_noisy: every fix off by a drifting error of SD M metres",
    )  # fmt: skip
    args = parser.parse_args()
    files = sorted(args.data.glob("*.csv"))
    if not files:
        print(f"skipped: no running CSVs at {args.data}")
        return 0
    kinds = ("fit", "tcx", "gpx") + (("fit_dynamics",) if args.dynamics else ())
    kinds += ("gpx_noisy",) if args.gps_noise > 0 else ()
    for kind in kinds:
        (args.out / kind).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, path in enumerate(files):
        rows = _rows(path)
        stem = path.name.removesuffix(".csv").removesuffix(".fit")
        write_fit(rows, args.out / "fit" / f"{stem}.fit")
        write_tcx(rows, args.out / "tcx" / f"{stem}.tcx")
        write_gpx(rows, args.out / "gpx" / f"{stem}.gpx")
        if args.gps_noise > 0:  # its own draw per file: the same errors with or without others
            error = gps_error(len(rows), args.gps_noise, np.random.default_rng([1, i]))
            write_gpx(rows, args.out / "gpx_noisy" / f"{stem}.gpx", error)
        if args.dynamics:
            rows = [(ms, {**v, **dynamics(v, rng)}) for ms, v in rows]
            write_fit(rows, args.out / "fit_dynamics" / f"{stem}.fit")
    print(f"wrote {len(files)} files of each of {', '.join(kinds)} under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
