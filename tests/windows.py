"""Labelled windows that carry only labels and subjects, for tests of the probes, which read
features given beside the windows and never the windows' signals."""

import numpy as np

from wearjax.data.imu import LabelledWindows


def label_only_windows(y: np.ndarray, subject: np.ndarray) -> LabelledWindows:
    """Two classes, one zero channel of 4 samples per window, one recording per window."""
    n = len(y)
    return LabelledWindows(
        np.zeros((n, 4, 1), np.float32), np.asarray(y, np.int32), np.asarray(subject, np.int32),
        np.arange(n, dtype=np.int32), ("a", "b"), ("x",), {"x": (0,)}, 1.0,
    )  # fmt: skip
