"""The channel-aware transformer at a wrist rate (issue 17): masked pretraining at 25 Hz on the
simulated wrist (`tasks.pretrain.wrist_corpus`: PPG, ACC and gyro, 8 s windows), then frozen
probes on

- HR from PPG + ACC (ridge regression, MAE in bpm) on new simulated subjects
  (`data.wrist_synthetic.hr_windows`, other seeds than the corpus), 4 subject-wise folds;
- aeon's BasicMotions (10 Hz, resampled to 25 Hz; official split; logistic probe);
- seglearn's watch set (50 Hz, resampled to 25 Hz; 4 s windows; leave-2-subjects-out);

beside the same encoder with random weights, statistical features (which include each
channel's spectral peak: for a clean PPG that is the HR) with the same probe, and MiniRocket
on the windows at their own rate (a ridge classifier; for HR a ridge regression).

    python experiments/transformer_wrist.py --out experiments/results/transformer_wrist
    python experiments/transformer_wrist.py --quick --out /tmp/wrist_quick    # tiny, minutes

Writes `metrics.json`, `table.md` and `encoder.wjx` under `--out`. Needs the `data` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from wearjax.cv import Split
from wearjax.data.imu import basic_motions, watch
from wearjax.data.wrist_synthetic import hr_windows
from wearjax.models.transformer import build_transformer, n_parameters
from wearjax.tasks.har import official_split, subject_split
from wearjax.tasks.har_baselines import statistical_features
from wearjax.tasks.pretrain import WRIST, pretrain, save_encoder, wrist_corpus
from wearjax.tasks.probe import PROBE_CS, embed_windows, minirocket_scores, probe_scores
from wearjax.tasks.probe_ridge import minirocket_regression, ridge_scores


def _stats(values) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="tiny encoder, a few epochs")
    parser.add_argument("--epochs", type=int, help="pretraining epochs (default 20; quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--validation", choices=("recordings", "windows"), default="recordings",
        help="early stopping on held-out recordings, or on random windows whose neighbours are "
        "trained on (the encoders of rounds before 2026-12-06; PretrainConfig.validation)",
    )  # fmt: skip
    parser.add_argument(
        "--fixed-c", type=float,
        help="a fixed logistic penalty instead of the inner CV's choice (earlier rounds: 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cs = PROBE_CS if args.fixed_c is None else [args.fixed_c]
    args.out.mkdir(parents=True, exist_ok=True)
    config = WRIST._replace(
        size="tiny" if args.quick else "small", seed=args.seed, validation=args.validation
    )
    epochs = args.epochs or (3 if args.quick else 20)
    config = config._replace(train=config.train._replace(epochs=epochs))

    t0 = time.perf_counter()
    corpus = wrist_corpus(4 if args.quick else 8, seed=args.seed)
    fit = pretrain(corpus, config, progress="pretraining")
    seconds = round(time.perf_counter() - t0, 1)
    best = float(min(fit.history["val_loss"]))
    metrics: dict = {"pretraining": {"windows": int(corpus.x.shape[0]), "epochs": epochs,
                                     "seconds": seconds, "best_val_loss": best,
                                     "validation": config.validation,
                                     "parameters": n_parameters(config.size)}}  # fmt: skip
    save_encoder(args.out / "encoder.wjx", fit.model, config)
    encoders = {
        "transformer (pretrained)": fit.model,
        "transformer (random weights)": build_transformer(
            config.size, key=jax.random.split(jax.random.key(args.seed))[0]
        ),
    }
    header = config.header()

    hr_w, hr = hr_windows(4 if args.quick else 8, seed=args.seed + 1)
    split = Split.by_subject(hr_w.subject, hr_w.n_subjects, hr_w.n_subjects // 4, seed=args.seed)
    # each ridge's penalty chosen by folds of whole subjects (`tasks.probe_ridge`)
    by = hr_w.subject
    rows = {name: ridge_scores(embed_windows(m, hr_w, header), hr, split, groups=by)
            for name, m in encoders.items()}  # fmt: skip
    rows["statistical features"] = ridge_scores(statistical_features(hr_w), hr, split, groups=by)
    rocket = minirocket_regression(hr_w, hr, split, seed=args.seed, groups=by)
    rows["MiniRocket"] = np.nanmean(np.abs(rocket - hr[None]), axis=1)
    # no learning: the PPG's spectral peak in 0.5-4 Hz (Hann, zero-padded to 1024 points)
    ppg = hr_w.x[:, :, 0] - hr_w.x[:, :, 0].mean(1, keepdims=True)
    spec = np.abs(np.fft.rfft(ppg * np.hanning(ppg.shape[1]), 1024, axis=1))
    f = np.fft.rfftfreq(1024, 1 / hr_w.rate)
    band = (f >= 0.5) & (f <= 4.0)
    peak = 60 * f[band][np.argmax(spec[:, band], axis=1)]
    rows["PPG spectral peak (no learning)"] = np.asarray(
        [np.mean(np.abs(peak - hr)[split.test[k]]) for k in range(split.n_folds)]
    )
    metrics["hr_mae"] = {name: _stats(v) for name, v in rows.items()}

    sets = {"basic_motions": (basic_motions(), None)}
    if not args.quick:
        sets["watch"] = (watch(), None)
    for name, (w, _) in sets.items():
        s = official_split(w) if name == "basic_motions" else subject_split(w, seed=args.seed)
        table = {
            m: probe_scores(embed_windows(e, w, header), w, s, cs=cs) for m, e in encoders.items()
        }
        table["statistical features"] = probe_scores(statistical_features(w), w, s, cs=cs)
        table["MiniRocket"] = minirocket_scores(w, s, seed=args.seed)
        metrics[name] = {m: {field: _stats(a) for field, a in got._asdict().items()}
                         for m, got in table.items()}  # fmt: skip
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    lines = [
        "| probe | HR MAE (bpm) | BasicMotions acc. | watch macro-F1 | watch AUROC |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in metrics["hr_mae"]:
        h = metrics["hr_mae"][name]
        cells = [f"{h['mean']:.2f} +- {h['sd']:.2f}"]
        if name not in metrics["basic_motions"]:
            lines.append(f"| {name} | {cells[0]} | - | - | - |")
            continue
        for ds, key in (("basic_motions", "accuracy"), ("watch", "macro_f1"), ("watch", "auroc")):
            m = metrics.get(ds, {}).get(name)
            cells.append(f"{m[key]['mean']:.3f} +- {m[key]['sd']:.3f}" if m else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
