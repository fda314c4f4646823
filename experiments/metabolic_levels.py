"""Where the metabolic-domain information lives (issue 17): the same logistic probe and the same
subject-wise folds as `experiments/transformer_probe.py`, on small hand-made feature sets of
pyoxynet's real CPET windows (60 s of HR, VO2, VCO2 and VE, moderate / heavy / severe):

- `levels`: `asinh` of each channel's mean and SD (`tasks.probe.channel_levels`, what the
  transformer's tokeniser standardises away and feeds to each channel's [CLS] token), 8 numbers;
- `levels + slopes`: with each channel's least-squares slope over the window;
- `levels + log ratios`: with the six log ratios of the channels' means (VE / VCO2, ...);
- `statistical features` (`tasks.har_baselines.statistical_features`), alone and with levels.

With `--encoder CKPT` (an encoder `experiments/transformer_probe.py` wrote), the same probe on
the encoder's channels' [CLS] tokens, alone and with the 8 levels appended, for the
pretrained weights and for random ones (the seed `transformer_probe.py` draws them with): does
a probe find the levels again when the encoder's other dimensions stand beside them? And two
checks of what the whole embedding (`[CLS]` and patch mean per channel) holds:

- `levels + k PCs`: the 8 levels beside the embedding's first k principal components (k = 2,
  8; the PCA fitted per fold on its training windows only): what the embedding adds to the
  levels once the probe no longer pays for its other dimensions;
- `levels.md`: how well a ridge regression (penalty by leave-one-out) on the standardised
  embedding gives back each of the 8 levels on the fold's test subjects (R^2 over all test
  windows): what the embedding keeps of what the tokeniser hands its [CLS] tokens.

    python experiments/metabolic_levels.py --out experiments/results/metabolic_levels  # ~3 min
    python experiments/metabolic_levels.py --encoder DIR/encoder.wjx --out DIR/levels  # ~20 min
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from wearjax.cv import Split
from wearjax.data.pyoxynet import domain_windows
from wearjax.tasks.har_baselines import statistical_features
from wearjax.tasks.probe import channel_levels, probe_scores, ridge_predictions


def feature_sets(x: np.ndarray) -> dict[str, np.ndarray]:
    """Named `[N, F]` feature sets of windows `x [N, T, C]` (module docstring)."""
    lv = channel_levels(x)
    t = np.arange(x.shape[1], dtype=np.float64) - (x.shape[1] - 1) / 2
    slopes = np.einsum("t,ntc->nc", t, x) / np.sum(t**2)  # least squares over each window
    logm = np.log(np.maximum(x.mean(axis=1), 1e-3))
    c = x.shape[2]
    ratios = np.stack([logm[:, i] - logm[:, j] for i in range(c) for j in range(i + 1, c)], -1)
    return {
        "levels": lv,
        "levels + slopes": np.concatenate([lv, slopes], -1),
        "levels + log ratios": np.concatenate([lv, ratios], -1),
    }


def encoder_sets(
    path: Path, w, lv: np.ndarray, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The encoder's [CLS] tokens `[N, C * width]`, alone and with the levels, for its
    pretrained weights and for random ones (module docstring); and the whole embedding
    `[N, C * 2 width]` for each."""
    import jax

    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import load_encoder
    from wearjax.tasks.probe import embed_windows

    model, header = load_encoder(path)
    random_model = build_transformer(header["size"], key=jax.random.split(jax.random.key(seed))[0])
    out, whole = {}, {}
    for name, m in (("pretrained", model), ("random weights", random_model)):
        e = embed_windows(m, w, header)  # [N, C * 2 width]: per channel [CLS], patch mean
        cls = e.reshape(len(e), w.x.shape[2], 2, -1)[:, :, 0].reshape(len(e), -1)
        out[f"encoder [CLS] tokens, {name}"] = cls
        out[f"encoder [CLS] tokens + levels, {name}"] = np.concatenate([cls, lv], -1)
        whole[name] = e
    return out, whole


