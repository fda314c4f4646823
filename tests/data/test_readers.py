"""The 1 Hz grid, field mapping, TCX and CSV readers, and the real running CSVs."""

import csv
import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from wearjax.data.channels import running_channels
from wearjax.data.csv import read_cpet_csv, read_csv, read_running_csv
from wearjax.data.folders import load_folder
from wearjax.data.readers import Records, to_session
from wearjax.data.tcx import read_tcx
from wearjax.errors import WearjaxFileError

RUNNING_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "running-csv"


def _grid(
    time, hr, max_gap_s=10.0, vo2=None, min_length_s=0, distance=None, pauses="stop", **channels
):
    """A session of hand-written records, seconds long (no minimum length unless given)."""
    records = Records(
        time=np.asarray(time, float),
        channels={k: np.asarray(v, float) for k, v in channels.items()},
        hr=np.asarray(hr, float),
        vo2=None if vo2 is None else np.asarray(vo2, float),
        distance=None if distance is None else np.asarray(distance, float),
    )
    return to_session(
        records,
        path="mem",
        runner="r",
        workout="w",
        max_gap_s=max_gap_s,
        min_length_s=min_length_s,
        pauses=pauses,
    )


def test_grid_rounds_to_seconds_and_averages_within_one():
    # 2 Hz samples at 0.0, 0.4, 1.0, 1.6 s: 0.4 joins 0 s; 1.6 rounds to 2 s.
    s = _grid([100.0, 100.4, 101.0, 101.6], [100, 110, 120, 130], speed=[1, 2, 3, 4])
    np.testing.assert_array_equal(s.hr, [105, 120, 130])
    np.testing.assert_array_equal(s.x[:, 0], [1.5, 3, 4])
    assert s.x.dtype == np.float32 and s.mask.dtype == bool and s.channels == ("speed",)


def test_gap_threshold_is_inclusive_per_quantity():
    nan = np.nan
    # Records at 0, 3 (a 3 s gap) and 7 (a 4 s gap); speed is absent from the record at 3 s.
    s = _grid([0, 3, 7], [100, 130, 170], max_gap_s=3.0, speed=[1.0, nan, 8.0], vo2=[1e3, nan, 2e3])
    np.testing.assert_allclose(s.hr, [100, 110, 120, 130, nan, nan, nan, 170])
    np.testing.assert_array_equal(s.mask, [1, 1, 1, 1, 0, 0, 0, 1])
    # Speed's own observations are 7 s apart, more than 3 s: held, not interpolated.
    np.testing.assert_array_equal(s.x[:, 0], [1, 1, 1, 1, 1, 1, 1, 8])
    # VO2 is missing in the record at 3 s, so seconds 1-2 have no record pair with VO2.
    np.testing.assert_array_equal(s.vo2_mask, [1, 0, 0, 0, 0, 0, 0, 1])
    t = _grid([0, 3, 7], [100, 130, 170], max_gap_s=4.0, speed=[1.0, nan, 8.0])
    np.testing.assert_allclose(t.hr, [100, 110, 120, 130, 140, 150, 160, 170])
    np.testing.assert_array_equal(t.x[:, 0], [1, 1, 1, 1, 1, 1, 1, 8])


def test_a_pause_where_the_distance_stood_still_is_a_stop():
    nan = np.nan
    # Records every second to 3 s, a 20 s pause, then at 23-24 s; a 12 s pause to 36 s.
    t = [0, 1, 2, 3, 23, 24, 36]
    hr = [150, 151, 152, 153, 130, 131, 140]
    run = dict(speed=[3, 3, 3, 3, 0.2, 2.8, 3], cadence=[85, 85, nan, 86, 10, 84, 85],
               altitude=[10, 10, 11, 11, 12, 12, 13])  # fmt: skip
    # 4 m in the first pause (GPS drift: 0.2 m/s), 30 m in the second (2.5 m/s: on the move)
    distance = [0, 3, 6, 9, 13, 16, 46]
    s = _grid(t, hr, distance=distance, **run)
    speed, cadence, altitude = s.x.T
    inside = np.arange(4, 23)
    np.testing.assert_array_equal(speed[inside], 0)
    np.testing.assert_array_equal(cadence[inside], 0)
    np.testing.assert_array_equal(altitude[inside], 11)  # no step defines it: held
    # the records either side keep their values; the cadence the record at 2 s lacks is filled
    np.testing.assert_array_equal(speed[[3, 23]], np.float32([3, 0.2]))
    assert cadence[2] == 85.5 and cadence[23] == 10
    np.testing.assert_array_equal(speed[25:36], np.float32(2.8))  # the second pause: held
    assert not s.mask[inside].any() and dict(s.metadata)["stopped_s"] == "19"
    # held as before with pauses="hold", and without a distance on both sides of the gap
    for other in (
        _grid(t, hr, distance=distance, pauses="hold", **run),
        _grid(t, hr, distance=[nan, nan, nan, nan, 13, 16, 46], **run),  # none before it
        _grid(t, hr, **run),
    ):
        np.testing.assert_array_equal(other.x[inside, :2], np.float32([[3, 86]] * inside.size))
        assert "stopped_s" not in dict(other.metadata)
    # the last distance before a gap and the first after it, where the edge records lack one
    edge = _grid(t, hr, distance=[0, 3, 6, nan, nan, 7, 46], **run)
    np.testing.assert_array_equal(edge.x[inside, :2], 0)
    # a distance that goes back (reset to 0) says nothing about the pause
    reset = _grid(t, hr, distance=[100, 103, 106, 109, 0, 3, 33], **run)
    np.testing.assert_array_equal(reset.x[inside, 0], 3)
    # a record without a distance between two gaps: neither gap can be judged on its own
    # side (the distance advanced 36 m over both, at 3 m/s through the second)
    both = _grid([0, 1, 2, 3, 104, 116, 117, 118], np.full(8, 150.0),
                 distance=[0, 3, 6, 9, nan, 45, 48, 51], speed=np.full(8, 3.0))  # fmt: skip
    np.testing.assert_array_equal(both.x[:, 0], 3.0)
    # a distance the speed contradicts says nothing: in km (0.003 km a second at 3 m/s), or
    # one that never advances; with it in metres, the 30 s stand is a stop
    seconds = [*range(60), *range(90, 150)]
    ran = np.where(np.asarray(seconds) < 60, seconds, np.asarray(seconds) - 30) * 3.0
    for distance, stop in ((ran, True), (ran / 1000, False), (np.zeros(120), False)):
        s = _grid(seconds, np.full(120, 150.0), distance=distance, speed=np.full(120, 3.0))
        np.testing.assert_array_equal(s.x[60:90, 0], 0.0 if stop else 3.0)
    with pytest.raises(ValueError, match="pauses"):
        _grid(t, hr, pauses="zero", **run)


