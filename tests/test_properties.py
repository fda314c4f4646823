"""Property-based tests (hypothesis) of windowing, padding, folds, metrics and readers.

Each property is checked against an independent reference written here: a plain Python or
float64 NumPy loop. Shapes are fixed or drawn from small sets, so the JAX functions compile a
bounded number of times; examples are derandomized, so CI always runs the same ones.
"""

import math
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, special

from wearjax.cv import Split, padded_table, scatter
from wearjax.data.csv import read_running_csv
from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.sampled import read_sampled
from wearjax.data.signals import per_second, stack_signals
from wearjax.data.types import Session, Signal, bucket_length, stack_sessions
from wearjax.data.windows import (
    gather_seconds,
    gather_signal,
    gather_windows,
    sample_index,
    window_index,
    window_samples,
)
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import (
    bias,
    gaussian_crps,
    mae,
    mape,
    pearson_r,
    predictive_scores,
    r2,
    rmse,
    sd_diff,
    smooth_hr,
    transition_mask,
    within,
    zone_masks,
)

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    database=None,  # and writes no example database into the repository
    suppress_health_check=[HealthCheck.too_slow],  # the first example of a shape compiles
)

nan = np.nan


# -- windows and padding ----------------------------------------------------------------------


def _loop_window_index(lengths, width, stride):
    sessions, starts = [], []
    for s, length in enumerate(lengths):
        start = 0
        while start + width <= length:
            sessions.append(s)
            starts.append(start)
            start += stride
    return sessions, starts


@PROPERTY
@given(
    lengths=st.lists(st.integers(0, 200), min_size=1, max_size=6),
    width=st.integers(1, 80),
    stride=st.none() | st.integers(1, 80),
)
def test_window_index_lists_every_window_a_loop_finds(lengths, width, stride):
    sessions, starts = _loop_window_index(lengths, width, width if stride is None else stride)
    if not sessions:
        with pytest.raises(WearjaxDataError, match=f"no window of {width} s fits"):
            window_index(np.array(lengths), width, stride)
        return
    idx = window_index(np.array(lengths), width, stride)
    assert idx.n == len(sessions) and idx.width == width
    assert np.asarray(idx.session).tolist() == sessions
    assert np.asarray(idx.start).tolist() == starts


_ARRAY = np.arange(4 * 128 * 2, dtype=np.float32).reshape(4, 128, 2) % 997
_N_MAX = 128  # index tables are padded to this size, so gather compiles once per width
_gather = jax.jit(gather_windows, static_argnums=3)


@PROPERTY
@given(
    lengths=st.lists(st.integers(0, 128), min_size=4, max_size=4),
    width=st.sampled_from([8, 16, 30]),
    stride=st.integers(4, 40),
)
def test_every_gathered_window_is_the_slice_it_claims(lengths, width, stride):
    assume(max(lengths) >= width)
    idx = window_index(np.array(lengths), width, stride)
    n = idx.n
    assert n <= _N_MAX
    session = np.zeros(_N_MAX, np.int32)
    start = np.zeros(_N_MAX, np.int32)
    session[:n], start[:n] = np.asarray(idx.session), np.asarray(idx.start)
    got = np.asarray(_gather(jnp.asarray(_ARRAY), jnp.asarray(session), jnp.asarray(start), width))
    for i in range(n):
        s, t = int(session[i]), int(start[i])
        assert t + width <= lengths[s]  # inside its session
        np.testing.assert_array_equal(got[i], _ARRAY[s, t : t + width])


_gather_seconds = jax.jit(gather_seconds, static_argnums=(3, 4))


