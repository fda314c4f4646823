"""The simplified TROIKA tracker: it follows a synthetic PPG's HR through a stronger motion
component that crosses it (where a per-window argmax follows the motion), parabolic
interpolation, agreement with a float64 NumPy loop of the same algorithm, masks and motion
removal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.errors import WearjaxDataError
from wearjax.signal.peaks import (
    local_maxima,
    refine_peak,
    remove_motion_peaks,
    step_hz,
    track_peak,
    track_peak_bins,
    troika_hr,
)
from wearjax.signal.spectra import band_spectra, window_mean


def _synthetic(seed, rate=25.0, duration=300.0):
    """A PPG-like signal: a fundamental at a slowly varying HR (100 +- 10 bpm) and its harmonic,
    a stronger motion component (2.5x, with its own harmonic) sweeping 70 -> 170 bpm so that
    it crosses the HR, and white noise; the three-axis ACC sees the motion (one axis still).
    Returns `(ppg [T], acc [3, T], hr [T] bpm, rate)`."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration * rate)) / rate
    hr = 100 + 10 * np.sin(2 * np.pi * t / duration)
    motion_hz = (70 + 100 * t / duration) / 60
    beat = 2 * np.pi * np.cumsum(hr / 60) / rate
    swing = 2 * np.pi * np.cumsum(motion_hz) / rate
    ppg = (
        np.sin(beat)
        + 0.4 * np.sin(2 * beat + 0.5)
        + 2.5 * np.sin(swing)
        + np.sin(2 * swing)
        + 0.5 * rng.normal(size=t.size)
    )
    acc = np.stack(
        [
            np.sin(swing) + 0.6 * np.sin(2 * swing),
            0.5 * np.sin(swing + 1) + 0.4 * np.sin(2 * swing),
            np.zeros_like(t),
        ]
    )
    acc = acc + 0.05 * rng.normal(size=acc.shape)
    return ppg, acc, hr, rate


@pytest.mark.parametrize("seed", [0, 1])
def test_troika_tracks_hr_through_a_motion_crossing(seed):
    ppg, acc, hr, rate = _synthetic(seed)
    ppg_spec, freqs = band_spectra(jnp.asarray(ppg, jnp.float32), rate)
    acc_spec, _ = band_spectra(jnp.asarray(acc, jnp.float32), rate)  # [3, W, F]
    acc_spec = jnp.moveaxis(acc_spec, 0, -2)  # [W, 3, F]
    ref, ok = window_mean(jnp.asarray(hr, jnp.float32), rate)
    assert np.asarray(ok).all()
    ref = np.asarray(ref)
    est = np.asarray(troika_hr(ppg_spec, acc_spec, freqs))
    argmax = freqs[np.asarray(ppg_spec).argmax(-1)] * 60
    mae, mae_argmax = np.abs(est - ref).mean(), np.abs(argmax - ref).mean()
    assert mae < 3.0, mae  # measured 1.41 (seed 0), 1.48 (seed 1)
    assert mae_argmax > 20.0, mae_argmax  # measured 33.5: the argmax follows the motion
    # no ACC: the tracker alone is led away by the motion while they cross
    alone = np.abs(np.asarray(troika_hr(ppg_spec, None, freqs)) - ref).mean()
    assert alone > 3 * mae, (alone, mae)
    # the ACC as a single magnitude spectrum ([W, F]) also serves
    one = np.asarray(troika_hr(ppg_spec, jnp.linalg.norm(acc_spec, axis=-2), freqs))
    assert np.abs(one - ref).mean() < 3.0


