"""CPET exports with a lab's own column names and units, and folders of them."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wearjax.data.cpet import load_cpet_folder, read_cpet
from wearjax.data.csv import read_cpet_csv
from wearjax.errors import WearjaxDataError, WearjaxFileError

N = 90  # seconds per test: above the 60 s minimum


def _write(path, header, rows, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ramp(n=N):
    """Per second: VO2 in L/min, HR, VCO2 L/min, VE L/min, power W, speed km/h."""
    t = np.arange(n)
    return t, 1.0 + 0.02 * t, 90.0 + t, 0.9 + 0.02 * t, 20.0 + t, 5.0 * t, 7.2 + 0 * t


def test_aliases_magnitude_units_and_clock_times(tmp_path):
    t, vo2, hr, vco2, ve, watts, kmh = _ramp()
    columns = (vo2, hr, vco2, ve, watts, kmh)
    rows = [[f"{s // 60}:{s % 60:02d}", *(round(float(c[s]), 3) for c in columns)] for s in t]
    header = ["t", "V'O2", "heart_rate", "VCO2_I", "VE", "watts", "Speed"]
    s = read_cpet(_write(tmp_path / "ann.csv", header, rows))
    np.testing.assert_allclose(s.vo2, vo2 * 1000, rtol=1e-6)  # L/min detected: median < 5
    np.testing.assert_allclose(s.hr, hr)
    assert s.channels == ("speed", "work_rate", "vco2", "ve")
    expected = np.stack([kmh / 3.6, watts, vco2 * 1000, ve], axis=1)  # VE stays in L/min
    np.testing.assert_allclose(s.x, expected, rtol=1e-6)
    meta = dict(s.metadata)
    assert meta["vo2_unit"] == "L/min" and meta["vo2_unit_basis"] == "detected (median 1.89 < 5)"
    assert meta["speed_unit"] == "km/h" and meta["columns"].startswith("time=t, vo2=V'O2, hr=")
    assert (s.runner, s.workout, s.length) == ("ann", "ann", N)
    # Declared units win over the magnitude and the header; L/min declared as mL/min reads as
    # 2 mL/min, no body's VO2, and is refused naming the unit
    with pytest.raises(WearjaxFileError, match="under 50 mL/min throughout.*vo2_unit"):
        read_cpet(tmp_path / "ann.csv", vo2_unit="mL/min")
    declared = read_cpet(tmp_path / "ann.csv", vo2_unit="L/min", units={"speed": "m/s"})
    np.testing.assert_allclose(declared.vo2, vo2 * 1000, rtol=1e-6)
    np.testing.assert_allclose(declared.x[:, 0], kmh, rtol=1e-6)
    assert dict(declared.metadata)["vo2_unit_basis"] == "declared"
    # a header that names its unit is not overridden by another declared one: read at 1000x
    header[1] = "VO2 (L/min)"
    _write(tmp_path / "cy.csv", header, rows)
    with pytest.raises(WearjaxFileError, match=r"is in L/min by its header, not mL/min"):
        read_cpet(tmp_path / "cy.csv", vo2_unit="mL/min")
    agreed = read_cpet(tmp_path / "cy.csv", vo2_unit="l/min")  # the same unit, any spelling
    np.testing.assert_allclose(agreed.vo2, vo2 * 1000, rtol=1e-6)
    # mL/min declared as L/min read 1000x over, and a model's errors still looked ordinary
    rows_ml = [[r[0], round(float(v) * 1000), *r[2:]] for r, v in zip(rows, vo2, strict=True)]
    _write(tmp_path / "ml.csv", ["t", "V'O2", *header[2:]], rows_ml)
    with pytest.raises(WearjaxFileError, match=r"read as L/min \(declared\) has a median of "
                       r"1890000 mL/min, beyond any body's uptake"):  # fmt: skip
        read_cpet(tmp_path / "ml.csv", vo2_unit="L/min")


def test_user_columns_units_row_semicolons_and_decimal_commas(tmp_path):
    t, vo2, hr, _, ve, watts, _ = _ramp()
    rows = [["s", "ml/min", "1/min", "W", "ml/min", "kg"]]
    rows += [[s, f"{vo2[s] * 1000:.1f}".replace(".", ","), hr[s], watts[s], ve[s] * 1000, 70]
             for s in t]  # fmt: skip
    header = ["Zeit", "VO2 abs", "HF", "Last", "VE", "Gewicht"]
    path = _write(tmp_path / "lab" / "bob.csv", header, rows, sep=";")
    columns = {"time": "Zeit", "vo2": "vo2 ABS", "hr": "HF", "work_rate": "Last",
               "weight": "Gewicht"}  # fmt: skip
    s = read_cpet(path, columns=columns)
    np.testing.assert_allclose(s.vo2, vo2 * 1000, rtol=1e-6)
    np.testing.assert_allclose(s.hr, hr)
    assert s.channels == ("work_rate", "ve")  # VE found by its alias
    np.testing.assert_allclose(s.x, np.stack([watts, ve], axis=1), rtol=1e-6)
    assert s.subject[1] == 70.0 and np.isnan(s.subject[0])
    meta = dict(s.metadata)
    assert (meta["vo2_unit"], meta["vo2_unit_basis"]) == ("mL/min", "column header")


def test_a_utf16_tab_separated_export_reads_as_the_utf8_one(tmp_path):
    """Excel's "Unicode Text": UTF-16 with its byte-order mark, tabs, CRLF line ends."""
    t, vo2, hr, *_ = _ramp()
    rows = [[s, round(float(vo2[s]), 3), hr[s]] for s in t]
    want = read_cpet(_write(tmp_path / "ann.csv", ["Time", "VO2", "HR"], rows))
    text = (tmp_path / "ann.csv").read_text().replace(",", "\t").replace("\n", "\r\n")
    (tmp_path / "u16" / "ann.csv").parent.mkdir()
    (tmp_path / "u16" / "ann.csv").write_bytes(text.encode("utf-16"))
    got = read_cpet(tmp_path / "u16" / "ann.csv")
    np.testing.assert_array_equal(got.vo2, want.vo2)
    np.testing.assert_array_equal(got.hr, want.hr)


