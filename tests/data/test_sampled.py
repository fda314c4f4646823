"""Sampled-signal CSV and NPZ files: signals at their rates, reference HR, dispatch and cache."""

import numpy as np
import pytest

from wearjax.data import folders
from wearjax.data.folders import load_folder, read_file
from wearjax.data.sampled import is_sampled_header, read_sampled
from wearjax.errors import WearjaxFileError

nan = np.nan


def _write(path, header, rows):
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _wrist_csv(path, seconds=10, rate=32):
    """time printed to the millisecond, ppg, acc in z, x, y order, eda and a 0.5 Hz hr_ref."""
    rows, expected = [], {"ppg": [], "acc": [], "eda": []}
    for k in range(seconds * rate):
        t = k / rate
        ppg, acc = round(np.sin(t), 4), [round(0.1 * k, 1), -1.0, 0.5]  # x, y, z
        ref = {0: 100, 2: 0, 4: 110, 8: 130}.get(t) if k % rate == 0 else None  # 0 is implausible
        rows.append([f"{100 + t:.3f}", ppg, acc[2], acc[0], acc[1], k % 3, ref])
        expected["ppg"].append([ppg])
        expected["acc"].append(acc)
        expected["eda"].append([k % 3])
    _write(path, ["time", "ppg", "acc_z", "acc_x", "acc_y", "eda", "hr_ref"], rows)
    return expected


def test_csv_groups_channels_infers_the_rate_and_holds_the_reference(tmp_path):
    expected = _wrist_csv(tmp_path / "wrist.csv")
    s = read_sampled(tmp_path / "wrist.csv")
    assert list(s.signals) == ["ppg", "acc", "eda"]
    acc = s.signals["acc"]
    assert (acc.rate_hz, acc.channels, acc.units) == (32.0, ("acc_x", "acc_y", "acc_z"), ("g",) * 3)
    assert s.signals["eda"].units == ("",) and s.signals["ppg"].units == ("a.u.",)
    for name, values in expected.items():
        np.testing.assert_array_equal(s.signals[name].values, np.array(values, np.float32))
        assert s.signals[name].mask.all()
    ref = s.targets["hr"]
    assert (ref.rate_hz, ref.channels, ref.units) == (0.5, ("hr",), ("bpm",))
    np.testing.assert_array_equal(ref.values[:, 0], [100, 0, 110, nan, 130])
    np.testing.assert_array_equal(ref.mask, [1, 0, 1, 0, 1])
    # The 1 Hz HR holds each 2 s reference value over its two seconds.
    np.testing.assert_array_equal(s.hr, [100, 100, nan, nan, 110, 110, nan, nan, 130, 130])
    np.testing.assert_array_equal(s.mask, np.isfinite(s.hr))
    assert s.x.shape == (10, 0) and s.channels == () and not s.vo2_mask.any()
    assert (s.runner, s.workout, s.source) == ("wrist", "wrist", str(tmp_path / "wrist.csv"))
    assert read_sampled(tmp_path / "wrist.csv", rate_hz=32).signals["ppg"].rate_hz == 32.0
    with pytest.raises(WearjaxFileError, match=r"wrist\.csv: rate_hz=30 but the times are sampled "
                       r"at 32 Hz; pass the file's true rate, or omit rate_hz"):  # fmt: skip
        read_sampled(tmp_path / "wrist.csv", rate_hz=30)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([0.0], r"a single sample, so no sampling rate; record more than one row"),
        ([0.0, 0.5, 0.5, 1.0], r"duplicate timestamp 0.5 s at lines 3 and 4; drop the repeated"),
        ([0.0, 0.5, 0.25, 1.0], r"timestamps go back in time at line 4 \(0.25 s after 0.5 s\)"),
        (
            [0.0, 0.5, 1.0, 1.5, 2.5, 3.0],
            r"irregular sampling: the step to line 6 \(2.5 s\) is 1 s, the median step 0.5 s "
            r"\(more than 1% apart\); resample to a regular grid, or split the file at gaps",
        ),
        ([0.0, 0.5, 1.0, 1.52, 2.0], r"irregular sampling: the step to line 5 \(1.52 s\)"),
        ([0.0, None, 1.0], r"line 3 has no time; give every row a time"),
    ],
)
def test_bad_time_columns_raise_one_line_errors(tmp_path, times, message):
    path = _write(tmp_path / "bad.csv", ["time", "ppg"], [[t, 1.0] for t in times])
    with pytest.raises(WearjaxFileError, match=r"bad\.csv: " + message):
        read_sampled(path)


