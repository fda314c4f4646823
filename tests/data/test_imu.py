"""Labelled IMU windows: the windowing, the NaN check, and the two shipped datasets (skipped
when their packages are not installed)."""

import numpy as np
import pytest

from wearjax.data.imu import basic_motions, check_windows, watch, windows
from wearjax.errors import WearjaxDataError


def test_windows_cut_every_hop_and_drop_the_tail():
    series = np.arange(23, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    w = windows(series, 10, 4)
    assert w.shape == (4, 10, 2)  # starts 0, 4, 8, 12 (16 would end past 23)
    np.testing.assert_array_equal(w[2, :, 0], np.arange(8, 18))
    assert windows(series[:5], 10, 4).shape == (0, 10, 2)
    for length, hop in ((10, 0), (10, -4), (0, 4)):  # was: ZeroDivisionError, or no windows
        with pytest.raises(WearjaxDataError, match="both must be at least one sample"):
            windows(series, length, hop)


def test_non_finite_values_are_named():
    x = np.zeros((3, 4, 2))
    x[1, 2, 0] = np.nan
    with pytest.raises(WearjaxDataError, match="set: 1 windows hold NaN"):
        check_windows(x, "set")


def test_basic_motions_has_the_official_split():
    pytest.importorskip("aeon")
    d = basic_motions()
    assert d.x.shape == (80, 100, 6) and d.rate == 10.0
    assert d.official_train.sum() == 40 and np.bincount(d.y).tolist() == [20, 20, 20, 20]


def test_watch_windows_keep_subjects_and_recordings():
    pytest.importorskip("seglearn")
    d = watch(window_s=4.0, hop_s=2.0)
    assert d.x.shape[1:] == (200, 6) and d.n_subjects == 10 and len(d.classes) == 7
    assert len(np.unique(d.recording)) == 140
    # a recording's windows share its subject and class
    for r in np.unique(d.recording)[:10]:
        assert len(np.unique(d.subject[d.recording == r])) == 1
        assert len(np.unique(d.y[d.recording == r])) == 1


def test_watch_subjects_are_numbered_over_the_windows_kept(caplog):
    """With 28 s windows some subjects' recordings are all too short: the others used to keep
    their numbers, so folds drew subjects with no window (a fold with nothing to validate)."""
    pytest.importorskip("seglearn")
    d = watch(window_s=28.0, hop_s=14.0)
    assert np.unique(d.subject).tolist() == list(range(d.n_subjects)) and d.n_subjects < 10
    assert "shorter than one window; skipped" in caplog.text


def _own(tmp_path, **arrays):
    rng = np.random.default_rng(0)
    base = {
        "x": rng.normal(size=(12, 30, 2)).astype(np.float32),
        "y": np.array(["rest", "run", "walk"] * 4),
        "subject": np.repeat(np.array(["ann", "bob", "cy", "di"]), 3),
        "rate": np.float64(1.0),
        "channels": np.array(["hr", "vo2"]),
    }
    base.update(arrays)
    path = tmp_path / "mine.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_own_windows_read_with_names_mapped_to_codes(tmp_path):
    from wearjax.data.imu import read_windows

    w = read_windows(_own(tmp_path))
    assert w.x.shape == (12, 30, 2) and w.x.dtype == np.float32 and w.rate == 1.0
    assert w.classes == ("rest", "run", "walk") and w.y.tolist() == [0, 1, 2] * 4
    assert w.n_subjects == 4 and w.subject.tolist() == np.repeat(np.arange(4), 3).tolist()
    assert w.channels == ("hr", "vo2") and w.official_train is None
    bare = read_windows(_own(tmp_path, subject=None, channels=None, y=np.arange(12) % 2))
    assert bare.n_subjects == 0 and bare.channels == ("ch0", "ch1") and bare.classes == ("0", "1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": None}, "no `y` array"),
        ({"rate": None}, "no `rate` array"),
        ({"x": np.zeros((12, 30))}, r"shape \(12, 30\); give windows as \[N, T, C\]"),
        ({"x": np.full((12, 30, 2), np.nan)}, "mine.npz: x: 12 windows hold NaN"),
        ({"x": np.ones((12, 30, 2), complex)}, "x holds complex128 values; give real numbers"),
        ({"x": np.ones((12, 30, 2), "m8[s]")}, r"x holds timedelta64\[s\] values; give real"),
        ({"rate": np.complex128(50)}, "rate must be one positive number"),
        ({"x": np.full((12, 30, 2), 1e39)}, "values up to 1e\\+39, beyond float32's range"),
        ({"rate": np.float64(-2.0)}, "rate must be one positive number"),
        ({"y": np.zeros(12)}, "every window's y is '0.0'; a probe needs two classes"),
        ({"subject": np.r_[np.zeros(11), np.nan]}, "subject holds NaN or inf; give every window"),
        (
            {"y": np.array(["walk", "run", np.nan] * 4)},
            r"y holds 'nan' at window 2, a missing value; give every window a y",
        ),
        ({"subject": np.array(["ann"] * 6 + ["None"] + ["bob"] * 5)}, "subject holds 'None' at"),
        ({"y": np.array(["walk", "run", " "] * 4)}, r"y holds ' ' at window 2, a missing value"),
        ({"rate": np.float64(np.inf)}, "rate must be one positive number"),
        ({"rate": np.array(["fast"])}, "rate must be one positive number"),
        ({"y": np.array([b"\xff"] * 6 + [b"a"] * 6)}, "y holds bytes that are not text"),
        ({"subject": np.zeros(5)}, r"subject has shape \(5,\); give one value per window"),
        ({"channels": np.array(["hr"])}, "channels names 1 channels, x has 2; give one name"),
        ({"train": np.ones(12, bool)}, "train marks every window or none"),
        ({"train": np.ones(12)}, "train must be a bool array"),
    ],
)
def test_own_windows_name_the_file_and_the_array_at_fault(tmp_path, change, message):
    from wearjax.data.imu import read_windows

    with pytest.raises(WearjaxDataError, match=message):
        read_windows(_own(tmp_path, **change))