def test_hr_that_starts_late_is_said_per_file(tmp_path, caplog):
    """The VO2 model is given the first HR where the test starts: an HR column that begins
    long after the first VO2 is named, with how late, rather than back-filled in silence."""
    t, vo2, hr, *_ = _ramp()
    rows = [[s, round(float(vo2[s]), 3), hr[s] if s >= 45 else ""] for s in t]
    s = read_cpet(_write(tmp_path / "late.csv", ["time", "VO2", "HR"], rows))
    assert dict(s.metadata)["hr_starts_s"] == "45"
    assert "late.csv: HR starts 45 s after the first VO2" in caplog.text
    on_time = read_cpet(_write(tmp_path / "ok.csv", ["time", "VO2", "HR"],
                               [[s, round(float(vo2[s]), 3), hr[s]] for s in t]))  # fmt: skip
    assert "hr_starts_s" not in dict(on_time.metadata)


def test_read_cpet_errors(tmp_path):
    good = [[s, 1500, 120] for s in range(N)]

    def fails(header, rows, message, **kwargs):
        path = _write(tmp_path / "bad.csv", header, rows)
        with pytest.raises(WearjaxFileError, match=r"bad\.csv: " + message):
            read_cpet(path, **kwargs)

    fails(["time", "HR"], [[0, 1]] * 3, r"no VO2 column \(found \['time', 'HR'\]\); name it VO2")
    fails(
        ["VO2", "HR"],
        [[0, 1]] * 3,
        r"no time column .*pass --columns time=NAME \(columns=\{'time': NAME\}\)",
    )
    fails(["time", "VO2 (ml/kg/min)", "HR"], good, r"column 'VO2 \(ml/kg/min\)' is in ml/kg/min "
          r"\(relative to body mass\); export absolute VO2")  # fmt: skip
    fails(["time", "VO2 [gal/h]", "HR"], good, r"unknown unit 'gal/h' of column 'VO2 \[gal/h\]'")
    per_kg = [[s, 25.0 + 0.2 * s, 120] for s in range(N)]  # mL/kg/min with no unit in the header
    fails(["time", "VO2", "HR"], per_kg, r"column 'VO2' has no unit and a median of 33.9: neither "
          r"L/min nor mL/min.*mL/kg/min.*; export absolute VO2, or pass --vo2-unit "
          r"\(vo2_unit\)")  # fmt: skip
    # a walk in mL/kg/min (median 6) was read as 6 L/min until 2026-12-07
    walk = [[s, 4.0 + 4.0 * s / N, 100] for s in range(N)]
    fails(["time", "VO2", "HR"], walk, r"column 'VO2' has no unit and a median of 5.98: neither")
    fails(["time", "VO2", "VO2_I"], good, r"columns \['VO2', 'VO2_I'\] all look like vo2; pass "
          r"--columns vo2=NAME \(columns=\{'vo2': NAME\}\)")  # fmt: skip
    fails(["time", "O2", "HR"], good, r"no column 'VO2x' \(columns maps vo2 to it; found",
          columns={"vo2": "VO2x"})  # fmt: skip
    fails(["time", "VO2", "HR"], [[0, 1500, 1], [1, 1500, "n/a"]], r"line 3, column 'HR': cannot")
    fails(["time", "VO2", "HR"], good[:30], r"only 30 s of VO2, shorter than 60 s")
    fails(["time", "VO2", "HR"], [[s, "", 120] for s in range(N)], r"no VO2 values")
    fails(["time", "VO2", "Speed (furlong/h)"], good, r"unknown speed unit 'furlong/h'")
    path = _write(tmp_path / "ok.csv", ["time", "VO2"], good)
    for kwargs, message in [
        (dict(columns={"oxygen": "O2"}), r"columns names unknown fields \['oxygen'\]"),
        (dict(vo2_unit="ml/kg"), r"vo2_unit='ml/kg' is not a unit of VO2; use 'mL/min' or"),
        (dict(units={"speed": "furlong"}), r"units=\{'speed': 'furlong'\} is not a speed unit"),
    ]:
        with pytest.raises(WearjaxDataError, match=message):
            read_cpet(path, **kwargs)
    assert read_cpet(path, min_length_s=10).length == N


