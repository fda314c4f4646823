"""The edge of the world: sessions, cohorts, windows, folds and the synthetic cohort."""

from wearjax.data.types import CHANNEL_UNITS, SUBJECT_FIELDS, Cohort, Session, stack_sessions

__all__ = ["CHANNEL_UNITS", "SUBJECT_FIELDS", "Cohort", "Session", "stack_sessions"]
