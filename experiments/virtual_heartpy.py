"""The learned PPG-only model on real PPG (issue 18): trained on the simulated wrist set only,
then run by `wearjax predict`'s path on heartpy's three bundled real recordings (finger and ear
PPG, no ACC), against heartpy's own beat-based HR on the same 8 s windows (2 s hop), beside our
non-learned spectral peak tracker (`signal.peaks.track_peak`, the reference
`tests/signal/test_heartpy_agreement.py` checks).

heartpy (GPL) is read at run time only, never imported by wearjax and never copied: each
recording is written to a sampled-signal CSV (`time, ppg`) in a temporary folder and read back
by `data.sampled.read_sampled`, as a user's file would be. A recording whose 2 s hop is not a
whole number of samples (example 2 at 100.4 Hz, example 1 at 116.996 Hz by its timer) is
resampled to the nearest whole rate (linear interpolation on its own clock) before any method
sees it; example 0 (100 Hz) is used as it is.

    python experiments/virtual_heartpy.py --out experiments/results/virtual_heartpy
    python experiments/virtual_heartpy.py --model ppg.wjx --out DIR   # a `fit virtual` checkpoint

Without `--model` it trains two `ppg_only` models on the simulated set first (`--quick`: the
small one and 12 epochs), as published and with frequency stretching (`VirtualConfig.stretch`,
`--stretch LO HI`: each training sample's spectra and HR as the recording played a times faster
would give them), and keeps them as `DIR/ppg_only.wjx` and `DIR/ppg_only_stretched.wjx`: the
simulated runs cover running HR only, the recordings are at rest. The agreement is a median over the
windows where heartpy reports a bpm in 30-240 and the method's estimate is finite (each method
its own windows), as in the test.
Writes `table.md` and `metrics.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from wearjax.data.sampled import read_sampled
from wearjax.signal.peaks import track_peak
from wearjax.signal.spectra import HOP_S, WINDOW_S, band_spectra, frame_starts
from wearjax.tasks.virtual import VirtualConfig
from wearjax.tasks.virtual_io import fit_model, load_virtual, predict_recording, save_virtual
from wearjax.tasks.virtual_study import synthetic_sessions

STRETCH = (0.4, 1.25)  # the simulated runs' HR (1st-99th percentile 107-179 bpm) down to ~43


def heartpy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its loader imports pkg_resources, which warns
        import heartpy as hp
    return hp


def recording(hp, example: int) -> tuple[np.ndarray, float, float]:
    """heartpy's example as `(ppg [N], rate Hz used, rate Hz recorded)`: resampled to a whole
    number of samples per 2 s hop where it is not."""
    data, timer = hp.load_exampledata(example)
    if example == 0:
        rate = 100.0  # heartpy's documentation: example 0 is sampled at 100 Hz, without timer
    elif example == 1:
        rate = float(hp.get_samplerate_mstimer(timer))
    else:
        rate = float(hp.get_samplerate_datetime(timer, timeformat="%Y-%m-%d %H:%M:%S.%f"))
    ppg = np.asarray(data, np.float64)
    used = rate
    if abs(rate * HOP_S - round(rate * HOP_S)) > 1e-6:
        used = round(rate)
        t = np.arange(len(ppg)) / rate
        ppg = np.interp(np.arange(0.0, t[-1], 1.0 / used), t, ppg)
    return ppg, used, rate


def heartpy_bpm(hp, ppg: np.ndarray, rate: float) -> np.ndarray:
    """heartpy's bpm on each of our windows (NaN where it finds no usable beats)."""
    win = round(WINDOW_S * rate)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its numerical warnings on flat stretches
        for start in frame_starts(len(ppg), rate, WINDOW_S, HOP_S):
            try:
                out.append(float(hp.process(ppg[start : start + win], rate)[1]["bpm"]))
            except hp.exceptions.BadSignalWarning:
                out.append(np.nan)
    return np.array(out)


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    valid = np.isfinite(theirs) & (theirs >= 30) & (theirs <= 240) & np.isfinite(ours)
    diff = np.abs(ours - theirs)[valid]
    return {
        "compared": int(valid.sum()),
        "median_abs_diff": float(np.median(diff)),
        "mean_abs_diff": float(diff.mean()),
        "within_5": float(np.mean(diff < 5)),
    }


