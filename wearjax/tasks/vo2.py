"""The VO2 task (Lab-to-Wrist section 5, Table 2): subject-wise cross-validation of the
dual-pathway VO2 model, all folds in one vmapped program, against two HR baselines. HR -> VO2
(Table 4) is `tasks.vo2_chain`.

The steps mirror `tasks.hr`:

1. per session, VO2 held over missing seconds and smoothed by Savitzky-Golay (15 s, order 3;
   `signal.metabolic`), and the VO2 features of whatever signals the source has
   (`metabolic_features`); one normaliser per fold, fitted on that fold's training subjects;
2. training batches are whole sessions of training subjects; the auxiliary window statistics use
   overlapping 60 s windows (`train_stride`); some training subjects per fold are held out for
   early stopping (MAE of their whole-session rollouts);
3. every session is then predicted whole, from its first second of VO2 only, by the model of the
   fold that held its subject out (vmapped over folds, mapped over sessions);
4. MAE (mL/min), RMSE and MAPE over the seconds after the first, pooled and per subject, and
   for the baselines: (a) VO2 linear in HR, slope fitted on the training subjects, offset set by
   the test session's first second: `v_0 + b (HR_t - HR_0)`; (b) `v_0 HR_t / HR_0`.

The known first second `v_0` is by default the first second of the smoothed series (the
Savitzky-Golay cubic fitted to the first 15 s: the value a lab would read off its first breaths);
`first_second="raw"` uses the raw first sample instead. The model and both baselines get the
same one.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax import models
from wearjax.cv import Split, fit_folds, padded_table, predict_held_out
from wearjax.data.types import Cohort
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import bias, mae, mape, pearson_r, r2, rmse
from wearjax.sharding import map_batch
from wearjax.signal.features import Normalizer, fit_normalizer
from wearjax.signal.metabolic import (
    SAVGOL_WINDOW,
    hold_observed,
    metabolic_feature_names,
    metabolic_features,
    savgol_smooth,
)
from wearjax.tasks import study_state
from wearjax.tasks.losses import vo2_kalman_loss
from wearjax.train.loop import Recipe, Task, TrainConfig
from wearjax.train.schedules import curriculum_weights, decaying_clip_norm, sgdr

logger = logging.getLogger(__name__)


class VO2StudyConfig(NamedTuple):
    variant: str | tuple[int, int] = "256-2"  # `models.vo2.VARIANTS` or (hidden, layers)
    window: int = 60
    train_stride: int = 30  # s between the overlapping windows of the auxiliary loss
    batch_size: int = 8
    subjects_out: int = 1  # leave-one-subject-out by default
    validation_subjects: int = 1
    # AdamW 4e-3 / 1e-5, cosine warm restarts (10, 2, 1e-6), clip 1 + 4 exp(-e/10), early stop 50
    train: TrainConfig = TrainConfig(
        learning_rate=4e-3,
        weight_decay=1e-5,
        plateau_patience=10**9,  # no reduce-on-plateau: the cosine schedule sets the rate
        early_stopping_patience=50,
        epochs=150,
        steps_per_epoch=10,
    )
    min_learning_rate: float = 1e-6
    restart_period: int = 10
    restart_mult: int = 2
    first_weight: float = 1.0  # alpha of the loss's first-difference term
    second_weight: float = 1.0  # beta of its second-difference term
    seed: int = 0
    eval_batch: int = 8
    # the known first second: of the smoothed series ("smoothed", a cubic fitted to the first
    # 15 s, as a lab reads its first breaths) or the raw first sample ("raw")
    first_second: str = "smoothed"
    # inputs (`metabolic_feature_names`) left out, e.g. ("window_index", "elapsed_min"): time
    # since the start, which ties the model to its training tests' protocol
    without: tuple[str, ...] = ()


class VO2Data(NamedTuple):
    """Arrays shared by all folds."""

    features: jax.Array  # [S, T, F]
    hr: jax.Array  # [S, T] held over dropouts (bpm)
    vo2: jax.Array  # [S, T] smoothed (mL/min)
    mask: jax.Array  # [S, T] VO2 observed inside the session
    v0: jax.Array  # [S] the known first second (mL/min)
    length: jax.Array  # [S] seconds of each session (the rest is the cohort's padding)


class VO2Fold(NamedTuple):
    """Per-fold arrays, stacked on a leading fold axis."""

    normalizer: Normalizer
    train_p: jax.Array  # [S] sampling probability of each session (0 outside training)
    val_session: jax.Array  # [V] this fold's validation sessions (padded)
    val_weight: jax.Array  # [V] 1 for real ones, 0 for padding


def select_features(features, names, keep) -> tuple[jax.Array, tuple[str, ...]]:
    """The columns of `features [..., F]` named `keep` (in its order), or one line naming what
    is missing."""
    missing = [k for k in keep if k not in names]
    if missing:
        raise WearjaxDataError(f"no input {missing} among {list(names)}")
    return features[..., [names.index(k) for k in keep]], tuple(keep)


def cohort_features(cohort: Cohort, window: int = 60, without: tuple[str, ...] = ()):
    """VO2 features of every session `[S, T, F]` and their names (`metabolic_features`), but
    those named in `without`."""
    features, names = _all_features(cohort, window)
    if not without:
        return features, names
    select_features(features, names, without)  # each must exist
    return select_features(features, names, [n for n in names if n not in without])


def _all_features(cohort: Cohort, window: int):
    has_hr = bool(np.any(np.asarray(cohort.mask)))
    hr = cohort.hr if has_hr else None
    hr_mask = cohort.mask if has_hr else None

    def one(x, subject, h, m):
        return metabolic_features(x, cohort.channels, subject, h, m, window=window)

    f = jax.jit(jax.vmap(one))(cohort.x, cohort.subject, hr, hr_mask)
    return f, metabolic_feature_names(cohort.channels, has_hr=has_hr)


@jax.jit
def smoothed_vo2(vo2, vo2_mask, lengths):
    """VO2 held over unobserved seconds, then Savitzky-Golay smoothed per session."""
    return jax.vmap(savgol_smooth)(hold_observed(vo2, vo2_mask), lengths)


def prepare(cohort: Cohort, config: VO2StudyConfig, split: Split | None = None):
    """Features, smoothed targets, subject-wise folds (or `split`'s) and per-fold normalisers."""
    if cohort.x.shape[1] % config.window:
        raise WearjaxDataError(
            f"cohort length {cohort.x.shape[1]} s is not a multiple of the {config.window} s "
            "window: stack it with a bucket that is"
        )
    lengths = np.asarray(cohort.lengths)
    seen = np.asarray(cohort.vo2_mask & cohort.valid)
    observed = seen.sum(axis=1)
    short = [
        cohort.workouts[i] if cohort.workouts else str(i)
        for i in np.flatnonzero((lengths < SAVGOL_WINDOW) | (observed == 0))
    ]
    if short:
        raise WearjaxDataError(
            f"sessions {short[:5]} have no VO2 or are shorter than the {SAVGOL_WINDOW} s "
            "smoothing window: drop them before the VO2 study"
        )
    late = np.flatnonzero(~seen[:, 0])  # every session has some VO2 (checked above)
    if late.size:  # the model is given second 0: a held-back later value would stand for it
        firsts = np.argmax(seen[late], axis=1)
        named = [
            f"{(cohort.workouts[i] if cohort.workouts else '') or i} (second {k})"
            for i, k in zip(late[:5], firsts[:5], strict=False)
        ]
        raise WearjaxDataError(
            f"sessions {named} start before their first VO2: the model is given second 0's "
            "VO2, so cut each session to start at its first VO2 (data.cpet.read_cpet does)"
        )
    has_hr = np.asarray(cohort.mask & cohort.valid).any(axis=1)
    if has_hr.any() and not has_hr.all():  # HR is then an input: NaN for these, no 0 bpm
        names_ = [
            cohort.workouts[i] if cohort.workouts else str(i) for i in np.flatnonzero(~has_hr)
        ]
        raise WearjaxDataError(
            f"sessions {names_[:5]} have no HR where the others have it (HR is an input): drop "
            "them, or leave HR out of every session"
        )
    features, names = cohort_features(cohort, config.window, config.without)
    mask = cohort.vo2_mask & cohort.valid
    vo2 = smoothed_vo2(cohort.vo2, mask, cohort.lengths)
    split = split or Split.by_subject(
        cohort.runner, cohort.n_runners, config.subjects_out,
        n_validation=config.validation_subjects, seed=config.seed,
    )  # fmt: skip
    p = split.sampling_weights()
    val_idx, val_ok = padded_table(split.validation)
    weight = jnp.asarray(split.train)[:, :, None] & mask[None]
    normalizer = jax.vmap(fit_normalizer, in_axes=(None, 0))(features, weight)
    hr = hold_observed(cohort.hr, cohort.mask & cohort.valid)
    if config.first_second not in ("smoothed", "raw"):
        raise WearjaxDataError(
            f"first_second must be 'smoothed' or 'raw', got {config.first_second!r}"
        )
    raw0 = hold_observed(cohort.vo2, mask)[:, 0]
    data = VO2Data(
        features, hr, vo2, mask, vo2[:, 0] if config.first_second == "smoothed" else raw0,
        jnp.asarray(cohort.lengths, jnp.int32),
    )  # fmt: skip
    fold = VO2Fold(
        normalizer, jnp.asarray(p), jnp.asarray(val_idx), jnp.asarray(val_ok, jnp.float32)
    )
    return data, fold, split, names


def _given(mask):
    """Only the first second of VO2 is given to the model."""
    return mask & (jnp.broadcast_to(jnp.arange(mask.shape[-1]), mask.shape) == 0)


def make_task(config: VO2StudyConfig, length: int) -> Task:
    """The VO2 `Task`; its loss weights follow the curriculum of the epoch."""
    starts = jnp.arange(0, length - config.window + 1, config.train_stride, dtype=jnp.int32)

    def sessions(data: VO2Data, fold: VO2Fold, idx):
        return (
            fold.normalizer.apply(data.features[idx]),
            data.vo2[idx],
            data.mask[idx],
            data.v0[idx],
            data.length[idx],
        )

    def rollouts(model, x, v0, length, keys=None):  # keys None: no dropout
        def call(shared, xi, vi, li, ki=None):
            m, s = shared
            return m.rollout(xi, vi, starts=s, key=ki, length=li)

        extra = () if keys is None else (keys,)
        return map_batch(call, (model, starts), x, v0, length, *extra)

    def sample(data: VO2Data, fold: VO2Fold, key):
        i = jax.random.choice(key, data.v0.shape[0], (config.batch_size,), p=fold.train_p)
        return sessions(data, fold, i)

    def loss(model, batch, key, epoch):
        x, vo2, mask, v0, length = batch
        pred = rollouts(model, x, v0, length, jax.random.split(key, x.shape[0]))
        value = vo2_kalman_loss(
            pred.vo2,
            (pred.mu, pred.sigma, pred.delta95),
            vo2,
            mask,
            _given(mask),
            starts,
            curriculum_weights(epoch),
            window=config.window,
            first_weight=config.first_weight,
            second_weight=config.second_weight,
        )
        return value, ()

    def validate(model, data: VO2Data, fold: VO2Fold):
        x, vo2, mask, v0, length = sessions(data, fold, fold.val_session)
        pred = rollouts(model, x, v0, length).vo2
        scored = mask & ~_given(mask) & (fold.val_weight > 0)[:, None]
        return mae(pred, vo2, scored)

    return Task(sample, loss, validate)


def recipe(config: VO2StudyConfig) -> Recipe:
    """AdamW (decoupled weight decay: the step applies `-lr (adam + wd p)`), cosine warm
    restarts (`optax.sgdr_schedule`), the decaying clip; early stopping, no plateau."""
    return Recipe(
        optimizer=optax.chain(
            optax.scale_by_adam(), optax.add_decayed_weights(config.train.weight_decay)
        ),
        learning_rate=sgdr(
            config.train.learning_rate,
            config.min_learning_rate,
            config.restart_period,
            config.restart_mult,
            config.train.epochs,
        ),
        clip_norm=decaying_clip_norm,
        early_stopping_patience=config.train.early_stopping_patience,
        epochs=config.train.epochs,
        steps_per_epoch=config.train.steps_per_epoch,
    )


def predict(model, fold: VO2Fold, data: VO2Data, i) -> jax.Array:
    """Whole-session rollout of session `i` from its first second (`cv.predict_held_out`)."""
    x = fold.normalizer.apply(data.features[i])
    return model.rollout(x, data.v0[i], length=data.length[i]).vo2


def hr_baselines(data: VO2Data, train_weight, owner: np.ndarray) -> dict[str, np.ndarray]:
    """Baselines (a) `v_0 + b (HR_t - HR_0)` with `b` the per-fold least-squares slope of VO2 on
    HR over the training subjects' seconds, and (b) `v_0 HR_t / HR_0`; each `[S, T]`."""

    def slope(w):
        w = w.astype(data.vo2.dtype)
        n = jnp.sum(w)
        h_mean = jnp.sum(w * data.hr) / n
        v_mean = jnp.sum(w * data.vo2) / n
        cov = jnp.sum(w * (data.hr - h_mean) * (data.vo2 - v_mean))
        return cov / jnp.sum(w * (data.hr - h_mean) ** 2)

    b = np.asarray(jax.lax.map(slope, train_weight))  # [K]
    owner = np.maximum(owner, 0)  # the fold that tests each session
    hr, v0 = np.asarray(data.hr), np.asarray(data.v0)[:, None]
    h0 = hr[:, :1]
    linear = v0 + b[owner][:, None] * (hr - h0)
    ratio = v0 * hr / np.where(h0 > 0, h0, 1.0)
    return {"baseline_linear_hr": linear, "baseline_hr_ratio": ratio}


def _metrics(pred, true, mask) -> dict[str, float]:
    fns = {"mae": mae, "rmse": rmse, "mape": mape, "bias": bias, "pearson_r": pearson_r, "r2": r2}
    p, t, m = jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask)
    return {k: float(f(p, t, m)) for k, f in fns.items()} | {"n": int(np.sum(mask))}


