"""Which windows the virtual-sensing tracker and training samples read: ACC gaps, sessions
without ACC, non-finite estimates and sessions shorter than a sample's context."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.tasks.test_virtual import _recording
from wearjax.models.virtual import FLOOR_DB, track
from wearjax.tasks.virtual import (
    VirtualConfig,
    device_data,
    make_folds,
    make_task,
    split_sessions,
    tracked_windows,
)
from wearjax.tasks.virtual_data import spectral_sessions


def test_a_non_finite_estimate_is_skipped_by_the_tracker_and_tracked_as_nan():
    """Not refused (the study used to stop there): the filter holds through it, as through a
    window it is told to skip, and the tracked value there is NaN so it is counted."""
    hr = jnp.asarray([150.0, jnp.nan, 151.0, 153.0, 152.0])
    var = jnp.asarray([4.0, 4.0, jnp.inf, 4.0, 4.0])
    ok = jnp.ones(5, bool)
    mean, cov = track(hr, var, ok, 2.0)
    skip = jnp.asarray([True, False, False, True, True])
    want, want_cov = track(jnp.nan_to_num(hr), jnp.where(skip, var, 1.0), skip, 2.0)
    assert np.isnan(np.asarray(mean)[1:3]).all()
    np.testing.assert_allclose(np.asarray(mean)[[0, 3, 4]], np.asarray(want)[[0, 3, 4]])
    np.testing.assert_allclose(np.asarray(cov), np.asarray(want_cov))
    assert np.asarray(cov)[2] > np.asarray(cov)[0]  # held: the variance grew


def test_the_tracker_of_an_acc_setting_holds_through_acc_gaps_and_sessions_without_acc():
    rec = _recording(0, "a", seconds=120)
    acc, rate = rec.acc
    gap = acc.copy()
    gap[int(40 * rate) : int(60 * rate)] = np.nan
    s = spectral_sessions([rec._replace(acc=(gap, rate)), _recording(1, "b")._replace(acc=None)])
    data = device_data(s, floor_db=FLOOR_DB, reads_acc=True)
    for_acc, for_ppg = (np.asarray(tracked_windows(data, r)) for r in (True, False))
    np.testing.assert_array_equal(for_ppg, s.valid)
    assert not for_acc[1].any()  # no ACC at all
    holed = ~for_acc[0] & s.valid[0]
    assert 10 <= holed.sum() <= 14  # 20 s of gap reach (20 + 8) / 2 - 1 windows
    assert for_acc[0][~holed & s.valid[0]].all()
    # a session without ACC has no window an ACC setting may learn from or be scored on
    assert not s.acc_ok[1].any() and not s.labels()[1].any() and s.labels(False)[1].any()


def test_a_sample_longer_than_every_session_counts_each_window_once():
    """Sessions of 20 s (7 windows) under a 16-window context: the gather past the end
    repeats the last window; none of those repeats may count."""
    s = spectral_sessions([_recording(i, f"s{i}", seconds=20) for i in range(3)])
    data = device_data(s, floor_db=FLOOR_DB)
    fold = jax.tree_util.tree_map(lambda a: a[0], make_folds(s, split_sessions(s, 1)))
    config = VirtualConfig(width=8, latent=2, batch_size=3, context=16)
    acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, _ = make_task(config, "virtual").sample(
        data, fold, jax.random.key(0)
    )
    n = int(s.n_windows.max())
    assert n < 16
    for mask in (ok, ref, ppg_ok, acc_ok):
        mask = np.asarray(mask)
        assert mask[:, :n].any() and not mask[:, n:].any()