def test_folder_skips_unusable_files_and_keeps_shared_channels(tmp_path):
    root = tmp_path / "cpet"
    ramp = [[s, 2000 + s, 100 + s, 1800 + s, 40, 3 * s] for s in range(N)]
    full = ["time", "VO2", "HR", "VCO2", "VE", "Power"]
    _write(root / "s1" / "test.csv", full, ramp)
    _write(root / "s2" / "test.csv", ["Time", "VO2", "HR", "VCO2", "Power"],
           [r[:4] + r[5:] for r in ramp])  # fmt: skip
    _write(root / "flat.csv", full, ramp)
    _write(root / "short.csv", full, ramp[:20])
    _write(root / "novo2.csv", ["time", "HR"], [[s, 100] for s in range(N)])
    (root / "empty.csv").write_bytes(b"")
    (root / "notes.xlsx").write_bytes(b"PK")
    (root / ".hidden.csv").write_text("junk")
    sessions, skipped = load_cpet_folder(root)
    assert [(s.runner, s.workout) for s in sessions] == [
        ("flat", "flat"),
        ("s1", "test"),
        ("s2", "test"),
    ]
    for s in sessions:
        assert s.channels == ("work_rate", "vco2")
        np.testing.assert_allclose(s.x, [[3 * t, 1800 + t] for t in range(N)])
        np.testing.assert_allclose(s.vo2, 2000 + np.arange(N))
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "empty.csv": "the file is empty (0 bytes); copy the recording again or remove the file",
        "notes.xlsx": "unsupported file type '.xlsx'",
        "novo2.csv": "no VO2 column (found ['time', 'HR']); name it VO2, or pass --columns "
        "vo2=NAME (columns={'vo2': NAME})",
        "short.csv": "only 20 s of VO2, shorter than 60 s; use complete tests, or lower "
        "min_length_s",
    }
    junk = tmp_path / "junk"
    _write(junk / "a.csv", ["time", "HR"], [[0, 1], [1, 1]])
    with pytest.raises(WearjaxFileError, match=r"junk: no usable CPET test \(1 files skipped: a"):
        load_cpet_folder(junk)
    with pytest.raises(WearjaxFileError, match=r"nowhere: not a folder"):
        load_cpet_folder(tmp_path / "nowhere")


def _pyoxynet_tests() -> list[Path]:
    spec = importlib.util.find_spec("pyoxynet")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data_test"
    return sorted(folder.glob("ramp_real_test_*.csv"))


