"""GPX reading: files written here, distances checked against an independent formula (the
spherical law of cosines) and hand-computed values."""

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from wearjax.data.channels import SPEED_SPAN_S, speed_from_distance
from wearjax.data.folders import load_folder
from wearjax.data.gpx import EARTH_RADIUS_M, cumulative_distance, haversine_m, read_gpx
from wearjax.data.xml_export import iso_seconds
from wearjax.errors import WearjaxFileError

RUNNING_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "running-csv"
T0 = 1_600_000_000
NS = {
    "v1": "http://www.garmin.com/xmlschemas/TrackPointExtension/v1",
    "v2": "http://www.garmin.com/xmlschemas/TrackPointExtension/v2",
}


def gpx_text(tracks, version="1.1", extension="v1"):
    """A GPX file: `tracks` are (type or None, points), each point a dict with `t` (s after
    T0), `lat`, `lon` and optionally `ele`, `hr`, `cad`, `speed`; `extension` "v1"/"v2"
    (Garmin's TrackPointExtension) or "plain" (unprefixed elements)."""
    ns = f'xmlns:gpxtpx="{NS[extension]}"' if extension in NS else ""
    ns = 'xmlns:gpxdata="http://www.cluetrust.com/XML/GPXDATA/1/0"' if extension == "1.0" else ns
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gpx version="{version}" creator="test" '
        f'xmlns="http://www.topografix.com/GPX/{version.replace(".", "/")}" {ns}>',
    ]
    pre = "gpxtpx:" if extension in NS else ""
    for kind, points in tracks:
        out.append("<trk><name>run</name>" + (f"<type>{kind}</type>" if kind else "") + "<trkseg>")
        for p in points:
            when = datetime.fromtimestamp(T0 + p["t"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            ext = "".join(f"<{pre}{k}>{p[k]}</{pre}{k}>" for k in ("hr", "cad", "speed") if k in p)
            if extension == "1.0":  # no extensions in GPX 1.0: speed and vendor elements inline
                tag = {"hr": "gpxdata:hr", "cad": "gpxdata:cadence", "speed": "speed"}
                ext = "".join(f"<{tag[k]}>{p[k]}</{tag[k]}>" for k in tag if k in p)
            elif ext:
                ext = f"<extensions><{pre}TrackPointExtension>{ext}</{pre}TrackPointExtension>"
                ext += "</extensions>"
            ele = f"<ele>{p['ele']}</ele>" if "ele" in p else ""
            out.append(
                f'<trkpt lat="{p["lat"]:.7f}" lon="{p["lon"]:.7f}">{ele}<time>{when}</time>'
                f"{ext}</trkpt>"
            )
        out.append("</trkseg></trk>")
    out.append("</gpx>")
    return "\n".join(out)


def _write(path, text):
    path.write_text(text)
    return path


def meridian(seconds, speed=3.0, lat0=60.0, lon=24.9, **fields):
    """Points due north at `speed` m/s, one per second in `seconds`, standing still where the
    seconds skip (the distance is `speed` times the seconds run before a gap)."""
    seconds = np.asarray(seconds)
    ran = np.concatenate([[0], np.cumsum(np.where(np.diff(seconds) == 1, 1, 0))])
    lat = lat0 + np.degrees(speed * ran / EARTH_RADIUS_M)
    return [
        dict(t=int(t), lat=float(a), lon=lon, **fields) for t, a in zip(seconds, lat, strict=True)
    ]


def law_of_cosines_m(lat, lon):
    phi, lam = np.radians(lat), np.radians(lon)
    c = np.sin(phi[:-1]) * np.sin(phi[1:]) + np.cos(phi[:-1]) * np.cos(phi[1:]) * np.cos(
        np.diff(lam)
    )
    return EARTH_RADIUS_M * np.arccos(np.clip(c, -1, 1))


def test_haversine_against_the_spherical_law_of_cosines():
    rng = np.random.default_rng(0)
    lat = 50 + np.cumsum(rng.uniform(-0.02, 0.02, 200))  # steps of up to ~2-3 km
    lon = 10 + np.cumsum(rng.uniform(-0.02, 0.02, 200))
    np.testing.assert_allclose(haversine_m(lat, lon), law_of_cosines_m(lat, lon), rtol=1e-6)
    # along a meridian the great circle is R times the angle
    np.testing.assert_allclose(
        haversine_m(np.array([0.0, 1.0]), np.array([5.0, 5.0])), EARTH_RADIUS_M * np.pi / 180
    )
    total = cumulative_distance(np.array([1.0, np.nan, 1.0, 1.001]), np.array([2.0, 2, 2, 2]))
    np.testing.assert_allclose(total, [0, np.nan, 0, EARTH_RADIUS_M * np.radians(0.001)])


def test_a_run_with_heart_rate_cadence_and_elevation(tmp_path):
    points = meridian(range(120), hr=150, cad=86, ele=12.5)
    for version, extension in (("1.1", "v1"), ("1.1", "v2"), ("1.1", "plain"), ("1.0", "1.0")):
        text = gpx_text([("running", points)], version=version, extension=extension)
        (s,) = read_gpx(_write(tmp_path / f"run{version}{extension}.gpx", text))
        assert s.channels == ("speed", "cadence", "altitude") and s.length == 120
        speed, cadence, altitude = s.x.T
        # 3 m a second, up to the 7 decimals of a written latitude (1.1 cm)
        np.testing.assert_allclose(speed[1:], 3.0, atol=0.03)
        np.testing.assert_array_equal(cadence, 86)
        np.testing.assert_array_equal(altitude, 12.5)
        assert s.mask.all() and (s.hr == 150).all()


def test_a_speed_in_the_extensions_is_used_and_a_stop_reads_zero(tmp_path):
    seconds = [*range(60), *range(90, 180)]  # a 30 s stop where the position stands still
    (s,) = read_gpx(_write(tmp_path / "a.gpx", gpx_text([(None, meridian(seconds, cad=85))])))
    np.testing.assert_array_equal(s.x[60:90], 0)
    assert dict(s.metadata)["stopped_s"] == "30" and not s.mask.any()  # no HR in the file
    given = [p | dict(speed=3.3) for p in meridian(range(100), hr=140)]  # the watch's own, not
    # the 3 m/s of the points
    (s,) = read_gpx(_write(tmp_path / "b.gpx", gpx_text([("9", given)])))
    np.testing.assert_allclose(s.x[:, 0], 3.3)


def test_tracks_that_are_not_runs_are_left_out_and_errors_name_the_file(tmp_path):
    run, ride = meridian(range(100), hr=150), meridian(range(100), speed=8.0, hr=130)
    text = gpx_text([("cycling", ride), ("trail_running", run)])
    (s,) = read_gpx(_write(tmp_path / "two.gpx", text))
    assert s.workout == "two#2" and (s.hr == 150).all()
    with pytest.raises(WearjaxFileError, match=r"ride\.gpx: no running track \(track types: 1"):
        read_gpx(_write(tmp_path / "ride.gpx", gpx_text([("1", ride)])))
    with pytest.raises(WearjaxFileError, match=r"bad\.gpx: not valid XML"):
        read_gpx(_write(tmp_path / "bad.gpx", "<gpx><trk>"))
    with pytest.raises(WearjaxFileError, match=r"not a GPX file \(its root element is 'kml'\)"):
        read_gpx(_write(tmp_path / "k.gpx", "<kml></kml>"))
    with pytest.raises(WearjaxFileError, match=r"empty\.gpx: its running track has no points"):
        read_gpx(_write(tmp_path / "empty.gpx", gpx_text([("running", [])])))
    times = gpx_text([("running", run)]).replace("2020-09-13T", "13/09/2020 ")
    with pytest.raises(WearjaxFileError, match=r"times\.gpx: no point's time is readable"):
        read_gpx(_write(tmp_path / "times.gpx", times))
    steps = gpx_text([("running", meridian(range(100), cad=172))])
    with pytest.raises(WearjaxFileError, match=r"steps\.gpx: median cadence 172"):
        read_gpx(_write(tmp_path / "steps.gpx", steps))
    (folder := tmp_path / "folder" / "ann").mkdir(parents=True)
    _write(folder / "run.gpx", gpx_text([("running", run)]))
    (found,), skipped = load_folder(tmp_path / "folder", cache_dir=tmp_path / "cache")
    assert found.runner == "ann" and not skipped


@pytest.mark.skipif(
    not RUNNING_CSV.is_dir(), reason=f"real running data not found at {RUNNING_CSV}"
)
def test_a_real_run_written_as_gpx_gives_the_speed_of_its_distance(tmp_path):
    """A shared run's distance laid along a meridian: the speed read from the points equals
    the speed of the CSV's distance over the 10 s centred on each second."""
    path = sorted(RUNNING_CSV.glob("*.csv"))[0]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows])
    distance = np.array([float(r["distance"]) for r in rows])
    lat = 45.0 + np.degrees(distance / EARTH_RADIUS_M)
    points = [
        dict(t=int(ti - T0), lat=a, lon=7.0, hr=int(float(r["heart_rate"])))
        for ti, a, r in zip(t, lat, rows, strict=True)
    ]
    (s,) = read_gpx(_write(tmp_path / "real.gpx", gpx_text([("running", points)])))
    second = np.round(t - t[0]).astype(int)
    h = int(SPEED_SPAN_S) // 2
    k = np.arange(h, len(t) - h)
    k = k[second[k + h] - second[k - h] == 2 * h]  # one record a second for h s either side
    expected = (distance[k + h] - distance[k - h]) / (t[k + h] - t[k - h])
    assert k.size > 0.9 * len(t)
    np.testing.assert_allclose(s.x[second[k], 0], expected, atol=0.005)
    assert s.length == second[-1] + 1