@pytest.mark.parametrize("seed", [0, 1])
def test_troika_keeps_a_pulse_that_sits_on_a_motion_line(seed):
    """A runner's HR on the step rate (twice the arm's stride) from the first window: the ACC
    claims the pulse's line, and zeroing it leaves the tracker the breathing's line (36 bpm),
    which it then follows for the whole session. The PPG holds that line at 3.6 times the
    height the stride line shows relative to the ACC, so it is the pulse's too and stays."""
    rng = np.random.default_rng(seed)
    rate = 25.0
    t = np.arange(round(180 * rate)) / rate
    hr = 157 + 2 * np.sin(2 * np.pi * t / 90)  # within 0.1 Hz of the step line throughout
    beat = 2 * np.pi * np.cumsum(hr / 60) / rate
    stride = 2 * np.pi * 80 / 60 * t
    ppg = (
        np.sin(beat)
        + 0.4 * np.sin(stride)
        + 0.15 * np.sin(2 * stride)
        + 0.6 * np.sin(2 * np.pi * 36 / 60 * t)
        + 0.3 * rng.normal(size=t.size)
    )
    acc = np.stack([
        np.sin(stride) + 0.8 * np.sin(2 * stride),
        0.5 * np.sin(stride + 1) + 0.4 * np.sin(2 * stride),
        np.zeros_like(t),
    ]) + 0.05 * rng.normal(size=(3, t.size))  # fmt: skip
    ppg_spec, freqs = band_spectra(jnp.asarray(ppg, jnp.float32), rate)
    acc_spec = jnp.moveaxis(band_spectra(jnp.asarray(acc, jnp.float32), rate)[0], 0, -2)
    ref = np.asarray(window_mean(jnp.asarray(hr, jnp.float32), rate)[0])
    kept = np.asarray(troika_hr(ppg_spec, acc_spec, freqs))
    zeroed = np.asarray(troika_hr(ppg_spec, acc_spec, freqs, excess=None))  # every line
    assert np.abs(kept - ref).mean() < 3.0, np.abs(kept - ref).mean()  # measured 0.30
    assert np.abs(zeroed - ref).mean() > 50.0, np.abs(zeroed - ref).mean()  # 121: breathing
    # the stride's line is motion alone: it goes, whatever the excess
    lines = np.asarray(remove_motion_peaks(ppg_spec, acc_spec, freqs))
    at = lambda bpm: np.abs(freqs * 60 - bpm).argmin()  # noqa: E731
    assert (lines[:, at(80)] == 0).all() and (lines[:, at(157)] > 0).all()
    with pytest.raises(WearjaxDataError, match="excess=0.5"):  # would keep every line
        remove_motion_peaks(ppg_spec, acc_spec, freqs, excess=0.5)


@pytest.mark.parametrize("rate", [25.0, 64.0, 100.0])
def test_parabolic_interpolation_is_within_a_tenth_of_a_bin(rate):
    rng = np.random.default_rng(int(rate))
    t = np.arange(round(8 * rate)) / rate  # one window
    f0 = rng.uniform(0.7, 3.8, size=40)
    x = np.sin(2 * np.pi * f0[:, None] * t + rng.uniform(0, 6, size=(40, 1)))
    spec, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate)  # [40, 1, F]
    step = step_hz(freqs)
    hr = np.asarray(track_peak(spec, freqs))[:, 0]
    error = np.abs(hr / 60 - f0) / step
    raw = np.abs(freqs[np.asarray(spec)[:, 0].argmax(-1)] - f0) / step
    assert error.max() < 0.1, error.max()  # measured: at most 0.003 of a bin
    assert raw.max() > 0.3  # the bins alone are off by up to half a bin


def _reference_track(spec, freqs, ok, hr0=None, search=15.0, widen=3.0, most=45.0, snr=3.0):
    """The rules of `track_peak`, one window and one bin at a time, in float64."""
    spec = np.asarray(spec, np.float64)
    step = freqs[1] - freqs[0]
    prev, held = (np.nan if hr0 is None else hr0), 0
    hr, bins = np.zeros(len(spec)), np.full(len(spec), -1)
    for w, s in enumerate(spec):
        started = not np.isnan(prev)
        floor = np.median(s[s > 0]) if np.any(s > 0) else np.inf
        reach = min(search + widen * held, most)
        candidates = []
        for k in range(1, len(s) - 1):
            peak = s[k - 1] > 0 and s[k + 1] > 0 and s[k] >= s[k - 1] and s[k] > s[k + 1]
            near = not started or abs(freqs[k] * 60 - prev) <= reach
            if peak and near and s[k] >= snr * floor:
                candidates.append(k)
        if ok[w] and candidates:
            top = best = max(candidates, key=lambda k: s[k])  # the first of equals, as argmax
            jumped = not started or abs(freqs[top] * 60 - prev) > search
            for d in (2, 3) if jumped else ():  # the harmonic check
                under = [
                    k
                    for k in candidates
                    if s[k] >= 0.5 * s[top] and abs(freqs[k] - freqs[top] / d) * 60 <= 3.0
                ]
                if under:  # a root at 1/2 ends the check; 1/3 is tried only without one
                    best = max(under, key=lambda k: s[k])
                    break
            a, b, c = s[best - 1], s[best], s[best + 1]
            offset = np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5) if a - 2 * b + c < 0 else 0
            prev, held, bins[w] = (freqs[0] + (best + offset) * step) * 60, 0, best
        elif started:
            held += 1
        hr[w] = prev
    return hr, bins


