"""Training: one loop (`fit`: a `Task` trained by a `Recipe`), schedules, checkpoints."""

from wearjax.train.checkpoints import HRCheckpoint, load_hr, save_hr
from wearjax.train.loop import (
    FitResult,
    Recipe,
    Task,
    TrainConfig,
    fit,
    fit_steps,
    fold_model,
    plateau,
    split_for_fold,
)
from wearjax.train.schedules import curriculum_weights, decaying_clip_norm, sgdr

__all__ = [
    "FitResult",
    "HRCheckpoint",
    "Recipe",
    "Task",
    "TrainConfig",
    "curriculum_weights",
    "decaying_clip_norm",
    "fit",
    "fit_steps",
    "fold_model",
    "load_hr",
    "plateau",
    "save_hr",
    "sgdr",
    "split_for_fold",
]
