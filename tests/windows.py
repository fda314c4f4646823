"""Labelled windows that carry only labels and subjects, for tests of the probes, which read
features given beside the windows and never the windows' signals."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from wearjax.data.imu import LabelledWindows


def label_only_windows(y: np.ndarray, subject: np.ndarray) -> LabelledWindows:
    """Two classes, one zero channel of 4 samples per window, one recording per window."""
    n = len(y)
    return LabelledWindows(
        np.zeros((n, 4, 1), np.float32), np.asarray(y, np.int32), np.asarray(subject, np.int32),
        np.arange(n, dtype=np.int32), ("a", "b"), ("x",), {"x": (0,)}, 1.0,
    )  # fmt: skip


def two_class_set(rng, n_subjects: int, per: int, dims: int, shift: float):
    """`(features [N, dims], windows, subject)`: `per` windows of each subject, labels drawn at
    random, every feature the label's sign times `shift` plus unit Gaussian noise."""
    subject = np.repeat(np.arange(n_subjects), per).astype(np.int32)
    y = rng.integers(0, 2, len(subject)).astype(np.int32)
    features = rng.normal(size=(len(subject), dims)) + shift * (2 * y - 1)[:, None]
    return features, label_only_windows(y, subject), subject


FITS: dict[str, list[set]] = {}


class RowRecorder(BaseEstimator, TransformerMixin):
    """A probe's `prepare` step that records which rows each fit saw (column 0 holds the row
    number) in `FITS[name]`, emptied when it is made (its clones, made by the probe, keep the
    list), and drops that column."""

    def __init__(self, name: str = "rows"):
        self.name = name

    @classmethod
    def start(cls, name: str) -> tuple["RowRecorder", list[set]]:
        FITS[name] = []
        return cls(name), FITS[name]

    def fit(self, x, y=None):
        FITS[self.name].append(set(x[:, 0].astype(int)))
        return self

    def transform(self, x):
        return x[:, 1:]
