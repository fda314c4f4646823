"""Linear probes of a frozen encoder (`models.transformer`) on labelled windows.

Each window `[T, C]` goes through `signal.cwt.scalogram` at the encoder's nominal rate and
scales (resampled from the window's own rate), the frozen encoder embeds every channel (its
[CLS] token and the mean of its patch tokens, with the channel's levels) and the channels are
concatenated, in the dataset's channel order. A
standardised multinomial logistic regression is fitted per fold on the fold's training and
validation windows, its penalty chosen by an inner subject-wise CV on those windows
(`probe_scores`), and scored on its test windows (accuracy, macro-F1, and the one-vs-rest
AUROC of its class probabilities, NormWear's headline metric). The statistical-feature
baseline (`tasks.har_baselines.statistical_features`), the channel levels and MiniRocket
(`minirocket_scores`) go through the same folds.
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.data.imu import LabelledWindows
from wearjax.errors import WearjaxDataError
from wearjax.eval.classification import accuracy, macro_auroc, macro_f1
from wearjax.eval.report import write_environment
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
    if rate < 2 * header["high_hz"]:  # upsampled: the scales above rate / 2 see nothing
        logger.warning(
            "these %g Hz windows hold nothing above %g Hz, but the encoder's scales reach %g Hz: "
            "its top scale rows see no signal (an encoder pretrained at a lower rate fits them)",
            rate, rate / 2, header["high_hz"],
        )  # fmt: skip

    @eqx.filter_jit
    def run(model, x):
        def one(xi):  # [C, T]
            planes = scalogram(xi, rate, nominal, freqs)
            return model.embed(planes, levels=levels(xi, rate, nominal)).reshape(-1)

        return jax.lax.map(one, x, batch_size=batch)

    return np.asarray(run(model, jnp.asarray(windows.x.transpose(0, 2, 1))))


class ProbeScores(NamedTuple):
    """A probe's test scores per fold, `[K]` (`probe_scores`) or `[splits, K]` (`probe_over`)."""

    accuracy: np.ndarray
    macro_f1: np.ndarray
    auroc: np.ndarray  # one-vs-rest, the classes' mean (`eval.classification.macro_auroc`)


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
    """`ProbeScores` (accuracy, macro-F1, AUROC `[K]`) of a logistic probe on `features [N, F]`
    per fold.

    The penalty is chosen per fold from `cs` by `inner`-fold cross-validation grouped by
    subject on the fold's training and validation windows (never its test subjects), as the
    ridge probe chooses its own (`probe_ridge`): a fixed penalty favours whichever feature set
    happens to suit it, and a 768-dimensional embedding needs another than 54 statistics.
    With 2 to `inner - 1` subjects (a label-scarce probe) the inner folds leave one subject out
    each; with one class per subject they score the log-loss, not accuracy (`_inner_scoring`);
    where the fitting windows hold one subject or none known (`--labelled 1`, an official
    split without subjects), the inner folds keep each recording whole when windows share
    recordings (overlapping windows on both sides would favour a weak penalty), else they
    are stratified by class; where that leaves fewer than two recordings, or a class with
    fewer than `inner` windows, the probe falls back to C = 1 and says so. `prepare`, a scikit-learn
    transformer (e.g. a PCA of some columns), is fitted per fold on the windows the probe is
    fitted on (training and validation), before the standardisation."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import GroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from wearjax.tasks.har_baselines import log_probabilities

    pred = np.full(split.test.shape, -1, np.int64)
    # class scores for the AUROC: log-probabilities, whose order survives float32 where
    # probabilities within 6e-8 of 1 would tie; a class the fold never fitted scores 0 (ties)
    score = np.zeros((*split.test.shape, len(windows.classes)))
    for k in range(split.n_folds):  # scikit-learn fits one fold at a time
        fit_on = np.flatnonzero(split.train[k] | split.validation[k])
        x, y, groups = features[fit_on], windows.y[fit_on], windows.subject[fit_on]
        probe = LogisticRegression(C=float(cs[0]), max_iter=5000)
        n_groups = len(np.unique(groups))
        by_subject = bool(n_groups >= 2 and groups.min() >= 0)  # subject ids known
        recordings = windows.recording[fit_on]
        if not by_subject and len(np.unique(recordings)) < len(fit_on):
            # one subject (--labelled 1) or none known, but windows of one recording overlap:
            # the inner folds keep each recording whole (until 2026-12-07 they split windows)
            groups, n_groups = recordings, len(np.unique(recordings))
            by_subject = n_groups >= 2
            too_few = not by_subject
        else:
            too_few = not by_subject and np.unique(y, return_counts=True)[1].min() < inner
        if len(cs) > 1 and too_few:
            logger.warning(
                "fold %d: too few subjects, recordings or windows per class for %d inner folds; "
                "the logistic probe uses C = 1", k, inner,
            )  # fmt: skip
            probe = LogisticRegression(C=1.0, max_iter=5000)
        elif len(cs) > 1:
            if by_subject:
                folds = list(GroupKFold(min(inner, n_groups)).split(x, y, groups))
            else:
                folds = list(StratifiedKFold(inner, shuffle=True, random_state=0).split(x, y))
            # one regularisation path per inner fold, warm-started from C to C (a grid search
            # refits from scratch: 20 min against minutes on 768-dimensional embeddings)
            scoring = _inner_scoring(y, groups, by_subject, folds)
            probe = LogisticRegressionCV(Cs=list(cs), cv=folds, max_iter=5000, scoring=scoring)
        # the scaler (and `prepare`) fit on all of the fold's fit windows, the inner folds'
        # validation subjects included: the test subjects never, but the penalty's choice leans
        # a little optimistic (a grid search over the whole pipeline would not; see above)
        steps = [] if prepare is None else [clone(prepare)]
        model = make_pipeline(*steps, StandardScaler(), probe)
        with warnings.catch_warnings():  # scikit-learn 1.9 announces new defaults; these are
            warnings.simplefilter("ignore", FutureWarning)  # L2, accuracy, refit in every version
            model.fit(x, y)
        test = np.flatnonzero(split.test[k])
        pred[k, test] = model.predict(features[test])
        score[k][np.ix_(test, model.classes_)] = log_probabilities(model, features[test])
    return ProbeScores(*scores(pred, windows, split), auroc_scores(score, windows, split))


def _inner_scoring(y: np.ndarray, groups: np.ndarray, by_subject: bool, folds) -> str | None:
    """The inner CV's score: accuracy (scikit-learn's default), or the log-loss where every
    subject's windows hold one class (labels per subject, e.g. a diagnosis), or where an inner
    fold trains without a class (a label-scarce probe whose subject lacks one). There accuracy
    ties across penalties (every C predicts the majority class on a single-class subject, or
    misses the absent class alike), and the tie went to the strongest penalty, which predicts
    the majority class whatever the windows say."""
    if not by_subject:
        return None
    per_subject = [len(np.unique(y[groups == g])) for g in np.unique(groups)]
    classes = len(np.unique(y))
    short = any(len(np.unique(y[train])) < classes for train, _ in folds)
    return "neg_log_loss" if max(per_subject) == 1 or short else None


DRAWS = 5
"""Draws of the labelled subjects per label-scarce probe (`scarce_splits`) unless told."""


def scarce_probe_scores(
    features: np.ndarray,
    windows: LabelledWindows,
    split: Split,
    labelled: int,
    *,
    draws: int = DRAWS,
    seed: int = 0,
    **probe,
):
    """`ProbeScores` `[draws, K]` of `probe_scores` (`probe`: its keyword arguments)
    on each of `scarce_splits`: each fold's probe fitted on the windows of only `labelled` of
    its training and validation subjects, scored on the fold's whole test set."""
    return probe_over(
        features, windows, scarce_splits(windows, split, labelled, draws, seed), **probe
    )


