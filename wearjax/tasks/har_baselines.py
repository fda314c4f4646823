"""Baselines of the activity-recognition task, on the same folds as the models:

- MiniRocket (Dempster et al. 2021, aeon's implementation; multivariate, 10,000 features)
  with a ridge classifier whose penalty is chosen by leave-one-out CV (`RidgeClassifierCV`,
  alphas 1e-3..1e3), the field's strong, cheap time-series classifier;
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
            RidgeClassifierCV(np.logspace(-3, 3, 10)),
        )
    if name == "stats_logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    raise ValueError(f"unknown HAR baseline {name!r}: choose one of {BASELINES}")


def baseline_predictions(
    name: str, windows: LabelledWindows, split: Split, seed: int = 0
) -> np.ndarray:
    """`[K, N]` predicted class of every window by each fold's baseline (-1 off its test set);
    each fold fits on its training and validation windows."""
    inputs = windows.x.transpose(0, 2, 1) if name == "minirocket" else statistical_features(windows)
    pred = np.full(split.test.shape, -1, np.int64)
    for k in range(split.n_folds):
        fit_on = split.train[k] | split.validation[k]
        model = _estimator(name, seed).fit(inputs[fit_on], windows.y[fit_on])
        pred[k, split.test[k]] = model.predict(inputs[split.test[k]])
    return pred
