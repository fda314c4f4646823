"""Evaluation: masked metrics, the HR protocols, reports and plots, response half-times."""

from wearjax.eval.halftimes import half_time, response_halftimes, step_halftimes, training_halftimes
from wearjax.eval.metrics import (
    HR_ZONES,
    bias,
    mae,
    mape,
    pearson_r,
    r2,
    rmse,
    sd_diff,
    summarize,
    transition_mask,
    zone_masks,
)
from wearjax.eval.protocols import (
    PROTOCOLS,
    first_observed,
    given_mask,
    hold_baseline,
    standard_initial,
)
from wearjax.eval.report import cohort_line, table_1, write_outputs, write_report

__all__ = [
    "HR_ZONES",
    "PROTOCOLS",
    "bias",
    "cohort_line",
    "first_observed",
    "given_mask",
    "half_time",
    "hold_baseline",
    "mae",
    "mape",
    "pearson_r",
    "r2",
    "response_halftimes",
    "rmse",
    "sd_diff",
    "standard_initial",
    "step_halftimes",
    "summarize",
    "table_1",
    "training_halftimes",
    "transition_mask",
    "write_outputs",
    "write_report",
    "zone_masks",
]
