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

What a 60 s window cannot know (`ceiling.md`): the domains are set by each subject's own
thresholds, so the same VO2 is moderate for one runner and severe for another. Four rows
measure how much of that a window holds:

- `levels + VO2 over the test's peak` and `levels + position in the test`: each window's mean VO2
  over the highest window mean of its own test, and its place in the test's windows (0 first,
  1 last). Both need the whole test, which the probe is never given: oracles, not probes;
- `levels + VO2 over the test's peak, predicted from the window`: the same ratio predicted from
  the window's levels, slopes and log ratios by gradient-boosted trees fitted per fold on the
  fold's training and validation windows (scikit-learn's `HistGradientBoostingRegressor`);
- `gradient-boosted trees on levels, slopes and log ratios`: a nonlinear classifier in place of
  the linear probe (`HistGradientBoostingClassifier`, its defaults), the same folds.

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
from wearjax.tasks.probe import ProbeScores, channel_levels, probe_scores
from wearjax.tasks.probe_ridge import ridge_predictions


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


def window_features(x: np.ndarray) -> np.ndarray:
    """Levels, slopes and log ratios of the means of windows `x [N, T, C]`, `[N, 3C + C(C-1)/2]`."""
    sets = feature_sets(x)
    return np.concatenate(
        [sets["levels + slopes"], sets["levels + log ratios"][:, 2 * x.shape[2] :]], -1
    )


def test_relative(x: np.ndarray, subject: np.ndarray, vo2: int = 1) -> np.ndarray:
    """`[N, 2]`: each window's mean VO2 (channel `vo2`) over the highest window mean of its
    subject's test, and its place among the test's windows (0 first, 1 last). What the whole
    test says about a window, which the window alone does not hold (module docstring)."""
    mean = x[:, :, vo2].mean(1)
    out = np.zeros((len(x), 2))
    for s in np.unique(subject):
        i = np.flatnonzero(subject == s)  # the test's windows, in time order
        out[i, 0] = mean[i] / mean[i].max()
        out[i, 1] = np.arange(len(i)) / max(len(i) - 1, 1)
    return out


def ceiling_rows(w, split: Split, lv: np.ndarray, seed: int) -> tuple[dict[str, tuple], float]:
    """The `ceiling.md` rows (module docstring), name -> (feature count, `ProbeScores`), and
    the R^2 of the predicted VO2 over the test's peak on the test windows of every fold."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from wearjax.tasks.probe import auroc_scores, scores

    relative = test_relative(w.x, w.subject)
    f = window_features(w.x)
    predicted = np.zeros(len(f))
    pred = np.full(split.test.shape, -1, np.int64)
    score = np.zeros((*split.test.shape, len(w.classes)))
    for k in range(split.n_folds):  # scikit-learn fits one fold at a time
        fit_on = np.flatnonzero(split.train[k] | split.validation[k])
        test = np.flatnonzero(split.test[k])
        trees = HistGradientBoostingRegressor(random_state=seed).fit(f[fit_on], relative[fit_on, 0])
        predicted[test] = trees.predict(f[test])
        classifier = HistGradientBoostingClassifier(random_state=seed).fit(f[fit_on], w.y[fit_on])
        pred[k, test] = classifier.predict(f[test])
        log_p = np.log(np.maximum(classifier.predict_proba(f[test]), 1e-300))
        score[k][np.ix_(test, classifier.classes_)] = log_p
    tested = split.test.any(0)
    err = np.sum((predicted[tested] - relative[tested, 0]) ** 2)
    r2 = 1.0 - err / np.sum((relative[tested, 0] - relative[tested, 0].mean()) ** 2)
    print(f"VO2 over the test's peak predicted from the window: R^2 {r2:.3f}", flush=True)
    n = lv.shape[1] + 1
    return {
        "levels + VO2 over the test's peak (needs the whole test)": (
            n,
            probe_scores(np.c_[lv, relative[:, :1]], w, split),
        ),
        "levels + position in the test (needs the whole test)": (
            n,
            probe_scores(np.c_[lv, relative[:, 1:]], w, split),
        ),
        "levels + VO2 over the test's peak, predicted from the window": (
            n,
            probe_scores(np.c_[lv, predicted], w, split),
        ),
        "gradient-boosted trees on levels, slopes and log ratios": (
            f.shape[1],
            ProbeScores(*scores(pred, w, split), auroc_scores(score, w, split)),
        ),
    }, r2


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
    level, `tasks.probe_ridge.ridge_predictions`, leave-one-window-out), pooled over folds
    (each window tested once)."""
    pred = np.nansum(ridge_predictions(embedding, lv, split, per_target=True), 0)
    tested = split.test.any(0)
    err = np.sum((pred[tested] - lv[tested]) ** 2, 0)
    return 1.0 - err / np.sum((lv[tested] - lv[tested].mean(0)) ** 2, 0)


HEADER = "| features | count | accuracy | macro-F1 | AUROC |\n|---|---:|---:|---:|---:|"


def table_row(table: dict, name: str, count: int, got: ProbeScores) -> str:
    """Record `got` (mean and SD over folds) in `table[name]`; its markdown row, printed."""
    m = table[name] = {"features": int(count)}
    for field, a in got._asdict().items():  # accuracy, macro_f1, auroc
        m |= {f"{field}_mean": float(np.mean(a)), f"{field}_sd": float(np.std(a, ddof=1))}
    cells = [f"{m[f + '_mean']:.3f} +- {m[f + '_sd']:.3f}" for f in got._fields]
    row = f"| {name} | {m['features']} | " + " | ".join(cells) + " |"
    print(row, flush=True)
    return row


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
    table, rows = {}, [HEADER]
    for name, features in sets.items():
        transform, count = prepare.get(name, (None, features.shape[1]))
        rows.append(
            table_row(table, name, count, probe_scores(features, w, split, prepare=transform))
        )
    ceiling, ceiling_table = [HEADER], {}
    got, r2 = ceiling_rows(w, split, lv, args.seed)
    for name, (count, scored) in got.items():
        ceiling.append(table_row(ceiling_table, name, count, scored))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"windows": int(len(w.y)), "subjects": w.n_subjects, "folds": split.n_folds}
    (args.out / "metrics.json").write_text(json.dumps({**meta, "probes": table}, indent=2))
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    ceiling_meta = {**meta, "relative_vo2_r2": float(r2), "probes": ceiling_table}
    (args.out / "ceiling.json").write_text(json.dumps(ceiling_meta, indent=2))
    (args.out / "ceiling.md").write_text("\n".join(ceiling) + "\n")
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
