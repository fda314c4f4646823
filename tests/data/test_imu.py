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
