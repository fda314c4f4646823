"""FIT reading: files written here with an independent encoder (fit-tool), decoded by the
vendor's SDK through `read_fit`, checked against hand-computed values."""

import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("garmin_fit_sdk", reason="FIT reading needs the `data` extra")
pytest.importorskip("fit_tool", reason="writing test FIT files needs fit-tool (`test` extra)")

from fit_tool.fit_file_builder import FitFileBuilder  # noqa: E402
from fit_tool.profile.messages.file_id_message import FileIdMessage  # noqa: E402
from fit_tool.profile.messages.record_message import RecordMessage  # noqa: E402
from fit_tool.profile.messages.session_message import SessionMessage  # noqa: E402
from fit_tool.profile.messages.user_profile_message import UserProfileMessage  # noqa: E402
from fit_tool.profile.profile_type import FileType, Gender, Manufacturer, Sport  # noqa: E402

from wearjax.data.garmin_fit import read_fit  # noqa: E402
from wearjax.errors import WearjaxFileError  # noqa: E402

T0_MS = 1_600_000_000_000  # 2020-09-13 12:26:40 UTC, in fit-tool's milliseconds since 1970


def write_fit(path, records, sessions=(), profile=None):
    """A FIT activity: `records` are dicts of record fields with `t` (s after T0); `sessions`
    are (sport, start s, end s); `profile` holds user_profile fields."""
    builder = FitFileBuilder(auto_define=True)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.GARMIN.value
    file_id.product = 0
    file_id.serial_number = 1
    file_id.time_created = T0_MS
    builder.add(file_id)
    if profile:
        user = UserProfileMessage()
        for name, value in profile.items():
            setattr(user, name, value)
        builder.add(user)
    for fields in records:
        record = RecordMessage()
        record.timestamp = T0_MS + round(1000 * fields["t"])
        for name, value in fields.items():
            if name != "t":
                setattr(record, name, value)
        builder.add(record)
    for sport, start, end in sessions:
        session = SessionMessage()
        session.timestamp = T0_MS + 1000 * end
        session.start_time = T0_MS + 1000 * start
        session.total_elapsed_time = float(end - start)
        session.sport = sport
        builder.add(session)
    path = Path(path)
    path.write_bytes(builder.build().to_bytes())
    return path


RUN = [(Sport.RUNNING, 0, 3600)]


def _channel(session, name):
    return np.asarray(session.x[:, session.channels.index(name)])


def read_short(path, **kwargs):
    """`read_fit` of the files written here, seconds long: the 60 s minimum session length is
    tested in `test_readers` (`MIN_LENGTH_S`)."""
    return read_fit(path, min_length_s=0, **kwargs)


def test_plain_and_enhanced_speed_and_altitude(tmp_path):
    plain = [dict(t=t, heart_rate=120, speed=3.0, altitude=100.0) for t in range(3)]
    enhanced = [
        dict(t=t, heart_rate=120, enhanced_speed=3.25, enhanced_altitude=1234.4)
        for t in range(3, 6)
    ]
    (s,) = read_short(write_fit(tmp_path / "a.fit", plain + enhanced, RUN))
    assert s.channels == ("speed", "altitude")
    np.testing.assert_allclose(_channel(s, "speed"), [3.0] * 3 + [3.25] * 3, rtol=1e-6)
    np.testing.assert_allclose(_channel(s, "altitude"), [100.0] * 3 + [1234.4] * 3, rtol=1e-6)
    np.testing.assert_array_equal(s.hr, [120] * 6)
    assert s.mask.all() and not s.vo2_mask.any() and np.isnan(s.vo2).all()
    assert s.start_time_s == T0_MS / 1000  # Unix time, as from TCX and CSV (not FIT's epoch)


def test_fit_files_without_the_sdk_are_one_file_error(tmp_path, monkeypatch):
    """Without the data extra a FIT file raised ImportError: a traceback, and a folder of CSVs
    with one FIT file among them failed whole instead of skipping it."""
    import sys

    path = write_fit(tmp_path / "a.fit", [dict(t=0, heart_rate=120, speed=3.0)], RUN)
    monkeypatch.setitem(sys.modules, "garmin_fit_sdk", None)
    with pytest.raises(WearjaxFileError, match=r"a\.fit: reading FIT files needs Garmin's SDK"):
        read_fit(path)


