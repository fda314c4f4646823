"""The metabolic-domain probe with few labelled subjects (issue 17): does pretraining help where
labels are scarce, the setting an encoder pretrained once is meant for?

The same windows (pyoxynet's real CPET tests, 60 s of HR, VO2, VCO2 and VE; moderate / heavy /
severe), the same subject-wise folds and the same logistic probe (its penalty chosen by an inner
subject-wise CV, `tasks.probe.probe_scores`; leave-one-subject-out under 4 subjects)
as `experiments/transformer_probe.py`, but each
fold's probe is fitted on the windows of only `n` of its training and validation subjects,
drawn at random (`tasks.probe.scarce_probe_scores`, `--draws` draws per `n`, the same draws for
every feature set), and scored on the fold's whole test set. Feature sets: the encoder's embedding
([CLS] token and patch mean per channel) with its pretrained weights and with random ones (the
seed `transformer_probe.py` draws them with), the statistical features and the 8 channel levels.
Besides each set's accuracy and AUROC (mean +- SD over folds x draws), the paired difference of the
pretrained and the random encoder on the same fits, and how many of those fits the pretrained
one wins (ties count as losses). The draws are nested: the same seed ranks each fold's subjects
once per draw, so the 4 are among the 8 and the 8 among the 16. The last row fits on every
subject and names the median number of them over folds.

With `--data watch`, the same on seglearn's real smartwatch set (7 exercises, 10 subjects,
leave-2-subjects-out folds as `experiments/transformer_wrist.py` draws them) for an encoder
pretrained at a wrist rate (the `encoder.wjx` that script writes).

    python experiments/label_scarce_probe.py --encoder DIR/encoder.wjx --out DIR/scarce
    python experiments/label_scarce_probe.py --data watch --labelled 2 4 \
        --encoder WRIST/encoder.wjx --out DIR/scarce_watch
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from metabolic_levels import encoder_sets

from wearjax.tasks.har_baselines import statistical_features
from wearjax.tasks.probe import channel_levels, probe_scores, probe_windows, scarce_probe_scores

METRICS = {"accuracy": "Accuracy", "auroc": "AUROC (one-vs-rest, the classes' mean)"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, required=True, help="transformer_probe's encoder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--labelled",
        type=int,
        nargs="+",
        default=[4, 8, 16],
        help="labelled subjects per fold (the full set is always added)",
    )
    parser.add_argument("--draws", type=int, default=5, help="random draws of them per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("pyoxynet_domain", "watch"), default="pyoxynet_domain")
    args = parser.parse_args(argv)
    w, split = probe_windows(args.data, args.seed)  # the folds `wearjax cv probe` uses
    lv = channel_levels(w.x)
    _, whole = encoder_sets(args.encoder, w, lv, args.seed)
    sets = {
        "encoder, pretrained": whole["pretrained"],
        "encoder, random weights": whole["random weights"],
        "statistical features": statistical_features(w),
        "levels": lv,
    }
    fit_subjects = int(np.median(split.fit_subjects(w.subject)))
    sizes: list[int | None] = sorted(set(args.labelled)) + [None]
    results = {}  # size label -> feature set -> ProbeScores [draws, folds], float64
    for n in sizes:
        if n is None:
            got = {name: probe_scores(f, w, split) for name, f in sets.items()}
            got = {name: g._make(a[None] for a in g) for name, g in got.items()}
        else:
            got = {
                name: scarce_probe_scores(f, w, split, n, draws=args.draws, seed=args.seed)
                for name, f in sets.items()
            }
        got = {name: g._make(np.asarray(a, np.float64) for a in g) for name, g in got.items()}
        label = f"all ({fit_subjects})" if n is None else str(n)
        results[label] = got
        for metric in METRICS:
            v = {name: getattr(g, metric) for name, g in got.items()}
            gap = v["encoder, pretrained"] - v["encoder, random weights"]
            print(f"n={label} {metric}: " + ", ".join(f"{k} {a.mean():.3f}" for k, a in v.items())
                  + f"; pretrained - random {gap.mean():+.3f}", flush=True)  # fmt: skip

    names = list(sets)
    lines, table = [], {}
    for metric, title in METRICS.items():
        head = "| labelled subjects per fold | fits | " + " | ".join(names)
        lines += [f"{title}:", "", head + " | pretrained - random | pretrained wins |",
                  "|---|---:|" + "---:|" * (len(names) + 2)]  # fmt: skip
        for label, got in results.items():
            v = {name: getattr(g, metric) for name, g in got.items()}
            gap = (v["encoder, pretrained"] - v["encoder, random weights"]).ravel()
            cells = [f"{v[n].mean():.3f} +- {v[n].std(ddof=1):.3f}" for n in names]
            wins = f"{int(np.sum(gap > 0))} of {gap.size}"
            lines.append(f"| {label} | {gap.size} | " + " | ".join(cells)
                         + f" | {gap.mean():+.3f} +- {gap.std(ddof=1):.3f} | {wins} |")  # fmt: skip
            table.setdefault(f"{metric} [draw][fold]", {})[label] = {
                n: v[n].tolist() for n in names
            }
        lines.append("")
    rows = lines[:-1]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    meta = {
        "data": args.data,
        "windows": int(len(w.y)), "subjects": w.n_subjects, "folds": split.n_folds,
        "draws": args.draws, "encoder": str(args.encoder), **table,
    }  # fmt: skip
    (args.out / "metrics.json").write_text(json.dumps(meta, indent=2))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