def test_gps_jumps_impossible_positions_and_invalid_speeds_are_left_out(tmp_path, caplog):
    points = meridian(range(120), hr=150)
    points[40] = points[40] | dict(lat=points[40]["lat"] + 0.05)  # one fix 5.6 km off route
    points[80] = points[80] | dict(lat=91.5)  # no latitude at all
    (s,) = read_gpx(_write(tmp_path / "jumps.gpx", gpx_text([("running", points)])))
    np.testing.assert_allclose(s.x[1:, 0], 3.0, atol=0.03)  # bridged at the route's 3 m/s
    assert "1 positions off the route, 0 steps faster than 12.5 m/s" in caplog.text
    step = [p | dict(lat=p["lat"] + (0.01 if p["t"] >= 60 else 0)) for p in meridian(range(120))]
    (s,) = read_gpx(_write(tmp_path / "step.gpx", gpx_text([(None, step)])))
    assert np.nanmax(s.x[:, 0]) < 3.1  # a fix that jumped 1.1 km and stayed: no distance
    given = [p | dict(speed=-1 if p["t"] % 10 == 0 else 3.2) for p in meridian(range(100))]
    (s,) = read_gpx(_write(tmp_path / "neg.gpx", gpx_text([("running", given)])))
    np.testing.assert_allclose(s.x[1:-1, 0], 3.2)  # -1 is missing, the seconds between filled