STOP_SECONDS = (*range(31), *range(60, 121))  # a 29 s stop after 30 s of running at 3 m/s


def test_csv_and_tcx_readers_tell_a_stop_from_the_distance(tmp_path):
    rows = [
        [1_600_000_000 + t, 150, 3.0, 85, 3.0 * (t if t <= 30 else t - 29)] for t in STOP_SECONDS
    ]
    header = ["timestamp", "heart_rate", "enhanced_speed", "cadence", "distance"]
    path = _write_csv(tmp_path / "run.csv", header, rows)
    s = read_running_csv(path)
    np.testing.assert_array_equal(s.x[31:60], 0)
    assert dict(s.metadata)["stopped_s"] == "29"
    np.testing.assert_array_equal(read_running_csv(path, pauses="hold").x[31:60], [[3, 85]] * 29)
    (cached,), _ = load_folder(tmp_path, cache_dir=tmp_path / "cache")
    (held,), _ = load_folder(tmp_path, cache_dir=tmp_path / "cache", pauses="hold")
    np.testing.assert_array_equal(cached.x, s.x)  # the cache keeps the two readings apart
    np.testing.assert_array_equal(held.x[31:60], [[3, 85]] * 29)
    points = "".join(
        POINT.format(
            time=datetime.fromtimestamp(1_600_000_000 + t, UTC).isoformat(),
            alt=100.0,
            dist=3.0 * (t if t <= 30 else t - 29),
            hr=150,
            cad=85,
            speed="<ns3:Speed>3.0</ns3:Speed>",
        )  # fmt: skip
        for t in STOP_SECONDS
    )
    (tcx,) = read_tcx(_write_text(tmp_path / "run.tcx", TCX.format(points=points)))
    np.testing.assert_array_equal(tcx.x[31:60, :2], 0)
    np.testing.assert_array_equal(tcx.x[31:60, 2], 100.0)


def _write_text(path, text):
    path.write_text(text)
    return path


