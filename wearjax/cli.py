"""The `wearjax` command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wearjax.errors import WearjaxError

# Demo presets: Table 1's four models (Kalman and ODE, (128, 2) and (64, 3)) and the
# personalised ODE. Quick: a smoke run of several minutes on 2 CPU cores; full: the
# Table-1-style study on 108 sessions of 20-60 min (training cost grows with the padded session
# length; the 20-120 min cohort runs in experiments/hr_table1.py).
DEMO_PRESETS = {
    "quick": dict(
        n_runners=6, sessions_per_runner=4, min_minutes=20.0, max_minutes=30.0,
        epochs=10, steps_per_epoch=20, batch_size=2, personal_epochs=10,
    ),
    "full": dict(
        n_runners=12, sessions_per_runner=9, min_minutes=20.0, max_minutes=60.0,
        epochs=30, steps_per_epoch=15, batch_size=1, personal_epochs=30,
    ),
}  # fmt: skip


def demo(out: Path, quick: bool, seed: int = 0) -> int:
    import jax

    from wearjax.data.synthetic import simulate_cohort
    from wearjax.eval.hr_study import HRStudyConfig, run_hr_study
    from wearjax.eval.personal_study import PersonalConfig
    from wearjax.eval.report import cohort_line, table_1, write_outputs
    from wearjax.train.fit import TrainConfig

    p = DEMO_PRESETS["quick" if quick else "full"]
    t0 = time.perf_counter()
    cohort = simulate_cohort(
        jax.random.key(seed),
        n_runners=p["n_runners"],
        sessions_per_runner=p["sessions_per_runner"],
        min_minutes=p["min_minutes"],
        max_minutes=p["max_minutes"],
    )
    print(f"simulated {cohort.n_sessions} sessions of {cohort.n_runners} runners "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    config = HRStudyConfig(
        train=TrainConfig(epochs=p["epochs"], steps_per_epoch=p["steps_per_epoch"]),
        batch_size=p["batch_size"],
        seed=seed,
        personal=PersonalConfig(train=PersonalConfig().train._replace(epochs=p["personal_epochs"])),
    )
    results, predictions = run_hr_study(cohort, config, progress=True)
    results["demo"] = {"preset": "quick" if quick else "full", "seed": seed,
                       "seconds": time.perf_counter() - t0}  # fmt: skip
    written = write_outputs(results, predictions, out)
    print()
    print(cohort_line(results))
    print()
    print(table_1(results))
    print(f"wrote {', '.join(str(w) for w in written)}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


def _say(line: str) -> None:
    """One line on stderr per problem: a message never spans lines."""
    print("wearjax: " + " ".join(str(line).split()), file=sys.stderr)


def _recordings(data: Path, *, require_hr: bool):
    """Sessions of a folder or file, on the raw channels all of them share; each skipped file
    and dropped channel is reported on its own line."""
    from wearjax.eval.hr_recordings import read_recordings, shared_channels

    sessions, skipped = read_recordings(data, require_hr=require_hr)
    for s in skipped:
        _say(f"skipped {s.path}: {s.reason}")
    sessions, notes = shared_channels(sessions)
    for note in notes:
        _say(note)
    return sessions


def cv_hr(kind: str, data: Path, quick: bool, out: Path, seed: int = 0) -> int:
    """`wearjax cv hr`: cross-validate HR models of `kind` on the user's recordings."""
    from wearjax.eval.hr_recordings import cv_cohort, study_config
    from wearjax.eval.hr_study import run_hr_study
    from wearjax.eval.report import cohort_line, table_1, write_outputs

    t0 = time.perf_counter()
    sessions = _recordings(data, require_hr=True)
    config = study_config(kind, quick, seed=seed)
    cohort, k, folds = cv_cohort(sessions, config.window)
    config = config._replace(runners_out=k)
    print(f"read {len(sessions)} sessions ({', '.join(cohort.channels)}); {folds}")
    results, predictions = run_hr_study(cohort, config, progress=True)
    results["folds"]["how"] = folds
    results["cv"] = {"data": str(data), "kind": kind, "quick": quick, "seed": seed,
                     "seconds": time.perf_counter() - t0}  # fmt: skip
    written = write_outputs(results, predictions, out)
    report = out / "report.md"
    title, _, rest = report.read_text().partition("\n")
    report.write_text(f"{title}\n\nData: `{data}`. Folds: {folds}.\n{rest}")
    print()
    print(cohort_line(results))
    print()
    print(table_1(results))
    print(f"wrote {', '.join(str(w) for w in written)}")
    return 0


def cv_vo2(data: str, quick: bool, out: Path, seed: int = 0) -> int:
    """`wearjax cv vo2`: the VO2 study (`wearjax.eval.vo2_study`)."""
    from wearjax.eval.vo2_study import cli_cv_vo2

    return cli_cv_vo2(data, quick, out, seed)


