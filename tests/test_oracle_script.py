"""The no-learning oracles of `experiments/virtual_acc_oracle.py` on a hand-built spectrum."""

import numpy as np

from tests.scripts import load_script

oracle = load_script("experiments", "virtual_acc_oracle")


def _line(freqs, at, height_db, width=0.1):
    return 10.0 ** (height_db / 10.0) * np.exp(-0.5 * ((freqs - at) / width) ** 2)


def test_clear_peaks_skip_the_gait_and_its_skirts():
    freqs = np.linspace(0.5, 4.0, 351)
    stride = 1.4  # gait lines at 1.4 and 2.8 Hz, wide enough that their skirts pass the guard
    gait = _line(freqs, 1.4, 0.0, 0.15) + _line(freqs, 2.8, -3.0, 0.15)
    # the heart's line at 2.1 Hz, between the harmonics; a weaker noise bump at 3.6 Hz
    spectrum = gait + _line(freqs, 2.1, -20.0, 0.05) + _line(freqs, 3.6, -45.0, 0.05) + 1e-6
    power = spectrum[None, None]
    highest, prominent = oracle.clear_peaks(power, freqs, np.array([[stride]]))
    assert abs(highest[0, 0] - 2.1) < 0.02 and abs(prominent[0, 0] - 2.1) < 0.02


def test_clear_peaks_prominence_prefers_an_isolated_line():
    """A taller bump on a gait skirt's slope (little prominence) against a lower isolated line."""
    freqs = np.linspace(0.5, 4.0, 351)
    skirt = _line(freqs, 1.4, 0.0, 0.3)
    on_slope = _line(freqs, 1.85, -8.0, 0.04)
    isolated = _line(freqs, 3.3, -30.0, 0.05)
    power = (skirt + on_slope + isolated + 1e-6)[None, None]
    highest, prominent = oracle.clear_peaks(power, freqs, np.array([[1.4]]))
    assert abs(highest[0, 0] - 1.85) < 0.04  # the slope moves its top
    assert abs(prominent[0, 0] - 3.3) < 0.02


def test_clear_peaks_none_clear_is_nan():
    freqs = np.linspace(0.5, 4.0, 351)
    power = _line(freqs, 1.4, 0.0, 0.1)[None, None] + 1e-9
    highest, prominent = oracle.clear_peaks(power, freqs, np.array([[1.4]]))
    assert np.isnan(highest[0, 0]) and np.isnan(prominent[0, 0])


def test_folded_sums_the_heart_harmonics():
    """The heart's fundamental (2.3 Hz) weaker than a lone noise line (3.8 Hz), but its 3rd
    harmonic adds to it (its 2nd, 4.6 Hz, lies on the gait's 3rd and is removed with it; the
    gait's stride is 1.5 Hz)."""
    freqs = np.linspace(0.5, 12.5, 961)
    gait = sum(_line(freqs, h * 1.5, -3.0 * h, 0.05) for h in range(1, 9))
    heart = sum(_line(freqs, h * 2.3, -40.0, 0.05) for h in (1, 2, 3))
    noise = _line(freqs, 3.8, -38.0, 0.05)
    power = (gait + heart + noise + 1e-9)[None, None]
    stride = np.array([[1.5]])
    assert abs(oracle.folded(power, freqs, stride, k=3)[0, 0] - 2.3) < 0.015
    assert abs(oracle.folded(power, freqs, stride, k=1)[0, 0] - 3.8) < 0.015


def test_folded_removes_every_gait_harmonic_up_to_the_top():
    """A slow stride (1.2 Hz) whose 10th harmonic (12 Hz) lies past `HARMONICS`' eighth: its
    line must be removed too, or the candidate 4.0 Hz (3 x 4.0 = 12 Hz) takes it."""
    freqs = np.linspace(0.5, 12.5, 961)
    gait = sum(_line(freqs, h * 1.2, -3.0, 0.05) for h in range(1, 11))
    heart = _line(freqs, 2.1, -40.0, 0.05)
    power = (gait + heart + 1e-9)[None, None]
    assert abs(oracle.folded(power, freqs, np.array([[1.2]]), k=3)[0, 0] - 2.1) < 0.015


def test_oracle_counts_a_window_without_a_clear_peak_as_60_bpm_off(monkeypatch):
    """`oracle_table`'s error for a NaN estimate (no local maximum clear of the gait)."""
    hr = np.full((1, 2), 2.0)

    def fake_power(w, window_s=8.0, band=None):
        freqs = np.linspace(0.5, 4.0, 36)
        return np.ones((1, 2, freqs.size)), freqs, hr, np.full((1, 2), 1.4)

    monkeypatch.setattr(oracle, "simulate_wrist", lambda *a, **k: None)
    monkeypatch.setattr(oracle, "_window_power", fake_power)
    nan_then_hr = np.array([[np.nan, 2.0]])
    monkeypatch.setattr(oracle, "clear_peaks", lambda *a: (nan_then_hr, nan_then_hr))
    out = oracle.oracle_table(1.0)
    assert out["oracle_clear_peak_highest"]["mae"] == 30.0  # (60 + 0) / 2
    assert out["oracle_clear_peak_highest"]["within_5"] == 0.5
