"""HR -> VO2 on the synthetic cohort (Lab-to-Wrist Table 4 setting, issue 5).

Leave-one-runner-out: the HR Kalman model's generative rollout feeds the VO2 model in one jitted
function, compared with VO2 from the true HR; writes `metrics.json` and `report.md` under `--out`
(the same as `wearjax cv vo2 --data synthetic --out DIR`).

    python experiments/vo2_hr_chain.py --out experiments/results/vo2_hr_chain   # ~5 min, 2 cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wearjax.cli import main as wearjax


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    return wearjax(["cv", "vo2", "--data", "synthetic", "--out", str(args.out), "--seed",
                    str(args.seed), *quick])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
