"""The synthetic wrist PPG + IMU: the heart and the gait where the physics puts them, found by
independent spectra (NumPy FFT, SciPy's Hann window) and peak picking (scipy.signal), and the
severity, BCG and dropout controls doing what the module docstring says.

Every call simulates the same 8 runners x 1 session (3 min cut from each), so the cohort's
jitted simulation compiles once for the file."""

import numpy as np
import pytest
from scipy.signal import find_peaks, get_window

from wearjax.data.synthetic import WORKOUTS
from wearjax.data.wrist_synthetic import SEVERITY, simulate_wrist

N_SUBJECTS, MINUTES = 8, 3.0
NFFT = 1024


def _simulate(**kwargs):
    return simulate_wrist(N_SUBJECTS, 1, **{"minutes": MINUTES, **kwargs})


@pytest.fixture(scope="module")
def light():
    return _simulate(severity=SEVERITY["light"])


@pytest.fixture(scope="module")
def heavy():
    return _simulate(severity=SEVERITY["heavy"])


def _windows(x, n):
    """Non-overlapping windows of `n` samples along axis 1: [S, W, n, ...]."""
    w = x.shape[1] // n
    return x[:, : w * n].reshape(x.shape[0], w, n, *x.shape[2:])


def _spectrum(x, rate, window_s):
    """Hann-windowed power spectra of `window_s` windows of `x [S, N]`, zero-padded to NFFT."""
    seg = _windows(x, int(window_s * rate))
    seg = seg - seg.mean(axis=2, keepdims=True)
    taper = get_window("hann", seg.shape[2]).reshape(-1, *([1] * (seg.ndim - 3)))
    power = np.abs(np.fft.rfft(seg * taper, n=NFFT, axis=2)) ** 2
    return np.fft.rfftfreq(NFFT, 1.0 / rate), power


def _peak_hz(x, rate, window_s=8.0):
    """Each window's spectral peak in 0.5-4 Hz, and the bin width."""
    f, power = _spectrum(x, rate, window_s)
    band = (f >= 0.5) & (f <= 4.0)
    return f[band][np.argmax(power[..., band], axis=-1)], f[1]


def _window_hz(per_minute, window_s=8):
    """Mean of a 1 Hz per-minute reference over each window, in Hz."""
    return _windows(per_minute, window_s).mean(axis=2) / 60.0


def _ppg_hits(d):
    """Is the PPG's spectral peak within one bin of the mean HR, over dropout-free windows."""
    peak, bin_hz = _peak_hz(d.ppg, d.rate)
    clean = _windows(d.ppg_ok, int(8 * d.rate)).all(axis=2)
    return (np.abs(peak - _window_hz(d.hr)) <= bin_hz)[clean]


def test_shapes_dtypes_and_the_seed(light):
    d, n = light, int(MINUTES * 60 * 25)
    s = N_SUBJECTS
    assert d.ppg.shape == (s, n) and d.acc.shape == d.gyro.shape == (s, n, 3)
    assert d.ppg_ok.shape == (s, n) and d.hr.shape == d.cadence.shape == (s, int(MINUTES * 60))
    for a in (d.ppg, d.acc, d.gyro, d.hr, d.cadence, d.severity):
        assert a.dtype == np.float32 and np.all(np.isfinite(a))
    assert d.ppg_ok.dtype == np.bool_ and d.subject.dtype == np.int32 and d.rate == 25.0
    np.testing.assert_array_equal(d.subject, np.arange(s))
    np.testing.assert_array_equal(d.severity, np.float32(SEVERITY["light"]))
    assert len(d.workouts) == s and set(d.workouts) <= set(WORKOUTS)
    # running: heart rates and step rates of runners, gravity on the wrist
    assert 60 < d.hr.min() and d.hr.max() < 215 and 110 < d.cadence.min() < d.cadence.max() < 235
    assert 0.9 < np.linalg.norm(d.acc, axis=-1).mean() < 1.6
    again = _simulate(severity=SEVERITY["light"])
    for a, b in zip(d[:-2], again[:-2], strict=True):
        np.testing.assert_array_equal(a, b)
    other = _simulate(severity=SEVERITY["light"], seed=1)
    assert not np.allclose(d.hr, other.hr) and not np.allclose(d.acc, other.acc)


def test_severity_draws_and_argument_checks():
    d = _simulate(severity=(0.5, 2.0), dropouts_per_hour=0.0)
    assert np.all((d.severity >= 0.5) & (d.severity <= 2.0)) and np.ptp(d.severity) > 0.3
    assert d.ppg_ok.all()
    for bad in (
        dict(severity=(0.0, 1.0)),
        dict(severity=-1.0),
        dict(bcg=-1.0),
        dict(rate=10.0),
        dict(minutes=0.0),
        dict(dropouts_per_hour=-1.0),
    ):
        with pytest.raises(ValueError):
            _simulate(**bad)