def test_whole_number_times_one_apart_are_refused_unless_the_rate_is_given(tmp_path):
    """A 1000 Hz ECG timed in milliseconds (0, 1, 2, ...) read as 1 Hz seconds would last 1000
    times too long; until 2026-12-07 it was read so, silently. Given `rate_hz=1`, a sensor
    that samples once a second is read; whole seconds at another step are not ambiguous."""
    path = _write(tmp_path / "ecg.csv", ["time", "ecg"], [[k, 0.1 * k] for k in range(50)])
    want = (r"ecg\.csv: the times are whole numbers 1 apart: 1 Hz in seconds, or 1000 Hz in "
            r"milliseconds; give the times in seconds")  # fmt: skip
    with pytest.raises(WearjaxFileError, match=want):
        read_sampled(path)
    assert read_sampled(path, rate_hz=1).signals["ecg"].rate_hz == 1.0
    ms = _write(tmp_path / "ecg_s.csv", ["time", "ecg"], [[k / 1000, 0.1 * k] for k in range(50)])
    assert read_sampled(ms).signals["ecg"].rate_hz == 1000.0


def test_small_jitter_is_accepted(tmp_path):
    times = [0.0, 0.5, 1.004, 1.5, 2.0]  # 0.8% of a step
    s = read_sampled(_write(tmp_path / "ok.csv", ["t", "ppg"], [[t, 1.0] for t in times]))
    assert s.signals["ppg"].rate_hz == 2.0 and s.length == 3


@pytest.mark.parametrize(("rate", "rows"), [(512, 100), (512, 185), (256, 60), (64, 1000)])
def test_a_short_file_timed_to_the_millisecond_gets_its_own_rate(tmp_path, rate, rows):
    """From the ends alone, 100 rows at 512 Hz timed to the millisecond read as 513 Hz, which
    the millisecond's tolerance then accepted; the least-squares step gives 512."""
    path = _write(tmp_path / "short.csv", ["time", "ppg"], [[f"{k / rate:.3f}", 1.0]
                                                             for k in range(rows)])  # fmt: skip
    assert read_sampled(path).signals["ppg"].rate_hz == rate


def test_other_csv_errors(tmp_path):
    def fails(name, header, rows, message, **kwargs):
        path = _write(tmp_path / name, header, rows)
        with pytest.raises(WearjaxFileError, match=message):
            read_sampled(path, **kwargs)

    fails("a.csv", ["ppg"], [[1], [2]], r"a\.csv: no time \(s\) column \(found \['ppg'\]\)")
    fails("b.csv", ["time", "ppg"], [[0, 1], [0.5, "x"]], r"line 3, column 'ppg': cannot read 'x'")
    fails("c.csv", ["time", "hr_ref"], [[0, 90], [0.5, 91]], r"c\.csv: no signal")
    fails("d.csv", ["time", "ppg", "hr_ref"], [[0, 1, None], [0.5, 1, 90], [1, 1, None],
          [1.5, 1, None], [2, 1, None], [2.5, 1, 91]], r"reference HR at 0.5 s is off the grid",
          hr_rate_hz=1.0)  # fmt: skip
    fails("e.csv", ["time", "ppg", "hr_ref"], [[0, 1, None], [0.5, 1, 90]],
          r"cannot tell the reference HR's rate from its times; pass hr_rate_hz")  # fmt: skip
    fails("f.csv", ["time", "ppg", "hr_ref", "HR"], [[0, 1, 2, 3], [0.5, 1, 2, 3]],
          r"two reference HR columns \['hr_ref', 'HR'\]")  # fmt: skip
    fails("g.csv", ["time", "vo2"], [[0, 1], [0.5, 1]], r"signal name 'vo2' is reserved")