def fit_hr(kind: str, data: Path, quick: bool, out: Path, seed: int = 0) -> int:
    """`wearjax fit hr`: train one HR model on every session and write a checkpoint."""
    from wearjax.eval.hr_recordings import study_config, train_hr
    from wearjax.train.checkpoints import save_hr

    t0 = time.perf_counter()
    sessions = _recordings(data, require_hr=True)
    config = study_config(kind, quick, seed=seed)
    hidden, layers = config.models[0][1:]
    print(f"training {kind} ({hidden}, {layers}) on {len(sessions)} sessions "
          f"({', '.join(sessions[0].channels)})")  # fmt: skip
    trained = train_hr(sessions, kind, hidden, layers, config, progress=kind)
    path = save_hr(out, trained.model, trained.normalizer, trained.header)
    d = trained.header["data"]
    print(
        f"{d['epochs_run']} epochs, best validation loss {d['best_validation_loss']:.3f} on "
        f"{len(d['validation_sessions'])} held-out sessions; {time.perf_counter() - t0:.0f} s"
    )
    print(f"wrote {path}")
    return 0


def predict(checkpoint: Path, file: Path, out: Path, hr0: float | None = None) -> int:
    """`wearjax predict`: HR of one recording in both protocols, with errors where it has HR."""
    from wearjax.eval.hr_recordings import predict_hr, read_recordings, write_prediction
    from wearjax.train.checkpoints import load_hr

    model, normalizer, header = load_hr(checkpoint)
    sessions, skipped = read_recordings(file, require_hr=False)
    for s in skipped:
        _say(f"skipped {s.path}: {s.reason}")
    for i, session in enumerate(sessions):
        pred = predict_hr(model, normalizer, header, session, hr0=hr0)
        name = file.stem if len(sessions) == 1 else f"{file.stem}-{i + 1}"
        print(f"{name}: {len(pred.hr)} s, generative start {pred.hr0:.0f} bpm")
        for protocol in ("standard", "generative"):
            m = pred.metrics.get(protocol)
            if m:
                print(f"  {protocol:<10} MAE {m['mae']:5.2f} bpm  RMSE {m['rmse']:5.2f} bpm  "
                      f"r {m['pearson_r']:.2f}  over {m['n']:.0f} s")  # fmt: skip
            elif protocol == "standard":
                print("  standard   not run: the file has no heart rate to start each window")
        written = write_prediction(pred, out / f"{name}.csv", out / f"{name}.png", name)
        print(f"  wrote {', '.join(str(w) for w in written)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from wearjax.eval.hr_study import HR_MODELS

    parser = argparse.ArgumentParser(prog="wearjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="cross-validate the HR Kalman model on the synthetic cohort")
    d.add_argument("--out", type=Path, default=Path("wearjax-demo"), help="output folder")
    d.add_argument("--quick", action="store_true", help="small cohort, short training (~3 min)")
    d.add_argument("--seed", type=int, default=0)

    kinds = sorted(HR_MODELS)
    cv = sub.add_parser("cv", help="cross-validate a model").add_subparsers(
        dest="target", required=True
    )
    h = cv.add_parser("hr", help="HR models on your recordings, both protocols")
    h.add_argument("--model", choices=kinds, default="kalman", help="HR model kind")
    h.add_argument("--data", type=Path, required=True, help="a folder of recordings, or a file")
    h.add_argument("--quick", action="store_true", help="one small model, short training")
    h.add_argument("--out", type=Path, required=True, help="output folder")
    h.add_argument("--seed", type=int, default=0)
    v = cv.add_parser("vo2", help="the VO2 model")
    v.add_argument("--data", choices=("synthetic", "pyoxynet"), default="synthetic")
    v.add_argument("--quick", action="store_true", help="small data, short training")
    v.add_argument("--out", type=Path, required=True, help="output folder")
    v.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("fit", help="train a model on all your recordings").add_subparsers(
        dest="target", required=True
    )
    fh = f.add_parser("hr", help="an HR model; writes a checkpoint")
    fh.add_argument("--model", choices=kinds, default="kalman", help="HR model kind")
    fh.add_argument("--data", type=Path, required=True, help="a folder of recordings, or a file")
    fh.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    fh.add_argument("--quick", action="store_true", help="small model, short training")
    fh.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("predict", help="predict HR of one recording with a checkpoint")
    p.add_argument("--model", type=Path, required=True, help="checkpoint from `wearjax fit hr`")
    p.add_argument("file", type=Path, help="a FIT, TCX or CSV recording")
    p.add_argument("--out", type=Path, default=Path("wearjax-predict"), help="output folder")
    p.add_argument("--hr0", type=float, help="HR (bpm) at the first second, for files without HR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.out, args.quick, args.seed)
        if args.command == "cv" and args.target == "hr":
            return cv_hr(args.model, args.data, args.quick, args.out, args.seed)
        if args.command == "cv" and args.target == "vo2":
            return cv_vo2(args.data, args.quick, args.out, args.seed)
        if args.command == "fit":
            return fit_hr(args.model, args.data, args.quick, args.out, args.seed)
        if args.command == "predict":
            return predict(args.model, args.file, args.out, args.hr0)
    except WearjaxError as err:
        _say(str(err))
        return 2
    except OSError as err:
        _say(f"{err.filename or ''}: {err.strerror or err}")
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