def _random_spectra(seed, n_windows=80, n_bins=120):
    """Noise spectra with a wandering peak (and its larger 2nd harmonic while it lies in the
    band) that jumps twice, zeroed stretches and empty windows: every branch of the tracker."""
    rng = np.random.default_rng(seed)
    freqs = 0.5 + np.arange(n_bins) * 0.03
    path = 1.6 + 0.3 * np.sin(np.arange(n_windows) / 9)
    path[30:] += 0.6  # a jump beyond the search range
    path[55:] -= 0.9
    spec = rng.rayleigh(0.1, size=(n_windows, n_bins))
    height = rng.uniform(0.3, 1.5, size=(n_windows, 1))
    for harmonic, scale in ((1, 1.0), (2, 1.3)):  # the 2nd harmonic outgrows the fundamental
        bump = (freqs[None] - harmonic * path[:, None]) / (0.06 * harmonic)
        spec += scale * height * np.exp(-0.5 * bump**2)
    for w in rng.integers(0, n_windows, size=15):  # motion removed somewhere
        start = rng.integers(0, n_bins - 10)
        spec[w, start : start + rng.integers(3, 10)] = 0
    spec[rng.integers(0, n_windows, size=3)] = 0
    ok = rng.uniform(size=n_windows) > 0.15
    return spec.astype(np.float32), freqs, ok


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("hr0", [None, 110.0])
def test_track_peak_matches_a_numpy_loop(seed, hr0):
    spec, freqs, ok = _random_spectra(seed)
    hr, bins = track_peak_bins(jnp.asarray(spec), freqs, hr0_bpm=hr0, ok=jnp.asarray(ok))
    want_hr, want_bins = _reference_track(spec, freqs, ok, hr0=hr0)
    np.testing.assert_array_equal(np.asarray(bins), want_bins)
    np.testing.assert_allclose(np.asarray(hr), want_hr, rtol=0, atol=1e-3)
    assert (want_bins == -1).sum() >= 10  # holds happened (masks, empty windows, jumps)
    # leading axes and jit: the same per row
    batch = jnp.asarray(np.stack([spec, spec[::-1]]))
    oks = jnp.asarray(np.stack([ok, ok[::-1]]))
    run = jax.jit(lambda s, o: track_peak_bins(s, freqs, hr0_bpm=hr0, ok=o))
    hr2, bins2 = run(batch, oks)
    np.testing.assert_array_equal(np.asarray(bins2[0]), want_bins)
    flipped = _reference_track(spec[::-1], freqs, ok[::-1], hr0=hr0)[1]
    np.testing.assert_array_equal(np.asarray(bins2[1]), flipped)
    np.testing.assert_allclose(np.asarray(hr2[0]), want_hr, rtol=0, atol=1e-3)


def test_masked_windows_hold_the_previous_value():
    spec, freqs, _ = _random_spectra(5)
    ok = np.ones(len(spec), bool)
    ok[[0, 1, 10, 11, 12, 40]] = False
    hr, bins = track_peak_bins(jnp.asarray(spec), freqs, ok=jnp.asarray(ok))
    hr, bins = np.asarray(hr), np.asarray(bins)
    assert np.isnan(hr[:2]).all() and np.isfinite(hr[2:]).all()  # nothing to hold yet: NaN
    for w in (10, 11, 12, 40):
        assert bins[w] == -1 and hr[w] == hr[w - 1]
    started = np.asarray(track_peak(jnp.asarray(spec), freqs, hr0_bpm=95.0, ok=jnp.asarray(ok)))
    np.testing.assert_array_equal(started[:2], 95.0)


@pytest.mark.parametrize("harmonic", [2, 3])
def test_the_first_pick_takes_the_fundamental(harmonic):
    rate, hr = 64.0, 58.0
    t = np.arange(round(30 * rate)) / rate
    beat = 2 * np.pi * hr / 60 * t
    x = np.sin(beat) + 1.6 * np.sin(harmonic * beat + 1.0)  # a sharp pulse: a large harmonic
    spec, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate)
    assert abs(freqs[np.asarray(spec[0]).argmax()] * 60 - harmonic * hr) < 2
    np.testing.assert_allclose(np.asarray(track_peak(spec, freqs)), hr, atol=0.2)
    off = np.asarray(track_peak(spec, freqs, harmonic_ratio=2.0))  # the check disabled
    np.testing.assert_allclose(off, harmonic * hr, atol=0.5)


