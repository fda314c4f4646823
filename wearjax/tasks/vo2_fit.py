"""One VO2 model on every CPET test of a folder (`wearjax fit vo2`) and its prediction of a
test it never saw (`wearjax predict` with that checkpoint).

`train_vo2_model` trains the VO2 task's model (`tasks.vo2`: its loss, batches and validation)
on all subjects but a few held out for early stopping, as one fold of `cv.fit_folds`; the
checkpoint holds the model, the feature normaliser fitted on the training subjects, and what
prediction needs to build the same inputs: the features and channels, the known first second's
kind, and the training subjects' median age, sex, height and weight for a test without them.
`predict_vo2` reads a test's first second of VO2 (as the study gives it) and rolls out the rest;
where the test has more VO2, its errors are scored against the Savitzky-Golay-smoothed series
over the seconds after the first, as in the cross-validated tables.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax import models
from wearjax.cv import Split
from wearjax.data.types import Cohort, Session, stack_sessions
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import mae, mape, pearson_r, rmse
from wearjax.models.vo2 import VARIANTS
from wearjax.signal.features import Normalizer
from wearjax.signal.metabolic import hold_observed
from wearjax.tasks.vo2 import (
    VO2StudyConfig,
    cohort_features,
    prepare,
    select_features,
    smoothed_vo2,
    train_vo2,
)
from wearjax.train.checkpoints import load, run_settings, save
from wearjax.train.loop import fold_model

VO2_FIELDS = ("task", "kind", "init", "window", "features", "channels", "first_second",
              "subject_fill", "subject_constant")  # fmt: skip
"""Header fields a VO2 checkpoint must have."""
REFIT = "train it again with `wearjax fit vo2`"


class VO2Checkpoint(NamedTuple):
    """A trained VO2 model, its feature normaliser and the checkpoint header."""

    model: models.VO2Kalman
    normalizer: Normalizer
    header: dict


def training_split(cohort: Cohort, n_validation: int, seed: int) -> Split:
    """One fold: `n_validation` subjects (at least 1, fewer than all) drawn with `seed` for
    early stopping, every other subject trained on, nothing tested."""
    n = cohort.n_runners
    if n < 2:
        raise WearjaxDataError(
            f"{n} subject: training needs 2 or more (one is held out for early stopping); add "
            "tests of other subjects"
        )
    held = np.random.default_rng(seed).choice(n, min(max(1, n_validation), n - 1), replace=False)
    val = np.isin(np.asarray(cohort.runner), held)[None]
    return Split(np.zeros_like(val), val, ~val)


def train_vo2_model(cohort: Cohort, config: VO2StudyConfig, *, progress: bool = True,
                    state_file=None, resume: bool = False) -> VO2Checkpoint:  # fmt: skip
    """Train the VO2 model on every subject of `cohort` but `config.validation_subjects`, held
    out for early stopping; returns the best model, its normaliser and the checkpoint header.
    With a `state_file` the training state is saved every epoch and `resume`d from it."""
    split = training_split(cohort, config.validation_subjects, config.seed)
    data, fold, split, names = prepare(cohort, config, split)
    run = {"command": "fit vo2", "model": "vo2", "config": run_settings(config)}
    fit = train_vo2(data, fold, config, progress=progress, state_file=state_file, resume=resume,
                    run=run)  # fmt: skip
    hidden, layers = VARIANTS.get(config.variant, config.variant)
    subject = np.asarray(cohort.subject, np.float64)
    held = sorted({cohort.runner_names[r] for r in np.asarray(cohort.runner)[split.validation[0]]})
    header = {
        "task": "vo2",
        "kind": "vo2_kalman",
        "init": {
            "n_features": len(names),
            "hidden": hidden,
            "n_layers": layers,
            "window": config.window,
        },
        "window": config.window,
        "features": list(names),
        "channels": list(cohort.channels),
        "first_second": config.first_second,
        # a missing field is 0 once stacked; one no training test varies taught the model
        # nothing, and a test is given the training value for it whatever it holds
        "subject_fill": [float(np.median(c)) for c in subject.T],
        "subject_constant": [bool(np.ptp(c) == 0) for c in subject.T],
        "data": {
            "subjects": cohort.n_runners,
            "tests": cohort.n_sessions,
            "validation_subjects": held,
            "epochs_run": int(fit.history["stopped"].shape[0]),
            "best_validation_mae": float(np.min(fit.history["val_loss"])),
        },
    }
    normalizer = jax.tree_util.tree_map(lambda a: a[0], fold.normalizer)
    return VO2Checkpoint(fold_model(fit.model, 0), normalizer, header)


def save_vo2(path, checkpoint: VO2Checkpoint) -> Path:
    """Write a VO2 checkpoint (`train.checkpoints.save`)."""
    missing = [f for f in VO2_FIELDS if f not in checkpoint.header]
    if missing:
        raise ValueError(f"a VO2 checkpoint header needs {missing}")
    return save(path, checkpoint.header, (checkpoint.model, checkpoint.normalizer))


def _skeleton(header: dict):
    if header.get("task") != "vo2" or any(f not in header for f in VO2_FIELDS):
        raise KeyError(f"not a VO2 model header (needs {list(VO2_FIELDS)})")
    model = models.build(header["kind"], **header["init"], key=jax.random.key(0))
    n = len(header["features"])
    return model, Normalizer(jnp.zeros(n), jnp.ones(n))


def load_vo2(path) -> VO2Checkpoint:
    """A checkpoint written by `save_vo2`; `WearjaxFileError` naming the file otherwise."""
    header, (model, normalizer) = load(path, _skeleton, REFIT)
    return VO2Checkpoint(model, normalizer, header)


class VO2Predicted(NamedTuple):
    """One test's VO2, second by second from its first (mL/min)."""

    vo2: np.ndarray  # [T] the model's, from the first second's VO2
    measured: np.ndarray  # [T] the test's VO2, smoothed as the study scores it (NaN: none)
    scored: np.ndarray  # [T] bool: measured seconds after the first
    v0: float  # the first second given to the model
    metrics: dict  # mae, rmse, mape (%), pearson_r, n over `scored`; empty when none
    start_s: float | None = None  # the first second on the file's clock (`Session.start_time_s`)