@PROPERTY
@given(
    session=hnp.arrays(np.int32, 12, elements=st.integers(0, 2)),
    quarter=hnp.arrays(np.int32, 12, elements=st.integers(-40, 200)),  # starts in 1/4 s
    width_rate=st.sampled_from([(1.0, 1.0), (2.0, 2.5), (3.25, 4.0), (0.5, 4.0)]),
)
def test_windows_in_seconds_match_a_loop_and_are_zero_outside(session, quarter, width_rate):
    width_s, rate = width_rate
    array = _ARRAY[:3, :40]
    start_s = quarter.astype(np.float32) / 4  # exact in float32, so rounding agrees
    got = _gather_seconds(
        jnp.asarray(array), jnp.asarray(session), jnp.asarray(start_s), width_s, rate
    )
    w = window_samples(width_s, rate)
    assert w == math.floor(width_s * rate + 0.5) and got.shape == (12, w, 2)
    idx = np.asarray(sample_index(jnp.asarray(start_s), width_s, rate))
    for i in range(12):
        first = math.floor(float(start_s[i]) * rate + 0.5)
        assert idx[i].tolist() == list(range(first, first + w))
        for j in range(w):
            k = first + j
            expected = array[session[i], k] if 0 <= k < array.shape[1] else np.zeros(2)
            np.testing.assert_array_equal(got[i, j], expected)


_signal_values = st.lists(
    st.one_of(st.floats(-1e3, 1e3, width=32), st.just(nan)), min_size=1, max_size=30
)


def _loop_hold(values):
    """NaN replaced by the last finite value before it, the first finite value before that
    (0 if there is none)."""
    out, last = [], next((v for v in values if math.isfinite(v)), 0.0)
    for v in values:
        last = v if math.isfinite(v) else last
        out.append(last)
    return out


@PROPERTY
@given(
    signals=st.lists(
        st.tuples(_signal_values, st.lists(st.booleans(), min_size=30, max_size=30)),
        min_size=1,
        max_size=4,
    ),
    bucket_s=st.sampled_from([1.0, 2.5, 4.0, 10.0]),
)
def test_stack_signals_pads_holds_and_masks_like_a_loop(signals, bucket_s):
    rate = 2.0
    made = [
        Signal(np.array(v, np.float32)[:, None], rate, np.array(m[: len(v)]), ("ppg",), ("a.u.",))
        for v, m in signals
    ]
    stack = stack_signals(made, bucket_s=bucket_s)
    bucket = max(1, math.floor(bucket_s * rate + 0.5))
    longest = max(len(v) for v, _ in signals)
    t = np.asarray(stack.values).shape[1]
    assert t % bucket == 0 and t >= longest and t - bucket < max(longest, 1)
    values, mask = np.asarray(stack.values)[..., 0], np.asarray(stack.mask)
    assert np.asarray(stack.lengths).tolist() == [len(v) for v, _ in signals]
    for i, (v, m) in enumerate(signals):
        n = len(v)
        np.testing.assert_array_equal(values[i, :n], np.array(_loop_hold(v), np.float32))
        assert mask[i, :n].tolist() == [
            bool(ok and math.isfinite(x)) for x, ok in zip(v, m[:n], strict=True)
        ]
        assert not mask[i, n:].any() and not values[i, n:].any()  # padding: 0, masked


@PROPERTY
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    quarter=hnp.arrays(np.int32, 8, elements=st.integers(-20, 200)),
    session=hnp.arrays(np.int32, 8, elements=st.integers(0, 2)),
    seed=st.integers(0, 2**16),
)
def test_signal_windows_mask_padding_and_outside_samples(lengths, quarter, session, seed):
    rng = np.random.default_rng(seed)
    signals = [
        Signal(rng.normal(size=(n, 1)).astype(np.float32), 4.0, rng.random(n) < 0.8, ("a",), ("",))
        for n in lengths
    ]
    stack = stack_signals(signals, bucket_s=12.5)  # 50 samples: one shape for every example
    session = np.minimum(session, len(lengths) - 1).astype(np.int32)
    start_s = quarter.astype(np.float32) / 4
    if len(lengths) < 3:  # fixed-size tables: pad the stack with empty sessions
        pad = 3 - len(lengths)
        stack_values = jnp.concatenate([stack.values, jnp.zeros((pad, 50, 1), jnp.float32)])
        stack_mask = jnp.concatenate([stack.mask, jnp.zeros((pad, 50), bool)])
        stack = type(stack)(stack_values, stack_mask, jnp.asarray([*lengths, *[0] * pad]),
                            4.0, ("a",), ("",))  # fmt: skip
    values, mask = gather_signal(stack, jnp.asarray(session), jnp.asarray(start_s), 2.0)
    values, mask = np.asarray(values), np.asarray(mask)
    for i in range(8):
        s, first = int(session[i]), math.floor(float(start_s[i]) * 4.0 + 0.5)
        for j in range(8):
            k = first + j
            inside = 0 <= k < lengths[s]
            expected = inside and bool(signals[s].mask[k])
            assert mask[i, j] == expected
            expected_value = signals[s].values[k, 0] if inside else 0.0  # padding, outside: 0
            assert values[i, j, 0] == expected_value


