"""Windows, folds and cohort stacking against plain NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.types import CHANNEL_UNITS, Session, bucket_length, stack_sessions
from wearjax.data.windows import gather_windows, window_index
from wearjax.errors import WearjaxDataError


def test_window_index_and_gather_match_numpy_slicing():
    lengths = np.array([130, 60, 59])
    idx = window_index(lengths, 60)
    assert idx.session.tolist() == [0, 0, 1]
    assert idx.start.tolist() == [0, 60, 0]
    overlapping = window_index(lengths, 60, stride=30)
    assert overlapping.session.tolist() == [0, 0, 0, 1]
    assert overlapping.start.tolist() == [0, 30, 60, 0]
    a = np.arange(3 * 130 * 2, dtype=np.float32).reshape(3, 130, 2)
    got = gather_windows(jnp.asarray(a), overlapping.session, overlapping.start, 60)
    ref = np.stack([a[s, t : t + 60] for s, t in zip([0, 0, 0, 1], [0, 30, 60, 0], strict=True)])
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(WearjaxDataError, match="no window of 200 s"):
        window_index(lengths, 200)


def test_leave_k_runners_out_holds_every_runner_out_once():
    folds = leave_k_runners_out(11, 3, seed=4)
    assert folds.shape == (4, 11)
    np.testing.assert_array_equal(folds.sum(0), np.ones(11))
    assert sorted(folds.sum(1).tolist()) == [2, 3, 3, 3]
    val = validation_runners(folds, seed=4)
    assert np.all(val.sum(1) == 1) and not np.any(val & folds)
    with pytest.raises(WearjaxDataError, match="needs more than 3 runners"):
        leave_k_runners_out(3, 3)


def _session(t, runner, hr=None, x=None):
    x = np.ones((t, len(CHANNEL_UNITS))) if x is None else x
    hr = np.full(t, 150.0) if hr is None else hr
    return Session(
        x=x, hr=hr, vo2=np.full(t, np.nan), mask=np.isfinite(hr), vo2_mask=np.zeros(t, bool),
        subject=np.array([1.7, 60.0, np.nan, 0.0]), runner=runner, channels=tuple(CHANNEL_UNITS),
    )  # fmt: skip


def test_stack_sessions_pads_to_a_bucket_and_masks():
    x = np.ones((70, 7))
    x[3:5, 2] = np.nan  # a dropout in one channel is held from the last value
    x[3, 2], x[2, 2] = np.nan, 7.0
    hr = np.full(70, 140.0)
    hr[10] = np.nan
    c = stack_sessions([_session(70, "b", hr, x), _session(30, "a")], bucket=60)
    assert c.x.shape == (2, 120, 7) and bucket_length(70, 60) == 120
    assert c.runner_names == ("a", "b") and c.runner.tolist() == [1, 0]
    assert c.lengths.tolist() == [70, 30]
    assert not np.any(np.isnan(np.asarray(c.x))) and not np.any(np.isnan(np.asarray(c.hr)))
    np.testing.assert_array_equal(c.x[0, 3:5, 2], [7.0, 7.0])
    assert not bool(c.mask[0, 10]) and not bool(c.mask[0, 70]) and bool(c.mask[0, 69])
    assert int(c.valid.sum()) == 100
    assert float(c.subject[0, 2]) == 0.0  # unknown age stored as 0, never NaN


def test_bad_sessions_raise_clear_errors():
    with pytest.raises(WearjaxDataError, match="field 'hr' has shape"):
        _session(10, "a", hr=np.zeros(9))
    with pytest.raises(WearjaxDataError, match="cohort would be empty"):
        stack_sessions([])
    other = Session(
        x=np.ones((5, 1)), hr=np.ones(5), vo2=np.ones(5), mask=np.ones(5, bool),
        vo2_mask=np.ones(5, bool), subject=np.zeros(4), runner="c", channels=("speed",),
    )  # fmt: skip
    with pytest.raises(WearjaxDataError, match="differ from the cohort"):
        stack_sessions([_session(5, "a"), other])
    with pytest.raises(WearjaxDataError, match="unknown channels"):
        Session(
            x=np.ones((5, 1)), hr=np.ones(5), vo2=np.ones(5), mask=np.ones(5, bool),
            vo2_mask=np.ones(5, bool), subject=np.zeros(4), runner="c", channels=("watts",),
        )  # fmt: skip
