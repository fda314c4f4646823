"""Linear probes of a frozen encoder (`models.transformer`) on labelled windows.

Each window `[T, C]` goes through `signal.cwt.scalogram` at the encoder's nominal rate and
scales (resampled from the window's own rate), the frozen encoder embeds every channel (its
[CLS] token and the mean of its patch tokens, with the channel's levels) and the channels are
concatenated, in the dataset's channel order. A
standardised multinomial logistic regression is fitted per fold on the fold's training and
validation windows, its penalty chosen by an inner subject-wise CV on those windows
(`probe_scores`), and scored on its test windows (accuracy, macro-F1). The statistical-feature
baseline (`tasks.har_baselines.statistical_features`) and MiniRocket go through the same folds.
"""

from __future__ import annotations

import logging
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.data.imu import LabelledWindows
from wearjax.errors import WearjaxDataError
from wearjax.eval.classification import accuracy, macro_f1
from wearjax.models.transformer import PATCH
from wearjax.signal.cwt import levels, scale_grid, scalogram

logger = logging.getLogger(__name__)


def embed_windows(model, windows: LabelledWindows, header: dict, *, batch: int = 64) -> np.ndarray:
    """`[N, C * 2 width]` frozen embeddings of every window (module docstring); `header` is the
    encoder's (`PretrainConfig.header()`: nominal rate and scales)."""
    freqs = scale_grid(header["low_hz"], header["high_hz"], header["n_scales"])
    rate, nominal = float(windows.rate), float(header["nominal_rate"])
    samples = round(windows.x.shape[1] * nominal / rate)
    if samples < PATCH[1]:
        raise WearjaxDataError(
            f"windows of {windows.x.shape[1] / rate:g} s give {samples} samples at the encoder's "
            f"{nominal:g} Hz, fewer than one {PATCH[1]}-sample patch: use longer windows or an "
            "encoder pretrained at a higher rate"
        )
    if rate > 4 * nominal:
        logger.warning(
            "the encoder sees these %g Hz windows at %g Hz: content above %g Hz is lost",
            rate, nominal, header["high_hz"],
        )  # fmt: skip

    @eqx.filter_jit
    def run(model, x):
        def one(xi):  # [C, T]
            planes = scalogram(xi, rate, nominal, freqs)
            return model.embed(planes, levels=levels(xi, rate, nominal)).reshape(-1)

        return jax.lax.map(one, x, batch_size=batch)

    return np.asarray(run(model, jnp.asarray(windows.x.transpose(0, 2, 1))))


PROBE_CS = np.logspace(-3, 2, 6)
"""The logistic probe's inverse penalties, chosen per fold by an inner subject-wise CV."""