@PROPERTY
@given(
    values=_signal_values,
    rate=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0]),
    length=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_per_second_means_fast_and_holds_slow_signals_like_a_loop(values, rate, length, seed):
    mask = np.random.default_rng(seed).random(len(values)) < 0.7
    sig = Signal(np.array(values, np.float32)[:, None], rate, mask, ("hr",), ("bpm",))
    got, seen = per_second(sig, length)
    v = np.array(values, np.float32).astype(np.float64)
    for second in range(length):
        if rate >= 1.0:
            inside = [k for k in range(len(v)) if int(k / rate + 1e-9) == second]
            picked = [v[k] for k in inside if mask[k] and math.isfinite(v[k])]
            expected = sum(picked) / len(picked) if picked else nan
        else:
            k = int(second * rate + 1e-9)
            ok = k < len(v) and mask[k] and math.isfinite(v[k])
            expected = v[k] if ok else nan
        assert seen[second] == math.isfinite(expected)
        np.testing.assert_allclose(got[second, 0], expected, rtol=1e-12)


@PROPERTY
@given(
    sessions=st.lists(
        st.tuples(st.integers(1, 50), st.sampled_from("abc"), st.integers(0, 2**16)),
        min_size=1,
        max_size=4,
    ),
    bucket=st.sampled_from([1, 7, 16, 60]),
)
def test_stack_sessions_pads_masks_and_indexes_runners_like_a_loop(sessions, bucket):
    made = []
    for length, runner, seed in sessions:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(length, 2)).astype(np.float32)
        x[rng.random((length, 2)) < 0.2] = nan
        hr = np.where(rng.random(length) < 0.8, rng.uniform(60, 200, length), nan)
        mask = np.isfinite(hr) & (rng.random(length) < 0.9)
        made.append(Session(
            x=x, hr=hr.astype(np.float32), vo2=np.full(length, nan, np.float32), mask=mask,
            vo2_mask=np.zeros(length, bool), subject=np.array([1.7, 60, nan, 1], np.float32),
            runner=runner, channels=("speed", "cadence"),
        ))  # fmt: skip
    c = stack_sessions(made, bucket=bucket)
    x, hr_, mask_ = np.asarray(c.x), np.asarray(c.hr), np.asarray(c.mask)
    t = bucket_length(max(len_ for len_, _, _ in sessions), bucket)
    assert t % bucket == 0 and t >= max(len_ for len_, _, _ in sessions)
    assert np.asarray(c.x).shape == (len(made), t, 2)
    names = sorted({r for _, r, _ in sessions})
    assert c.runner_names == tuple(names)
    assert [names[i] for i in np.asarray(c.runner)] == [r for _, r, _ in sessions]
    for i, s in enumerate(made):
        n = s.length
        for j in range(2):
            held = np.array(_loop_hold(s.x[:, j].tolist()), np.float32)
            np.testing.assert_array_equal(x[i, :n, j], held)
        ok = s.mask & np.isfinite(s.hr)
        np.testing.assert_array_equal(mask_[i, :n], ok)
        np.testing.assert_array_equal(hr_[i, :n], np.where(ok, s.hr, 0))
        assert not mask_[i, n:].any() and not x[i, n:].any() and not hr_[i, n:].any()
        subject = np.array([1.7, 60, 0, 1], np.float32)  # NaN stored as 0
        np.testing.assert_array_equal(np.asarray(c.subject[i]), subject)


# -- folds ------------------------------------------------------------------------------------