def test_dropouts_zero_the_ppg_exactly_where_not_ok():
    d = _simulate(dropouts_per_hour=120.0)  # ~6 dropouts per 3 min session
    assert 0.3 < d.ppg_ok.mean() < 0.98
    assert np.all(d.ppg[~d.ppg_ok] == 0.0) and np.all(d.ppg[d.ppg_ok] != 0.0)
    # every dropout lasts at least 5 s (overlapping ones merge)
    for ok in d.ppg_ok:
        edges = np.flatnonzero(np.diff(np.concatenate([[1], ok.astype(np.int8), [1]])))
        assert np.all(edges[1::2] - edges[::2] >= 5 * d.rate - 1)
    # the dropouts change nothing else
    base = _simulate()
    np.testing.assert_array_equal(d.acc, base.acc)
    np.testing.assert_array_equal(d.ppg[d.ppg_ok & base.ppg_ok], base.ppg[d.ppg_ok & base.ppg_ok])


def test_light_ppg_peaks_at_the_heart_rate(light):
    hits = _ppg_hits(light)
    assert hits.size > 0.8 * N_SUBJECTS * 22 and hits.mean() >= 0.9, hits.mean()


def test_heavy_motion_hides_the_heart(light, heavy):
    light_hits, heavy_hits = _ppg_hits(light).mean(), _ppg_hits(heavy).mean()
    assert 1.0 - heavy_hits > 0.2 and light_hits - heavy_hits > 0.25, (light_hits, heavy_hits)


def test_acc_steps_and_gyro_strides(light):
    d = light
    step_hz = _window_hz(d.cadence)
    peak, bin_hz = _peak_hz(np.linalg.norm(d.acc, axis=-1), d.rate)
    # the step frequency drifts a little within a window: two bins (3 steps/min)
    assert np.mean(np.abs(peak - step_hz) <= 2 * bin_hz) >= 0.9
    peak, bin_hz = _peak_hz(d.gyro[..., 0], d.rate)
    assert np.mean(np.abs(peak - step_hz / 2) <= bin_hz) >= 0.9


def test_bcg_adds_power_at_the_heart_rate(light):
    a, b = _simulate(severity=SEVERITY["light"], bcg=0.0), light
    np.testing.assert_array_equal(a.ppg, b.ppg)
    np.testing.assert_array_equal(a.gyro, b.gyro)
    f, power_a = _spectrum(a.acc, a.rate, 16.0)
    _, power_b = _spectrum(b.acc, b.rate, 16.0)
    hr, stride = _window_hz(a.hr, 16), _window_hz(a.cadence, 16) / 2
    at = np.argmin(np.abs(f - hr[..., None]), axis=-1)[..., None]
    pa = np.take_along_axis(power_a.sum(-1), at, axis=2)[..., 0]
    pb = np.take_along_axis(power_b.sum(-1), at, axis=2)[..., 0]
    # next to the gait's harmonics their leakage hides the BCG; away from them it shows
    far = np.abs(hr - np.round(hr / stride) * stride) > 0.45
    assert far.sum() >= 20 and np.mean(pb[far] > pa[far]) > 0.65
    assert np.median(pb[far] / pa[far]) > 1.5


def test_references_are_the_simulated_beat_and_step_rates():
    d = _simulate(rate=100.0, severity=0.0, dropouts_per_hour=0.0)
    edges = np.arange(0, d.hr.shape[1] + 1, 10.0)
    for ppg, hr, gyro, cadence in zip(d.ppg, d.hr, d.gyro[..., 0], d.cadence, strict=True):
        # systolic peaks, refined by a parabola, counted fractionally over 10 s
        tall = np.quantile(find_peaks(ppg, prominence=0.0)[1]["prominences"], 0.9)
        idx, _ = find_peaks(ppg, distance=int(0.27 * d.rate), prominence=0.5 * tall)
        y0, y1, y2 = ppg[idx - 1], ppg[idx], ppg[idx + 1]
        times = (idx + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) / d.rate
        beats = np.interp(edges, times, np.arange(len(times)))
        error = 6.0 * np.diff(beats) - hr.reshape(-1, 10).mean(1)
        assert np.all(np.abs(error[1:-1]) < 2.0), error
        # strides: upward zero crossings of the swing's angular rate, two steps each
        up = np.flatnonzero((gyro[:-1] < 0) & (gyro[1:] >= 0))
        times = (up + gyro[up] / (gyro[up] - gyro[up + 1])) / d.rate
        steps = 2.0 * np.interp(edges, times, np.arange(len(times)))
        error = 6.0 * np.diff(steps) - cadence.reshape(-1, 10).mean(1)
        assert np.all(np.abs(error[1:-1]) < 2.0), error