PCS = (2, 8)
"""How many of the embedding's principal components stand beside the levels (docstring)."""


def levels_beside_pcs(k: int, n_levels: int):
    """A per-fold transform of `[levels, embedding]` columns: the levels as they are, the
    embedding standardised and reduced to its first `k` principal components."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    embedding = make_pipeline(StandardScaler(), PCA(k, random_state=0))
    return ColumnTransformer(
        [("levels", "passthrough", slice(0, n_levels)), ("pcs", embedding, slice(n_levels, None))]
    )


def level_r2(embedding: np.ndarray, lv: np.ndarray, split: Split) -> np.ndarray:
    """`[L]` R^2 of each level `lv [N, L]` predicted from `embedding [N, F]` on each fold's
    test windows by a standardised ridge fitted on the fold's other windows (a penalty per
    level, `tasks.probe.ridge_predictions`), pooled over folds (each window tested once)."""
    pred = np.nansum(ridge_predictions(embedding, lv, split, per_target=True), 0)
    tested = split.test.any(0)
    err = np.sum((pred[tested] - lv[tested]) ** 2, 0)
    return 1.0 - err / np.sum((lv[tested] - lv[tested].mean(0)) ** 2, 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", type=Path, help="also probe this encoder's [CLS] tokens")
    args = parser.parse_args(argv)
    w, _ = domain_windows()
    split = Split.by_subject(w.subject, w.n_subjects, -(-w.n_subjects // 5), seed=args.seed)
    sets = feature_sets(w.x)
    stats = statistical_features(w)
    sets["statistical features"] = stats
    sets["statistical features + levels"] = np.concatenate([stats, sets["levels"]], -1)
    lv = sets["levels"]
    prepare, whole = {}, {}
    if args.encoder is not None:
        cls_sets, whole = encoder_sets(args.encoder, w, lv, args.seed)
        sets.update(cls_sets)
        for name, e in whole.items():
            for k in PCS:
                sets[f"levels + {k} PCs of the embedding, {name}"] = np.concatenate([lv, e], -1)
                prepare[f"levels + {k} PCs of the embedding, {name}"] = (
                    levels_beside_pcs(k, lv.shape[1]),
                    lv.shape[1] + k,
                )
    table = {}
    rows = ["| features | count | accuracy | macro-F1 | AUROC |", "|---|---:|---:|---:|---:|"]
    for name, features in sets.items():
        transform, count = prepare.get(name, (None, features.shape[1]))
        got = probe_scores(features, w, split, prepare=transform)
        m = table[name] = {"features": int(count)}
        for field, a in got._asdict().items():  # accuracy, macro_f1, auroc
            m |= {f"{field}_mean": float(np.mean(a)), f"{field}_sd": float(np.std(a, ddof=1))}
        cells = [f"{m[f + '_mean']:.3f} +- {m[f + '_sd']:.3f}" for f in got._fields]
        rows.append(f"| {name} | {m['features']} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"windows": int(len(w.y)), "subjects": w.n_subjects, "folds": split.n_folds}
    (args.out / "metrics.json").write_text(json.dumps({**meta, "probes": table}, indent=2))
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    if whole:
        names = [f"{stat} {ch}" for ch in w.channels for stat in ("mean", "SD")]
        r2_rows = ["| embedding | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        r2 = {name: level_r2(e, lv, split) for name, e in whole.items()}
        r2_rows += [f"| {n} | " + " | ".join(f"{v:.3f}" for v in r) + " |" for n, r in r2.items()]
        print("\n".join(r2_rows), flush=True)
        (args.out / "levels.md").write_text("\n".join(r2_rows) + "\n")
        levels_json = {n: dict(zip(names, map(float, r), strict=True)) for n, r in r2.items()}
        (args.out / "level_r2.json").write_text(json.dumps(levels_json, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