@PROPERTY
@given(n=st.integers(2, 40), k=st.integers(1, 10), seed=st.integers(0, 1000))
def test_leave_k_out_holds_every_runner_out_exactly_once(n, k, seed):
    if n <= k:
        with pytest.raises(WearjaxDataError, match=f"needs more than {k} runners"):
            leave_k_runners_out(n, k, seed=seed)
        return
    folds = leave_k_runners_out(n, k, seed=seed)
    n_folds = -(-n // k)
    assert folds.shape == (n_folds, n) and folds.dtype == bool
    assert folds.sum(0).tolist() == [1] * n  # every runner tested exactly once
    sizes = folds.sum(1).tolist()
    assert sizes[:-1] == [k] * (n_folds - 1) and sizes[-1] == n - k * (n_folds - 1)
    assert np.array_equal(folds, leave_k_runners_out(n, k, seed=seed))  # seeded
    n_val = 1 + seed % 3
    if min(n - s for s in sizes) <= n_val:
        with pytest.raises(WearjaxDataError, match="training runners"):
            validation_runners(folds, n_val, seed=seed)
        return
    val = validation_runners(folds, n_val, seed=seed)
    assert val.sum(1).tolist() == [n_val] * n_folds and not np.any(val & folds)


@PROPERTY
@given(
    subject=st.lists(st.integers(0, 7), min_size=1, max_size=30),
    k_out=st.integers(1, 3),
    n_validation=st.integers(1, 2),
    seed=st.integers(0, 1000),
)
def test_split_by_subject_partitions_sessions_and_round_trips(subject, k_out, n_validation, seed):
    subject = np.unique(subject, return_inverse=True)[1]  # 0..n-1: gaps are refused, tested
    n_subjects = int(subject.max()) + 1
    try:
        split = Split.by_subject(subject, n_subjects, k_out, n_validation=n_validation, seed=seed)
    except WearjaxDataError:  # too few subjects for k_out test and n_validation others
        assume(False)
    n = len(subject)
    roles = split.test.astype(int) + split.validation + split.train
    assert np.all(roles == 1)  # test, validation and train: disjoint, covering every session
    assert split.test.sum(0).tolist() == [1] * n  # every session tested exactly once
    for k in range(split.n_folds):  # a subject's sessions share their role
        for s in range(n_subjects):
            for role in (split.test, split.validation, split.train):
                assert len(set(role[k, subject == s].tolist())) <= 1
    owner = split.owner
    for s in range(n):
        assert owner[s] == next(k for k in range(split.n_folds) if split.test[k, s])
    _check_table_round_trips(split)


def _check_table_round_trips(split: Split) -> None:
    n = split.test.shape[1]
    for which in ("test", "validation", "train"):
        mask = getattr(split, which)
        idx, ok = split.held_out_table(which)
        assert idx.shape == ok.shape and idx.shape[1] == max(1, mask.sum(1).max())
        for k in range(split.n_folds):
            assert idx[k][ok[k]].tolist() == np.flatnonzero(mask[k]).tolist()
            assert not idx[k][~ok[k]].any()  # padded with 0
    idx, ok = split.held_out_table("test")
    out = np.where(ok, idx + 1, -7).astype(np.float32)[..., None] * np.ones(3, np.float32)
    full = scatter(out, idx, ok, n)  # each session gets its own value back, from its fold
    np.testing.assert_array_equal(full[:, 0], np.where(split.test.any(0), np.arange(n) + 1, 0))
    if split.train.any():
        weights = split.sampling_weights() if split.train.any(1).all() else None
        if weights is not None:
            np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
            assert not np.any(weights[~split.train])


@PROPERTY
@given(
    order=st.lists(st.integers(0, 20), min_size=1, max_size=25),
    test_fraction=st.floats(0.0, 0.9),
    n_validation=st.integers(1, 3),
    n_folds=st.integers(1, 3),
)
def test_chronological_split_trains_on_the_past_tests_on_the_future(
    order, test_fraction, n_validation, n_folds
):
    with pytest.raises(WearjaxDataError, match="n_validation=0: each fold needs 1 or more"):
        Split.chronological(order, test_fraction=test_fraction, n_validation=0, n_folds=n_folds)
    n = len(order)
    n_test = max(1, round(test_fraction * n))
    kwargs = dict(test_fraction=test_fraction, n_validation=n_validation, n_folds=n_folds)
    if n - n_folds * n_test - n_validation < 1:
        with pytest.raises(WearjaxDataError, match="leaves none to train on"):
            Split.chronological(order, **kwargs)
        return
    split = Split.chronological(order, **kwargs)
    assert split.n_folds == n_folds
    # the reference: sessions sorted by (order, position); fold k tests the k-th of the last
    # n_folds blocks, validates on the n_validation before it and trains on all earlier ones
    ranked = sorted(range(n), key=lambda s: (order[s], s))
    for k in range(n_folds):
        first = n - (n_folds - k) * n_test
        expected = {
            "test": ranked[first : first + n_test],
            "validation": ranked[first - n_validation : first],
            "train": ranked[: first - n_validation],
        }
        for which, sessions in expected.items():
            assert np.flatnonzero(getattr(split, which)[k]).tolist() == sorted(sessions)
    owner = {s: k for k in range(n_folds) for s in np.flatnonzero(split.test[k])}
    assert split.owner.tolist() == [owner.get(s, -1) for s in range(n)]
    # a fold's band draws on the folds before it only
    np.testing.assert_array_equal(split.calibrate_from, np.tril(np.ones((n_folds,) * 2), -1))
    _check_table_round_trips(split)


@PROPERTY
@given(mask=hnp.arrays(np.bool_, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9)))
def test_padded_table_lists_true_entries_in_order(mask):
    idx, ok = padded_table(mask)
    assert idx.shape == (mask.shape[0], max(1, mask.sum(1).max(initial=0)))
    for k, row in enumerate(mask):
        assert idx[k][ok[k]].tolist() == [j for j, b in enumerate(row) if b]
        assert ok[k].tolist() == [j < row.sum() for j in range(idx.shape[1])]


