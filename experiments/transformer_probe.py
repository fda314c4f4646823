"""The channel-aware transformer (issue 17): masked pretraining of `small` on the synthetic
1 Hz physiology corpus, then frozen-encoder linear probes on pyoxynet's real CPET tests
(metabolic intensity domain: moderate / heavy / severe, 60 s windows of HR, VO2, VCO2 and VE,
5 subject-wise folds), beside the same encoder with random weights, statistical features with
the same probe, and MiniRocket with a ridge classifier.

    python experiments/transformer_probe.py --out experiments/results/transformer_probe
    python experiments/transformer_probe.py --quick --out /tmp/probe_quick     # tiny, minutes

Writes `metrics.json`, `table.md` and the pretrained encoder `encoder.wjx` (`tasks.pretrain.
load_encoder`) under `--out`. Needs the `data` extra (pyoxynet, aeon,
scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import jax
import numpy as np

from wearjax.cv import Split
from wearjax.data.pyoxynet import domain_windows
from wearjax.models.transformer import build_transformer, n_parameters
from wearjax.tasks.har_baselines import statistical_features
from wearjax.tasks.pretrain import MASKINGS, PretrainConfig, named_corpus, pretrain, save_encoder
from wearjax.tasks.probe import (
    PROBE_CS,
    ProbeScores,
    embed_windows,
    minirocket_scores,
    probe_scores,
)


def _row(got: ProbeScores, seconds=None) -> dict:
    sd = lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
    out = {"n": len(got.accuracy)}
    for field, a in got._asdict().items():  # accuracy, macro_f1, auroc
        out |= {f"{field}_mean": float(np.mean(a)), f"{field}_sd": sd(a)}
    if seconds is not None:
        out["seconds"] = round(seconds, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="tiny encoder, a few epochs")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--corpus", choices=("synthetic", "cpet", "both"), default="synthetic",
        help="pretraining corpus: the simulated cohort's 1 Hz physiology, pyoxynet's real "
        "resting-to-exercise tests (HR, VO2, VCO2, VE; other subjects than the probed ramp "
        "tests, labels unused), or both",
    )  # fmt: skip
    parser.add_argument(
        "--hide-channel", action="store_true",
        help="hide every patch of one channel per window (PretrainConfig.hide_channel)",
    )  # fmt: skip
    parser.add_argument(
        "--level-weight", type=float, default=PretrainConfig._field_defaults["level_weight"],
        help="weight of the hidden levels' MSE beside the signal's (PretrainConfig.level_weight)",
    )  # fmt: skip
    parser.add_argument(
        "--level-targets", choices=("hidden", "all"), default="hidden",
        help="whose levels the [CLS] tokens predict in pretraining (PretrainConfig.level_targets)",
    )  # fmt: skip
    parser.add_argument(
        "--contrast-weight", type=float, default=PretrainConfig._field_defaults["contrast_weight"],
        help="weight of the temporal contrastive term (PretrainConfig.contrast_weight; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--contrast-negatives", choices=("batch", "recording"), default="batch",
        help="the contrastive term's negatives: the batch's other pairs, or only other times of "
        "the same recording (PretrainConfig.contrast_negatives)",
    )  # fmt: skip
    parser.add_argument(
        "--validation", choices=("recordings", "windows"), default="recordings",
        help="early stopping on held-out recordings, or on random windows whose neighbours are "
        "trained on (the encoders of rounds before 2026-12-06; PretrainConfig.validation)",
    )  # fmt: skip
    parser.add_argument(
        "--masking", choices=MASKINGS, default=PretrainConfig._field_defaults["masking"],
        help="the pretraining masks (PretrainConfig.masking; inpaint: hidden in the signal)",
    )  # fmt: skip
    parser.add_argument(
        "--mask-ratio", type=float, default=PretrainConfig._field_defaults["mask_ratio"],
        help="the fraction of patches (inpaint: time columns) hidden",
    )  # fmt: skip
    parser.add_argument(
        "--fixed-c", type=float,
        help="a fixed logistic penalty instead of the inner CV's choice (earlier rounds: 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    config = PretrainConfig(
        size="tiny" if args.quick else "small",
        seed=args.seed,
        hide_channel=args.hide_channel,
        level_weight=args.level_weight,
        level_targets=args.level_targets,
        contrast_weight=args.contrast_weight,
        contrast_negatives=args.contrast_negatives,
        validation=args.validation,
        masking=args.masking,
        mask_ratio=args.mask_ratio,
    )
    epochs = args.epochs or (4 if args.quick else config.train.epochs)
    config = config._replace(train=config.train._replace(epochs=epochs))

    t0 = time.perf_counter()
    corpus, _ = named_corpus(args.corpus, args.seed)  # `wearjax fit pretrain --corpus`'s
    fit = pretrain(corpus, config, progress="pretraining")
    pretrain_s = time.perf_counter() - t0
    save_encoder(args.out / "encoder.wjx", fit.model, config)  # before probing: nothing lost
    random_model = build_transformer(
        config.size, key=jax.random.split(jax.random.key(args.seed))[0]
    )

    cs = PROBE_CS if args.fixed_c is None else [args.fixed_c]
    w, skipped = domain_windows()
    split = Split.by_subject(w.subject, w.n_subjects, -(-w.n_subjects // 5), seed=args.seed)
    table = {}
    for name, model in (
        ("transformer (pretrained)", fit.model),
        ("transformer (random weights)", random_model),
    ):
        t = time.perf_counter()
        features = embed_windows(model, w, config.header())
        table[name] = _row(probe_scores(features, w, split, cs=cs), time.perf_counter() - t)
    t = time.perf_counter()
    table["statistical features"] = _row(
        probe_scores(statistical_features(w), w, split, cs=cs), time.perf_counter() - t
    )
    t = time.perf_counter()
    table["MiniRocket"] = _row(minirocket_scores(w, split), time.perf_counter() - t)
    history = fit.history
    metrics = {
        "pretraining": {
            "size": config.size, "parameters": n_parameters(config.size), "corpus": args.corpus,
            "hide_channel": config.hide_channel, "level_weight": config.level_weight,
            "level_targets": config.level_targets, "contrast_weight": config.contrast_weight,
            "contrast_negatives": config.contrast_negatives, "validation": config.validation,
            "masking": config.masking, "mask_ratio": config.mask_ratio,
            "windows": int(corpus.x.shape[0]), "epochs_run": int(len(history["val_loss"])),
            "seconds": round(pretrain_s, 1),
            "train_loss_first_last": [float(history["train_loss"][i]) for i in (0, -1)],
            "val_loss_first_best": [float(history["val_loss"][0]), float(min(history["val_loss"]))],
        },
        "metabolic_domain": {
            "windows": int(len(w.y)), "subjects": w.n_subjects, "folds": split.n_folds,
            "skipped": [f"{s.path.name}: {s.reason}" for s in skipped], "probes": table,
            "probe_penalty": "inner CV" if args.fixed_c is None else args.fixed_c,
        },
    }  # fmt: skip
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = ["| probe | accuracy | macro-F1 | AUROC |", "|---|---:|---:|---:|"]
    for name, m in table.items():
        cells = [f"{m[f + '_mean']:.3f} +- {m[f + '_sd']:.3f}" for f in ProbeScores._fields]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(json.dumps(metrics["pretraining"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