def test_npz_signals_at_several_rates_with_a_reference(tmp_path):
    ppg = np.sin(np.arange(640) / 64.0)
    acc = np.arange(960.0).reshape(320, 3)
    hr = np.array([90.0, nan, 94.0, 96.0, 300.0])
    gyro = {f"gyro_{a}": np.full(160, i, np.float32) for i, a in enumerate("zyx")}
    np.savez(tmp_path / "sub.npz", ppg=ppg, ppg_rate_hz=64, acc=acc, acc_rate_hz=32.0,
             **gyro, rate_hz=16, hr=hr, hr_rate_hz=0.5, time=np.arange(3))  # fmt: skip
    s = read_sampled(tmp_path / "sub.npz", runner="ann")
    assert {k: (v.rate_hz, v.channels) for k, v in s.signals.items()} == {
        "ppg": (64.0, ("ppg",)),
        "acc": (32.0, ("acc_x", "acc_y", "acc_z")),
        "gyro": (16.0, ("gyro_x", "gyro_y", "gyro_z")),
    }
    np.testing.assert_array_equal(s.signals["ppg"].values[:, 0], ppg.astype(np.float32))
    np.testing.assert_array_equal(s.signals["acc"].values, acc.astype(np.float32))
    np.testing.assert_array_equal(s.signals["gyro"].values[0], [2, 1, 0])
    np.testing.assert_array_equal(s.targets["hr"].mask, [1, 0, 1, 1, 0])  # NaN and 300 bpm
    np.testing.assert_array_equal(s.hr, [90, 90, nan, nan, 94, 94, 96, 96, nan, nan])
    assert s.runner == "ann" and s.length == 10
    # The argument is the rate of signals without their own key.
    np.savez(tmp_path / "plain.npz", ecg=np.zeros(50), resp=np.zeros(10), resp_rate_hz=1.0)
    plain = read_sampled(tmp_path / "plain.npz", rate_hz=5)
    assert plain.signals["ecg"].rate_hz == 5 and plain.signals["ecg"].units == ("mV",)
    assert plain.length == 10 and not plain.mask.any() and plain.targets == {}


def test_npz_errors(tmp_path):
    def fails(message, **arrays):
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(WearjaxFileError, match=r"bad\.npz: " + message):
            read_sampled(tmp_path / "bad.npz")

    fails(r"no sampling rate for 'ppg'; store ppg_rate_hz in the file or pass rate_hz", ppg=[1, 2])
    fails(r"array 'cube' is float64\[2, 2, 2\]", cube=np.zeros((2, 2, 2)), rate_hz=1)
    fails(r"reference HR 'hr' of shape \[3\] without a rate; store hr as", ppg=[1.0], hr=[1, 2, 3],
          rate_hz=1)  # fmt: skip
    fails(r"signal 'acc': channels \['acc_x', 'acc_y'\] have \[2, 3\] samples", acc_x=[1, 2],
          acc_y=[1, 2, 3], rate_hz=1)  # fmt: skip
    fails(r"'rate_hz' is <U3\[\]; store the rate as a number", ppg=[1.0], rate_hz="abc")
    fails(
        r"array 'acc' is \[3, 64\]: fewer rows than columns.*save acc\.T",
        acc=np.zeros((3, 64)),
        rate_hz=32,
    )  # channels first: once 3 samples of 64 channels
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    with pytest.raises(WearjaxFileError, match=r"bad\.npz: not a readable NPZ archive"):
        read_sampled(tmp_path / "bad.npz")


def test_sidecar_reference_on_the_recordings_clock(tmp_path):
    np.savez(tmp_path / "run.npz", ppg=np.zeros(64 * 8), rate_hz=64)
    _write(tmp_path / "run.hr.csv", ["time", "hr"], [[0, 100], [2, 104], [6, 112]])
    s = read_sampled(tmp_path / "run.npz")
    np.testing.assert_array_equal(s.targets["hr"].values[:, 0], [100, 104, nan, 112])
    np.testing.assert_array_equal(s.hr, [100, 100, 104, 104, nan, nan, 112, 112])
    # A CSV recording's sidecar uses the CSV's clock (here starting at 1000 s).
    rows = [[1000 + k / 4, 0.0] for k in range(16)]
    _write(tmp_path / "walk.csv", ["time", "ppg"], rows)
    _write(tmp_path / "walk.hr.csv", ["t", "HR"], [[1001, 80], [1002, 81], [1003, 82]])
    np.testing.assert_array_equal(read_sampled(tmp_path / "walk.csv").hr, [nan, 80, 81, 82])
    _write(tmp_path / "walk.hr.csv", ["t", "HR"], [[999, 80], [1000, 81]])
    with pytest.raises(WearjaxFileError, match=r"walk\.hr\.csv: reference HR at -1 s is before"):
        read_sampled(tmp_path / "walk.csv")
    _write(tmp_path / "walk.hr.csv", ["t", "bpm"], [[1000, 80], [1001, 81]])
    with pytest.raises(WearjaxFileError, match=r"walk\.hr\.csv: no reference HR column"):
        read_sampled(tmp_path / "walk.csv")
    _write(tmp_path / "both.csv", ["time", "ppg", "hr_ref"], [[0, 1, 80], [0.5, 1, 81]])
    _write(tmp_path / "both.hr.csv", ["time", "hr"], [[0, 80]])
    with pytest.raises(WearjaxFileError, match=r"both\.csv: reference HR given twice"):
        read_sampled(tmp_path / "both.csv")
    # two values on one grid point: the error says where
    _write(tmp_path / "walk.hr.csv", ["t", "HR"], [[1000, 80], [1002, 81], [1002.004, 82]])
    with pytest.raises(WearjaxFileError, match=r"two reference HR values at 2 s \(2 and 2.004 s"):
        read_sampled(tmp_path / "walk.csv", hr_rate_hz=0.5)