# -- metrics ----------------------------------------------------------------------------------

N = 48  # samples per metric example: one shape, one compilation
REDUCTIONS = {"mae": mae, "rmse": rmse, "mape": mape, "bias": bias, "sd_diff": sd_diff,
              "pearson_r": pearson_r, "r2": r2}  # fmt: skip


@jax.jit
def _metrics(pred, true, mask):
    out = {name: f(pred, true, mask) for name, f in REDUCTIONS.items()}
    return out | {"within": within(pred, true, mask, 5.0)}


def _reference(pred, true, mask) -> dict[str, float]:
    """float64 NumPy metrics of the masked samples (NaN where undefined, as documented)."""
    p, t = pred[mask].astype(np.float64), true[mask].astype(np.float64)
    n = p.size
    if n == 0:
        return dict.fromkeys([*REDUCTIONS, "within"], nan)
    d = p - t
    ss_tot = np.sum((t - t.mean()) ** 2)
    sp, st_ = np.sqrt(np.sum((p - p.mean()) ** 2)), np.sqrt(ss_tot)
    return {
        "mae": np.mean(np.abs(d)),
        "rmse": np.sqrt(np.mean(d**2)),
        "mape": 100 * np.mean(np.abs(d) / np.abs(t)),
        "bias": np.mean(d),
        "sd_diff": np.std(d, ddof=1) if n > 1 else nan,
        "pearson_r": np.sum((p - p.mean()) * (t - t.mean())) / (sp * st_) if sp * st_ > 0 else nan,
        "r2": 1 - np.sum(d**2) / ss_tot if ss_tot > 0 else nan,
        # |pred - true| <= 5 judged on the float32 difference the metric computes
        "within": np.mean(np.abs(pred[mask] - true[mask]) <= np.float32(5.0)),
    }


_hr = hnp.arrays(np.float32, N, elements=st.floats(40, 220, width=32))
_noise = hnp.arrays(np.float32, N, elements=st.floats(-30, 30, width=32))
_mask = hnp.arrays(np.bool_, N)


@PROPERTY
@given(true=_hr, noise=_noise, mask=_mask, seed=st.integers(0, 2**16))
def test_masked_metrics_equal_float64_numpy_and_ignore_order_and_padding(true, noise, mask, seed):
    pred = (true + noise).astype(np.float32)
    got = {
        k: float(v)
        for k, v in _metrics(jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask)).items()
    }
    ref = _reference(pred, true, mask)
    t = true[mask].astype(np.float64)
    p = pred[mask].astype(np.float64)
    for name in ref:
        if name in ("pearson_r", "r2") and t.size > 1:
            # float32 cancellation: compared only where the spread is well above rounding (a
            # constant truth is test_pearson_and_r2_of_constant_truth_are_nan)
            if min(np.ptp(t), np.ptp(p)) < 1.0:
                continue
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=1e-3, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-3, err_msg=name)
    # The same samples in another order, with NaN and huge values under the False mask.
    order = np.random.default_rng(seed).permutation(N)
    junk = np.where(np.arange(N) % 2, np.float32(nan), np.float32(1e30))
    shuffled = {
        k: float(v)
        for k, v in _metrics(
            jnp.asarray(np.where(mask, pred, junk)[order]),
            jnp.asarray(np.where(mask, true, junk)[order]),
            jnp.asarray(mask[order]),
        ).items()
    }
    for name in got:
        np.testing.assert_allclose(shuffled[name], got[name], rtol=1e-4, atol=1e-4, err_msg=name)


