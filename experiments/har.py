"""Activity recognition (issue 19): the disentangled, gradient-modulated model, its ablations,
a 1-D CNN, MiniRocket and a statistical-feature baseline on BasicMotions (official split,
3 seeds), seglearn's watch set and the synthetic wrist-IMU set (leave-2-subjects-out, 5 folds
each), and the edge report.

    python experiments/har.py --out experiments/results/har            # full study, 2 cores
    python experiments/har.py --quick --out /tmp/har_quick             # BasicMotions, ~1.5 min

Writes `metrics.json`, `table.md` and `edge/` under `--out`. Needs the `data` extra (`pip
install wearjax[data]`: aeon ships BasicMotions, seglearn the watch set).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wearjax.errors import WearjaxError
from wearjax.tasks.har import VARIANTS
from wearjax.tasks.har_study import har_study, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="BasicMotions, two models, 1 seed")
    parser.add_argument("--epochs", type=int, help="training epochs (default 60; quick 25)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--resume", action="store_true", help="keep what an earlier run wrote")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        metrics = har_study(
            args.out,
            quick=args.quick,
            variants=args.variants,
            epochs=args.epochs,
            progress=True,
            resume=args.resume,
        )
    except WearjaxError as err:
        print(f"har: {err}", file=sys.stderr)
        return 2
    table = markdown_table(metrics)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
