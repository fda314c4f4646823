"""The gait's stride frequency from spectra of swing and step lines, and the first-order lags
against a float64 NumPy loop."""

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.signal.gait import lagged, stride_hz
from wearjax.signal.spectra import band_spectra


@pytest.mark.parametrize("stride", [0.8, 1.35, 1.6])
def test_stride_is_found_when_the_step_line_outgrows_the_swing(stride):
    rate, seconds = 25.0, 40
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(0)
    swing = 0.4 * np.sin(2 * np.pi * stride * t)
    step = 1.0 * np.sin(2 * np.pi * 2 * stride * t + 0.3)  # the bounce: the largest line
    acc = np.stack([swing + step, 0.5 * step, swing]) + 0.05 * rng.normal(size=(3, t.size))
    mag, freqs = band_spectra(jnp.asarray(acc, jnp.float32), rate)  # [3, W, F]
    power = jnp.square(mag).sum(0)
    plain = freqs[np.argmax(np.asarray(power), -1)]
    assert np.allclose(plain, 2 * stride, atol=0.07)  # a peak search finds the step line
    np.testing.assert_allclose(stride_hz(power, freqs), stride, atol=0.03)


def test_a_lone_swing_line_wins_over_its_half_by_its_own_lines_weight():
    """Only the swing at 1.9 Hz: the candidate 0.95 Hz, whose step line it is, scores as much
    from it; the candidate's own line (`OWN_LINE`) breaks the tie."""
    freqs = np.linspace(0.5, 4.0, 64)
    power = np.exp(-0.5 * ((freqs - 1.9) / 0.05) ** 2)  # only the swing, at 1.9 Hz
    assert abs(float(stride_hz(power[None], freqs)[0]) - 1.9) < 0.03  # the grid: 0.055 Hz


def test_a_step_line_beyond_the_grid_counts_as_zero_not_as_the_grids_edge():
    """A candidate of 2.3 Hz has its step line at 4.6 Hz, beyond the 4 Hz grid: it scores its
    own line alone. Read at the grid's edge (interpolation holds the last value), energy there
    (0.7) would lift it over the true stride, 1.5 Hz, with its step line at 3 Hz."""
    freqs = np.linspace(0.5, 4.0, 64)

    def line(hz, height):
        return height * np.exp(-0.5 * ((freqs - hz) / 0.05) ** 2)

    power = line(1.5, 0.5) + line(3.0, 0.4) + line(2.3, 0.3) + line(4.0, 0.7)
    assert float(stride_hz(power[None], freqs, lo=1.0, hi=2.5)[0]) == pytest.approx(1.5, abs=0.01)


def test_lags_equal_a_float64_loop():
    rng = np.random.default_rng(1)
    x = 150 + 20 * rng.normal(size=(3, 2, 40))
    taus, hop = (4.0, 30.0, 240.0), 2.0
    out = np.asarray(lagged(jnp.asarray(x, jnp.float32), hop, taus))
    assert out.shape == (3, 2, 40, 3)
    for j, tau in enumerate(taus):
        a = 1 - np.exp(-hop / tau)
        m = x[..., 0].copy()
        for t in range(x.shape[-1]):
            m = m + a * (x[..., t] - m)
            np.testing.assert_allclose(out[..., t, j], m, rtol=1e-5)


def test_bad_lags_and_search_ranges_are_refused():
    with pytest.raises(ValueError, match="time constants"):
        lagged(jnp.ones((3, 5)), 2.0, (10.0, 0.0))
    with pytest.raises(ValueError, match="at least one window"):  # not an IndexError
        lagged(jnp.zeros((2, 0)), 2.0)
    with pytest.raises(ValueError, match="0 < lo < hi"):
        stride_hz(jnp.ones((2, 64)), np.linspace(0.5, 4.0, 64), lo=2.0, hi=1.0)
    # below the grid a candidate read the lowest bin's power (until 2026-12-07: accepted)
    with pytest.raises(ValueError, match=r"lo=0.3 Hz lies below the spectra's grid \(from 0.5"):
        stride_hz(jnp.ones((2, 64)), np.linspace(0.5, 4.0, 64), lo=0.3)


def test_lags_of_integer_counts_equal_a_float64_loop():
    x = np.random.default_rng(2).integers(120, 180, (2, 30)).astype(np.int32)
    taus, hop = (4.0, 60.0), 2.0
    out = np.asarray(lagged(jnp.asarray(x), hop, taus))
    assert out.dtype == np.float32
    for j, tau in enumerate(taus):
        a = 1 - np.exp(-hop / tau)
        m = x[..., 0].astype(np.float64)
        for t in range(x.shape[-1]):
            m = m + a * (x[..., t] - m)
            np.testing.assert_allclose(out[..., t, j], m, rtol=1e-5)
