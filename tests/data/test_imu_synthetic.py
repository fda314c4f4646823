"""The synthetic wrist-IMU activities: gravity where the wrist is still, and steps at the
frequencies the module's table states, found by an FFT of the acceleration magnitude."""

import numpy as np

from wearjax.data.imu_synthetic import ACTIVITIES, G, impact_pulse, simulate_activities


def _dominant_hz(x, rate):
    mag = np.linalg.norm(x[..., :3], axis=-1)
    mag = mag - mag.mean(axis=1, keepdims=True)
    spectrum = np.abs(np.fft.rfft(mag, n=4 * mag.shape[1], axis=1))
    freqs = np.fft.rfftfreq(4 * mag.shape[1], 1 / rate)
    return freqs[np.argmax(spectrum, axis=1)]


def test_activities_move_at_their_step_frequencies():
    d = simulate_activities(n_subjects=4, windows_per_activity=6, seed=3)
    assert d.x.shape == (4 * 5 * 6, 200, 6) and np.all(np.isfinite(d.x))
    assert np.array_equal(np.bincount(d.y), [24] * 5)
    still = d.x[d.y == ACTIVITIES.index("standing")]
    np.testing.assert_allclose(np.linalg.norm(still[..., :3], axis=-1).mean(), G, rtol=0.01)
    # step frequency ranges x the subjects' factor 0.9-1.1 (FFT resolution 0.03 Hz)
    for name, (lo, hi) in {"walking": (1.7, 2.0), "easy_run": (2.5, 2.8)}.items():
        f = _dominant_hz(d.x[d.y == ACTIVITIES.index(name)], d.rate)
        assert np.all((f > 0.9 * lo - 0.05) & (f < 1.1 * hi + 0.05)), (name, f)
    # running shakes the wrist more than walking, walking more than standing
    spread = [np.linalg.norm(d.x[d.y == c, :, :3], axis=-1).std(1).mean() for c in (0, 1, 2)]
    assert spread[0] < spread[1] < spread[2]


def test_subjects_differ_and_the_seed_repeats():
    a, b = simulate_activities(3, 2, seed=1), simulate_activities(3, 2, seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.n_subjects == 3 and set(a.subject.tolist()) == {0, 1, 2}


def test_the_impact_pulse_is_whole_across_the_step_boundary():
    """Sampled densely through two steps at 3 Hz (a 0.47 rad wide pulse centred 0.3 rad after
    each step starts), the pulse is symmetric about its centre and has no jump where the phase
    wraps; the Gaussian of the unwrapped phase dropped its left tail (0.81 to 0) there."""
    f = np.full(2001, 3.0)
    phase = np.linspace(0.0, 4 * np.pi, 2001)
    pulse = impact_pulse(phase, f)
    delta = np.linspace(0.0, 1.2, 50)
    for centre in (0.3, 0.3 + 2 * np.pi):
        np.testing.assert_allclose(
            impact_pulse(centre - delta, f[:50]), impact_pulse(centre + delta, f[:50]), atol=1e-12
        )
    assert np.max(np.abs(np.diff(pulse))) < 0.02
    sd = 2 * np.pi * 0.025 * 3.0
    np.testing.assert_allclose(impact_pulse(np.array([0.3 - sd]), f[:1]), np.exp(-0.5))
