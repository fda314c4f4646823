"""Signals at any rate: validation, sessions holding them, stacking, per-second summaries and
windows in seconds that align across rates, against NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import raises_naming
from wearjax.data.signals import per_second, stack_signal, stack_signals
from wearjax.data.types import Session, Signal
from wearjax.data.windows import gather_seconds, gather_signal, sample_index, window_samples
from wearjax.errors import WearjaxDataError


def _signal(values, rate, mask=None, name="ppg", unit="a.u."):
    values = np.asarray(values, np.float32).reshape(len(values), -1)
    channels = (name,) if values.shape[1] == 1 else tuple(f"{name}_{i}" for i in range(3))
    mask = np.ones(len(values), bool) if mask is None else np.asarray(mask, bool)
    return Signal(values, rate, mask, channels, (unit,) * len(channels))


def _session(t=10, **fields):
    base = dict(
        x=np.zeros((t, 1), np.float32), hr=np.full(t, 120.0), vo2=np.full(t, np.nan),
        mask=np.ones(t, bool), vo2_mask=np.zeros(t, bool), subject=np.zeros(4),
        runner="r", channels=("speed",), source="mem.csv",
    )  # fmt: skip
    return Session(**(base | fields))


def test_signal_times_duration_and_validation():
    s = _signal(np.arange(6.0), 4.0)
    np.testing.assert_array_equal(s.times_s, [0, 0.25, 0.5, 0.75, 1.0, 1.25])
    assert s.duration_s == 1.5 and s.length == 6 and s.rate_hz == 4.0
    ones, mask = np.ones((4, 1), np.float32), np.ones(4, bool)
    cases = [
        (dict(values=np.ones(4)), "field 'values' has shape \\(4,\\), expected \\[time, 1\\]"),
        (dict(channels=("a", "b")), "field 'values' has shape \\(4, 1\\), expected \\[time, 2\\]"),
        (dict(units=("a", "b")), "field 'units' has 2 entries for 1 channels"),
        (dict(mask=np.ones(3, bool)), "field 'mask' is bool\\[3\\], expected bool\\[4\\]"),
        (dict(mask=np.ones(4)), "field 'mask' is float64\\[4\\], expected bool\\[4\\]"),
        (dict(rate_hz=0.0), "field 'rate_hz' is 0.0, expected a positive number"),
        (dict(rate_hz=float("nan")), "field 'rate_hz' is nan, expected a positive"),
    ]
    for change, message in cases:
        args = dict(values=ones, rate_hz=1.0, mask=mask, channels=("a",), units=("",)) | change
        with raises_naming("values" if "values" in change else "", message):
            Signal(**args)


def test_session_holds_signals_at_their_own_rates_beside_the_1hz_fields():
    ppg = _signal(np.sin(np.arange(640) / 64), 64.0)
    acc = Signal(np.ones((320, 3), np.float32), 32.0, np.ones(320, bool),
                 ("acc_x", "acc_y", "acc_z"), ("g", "g", "g"))  # fmt: skip
    ref = _signal([100.0, np.nan, 104.0, 106.0, 108.0], 0.5, [1, 0, 1, 1, 1], "hr", "bpm")
    x = np.array([[3.0, 250.0]] * 9 + [[np.nan, 260.0]], np.float32)
    s = _session(x=x, channels=("speed", "work_rate"), signals={"ppg": ppg, "acc": acc},
                 targets={"hr": ref}, metadata=(("vo2_unit", "L/min"),))  # fmt: skip
    assert s.signal("ppg") is ppg and s.signal("acc").channels == ("acc_x", "acc_y", "acc_z")
    assert s.targets["hr"].rate_hz == 0.5 and dict(s.metadata)["vo2_unit"] == "L/min"
    running = s.signal("running")
    assert running.rate_hz == 1.0 and running.units == ("m/s", "W")
    np.testing.assert_array_equal(running.mask, [1] * 9 + [0])
    hr = s.signal("hr")
    assert (hr.channels, hr.units, hr.values.shape) == (("hr",), ("bpm",), (10, 1))
    assert s.signal("vo2").units == ("mL/min",) and not s.signal("vo2").mask.any()
    with pytest.raises(WearjaxDataError, match=r"mem.csv: no signal 'eda'; this session has "):
        s.signal("eda")
    # Any channel names in extra signals; the 1 Hz running channels stay checked.
    _session(signals={"eda": _signal(np.ones(4), 4.0, name="whatever")})
    with pytest.raises(WearjaxDataError, match="unknown channels \\['watts'\\]"):
        _session(channels=("watts",))
    with pytest.raises(
        WearjaxDataError, match="field 'signals' uses the built-in names \\['hr'\\]"
    ):
        _session(signals={"hr": ref})
    with raises_naming("targets", "field 'targets' maps 'hr' to ndarray"):
        _session(targets={"hr": np.ones(3)})


def test_stack_signals_pads_holds_and_masks_like_a_loop():
    a = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0], np.float32)
    b = np.array([7.0, 8.0, 9.0], np.float32)
    sa, sb = _signal(a, 2.0, [1, 1, 1, 0, 1, 1]), _signal(b, 2.0)
    stack = stack_signals([sa, sb], bucket_s=2.0)  # a bucket of 4 samples
    assert stack.values.shape == (2, 8, 1) and stack.lengths.tolist() == [6, 3]
    expected = np.zeros((2, 8), np.float32)
    expected[0, :6] = [1, 1, 3, 4, 5, 6]  # the NaN is held at the last finite value
    expected[1, :3] = b
    np.testing.assert_array_equal(stack.values[..., 0], expected)
    mask = np.zeros((2, 8), bool)
    mask[0, :6] = [1, 0, 1, 0, 1, 1]
    mask[1, :3] = True
    np.testing.assert_array_equal(stack.mask, mask)
    np.testing.assert_array_equal(stack.valid, np.arange(8)[None] < np.array([[6], [3]]))
    assert (stack.rate_hz, stack.channels, stack.units) == (2.0, ("ppg",), ("a.u.",))
    with pytest.raises(WearjaxDataError, match="b.csv: 4 Hz with channels .* differs from a.csv"):
        stack_signals([sa, _signal(b, 4.0)], sources=["a.csv", "b.csv"])
    with pytest.raises(WearjaxDataError, match="no signals to stack"):
        stack_signals([])
    sessions = [_session(signals={"ppg": sa}), _session(signals={"ppg": sb})]
    np.testing.assert_array_equal(stack_signal(sessions, "ppg", bucket_s=2.0).values, stack.values)
    hr = stack_signal(sessions, "hr", bucket_s=5.0)
    assert hr.values.shape == (2, 10, 1) and bool(hr.mask.all())


def test_per_second_means_fast_signals_and_holds_slow_ones():
    fast = np.arange(10.0)  # 4 Hz: seconds [0, 1, 2] hold samples 0-3, 4-7, 8-9
    mask = np.array([1, 1, 0, 1, 0, 0, 0, 0, 1, 1], bool)
    values, seen = per_second(_signal(fast, 4.0, mask), 4)
    expected = []
    for second in range(4):
        picked = [fast[j] for j in range(10) if mask[j] and int(j // 4) == second]
        expected.append(np.mean(picked) if picked else np.nan)
    np.testing.assert_array_equal(values[:, 0], expected)
    np.testing.assert_array_equal(seen, [1, 0, 1, 0])
    slow = _signal([100.0, 102.0, np.nan, 106.0], 0.5, [1, 1, 0, 1], "hr", "bpm")
    values, seen = per_second(slow, 10)  # each 2 s sample held over its two seconds
    nan = np.nan
    np.testing.assert_array_equal(values[:, 0], [100, 100, 102, 102, nan, nan, 106, 106, nan, nan])
    np.testing.assert_array_equal(seen, [1, 1, 1, 1, 0, 0, 1, 1, 0, 0])


def _sine_stack(rate, durations, bucket_s=40.0):
    signals = [_signal(np.sin(2 * np.pi * 0.05 * np.arange(round(d * rate)) / rate), rate)
               for d in durations]  # fmt: skip
    return stack_signals(signals, bucket_s=bucket_s)


def _loop_windows(array, session, start_s, width_s, rate):
    """The NumPy loop reference: sample round(start * rate) + j, 0 outside the array."""
    w = int(np.floor(width_s * rate + 0.5))
    out = np.zeros((len(session), w, *array.shape[2:]), array.dtype)
    for i, (s, t0) in enumerate(zip(session, start_s, strict=True)):
        k0 = int(np.floor(t0 * rate + 0.5))
        for j in range(w):
            if 0 <= k0 + j < array.shape[1]:
                out[i, j] = array[s, k0 + j]
    return out


def test_windows_in_seconds_gather_the_same_span_at_1_and_64_hz():
    session = jnp.array([0, 0, 1, 1, 1], jnp.int32)
    start_s = jnp.array([0.0, 12.0, 5.0, 15.0, -2.0], jnp.float32)
    slow, fast = _sine_stack(1.0, [30, 20]), _sine_stack(64.0, [30, 20])
    assert window_samples(8.0, 64.0) == 512 and sample_index(start_s, 8.0, 1.0).shape == (5, 8)
    windows = {}
    for stack in (slow, fast):
        values, mask = gather_signal(stack, session, start_s, 8.0)
        for array, got in ((stack.values, values), (stack.mask, mask)):
            ref = _loop_windows(np.asarray(array), np.asarray(session), np.asarray(start_s),
                                8.0, stack.rate_hz)  # fmt: skip
            np.testing.assert_array_equal(got, ref)
        windows[stack.rate_hz] = (np.asarray(values[..., 0]), np.asarray(mask))
    (v1, m1), (v64, m64) = windows[1.0], windows[64.0]
    assert v64.shape == (5, 512) and v1.shape == (5, 8)
    # Every 64th sample of a 64 Hz window is at the same second as the 1 Hz window's sample.
    np.testing.assert_allclose(v64[:, ::64], v1, atol=1e-6)
    np.testing.assert_array_equal(m64[:, ::64], m1)
    # Session 1 lasts 20 s: the window from 15 s has 5 s of samples, then padding (masked);
    # the one from -2 s starts before the recording (masked, zero).
    np.testing.assert_array_equal(m1[3], [1] * 5 + [0] * 3)
    assert m64[3].sum() == 5 * 64 and not m64[3, 320:].any()
    np.testing.assert_array_equal(m1[4], [0, 0] + [1] * 6)
    assert np.all(v64[4, :128] == 0)
    # Times of the gathered samples span [start, start + 8) s at both rates.
    times = jnp.asarray(np.arange(fast.values.shape[1], dtype=np.float32) / 64.0)
    t = gather_seconds(jnp.stack([times, times]), session, start_s, 8.0, 64.0)
    np.testing.assert_allclose(t[:3, 0], start_s[:3])
    np.testing.assert_allclose(t[:3, -1], start_s[:3] + 8.0 - 1 / 64)
    # Jitted with traced starts equals eager.
    jitted = jax.jit(gather_seconds, static_argnums=(3, 4))
    np.testing.assert_array_equal(
        jitted(fast.values, session, start_s, 8.0, 64.0),
        gather_seconds(fast.values, session, start_s, 8.0, 64.0),
    )
    with pytest.raises(WearjaxDataError, match="a window of 0.01 s holds no sample at 1 Hz"):
        window_samples(0.01, 1.0)