def probe_over(
    features: np.ndarray, windows: LabelledWindows, splits: list[Split], **probe
) -> ProbeScores:
    """`ProbeScores` `[len(splits), K]`: `probe_scores` on each split."""
    return _stacked([probe_scores(features, windows, sub, **probe) for sub in splits])


def minirocket_scores(windows: LabelledWindows, split: Split, seed: int = 0) -> ProbeScores:
    """`ProbeScores` `[K]` of MiniRocket with its ridge classifier (`tasks.har_baselines`) on
    the same folds: the field's strong, cheap baseline, its AUROC from the decision values."""
    from wearjax.tasks.har_baselines import baseline_outputs

    pred, score = baseline_outputs("minirocket", windows, split, seed)
    return ProbeScores(*scores(pred, windows, split), auroc_scores(score, windows, split))


def _stacked(per_split: list[ProbeScores]) -> ProbeScores:
    return ProbeScores(*(np.stack(field) for field in zip(*per_split, strict=True)))


MINIROCKET_MIN_LENGTH = 9
"""aeon's MiniRocket needs windows of 9 samples or more at their own rate."""


def scores(pred: np.ndarray, windows: LabelledWindows, split: Split):
    """Accuracy and macro-F1 `[K]` of predicted classes `[K, N]` on each fold's test set."""
    p = jnp.asarray(pred)
    y = jnp.broadcast_to(jnp.asarray(windows.y), p.shape)
    test = jnp.asarray(split.test)
    n = len(windows.classes)
    acc = np.asarray(jax.vmap(accuracy)(p, y, test))
    f1 = np.asarray(jax.vmap(lambda a, b, m: macro_f1(a, b, m, n))(p, y, test))
    return acc, f1


