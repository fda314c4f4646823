"""VO2 on tests of another protocol and other subjects: the VO2 model trained on pyoxynet's
ramp tests, scored on its resting-to-exercise tests.

One fold: every usable ramp test trains (4 of its subjects held out for early stopping), every
usable resting-to-exercise test is tested, with the model given each test's first second of
VO2 only, as `wearjax fit vo2 --data pyoxynet` and `wearjax predict` do (the same weights
give the same prediction: `tests/tasks/test_vo2_fit.py`). The resting tests' subjects share no
age, height, weight and sex with any ramp test's. The HR baselines' slope is fitted on the
ramp tests too. Writes `metrics.json` and `report.md` under `--out` and prints the table with
the per-test MAPE's spread and how often the model beats baseline (a).

    python experiments/vo2_transfer.py --out experiments/results/vo2_transfer   # ~5 min, 2 cores
    python experiments/vo2_transfer.py --without window_index elapsed_min \
        --out experiments/results/vo2_transfer_no_time     # the clock since the start left out

Needs the `data` extra (`pip install wearjax[data]`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from wearjax.cv import Split
from wearjax.data.csv import read_cpet_csv
from wearjax.data.pyoxynet import load_ramp_tests, pyoxynet_data_folder
from wearjax.data.types import stack_sessions
from wearjax.errors import WearjaxDataError, WearjaxError
from wearjax.eval import write_report
from wearjax.tasks import run_vo2_study
from wearjax.tasks.presets import cpet_config


def resting_tests() -> list:
    """pyoxynet's resting-to-exercise tests with HR, read as the ramp tests are."""
    files = sorted(pyoxynet_data_folder().glob("resting_real_test_*.csv"))
    sessions = []
    for path in files:
        try:
            sessions.append(read_cpet_csv(path, require_hr=True))
        except WearjaxDataError as err:
            logging.info("skipping %s: %s", path.name, err)
    return sessions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="the quick preset, 30 ramp tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--without", nargs="+", default=(), metavar="INPUT",
        help="inputs left out (VO2StudyConfig.without), e.g. window_index elapsed_min",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        ramp, _ = load_ramp_tests(30 if args.quick else None)
        rest = resting_tests()
    except WearjaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cohort = stack_sessions(ramp + rest, bucket=60)
    config = cpet_config(args.quick, args.seed)._replace(without=tuple(args.without))
    tested = np.arange(cohort.n_sessions) >= len(ramp)
    ramp_subjects = np.unique(np.asarray(cohort.runner)[~tested])
    held = np.random.default_rng(args.seed).choice(
        ramp_subjects, config.validation_subjects, replace=False
    )
    validation = np.isin(np.asarray(cohort.runner), held) & ~tested
    split = Split(tested[None], validation[None], (~tested & ~validation)[None])
    results, predictions = run_vo2_study(cohort, config, split=split)
    results["transfer"] = {"train": "ramp tests", "test": "resting-to-exercise tests",
                           "n_train_tests": len(ramp), "n_test_tests": len(rest)}  # fmt: skip
    title = "VO2 trained on pyoxynet's ramp tests, tested on its resting-to-exercise tests"
    print(write_report(results, args.out, title))
    per = results["models"]["vo2_kalman"]["per_subject"]
    base = results["models"]["baseline_linear_hr"]["per_subject"]
    mape = np.array([per[k]["mape"] for k in per])
    wins = sum(per[k]["mape"] < base[k]["mape"] for k in per)
    q1, q2, q3 = np.percentile(mape, [25, 50, 75])
    print(f"{len(ramp)} ramp tests trained on, {len(rest)} resting-to-exercise tests scored; "
          f"per-test MAPE median {q2:.1f}% (IQR {q1:.1f}-{q3:.1f}%, worst {mape.max():.1f}%); "
          f"beats baseline (a) on {wins} of {len(per)} tests by MAPE")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
