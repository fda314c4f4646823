"""How much HR the simulated wrist accelerometer's spectrum holds (issue 18), measured without
learning: on each 8 s window (2 s hop, Hann, 0.5-4 Hz, as the virtual-sensing models see it)
of the simulated watch, the peak of the ACC's spectrum (power summed over the axes, each
window's mean removed), and the same peak after an oracle that knows the true stride frequency
has removed every gait harmonic (+-0.3 Hz around k x the stride frequency, k = 1..8). If the
heart's trace stood above what the gait leaves, the oracle's peak would sit on the HR. The
removed bands' edges lie on the gait's skirts, so two more oracles look only at the spectrum's
local maxima clear of those bands (`scipy.signal.find_peaks`) and take the highest, or the most
prominent (the height over the higher of the two valleys that separate it from a higher
peak): a heart line between two harmonics is a local maximum, a skirt is not (`clear_peaks`;
a window with no such maximum counts as 60 bpm off). A last one folds the window at each
candidate heart period, in the frequency domain: the power summed over the candidate's first
`FOLD_HARMONICS` harmonics up to 12.5 Hz (the BCG pulse is a few tens of ms wide, so its
harmonics reach past 4 Hz), the gait's bands removed (`folded`); with how often it lands on
half or a third of the HR (a sub-harmonic, whose harmonics include the HR's). And the
levels behind that: the heart's line, and the gait between its harmonics, in dB under each
window's peak (`levels`).

    python experiments/virtual_acc_oracle.py --out experiments/results/virtual_acc_oracle
    python experiments/virtual_acc_oracle.py --window-s 32 --guard-hz 0.1 \
        --out experiments/results/virtual_acc_oracle_32s

`--window-s` lengthens the windows (still a 2 s hop) and `--guard-hz` narrows the band removed
around each harmonic to match the finer resolution: whether a longer window lifts the heart's
line out of the gait's floor.

The cohort is `experiments/virtual_sensing.py`'s (10 subjects x 3 sessions of 10 min at 25 Hz,
seed 0), at the simulator's heart trace (`--bcg 1`) and 5x it. Writes `table.md` and
`metrics.json` under `--out`; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from scipy.signal import find_peaks

from wearjax.data.wrist_synthetic import simulate_wrist
from wearjax.signal.spectra import HOP_S, HR_BAND, WINDOW_S, band_spectra, window_mean

GUARD_HZ = 0.3  # half-width of the band removed around each gait harmonic
HARMONICS = np.arange(1, 9)
FOLD_HARMONICS = 3  # harmonics of a candidate heart rate summed by the folding oracle
WIDE_BAND = (0.5, 12.5)  # Hz: the folding oracle's spectrum (Nyquist at 25 Hz)


def _window_power(w, window_s: float = WINDOW_S, band=HR_BAND):
    """`(power [S, W, F] summed over the axes, freqs [F], hr [S, W], stride [S, W])` in Hz, of
    windows of `window_s` every `HOP_S`."""
    acc = jnp.asarray(np.moveaxis(w.acc, -1, 1), jnp.float32)  # [S, 3, N]
    n = round(window_s * w.rate)
    hop = round(HOP_S * w.rate)
    # each window's own mean removed (gravity, whose leakage reaches the band's low end)
    frames = (acc.shape[-1] - n) // hop + 1
    idx = np.arange(frames)[:, None] * hop + np.arange(n)[None]
    windows = acc[..., idx]  # [S, 3, W, n]
    centred = windows - windows.mean(-1, keepdims=True)
    # each centred window is its own one-window signal
    mag, freqs = band_spectra(centred, w.rate, window_s=window_s, hop_s=window_s, band=band)
    power = np.asarray(jnp.square(mag[..., 0, :]).sum(axis=1))  # [S, W, F]
    mean = lambda x: np.asarray(window_mean(jnp.asarray(x), 1.0, window_s)[0])[:, :frames]  # noqa: E731
    return power, freqs, mean(w.hr) / 60.0, mean(w.cadence) / 120.0  # Hz


def _at(power: np.ndarray, freqs: np.ndarray, f: np.ndarray) -> np.ndarray:
    """`power [S, W, F]` at the bin nearest each `f [...]` (NaN outside the band)."""
    i = np.abs(freqs - f[..., None]).argmin(-1)
    out = np.take_along_axis(power, i[..., None], axis=-1)[..., 0]
    return np.where((f >= freqs[0]) & (f <= freqs[-1]), out, np.nan)


def levels(seed: int = 0, window_s: float = WINDOW_S, guard_hz: float = GUARD_HZ) -> dict:
    """Median levels in dB under each window's peak (the gait's strongest line): the heart's
    line (the spectrum of the heart trace alone, at the HR: the difference of the simulated ACC
    with and without it, which change nothing else), and the ACC without it halfway between
    two stride harmonics and `guard_hz` from one (the gait's leakage and the sensor's noise).
    Always at the simulator's heart trace (`bcg` 1)."""
    with_heart, without = (
        simulate_wrist(10, 3, minutes=10.0, rate=25.0, bcg=b, seed=seed) for b in (1.0, 0.0)
    )
    power, freqs, hr, stride = _window_power(without, window_s)
    heart = with_heart._replace(acc=with_heart.acc - without.acc)
    heart_power = _window_power(heart, window_s)[0]
    peak = power.max(-1)
    k = HARMONICS[:, None, None]
    db = lambda p: float(np.nanmedian(10.0 * np.log10(p / peak)))  # noqa: E731
    return {
        "heart_line_at_hr": db(_at(heart_power, freqs, hr)),
        "gait_halfway_between_harmonics": db(
            np.nanmedian(_at(power[None], freqs, (k + 0.5) * stride[None]), axis=0)
        ),
        "gait_at_guard_edge": db(
            np.nanmedian(_at(power[None], freqs, k * stride[None] + guard_hz), axis=0)
        ),
    }


