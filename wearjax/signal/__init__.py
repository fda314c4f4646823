"""Array transforms: running features and their per-fold normaliser, metabolic signals."""

from wearjax.signal.features import (
    FEATURE_NAMES,
    Normalizer,
    feature_names,
    fit_normalizer,
    running_features,
)
from wearjax.signal.metabolic import (
    hold_observed,
    metabolic_feature_names,
    metabolic_features,
    savgol_smooth,
    zero_order_hold,
)

__all__ = [
    "FEATURE_NAMES",
    "Normalizer",
    "feature_names",
    "fit_normalizer",
    "hold_observed",
    "metabolic_feature_names",
    "metabolic_features",
    "running_features",
    "savgol_smooth",
    "zero_order_hold",
]