def compare(models: dict, hp, example: int, folder: Path) -> dict:
    """Every model's per-window HR on heartpy's `example` (through a CSV, as `wearjax
    predict` reads it), heartpy's and the peak tracker's, and their agreement."""
    ppg, rate, recorded = recording(hp, example)
    path = folder / f"heartpy_example{example}.csv"
    t = np.arange(len(ppg)) / rate
    np.savetxt(path, np.stack([t, ppg], 1), delimiter=",", header="time,ppg", comments="",
               fmt="%.6f")  # fmt: skip
    theirs = heartpy_bpm(hp, ppg, rate)
    spec, freqs = band_spectra(jnp.asarray(ppg, jnp.float32), rate, window_s=WINDOW_S, hop_s=HOP_S)
    estimates = {"spectral peak tracker": np.asarray(track_peak(spec, freqs))}
    for name, (model, header) in models.items():
        pred = predict_recording(model, header, read_sampled(path))["columns"]
        estimates[f"{name}, per window"] = pred["hr"]
        estimates[f"{name} + Kalman"] = pred["hr_tracked"]
    n = min(len(theirs), *(len(e) for e in estimates.values()))
    return {
        "rate_hz": recorded, "rate_used_hz": rate, "windows": n,
        "heartpy_median_bpm": float(np.nanmedian(theirs[:n])),
        "methods": {k: {**agreement(e[:n], theirs[:n]), "median_bpm": float(np.nanmedian(e[:n]))}
                    for k, e in estimates.items()},
    }  # fmt: skip


def render(results: dict) -> str:
    lines = [
        "| example | rate (Hz) | windows | heartpy median (bpm) | method | median estimate (bpm) "
        "| compared | median abs diff (bpm) | mean | within 5 bpm |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for example, r in results["examples"].items():
        rate = f"{r['rate_hz']:.1f}"
        if abs(r["rate_used_hz"] - r["rate_hz"]) > 1e-6:
            rate += f" -> {r['rate_used_hz']:g}"
        for name, a in r["methods"].items():
            lines.append(
                f"| {example} | {rate} | {r['windows']} | {r['heartpy_median_bpm']:.1f} | {name} | "
                f"{a['median_bpm']:.1f} | {a['compared']} | {a['median_abs_diff']:.2f} | "
                f"{a['mean_abs_diff']:.2f} | {100 * a['within_5']:.0f}% |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="a ppg_only checkpoint of `fit virtual`")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stretch", type=float, nargs=2, default=STRETCH, metavar=("LO", "HI"),
        help="the second model's frequency-stretch range (`VirtualConfig.stretch`)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    hp = heartpy()
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"seed": args.seed, "quick": args.quick, "stretch": args.stretch}
    paths = {"ppg_only": args.model} if args.model else {}
    if not paths:
        s = synthetic_sessions(args.quick, seed=args.seed)
        hr = s.hr[s.ok]
        results["training_hr_percentiles_1_50_99"] = np.percentile(hr, [1, 50, 99]).tolist()
        base = VirtualConfig(seed=args.seed)
        if args.quick:
            base = base._replace(train=base.train._replace(epochs=12))
        lo, hi = args.stretch
        for name, config in (
            ("ppg_only", base),
            (f"ppg_only, stretched {lo:g}-{hi:g}x", base._replace(stretch=(lo, hi))),
        ):
            print(f"training {name} on {len(s.names)} simulated sessions", file=sys.stderr)
            t1 = time.perf_counter()
            model, q = fit_model(s, config, "ppg_only", progress="ppg_only")
            file = "ppg_only_stretched.wjx" if config.stretch else "ppg_only.wjx"
            paths[name] = save_virtual(args.out / file, model, q, config, "ppg_only")
            results[f"train_seconds, {name}"] = time.perf_counter() - t1
    models = {name: load_virtual(path) for name, path in paths.items()}
    for name, (model, _) in models.items():
        if model.setting != "ppg_only":
            parser.error(
                f"--model {paths[name]} is a {model.setting} checkpoint; give a ppg_only one"
            )
    results["models"] = {name: str(path) for name, path in paths.items()}
    with tempfile.TemporaryDirectory() as folder:
        results["examples"] = {
            example: compare(models, hp, example, Path(folder)) for example in (0, 1, 2)
        }
    results["seconds"] = time.perf_counter() - t0
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
