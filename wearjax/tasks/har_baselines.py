"""Baselines of the activity-recognition task, on the same folds as the models:

- MiniRocket (Dempster et al. 2021, aeon's implementation; multivariate, 10,000 features)
  with a ridge classifier whose penalty is chosen by leave-one-out CV (`RidgeClassifierCV`,
  alphas 1e-3..1e3), the field's strong, cheap time-series classifier (and, for a real
  target such as HR, the same features with a ridge regression:
  `probe_ridge.minirocket_regression`);
- statistical features (per channel and for each modality's magnitude: mean, SD, min, max,
  10/50/90th percentiles, mean absolute first difference, and the frequency of the largest
  spectral peak above 0 Hz) with a standardised multinomial logistic regression.

Scikit-learn and aeon fit one fold at a time (their estimators are not vmappable); the loop
is over a handful of folds of an external baseline, not inside wearjax's models.
"""

from __future__ import annotations

import numpy as np

from wearjax.cv import Split
from wearjax.data.imu import LabelledWindows
from wearjax.errors import WearjaxDataError

BASELINES = ("minirocket", "stats_logistic")
MINIROCKET_ALPHAS = np.logspace(-3, 3, 10)
"""MiniRocket's ridge penalties, chosen by leave-one-out (classifier and regression alike)."""


def statistical_features(windows: LabelledWindows) -> np.ndarray:
    """`[N, F]` features of every window (module docstring)."""
    x = windows.x.astype(np.float64)
    mags = [np.linalg.norm(x[:, :, list(ch)], axis=-1) for ch in windows.modalities.values()]
    series = np.concatenate([x, np.stack(mags, axis=-1)], axis=-1)  # [N, T, C + M]
    q = np.percentile(series, [10, 50, 90], axis=1)  # [3, N, C']
    spectrum = np.abs(np.fft.rfft(series - series.mean(1, keepdims=True), axis=1))[:, 1:]
    peak = (1 + np.argmax(spectrum, axis=1)) * windows.rate / series.shape[1]  # Hz
    parts = [series.mean(1), series.std(1), series.min(1), series.max(1), *q,
             np.abs(np.diff(series, axis=1)).mean(1), peak]  # fmt: skip
    return np.concatenate(parts, axis=1)


def _estimator(name: str, seed: int):
    try:
        from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as err:
        raise WearjaxDataError(
            "the HAR baselines need scikit-learn: pip install 'wearjax[data]'"
        ) from err
    if name == "minirocket":
        from aeon.transformations.collection.convolution_based import MiniRocket

        return make_pipeline(
            MiniRocket(random_state=seed),
            StandardScaler(),
            RidgeClassifierCV(MINIROCKET_ALPHAS),
        )
    if name == "stats_logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    raise ValueError(f"unknown HAR baseline {name!r}: choose one of {BASELINES}")


def log_probabilities(model, x: np.ndarray) -> np.ndarray:
    """`[N, classes]` log-probabilities of a fitted logistic classifier (or a pipeline ending
    in one): the log-softmax of its decision values, which is what `predict_log_proba` gives
    where that is finite; it takes log(predict_proba), -inf for a window a decision value of
    about 37 past the boundary, which made its whole fold's AUROC NaN."""
    from scipy.special import log_softmax

    d = np.asarray(model.decision_function(x), np.float64)
    return log_softmax(np.stack([np.zeros_like(d), d], axis=1) if d.ndim == 1 else d, axis=1)


def baseline_predictions(
    name: str, windows: LabelledWindows, split: Split, seed: int = 0
) -> np.ndarray:
    """`[K, N]` predicted class of every window by each fold's baseline (-1 off its test set);
    each fold fits on its training and validation windows."""
    return baseline_outputs(name, windows, split, seed)[0]


def baseline_outputs(
    name: str, windows: LabelledWindows, split: Split, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`baseline_predictions` and each test window's class scores `[K, N, classes]` (0 off its
    test set and for a class its fold never fitted): the ridge classifier's decision values
    (MiniRocket), the logistic regression's log-probabilities (statistical features); for a
    fold's AUROC (`tasks.probe.auroc_scores`)."""
    inputs = windows.x.transpose(0, 2, 1) if name == "minirocket" else statistical_features(windows)
    pred = np.full(split.test.shape, -1, np.int64)
    score = np.zeros((*split.test.shape, len(windows.classes)))
    for k in range(split.n_folds):
        fit_on = split.train[k] | split.validation[k]
        model = _estimator(name, seed).fit(inputs[fit_on], windows.y[fit_on])
        test = np.flatnonzero(split.test[k])
        pred[k, test] = model.predict(inputs[test])
        if name == "minirocket":  # with two classes one value per window: the second's
            s = model.decision_function(inputs[test])
            s = np.stack([-s, s], axis=1) if s.ndim == 1 else s
        else:
            s = log_probabilities(model, inputs[test])
        score[k][np.ix_(test, model.classes_)] = s
    return pred, score