def score(pred, data: VO2Data, scored, runner, runner_names) -> dict:
    """Pooled metrics, per-subject MAE/RMSE/MAPE and their mean over subjects."""
    true = np.asarray(data.vo2)
    per = {}
    for r, name in enumerate(runner_names):
        m = scored & (runner == r)[:, None]
        if m.any():
            per[name] = {
                k: v for k, v in _metrics(pred, true, m).items() if k in ("mae", "rmse", "mape")
            }
    out = _metrics(pred, true, scored)
    out["subject_mean"] = {
        k: float(np.mean([v[k] for v in per.values()])) for k in ("mae", "rmse", "mape")
    }
    out["per_subject"] = per
    return out


def train_vo2(data: VO2Data, fold: VO2Fold, config: VO2StudyConfig, *, progress=True,
              state_file=None, resume: bool = False, run: dict | None = None):  # fmt: skip
    """Cross-validate the VO2 model over the folds of `fold` (one vmapped program); with a
    `state_file` the folds' training state is saved every epoch and `resume`d from it (`run`
    names the run in its header)."""
    n_features = data.features.shape[-1]
    keys = jax.random.split(jax.random.key(config.seed), fold.train_p.shape[0])
    init = partial(models.build_vo2_model, n_features, config.variant, window=config.window)
    return fit_folds(
        lambda k: init(key=k),
        make_task(config, data.vo2.shape[1]),
        data,
        fold,
        recipe(config),
        keys,
        progress="vo2" if progress else False,
        state_file=state_file,
        resume=resume,
        run=run or {"study": "cv vo2", "model": "vo2"},
    )