def test_folders_dispatch_sampled_files_and_cache_their_signals(tmp_path, monkeypatch):
    assert is_sampled_header(["Time", "ACC_X"]) and not is_sampled_header(["time", "VO2_I"])
    root = tmp_path / "wrist"
    (root / "ann").mkdir(parents=True)
    (root / "bob").mkdir()
    _wrist_csv(root / "ann" / "s1.csv")
    np.savez(root / "bob" / "s2.npz", ppg=np.ones(128), rate_hz=64)
    _write(root / "bob" / "s2.hr.csv", ["time", "hr"], [[0, 70], [1, 72]])
    cpet = [[t, 1000 + 100 * t, 100 + t] for t in range(60)]  # the 60 s minimum
    _write(root / "bob" / "cpet.csv", ["time", "VO2_I", "HR_I"], cpet)
    cache = tmp_path / "cache"
    sessions, skipped = load_folder(root, cache_dir=cache)
    assert skipped == []  # the sidecar is read with its recording, not listed
    assert [(s.runner, s.workout) for s in sessions] == [
        ("ann", "s1"),
        ("bob", "cpet"),
        ("bob", "s2"),
    ]
    assert sessions[1].vo2.tolist() == [r[1] for r in cpet] and sessions[1].signals == {}
    np.testing.assert_array_equal(sessions[2].hr, [70, 72])
    assert read_file(root / "bob" / "s2.npz")[0].targets["hr"].rate_hz == 1.0

    def parse(*args, **kwargs):
        raise AssertionError("the parser ran on a cached file")

    monkeypatch.setattr(folders, "read_file", parse)
    again, _ = load_folder(root, cache_dir=cache)
    for a, b in zip(sessions, again, strict=True):
        assert (a.runner, a.source, a.metadata) == (b.runner, b.source, b.metadata)
        for kind in ("signals", "targets"):
            assert list(getattr(a, kind)) == list(getattr(b, kind))
            for x, y in zip(getattr(a, kind).values(), getattr(b, kind).values(), strict=True):
                assert (x.rate_hz, x.channels, x.units) == (y.rate_hz, y.channels, y.units)
                np.testing.assert_array_equal(x.values, y.values)
                np.testing.assert_array_equal(x.mask, y.mask)
    # A changed sidecar is a different recording: parsed again.
    _write(root / "bob" / "s2.hr.csv", ["time", "hr"], [[0, 80], [1, 82]])
    with pytest.raises(AssertionError, match="the parser ran"):
        load_folder(root, cache_dir=cache)


def test_times_in_milliseconds_and_a_column_named_twice_are_refused(tmp_path):
    ms = _write(tmp_path / "ms.csv", ["time", "ppg"], [[10 * k, 1.0] for k in range(7000)])
    with pytest.raises(
        WearjaxFileError,
        match=r"ms\.csv: samples are a median 10 apart .*; the times look like milliseconds: give "
        r"them in seconds",
    ):
        read_sampled(ms)
    rows = [[k / 32, 1.0, 2.0] for k in range(64)]
    twice = _write(tmp_path / "twice.csv", ["time", "ppg", "ppg"], rows)
    with pytest.raises(WearjaxFileError, match=r"twice\.csv: the column 'ppg' appears twice"):
        read_sampled(twice)