def clear_peaks(power, freqs, stride, guard_hz: float = GUARD_HZ):
    """`(highest, most prominent) [S, W]` in Hz: of each window's local maxima of the power in
    dB farther than `guard_hz` from every gait harmonic, the highest and the most prominent
    (NaN where there is none). Per window with SciPy: an oracle for this study, not a model."""
    db = 10.0 * np.log10(power / power.max(-1, keepdims=True) + 1e-12)
    out = np.full((2, *power.shape[:2]), np.nan)
    for s, w in np.ndindex(*power.shape[:2]):
        peaks, props = find_peaks(db[s, w], prominence=0.0)
        f = freqs[peaks]
        clear = ~(np.abs(f[:, None] - HARMONICS[None] * stride[s, w]) < guard_hz).any(axis=1)
        if clear.any():
            for i, score in enumerate((db[s, w, peaks], props["prominences"])):
                out[i, s, w] = f[clear][np.argmax(score[clear])]
    return out


def folded(power, freqs, stride, guard_hz: float = GUARD_HZ, k: int = FOLD_HARMONICS):
    """`[S, W]` Hz: the candidate heart rate in `HR_BAND` (0.01 Hz steps) whose first `k`
    harmonics hold the most power (each at its nearest bin, the bins within `guard_hz` of a gait
    harmonic counted as 0): what averaging the window over that period would keep, by
    Parseval."""
    cand = np.arange(HR_BAND[0], HR_BAND[1] + 1e-9, 0.01)
    # every gait harmonic up to the band's top (a stride under 0.5 Hz is not running)
    gait = np.arange(1, int(freqs[-1] / max(float(stride.min()), 0.5)) + 2)
    near = (np.abs(freqs - gait[:, None, None, None] * stride[..., None]) < guard_hz).any(0)
    clean = np.where(near, 0.0, power)
    total = np.zeros((*power.shape[:2], cand.size))
    for h in range(1, k + 1):  # a few harmonics: a loop over them, not over windows
        f = h * cand
        i = np.abs(freqs[:, None] - f[None]).argmin(0)
        total += np.where(f <= freqs[-1], clean[..., i], 0.0)
    return cand[np.argmax(total, axis=-1)]