@PROPERTY
@given(true=_hr, noise=_noise, n=st.integers(0, 1))
def test_metrics_of_no_sample_or_one_are_nan_as_documented(true, noise, n):
    pred = (true + noise).astype(np.float32)
    mask = np.arange(N) < n
    got = _metrics(jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask))
    undefined = set(got) if n == 0 else {"sd_diff", "pearson_r", "r2"}
    for name, value in got.items():
        assert np.isnan(float(value)) == (name in undefined), name


def test_pearson_and_r2_of_constant_truth_are_nan():
    """A float32 mean of a constant is off by an ulp; the metrics must still call it constant."""
    true = np.full(N, 40.916058, np.float32)  # found by hypothesis: 48 copies of this value
    pred = (true + np.linspace(-3, 3, N)).astype(np.float32)
    mask = jnp.ones(N, bool)
    got = _metrics(jnp.asarray(pred), jnp.asarray(true), mask)
    assert np.isnan(float(got["r2"]))
    got = _metrics(jnp.asarray(true), jnp.asarray(true), mask)  # both constant
    assert np.isnan(float(got["pearson_r"])) and np.isnan(float(got["r2"]))


@PROPERTY
@given(true=_hr, mask=_mask, lo=st.floats(60, 150), span=st.floats(1, 60))
def test_zone_masks_partition_the_mask_like_a_loop(true, mask, lo, span):
    edges = (lo, lo + span)
    zones = {
        k: np.asarray(v) for k, v in zone_masks(jnp.asarray(true), jnp.asarray(mask), edges).items()
    }
    for i in range(N):
        expected = None
        if mask[i]:
            expected = "low" if true[i] < edges[0] else "medium" if true[i] < edges[1] else "high"
        assert [name for name, z in zones.items() if z[i]] == ([expected] if expected else [])


_smooth = jax.jit(smooth_hr, static_argnames="width")
_transition = jax.jit(transition_mask, static_argnames=("half_width", "smooth"))


@PROPERTY
@given(true=_hr, mask=_mask, width=st.sampled_from([1, 3, 5]), half=st.sampled_from([4, 10]))
def test_smoothing_and_transitions_follow_their_documented_loops(true, mask, width, half):
    s, ok = (np.asarray(a) for a in _smooth(jnp.asarray(true), jnp.asarray(mask), width=width))
    r = width // 2
    for t in range(N):
        near = [float(true[j]) for j in range(max(0, t - r), min(N, t + r + 1)) if mask[j]]
        assert ok[t] == bool(near)
        np.testing.assert_allclose(s[t], sum(near) / len(near) if near else 0.0, rtol=1e-5)
    moving = np.asarray(
        _transition(jnp.asarray(true), jnp.asarray(mask), half_width=half, smooth=width)
    )
    for t in range(N):
        if not mask[t]:
            assert not moving[t]
            continue
        right = max(j for j in range(0, min(N - 1, t + half) + 1) if ok[j])
        left = min(j for j in range(max(0, t - half), N) if ok[j])
        assert t - half <= left <= t <= right <= t + half
        assert moving[t] == (abs(np.float32(s[right] - s[left])) >= 10.0)


def _crps_integral(mu, sd, y):
    """CRPS = integral of (F(x) - 1[x >= y])^2 dx, numerically (F the normal CDF)."""
    lo, hi = min(mu, y) - 40 * sd, max(mu, y) + 40 * sd
    below = integrate.quad(lambda x: special.ndtr((x - mu) / sd) ** 2, lo, y)[0]
    above = integrate.quad(lambda x: special.ndtr((mu - x) / sd) ** 2, y, hi)[0]
    return below + above