@pytest.mark.parametrize("form", ["semicolons", "tabs", "utf-16"])
def test_other_separators_decimal_commas_and_utf16_read_as_the_comma_file(tmp_path, form):
    """A sampled CSV saved with `;` and decimal commas, with tabs, or as UTF-16 (Excel's
    "Unicode Text") is dispatched and read as the same file with commas."""
    _wrist_csv(tmp_path / "comma.csv")
    text = (tmp_path / "comma.csv").read_text()
    path = tmp_path / "other.csv"
    if form == "utf-16":
        path.write_bytes(text.replace("\n", "\r\n").encode("utf-16"))
    else:
        sep, point = (";", ",") if form == "semicolons" else ("\t", ".")
        lines = [sep.join(c.replace(".", point) for c in line.split(",")) for line in text.split()]
        path.write_text("\n".join(lines) + "\n")
    want, (got,) = read_sampled(tmp_path / "comma.csv"), read_file(path)
    assert got.signals.keys() == want.signals.keys() and got.targets.keys() == want.targets.keys()
    for name in want.signals:
        np.testing.assert_array_equal(got.signals[name].values, want.signals[name].values)
        assert got.signals[name].rate_hz == want.signals[name].rate_hz
    np.testing.assert_array_equal(got.targets["hr"].values, want.targets["hr"].values)


@pytest.mark.parametrize("rate, every", [(64, 1), (51.2, 1), (128, 2)])
def test_a_reference_column_at_the_sample_rate_with_millisecond_times(tmp_path, rate, every):
    """Times printed to the millisecond lie up to 0.5 ms off `k / rate`; a reference HR on
    every (or every other) row was once checked against its grid to 1% of its step, refused."""
    n = round(20 * rate)
    rows = [[f"{k / rate:.3f}", round(np.sin(k / rate), 4), 70 if k % every == 0 else None]
            for k in range(n)]  # fmt: skip
    _write(tmp_path / "hr.csv", ["time", "ppg", "hr_ref"], rows)
    s = read_sampled(tmp_path / "hr.csv")
    assert s.signals["ppg"].rate_hz == rate
    assert s.targets["hr"].rate_hz == rate / every
    assert s.length == 20 and (s.hr == 70).all()


def test_times_printed_coarser_than_the_step(tmp_path):
    """128 Hz printed to 0.01 s repeats printed times: samples, not duplicate rows. Without
    a rate that is refused, naming the resolution; with rate_hz the grid is checked to it."""
    rows = [[f"{k / 128:.2f}", round(np.sin(k / 128), 4)] for k in range(128 * 5)]
    _write(tmp_path / "coarse.csv", ["time", "ppg"], rows)
    with pytest.raises(WearjaxFileError, match=r"printed to 0.01 s, too coarse.*pass the file's"):
        read_sampled(tmp_path / "coarse.csv")
    s = read_sampled(tmp_path / "coarse.csv", rate_hz=128)
    assert s.signals["ppg"].rate_hz == 128 and s.signals["ppg"].values.shape == (640, 1)
    with pytest.raises(WearjaxFileError, match="rate_hz=100"):  # a wrong rate still fails
        read_sampled(tmp_path / "coarse.csv", rate_hz=100)
    del rows[300:302]  # two lost samples (one, 7.8 ms, hides in the printed 10 ms)
    _write(tmp_path / "gap.csv", ["time", "ppg"], rows)
    with pytest.raises(WearjaxFileError, match="gap.csv"):
        read_sampled(tmp_path / "gap.csv", rate_hz=128)
    fine = [[f"{k / 64:.3f}", 1.0] for k in range(64)]  # a real duplicate at a fine resolution
    _write(tmp_path / "dup.csv", ["time", "ppg"], fine[:10] + fine[9:])
    with pytest.raises(WearjaxFileError, match="duplicate timestamp"):
        read_sampled(tmp_path / "dup.csv", rate_hz=64)
    _write(tmp_path / "two.csv", ["time", "t", "ppg"], [[k / 4, k, 1.0] for k in range(8)])
    with pytest.raises(WearjaxFileError, match=r"two time columns \['time', 't'\]"):
        read_sampled(tmp_path / "two.csv")