@pytest.mark.skipif(not _pyoxynet_tests(), reason="pyoxynet (the `data` extra) is not installed")
def test_pyoxynet_files_read_as_by_the_pyoxynet_reader():
    for path in _pyoxynet_tests()[::20]:
        a, b = read_cpet(path), read_cpet_csv(path)
        for name in ("hr", "vo2", "mask", "vo2_mask", "subject"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.channels == ("vco2", "ve") and dict(a.metadata)["vo2_unit"] == "mL/min"
        assert 100 < np.median(a.x[:, 0]) < 6000 and 5 < np.median(a.x[:, 1]) < 250


def test_a_test_starts_at_its_first_vo2_value(tmp_path):
    """HR for 20 s before the gas analyser's first VO2: the session starts at that VO2, the
    second the VO2 model is given, and says how much it dropped."""
    rows = [[s, "" if s < 20 else 1500 + s, 100 + s] for s in range(N)]
    s = read_cpet(_write(tmp_path / "late.csv", ["time", "VO2", "HR"], rows), min_length_s=10)
    assert s.length == N - 20 and s.vo2_mask[0]
    np.testing.assert_allclose(s.vo2[:3], [1520, 1521, 1522])
    np.testing.assert_allclose(s.hr[:2], [120, 121])
    assert dict(s.metadata)["seconds_before_first_vo2_dropped"] == "20"
    assert s.start_time_s == 20.0  # second 0 is the file's second 20


@pytest.mark.parametrize("every", [3, 10, 11])
def test_breaths_between_hr_rows_are_interpolated_up_to_the_gap_limit(every, tmp_path):
    """An export that gives HR every second on its own rows and VO2 on its breaths' rows:
    the seconds between two breaths at most 10 s apart are filled linearly, as a second
    with no row at all is. Until 2026-12-07 an HR row in them kept them missing, and the VO2
    task held the last breath there."""
    rows = [[s, 1500 + 10 * s if s % every == 0 else "", 100 + s / 10] for s in range(N)]
    s = read_cpet(_write(tmp_path / "split.csv", ["time", "VO2", "HR"], rows))
    breath = np.arange(N) % every == 0
    np.testing.assert_allclose(s.vo2[breath[: s.length]], 1500 + 10 * np.arange(N)[breath])
    last = (N - 1) // every * every  # the last breath: the series ends there
    if every <= 10:
        assert s.vo2_mask[: last + 1].all() and not s.vo2_mask[last + 1 :].any()
        np.testing.assert_allclose(s.vo2[: last + 1], 1500 + 10 * np.arange(last + 1), rtol=1e-6)
    else:  # breaths 11 s apart: a gap, not filled
        np.testing.assert_array_equal(s.vo2_mask[: last + 1], breath[: last + 1])
    assert s.mask.all()  # HR on every second


def test_a_resting_test_in_ml_per_kg_without_a_unit_is_refused_as_ambiguous(tmp_path):
    """VO2 3.2-3.8 (mL/kg/min at rest) at HR 65-75: read as L/min it was 3.5 L/min, ten
    times a resting body's uptake; the same values with HR 150-170 stay litres (exercise)."""
    rng = np.random.default_rng(0)
    vo2 = 3.5 + rng.uniform(-0.3, 0.3, N)
    rows = [[s, f"{vo2[s]:.2f}", 70 + s % 5] for s in range(N)]
    with pytest.raises(WearjaxFileError, match=r"read as L/min it is a median 3\.5\d L/min at a "
                       r"median HR of 7\d bpm.*mL/kg/min at rest"):  # fmt: skip
        read_cpet(_write(tmp_path / "rest.csv", ["time", "VO2", "HR"], rows))
    declared = read_cpet(tmp_path / "rest.csv", vo2_unit="L/min")  # told: as it is told
    assert float(np.nanmedian(declared.vo2)) == pytest.approx(3500, rel=0.1)
    hard = [[s, v, 160 + s % 10] for s, v, _ in rows]
    s = read_cpet(_write(tmp_path / "hard.csv", ["time", "VO2", "HR"], hard))
    assert dict(s.metadata)["vo2_unit"] == "L/min"


def test_a_test_whose_hr_strap_failed_early_is_refused_and_skipped_in_a_folder(tmp_path):
    """HR in 5 of 90 s: the VO2 model would read one held value for the rest (until
    2026-12-07 kept without a word); HR in 60% of the seconds is kept."""
    t, vo2, hr = _ramp()[:3]
    few = [[s, vo2[s], hr[s] if s < 5 else ""] for s in t]
    _write(tmp_path / "lab" / "a.csv", ["time", "VO2", "HR"], few)
    with pytest.raises(WearjaxFileError, match=r"HR in only 5 of its 90 s .* leave out the HR"):
        read_cpet(tmp_path / "lab" / "a.csv")
    most = [[s, vo2[s], hr[s] if s < 54 else ""] for s in t]
    _write(tmp_path / "lab" / "b.csv", ["time", "VO2", "HR"], most)
    assert int(read_cpet(tmp_path / "lab" / "b.csv").mask.sum()) == 54
    sessions, skipped = load_cpet_folder(tmp_path / "lab")
    assert [s.workout for s in sessions] == ["b"]
    assert [p.path.name for p in skipped] == ["a.csv"] and "HR in only 5" in skipped[0].reason


@pytest.mark.parametrize("marker", ["NA", "n/a", "-"])
def test_a_missing_marker_in_the_first_row_is_data_refused_by_its_line_not_a_unit(marker, tmp_path):
    """Until 2026-12-07 a first row with VO2 `NA` was read as a units row: "unknown unit
    'NA'", or with a Speed column "unknown speed unit '8.5'", naming no line."""
    rows = [[s, marker if s == 0 else 1500 + s, 100, 8.5] for s in range(N)]
    path = _write(tmp_path / "na.csv", ["time", "VO2", "HR", "Speed"], rows)
    with pytest.raises(WearjaxFileError, match=rf"line 2, column 'VO2': cannot read '{marker}'"):
        read_cpet(path)


def test_subject_values_out_of_range_refuse_the_file(tmp_path):
    """A height in mm (1750 -> 17.5 m after the cm rule) or a year of birth as the age was
    read as it stood; the manifest's ranges now hold for CPET files too."""
    t, vo2, hr, *_ = _ramp()
    cases = (("height", 1750, "height_m is 17.5, outside 0.5-2.5 m"),
             ("age", 1985, "age_years is 1985, outside 5-110 years"))  # fmt: skip
    for column, value, message in cases:
        rows = [[s, vo2[s], hr[s], value] for s in t]
        path = _write(tmp_path / f"{column}.csv", ["time", "VO2", "HR", column], rows)
        with pytest.raises(WearjaxFileError, match=message):
            read_cpet(path)


def test_a_rest_phase_timed_before_zero_reads_in_order():
    """m:ss times with a sign: "-1:30" is -90 s (it read -30 s, "-0:15" +15 s, so the rest
    phase ran backwards and its records were dropped)."""
    from wearjax.data.cpet_table import clock as _clock

    assert [_clock(c) for c in ("-1:30", "-0:15", "+0:05", "-90", " 1:02:03")] == [
        -90.0, -15.0, 5.0, -90.0, 3723.0,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        _clock("1:-30")


def test_warm_up_zeros_are_no_first_vo2_and_vco2_keeps_its_own_unit(tmp_path):
    """An analyser that exports 0 while it warms up: those rows are no reading (the test
    starts at the first real VO2, the value the model is given), and are counted. A unit
    declared for VO2 does not override the unit VCO2's own header names."""
    rows = [[s, 0 if s < 8 else 1.5 + s / 1000, 1200 + s, 100 + s] for s in range(N)]
    header = ["time", "VO2", "VCO2 (ml/min)", "HR"]
    s = read_cpet(_write(tmp_path / "warm.csv", header, rows), vo2_unit="L/min", min_length_s=10)
    meta = dict(s.metadata)
    assert meta["vo2_below_floor_masked"] == "8" and meta["seconds_before_first_vo2_dropped"] == "8"
    assert s.vo2[0] == pytest.approx(1508.0) and s.length == N - 8
    np.testing.assert_allclose(s.x[:2, s.channels.index("vco2")], [1208, 1209])  # mL/min as named


def test_a_ramp_test_with_no_whole_window_is_skipped_and_the_subjects_stay_numbered(
    tmp_path, monkeypatch
):
    """A test whose HR drops out in every 60 s stretch (yet reads in over half its seconds)
    has no window without a missing value: it is skipped with that reason, and the other
    tests' subjects are numbered 0..n-1 (until 2026-12-07 it took an id and left a hole
    that the subject-wise split refused)."""
    from wearjax.data import pyoxynet

    t = np.arange(200)
    for i in range(4):
        hr = 100 + 0.3 * t
        if i == 1:
            hr = np.where(t % 50 == 0, 0.0, hr)  # a dropout every 50 s
        rows = np.stack([hr, 1500 + 5 * t, 1400 + 5 * t, 40 + 0.2 * t, (t > 100) * 1.0], 1)
        lines = ["HR_I,VO2_I,VCO2_I,VE_I,domain"] + [",".join(map(str, r)) for r in rows]
        (tmp_path / f"ramp_real_test_{i}.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(pyoxynet, "pyoxynet_data_folder", lambda: tmp_path)
    w, skipped = pyoxynet.domain_windows()
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("ramp_real_test_1.csv", "no 60 s window without a missing value")
    ]
    assert sorted(set(w.subject.tolist())) == [0, 1, 2] and w.n_subjects == 3