@PROPERTY
@given(
    pred=hnp.arrays(np.float32, 6, elements=st.floats(-5, 5, width=32)),
    var=hnp.arrays(np.float32, 6, elements=st.floats(1 / 64, 4, width=32)),
    true=hnp.arrays(np.float32, 6, elements=st.floats(-5, 5, width=32)),
    mask=hnp.arrays(np.bool_, 6),
)
def test_gaussian_scores_equal_their_integrals_and_float64_means(pred, var, true, mask):
    crps = np.asarray(gaussian_crps(jnp.asarray(pred), jnp.asarray(var), jnp.asarray(true)))
    sd = np.sqrt(var.astype(np.float64))
    for i in range(6):
        expected = _crps_integral(float(pred[i]), sd[i], float(true[i]))
        np.testing.assert_allclose(crps[i], expected, rtol=1e-4, atol=1e-5)
    scores = predictive_scores(*(jnp.asarray(a) for a in (pred, var, true, mask)))
    z = (true.astype(np.float64) - pred) / sd
    n = mask.sum() if mask.any() else np.nan  # no scored second: every score is undefined
    expected = {
        "coverage_2sd": np.sum(mask & (np.abs(z) <= 2)) / n,
        "mean_sd": np.sum(sd[mask]) / n,
        "nll": np.sum(0.5 * (np.log(2 * np.pi * var[mask]) + z[mask] ** 2)) / n,
        "crps": np.sum(crps[mask]) / n,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(float(scores[name]), value, rtol=1e-4, atol=1e-5, err_msg=name)


# -- readers ----------------------------------------------------------------------------------


def _loop_grid(times, hr, channels, max_gap=10.0):
    """The 1 Hz grid of `wearjax.data.readers`, as a loop: records to their nearest second,
    means per second, HR filled only in unrecorded seconds of short gaps, channels interpolated
    between observations at most `max_gap` apart and held across longer gaps."""
    second = [math.floor(t - times[0] + 0.5) for t in times]
    length = second[-1] + 1
    recorded = sorted(set(second))

    def per_second(values):
        buckets = {}
        for s, v in zip(second, values, strict=True):
            if math.isfinite(v):
                buckets.setdefault(s, []).append(v)
        return [sum(buckets[s]) / len(buckets[s]) if s in buckets else nan for s in range(length)]

    out_hr = per_second(hr)
    for k in range(length):
        if k in recorded:
            continue
        a, b = max(r for r in recorded if r < k), min(r for r in recorded if r > k)
        va, vb = out_hr[a], out_hr[b]
        if b - a <= max_gap and math.isfinite(va) and math.isfinite(vb):
            out_hr[k] = va + (vb - va) * (k - a) / (b - a)
    out = {}
    for name, values in channels.items():
        v = per_second(values)
        seen = [k for k in range(length) if math.isfinite(v[k])]
        if not seen:
            continue  # a channel never observed is left out
        filled = []
        for k in range(length):
            if k < seen[0] or k > seen[-1]:
                filled.append(nan)
            elif k in seen:
                filled.append(v[k])
            else:
                a, b = max(j for j in seen if j < k), min(j for j in seen if j > k)
                filled.append(
                    v[a] + (v[b] - v[a]) * (k - a) / (b - a) if b - a <= max_gap else v[a]
                )
        out[name] = filled
    return length, out_hr, out


def _cells(draw, n, strategy, p_missing):
    return [None if draw(st.floats(0, 1)) < p_missing else draw(strategy) for _ in range(n)]


@st.composite
def running_csvs(draw):
    """Rows of a valid running CSV: every `step` s, spanning at least 60 s."""
    step = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]))
    n = draw(st.integers(math.ceil(60 / step) + 1, math.ceil(60 / step) + 40))
    start = draw(st.integers(1_500_000_000, 1_700_000_000))
    zone = draw(st.sampled_from([None, 0, 2, -5]))
    p = draw(st.sampled_from([0.0, 0.1, 0.4]))
    return dict(
        step=step,
        start=start,
        zone=zone,
        hr=_cells(draw, n, st.integers(40, 220), p),
        speed=_cells(draw, n, st.floats(0, 6).map(lambda v: round(v, 3)), p),
        cadence=_cells(draw, n, st.integers(70, 95), p),
        fractional=_cells(draw, n, st.sampled_from([0.0, 0.5]), 0.0),
        altitude=_cells(draw, n, st.floats(-50, 3000).map(lambda v: round(v, 1)), p),
    )