def auroc_scores(score: np.ndarray, windows: LabelledWindows, split: Split) -> np.ndarray:
    """Macro one-vs-rest AUROC `[K]` of class scores `[K, N, classes]` (log-probabilities or
    decision values: ranked in float32) on each fold's test set; NaN for a fold whose test set
    holds one class."""
    y = jnp.asarray(windows.y)
    auc = jax.vmap(macro_auroc, in_axes=(0, None, 0))
    return np.asarray(auc(jnp.asarray(score, jnp.float32), y, jnp.asarray(split.test)))


def channel_levels(x: np.ndarray) -> np.ndarray:
    """`[N, 2C]` from windows `x [N, T, C]`: `asinh` of each channel's mean and SD over the
    window at its own rate (`signal.cwt.levels`), the numbers the encoder's tokeniser
    standardises away and hands to each channel's [CLS] token when the windows are at the
    encoder's rate (at another, the tokeniser takes the SD after resampling, which drops
    what lies above the encoder's band). On pyoxynet's metabolic domains, at the encoder's
    1 Hz, these 8 numbers alone outscore every encoder probe
    (`experiments/metabolic_levels.py`), so the CLI reports them beside the encoder."""
    per_channel = jnp.asarray(x, jnp.float32).transpose(0, 2, 1)  # [N, C, T]
    return np.asarray(levels(per_channel, 1.0, 1.0)).reshape(len(x), -1)


BUILT_IN = ("pyoxynet_domain", "basic_motions", "watch")
"""The labelled sets `cv probe` knows by name (`probe_windows`); any other `--data` is a file."""