def test_points_sharing_a_second_and_the_encodings_and_layouts_seen_in_exports(tmp_path):
    # two points a second, their times cut to the second: 3 m/s, not half of it
    true = np.arange(240) / 2  # the true times, 0.5 s apart
    lat = 60.0 + np.degrees(3.0 * true / EARTH_RADIUS_M)
    half = [dict(t=int(t), lat=float(a), lon=24.9) for t, a in zip(true, lat, strict=True)]
    text = gpx_text([("running", half)]).replace("Z</time>", "z</time>")
    (s,) = read_gpx(_write(tmp_path / "two_hz.gpx", text))  # and a lowercase z (RFC 3339)
    np.testing.assert_allclose(s.x[1:, 0], 3.0, atol=0.03)
    assert s.length == 120
    np.testing.assert_array_equal(speed_from_distance(np.array([0, 0, 1, 1.0]),
                                                      np.array([0, 1.5, 3, 4.5])),
                                  [3.0, 3.0, 3.0, 3.0])  # fmt: skip
    # Garmin Connect's ns3 prefix, two segments (a pause between them), a time zone offset
    run = meridian(range(200), hr=150, cad=85)
    text = gpx_text([("running", run)]).replace("gpxtpx", "ns3")
    text = text.replace('<trkpt lat="60.0005', '</trkseg><trkseg><trkpt lat="60.0005', 1)
    (s,) = read_gpx(_write(tmp_path / "ns3.gpx", text))
    assert (s.hr == 150).all() and (s.x[:, 1] == 85).all()
    assert iso_seconds("2020-09-13T14:26:40+02:00") == T0
    bad = '<?xml version="1.0" encoding="x-unknown"?><gpx></gpx>'
    with pytest.raises(WearjaxFileError, match=r"enc\.gpx: not valid XML"):
        read_gpx(_write(tmp_path / "enc.gpx", bad))
    route = gpx_text([]).replace("</gpx>", '<rte><rtept lat="60" lon="25"/></rte></gpx>')
    with pytest.raises(WearjaxFileError, match=r"route\.gpx: the GPX file has no track"):
        read_gpx(_write(tmp_path / "route.gpx", route))


@pytest.mark.parametrize("encoding", ["GBK", "Shift_JIS", "GB2312"])
def test_a_multi_byte_declared_encoding_is_decoded_and_a_folder_keeps_its_other_files(
    encoding, tmp_path
):
    """XML's parser reads no multi-byte declared encoding; until 2026-12-07 its ValueError
    escaped the reader and stopped a whole folder. The file is decoded by Python's codec of
    the declared name; one that does not decode so is skipped with its reason."""
    text = gpx_text([("running", meridian(range(120), hr=150))])
    text = text.replace('encoding="UTF-8"', f'encoding="{encoding}"', 1)
    assert f'encoding="{encoding}"' in text
    path = tmp_path / "runs" / "run.gpx"
    path.parent.mkdir()
    path.write_bytes(text.encode(encoding))
    (s,) = read_gpx(path)
    assert (s.hr == 150).all()
    (tmp_path / "runs" / "bad.gpx").write_bytes(
        f'<?xml version="1.0" encoding="{encoding}"?><gpx>'.encode() + b"\xff\xff</gpx>"
    )
    sessions, skipped = load_folder(tmp_path / "runs", cache_dir=tmp_path / "cache")
    assert [p.path.name for p in skipped] == ["bad.gpx"] and len(sessions) == 1
    assert "not valid XML" in skipped[0].reason
