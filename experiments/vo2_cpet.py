"""VO2 from HR, elapsed time and anthropometrics on pyoxynet's 87 usable ramp tests (issue 5).

Subject-wise cross-validation of the dual-pathway VO2 Kalman model, all folds in one vmapped
program, next to the two HR baselines; writes `metrics.json` and `report.md` under `--out`.

    python experiments/vo2_cpet.py --out experiments/results/vo2_cpet          # ~10 min, 2 cores
    python experiments/vo2_cpet.py --quick --out /tmp/vo2_cpet_quick           # smoke run
    python experiments/vo2_cpet.py --without window_index elapsed_min \
        --out experiments/results/vo2_cpet_no_time         # the clock since the start left out

Needs the `data` extra (`pip install wearjax[data]`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wearjax.errors import WearjaxError
from wearjax.eval import write_report
from wearjax.tasks import run_vo2_study
from wearjax.tasks.presets import cpet_config, load_cpet_cohort


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="a few steps on 30 tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, help="biGRU width per direction (default 32)")
    parser.add_argument("--layers", type=int, help="biGRU layers (default 2)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument(
        "--without", nargs="+", default=(), metavar="INPUT",
        help="inputs left out (VO2StudyConfig.without), e.g. window_index elapsed_min",
    )  # fmt: skip
    parser.add_argument(
        "--raw-first-second",
        action="store_true",
        help="give the raw first VO2 sample instead of the smoothed series' first second",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = cpet_config(args.quick, args.seed)
    hidden, layers = config.variant
    config = config._replace(variant=(args.hidden or hidden, args.layers or layers))
    if args.raw_first_second:
        config = config._replace(first_second="raw")
    config = config._replace(without=tuple(args.without))
    if args.epochs:
        config = config._replace(train=config.train._replace(epochs=args.epochs))
    try:
        cohort = load_cpet_cohort(30 if args.quick else None)
    except WearjaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results, _ = run_vo2_study(cohort, config)
    table = write_report(results, args.out, "VO2 on pyoxynet's ramp tests")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