def test_own_windows_saved_channels_first_are_flagged(tmp_path, caplog):
    from wearjax.data.imu import read_windows

    x = np.random.default_rng(0).normal(size=(12, 2, 30))  # aeon's [N, C, T]
    read_windows(_own(tmp_path, x=x, channels=None))
    assert "x has 30 channels of 2 samples each: if it is [N, C, T]" in caplog.text


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
    from wearjax.data.imu import read_windows

    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(WearjaxDataError, match="notes.npz: not a readable NPZ"):
        read_windows(path)


def test_an_object_array_or_a_single_array_file_is_named_with_its_fix(tmp_path):
    from wearjax.data.imu import read_windows

    path = tmp_path / "objects.npz"
    np.savez(path, x=np.zeros((4, 5, 1)), y=np.array([{"a": 1}] * 4, dtype=object), rate=1.0)
    with pytest.raises(WearjaxDataError, match=r"objects.npz: y is an array of Python objects"):
        read_windows(path)
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros((4, 5, 1)))
    with pytest.raises(WearjaxDataError, match=r"single.npz: one array \(np.save\)"):
        read_windows(single)


def test_bytes_names_read_as_text(tmp_path):
    from wearjax.data.imu import read_windows

    w = read_windows(
        _own(tmp_path, channels=np.array([b"hr", b"vo2"]), y=np.array([b"a", b"b"] * 6))
    )
    assert w.channels == ("hr", "vo2") and w.classes == ("a", "b")


def test_own_windows_keep_numeric_labels_in_numeric_order(tmp_path):
    """Labels 0..11 keep their codes (as text, '10' would sort before '2'), and a class named
    'null' (the background class of many activity sets) is read as a class."""
    from wearjax.data.imu import read_windows

    w = read_windows(_own(tmp_path, y=np.arange(12)))
    assert w.y.tolist() == list(range(12)) and w.classes[10] == "10"
    named = read_windows(_own(tmp_path, y=np.array(["null", "walk", "run"] * 4)))
    assert named.classes == ("null", "run", "walk") and named.y.tolist()[:3] == [0, 2, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": np.repeat([-1, 0, 1, 2], 3)}, r"subject holds -1 at window 0, an unknown"),
        ({"subject": np.array(["ann"] * 6 + ["null"] * 6)}, "subject holds 'null' at window 6"),
        (
            {"train": np.tile([True, False], 6), "recording": np.repeat(["r0", "r1", "r2"], 4)},
            r"3 recording\(s\) have windows on both sides of train \(e.g. 'r0'\)",
        ),
    ],
)
def test_own_windows_refuse_unknown_subjects_and_recordings_split_across(tmp_path, change, message):
    from wearjax.data.imu import read_windows

    with pytest.raises(WearjaxDataError, match=message):
        read_windows(_own(tmp_path, **change))
    if "train" in change:  # split by recording, the same file reads
        ok = change | {"train": np.repeat([True, True, False], 4)}
        assert read_windows(_own(tmp_path, **ok)).official_train.sum() == 8


def test_a_train_split_without_recordings_is_read_with_a_warning(tmp_path, caplog):
    """Without `recording` the reader cannot see one recording's overlapping windows on both
    sides of `train`, which would overstate every probe: it says so (until 2026-12-07 it read
    the split in silence), and says nothing when the recordings are given."""
    from wearjax.data.imu import read_windows

    with caplog.at_level("WARNING", logger="wearjax.data.imu"):
        read_windows(_own(tmp_path, train=np.tile([True, False], 6)))
    assert "cannot be checked; give `recording`" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wearjax.data.imu"):
        read_windows(_own(tmp_path, train=np.repeat([True, True, False], 4),
                          recording=np.repeat(["r0", "r1", "r2"], 4)))  # fmt: skip
    assert "give `recording`" not in caplog.text


def test_a_train_split_with_subjects_on_both_sides_is_read_with_a_warning(tmp_path, caplog):
    """A `train` split that puts one person's windows on both sides is read (a split by
    session may mean to), with a line saying the probe is scored on people it was fitted on;
    a split by subject reads in silence."""
    from wearjax.data.imu import read_windows

    rec = np.repeat(["r0", "r1", "r2", "r3", "r4", "r5"], 2)
    with caplog.at_level("WARNING", logger="wearjax.data.imu"):
        read_windows(_own(tmp_path, train=np.repeat([True, False], 6), recording=rec))
    assert "both sides of train" not in caplog.text
    with caplog.at_level("WARNING", logger="wearjax.data.imu"):
        read_windows(_own(tmp_path, train=np.tile([True, True, False], 4), recording=None))
    assert "4 subject(s) have windows on both sides of train" in caplog.text


def test_watch_windows_longer_than_every_recording_are_named():
    pytest.importorskip("seglearn")
    from wearjax.data.imu import watch

    with pytest.raises(WearjaxDataError, match=r"no recording holds one 1000 s window"):
        watch(window_s=1000.0)
