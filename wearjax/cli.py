"""The `wearjax` command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wearjax.errors import WearjaxError

# Demo presets. Quick: a smoke run in about 3 minutes on 2 CPU cores; full: the Table-1-style
# study on 108 sessions of 20-60 min (training cost grows with the padded session length; the
# 20-120 min cohort runs in experiments/hr_table1.py), about 10-15 minutes.
DEMO_PRESETS = {
    "quick": dict(
        n_runners=6, sessions_per_runner=4, min_minutes=20.0, max_minutes=30.0,
        epochs=10, steps_per_epoch=20, batch_size=2,
    ),
    "full": dict(
        n_runners=12, sessions_per_runner=9, min_minutes=20.0, max_minutes=60.0,
        epochs=30, steps_per_epoch=15, batch_size=1,
    ),
}  # fmt: skip


def demo(out: Path, quick: bool, seed: int = 0) -> int:
    import jax

    from wearjax.data.synthetic import simulate_cohort
    from wearjax.eval.hr_study import HRStudyConfig, run_hr_study
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wearjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="cross-validate the HR Kalman model on the synthetic cohort")
    d.add_argument("--out", type=Path, default=Path("wearjax-demo"), help="output folder")
    d.add_argument("--quick", action="store_true", help="small cohort, short training (~3 min)")
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.out, args.quick, args.seed)
    except WearjaxError as err:
        print(f"wearjax: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