def oracle_table(
    bcg: float, seed: int = 0, window_s: float = WINDOW_S, guard_hz: float = GUARD_HZ
) -> dict:
    w = simulate_wrist(10, 3, minutes=10.0, rate=25.0, bcg=bcg, seed=seed)
    power, freqs, hr, stride = _window_power(w, window_s)
    gait = np.abs(
        freqs[None, None, None] - HARMONICS[:, None, None, None] * stride[None, ..., None]
    )
    near_gait = (gait < guard_hz).any(axis=0)  # [S, W, F]
    plain = freqs[np.argmax(power, axis=-1)]
    oracle = freqs[np.argmax(np.where(near_gait, 0.0, power), axis=-1)]
    highest, prominent = clear_peaks(power, freqs, stride, guard_hz)
    wide, wide_freqs = _window_power(w, window_s, WIDE_BAND)[:2]
    hr_near = (np.abs(hr[None] - HARMONICS[:, None, None] * stride[None]) < guard_hz).any(axis=0)
    out = {"windows": int(hr.size), "hr_near_a_gait_harmonic": float(hr_near.mean())}
    estimates = {
        "acc_peak": plain,
        "oracle_gait_removed": oracle,
        "oracle_clear_peak_highest": highest,
        "oracle_clear_peak_prominent": prominent,
        "oracle_folded": folded(wide, wide_freqs, stride, guard_hz),
    }
    sub = np.abs(estimates["oracle_folded"][None] - hr[None] / np.array([2.0, 3.0])[:, None, None])
    out["oracle_folded_at_a_sub_harmonic"] = float((60.0 * sub < 5).any(axis=0).mean())
    for name, est in estimates.items():  # no clear peak in a window: counted as 60 bpm off
        err = np.where(np.isnan(est), 60.0, 60.0 * np.abs(est - hr))
        out[name] = {
            "mae": float(err.mean()),
            "within_5": float((err < 5).mean()),
            "mae_hr_clear_of_gait": float(err[~hr_near].mean()),
            "within_5_hr_clear_of_gait": float((err[~hr_near] < 5).mean()),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bcg", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--window-s", type=float, default=WINDOW_S, help="window length (s)")
    parser.add_argument("--guard-hz", type=float, default=GUARD_HZ, help="removed per harmonic")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    g = args.guard_hz
    metrics = {f"bcg {b:g}": oracle_table(b, window_s=args.window_s, guard_hz=g) for b in args.bcg}
    metrics["levels_db_under_peak"] = levels(window_s=args.window_s, guard_hz=g)
    metrics["window_s"], metrics["guard_hz"] = args.window_s, g
    rows = [
        "| heart trace | estimate | MAE (bpm) | within 5 bpm | MAE, HR clear of the gait "
        "| within 5 bpm, HR clear of the gait |",
        "|---|---|---:|---:|---:|---:|",
    ]
    names = {
        "acc_peak": "ACC spectral peak",
        "oracle_gait_removed": "oracle: gait removed",
        "oracle_clear_peak_highest": "oracle: highest local maximum clear of the gait",
        "oracle_clear_peak_prominent": "oracle: most prominent local maximum clear of the gait",
        "oracle_folded": f"oracle: folded over {FOLD_HARMONICS} heart harmonics, gait removed",
    }
    for label, m in metrics.items():
        if not label.startswith("bcg"):
            continue
        for key, name in names.items():
            e = m[key]
            rows.append(
                f"| {label} | {name} | {e['mae']:.1f} | {100 * e['within_5']:.0f}% | "
                f"{e['mae_hr_clear_of_gait']:.1f} | {100 * e['within_5_hr_clear_of_gait']:.0f}% |"
            )
    lv = metrics["levels_db_under_peak"]
    near = ", ".join(
        f"{100 * m['hr_near_a_gait_harmonic']:.0f}%"
        for k, m in metrics.items()
        if k.startswith("bcg")
    )
    sub = ", ".join(
        f"{100 * m['oracle_folded_at_a_sub_harmonic']:.0f}%"
        for k, m in metrics.items()
        if k.startswith("bcg")
    )
    rows.append("")
    rows.append(
        "A window with no local maximum clear of the gait counts as 60 bpm off. The folded "
        f"estimate lies within 5 bpm of half or a third of the HR in {sub} of windows."
    )
    rows.append("")
    rows.append(
        f"Windows of {args.window_s:g} s whose HR lies within {g} Hz of a gait harmonic: {near}."
    )
    rows.append("")
    rows.append(
        "Median power under each window's peak (the gait's strongest line): the heart's line "
        f"at the HR {lv['heart_line_at_hr']:.0f} dB; the ACC without it halfway between two "
        f"stride harmonics {lv['gait_halfway_between_harmonics']:.0f} dB, {g} Hz from "
        f"one {lv['gait_at_guard_edge']:.0f} dB."
    )
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
