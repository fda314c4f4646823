"""Windowed spectra against SciPy's short-time FFT (both its `ShortTimeFFT` and the legacy
`scipy.signal.stft`, references in float64), the HR band's bins, tones on their bins, per-window
normalisation and window means against NumPy loops, and jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.errors import WearjaxDataError
from wearjax.signal.spectra import (
    band_spectra,
    default_nfft,
    frame_starts,
    hann,
    normalise,
    stft,
    window_mean,
)

signal = pytest.importorskip("scipy.signal")

CASES = [  # rate (Hz), leading axes, samples, nfft
    (25.0, (2, 3), 1000, None),
    (64.0, (), 2000, None),
    (100.0, (3,), 1701, None),
    (32.5, (2,), 900, None),  # 260-sample windows, 65-sample hop
    (25.0, (4,), 600, 512),
]


def _scipy_stft(x, rate, win, hop, nfft, n_windows):
    """`[..., W, F]` complex128: `ShortTimeFFT` with our window, hop, padding and scaling, its
    slices shifted (`k_offset`) to start at samples `0, hop, ...`, each detrended by its mean."""
    sft = signal.ShortTimeFFT(
        signal.get_window("hann", win),
        hop,
        rate,
        mfft=nfft,
        scale_to="magnitude",
        phase_shift=None,
    )
    out = sft.stft_detrend(x, "constant", p0=0, p1=n_windows, k_offset=sft.m_num_mid)
    return np.moveaxis(out, -1, -2)


def _legacy_stft(x, rate, win, hop, nfft):
    """The same through `scipy.signal.stft` (no boundary extension or padding)."""
    _, _, z = signal.stft(
        x,
        rate,
        window="hann",
        nperseg=win,
        noverlap=win - hop,
        nfft=nfft,
        detrend="constant",
        boundary=None,
        padded=False,
        scaling="spectrum",
    )
    return np.moveaxis(z, -1, -2)


@pytest.mark.parametrize("rate,lead,n,nfft", CASES)
def test_stft_matches_scipy(rate, lead, n, nfft):
    rng = np.random.default_rng(n)
    x32 = (rng.normal(size=lead + (n,)) + 3.0).astype(np.float32)  # an offset: the means matter
    x = x32.astype(np.float64)  # the reference sees the same float32 values, in float64
    win, hop = round(8 * rate), round(2 * rate)
    n_fft = default_nfft(win) if nfft is None else nfft
    n_windows = len(frame_starts(n, rate))
    got = np.asarray(stft(jnp.asarray(x32), rate, nfft=nfft))
    assert got.dtype == np.complex64
    assert got.shape == lead + (n_windows, n_fft // 2 + 1)
    for ref in (
        _scipy_stft(x, rate, win, hop, n_fft, n_windows),
        _legacy_stft(x, rate, win, hop, n_fft),
    ):
        assert ref.shape == got.shape
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)
        assert np.abs(got - ref).max() / scale < 3e-6  # measured: 4e-7 to 1.3e-6


def test_stft_in_float64(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 800))
    got = np.asarray(stft(jnp.asarray(x), 25.0))
    assert got.dtype == np.complex128
    ref = _scipy_stft(x, 25.0, 200, 50, 1024, len(frame_starts(800, 25.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_frame_starts_and_window():
    assert frame_starts(1000, 25.0).tolist() == list(range(0, 801, 50))  # 1 + (1000-200)//50
    assert frame_starts(1049, 25.0).size == 17 and frame_starts(1050, 25.0).size == 18
    assert frame_starts(199, 25.0).size == 0 and frame_starts(200, 25.0).tolist() == [0]
    assert stft(jnp.zeros((3, 150)), 25.0).shape == (3, 0, 513)
    np.testing.assert_allclose(hann(16), signal.get_window("hann", 16))  # periodic
    assert default_nfft(200) == 1024 and default_nfft(512) == 2048 and default_nfft(800) == 4096
    with pytest.raises(WearjaxDataError, match="at least one sample"):
        frame_starts(100, 0.2)
    with pytest.raises(WearjaxDataError, match="shorter than"):
        stft(jnp.zeros(400), 25.0, nfft=128)


@pytest.mark.parametrize("rate,band", [(64.0, (0.5, 4.0)), (25.0, (0.5, 4.0)), (50.0, (0.7, 3.3))])
def test_band_spectra_keeps_exactly_the_band(rate, band):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 1200)), jnp.float32)
    spec, freqs = band_spectra(x, rate, band=band)
    nfft = default_nfft(round(8 * rate))
    all_freqs = np.fft.rfftfreq(nfft, 1 / rate)
    inside = (all_freqs >= band[0]) & (all_freqs <= band[1])
    np.testing.assert_array_equal(freqs, all_freqs[inside])
    assert np.all(np.diff(np.flatnonzero(inside)) == 1)
    if rate == 64.0:  # the edges fall on bins (1/32 Hz): both are kept
        assert freqs[0] == 0.5 and freqs[-1] == 4.0
    full = np.abs(np.asarray(stft(x, rate)))
    np.testing.assert_allclose(np.asarray(spec), full[..., inside], rtol=1e-6, atol=1e-7)
    assert spec.shape == (3, len(frame_starts(1200, rate)), inside.sum())
    with pytest.raises(WearjaxDataError, match="no frequency bin"):
        band_spectra(x, rate, band=(0.501, 0.502))
    # a band past Nyquist: its top was once cut silently (at 5 Hz the HR band stopped at 150 bpm)
    with pytest.raises(WearjaxDataError, match=r"past the Nyquist frequency of 5 Hz.*at 8 Hz"):
        band_spectra(x, 5.0)
    assert band_spectra(x, 8.0)[1][-1] == 4.0  # exactly at Nyquist: kept


@pytest.mark.parametrize("rate", [25.0, 64.0])
def test_a_sinusoid_peaks_at_its_nearest_bin(rate):
    rng = np.random.default_rng(int(rate))
    t = np.arange(round(30 * rate)) / rate
    f0 = rng.uniform(0.6, 3.9, size=8)
    x = np.sin(2 * np.pi * f0[:, None] * t + rng.uniform(0, 6, size=(8, 1))) + 5.0
    spec, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate)
    top = np.asarray(spec).argmax(-1)  # [8, W]
    nearest = np.abs(freqs[None, :] - f0[:, None]).argmin(-1)
    np.testing.assert_array_equal(top, np.broadcast_to(nearest[:, None], top.shape))
    # "magnitude" scaling: a unit sinusoid's bin is about 1/2 (less by the off-bin loss)
    assert np.all(np.asarray(spec).max(-1) > 0.45) and np.all(np.asarray(spec).max(-1) < 0.51)


def test_normalise():
    spec = jnp.asarray(np.random.default_rng(2).uniform(0, 7, size=(2, 5, 40)), jnp.float32)
    spec = spec.at[1, 3].set(0.0)
    out = np.asarray(normalise(spec))
    np.testing.assert_allclose(out[0].max(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[1, 3], 0.0)  # an empty window stays empty
    np.testing.assert_allclose(np.asarray(normalise(spec * 1e3)), out, rtol=1e-6)
    by_window = np.asarray(normalise(spec, axis=-2))
    np.testing.assert_allclose(by_window.max(-2), 1.0, rtol=1e-7)


def _window_mean_loop(series, rate, mask):
    """float64: the mean of the finite, unmasked samples of each window, by a loop."""
    win, hop = round(8 * rate), round(2 * rate)
    means, oks = [], []
    for start in range(0, len(series) - win + 1, hop):
        v = series[start : start + win]
        keep = mask[start : start + win] & np.isfinite(v)
        oks.append(keep.any())
        means.append(v[keep].mean() if keep.any() else 0.0)
    return np.array(means), np.array(oks)


@pytest.mark.parametrize("rate", [1.0, 4.0, 25.0])
def test_window_mean_matches_a_loop(rate):
    rng = np.random.default_rng(int(rate))
    n = round(120 * rate)
    series = rng.uniform(60, 180, size=(2, n))
    series[0, rng.integers(0, n, size=n // 10)] = np.nan
    mask = rng.uniform(size=(2, n)) > 0.2
    mask[1, round(20 * rate) : round(40 * rate)] = False  # windows with nothing valid
    mean, ok = window_mean(jnp.asarray(series, jnp.float32), rate, mask=jnp.asarray(mask))
    for i in range(2):
        want, want_ok = _window_mean_loop(series[i], rate, mask[i])
        np.testing.assert_array_equal(np.asarray(ok[i]), want_ok)
        np.testing.assert_allclose(np.asarray(mean[i]), want, rtol=1e-5)
    assert not np.asarray(ok[1]).all()
    unmasked, ok_all = window_mean(jnp.asarray(series[1], jnp.float32), rate)
    assert np.asarray(ok_all).all()
    np.testing.assert_allclose(
        np.asarray(unmasked), _window_mean_loop(series[1], rate, np.ones(n, bool))[0], rtol=1e-5
    )


def test_jit_and_vmap():
    rate = 25.0
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3, 700)), jnp.float32)
    eager, freqs = band_spectra(x, rate)
    jitted = jax.jit(lambda v: band_spectra(v, rate)[0])(x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-7)
    mapped = jax.vmap(lambda v: band_spectra(v, rate)[0])(x)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(eager), rtol=1e-5, atol=1e-7)
    axis = np.asarray(band_spectra(x[2, 1], rate)[0])  # one ACC axis alone
    np.testing.assert_allclose(axis, np.asarray(eager[2, 1]), rtol=1e-5, atol=1e-7)
    mean, ok = jax.jit(lambda v: window_mean(v, rate))(x[:, 0])
    assert mean.shape == ok.shape == (4, len(frame_starts(700, rate)))
    grad = jax.grad(lambda v: normalise(band_spectra(v, rate)[0]).sum())(x[0, 0])
    assert grad.shape == (700,) and np.isfinite(np.asarray(grad)).all()
    assert freqs[0] >= 0.5 and freqs[-1] <= 4.0


def test_window_starts_stay_on_the_clock_at_a_rate_with_a_fractional_hop():
    """At 51.2 Hz a 2 s hop is 102.4 samples: each start is rounded on its own, so window w
    starts within half a sample of 2 w seconds an hour in, and the PPG's windows pair with the
    1 Hz reference's (rounding the hop once drifted 14 s by the end of an hour)."""
    rate, n = 51.2, int(51.2 * 3600)
    starts = frame_starts(n, rate)
    seconds = np.arange(len(starts)) * 2.0  # the 2 s hop
    assert np.abs(starts / rate - seconds).max() <= 0.5 / rate
    assert len(starts) == len(frame_starts(3600, 1.0))  # as many windows as the reference's
    assert starts[-1] + round(8 * rate) <= n
