"""HR models when every runner wears another watch: fold-wide against per-session normalisation.

    python experiments/hr_watch_shift.py [--runners 10] [--sessions 4] [--seeds 0 1]
        [--models kalman ode] [--out experiments/results]

A model fitted on one device's running dynamics meets another device's at prediction time:
another method of estimating vertical oscillation, stance time and step length, and a barometric
altimeter with its own offset. The synthetic cohort (`data.simulate_cohort`) is cross-validated
leave-2-runners-out twice: as simulated ("one watch") and with each runner's channels passed
through a watch of their own ("own watch"), drawn once per runner from `--seed`:

- vertical oscillation x U(0.75, 1.25) and step length x U(0.90, 1.10) (the vertical ratio,
  their quotient, follows both scales);
- stance time + U(-4, 4) percentage points;
- altitude + U(-150, 150) m;
- speed and cadence untouched (every device counts them the same way).

Each cohort is cross-validated with the fold's normaliser alone (`session_relative=()`, the
published inputs) and with `signal.features.DEVICE_FEATURES` standardised per session first.
Same folds, same seeds, same training settings (those of `wearjax demo --quick`); MAE and band
coverage of both protocols per arm. Writes `hr_watch_shift.md` / `.json` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from wearjax.data import simulate_cohort
from wearjax.signal.features import DEVICE_FEATURES
from wearjax.tasks import HRStudyConfig, run_hr_study
from wearjax.tasks.presets import DEMO
from wearjax.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def own_watches(cohort, seed: int):
    """`cohort` with each runner's channels through a device of its own (module docstring)."""
    rng = np.random.default_rng(seed)
    n = cohort.n_runners
    vo, sl = rng.uniform(0.75, 1.25, n), rng.uniform(0.90, 1.10, n)
    stance, altitude = rng.uniform(-4.0, 4.0, n), rng.uniform(-150.0, 150.0, n)
    r = np.asarray(cohort.runner)
    scale, shift = np.ones((len(r), len(cohort.channels))), np.zeros((len(r), len(cohort.channels)))
    index = {c: i for i, c in enumerate(cohort.channels)}
    scale[:, index["vertical_oscillation"]] = vo[r]
    scale[:, index["step_length"]] = sl[r]
    scale[:, index["vertical_ratio"]] = vo[r] / sl[r]
    shift[:, index["stance_time_percent"]] = stance[r]
    shift[:, index["altitude"]] = altitude[r]
    inside = np.asarray(cohort.valid)[..., None]  # padding stays zero
    x = np.asarray(cohort.x) * scale[:, None] + np.where(inside, shift[:, None], 0.0)
    return eqx.tree_at(lambda c: c.x, cohort, jax.numpy.asarray(x, np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=4, help="sessions per runner")
    parser.add_argument("--seeds", type=int, nargs="+", default=(0, 1))
    parser.add_argument("--models", nargs="+", default=("kalman", "ode"))
    parser.add_argument("--size", nargs=2, type=int, default=(64, 3))
    parser.add_argument("--epochs", type=int, default=DEMO["quick"]["epochs"])
    parser.add_argument("--steps", type=int, default=DEMO["quick"]["steps_per_epoch"])
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    args = parser.parse_args()

    quick = DEMO["quick"]
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        clean = simulate_cohort(
            jax.random.key(seed), args.runners, args.sessions,
            min_minutes=quick["min_minutes"], max_minutes=quick["max_minutes"],
        )  # fmt: skip
        for watches, cohort in (("one watch", clean), ("own watch", own_watches(clean, seed))):
            for relative in ((), DEVICE_FEATURES):
                config = HRStudyConfig(
                    models=tuple((k, *args.size) for k in args.models),
                    train=TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps),
                    batch_size=quick["batch_size"],
                    runners_out=2,
                    seed=seed,
                    session_relative=relative,
                )  # fmt: skip
                results, _ = run_hr_study(cohort, config, progress=False)
                for name, m in results["models"].items():
                    rows.append({
                        "seed": seed, "watches": watches,
                        "normalisation": "per session" if relative else "fold",
                        "model": name,
                        **{f"{p}_{k}": m[p].get(k) for p in ("standard", "generative")
                           for k in ("mae", "coverage_2sd")},
                    })  # fmt: skip
                print(f"seed {seed}, {watches}, {'per session' if relative else 'fold'}: "
                      + ", ".join(f"{r['model']} {r['standard_mae']:.2f}/{r['generative_mae']:.2f}"
                                  for r in rows[-len(results['models']):]), flush=True)  # fmt: skip
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        "# HR models when every runner wears another watch (synthetic cohort)",
        "",
        f"Command: `python experiments/hr_watch_shift.py --runners {args.runners} --sessions "
        f"{args.sessions} --seeds {' '.join(map(str, args.seeds))} --models "
        f"{' '.join(args.models)} --size {args.size[0]} {args.size[1]} --epochs {args.epochs} "
        f"--steps {args.steps}`; {minutes:.0f} min on "
        f"{jax.devices()[0].platform} ({platform.machine()}).",
        "",
        f"MAE (bpm), mean over seeds {list(args.seeds)} (each seed's value in brackets); band "
        "coverage (+-2 SD) range over seeds. 'fold': the fold's normaliser alone; 'per session':"
        f" {', '.join(DEVICE_FEATURES)} standardised per session first.",
        "",
        "| model | watches | normalisation | standard MAE | generative MAE | bands std / gen |",
        "|---|---|---|---:|---:|---:|",
    ]
    keys = sorted({(r["model"], r["watches"], r["normalisation"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2] != "fold"))  # fmt: skip
    for model, watches, norm in keys:
        sel = [
            r
            for r in rows
            if (r["model"], r["watches"], r["normalisation"]) == (model, watches, norm)
        ]

        def cell(k, sel=sel):
            v = [r[k] for r in sel]
            return f"{np.mean(v):.2f} ({' / '.join(f'{x:.2f}' for x in v)})"

        def band(k, sel=sel):
            v = [100 * r[k] for r in sel if r[k] is not None]
            return f"{min(v):.1f}-{max(v):.1f}%" if v else "-"

        lines.append(
            f"| {model} | {watches} | {norm} | {cell('standard_mae')} | {cell('generative_mae')} "
            f"| {band('standard_coverage_2sd')} / {band('generative_coverage_2sd')} |"
        )
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hr_watch_shift.md").write_text(table)
    (args.out / "hr_watch_shift.json").write_text(json.dumps({"rows": rows, "args": {
        **vars(args), "out": str(args.out)}, "minutes": minutes}, indent=1))  # fmt: skip
    print(table)


if __name__ == "__main__":
    main()