def probe_scores(
    features: np.ndarray,
    windows: LabelledWindows,
    split: Split,
    *,
    cs=PROBE_CS,
    inner: int = 4,
    prepare=None,
):
    """Accuracy and macro-F1 `[K]` of a logistic probe on `features [N, F]` per fold.

    The penalty is chosen per fold from `cs` by `inner`-fold cross-validation grouped by
    subject on the fold's training and validation windows (never its test subjects), as the
    ridge probe chooses its own (`ridge_scores`): a fixed penalty favours whichever feature set
    happens to suit it, and a 1,000-dimensional embedding needs another than 40 statistics.
    Where the fold's windows hold fewer than `inner` subjects (an official split without
    subject ids), the inner folds are stratified by class instead; where a class has fewer
    than `inner` windows even for that, the probe falls back to C = 1 and says so. `prepare`,
    a scikit-learn transformer (e.g. a PCA of some columns), is fitted per fold on the fold's
    training windows only, before the standardisation."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import GroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.full(split.test.shape, -1, np.int64)
    for k in range(split.n_folds):  # scikit-learn fits one fold at a time
        fit_on = np.flatnonzero(split.train[k] | split.validation[k])
        x, y, groups = features[fit_on], windows.y[fit_on], windows.subject[fit_on]
        probe = LogisticRegression(C=float(cs[0]), max_iter=5000)
        by_subject = len(np.unique(groups)) >= inner
        if len(cs) > 1 and not by_subject and np.bincount(y).min(initial=0) < inner:
            logger.warning(
                "fold %d: too few subjects and windows per class for %d inner folds; the "
                "logistic probe uses C = 1", k, inner,
            )  # fmt: skip
            probe = LogisticRegression(C=1.0, max_iter=5000)
        elif len(cs) > 1:
            if by_subject:
                folds = list(GroupKFold(inner).split(x, y, groups))
            else:
                folds = list(StratifiedKFold(inner, shuffle=True, random_state=0).split(x, y))
            # one regularisation path per inner fold, warm-started from C to C (a grid search
            # refits from scratch: 20 min against minutes on 1,000-dimensional embeddings)
            probe = LogisticRegressionCV(Cs=list(cs), cv=folds, max_iter=5000)
        steps = [] if prepare is None else [clone(prepare)]
        model = make_pipeline(*steps, StandardScaler(), probe)
        with warnings.catch_warnings():  # scikit-learn 1.9 announces new defaults; these are
            warnings.simplefilter("ignore", FutureWarning)  # L2, accuracy, refit in every version
            model.fit(x, y)
        pred[k, split.test[k]] = model.predict(features[split.test[k]])
    return scores(pred, windows, split)


def scarce_probe_scores(
    features: np.ndarray,
    windows: LabelledWindows,
    split: Split,
    labelled: int,
    *,
    draws: int = 5,
    seed: int = 0,
    **probe,
):
    """Accuracy and macro-F1 `[draws, K]` of `probe_scores` (`probe`: its keyword arguments)
    with each fold's probe fitted on the windows of only `labelled` of its training and
    validation subjects (`Split.subsample`), drawn `draws` times with the seeds
    `seed + 1000 d`: the same draws for every feature set, and nested across sizes (the 4 of a
    draw are among its 8). Scored on the whole test set."""
    check_scarce(windows, split, labelled, draws, seed)
    out = [
        probe_scores(features, windows, split.subsample(
            windows.subject, windows.n_subjects, labelled, seed=seed + 1000 * d), **probe)
        for d in range(draws)
    ]  # fmt: skip
    return np.stack([a for a, _ in out]), np.stack([f for _, f in out])


def ridge_predictions(
    features: np.ndarray, target: np.ndarray, split: Split, *, per_target: bool = False
) -> np.ndarray:
    """`[K, N, ...]` predictions of `target [N, ...]` by a standardised ridge regression (its
    penalty chosen by leave-one-out over 1e-3..1e3, `RidgeCV`; one per target column with
    `per_target`) on `features [N, F]`, fitted per fold on its training and validation windows;
    each fold's row holds its test windows' predictions and NaN elsewhere."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.full((split.n_folds, *target.shape), np.nan)
    for k in range(split.n_folds):  # scikit-learn fits one fold at a time
        fit_on = split.train[k] | split.validation[k]
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13), alpha_per_target=per_target)
        model = make_pipeline(StandardScaler(), ridge).fit(features[fit_on], target[fit_on])
        out[k, split.test[k]] = model.predict(features[split.test[k]])
    return out


def ridge_scores(features: np.ndarray, target: np.ndarray, split: Split) -> np.ndarray:
    """MAE `[K]` of `ridge_predictions` on each fold's test windows."""
    pred = ridge_predictions(features, target, split)
    return np.nanmean(np.abs(pred - target[None]), axis=1)  # NaN outside each fold's test set


def scores(pred: np.ndarray, windows: LabelledWindows, split: Split):
    """Accuracy and macro-F1 `[K]` of predicted classes `[K, N]` on each fold's test set."""
    p = jnp.asarray(pred)
    y = jnp.broadcast_to(jnp.asarray(windows.y), p.shape)
    test = jnp.asarray(split.test)
    n = len(windows.classes)
    acc = np.asarray(jax.vmap(accuracy)(p, y, test))
    f1 = np.asarray(jax.vmap(lambda a, b, m: macro_f1(a, b, m, n))(p, y, test))
    return acc, f1


def channel_levels(x: np.ndarray) -> np.ndarray:
    """`[N, 2C]` from windows `x [N, T, C]`: `asinh` of each channel's mean and SD over the
    window (`signal.cwt.levels`),
    the numbers the encoder's tokeniser standardises away and hands to each channel's [CLS]
    token. On pyoxynet's metabolic domains these 8 numbers alone outscore every encoder probe
    (`experiments/metabolic_levels.py`), so the CLI reports them beside the encoder."""
    per_channel = jnp.asarray(x, jnp.float32).transpose(0, 2, 1)  # [N, C, T]
    return np.asarray(levels(per_channel, 1.0, 1.0)).reshape(len(x), -1)


