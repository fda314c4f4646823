"""The edge of the world: sessions, signals, cohorts, windows, folds and the synthetic cohort."""

from wearjax.data.cpet import load_cpet_folder, read_cpet
from wearjax.data.csv import read_cpet_csv, read_csv, read_running_csv
from wearjax.data.folders import Skipped, load_folder, read_file
from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.garmin_fit import read_fit
from wearjax.data.gpx import read_gpx
from wearjax.data.sampled import read_sampled
from wearjax.data.signals import SignalStack, per_second, stack_signal, stack_signals
from wearjax.data.synthetic import simulate_cohort
from wearjax.data.tcx import read_tcx
from wearjax.data.types import (
    CHANNEL_UNITS,
    CPET_CHANNEL_UNITS,
    SESSION_CHANNEL_UNITS,
    SUBJECT_FIELDS,
    Cohort,
    Session,
    Signal,
    bucket_length,
    stack_sessions,
)
from wearjax.data.windows import (
    WindowIndex,
    gather_seconds,
    gather_signal,
    gather_windows,
    sample_index,
    window_index,
    window_samples,
)

__all__ = [
    "CHANNEL_UNITS",
    "CPET_CHANNEL_UNITS",
    "SESSION_CHANNEL_UNITS",
    "SUBJECT_FIELDS",
    "Cohort",
    "Session",
    "Signal",
    "SignalStack",
    "Skipped",
    "WindowIndex",
    "bucket_length",
    "gather_seconds",
    "gather_signal",
    "gather_windows",
    "leave_k_runners_out",
    "load_cpet_folder",
    "load_folder",
    "per_second",
    "read_cpet",
    "read_cpet_csv",
    "read_csv",
    "read_file",
    "read_fit",
    "read_running_csv",
    "read_sampled",
    "read_gpx",
    "read_tcx",
    "sample_index",
    "simulate_cohort",
    "stack_signal",
    "stack_signals",
    "stack_sessions",
    "validation_runners",
    "window_index",
    "window_samples",
]