def results_skeleton(cohort: Cohort, names, split: Split, subjects_out: int, config: dict) -> dict:
    """The `metrics.json` header: cohort, folds, config; `models` to be filled."""
    return {
        "cohort": {
            "n_subjects": cohort.n_runners,
            "n_sessions": cohort.n_sessions,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            "features": list(names),
        },
        "folds": {"subjects_out": subjects_out, "n_folds": split.n_folds},
        "config": config,
        "models": {},
    }


def score_baselines(results, predictions, data: VO2Data, split: Split, runner, scored, names):
    """Score both HR baselines into `results["models"]` (training subjects: all but the test)."""
    train_weight = jnp.asarray(~split.test)[:, :, None] & data.mask[None]
    for name, p in hr_baselines(data, train_weight, split.owner).items():
        results["models"][name] = score(p, data, scored, runner, names)
        predictions[name] = p


def scored_mask(data: VO2Data) -> np.ndarray:
    """Observed seconds after the first (the given one)."""
    mask = np.asarray(data.mask)
    return mask & (np.arange(mask.shape[1]) > 0)[None, :]


def run_vo2_study(cohort: Cohort, config: VO2StudyConfig, *, progress: bool = True,
                  state_dir=None, resume: bool = False, split: Split | None = None):  # fmt: skip
    """Cross-validate the VO2 model and score it and the baselines; returns
    `(results, predictions)` (results as in `metrics.json`). `state_dir`: the training state
    is saved there every epoch (`study_state.training_state`) and `resume`d from it. `split`:
    other folds than `config`'s subject-wise ones (e.g. one protocol tested on another's)."""
    data, fold, split, names = prepare(cohort, config, split)
    runner = np.asarray(cohort.runner)
    scored = scored_mask(data) & np.asarray(split.test).any(0)[:, None]  # what a fold predicts
    t0 = time.perf_counter()
    state_file, resumed = study_state.training_state(state_dir, "vo2", resume)
    fit = train_vo2(data, fold, config, progress=progress, state_file=state_file, resume=resumed)
    train_s = time.perf_counter() - t0
    pred = predict_held_out(predict, fit.model, fold, data, split, batch=config.eval_batch)
    variant = list(config.variant) if isinstance(config.variant, tuple) else config.variant
    run_config = {
        "variant": variant,
        "batch_size": config.batch_size,
        "train_stride": config.train_stride,
        **config.train._asdict(),
    }
    results = results_skeleton(cohort, names, split, config.subjects_out, run_config)
    entry = score(pred, data, scored, runner, cohort.runner_names)
    entry["train_seconds"] = train_s
    entry["epochs_run"] = int(fit.history["stopped"].shape[0])
    entry["n_traces"] = fit.n_traces
    results["models"]["vo2_kalman"] = entry
    predictions = {"vo2": np.asarray(data.vo2), "scored": scored, "vo2_kalman": pred}
    if "hr_bpm" in names:
        score_baselines(results, predictions, data, split, runner, scored, cohort.runner_names)
    return results, predictions
