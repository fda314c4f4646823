"""The edge of the world: sessions, cohorts, windows, folds and the synthetic cohort."""

from wearjax.data.csv import read_cpet_csv, read_csv, read_running_csv
from wearjax.data.fit import read_fit
from wearjax.data.folders import Skipped, load_folder, read_file
from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.synthetic import simulate_cohort
from wearjax.data.tcx import read_tcx
from wearjax.data.types import (
    CHANNEL_UNITS,
    SUBJECT_FIELDS,
    Cohort,
    Session,
    bucket_length,
    stack_sessions,
)
from wearjax.data.windows import WindowIndex, gather_windows, window_index

__all__ = [
    "CHANNEL_UNITS",
    "SUBJECT_FIELDS",
    "Cohort",
    "Session",
    "Skipped",
    "WindowIndex",
    "bucket_length",
    "gather_windows",
    "leave_k_runners_out",
    "load_folder",
    "read_cpet_csv",
    "read_csv",
    "read_file",
    "read_fit",
    "read_running_csv",
    "read_tcx",
    "simulate_cohort",
    "stack_sessions",
    "validation_runners",
    "window_index",
]