@pytest.mark.parametrize("held", [6, 7])
def test_a_widened_search_does_not_halve_a_resting_track(held):
    """At 72 bpm a pulse with a large 2nd harmonic and a line at half the HR: the first pick
    is the harmonic and goes back to its root; after 7 held windows the search reaches 36
    bpm, and until 2026-12-07 the harmonic check then moved the track there for good."""
    rate, hr = 25.0, 72.0
    t = np.arange(round(120 * rate)) / rate
    beat = 2 * np.pi * hr / 60 * t
    noise = 0.2 * np.random.default_rng(0).normal(size=t.size)
    x = np.sin(beat) + 1.3 * np.sin(2 * beat + 1.0) + 0.6 * np.sin(beat / 2) + noise
    spec, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate)
    ok = np.ones(spec.shape[0], bool)
    ok[10 : 10 + held] = False
    hr_est, bins = track_peak_bins(spec, freqs, ok=jnp.asarray(ok))
    hr_est, bins = np.asarray(hr_est), np.asarray(bins)
    np.testing.assert_allclose(hr_est, hr, atol=1.0)
    assert (bins == -1).sum() == held
    want_hr, want_bins = _reference_track(np.asarray(spec), freqs, ok)
    np.testing.assert_array_equal(bins, want_bins)
    # the line at half the HR is a candidate the widened search reaches
    s = np.asarray(spec)[10 + held]
    half, pulse = (s[np.abs(freqs * 60 - f) <= 3].max() for f in (hr / 2, hr))
    assert half >= 0.5 * pulse and (15 + 3 * held >= hr / 2 - 1) == (held == 7)


def test_a_widened_search_that_lands_on_the_2nd_harmonic_goes_to_its_root():
    """A track at 120 bpm held through a gap while the HR falls to 80: the widened search's
    pick is the 160 bpm harmonic, more than `search_bpm` away, so the check takes its root."""
    rate = 25.0
    t = np.arange(round(8 * rate)) / rate

    def pulse(hr):
        beat = 2 * np.pi * hr / 60 * t
        return np.sin(beat) + 1.6 * np.sin(2 * beat + 1.0)

    x = np.stack([pulse(120.0)] * 4 + [pulse(80.0)] * 12)  # [windows, samples]
    spec = jax.vmap(lambda w: band_spectra(w, rate)[0][0])(jnp.asarray(x, jnp.float32))
    freqs = band_spectra(jnp.asarray(x[0], jnp.float32), rate)[1]
    ok = np.ones(len(x), bool)
    ok[4:15] = False  # 11 held windows: a reach of 45 bpm from 120 covers 80 and 160
    hr_est = np.asarray(track_peak(spec, freqs, hr0_bpm=120.0, ok=jnp.asarray(ok)))
    np.testing.assert_allclose(hr_est[:4], 120.0, atol=1.0)
    np.testing.assert_allclose(hr_est[15], 80.0, atol=1.0)


def test_a_root_found_at_half_the_pick_is_not_replaced_by_a_line_at_a_third():
    """The pick is the pulse's 2nd harmonic, its root at 1/2 is found; a stride line at 2/3 of
    the HR (1/3 of the pick) must not then take the track (it did until 2026-12-07, and the
    search never reached the HR again)."""
    rate, hr = 25.0, 100.0
    t = np.arange(round(60 * rate)) / rate
    f0 = hr / 60
    x = 0.6 * np.sin(2 * np.pi * f0 * t) + np.sin(2 * np.pi * 2 * f0 * t)
    x = x + 0.7 * np.sin(2 * np.pi * 2 * f0 / 3 * t + 1.0)
    spec, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate)
    np.testing.assert_allclose(np.asarray(track_peak(spec, freqs)), hr, atol=0.5)