def fifth_out(n_subjects: int) -> int:
    """Subjects held out per fold for about 5 subject-wise folds: a fifth, rounded up."""
    return -(-n_subjects // 5)


def probe_windows(data: str, seed: int = 0) -> tuple[LabelledWindows, Split]:
    """The labelled windows `data` names and their folds: pyoxynet's metabolic domains (a fifth
    of the subjects out per fold), BasicMotions (its official split), seglearn's watch set
    (leave-2-subjects-out), or a researcher's NPZ file (`data.imu.read_windows`): its official
    split where it has a `train` array, else a fifth of its subjects out per fold where it
    names 3 or more (3-5 folds); a file with neither is refused, since folds that put one
    subject's windows on both sides overstate any probe."""
    from pathlib import Path

    from wearjax.data.imu import basic_motions, read_windows, watch
    from wearjax.data.pyoxynet import domain_windows
    from wearjax.tasks.har import official_split, subject_split

    if data == "pyoxynet_domain":
        w = domain_windows()[0]
        return w, subject_split(w, fifth_out(w.n_subjects), seed=seed)
    if data == "basic_motions":
        return (w := basic_motions()), official_split(w)
    if data == "watch":
        return (w := watch()), subject_split(w, seed=seed)
    path = Path(data)
    if not path.is_file():
        raise WearjaxDataError(
            f"--data {data}: neither a built-in set ({', '.join(BUILT_IN)}) nor an NPZ file of "
            "labelled windows"
        )
    w = read_windows(path)
    if w.official_train is not None:
        return w, check_fold_classes(w, official_split(w), path.name)
    if w.n_subjects >= 3:
        split = subject_split(w, fifth_out(w.n_subjects), seed=seed)
        return w, check_fold_classes(w, split, path.name)
    raise WearjaxDataError(
        f"{path.name}: {max(w.n_subjects, 0)} subject(s) and no train array: add a subject array "
        "(3 or more subjects, for subject-wise folds) or a train array (an official split)"
    )


def check_fold_classes(windows: LabelledWindows, split: Split, name: str) -> Split:
    """`split`, or `WearjaxDataError` naming `name` and the fold if a fold's training and
    validation windows hold one class (no probe can be fitted there), before any work."""
    for k in range(split.n_folds):
        held = np.unique(windows.y[split.train[k] | split.validation[k]])
        if len(held) < 2:
            raise WearjaxDataError(
                f"{name}: fold {k} fits on windows of class {windows.classes[held[0]]!r} only "
                "(its subjects all hold one class); add subjects of the other classes or a "
                "train array (an official split)"
            )
    return split


def no_subjects(data: str) -> WearjaxDataError:
    """The refusal of a label-scarce probe on windows without 2 or more subject ids."""
    return WearjaxDataError(
        f"{data} has fewer than 2 subject ids, so --labelled cannot draw subjects: use a set "
        "with subjects (pyoxynet_domain, watch, or a file with a subject array), or leave out "
        "--labelled"
    )


def scarce_splits(
    windows: LabelledWindows, split: Split, labelled: int, draws: int = DRAWS, seed: int = 0
) -> list[Split]:
    """The `draws` label-scarce versions of `split` (`Split.subsample`): each fold's training
    and validation windows cut to those of `labelled` subjects, drawn with the seeds
    `seed + 1000 d` (draw 0 uses the seed the folds were drawn with; `--seed 0`'s draw 1 is
    `--seed 1000`'s draw 0) - the same draws for every feature set and nested across sizes.
    Refused, before any work: windows without subjects, a fold with `labelled` or fewer
    subjects to draw from (every draw would be the whole fold), a draw of one class only."""
    if windows.n_subjects < 2:
        raise no_subjects("these windows")
    pool = split.fit_subjects(windows.subject)
    if labelled >= pool.min():
        raise WearjaxDataError(
            f"--labelled {labelled}: the folds fit on {pool.min()}-{pool.max()} subjects, so "
            f"every draw would take them all; choose fewer than {pool.min()}"
        )
    subs = [
        split.subsample(windows.subject, windows.n_subjects, labelled, seed=seed + 1000 * d)
        for d in range(draws)
    ]
    for d, sub in enumerate(subs):
        for k in range(split.n_folds):
            if len(np.unique(windows.y[sub.train[k] | sub.validation[k]])) < 2:
                raise WearjaxDataError(
                    f"--labelled {labelled}: draw {d} of fold {k} gives windows of one class "
                    "only; label more subjects per fold"
                )
    return subs


def _earlier_probes(path):
    """The probes an earlier `cv probe` wrote to `path` ({} when none); a metrics.json it did
    not write (another study's) is refused before any work rather than replaced."""
    import json

    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = None
    if not (isinstance(earlier, dict) and "encoder" in earlier):
        raise WearjaxDataError(
            f"--out {path.parent} holds a metrics.json that `cv probe` did not write (another "
            "study's?); pass another folder"
        )
    return earlier


def probe_command(args, say) -> int:
    """`wearjax cv probe`: frozen-encoder logistic probe on a built-in set or a researcher's NPZ
    file (`probe_windows`), beside the statistical-feature and channel-level probes and
    MiniRocket (unless `args.no_minirocket`); with `args.labelled`, each fold's probes fitted
    on that many subjects, `args.draws` times (`scarce_splits`). Writes metrics.json (beside
    the data sets of earlier runs with the same encoder and labels); `say` prints a line."""
    import json

    from wearjax.tasks.har_baselines import statistical_features
    from wearjax.tasks.pretrain import load_encoder

    labelled, draws = args.labelled, args.draws
    if labelled is None and draws is not None:
        raise WearjaxDataError("--draws counts the draws of --labelled; give --labelled too")
    draws = DRAWS if draws is None else draws
    if labelled is not None and (labelled < 1 or draws < 1):
        raise WearjaxDataError("--labelled and --draws take a number of at least 1")
    if labelled is not None and args.data == "basic_motions":  # before loading it
        raise no_subjects("basic_motions")
    path = args.out / "metrics.json"
    earlier = _earlier_probes(path)
    w, split = probe_windows(args.data, args.seed)
    if not args.no_minirocket and w.x.shape[1] < MINIROCKET_MIN_LENGTH:
        raise WearjaxDataError(
            f"{args.data}: windows of {w.x.shape[1]} samples; MiniRocket needs "
            f"{MINIROCKET_MIN_LENGTH} or more: pass --no-minirocket, or longer windows"
        )
    subs = [split] if labelled is None else scarce_splits(w, split, labelled, draws, args.seed)
    model, header = load_encoder(args.encoder)  # embed_windows warns of a rate that misfits

    rows = {  # ProbeScores, [draws, K] each
        "encoder": probe_over(embed_windows(model, w, header), w, subs),
        "statistical features": probe_over(statistical_features(w), w, subs),
        "channel levels": probe_over(channel_levels(w.x), w, subs),
    }
    if not args.no_minirocket:  # on the windows at their own rate, the same (scarce) folds
        rows["MiniRocket"] = _stacked([minirocket_scores(w, sub, args.seed) for sub in subs])
    metrics = {name: {} for name in rows}  # mean and SD of each score over the fits it has
    for name, got in rows.items():  # (AUROC: none where a test set holds one class)
        for field, a in got._asdict().items():
            a = a[np.isfinite(a)]
            stats = (float(np.mean(a)), float(np.std(a))) if a.size else (None, None)
            metrics[name] |= dict(zip((field, f"{field}_sd"), stats, strict=True))
        metrics[name]["auroc_fits"] = int(np.isfinite(got.auroc).sum())  # what its mean is over
    # the encoder by its file's checksum (a path may be retrained or spelled two ways)
    record = {"encoder": str(args.encoder), "encoder_sha256": header.get("header_sha256"),
              "seed": args.seed, args.data: metrics}  # fmt: skip
    if labelled is not None:  # the means and SDs are over every fold of every draw
        record["labelled"] = {"subjects_per_fold": labelled, "draws": draws}
    args.out.mkdir(parents=True, exist_ok=True)
    if all(earlier.get(k) == record.get(k) for k in ("encoder_sha256", "labelled", "seed")):
        record = earlier | record
    elif earlier:
        say(f"replacing {path}: its probes had another encoder, --labelled or --seed")
    path.write_text(json.dumps(record, indent=2))
    write_environment(args.out)
    if labelled is not None:
        print(f"each fold's probes fitted on {labelled} subjects, {draws} draws; mean over the "
              f"{split.n_folds} folds x {draws} draws")  # fmt: skip
    for name, m in metrics.items():
        auroc = "-" if m["auroc"] is None else f"{m['auroc']:.3f}"
        print(f"{args.data} {name}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
              f"AUROC {auroc}")  # fmt: skip
    return 0
