"""Ridge-regression probes of a real target (HR, say) on frozen features: the regression
counterpart of `tasks.probe`'s logistic probe, behind `experiments/transformer_wrist.py` and
`experiments/metabolic_levels.py`.

The penalty is chosen per fold on the fold's training and validation windows only: with
`groups` (subject ids) by cross-validation grouped by subject, so a subject's overlapping
windows never sit on both sides of an inner split, which favours too weak a penalty (the
windows of one subject share a fingerprint and an offset of the target); without them, as
until 2026-12-06 for every probe, by scikit-learn's efficient leave-one-window-out.
"""

from __future__ import annotations

import numpy as np

from wearjax.cv import Split
from wearjax.data.imu import LabelledWindows

INNER = 5
"""Inner folds of the grouped penalty choice (fewer where the fold has fewer subjects)."""

RIDGE_ALPHAS = np.logspace(-3, 3, 13)
"""The ridge probe's penalties, 1e-3..1e3, chosen per fold (module docstring)."""


def ridge_predictions(
    features: np.ndarray,
    target: np.ndarray,
    split: Split,
    *,
    per_target: bool = False,
    prepare=None,
    alphas=None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """`[K, N, ...]` predictions of `target [N, ...]` by a standardised ridge regression (its
    penalty chosen over `alphas`, default `RIDGE_ALPHAS`, `RidgeCV`: by `INNER` folds grouped
    by `groups [N]` where given and a fold holds two groups or more, else by leave-one-out;
    one per target column with `per_target`, leave-one-out only) on `features [N, ...]`,
    fitted per fold on its training and validation windows after `prepare` (a scikit-learn
    transformer fitted per fold, e.g. MiniRocket on raw windows); each fold's row holds its
    test windows' predictions and NaN elsewhere."""
    from sklearn.base import clone
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if per_target and groups is not None:
        raise ValueError("a penalty per target is chosen by leave-one-out: pass no groups")
    out = np.full((split.n_folds, *target.shape), np.nan)
    for k in range(split.n_folds):  # scikit-learn fits one fold at a time
        fit_on = split.train[k] | split.validation[k]
        steps = [] if prepare is None else [clone(prepare)]
        inner = None
        if groups is not None and len(np.unique(groups[fit_on])) >= 2:
            g = groups[fit_on]
            inner = list(GroupKFold(min(INNER, len(np.unique(g)))).split(g, groups=g))
        ridge = RidgeCV(
            alphas=RIDGE_ALPHAS if alphas is None else alphas, alpha_per_target=per_target,
            cv=inner,
        )  # fmt: skip
        model = make_pipeline(*steps, StandardScaler(), ridge)
        model.fit(features[fit_on], target[fit_on])
        out[k, split.test[k]] = model.predict(features[split.test[k]])
    return out


def minirocket_regression(
    windows: LabelledWindows, target: np.ndarray, split: Split, seed: int = 0, groups=None
) -> np.ndarray:
    """`[K, N]` predictions of a real `target [N]` (e.g. HR) by MiniRocket's features with
    `ridge_predictions` (the alphas of MiniRocket's classifier, `har_baselines`; `groups` as
    there); NaN off each fold's test set."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    from wearjax.tasks.har_baselines import MINIROCKET_ALPHAS

    x = windows.x.transpose(0, 2, 1)  # [N, C, T], aeon's layout
    return ridge_predictions(
        x, target, split, prepare=MiniRocket(random_state=seed), alphas=MINIROCKET_ALPHAS,
        groups=groups,
    )  # fmt: skip


def ridge_scores(features: np.ndarray, target: np.ndarray, split: Split, groups=None):
    """MAE `[K]` of `ridge_predictions` (`groups` as there) on each fold's test windows."""
    pred = ridge_predictions(features, target, split, groups=groups)
    return np.nanmean(np.abs(pred - target[None]), axis=1)  # NaN outside each fold's test set