def _as_trained(session: Session, header: dict) -> Session:
    """The test with the checkpoint's channels, in its order, and its subject fields as
    training saw them: a missing one, or one every training test had the same (missing, so 0
    once stacked), takes the training value; a channel or HR the model reads and the test
    lacks is named."""
    where = session.source or "the test"
    lacking = [c for c in header["channels"] if c not in session.channels]
    if "hr_bpm" in header["features"] and not np.asarray(session.mask).any():
        lacking.append("hr")
    if lacking:
        raise WearjaxDataError(
            f"{where}: the model reads {', '.join(lacking)}, which this test lacks (it has "
            f"{', '.join(session.channels) or 'no input channel'}); pass a test with them, or "
            "train a model on tests like this one"
        )
    keep = [session.channels.index(c) for c in header["channels"]]
    subject = np.array(session.subject, np.float32)
    fill = np.array(header["subject_fill"], np.float32)
    constant = np.array(header["subject_constant"], bool)
    subject = np.where(np.isnan(subject) | constant, fill, subject)
    return replace(session, x=np.asarray(session.x)[:, keep], channels=tuple(header["channels"]),
                   subject=subject)  # fmt: skip


def predict_vo2(checkpoint: VO2Checkpoint, session: Session) -> VO2Predicted:
    """The model's VO2 of `session` from its first second of VO2 (smoothed or raw, as the
    checkpoint was trained), trimmed to the test's length, with errors where it has more."""
    model, normalizer, header = checkpoint
    session = _as_trained(session, header)
    cohort = stack_sessions([session], bucket=header["window"])
    features, names = cohort_features(cohort, header["window"])
    try:
        features, _ = select_features(features, names, header["features"])
    except WearjaxDataError as err:
        raise WearjaxDataError(
            f"{session.source or 'the test'}: {err}, which the model reads; pass a test with "
            "the same signals"
        ) from None
    mask = cohort.vo2_mask & cohort.valid
    if not bool(mask[0, 0]):
        raise WearjaxDataError(
            f"{session.source or 'the test'}: no VO2 at its first second, which the model is "
            "given; cut the test to start at its first VO2 (data.cpet.read_cpet does)"
        )
    smooth = smoothed_vo2(cohort.vo2, mask, cohort.lengths)[0]
    raw = hold_observed(cohort.vo2, mask)[0]
    v0 = smooth[0] if header["first_second"] == "smoothed" else raw[0]
    length = int(cohort.lengths[0])
    rollout = jax.jit(lambda m, x, v, n: m.rollout(x, v, length=n).vo2)
    pred = np.asarray(rollout(model, normalizer.apply(features[0]), v0, length))[:length]
    seen = np.asarray(mask[0])[:length]
    scored = seen & (np.arange(length) > 0)
    measured = np.where(seen, np.asarray(smooth)[:length], np.nan)
    metrics = {}
    if scored.any():
        p, t, m = jnp.asarray(pred), jnp.asarray(np.nan_to_num(measured)), jnp.asarray(scored)
        fns = {"mae": mae, "rmse": rmse, "mape": mape, "pearson_r": pearson_r}
        metrics = {k: float(f(p, t, m)) for k, f in fns.items()} | {"n": int(scored.sum())}
    return VO2Predicted(pred, measured, scored, float(v0), metrics, session.start_time_s)


def write_vo2_prediction(pred: VO2Predicted, csv: Path, png: Path, title: str) -> list[Path]:
    """One row per second (`second` from the first VO2, `time_s` on the file's own clock
    where it has one, `vo2_pred_ml_min, vo2_ml_min`: the test's smoothed VO2, empty where it
    has none) and a plot of both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv.parent.mkdir(parents=True, exist_ok=True)
    clock = pred.start_s is not None
    rows = ["second," + "time_s," * clock + "vo2_pred_ml_min,vo2_ml_min"]
    for t, (p, v) in enumerate(zip(pred.vo2, pred.measured, strict=True)):
        at = f"{pred.start_s + t:.3f}," if clock else ""
        rows.append(f"{t},{at}{p:.1f},{'' if np.isnan(v) else f'{v:.1f}'}")
    csv.write_text("\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(10, 4))
    minutes = np.arange(len(pred.vo2)) / 60
    ax.plot(minutes, pred.measured, lw=1.0, color="0.3", label="VO2 (smoothed)")
    ax.plot(minutes, pred.vo2, lw=1.2, label="model, from the first second")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("VO2 (mL/min)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return [csv, png]