def test_running_dynamics_fields_in_canonical_units(tmp_path):
    ms = dict(heart_rate=150, cadence=85, fractional_cadence=0.5, stance_time=250.0)
    dynamics = dict(vertical_ratio=7.5, vertical_oscillation=85.3, step_length=1100.0)
    records = [dict(t=0, **ms, **dynamics), dict(t=1, **ms, **dynamics)]
    records.append(dict(t=2, heart_rate=150, cadence=90, stance_time_percent=33.0, **dynamics))
    path = write_fit(tmp_path / "dyn.fit", records, RUN)
    (s,) = read_short(path, runner="ada")
    assert s.channels == (
        "cadence",
        "vertical_oscillation",
        "stance_time_percent",
        "vertical_ratio",
        "step_length",
    )
    np.testing.assert_allclose(_channel(s, "cadence"), [85.5, 85.5, 90.0])
    # 250 ms of a stride of 60000 / 85.5 ms: 250 * 85.5 / 600 = 35.625 %
    np.testing.assert_allclose(_channel(s, "stance_time_percent"), [35.625, 35.625, 33.0])
    np.testing.assert_allclose(_channel(s, "vertical_ratio"), [7.5] * 3)
    np.testing.assert_allclose(_channel(s, "vertical_oscillation"), [85.3] * 3, rtol=1e-6)
    np.testing.assert_allclose(_channel(s, "step_length"), [1100.0] * 3)
    assert (s.runner, s.workout, s.source) == ("ada", "dyn", str(path))


def test_duplicate_and_backward_timestamps(tmp_path):
    times = [0, 1, 2, 2, 3, 1, 4, 5]
    hrs = [100, 101, 102, 106, 103, 150, 104, 105]
    speeds = [3.0, 3.0, 3.0, 4.0, 3.0, 9.0, 3.0, 3.0]
    records = [
        dict(t=t, heart_rate=h, enhanced_speed=v)
        for t, h, v in zip(times, hrs, speeds, strict=True)
    ]
    (s,) = read_short(write_fit(tmp_path / "dup.fit", records, RUN))
    # The two records at 2 s are averaged; the one stepping back to 1 s after 3 s is dropped.
    np.testing.assert_array_equal(s.hr, [100, 101, 104, 103, 104, 105])
    np.testing.assert_allclose(_channel(s, "speed"), [3.0, 3.0, 3.5, 3.0, 3.0, 3.0])


def test_pause_is_masked_and_held_short_gap_interpolated(tmp_path):
    before = [dict(t=t, heart_rate=120 + t, enhanced_speed=3.0) for t in range(5)]
    short = [dict(t=8, heart_rate=130, enhanced_speed=6.0)]  # 4 s after t=4: interpolated
    after = [dict(t=t, heart_rate=100, enhanced_speed=2.0) for t in range(30, 33)]  # pause
    (s,) = read_short(write_fit(tmp_path / "pause.fit", before + short + after, RUN))
    assert s.length == 33
    np.testing.assert_allclose(s.hr[4:9], [124, 125.5, 127, 128.5, 130])
    np.testing.assert_allclose(_channel(s, "speed")[4:9], [3.0, 3.75, 4.5, 5.25, 6.0])
    assert s.mask[:9].all() and not s.mask[9:30].any() and s.mask[30:].all()
    assert np.isnan(s.hr[9:30]).all()
    # Channels hold their last value through the 22 s pause: nothing is interpolated across it.
    np.testing.assert_array_equal(_channel(s, "speed")[9:30], 6.0)
    np.testing.assert_array_equal(_channel(s, "speed")[30:], 2.0)


