"""HR models on real runs: session-wise cross-validation on the running CSVs of one runner.

    python experiments/running_csv_hr.py [--data ../shared/data/running-csv] [--models kalman ode]
        [--size 64 3] [--epochs 12] [--steps 10] [--quick] [--out experiments/results]

The 53 exports in ../shared/data/running-csv (one runner, 2021; speed, cadence and altitude,
no running dynamics) are cross-validated by sessions: each session is its own "runner", so
leave-k-runners-out is leave-k-sessions-out (`tasks.hr_recordings.cv_cohort`), k = ceil(53 / 5)
for 5 folds trained in one vmapped program per model. Every kind in `tasks.HR_MODELS` is
cross-validated unless `--models` names some; both protocols, with the two baselines. Writes
`running_csv_hr.md` (the table the README quotes), `running_csv_hr.json` and
`running_csv_hr/` (metrics.json, report.md, plots), and prints the table. Skips, saying so,
when the data folder is absent.

`--split chronological` trains on the past and tests the future: one fold (the last 20%), or
with `--chronological-folds K` forward chaining over the last K blocks, each fold's band
calibrated on the earlier folds' test blocks; then the tables score every fold but the first
(the calibration fold) and a per-fold table follows.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import jax

from wearjax.cv import Split
from wearjax.data.readers import PAUSES
from wearjax.eval import cohort_line, table_1, write_outputs
from wearjax.signal.features import DEVICE_FEATURES
from wearjax.tasks import HR_MODELS, HRStudyConfig, cv_cohort, read_recordings, run_hr_study
from wearjax.tasks.hr import HR_VARIANTS
from wearjax.tasks.hr_recordings import shared_channels
from wearjax.tasks.hr_study import score_protocols
from wearjax.tasks.presets import NORMALISE
from wearjax.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "running-csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of running CSVs")
    parser.add_argument("--models", nargs="+", choices=sorted(HR_MODELS) + sorted(HR_VARIANTS),
                        default=None, help="HR model kinds (default: every kind in HR_MODELS; "
                        "HR_VARIANTS measure a choice)")  # fmt: skip
    parser.add_argument("--size", nargs=2, type=int, default=(64, 3), metavar=("HIDDEN", "LAYERS"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per epoch")
    parser.add_argument("--batch", type=int, default=8, help="training segments per step")
    parser.add_argument("--segment-windows", type=int, default=10, help="60 s windows a segment")
    parser.add_argument(
        "--folds", type=int, default=5,
        help="sessions held out per fold: their number over this, rounded up (so ceil(n/k) "
        "folds, which can be fewer than asked: 4 from 12 sessions)",
    )  # fmt: skip
    parser.add_argument(
        "--split",
        choices=("sessions", "chronological"),
        default="sessions",
        help="random session-wise folds, or train on the earliest runs and test the last 20%%",
    )
    parser.add_argument(
        "--chronological-folds", type=int, default=1,
        help="forward-chaining folds of the chronological split: each tests the next 20%% "
        "block and calibrates its band on the earlier folds' test blocks",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="running_csv_hr", help="name of the outputs")
    parser.add_argument(
        "--crps-weight", type=float, default=HRStudyConfig().crps_weight,
        help="weight of the CRPS term in the Kalman model's loss",
    )  # fmt: skip
    parser.add_argument(
        "--normalise", choices=NORMALISE, default="fold",
        help="'session': the device-dependent features (here altitude_m) standardised per "
        "session before the fold's normaliser (`wearjax cv hr --normalise`)",
    )  # fmt: skip
    parser.add_argument(
        "--pauses", choices=PAUSES, default="stop",
        help="'hold': speed and cadence held through a stop, as the readers did until 2026-12-06 "
        "(the figures computed then)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="(32, 1), 3 epochs of 5 steps")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.size, args.epochs, args.steps, args.batch = (32, 1), 3, 5, 4
    if not args.data.is_dir():
        print(f"skipped: no running CSVs at {args.data} (pass --data FOLDER)")
        return 0

    t0 = time.perf_counter()
    sessions, skipped = read_recordings(args.data, require_hr=True, pauses=args.pauses)
    sessions, notes = shared_channels(sessions)
    for line in [f"skipped {s.path.name}: {s.reason}" for s in skipped] + notes:
        print(line)
    kinds = args.models or sorted(HR_MODELS)
    hidden, layers = args.size
    config = HRStudyConfig(
        models=tuple((kind, hidden, layers) for kind in kinds),
        segment_windows=args.segment_windows,
        batch_size=args.batch,
        train=TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps),
        seed=args.seed,
        crps_weight=args.crps_weight,
        session_relative=DEVICE_FEATURES if args.normalise == "session" else (),
    )
    k = -(-len(sessions) // args.folds)
    cohort, k, folds = cv_cohort(sessions, config.window, held_out=k)
    config = config._replace(runners_out=k)
    print(f"{len(sessions)} sessions ({', '.join(cohort.channels)}); {folds}")
    split = None
    if args.split == "chronological":  # file names start with the run's date and time
        split = Split.chronological(
            [s.source for s in sessions],
            test_fraction=0.2,
            n_validation=max(1, len(sessions) // 10),  # as the session folds (tasks.hr)
            n_folds=args.chronological_folds,
        )
        trained, tested = split.train.sum(1), split.test.sum(1)
        folds = (
            f"chronological: trained on the {int(trained[-1])} earliest sessions, "
            f"{int(split.validation[-1].sum())} next for early stopping and calibration, "
            f"tested on the last {int(tested[-1])}"
        )
        if split.n_folds > 1:
            folds = (
                f"chronological, {split.n_folds} forward-chaining folds: each tests the next "
                f"{int(tested[0])} sessions, trained on all earlier ones "
                f"({', '.join(str(int(n)) for n in trained)}) but the "
                f"{int(split.validation[0].sum())} just before them (early stopping); each "
                "band calibrated on the earlier folds' test sessions. Scored: the last "
                f"{split.n_folds - 1} folds ({int(tested[1:].sum())} sessions); the first is "
                "the calibration fold (no earlier fold to calibrate its own band on; per fold "
                "below)"
            )
    results, predictions = run_hr_study(cohort, config, split=split)
    seconds = time.perf_counter() - t0
    if split is not None and split.n_folds > 1:
        score_calibrated_folds(results, predictions, split)
    results["folds"]["how"] = folds
    results["experiment"] = {**vars(args), "data": str(args.data), "out": str(args.out),
                             "size": list(args.size), "seconds": seconds}  # fmt: skip
    results["machine"] = {"platform": platform.platform(), "devices": str(jax.devices())}
    name = args.name + ("" if args.split == "sessions" else f"_{args.split}")
    if args.split == "chronological" and args.chronological_folds > 1:
        name += f"_{args.chronological_folds}folds"
    written = write_outputs(results, predictions, args.out / name)
    command = "python experiments/running_csv_hr.py " + shlex.join(sys.argv[1:])
    table = (
        f"# HR on real runs ({args.data.name}, one runner)\n\n"
        f"Command: `{command.strip()}`; {seconds / 60:.0f} min on "
        f"{jax.devices()[0].platform} ({len(jax.devices())} device).\n\n"
        f"{cohort_line(results)}. {folds}; training segments of {args.segment_windows} "
        f"windows, {args.epochs} epochs x {args.steps} steps of {args.batch} segments.\n\n"
        f"{table_1(results)}"
    )
    if split is not None and split.n_folds > 1:
        table += "\n\n" + per_fold_table(predictions, split)
    (args.out / f"{name}.md").write_text(table)
    (args.out / f"{name}.json").write_text((args.out / name / "metrics.json").read_text())
    print(table)
    print("wrote", args.out / f"{name}.md", *written)
    return 0


MODEL_FREE = ("hr", "mask", "scored")  # entries of the predictions that are not a model's


def score_calibrated_folds(results: dict, predictions: dict, split: Split) -> None:
    """Score only the folds after the first of a forward-chaining split: fold 0 has no earlier
    fold to calibrate its band on (it falls back to its validation sessions, which early
    stopping chose the epoch on); its test sessions are the later folds' calibration data.
    Replaces each model's metrics in `results` (timings and training facts stay)."""
    later = split.test[1:].any(0)[:, None]
    scored = {p: m & later for p, m in predictions["scored"].items()}
    for name, pred in predictions.items():
        if name not in MODEL_FREE:
            results["models"][name].update(score_protocols(pred, predictions["hr"], scored))


def per_fold_table(predictions: dict, split: Split) -> str:
    """MAE and band coverage of every model on each fold's test sessions (forward chaining:
    later folds trained on more of the past)."""
    hr = predictions["hr"]
    lines = [
        "Per fold (MAE std / gen in bpm; band coverage std / gen):",
        "",
        "| model | " + " | ".join(f"fold {k}" for k in range(split.n_folds)) + " |",
        "|---|" + "---:|" * split.n_folds,
    ]
    for name, pred in predictions.items():
        if name in MODEL_FREE:
            continue
        cells = []
        for k in range(split.n_folds):
            scored = {
                p: m & split.test[k][:, None] for p, m in predictions["scored"].items()
            }  # fmt: skip
            e = score_protocols(pred, hr, scored)
            cell = f"{e['standard']['mae']:.2f} / {e['generative']['mae']:.2f}"
            if "coverage_2sd" in e["generative"]:
                cover = (100 * e[p]["coverage_2sd"] for p in ("standard", "generative"))
                cell += " ({:.1f}% / {:.1f}%)".format(*cover)
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