def own_windows(data: str, seed: int = 0) -> tuple[LabelledWindows, Split]:
    """A researcher's labelled windows (`data.imu.read_windows`) and their folds: the file's
    official split where it has a `train` array, else a fifth of the subjects (rounded up) held
    out per fold where it names 3 or more (3-5 folds); neither is refused, since folds that
    put one subject's windows on both sides overstate any probe."""
    from pathlib import Path

    from wearjax.data.imu import read_windows
    from wearjax.tasks.har import official_split, subject_split

    path = Path(data)
    if not path.is_file():
        raise WearjaxDataError(
            f"--data {data}: neither a built-in set (pyoxynet_domain, basic_motions, watch) nor "
            "an NPZ file of labelled windows"
        )
    w = read_windows(path)
    if w.official_train is not None:
        return w, official_split(w)
    if w.n_subjects >= 3:
        return w, subject_split(w, -(-w.n_subjects // 5), seed=seed)
    raise WearjaxDataError(
        f"{path.name}: {max(w.n_subjects, 0)} subject(s) and no train array: add a subject array "
        "(3 or more subjects, for subject-wise folds) or a train array (an official split)"
    )


def check_scarce(windows: LabelledWindows, split: Split, labelled: int, draws: int, seed: int):
    """Refuse, before any work, a label-scarce probe (`scarce_probe_scores`) that cannot run as
    asked: windows without subjects, a fold with `labelled` or fewer subjects to draw from
    (every draw would be the whole fold), or a draw whose windows hold one class only."""
    if windows.n_subjects < 2:
        raise WearjaxDataError(
            "these windows have no subject ids, so --labelled cannot draw subjects: use a set "
            "with subjects (pyoxynet_domain, watch, or a file with a subject array), or leave "
            "out --labelled"
        )
    fit = split.train | split.validation
    pool = [len(np.unique(windows.subject[f])) for f in fit]
    if labelled >= min(pool):
        raise WearjaxDataError(
            f"--labelled {labelled}: the folds fit on {min(pool)}-{max(pool)} subjects, so every "
            f"draw would take them all; choose fewer than {min(pool)}"
        )
    for d in range(draws):
        sub = split.subsample(windows.subject, windows.n_subjects, labelled, seed=seed + 1000 * d)
        for k in range(split.n_folds):
            if len(np.unique(windows.y[sub.train[k] | sub.validation[k]])) < 2:
                raise WearjaxDataError(
                    f"--labelled {labelled}: draw {d} of fold {k} gives windows of one class "
                    "only; label more subjects per fold"
                )


def probe_command(args, say) -> int:
    """`wearjax cv probe`: frozen-encoder logistic probe with subject-wise (or the official)
    folds, beside the statistical-feature and channel-level probes; writes metrics.json. `say`
    prints one line on stderr."""
    import json

    from wearjax.data.imu import basic_motions, watch
    from wearjax.data.pyoxynet import domain_windows
    from wearjax.tasks.har import official_split, subject_split
    from wearjax.tasks.har_baselines import statistical_features
    from wearjax.tasks.pretrain import load_encoder

    labelled, draws = getattr(args, "labelled", None), getattr(args, "draws", None)
    if labelled is None and draws is not None:
        raise WearjaxDataError("--draws counts the draws of --labelled; give --labelled too")
    draws = 5 if draws is None else draws
    if labelled is not None and (labelled < 1 or draws < 1):
        raise WearjaxDataError("--labelled and --draws take a number of at least 1")
    if labelled is not None and args.data == "basic_motions":
        raise WearjaxDataError(
            "basic_motions has no subject ids, so --labelled cannot draw subjects: use "
            "pyoxynet_domain, watch or a file with a subject array, or leave out --labelled"
        )
    if args.data == "pyoxynet_domain":
        w = domain_windows()[0]
        split = subject_split(w, -(-w.n_subjects // 5), seed=args.seed)
    elif args.data == "basic_motions":
        w = basic_motions()
        split = official_split(w)
    elif args.data == "watch":
        w = watch()
        split = subject_split(w, seed=args.seed)
    else:
        w, split = own_windows(args.data, args.seed)
    if labelled is not None:
        check_scarce(w, split, labelled, draws, args.seed)
    model, header = load_encoder(args.encoder)
    if w.rate > 4 * header["nominal_rate"]:
        say(
            f"the encoder works at {header['nominal_rate']:g} Hz; these {w.rate:g} Hz windows lose "
            f"everything above {header['high_hz']:g} Hz (pretrain at a higher rate for them)"
        )

    def scores_of(features):
        if labelled is None:
            return probe_scores(features, w, split)
        return scarce_probe_scores(features, w, split, labelled, draws=draws, seed=args.seed)

    rows = {
        "encoder": scores_of(embed_windows(model, w, header)),
        "statistical features": scores_of(statistical_features(w)),
        "channel levels": scores_of(channel_levels(w.x)),
    }
    metrics = {
        name: {"accuracy": float(np.mean(a)), "accuracy_sd": float(np.std(a)),
               "macro_f1": float(np.mean(f)), "macro_f1_sd": float(np.std(f))}
        for name, (a, f) in rows.items()
    }  # fmt: skip
    record = {args.data: metrics}
    if labelled is not None:  # the means and SDs are over every fold of every draw
        record["labelled"] = {"subjects_per_fold": labelled, "draws": draws}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2))
    if labelled is not None:
        print(f"each fold's probes fitted on {labelled} subjects, {draws} draws; mean over the "
              f"{split.n_folds} folds x {draws} draws")  # fmt: skip
    for name, m in metrics.items():
        print(f"{args.data} {name}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    return 0