def test_missing_hr_and_sentinels_are_masked(tmp_path):
    hrs = [120, None, 0, 255, 124, 125]
    records = [
        dict(t=t, enhanced_speed=3.0, **({} if h is None else {"heart_rate": h}))
        for t, h in enumerate(hrs)
    ]
    records.append(dict(t=8, heart_rate=128, enhanced_speed=3.0))  # no records at 6 and 7 s
    path = write_fit(tmp_path / "hr.fit", records, RUN)
    (s,) = read_short(path)
    np.testing.assert_array_equal(s.mask, [1, 0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(s.hr[s.mask], [120, 124, 125, 126, 127, 128])
    no_hr = write_fit(
        tmp_path / "no_hr.fit", [dict(t=t, enhanced_speed=3.0) for t in range(4)], RUN
    )
    (s,) = read_short(no_hr)
    assert not s.mask.any()
    with pytest.raises(WearjaxFileError, match=r"no_hr\.fit.*no heart rate"):
        read_short(no_hr, require_hr=True)


def test_multisport_keeps_running_sessions(tmp_path):
    records = [dict(t=t, heart_rate=100 + t, enhanced_speed=3.0) for t in range(15)]
    sessions = [(Sport.RUNNING, 0, 4), (Sport.CYCLING, 5, 9), (Sport.RUNNING, 10, 14)]
    profile = dict(height=1.8, weight=70.5, age=33, gender=Gender.MALE)
    first, second = read_short(write_fit(tmp_path / "multi.fit", records, sessions, profile))
    assert (first.workout, second.workout) == ("multi#1", "multi#3")
    np.testing.assert_array_equal(first.hr, [100, 101, 102, 103, 104])
    np.testing.assert_array_equal(second.hr, [110, 111, 112, 113, 114])
    np.testing.assert_allclose(first.subject, [1.8, 70.5, 33.0, 1.0], rtol=1e-6)


def test_a_record_on_the_boundary_of_two_sessions_is_the_later_ones(tmp_path):
    """Sessions 0-6 s and 6-11 s: the record at 6 s starts the second and is not in the first
    too (until 2026-12-07 both held it); a session's last record is its own when no other
    session starts there (the first multisport test)."""
    records = [dict(t=t, heart_rate=100 + t, enhanced_speed=3.0) for t in range(12)]
    sessions = [(Sport.RUNNING, 0, 6), (Sport.RUNNING, 6, 11)]
    first, second = read_short(write_fit(tmp_path / "laps.fit", records, sessions))
    np.testing.assert_array_equal(first.hr, 100 + np.arange(6))
    np.testing.assert_array_equal(second.hr, 100 + np.arange(6, 12))


def test_a_watch_profile_value_out_of_range_is_left_unset_with_a_warning(tmp_path, caplog):
    """A profile never filled in on the watch (height 0) or a corrupt one (weight 2000 kg) was
    read as the runner's; such values are now unset (filled downstream, which says so), the
    others kept, and the run read."""
    records = [dict(t=t, heart_rate=120, enhanced_speed=3.0) for t in range(5)]
    profile = dict(height=0.0, weight=2000.0, age=33, gender=Gender.FEMALE)
    with caplog.at_level("WARNING", logger="wearjax.data.garmin_fit"):
        (s,) = read_short(write_fit(tmp_path / "p.fit", records, RUN, profile))
    np.testing.assert_allclose(s.subject, [np.nan, np.nan, 33.0, 0.0])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "height_m 0, outside 0.5-2.5; left unset" in said and "weight_kg 2000" in said


def test_files_without_running_session(tmp_path):
    records = [dict(t=t, heart_rate=100, enhanced_speed=5.0) for t in range(3)]
    ride = write_fit(tmp_path / "ride.fit", records, [(Sport.CYCLING, 0, 2)])
    with pytest.raises(WearjaxFileError, match=r"ride\.fit: no running session \(sports: cycling"):
        read_short(ride)
    bare = write_fit(tmp_path / "bare.fit", records)
    with pytest.raises(WearjaxFileError, match=r"bare\.fit.*no session.*assume_running=True"):
        read_short(bare)
    (s,) = read_short(bare, assume_running=True)
    assert s.length == 3
    empty = write_fit(tmp_path / "empty_activity.fit", [])
    with pytest.raises(WearjaxFileError, match=r"empty_activity\.fit: the FIT file has no records"):
        read_short(empty)


def test_step_rate_cadence_is_refused(tmp_path):
    records = [dict(t=t, heart_rate=150, cadence=172) for t in range(3)]
    path = write_fit(tmp_path / "spm.fit", records, RUN)
    with pytest.raises(WearjaxFileError, match=r"spm\.fit.*step rate.*steps/min"):
        read_short(path)
    (s,) = read_short(path, cadence_unit="steps/min")
    np.testing.assert_array_equal(s.x[:, 0], 86.0)
    with pytest.raises(WearjaxFileError, match=r"spm\.fit: unknown unit 'rpm' for cadence"):
        read_short(path, cadence_unit="rpm")


def test_reversed_and_short_sessions_are_refused_short_parts_left_out(tmp_path):
    records = [dict(t=t, heart_rate=120, enhanced_speed=3.0) for t in range(100)]
    reversed_fit = write_fit(tmp_path / "rev.fit", records[::-1], RUN)
    with pytest.raises(WearjaxFileError, match=r"rev\.fit: timestamps are not increasing: 99 of"):
        read_fit(reversed_fit)
    short = write_fit(tmp_path / "short.fit", records[:30], RUN)
    with pytest.raises(WearjaxFileError, match=r"short\.fit: the recording spans 30 s"):
        read_fit(short)
    # A multisport file keeps its long running session and leaves out the 20 s one.
    sessions = [(Sport.RUNNING, 0, 19), (Sport.RUNNING, 20, 99)]
    (s,) = read_fit(write_fit(tmp_path / "two.fit", records, sessions))
    assert (s.workout, s.length) == ("two#2", 80)
    fast = [dict(t=t, heart_rate=120, enhanced_speed=15.0) for t in range(100)]
    with pytest.raises(WearjaxFileError, match=r"fast\.fit: median speed .* looks like km/h"):
        read_fit(write_fit(tmp_path / "fast.fit", fast, RUN))


def broken_fit_files(folder, good: bytes) -> dict[str, Path]:
    """Deliberately broken files, by what is wrong with them."""
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    header = bytearray(good)
    header[8:12] = b".XYZ"
    contents = {
        "truncated.fit": good[: len(good) // 2],
        "flipped.fit": bytes(flipped),
        "header.fit": bytes(header),
        "empty.fit": b"",
        "text.fit": b"timestamp,heart_rate\n2021-01-01 10:00:00,120\n",
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = Path(folder) / name
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize(
    "name, problem",
    [
        ("truncated.fit", "truncated FIT file"),
        ("flipped.fit", "corrupted FIT file"),
        ("header.fit", "not a FIT file"),
        ("empty.fit", "the file is empty"),
        ("text.fit", "not a FIT file"),
    ],
)
def test_broken_files_raise_errors_naming_the_file(tmp_path, name, problem):
    good = write_fit(tmp_path / "good.fit", [dict(t=t, heart_rate=120) for t in range(50)], RUN)
    path = broken_fit_files(tmp_path, good.read_bytes())[name]
    with pytest.raises(WearjaxFileError) as err:
        read_fit(path)
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: {problem}")
    assert err.value.fix
    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)  # crosses processes


def test_every_single_byte_corruption_is_caught(tmp_path):
    records = [dict(t=t, heart_rate=120, enhanced_speed=3.0) for t in range(10)]
    good = write_fit(tmp_path / "good.fit", records, RUN).read_bytes()
    path = tmp_path / "bad.fit"
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(WearjaxFileError, match=r"bad\.fit: (not a|truncated|corrupted) FIT"):
            read_fit(path)


def _compressed_timestamp_fit(path):
    """A valid FIT activity (checksums right) whose records after the first carry compressed
    timestamp headers (FIT protocol: header bit 7, local type in bits 5-6, a 5-bit offset)."""
    import struct

    from garmin_fit_sdk.crc_calculator import CrcCalculator

    def crc(b):
        return CrcCalculator.calculate_crc(bytearray(b), 0, len(b))

    body = bytes([0x40, 0, 0]) + struct.pack("<H", 0) + bytes([1, 0, 1, 0x00])  # file_id
    body += bytes([0x00, 4])  # type: activity
    body += bytes([0x41, 0, 0]) + struct.pack("<H", 20) + bytes([2, 253, 4, 0x86, 3, 1, 0x02])
    body += bytes([0x42, 0, 0]) + struct.pack("<H", 20) + bytes([1, 3, 1, 0x02])  # HR only
    t0 = 1_000_000_000
    body += bytes([0x01]) + struct.pack("<IB", t0, 120)
    for k in range(1, 20):
        body += bytes([0x80 | (2 << 5) | ((t0 + k) & 0x1F), 121])
    head = bytes([14, 0x10]) + struct.pack("<H", 2100) + struct.pack("<I", len(body)) + b".FIT"
    data = head + struct.pack("<H", crc(head)) + body
    path.write_bytes(data + struct.pack("<H", crc(data)))
    return path


def test_compressed_timestamps_are_named_not_called_corruption(tmp_path):
    """Copying such a file again, as 'corrupted FIT file' advised, cannot help."""
    path = _compressed_timestamp_fit(tmp_path / "watch.fit")
    with pytest.raises(
        WearjaxFileError, match=r"watch\.fit: its records use compressed timestamps"
    ):
        read_fit(path, assume_running=True, min_length_s=0)


def test_a_treadmill_run_takes_speed_from_distance(tmp_path):
    """No speed field, a distance: speed from the distance, as TCX and CSV read such a run."""
    records = [dict(t=t, heart_rate=120, distance=3.0 * t, cadence=85) for t in range(5)]
    (s,) = read_short(write_fit(tmp_path / "treadmill.fit", records, RUN))
    np.testing.assert_allclose(_channel(s, "speed")[1:], 3.0, rtol=1e-5)


def test_a_stop_is_read_from_the_distance(tmp_path):
    seconds = (*range(31), *range(60, 121))  # 29 s without records, the distance unchanged
    records = [
        dict(
            t=t,
            heart_rate=150,
            enhanced_speed=3.0,
            cadence=85,
            distance=3.0 * (t if t <= 30 else t - 29),
        )
        for t in seconds
    ]
    path = write_fit(tmp_path / "a.fit", records, RUN)
    (s,) = read_fit(path)
    np.testing.assert_array_equal(s.x[31:60], 0)
    assert dict(s.metadata)["stopped_s"] == "29"
    (held,) = read_fit(path, pauses="hold")
    np.testing.assert_array_equal(held.x[31:60], [[3, 85]] * 29)