def test_implausible_heart_rates_are_missing():
    s = _grid(range(6), [0, 10, 120, 251, 255, 250], max_gap_s=1.0)
    np.testing.assert_array_equal(s.mask, [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(s.hr[s.mask], [120, 250])


def test_channels_missing_at_the_edges_are_nan_and_absent_ones_dropped():
    nan = np.nan
    s = _grid([0, 1, 2, 3], [90] * 4, cadence=[nan, 80, 81, nan], altitude=[nan] * 4)
    assert s.channels == ("cadence",)
    np.testing.assert_array_equal(s.x[:, 0], [nan, 80, 81, nan])


def test_to_session_rejects_records_without_time_and_absurd_spans():
    with pytest.raises(WearjaxFileError, match="mem: no record has a timestamp"):
        _grid([np.nan, np.nan], [100, 100])
    with pytest.raises(WearjaxFileError, match="mem: records span 55.6 h.*corrupt"):
        _grid(np.r_[np.arange(100.0), 2e5], np.full(101, 100.0))
    with pytest.raises(
        WearjaxFileError, match="mem: records are a median 200000 s apart.*unit of the time column"
    ):
        _grid([0, 2e5], [100, 100])


def test_field_mapping_prefers_enhanced_and_converts_units():
    nan = np.nan
    fields = dict(
        speed=np.array([10.8, 10.8]),
        enhanced_speed=np.array([12.6, nan]),
        altitude=np.array([10.0, 10.0]),
        enhanced_altitude=np.array([nan, 12.0]),
        cadence=np.array([170.0, 0.0]),
        fractional_cadence=np.array([1.0, nan]),
        stance_time=np.array([250.0, 250.0]),
    )
    out = running_channels(fields, path="mem", units={"cadence": "steps/min", "speed": "km/h"})
    np.testing.assert_allclose(out["speed"], [3.5, 3.0])
    np.testing.assert_allclose(out["altitude"], [10.0, 12.0])
    np.testing.assert_allclose(out["cadence"], [85.5, 0.0])
    # 250 ms over a stride of 60000 / 85.5 ms; no stride at zero cadence.
    np.testing.assert_allclose(out["stance_time_percent"], [250 * 85.5 / 600, nan])
    with pytest.raises(WearjaxFileError, match=r"mem: unknown unit 'furlong/s' for speed"):
        running_channels(fields, path="mem", units={"speed": "furlong/s"})
    with pytest.raises(WearjaxFileError, match=r"mem: units given for unknown channel 'power'"):
        running_channels(fields, path="mem", units={"power": "W"})


def test_a_declared_unit_the_values_contradict_is_refused():
    """In a folder of mixed exports, the unit one file needs (km/h, steps/min) would divide
    another's m/s speed by 3.6 or halve its stride cadence, silently: such a file is named."""
    run = dict(enhanced_speed=np.full(5, 2.8), cadence=np.full(5, 85.0))
    slow = r"mem: read as km/h, its median moving speed is 0.78 m/s \(2.8 km/h\), strides 0.55 m"
    with pytest.raises(WearjaxFileError, match=slow):
        running_channels(run, path="mem", units={"speed": "km/h"})
    with pytest.raises(
        WearjaxFileError, match=r"is 85 steps/min, strides 4\.0 m long at its speed: a stride"
    ):
        running_channels(run, path="mem", units={"cadence": "steps/min"})
    kmh = dict(enhanced_speed=np.full(5, 10.1), cadence=np.full(5, 170.0))
    out = running_channels(kmh, path="mem", units={"speed": "km/h", "cadence": "steps/min"})
    np.testing.assert_allclose([out["speed"][0], out["cadence"][0]], [10.1 / 3.6, 85.0])
    fast = dict(enhanced_speed=np.full(5, 4.2))  # a fast run's m/s read as km/h, or as mph
    for unit in ("km/h", "mph"):
        with pytest.raises(WearjaxFileError, match=f"read as {unit}, its median"):
            running_channels(fast, path="mem", units={"speed": unit})
    mph = running_channels(dict(enhanced_speed=np.full(5, 6.5)), path="mem", units={"speed": "mph"})
    np.testing.assert_allclose(mph["speed"], 6.5 * 0.44704)  # a 6.5 mph run
    standing = dict(enhanced_speed=np.zeros(5), cadence=np.zeros(5))  # no moving record
    running_channels(standing, path="mem", units={"speed": "km/h", "cadence": "steps/min"})
    # A slow walk (0.89 m/s at 85 steps/min, strides of 1.25 m) with one unit declared: the
    # other channel, in its default unit, shows the walk, and the file is read as declared
    kmh = running_channels(dict(enhanced_speed=np.full(5, 3.2), cadence=np.full(5, 42.5)),
                           path="mem", units={"speed": "km/h"})  # fmt: skip
    np.testing.assert_allclose(kmh["speed"], 3.2 / 3.6)
    spm = running_channels(dict(enhanced_speed=np.full(5, 0.89), cadence=np.full(5, 85.0)),
                           path="mem", units={"cadence": "steps/min"})  # fmt: skip
    np.testing.assert_allclose(spm["cadence"], 42.5)
    mph = running_channels(dict(enhanced_speed=np.full(5, 3.0), cadence=np.full(5, 55.0)),
                           path="mem", units={"speed": "mph"})  # fmt: skip
    np.testing.assert_allclose(mph["speed"], 3.0 * 0.44704)  # 1.34 m/s, 1.46 m strides
    # The walk's stride rate (42.5 strides/min) read as steps: 2.5 m strides, refused
    with pytest.raises(WearjaxFileError, match=r"is 42 steps/min, strides 2\.5 m long"):
        running_channels(dict(enhanced_speed=np.full(5, 0.89), cadence=np.full(5, 42.5)),
                         path="mem", units={"cadence": "steps/min"})  # fmt: skip
    # a run's m/s read as mph: 1.34 m/s and strides of 0.95 m, but at a runner's 85 a minute
    with pytest.raises(WearjaxFileError, match=r"1\.34 m/s .*0\.95 m long at 85 strides/min"):
        running_channels(run | dict(enhanced_speed=np.full(5, 3.0)), path="mem",
                         units={"speed": "mph"})  # fmt: skip
    # both declared on a file in m/s and strides (a folder of mixed exports): the two shrink
    # into a walk's gait (0.83 m/s, 1.2 m strides at 42.5 a minute), so neither may vouch
    # for the other, and the file is refused, as a slow walk declared both ways is too
    both = {"speed": "km/h", "cadence": "steps/min"}
    for speed in (3.0, 3.2):
        with pytest.raises(WearjaxFileError, match=r"read as km/h, .*, a walk; read as m/s"):
            fields = dict(enhanced_speed=np.full(5, speed), cadence=np.full(5, 85.0))
            running_channels(fields, path="mem", units=both)
    # without a cadence, a slow speed declared in km/h is refused as before
    with pytest.raises(WearjaxFileError, match=r"0\.78 m/s \(2\.8 km/h\), a walk; read as m/s"):
        running_channels(dict(enhanced_speed=run["enhanced_speed"]), path="mem",
                         units={"speed": "km/h"})  # fmt: skip


TCX = """<?xml version="1.0" encoding="UTF-8"?>
<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
  xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">
 <Activities>
  <Activity Sport="Biking"><Id>2021-03-24T20:00:00Z</Id><Lap><Track>
   <Trackpoint><Time>2021-03-24T20:00:00Z</Time><HeartRateBpm><Value>99</Value></HeartRateBpm>
   </Trackpoint></Track></Lap></Activity>
  <Activity Sport="Running"><Id>2021-03-24T21:40:55Z</Id><Lap StartTime="2021-03-24T21:40:55Z">
   <Track>{points}</Track></Lap></Activity>
 </Activities>
</TrainingCenterDatabase>
"""
POINT = (
    "<Trackpoint><Time>{time}</Time><AltitudeMeters>{alt}</AltitudeMeters>"
    "<DistanceMeters>{dist}</DistanceMeters><HeartRateBpm><Value>{hr}</Value></HeartRateBpm>"
    "<Extensions><ns3:TPX>{speed}<ns3:RunCadence>{cad}</ns3:RunCadence></ns3:TPX></Extensions>"
    "</Trackpoint>"
)


def _tcx(path, with_speed=True, cadence=(84, 85, 86)):
    times = ["2021-03-24T21:40:55.000Z", "2021-03-24T21:40:56.000Z", "2021-03-24T21:40:58.000Z"]
    points = "".join(
        POINT.format(
            time=t,
            alt=275.2 + i,
            dist=4.0 * i if i < 2 else 11.0,
            hr=140 + i,
            speed=f"<ns3:Speed>{3.0 + i}</ns3:Speed>" if with_speed else "",
            cad=c,
        )
        for i, (t, c) in enumerate(zip(times, cadence, strict=True))
    )
    path.write_text(TCX.format(points=points))
    return path


def test_a_multisport_tcx_gives_its_running_activity(tmp_path):
    """TCX v2 nests a brick's or duathlon's activities in a MultiSportSession."""
    text = _tcx(tmp_path / "run.tcx").read_text()
    head, rest = text.split("<Activities>")
    bike, run = rest.split("</Activities>")[0].split("</Activity>", 1)
    run = run.rsplit("</Activity>", 1)[0]
    nested = (f"{head}<Activities><MultiSportSession><Id>2021-03-24T20:00:00Z</Id>"
              f"<FirstSport>{bike}</Activity></FirstSport><NextSport>{run}</Activity></NextSport>"
              "</MultiSportSession></Activities></TrainingCenterDatabase>\n")  # fmt: skip
    (tmp_path / "brick.tcx").write_text(nested)
    (s,) = read_tcx(tmp_path / "brick.tcx", min_length_s=0)
    (want,) = read_tcx(tmp_path / "run.tcx", min_length_s=0)
    assert s.workout == "brick#2"
    np.testing.assert_array_equal(s.x, want.x)
    np.testing.assert_array_equal(s.hr, want.hr)


def test_tcx_running_activity(tmp_path):
    (s,) = read_tcx(_tcx(tmp_path / "run.tcx"), min_length_s=0)
    assert s.workout == "run#2" and s.channels == ("speed", "cadence", "altitude")
    np.testing.assert_allclose(s.hr, [140, 141, 141.5, 142])
    np.testing.assert_allclose(s.x[:, 0], [3.0, 4.0, 4.5, 5.0])
    np.testing.assert_allclose(s.x[:, 1], [84, 85, 85.5, 86])
    np.testing.assert_allclose(s.x[:, 2], [275.2, 276.2, 276.7, 277.2], rtol=1e-6)
    # Without TPX speed: distance over time, 4 m in 1 s then 7 m in 2 s, every record in the
    # others' 10 s span (`speed_from_distance`): 11 m in 3 s at each.
    (d,) = read_tcx(_tcx(tmp_path / "nospeed.tcx", with_speed=False), min_length_s=0)
    np.testing.assert_allclose(d.x[:, 0], 11.0 / 3.0, rtol=1e-6)


def test_tcx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.tcx"
    bad.write_text("<TrainingCenterDatabase><Activities>")
    with pytest.raises(WearjaxFileError, match=r"bad\.tcx: not valid XML"):
        read_tcx(bad)
    gpx = tmp_path / "route.tcx"
    gpx.write_text("<gpx><trk/></gpx>")
    with pytest.raises(WearjaxFileError, match=r"route\.tcx: not a TCX file"):
        read_tcx(gpx)
    ride = tmp_path / "ride.tcx"
    ride.write_text(TCX.format(points="").replace('"Running"', '"Other"'))
    with pytest.raises(WearjaxFileError, match=r"ride\.tcx: no running activity.*Biking, Other"):
        read_tcx(ride)
    steps = _tcx(tmp_path / "steps.tcx", cadence=(168, 170, 172))
    with pytest.raises(WearjaxFileError, match=r"steps\.tcx: median cadence 170.*steps/min"):
        read_tcx(steps)
    (s,) = read_tcx(steps, cadence_unit="steps/min", min_length_s=0)
    np.testing.assert_allclose(s.x[:, 1], [84, 85, 85.5, 86])


def test_tcx_times_that_cannot_be_read_are_named(tmp_path, caplog):
    """Unreadable trackpoint times were dropped without a word (a 1680-point run read as
    600 s): all of them refuse the file naming one, some are counted in a warning."""
    good = _tcx(tmp_path / "run.tcx").read_text()
    one = tmp_path / "one.tcx"
    one.write_text(good.replace("2021-03-24T21:40:56.000Z", "24/03/2021 21:40:56"))
    with caplog.at_level("WARNING", logger="wearjax.data.tcx"):
        (s,) = read_tcx(one, min_length_s=0)
    assert s.length == 4 and "1 points dropped: time unreadable (e.g. '24/03/2021" in caplog.text
    every = tmp_path / "every.tcx"
    every.write_text(good.replace("2021-03-24T", "24.03.2021 "))
    with pytest.raises(WearjaxFileError, match=r"every\.tcx: no point's time is readable \(e\.g\."):
        read_tcx(every, min_length_s=0)


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_a_speed_in_mph_or_a_distance_in_km_read_as_metric_is_refused_naming_the_unit(tmp_path):
    """A 9 min/mile run exported in mph (6.7) read as m/s: strides 4.7 m at 85 strides/min;
    a distance in km: a speed of 0.003 m/s. Until 2026-12-07 both were kept: the only check
    was a median over 8 m/s."""
    header = ["timestamp", "heart_rate", "speed", "cadence"]
    stamp = lambda t: f"2021-03-24 21:{40 + t // 60:02d}:{t % 60:02d}+00:00"  # noqa: E731
    rows = [[stamp(t), 150, 6.7, 85] for t in range(600)]
    path = _write_csv(tmp_path / "mph.csv", header, rows)
    with pytest.raises(WearjaxFileError, match=r"mph\.csv: a median 6\.70 m/s at 85 strides/min "
                       r"makes strides 4\.7 m long.*--speed-unit mph"):  # fmt: skip
        read_running_csv(path)
    s = read_running_csv(path, units={"speed": "mph"})
    np.testing.assert_allclose(s.x[:, 0], 6.7 * 0.44704, rtol=1e-6)
    elite = [[stamp(t), 170, 5.7, 93] for t in range(600)]  # a marathon record's pace: kept
    read_running_csv(_write_csv(tmp_path / "elite.csv", header, elite))
    km = [[stamp(t), 150, 0.003 * t, 85] for t in range(600)]
    path = _write_csv(tmp_path / "km.csv", ["timestamp", "heart_rate", "distance", "cadence"], km)
    with pytest.raises(WearjaxFileError, match=r"km\.csv: median moving speed is 0\.003 m/s .* "
                       r"distance in km read as metres.*in metres"):  # fmt: skip
        read_running_csv(path)


def test_running_csv_units_and_missing_values(tmp_path):
    header = ["", "timestamp", "heart_rate", "speed", "cadence", "stance_time", "power"]
    rows = [
        [0, "2021-03-24 21:40:55+00:00", 150, 10.8, 170, 250, 21],
        [1, "2021-03-24 21:40:56+00:00", 0, 12.6, "", 250, 21],
        [2, "2021-03-24 21:40:57+00:00", "", 14.4, 174, "", 21],
    ]
    path = _write_csv(tmp_path / "run.csv", header, rows)
    s = read_running_csv(path, units={"speed": "km/h", "cadence": "steps/min"}, min_length_s=0)
    assert s.channels == ("speed", "cadence", "stance_time_percent")
    np.testing.assert_allclose(s.x[:, 0], [3.0, 3.5, 4.0], rtol=1e-6)
    np.testing.assert_allclose(s.x[:, 1], [85, 86, 87])
    # Stance time needs the same record's cadence: the record at 1 s has none.
    np.testing.assert_allclose(s.x[:, 2], [250 * 85 / 600, np.nan, np.nan], rtol=1e-6)
    np.testing.assert_array_equal(s.mask, [1, 0, 0])
    with pytest.raises(WearjaxFileError, match=r"run\.csv: median cadence 172.*steps/min"):
        read_running_csv(path, units={"speed": "km/h"})
    with pytest.raises(WearjaxFileError, match=r"run\.csv: unknown unit 'spm' for cadence"):
        read_running_csv(path, units={"cadence": "spm"})
    # speed from a distance column is metres over seconds: a folder's --speed-unit km/h (for
    # its files with speed) divided it by 3.6 too
    rows = [[t, f"2021-03-24 21:40:{55 + t:02d}+00:00", 150, 3.0 * t, 85] for t in range(4)]
    header = ["", "timestamp", "heart_rate", "distance", "cadence"]
    path = _write_csv(tmp_path / "dist.csv", header, rows)
    s = read_running_csv(path, units={"speed": "km/h"}, min_length_s=0)
    np.testing.assert_allclose(s.x[1:, s.channels.index("speed")], 3.0, rtol=1e-6)


def test_running_csv_columns_match_whatever_their_case_or_separator(tmp_path):
    """`Heart_Rate` is `heart_rate`; a `;`-separated export with decimal commas reads as the
    comma file; two columns that differ only in case are refused."""
    rows = [[t, 120 + t % 5, 3.1 + 0.01 * (t % 3), 85] for t in range(90)]
    names = ["timestamp", "heart_rate", "speed", "cadence"]
    want = read_running_csv(_write_csv(tmp_path / "a.csv", names, rows))
    upper = ["Timestamp", "Heart_Rate", "Speed", "CADENCE"]
    semi = tmp_path / "c.csv"
    semi.write_text("\n".join([";".join(names)] + [";".join(str(v).replace(".", ",") for v in r)
                                                    for r in rows]))  # fmt: skip
    for got in (read_running_csv(_write_csv(tmp_path / "b.csv", upper, rows)), read_csv(semi)):
        assert got.channels == want.channels == ("speed", "cadence")
        np.testing.assert_array_equal(got.hr, want.hr)
        np.testing.assert_array_equal(got.x, want.x)
    twice = _write_csv(tmp_path / "d.csv", [*names, "Heart_Rate"], [[*r, 1] for r in rows])
    with pytest.raises(WearjaxFileError, match=r"d\.csv: two columns are named 'heart_rate'"):
        read_running_csv(twice)


def test_csv_errors_name_the_file(tmp_path):
    no_time = _write_csv(tmp_path / "no_time.csv", ["time_s", "heart_rate"], [[0, 120]])
    with pytest.raises(WearjaxFileError, match=r"no_time\.csv: missing required columns"):
        read_running_csv(no_time)
    unknown = _write_csv(tmp_path / "unknown.csv", ["timestamp", "watts"], [[0, 200]])
    with pytest.raises(WearjaxFileError, match=r"unknown\.csv: no heart rate or running column"):
        read_running_csv(unknown)
    bad = _write_csv(tmp_path / "bad.csv", ["timestamp", "heart_rate"], [[0, 120], [1, "high"]])
    with pytest.raises(WearjaxFileError, match=r"bad\.csv: line 3, column 'heart_rate'"):
        read_running_csv(bad)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(WearjaxFileError, match=r"empty\.csv: the file is empty"):
        read_csv(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(WearjaxFileError, match=r"binary\.csv: not a text CSV"):
        read_csv(binary)
    no_hr = _write_csv(tmp_path / "no_hr.csv", ["timestamp", "speed"], [[0, 3.0], [1, 3.0]])
    assert read_csv(no_hr, min_length_s=0).channels == ("speed",)
    with pytest.raises(WearjaxFileError, match=r"no_hr\.csv: .*no heart rate"):
        read_csv(no_hr, require_hr=True, min_length_s=0)


RUN_HEADER = ["timestamp", "heart_rate", "enhanced_speed"]


def _run_rows(seconds, hr=140.0, speed=3.0, t0=1_600_000_000):
    return [[t0 + t, hr, speed] for t in range(seconds)]


def test_timestamps_backwards_equal_or_too_short_are_refused(tmp_path):
    def refused(name, rows, message):
        path = _write_csv(tmp_path / name, RUN_HEADER, rows)
        with pytest.raises(WearjaxFileError, match=message) as err:
            read_running_csv(path)
        assert "\n" not in str(err.value)

    rows = _run_rows(120)
    back = r"timestamps are not increasing: {} of {} steps between records go backwards; sort "
    refused("reversed.csv", rows[::-1], r"reversed\.csv: " + back.format(119, 119))
    # Mostly backwards: blocks of 3 rows in order, the blocks newest first.
    blocks = [row for k in range(117, -1, -3) for row in rows[k : k + 3]]
    refused("blocks.csv", blocks, r"blocks\.csv: " + back.format(39, 119) + "the rows by time")
    same = [[rows[0][0], 140, 3.0]] * 100
    refused(
        "same.csv", same, r"same\.csv: the recording spans 1 s \(100 records\); need at least 60"
    )
    refused(
        "one.csv", rows[:1], r"one\.csv: the recording spans 1 s \(1 record\); need at least 60"
    )
    refused("short.csv", rows[:30], r"short\.csv: the recording spans 30 s \(30 records\); need")
    # A clock stepping back once still reads: the records it steps back over are dropped.
    once = rows[:60] + rows[50:]
    s = read_running_csv(_write_csv(tmp_path / "once.csv", RUN_HEADER, once))
    assert s.length == 120 and s.mask.all()
    assert dict(s.metadata)["records_out_of_order"] == "9"  # the repeated 59 s is kept
    # One record a GPS glitch dates 20 min ahead costs that record, not every record after it
    # (they were all dropped, and the session padded to the glitch's time)
    glitch = [list(r) for r in rows]
    glitch[40][0] = rows[0][0] + 1240
    s = read_running_csv(_write_csv(tmp_path / "glitch.csv", RUN_HEADER, glitch))
    assert s.length == 120 and dict(s.metadata)["records_out_of_order"] == "1"
    assert s.mask.all()  # its second is filled across the 2 s gap, as any short gap
    assert read_running_csv(tmp_path / "short.csv", min_length_s=30).length == 30


def test_heart_rates_out_of_range_are_masked_counted_and_logged(tmp_path, caplog):
    """Logged at INFO: the session's metadata carries the count, which the CLI prints once
    (a warning reached its terminal a second time)."""
    rows = _run_rows(100)
    for k, hr in ((10, 24), (11, 25), (20, 0), (30, 250), (31, 251), (40, 300)):
        rows[k][1] = hr
    path = _write_csv(tmp_path / "hr.csv", RUN_HEADER, rows)
    with caplog.at_level("INFO", logger="wearjax.data.readers"):
        s = read_running_csv(path)
    assert np.flatnonzero(~s.mask).tolist() == [10, 20, 31, 40]
    assert s.hr[11] == 25 and s.hr[30] == 250
    assert dict(s.metadata) == {"start_time_s": "1600000000.0", "hr_out_of_range": "4"}
    (record,) = caplog.records
    assert record.levelname == "INFO"
    message = record.getMessage()
    assert str(path) in message and "4 heart rates outside 25-250 bpm are masked" in message
    ok = _write_csv(tmp_path / "ok.csv", RUN_HEADER, _run_rows(60))
    assert read_running_csv(ok).metadata == (("start_time_s", "1600000000.0"),)
    assert read_running_csv(ok).start_time_s == 1_600_000_000  # second 0 on the file's clock


def test_negative_speed_and_speed_in_km_per_h_are_refused(tmp_path):
    rows = _run_rows(100)
    rows[5][2] = -1.5
    negative = _write_csv(tmp_path / "neg.csv", RUN_HEADER, rows)
    with pytest.raises(WearjaxFileError, match=r"neg\.csv: field 'enhanced_speed' has 1 negative "
                       r"speeds \(lowest -1\.5\); speed cannot be negative"):  # fmt: skip
        read_running_csv(negative)
    kmh = _write_csv(tmp_path / "kmh.csv", RUN_HEADER, _run_rows(100, speed=14.4))
    message = (
        r"kmh\.csv: median speed while moving is 14\.4 m/s \(52 km/h\), faster than any runner "
        r"\(above 8 m/s\): it looks like km/h; export speed in m/s, or read the file with "
        r'units=\{"speed": "km/h"\}'
    )
    with pytest.raises(WearjaxFileError, match=message):
        read_running_csv(kmh)
    np.testing.assert_allclose(read_running_csv(kmh, units={"speed": "km/h"}).x[:, 0], 4.0)
    # Standing still (speed 0) before and after does not hide the unit.
    rows = _run_rows(100, speed=14.4)
    for row in rows[:30] + rows[-30:]:
        row[2] = 0.0
    with pytest.raises(WearjaxFileError, match=r"stops\.csv: median speed while moving is 14\.4"):
        read_running_csv(_write_csv(tmp_path / "stops.csv", RUN_HEADER, rows))


CPET_HEADER = ["", "time", "VO2_I", "VCO2_I", "HR_I", "age", "height", "weight", "gender"]


def test_cpet_csv(tmp_path):
    rows = [[i, float(i), 1000 + 100 * i, 900, 100 + i, 32, 174, 88, -1] for i in range(4)]
    rows[2][4] = 0  # a zero HR is missing
    path = _write_csv(tmp_path / "ramp.csv", CPET_HEADER, rows)
    s = read_csv(path, min_length_s=0)
    assert s.channels == () and s.x.shape == (4, 0) and s.runner == "ramp"
    np.testing.assert_array_equal(s.vo2, [1000, 1100, 1200, 1300])
    np.testing.assert_array_equal(s.mask, [1, 1, 0, 1])
    assert s.vo2_mask.all()
    np.testing.assert_allclose(s.subject, [1.74, 88, 32, 1.0], rtol=1e-6)
    # an analyser warming up exports VO2 0: no reading, and the test starts at its first VO2
    # (0 mL/min used to be the value the model was given, and a MAPE denominator)
    warm = [[i, float(i), 0 if i < 2 else 1000 + 100 * i, 900, 100 + i, 32, 174, 88, -1]
            for i in range(6)]  # fmt: skip
    s = read_csv(_write_csv(tmp_path / "warm.csv", CPET_HEADER, warm), min_length_s=0)
    np.testing.assert_array_equal(s.vo2, [1200, 1300, 1400, 1500])
    np.testing.assert_array_equal(s.hr, [102, 103, 104, 105])
    # the same test saved as UTF-16 (Excel's "Unicode Text") is read as a CPET test too: its
    # header was looked for in the raw bytes, and it went to the running reader
    utf16 = tmp_path / "ramp16.csv"
    utf16.write_bytes((tmp_path / "ramp.csv").read_text().encode("utf-16"))
    np.testing.assert_array_equal(read_csv(utf16, min_length_s=0).vo2, [1000, 1100, 1200, 1300])
    # VO2_I in L/min: every value under the floor read as missing, a test with no VO2, silently
    litres = [[i, float(i), 1.0 + 0.1 * i, 900, 100 + i, 32, 174, 88, -1] for i in range(4)]
    with pytest.raises(WearjaxFileError, match=r"L\.csv: VO2_I reads under 50 throughout \(median "
                       r"1\.15\): L/min"):  # fmt: skip
        read_csv(_write_csv(tmp_path / "L.csv", CPET_HEADER, litres), min_length_s=0)
    missing = _write_csv(tmp_path / "novo2.csv", ["time", "HR_I", "VO2"], [[0, 100, 1000]])
    with pytest.raises(WearjaxFileError, match=r"novo2\.csv: missing required columns \['VO2_I'\]"):
        read_cpet_csv(missing)


def _pyoxynet_tests() -> list[Path]:
    spec = importlib.util.find_spec("pyoxynet")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data_test"
    return sorted(folder.glob("*_real_test_*.csv"))


@pytest.mark.skipif(not _pyoxynet_tests(), reason="pyoxynet (the `data` extra) is not installed")
def test_real_cpet_files():
    for path in _pyoxynet_tests()[::10]:
        s = read_cpet_csv(path)
        assert s.vo2_mask.all() and 100 < np.median(s.vo2) < 6000
        assert not s.mask.any() or 40 <= np.min(s.hr[s.mask]) <= np.max(s.hr[s.mask]) <= 220


def _raw_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(
    not RUNNING_CSV.is_dir(), reason=f"real running data not found at {RUNNING_CSV}"
)
def test_real_running_csvs(tmp_path):
    sessions, skipped = load_folder(RUNNING_CSV, cache_dir=tmp_path, require_hr=True)
    assert [s.path.name for s in skipped] == ["LICENSE"]
    assert len(sessions) == 53 and {s.runner for s in sessions} == {"running-csv"}
    for s in sessions:
        assert s.channels == ("speed", "cadence", "altitude")
        rows = _raw_rows(s.source)
        times = [datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows]
        assert s.length == times[-1] - times[0] + 1 and 1679 <= s.length <= 6400
        first = rows[0]
        expected = [
            float(first["enhanced_speed"]),
            float(first["cadence"]) + float(first["fractional_cadence"]),
            float(first["enhanced_altitude"]),
        ]
        np.testing.assert_allclose(s.x[0], expected, rtol=1e-6)
        assert s.hr[0] == float(first["heart_rate"])
        hr = s.hr[s.mask]
        assert s.mask.mean() > 0.9 and 40 <= hr.min() and hr.max() <= 220
        speed = s.x[:, 0]
        assert 0 <= np.nanmin(speed) and np.nanmax(speed) <= 8
        assert 1.5 < np.nanmedian(speed) < 6
        assert 60 < np.nanmedian(s.x[:, 1]) < 100  # strides/min
    # A 220 s pause in this run, standing (the distance did not advance): HR masked, speed and
    # cadence 0, altitude held at its value before it.
    (s,) = [s for s in sessions if s.workout == "RUN_2021-07-21-09-57-29.fit"]
    step = np.flatnonzero(np.diff(s.mask.astype(int)) == -1)
    assert step.size == 1 and np.sum(~s.mask) == 219
    gap = slice(step[0] + 1, step[0] + 220)
    assert np.all(s.x[gap, :2] == 0) and np.all(s.x[gap, 2] == s.x[step[0], 2])
    # Every pause of these runs over 10 s is a stop: 7 of them in 6 runs, 376 s inside them.
    stopped = {s.workout: int(dict(s.metadata).get("stopped_s", 0)) for s in sessions}
    assert sum(v > 0 for v in stopped.values()) == 6 and sum(stopped.values()) == 376


def test_a_blank_start_of_altitude_is_held_at_the_first_reading_and_the_gain_starts_at_zero(
    tmp_path,
):
    """The gain is counted from the runner's first altitude: 5 blank seconds at the start of
    a run at 312 m leave the gain that of the same run without them, not 312 m throughout."""
    from wearjax.data.types import stack_sessions
    from wearjax.tasks.hr import model_features

    header = RUN_HEADER + ["enhanced_altitude"]
    rows = [r + [312.0 + 0.1 * t] for t, r in enumerate(_run_rows(120))]
    blank = [r[:-1] + [""] if t < 5 else r for t, r in enumerate(rows)]
    gains = []
    for name, table in (("whole.csv", rows), ("blank.csv", blank)):
        s = read_running_csv(_write_csv(tmp_path / name, header, table))
        features, names = model_features(stack_sessions([s], bucket=60))
        gains.append(np.asarray(features[0, :120, names.index("altitude_gain_m")]))
    np.testing.assert_allclose(gains[1][5:], gains[0][5:] - 0.5, atol=1e-4)  # from 312.5 m
    np.testing.assert_allclose(gains[1][:5], 0.0)


def test_with_require_hr_a_part_without_hr_is_left_out_and_the_others_kept(tmp_path, caplog):
    """Two running activities in one TCX, the second recorded without the strap: with
    `require_hr` the first is read and the second left out with a warning naming it, by the
    reader and by a folder load (what `cv hr` uses)."""
    from datetime import timedelta

    def points(start: str, hr: bool) -> str:
        t0 = datetime.fromisoformat(start)
        point = (
            POINT if hr else POINT.replace("<HeartRateBpm><Value>{hr}</Value></HeartRateBpm>", "")
        )
        return "".join(
            point.format(
                time=(t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                alt=275.0,
                dist=3.0 * i,
                hr=140,
                speed="",
                cad=85,
            )  # fmt: skip
            for i in range(90)
        )

    second = (
        '<Activity Sport="Running"><Id>2021-03-25T08:00:00Z</Id><Lap StartTime='
        f'"2021-03-25T08:00:00Z"><Track>{points("2021-03-25T08:00:00+00:00", False)}'
        "</Track></Lap></Activity>\n </Activities>"
    )
    text = TCX.format(points=points("2021-03-24T21:40:55+00:00", True))
    folder = tmp_path / "runs"
    folder.mkdir()
    path = folder / "two.tcx"
    path.write_text(text.replace(" </Activities>", second))
    assert len(read_tcx(path)) == 2
    with caplog.at_level("WARNING"):
        (s,) = read_tcx(path, require_hr=True)
        assert s.mask.any() and "left out" in caplog.text and "has no heart rate" in caplog.text
        caplog.clear()
        sessions, skipped = load_folder(folder, require_hr=True, cache_dir=tmp_path / "cache")
    assert len(sessions) == 1 and sessions[0].mask.any() and skipped == []
    assert "left out part" in caplog.text


def test_a_pause_of_hours_or_times_in_milliseconds_are_refused_with_the_fix(tmp_path):
    rows = _run_rows(120)
    apart = rows[:60] + [[t + 20 * 3600, h, v] for t, h, v in rows[60:]]
    path = _write_csv(tmp_path / "two_runs.csv", RUN_HEADER, apart)
    with pytest.raises(WearjaxFileError, match=r"two_runs\.csv: records 60 and 61 .* are 20 h "
                       r"apart, longer than a pause of 1 h; split the file there"):  # fmt: skip
        read_running_csv(path)
    ms = [[1_600_000_000_000 + 1000 * t, h, v] for t, (_, h, v) in enumerate(rows)]
    path = _write_csv(tmp_path / "epoch_ms.csv", RUN_HEADER, ms)
    with pytest.raises(WearjaxFileError, match=r"epoch_ms\.csv: records are a median 1000 s "
                       r"apart, .*; the times look like milliseconds"):  # fmt: skip
        read_running_csv(path)


def test_a_run_with_distance_and_an_empty_speed_column_takes_speed_from_distance(tmp_path):
    """A treadmill or GPS-less run: TCX took speed from distance, a CSV with an empty speed
    column (and FIT) did not, and in a folder the one file without speed took the channel away
    from every session."""
    rows = [[t, f"2021-03-24 21:40:{55 + t:02d}+00:00", 150, "", 3.0 * t, 85] for t in range(4)]
    header = ["", "timestamp", "heart_rate", "enhanced_speed", "distance", "cadence"]
    s = read_running_csv(_write_csv(tmp_path / "treadmill.csv", header, rows), min_length_s=0)
    assert "speed" in s.channels
    np.testing.assert_allclose(s.x[1:, s.channels.index("speed")], 3.0, rtol=1e-6)


def test_records_kept_in_time_order_are_a_longest_ordered_run():
    """`in_time_order` against brute force on small arrays with ties and NaN: the kept
    timestamps are in order, none is NaN, and no ordered subsequence is longer."""
    import itertools

    from wearjax.data.validate import in_time_order

    rng = np.random.default_rng(0)
    for _ in range(300):
        t = rng.integers(0, 6, rng.integers(1, 9)).astype(float)
        t[rng.random(t.size) < 0.15] = np.nan
        keep = in_time_order(t)
        kept = t[keep]
        assert not np.isnan(kept).any() and np.all(np.diff(kept) >= 0)
        finite = t[np.isfinite(t)]
        best = max(
            (
                len(c)
                for n in range(finite.size + 1)
                for c in itertools.combinations(finite, n)
                if np.all(np.diff(c) >= 0)
            ),  # fmt: skip
            default=0,
        )
        assert keep.sum() == best, t


def _span_speed_loop(t, d, span_s):
    """`speed_from_distance` for records in time order, written as a float64 loop: per record,
    the first and last records within half the span either side (the first time's last
    record), unless none is at another time or the distance falls between them; then the
    change since the previous time's last record."""
    out = np.full(len(t), np.nan)
    for k in range(len(t)):
        inside = [j for j in range(len(t)) if abs(t[j] - t[k]) <= span_s / 2]
        i0 = max(j for j in range(len(t)) if t[j] == t[inside[0]])
        i1 = inside[-1]
        if t[i1] == t[i0] or any(d[j + 1] < d[j] for j in range(i0, i1)):
            earlier = [j for j in range(len(t)) if t[j] < t[k]]
            if not earlier:
                continue
            i0, i1 = earlier[-1], max(j for j in range(len(t)) if t[j] == t[k])
        if d[i1] >= d[i0]:
            out[k] = (d[i1] - d[i0]) / (t[i1] - t[i0])
    return out


def test_speed_from_distance_is_a_centred_difference_over_its_span():
    """Against the loop on irregular times with ties, pauses, sparse records and distances
    that go back; a reset, a glitched timestamp and points sharing a second cost one record,
    not the speed around them; GPS jitter of 1.5 m per fix on a steady 3 m/s (the path length
    through the fixes) leaves a fifth of the noise the change per second carries."""
    from wearjax.data.channels import SPEED_SPAN_S, speed_from_distance

    rng = np.random.default_rng(4)
    for _ in range(50):
        steps = rng.choice([0.0, 1.0, 1.0, 2.0, 7.0, 40.0], size=rng.integers(2, 40))
        t = np.cumsum(steps)
        d = np.cumsum(rng.uniform(-1, 10, t.size))  # now and then a distance that goes back
        for span in (0.0, 4.0, SPEED_SPAN_S):
            np.testing.assert_allclose(
                speed_from_distance(t, d, span_s=span), _span_speed_loop(t, d, span), rtol=1e-12
            )  # NaN where the loop has NaN
    t = np.arange(30.0)
    for reset in (3.0 * t - 20.0 * (t >= 15), 3.0 * (t - 15.0 * (t >= 15))):
        v = speed_from_distance(t, reset)
        assert np.isnan(v[15]) and np.allclose(np.delete(v, 15), 3.0)
    two_hz = np.repeat(np.arange(20.0), 2)
    two_hz[30] = 5.0  # one point dated 10 s back: dropped, as the readers drop it
    v = speed_from_distance(two_hz, 1.5 * np.arange(40.0))
    assert np.isnan(v[30]) and np.allclose(np.delete(v, 30), 3.0)
    t = np.arange(2000.0)
    north, east = 3.0 * t + rng.normal(0, 1.5, t.size), rng.normal(0, 1.5, t.size)
    d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(north), np.diff(east)))])
    glitch = t.copy()
    glitch[1000] -= 0.5
    for times in (t, glitch):
        assert np.nanstd(speed_from_distance(times, d)) < 0.25 * np.std(np.diff(d))
    for bad in (-4.0, np.nan):
        with pytest.raises(ValueError, match="span_s"):
            speed_from_distance(t, d, span_s=bad)


def test_an_unreadable_cell_names_its_line_in_the_file_after_blank_lines(tmp_path):
    """Blank lines are skipped when reading, but the line an error names is the one a user
    sees in an editor (until 2026-12-07 it counted rows, two short here), for the running
    CSV, sampled-signal and CPET readers alike, a units row under the header included."""
    from wearjax.data.cpet import read_cpet
    from wearjax.data.sampled import read_sampled

    def fails(name, text, reader, message):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(WearjaxFileError, match=message):
            reader(path)

    fails("run.csv", "timestamp,heart_rate\n\n0,120\n\n1,high\n", read_running_csv,
          r"run\.csv: line 5, column 'heart_rate'")  # fmt: skip
    fails("wrist.csv", "time,ppg\n0,1\n\n\n0.5,x\n", read_sampled,
          r"wrist\.csv: line 5, column 'ppg': cannot read 'x'")  # fmt: skip
    cpet = "time,VO2,HR\ns,mL/min,bpm\n\n" + "".join(f"{s},1500,{120 + s}\n" for s in range(5))
    fails("ann.csv", cpet + "\n5,1500,n/a\n", read_cpet, r"line 10, column 'HR': cannot")