def _stamp(seconds: float, zone) -> str | float:
    """An ISO 8601 time in the given zone (None: no zone, read as UTC), or POSIX seconds."""
    if zone == "seconds":
        return seconds
    moment = datetime.fromtimestamp(seconds, UTC)
    if zone is None:
        return moment.replace(tzinfo=None).isoformat(sep=" ")
    return moment.astimezone(timezone(timedelta(hours=zone))).isoformat(sep=" ")


@settings(PROPERTY, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(run=running_csvs(), numeric=st.booleans())
def test_running_csv_values_round_trip_onto_the_1hz_grid(run, numeric):
    n = len(run["hr"])
    times = [run["start"] + k * run["step"] for k in range(n)]
    header = ["timestamp", "heart_rate", "enhanced_speed", "cadence", "fractional_cadence",
              "enhanced_altitude"]  # fmt: skip
    lines = [",".join(header)]
    for k in range(n):
        cells = [_stamp(times[k], "seconds" if numeric else run["zone"])]
        cells += [run[c][k] for c in ("hr", "speed", "cadence", "fractional", "altitude")]
        lines.append(",".join("" if c is None else str(c) for c in cells))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.csv"
        path.write_text("\n".join(lines) + "\n")
        s = read_running_csv(path)
    f = [nan if v is None else float(v) for v in run["fractional"]]

    def floats(name):
        return [nan if v is None else float(v) for v in run[name]]

    cadence = [
        c + (x if math.isfinite(x) else 0.0) for c, x in zip(floats("cadence"), f, strict=True)
    ]
    length, hr, channels = _loop_grid(
        [t - times[0] for t in times], floats("hr"),
        {"speed": floats("speed"), "cadence": cadence, "altitude": floats("altitude")},
    )  # fmt: skip
    assert s.length == length and s.channels == tuple(channels)
    np.testing.assert_allclose(s.hr, np.array(hr, np.float32), rtol=1e-6)
    np.testing.assert_array_equal(s.mask, np.isfinite(hr))
    for j, name in enumerate(s.channels):
        np.testing.assert_allclose(
            s.x[:, j], np.array(channels[name], np.float32), rtol=1e-6, err_msg=name
        )
    assert s.runner == "run" and not s.vo2_mask.any()


@PROPERTY
@given(
    rate=st.sampled_from([8.0, 12.5, 16.0, 25.0, 32.0, 50.0, 64.0, 100.0, 128.0]),
    n=st.integers(2, 300),
    start=st.integers(0, 10**6),
    seed=st.integers(0, 2**16),
)
def test_sampled_csv_values_and_rate_round_trip(rate, n, start, seed):
    rng = np.random.default_rng(seed)
    ppg = np.round(rng.normal(size=n), 5)
    acc = np.round(rng.normal(size=(n, 3)), 4)
    ppg[rng.random(n) < 0.1] = nan  # written empty: masked
    lines = ["time,ppg,acc_x,acc_y,acc_z"]
    for k in range(n):
        cells = [f"{start + k / rate:.6f}", "" if np.isnan(ppg[k]) else str(float(ppg[k]))]
        lines.append(",".join(cells + [str(float(a)) for a in acc[k]]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wrist.csv"
        path.write_text("\n".join(lines) + "\n")
        s = read_sampled(path)
    assert list(s.signals) == ["ppg", "acc"]
    p, a = s.signals["ppg"], s.signals["acc"]
    assert p.rate_hz == rate == a.rate_hz and a.channels == ("acc_x", "acc_y", "acc_z")
    np.testing.assert_array_equal(p.values[:, 0], ppg.astype(np.float32))
    np.testing.assert_array_equal(p.mask, np.isfinite(ppg))
    np.testing.assert_array_equal(a.values, acc.astype(np.float32))
    assert s.length == max(1, math.ceil(n / rate - 1e-9)) and not s.mask.any()
