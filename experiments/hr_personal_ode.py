"""Does the personalised HR ODE recover each runner's response speed?

The synthetic cohort's runners have known HR kinetics (onset time constant 20-45 s, recovery
1.4-2.2 times slower). We cross-validate the personalised ODE (`eval.personal_study`,
leave-3-runners-out), then for every held-out session drive the fitted model, with the embedding
calibrated for that session, through a step in speed on the flat (`data.physiology.
hr_step_response`: 35 % -> 55 % of VO2R at 300 s, back at 900 s) and compare the half-times of
its HR rise and recovery with the simulator's. A half-time is taken on the step response, HR
minus the HR of the same run without the step, so that the model's fatigue drift is not counted
as response (`eval.halftimes.step_halftimes`); the half-time of the HR level itself is
reported beside it. The same half-times for every fold's training runners, with the embeddings
learned in training, separate what the fit recovers from what calibrating a new runner adds.
Both forms: the published one (HR rate set by the HR level only) and wearjax's asymmetric one
(HR falls at its own, unshaped rate).

    python experiments/hr_personal_ode.py --out experiments/results/hr_personal_ode [--quick]

writes `table.md` and `halftimes.json` (per held-out session, and per runner the median over
its sessions; for training runners the median over the folds that trained on them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from wearjax.data import simulate_cohort
from wearjax.eval import response_halftimes, training_halftimes
from wearjax.tasks import HRStudyConfig, PersonalConfig, run_personal_study

PRESETS = {
    "quick": dict(n_runners=6, sessions=4, min_minutes=20.0, max_minutes=30.0, epochs=5),
    "full": dict(n_runners=12, sessions=6, min_minutes=20.0, max_minutes=40.0, epochs=30),
}
TOLERANCE = 0.2  # the criterion: within 20 % of the simulator's half-time


def per_runner(rows: list[dict]) -> list[dict]:
    out = []
    for r in sorted({row["runner"] for row in rows}):
        mine = [row for row in rows if row["runner"] == r]
        entry = {"runner": r, "sessions": len(mine)}
        for key in mine[0]:
            if key.endswith("_s"):
                entry[key] = float(np.median([row[key] for row in mine]))
        for phase in ("rise", "recovery"):
            true = entry[f"{phase}_true_s"]
            entry[f"{phase}_error"] = (entry[f"{phase}_pred_s"] - true) / true
            entry[f"{phase}_level_error"] = (entry[f"{phase}_pred_level_s"] - true) / true
        out.append(entry)
    return out


def summary(runners: list[dict]) -> dict:
    out = {}
    for phase in ("rise", "recovery", "rise_level", "recovery_level"):
        err = np.abs([r[f"{phase}_error"] for r in runners])
        out[phase] = {
            "median_abs_error": float(np.median(err)),
            "max_abs_error": float(np.max(err)),
            "within_20pct": int(np.sum(err <= TOLERANCE)),
            "runners": len(err),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/hr_personal_ode"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedding-reg", type=float, default=PersonalConfig().embedding_reg)
    parser.add_argument("--calibration-steps", type=int, default=PersonalConfig().calibration_steps)
    parser.add_argument("--learning-rate", type=float, default=PersonalConfig().train.learning_rate)
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument(
        "--forms",
        nargs="+",
        choices=("published", "asymmetric"),
        default=["published", "asymmetric"],
    )
    args = parser.parse_args(argv)
    p = PRESETS["quick" if args.quick else "full"]
    t0 = time.perf_counter()
    cohort, physiology = simulate_cohort(
        jax.random.key(args.seed),
        n_runners=p["n_runners"],
        sessions_per_runner=p["sessions"],
        min_minutes=p["min_minutes"],
        max_minutes=p["max_minutes"],
        return_physiology=True,
    )
    study = HRStudyConfig(seed=args.seed)
    results = {
        "preset": "quick" if args.quick else "full",
        "cohort": p,
        "embedding_reg": args.embedding_reg,
        "calibration_steps": args.calibration_steps,
        "learning_rate": args.learning_rate,
        "forms": {},
    }
    runner = np.asarray(cohort.runner)
    epochs = p["epochs"] if args.epochs is None else args.epochs
    results["cohort"]["epochs"] = epochs
    for form in args.forms:
        base = PersonalConfig()
        config = base._replace(
            asymmetric=form == "asymmetric",
            train=base.train._replace(epochs=epochs, learning_rate=args.learning_rate),
            embedding_reg=args.embedding_reg,
            calibration_steps=args.calibration_steps,
        )
        result = run_personal_study(cohort, study, config, progress=True)
        rows = response_halftimes(result, physiology, runner)
        runners = per_runner(rows)
        trained = per_runner(training_halftimes(result, physiology))
        results["forms"][form] = {
            "standard_mae": result.entry["standard"]["mae"],
            "generative_mae": result.entry["generative"]["mae"],
            "train_seconds": result.entry["train_seconds"],
            "best_epoch": result.entry["best_epoch"],
            "summary": summary(runners),
            "runners": runners,
            "sessions": rows,
            "training_summary": summary(trained),
            "training_runners": trained,
        }
    results["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "halftimes.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


def render(results: dict) -> str:
    lines = [
        "| form | HR MAE std / gen (bpm) | rise: median abs error, runners within 20% "
        "| recovery: median abs error, runners within 20% "
        "| recovery of the HR level (drift counted) "
        "| training runners, learned embedding: rise / recovery |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(summary: dict, phase: str) -> str:
        x = summary[phase]
        return f"{100 * x['median_abs_error']:.0f}%, {x['within_20pct']}/{x['runners']}"

    for form, r in results["forms"].items():
        s, t = r["summary"], r["training_summary"]
        cells = [
            f"{r['standard_mae']:.2f} / {r['generative_mae']:.2f}",
            *(cell(s, ph) for ph in ("rise", "recovery", "recovery_level")),
            f"{cell(t, 'rise')} / {cell(t, 'recovery')}",
        ]
        lines.append(f"| {form} | " + " | ".join(cells) + " |")
    for form, entry in results["forms"].items():
        lines += ["", f"Per held-out runner (median over its sessions), {form} form:", ""]
        lines.append("| runner | rise true / pred (s) | recovery true / pred / pred of level (s) |")
        lines.append("|---:|---:|---:|")
        lines += [
            f"| {r['runner']} | {r['rise_true_s']:.1f} / {r['rise_pred_s']:.1f} "
            f"| {r['recovery_true_s']:.1f} / {r['recovery_pred_s']:.1f} "
            f"/ {r['recovery_pred_level_s']:.1f} |"
            for r in entry["runners"]
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
