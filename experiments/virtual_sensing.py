"""Virtual sensing (issue 18): HR from the wrist accelerometer alone, through the cross-modal
VAE (virtual PPG), beside PPG alone, PPG + ACC fusion and the non-learned references, on the
simulated wrist sessions, leave-one-subject-out.

    python experiments/virtual_sensing.py --out experiments/results/virtual_sensing_db
    python experiments/virtual_sensing.py --quick --out /tmp/virtual_quick
    python experiments/virtual_sensing.py --linear --out experiments/results/virtual_sensing
    python experiments/virtual_sensing.py --references-only \
        --out experiments/results/virtual_references
    python experiments/virtual_sensing.py --bcg 5 --settings acc_only virtual acc_refined \
        --out experiments/results/virtual_sensing_bcg5_db
    python experiments/virtual_sensing.py --bcg 5 --labelled 2 --settings acc_only virtual \
        acc_refined --out experiments/results/virtual_sensing_bcg5_labelled2

Full: 10 subjects x 3 sessions of 10 min at 25 Hz, leave-2-subjects-out (5 folds), 40 epochs;
quick: 6 x 2 of 6 min, leave-one-out (6 folds), 12 epochs. `--bcg` scales the heart's trace in
the simulated ACC (1: the simulator's default). The models read spectra in decibels under each
window's peak (`models.virtual.compress`); `--linear` gives them the linear spectra of earlier
rounds (`experiments/results/virtual_sensing`). `--references-only` skips the learned settings
and scores the references alone (20 s: no training) on the same data and folds. `--gait` gives
the models that read ACC the gait prior (`models.virtual.GaitPrior`). `--context` sets how many
windows (2 s apart) the models see, in training samples and in prediction, `--batch-size` how
many samples a step takes, `--subjects` how many subjects are simulated (more subjects to
train on, with `--subjects-out` keeping the fold count). `--labelled N` keeps the reference HR
of only N training subjects per fold (`VirtualConfig.labelled`): the settings that learn from
HR alone train on those; virtual PPG also on the others' PPG and ACC, without their HR.
Writes `metrics.json`, `table.md`, `plots/` and `predictions.npz` (every window's estimates:
`experiments/virtual_gait_tracker.py` reads them) under `--out` (`wearjax cv virtual` runs
the same study).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wearjax.errors import WearjaxError
from wearjax.models.virtual import ABLATIONS, FLOOR_DB, SETTINGS
from wearjax.tasks.virtual import VirtualConfig
from wearjax.tasks.virtual_study import markdown_table, study, synthetic_sessions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="6 subjects, 12 epochs")
    parser.add_argument("--epochs", type=int, help="training epochs (default 40; quick 12)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS + ABLATIONS)
    parser.add_argument(
        "--references-only", action="store_true", help="no learned setting, the references only"
    )
    prior = parser.add_mutually_exclusive_group()
    prior.add_argument(
        "--gait", action="store_true", help="the gait prior in the ACC settings' models"
    )
    prior.add_argument(
        "--gait-ridge", action="store_true",
        help="the residual gait prior: a ridge on the gait fitted first, the model on top",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bcg", type=float, default=1.0, help="scale of the heart's trace in the ACC"
    )
    parser.add_argument("--subjects", type=int, help="simulated subjects (default 10; quick 6)")
    parser.add_argument("--subjects-out", type=int, help="per fold (default 2; quick 1)")
    parser.add_argument(
        "--context", type=int, default=16, help="windows the models see (default 16: 38 s)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="training samples per step")
    parser.add_argument(
        "--linear", action="store_true", help="linear spectra as inputs (earlier rounds' table)"
    )
    parser.add_argument(
        "--labelled", type=int, help="training subjects per fold whose HR is used (default all)"
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted study in --out, keeping the settings it finished",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.context < 1 or args.batch_size < 1:
        parser.error("--context and --batch-size must be at least 1")
    if args.labelled is not None and args.labelled < 1:
        parser.error("--labelled must be at least 1")
    if args.subjects is not None and args.subjects < 2:
        parser.error("--subjects must be at least 2 (one to train on, one to test)")
    config = VirtualConfig(
        seed=args.seed, floor_db=None if args.linear else FLOOR_DB, gait=args.gait,
        gait_ridge=args.gait_ridge, context=args.context, batch_size=args.batch_size,
        labelled=args.labelled,
    )  # fmt: skip
    epochs = args.epochs or (12 if args.quick else config.train.epochs)
    config = config._replace(train=config.train._replace(epochs=epochs))
    try:
        sessions = synthetic_sessions(
            args.quick, seed=args.seed, bcg=args.bcg, subjects=args.subjects
        )
        out = args.subjects_out or (1 if args.quick else 2)
        chosen = () if args.references_only else args.settings
        metrics = study(sessions, config, args.out, subjects_out=out, settings=chosen,
                        progress=True, resume=args.resume)  # fmt: skip
    except WearjaxError as err:
        print(f"virtual_sensing: {err}", file=sys.stderr)
        return 2
    print(markdown_table(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
