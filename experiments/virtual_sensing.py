"""Virtual sensing (issue 18): HR from the wrist accelerometer alone, through the cross-modal
VAE (virtual PPG), beside PPG alone, PPG + ACC fusion and the non-learned references, on the
simulated wrist sessions, leave-one-subject-out.

    python experiments/virtual_sensing.py --out experiments/results/virtual_sensing
    python experiments/virtual_sensing.py --quick --out /tmp/virtual_quick

Full: 10 subjects x 3 sessions of 10 min at 25 Hz, 10 folds; quick: 6 x 2 of 6 min, 6 folds,
12 epochs. Writes `metrics.json`, `table.md` and `plots/` under `--out` (`wearjax cv virtual`
runs the same study).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wearjax.errors import WearjaxError
from wearjax.models.virtual import SETTINGS
from wearjax.tasks.virtual import VirtualConfig
from wearjax.tasks.virtual_study import markdown_table, study, synthetic_sessions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="6 subjects, 12 epochs")
    parser.add_argument("--epochs", type=int, help="training epochs (default 40; quick 12)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = VirtualConfig(seed=args.seed)
    epochs = args.epochs or (12 if args.quick else config.train.epochs)
    config = config._replace(train=config.train._replace(epochs=epochs))
    try:
        sessions = synthetic_sessions(args.quick, seed=args.seed)
        metrics = study(sessions, config, args.out, settings=args.settings, progress=True)
    except WearjaxError as err:
        print(f"virtual_sensing: {err}", file=sys.stderr)
        return 2
    print(markdown_table(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