def test_refine_peak_and_local_maxima():
    x = jnp.asarray([[0.0, 1.0, 3.0, 2.0, 0.5], [1.0, 2.0, 2.0, 1.0, 0.0]], jnp.float32)
    np.testing.assert_allclose(np.asarray(refine_peak(x, jnp.asarray([2, 0]))), [1 / 6, 0.0])
    flat_top_last = [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]  # a flat top counts once: its last bin
    np.testing.assert_array_equal(np.asarray(local_maxima(x)), flat_top_last)
    rising = jnp.asarray([[1.0, 2.0, 3.0], [0.0, 2.0, 1.0]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(local_maxima(rising)), [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(np.asarray(local_maxima(rising, ends=False)), 0)
    # a flat step on a slope is no peak, a flat top is one, whatever its width
    steps = jnp.asarray([[4.0, 3.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 3.0, 1.0]], jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(local_maxima(steps)), [[1, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    )
    # without ends, a flat top that starts next to a zeroed stretch is its shoulder
    shoulder = jnp.asarray([[0.0, 2.0, 2.0, 1.0, 0.5], [0.5, 2.0, 2.0, 1.0, 0.5]], jnp.float32)
    got = np.asarray(local_maxima(shoulder, ends=False))
    np.testing.assert_array_equal(got, [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
    # against a plain loop over random spectra with ties
    rng = np.random.default_rng(3)
    many = rng.integers(0, 4, size=(200, 9)).astype(np.float32)
    for ends in (True, False):
        got = np.asarray(local_maxima(jnp.asarray(many), ends=ends))
        np.testing.assert_array_equal(got, [_loop_maxima(row, ends) for row in many])


def _loop_maxima(row, ends):
    """The peaks of one spectrum by walking it: a run of equal bins higher than both of its
    neighbouring bins (an end's missing neighbour -inf with ends, 0 without) marks its last."""
    pad = -np.inf if ends else 0.0
    out, i = np.zeros(row.size, bool), 0
    while i < row.size:
        j = i
        while j + 1 < row.size and row[j + 1] == row[i]:
            j += 1
        before = row[i - 1] if i > 0 else pad
        after = row[j + 1] if j + 1 < row.size else pad
        high = row[i] > before and row[i] > after
        out[j] = high and (ends or (before > 0 and after > 0))
        i = j + 1
    return out


def test_remove_motion_peaks():
    freqs = 0.5 + np.arange(100) * 0.025
    ppg = jnp.ones((2, 100), jnp.float32)
    acc = np.full((2, 3, 100), 0.005, np.float32)
    acc[0, 0, 40] = 1.0  # 1.5 Hz: the largest
    acc[0, 0, 70] = 0.6  # 2.25 Hz, above half of the largest
    acc[0, 0, 20] = 0.55  # a third peak on the axis: beyond n_peaks=2
    acc[0, 1, 90] = 0.7  # another axis
    acc[0, 2, 10] = 0.3  # below the threshold
    acc[1, 2, 50] = 0.02  # a still window: only its largest peak is removed
    out = np.asarray(remove_motion_peaks(ppg, jnp.asarray(acc), freqs, width_hz=0.05))
    removed = np.flatnonzero(out[0] == 0).tolist()
    assert removed == [38, 39, 40, 41, 42, 68, 69, 70, 71, 72, 88, 89, 90, 91, 92]
    assert np.flatnonzero(out[1] == 0).tolist() == [48, 49, 50, 51, 52]
    single = np.asarray(remove_motion_peaks(ppg, jnp.asarray(acc[:, 0]), freqs, width_hz=0.05))
    assert np.flatnonzero(single[0] == 0).tolist() == [38, 39, 40, 41, 42, 68, 69, 70, 71, 72]
    per_axis = np.asarray(
        remove_motion_peaks(ppg, jnp.asarray(acc), freqs, width_hz=0.05, per_axis=True)
    )
    assert (per_axis[0] == 0).sum() > (out[0] == 0).sum()  # axis 2's 0.3 is its own largest
    with pytest.raises(WearjaxDataError, match="evenly spaced"):
        remove_motion_peaks(ppg, jnp.asarray(acc), freqs**2)


@pytest.mark.parametrize("duration", [300.0, 16.0])  # many windows, then a single one
def test_remove_motion_peaks_refuses_band_spectras_axis_first_layout(
    no_annotation_checks, duration
):
    """`band_spectra(acc [3, T])` is `[3, W, F]`; the window axis must come first (a single
    window once came back as three, a wrong one per axis)."""
    ppg, acc, _, rate = _synthetic(0, duration=duration)
    ppg_spec, freqs = band_spectra(jnp.asarray(ppg, jnp.float32), rate)
    acc_spec, _ = band_spectra(jnp.asarray(acc, jnp.float32), rate)  # [3, W, F]
    assert acc_spec.shape[:2] == (3, ppg_spec.shape[0]) and ppg_spec.shape[0] != 3
    with pytest.raises(WearjaxDataError, match=r"acc_spec .*jnp\.moveaxis\(acc_spec, -3, -2\)"):
        remove_motion_peaks(ppg_spec, acc_spec, freqs)
    with pytest.raises(WearjaxDataError, match="acc_spec"):
        troika_hr(ppg_spec, acc_spec, freqs)
    with pytest.raises(WearjaxDataError, match="acc_spec"):  # bins of another band
        remove_motion_peaks(ppg_spec, jnp.moveaxis(acc_spec, -3, -2)[..., 1:], freqs)
    out = remove_motion_peaks(ppg_spec, jnp.moveaxis(acc_spec, -3, -2), freqs)
    assert out.shape == ppg_spec.shape
