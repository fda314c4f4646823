"""CWT by FFT against a direct float64 convolution of the same wavelets; resampling against
SciPy's Fourier resampler; a pure tone lands on the scale of its frequency."""

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.signal.cwt import (
    cwt,
    resample,
    scale_grid,
    scalogram,
    wavelet_kernels,
    wavelet_width,
)


def _direct(x, widths, wavelet):
    """float64: for every scale, the wavelet on |t| <= 5 a convolved in 'same' mode."""
    out = []
    for a in widths:
        half = int(np.ceil(5 * a))
        k = wavelet_kernels([a], 2 * half + 1, wavelet)[0]
        full = np.convolve(x, k)  # length n + 2 half
        out.append(full[half : half + len(x)])
    return np.stack(out)


@pytest.mark.parametrize("wavelet", ["ricker", "morlet"])
@pytest.mark.parametrize("n", [64, 257])
def test_fft_cwt_equals_direct_convolution(wavelet, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2, 3, n))
    widths = wavelet_width(scale_grid(0.5, 6.0, 9), 25.0, wavelet)
    got = np.asarray(cwt(jnp.asarray(x, jnp.float32), widths, wavelet))
    for i in range(2):
        for c in range(3):
            want = _direct(x[i, c], widths, wavelet)
            scale = np.abs(want).max()
            np.testing.assert_allclose(got[i, c], want, atol=1e-5 * scale * 10, rtol=0)
            np.testing.assert_allclose(got[i, c] / scale, want / scale, atol=1e-5)


def test_a_tone_peaks_at_its_own_scale():
    rate, f0 = 25.0, 3.0
    t = np.arange(400) / rate
    freqs = scale_grid(0.5, 6.0, 33)
    s = np.asarray(
        scalogram(jnp.asarray(np.sin(2 * np.pi * f0 * t), jnp.float32), rate, rate, freqs)
    )
    power = np.mean(np.abs(s[0, :, 100:300]) ** 2, axis=-1)  # the signal plane, away from edges
    assert abs(np.log(freqs[np.argmax(power)] / f0)) < np.log(freqs[0] / freqs[1]) * 1.5
    m = np.asarray(scalogram(jnp.asarray(np.sin(2 * np.pi * f0 * t), jnp.float32), rate, rate,
                             freqs, "morlet"))  # fmt: skip
    assert abs(np.log(freqs[np.argmax(m[0, :, 100:300].mean(-1))] / f0)) < 0.15


@pytest.mark.parametrize("n,m_rate", [(100, 65.0), (130, 25.0), (101, 40.0), (64, 16.0)])
def test_resample_matches_scipy(n, m_rate):
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(n).normal(size=(2, n))
    got = np.asarray(resample(jnp.asarray(x, jnp.float32), 50.0, m_rate))
    want = signal.resample(x, round(n * m_rate / 50.0), axis=-1)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_scales_above_a_quarter_of_the_rate_are_refused():
    with pytest.raises(ValueError, match="a quarter of the rate"):
        wavelet_width([0.5], 1.0)
    for run in (lambda: resample(jnp.zeros(0), 64.0, 32.0), lambda: cwt(jnp.zeros(0), [2.0])):
        with pytest.raises(ValueError, match="no samples"):  # once a traceback from XLA
            run()


@pytest.mark.parametrize("value", [0.0, 9.81, 72.3, 1000.1])
@pytest.mark.parametrize(("rate", "nominal", "n"), [(1.0, 1.0, 60), (50.0, 25.0, 200)])
def test_a_constant_channel_gives_zero_planes_and_scalogram(value, rate, nominal, n):
    """A flat channel (HR held, a sensor stuck) has nothing to show: its float mean misses its
    value by an ulp, and resampling rings by a few; neither may be scaled up to unit SD."""
    from wearjax.signal.cwt import signal_planes

    x = jnp.full((2, n), value, jnp.float32)
    assert float(jnp.abs(signal_planes(x, rate, nominal)).max()) == 0.0
    freqs = scale_grid(0.05 * nominal, 0.25 * nominal, 5)
    assert float(jnp.abs(scalogram(x, rate, nominal, freqs)).max()) == 0.0
    ramp = x + jnp.linspace(0.0, 1.0, n)[None]  # a real signal is still standardised
    planes = signal_planes(ramp, rate, nominal)
    np.testing.assert_allclose(np.asarray(planes[:, 0].std(-1)), 1.0, rtol=1e-3)


def test_float64_input_is_transformed_in_float64():
    """In x64 mode a float64 signal keeps float64 (float32 input stays float32), and matches
    the direct convolution to float64 rounding."""
    import jax

    with jax.enable_x64(True):
        x = np.random.default_rng(3).normal(size=128)
        widths = wavelet_width(scale_grid(0.5, 6.0, 5), 25.0, "morlet")
        got = cwt(jnp.asarray(x, jnp.float64), widths, "morlet")
        assert got.dtype == jnp.complex128
        np.testing.assert_allclose(np.asarray(got), _direct(x, widths, "morlet"), atol=1e-10)
        assert cwt(jnp.asarray(x, jnp.float32), widths).dtype == jnp.float32
