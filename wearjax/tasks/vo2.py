"""The VO2 study (Lab-to-Wrist section 5, Tables 2 and 4): subject-wise cross-validation of the
dual-pathway VO2 model, all folds in one vmapped program, against two HR baselines; and HR -> VO2,
the HR model's generative rollout feeding the VO2 model in one compiled function.

The steps mirror `eval.hr_study`:

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

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.types import Cohort
from wearjax.errors import WearjaxDataError
from wearjax.eval.hr_study import held_out_table
from wearjax.eval.metrics import bias, mae, mape, pearson_r, r2, rmse
from wearjax.eval.protocols import given_mask
from wearjax.models.vo2 import build_vo2_model
from wearjax.signal.features import Normalizer, fit_normalizer
from wearjax.signal.metabolic import (
    SAVGOL_WINDOW,
    hold_observed,
    metabolic_feature_names,
    metabolic_features,
    savgol_smooth,
)
from wearjax.train.fit import EpochHooks, TrainConfig, cross_validate
from wearjax.train.losses import vo2_kalman_loss
from wearjax.train.schedules import cosine_warm_restarts, curriculum_weights, decaying_clip_norm

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


class VO2Data(NamedTuple):
    """Arrays shared by all folds."""

    features: jax.Array  # [S, T, F]
    hr: jax.Array  # [S, T] held over dropouts (bpm)
    vo2: jax.Array  # [S, T] smoothed (mL/min)
    mask: jax.Array  # [S, T] VO2 observed inside the session
    v0: jax.Array  # [S] the known first second (mL/min)


class VO2Fold(NamedTuple):
    """Per-fold arrays, stacked on a leading fold axis."""

    normalizer: Normalizer
    train_p: jax.Array  # [S] sampling probability of each session (0 outside training)
    val_session: jax.Array  # [V] this fold's validation sessions (padded)
    val_weight: jax.Array  # [V] 1 for real ones, 0 for padding


def cohort_features(cohort: Cohort, window: int = 60):
    """VO2 features of every session `[S, T, F]` and their names (`metabolic_features`)."""
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


def prepare(cohort: Cohort, config: VO2StudyConfig):
    """Features, smoothed targets, subject-wise folds and per-fold normalisers."""
    if cohort.x.shape[1] % config.window:
        raise WearjaxDataError(
            f"cohort length {cohort.x.shape[1]} s is not a multiple of the {config.window} s "
            "window: stack it with a bucket that is"
        )
    lengths = np.asarray(cohort.lengths)
    observed = np.asarray(cohort.vo2_mask & cohort.valid).sum(axis=1)
    short = [
        cohort.workouts[i] if cohort.workouts else str(i)
        for i in np.flatnonzero((lengths < SAVGOL_WINDOW) | (observed == 0))
    ]
    if short:
        raise WearjaxDataError(
            f"sessions {short[:5]} have no VO2 or are shorter than the {SAVGOL_WINDOW} s "
            "smoothing window: drop them before the VO2 study"
        )
    features, names = cohort_features(cohort, config.window)
    mask = cohort.vo2_mask & cohort.valid
    vo2 = smoothed_vo2(cohort.vo2, mask, cohort.lengths)
    test = leave_k_runners_out(cohort.n_runners, config.subjects_out, seed=config.seed)
    val = validation_runners(test, config.validation_subjects, seed=config.seed)
    runner = np.asarray(cohort.runner)
    train_sessions = (~test & ~val)[:, runner]
    p = train_sessions.astype(np.float32)
    p /= p.sum(1, keepdims=True)
    val_idx, val_ok = held_out_table(val, runner)
    weight = jnp.asarray(train_sessions)[:, :, None] & mask[None]
    normalizer = jax.vmap(fit_normalizer, in_axes=(None, 0))(features, weight)
    hr = hold_observed(cohort.hr, cohort.mask & cohort.valid)
    if config.first_second not in ("smoothed", "raw"):
        raise WearjaxDataError(
            f"first_second must be 'smoothed' or 'raw', got {config.first_second!r}"
        )
    raw0 = hold_observed(cohort.vo2, mask)[:, 0]
    data = VO2Data(
        features, hr, vo2, mask, vo2[:, 0] if config.first_second == "smoothed" else raw0
    )
    fold = VO2Fold(
        normalizer, jnp.asarray(p), jnp.asarray(val_idx), jnp.asarray(val_ok, jnp.float32)
    )
    return data, fold, test, val, names


def _given(mask):
    """Only the first second of VO2 is given to the model."""
    return mask & (jnp.broadcast_to(jnp.arange(mask.shape[-1]), mask.shape) == 0)


def make_task(config: VO2StudyConfig, length: int):
    """(sample, loss, validate) for `train.fit` with `EpochHooks(loss_takes_epoch=True)`."""
    starts = jnp.arange(0, length - config.window + 1, config.train_stride, dtype=jnp.int32)

    def sessions(data: VO2Data, fold: VO2Fold, idx):
        return (
            fold.normalizer.apply(data.features[idx]),
            data.vo2[idx],
            data.mask[idx],
            data.v0[idx],
        )

    def rollouts(model, x, v0, keys):
        call = lambda xi, vi, ki: model.rollout(xi, vi, starts=starts, key=ki)  # noqa: E731
        return jax.vmap(call)(x, v0, keys)

    def sample(data: VO2Data, fold: VO2Fold, key):
        i = jax.random.choice(key, data.v0.shape[0], (config.batch_size,), p=fold.train_p)
        return sessions(data, fold, i)

    def loss(model, batch, key, epoch):
        x, vo2, mask, v0 = batch
        pred = rollouts(model, x, v0, jax.random.split(key, x.shape[0]))
        return vo2_kalman_loss(
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

    def validate(model, data: VO2Data, fold: VO2Fold):
        x, vo2, mask, v0 = sessions(data, fold, fold.val_session)
        pred = jax.vmap(lambda xi, vi: model.rollout(xi, vi, starts=starts).vo2)(x, v0)
        scored = mask & ~_given(mask) & (fold.val_weight > 0)[:, None]
        return mae(pred, vo2, scored)

    return sample, loss, validate


def recipe_hooks(config: VO2StudyConfig) -> EpochHooks:
    """AdamW (decoupled weight decay: the step applies `-lr (adam + wd p)`), cosine warm
    restarts, the decaying clip and the epoch-aware (curriculum) loss."""
    return EpochHooks(
        learning_rate=partial(
            cosine_warm_restarts,
            max_lr=config.train.learning_rate,
            min_lr=config.min_learning_rate,
            t0=config.restart_period,
            t_mult=config.restart_mult,
        ),
        clip_norm=decaying_clip_norm,
        optimizer=optax.chain(
            optax.scale_by_adam(), optax.add_decayed_weights(config.train.weight_decay)
        ),
        loss_takes_epoch=True,
    )


@eqx.filter_jit
def _predict_folds(model, normalizer, features, v0, idx, batch: int):
    """Whole-session rollouts of each fold's held-out sessions: `[K, M, T]`."""

    def per_fold(model, normalizer, idx):
        def per_session(i):
            return model.rollout(normalizer.apply(features[i]), v0[i]).vo2

        return jax.lax.map(per_session, idx, batch_size=batch)

    return eqx.filter_vmap(per_fold)(model, normalizer, idx)


def scatter_held_out(out, idx, ok, shape) -> np.ndarray:
    """`[K, M, T]` fold outputs back to `[S, T]` by the held-out table."""
    full = np.zeros(shape, np.float32)
    full[idx[ok]] = np.asarray(out)[ok]
    return full


def predict_held_out(model, fold: VO2Fold, data: VO2Data, test, runner, batch=8) -> np.ndarray:
    idx, ok = held_out_table(test, runner)
    out = _predict_folds(model, fold.normalizer, data.features, data.v0, jnp.asarray(idx), batch)
    return scatter_held_out(out, idx, ok, data.vo2.shape)


def hr_baselines(data: VO2Data, train_weight, test, runner) -> dict[str, np.ndarray]:
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
    owner = np.argmax(test[:, runner], axis=0)
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


def train_vo2(data: VO2Data, fold: VO2Fold, config: VO2StudyConfig, *, progress=True):
    """Cross-validate the VO2 model over the folds of `fold` (one vmapped program)."""
    sample, loss, validate = make_task(config, data.vo2.shape[1])
    n_features = data.features.shape[-1]
    keys = jax.random.split(jax.random.key(config.seed), fold.train_p.shape[0])
    init = partial(build_vo2_model, n_features, config.variant, window=config.window)
    return cross_validate(
        lambda k: init(key=k),
        loss,
        sample,
        validate,
        data,
        fold,
        config.train,
        keys,
        progress="vo2" if progress else False,
        hooks=recipe_hooks(config),
    )


def _results_skeleton(cohort: Cohort, names, test, subjects_out: int, config: dict) -> dict:
    """The `metrics.json` header: cohort, folds, config; `models` to be filled."""
    return {
        "cohort": {
            "n_subjects": cohort.n_runners,
            "n_sessions": cohort.n_sessions,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            "features": list(names),
        },
        "folds": {"subjects_out": subjects_out, "n_folds": int(test.shape[0])},
        "config": config,
        "models": {},
    }


def _score_baselines(results, predictions, data: VO2Data, test, runner, scored, names) -> None:
    """Score both HR baselines into `results["models"]` (training subjects: all but the test)."""
    train_weight = jnp.asarray((~test)[:, runner])[:, :, None] & data.mask[None]
    for name, p in hr_baselines(data, train_weight, test, runner).items():
        results["models"][name] = score(p, data, scored, runner, names)
        predictions[name] = p


def _scored(data: VO2Data) -> np.ndarray:
    """Observed seconds after the first (the given one)."""
    mask = np.asarray(data.mask)
    return mask & (np.arange(mask.shape[1]) > 0)[None, :]


def run_vo2_study(cohort: Cohort, config: VO2StudyConfig, *, progress: bool = True):
    """Cross-validate the VO2 model and score it and the baselines; returns
    `(results, predictions)` (results as in `metrics.json`)."""
    data, fold, test, val, names = prepare(cohort, config)
    runner = np.asarray(cohort.runner)
    scored = _scored(data)
    t0 = time.perf_counter()
    fit = train_vo2(data, fold, config, progress=progress)
    train_s = time.perf_counter() - t0
    pred = predict_held_out(fit.model, fold, data, test, runner, config.eval_batch)
    variant = list(config.variant) if isinstance(config.variant, tuple) else config.variant
    run_config = {
        "variant": variant,
        "batch_size": config.batch_size,
        "train_stride": config.train_stride,
        **config.train._asdict(),
    }
    results = _results_skeleton(cohort, names, test, config.subjects_out, run_config)
    entry = score(pred, data, scored, runner, cohort.runner_names)
    entry["train_seconds"] = train_s
    entry["epochs_run"] = int(fit.history["stopped"].shape[0])
    entry["n_traces"] = fit.n_traces
    results["models"]["vo2_kalman"] = entry
    predictions = {"vo2": np.asarray(data.vo2), "scored": scored, "vo2_kalman": pred}
    if "hr_bpm" in names:
        _score_baselines(results, predictions, data, test, runner, scored, cohort.runner_names)
    return results, predictions


MODEL_LABELS = {
    "vo2_kalman": "VO2 Kalman (dual pathway)",
    "vo2_kalman_true_hr": "VO2 Kalman, true HR",
    "vo2_kalman_rolled_hr": "VO2 Kalman, HR rolled out by the HR model",
    "baseline_linear_hr": "(a) linear HR-VO2, first-second offset",
    "baseline_hr_ratio": "(b) first-second VO2 x HR ratio",
}


def report_table(results: dict) -> str:
    """Markdown table of every model's pooled and per-subject-mean MAE, RMSE, MAPE."""
    lines = [
        "| model | MAE (mL/min) | RMSE (mL/min) | MAPE (%) | subject-mean MAE | subject-mean "
        "MAPE (%) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in results["models"].items():
        s = m["subject_mean"]
        lines.append(
            f"| {MODEL_LABELS.get(name, name)} | {m['mae']:.0f} | {m['rmse']:.0f} | "
            f"{m['mape']:.1f} | {s['mae']:.0f} | {s['mape']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: Path, title: str) -> str:
    """`out/metrics.json` and `out/report.md`; returns the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report_table(results)
    c = results["cohort"]
    head = (
        f"# {title}\n\n{c['n_subjects']} subjects, {c['n_sessions']} sessions, "
        f"{c['hours']:.1f} h; {results['folds']['n_folds']} subject-wise folds; features: "
        f"{', '.join(c['features'])}. Only the first second of VO2 is known; metrics over the "
        "seconds after it, against Savitzky-Golay-smoothed VO2.\n\n"
    )
    (out / "report.md").write_text(head + table)
    return table


def cpet_config(quick: bool = False, seed: int = 0, **changes) -> VO2StudyConfig:
    """The settings of the pyoxynet ramp-test study (`experiments/vo2_cpet.py`).

    Ten subject-wise folds (leave 9 of 87 subjects out, 4 more per fold for early stopping) and
    a (32, 2) biGRU: the published (256, 2) and (128, 4) do not train 10 folds in 15 minutes on
    two CPU cores (pass `variant=` for them). 70 epochs end the third cosine cycle.
    `quick` is a smoke run of a few steps.
    """
    base = VO2StudyConfig()
    config = VO2StudyConfig(
        variant=(32, 2),
        batch_size=4,
        subjects_out=9,
        validation_subjects=4,
        train=base.train._replace(epochs=70, steps_per_epoch=8),
        seed=seed,
    )
    if quick:
        config = config._replace(
            variant=(8, 1),
            subjects_out=10,
            validation_subjects=2,
            train=base.train._replace(epochs=2, steps_per_epoch=3),
        )
    return config._replace(**changes)


def load_cpet_cohort(limit: int | None = None) -> Cohort:
    """pyoxynet's ramp tests (`data.pyoxynet`) as a cohort padded to whole minutes."""
    from wearjax.data.pyoxynet import load_ramp_tests
    from wearjax.data.types import stack_sessions

    sessions, skipped = load_ramp_tests(limit)
    for s in skipped:
        logger.info("skipped %s: %s", s.path.name, s.reason)
    return stack_sessions(sessions, bucket=60)


# -- HR -> VO2 (Table 4): the HR model's generative rollout feeds the VO2 model ---------------


def hr_to_vo2(
    hr_model,
    hr_normalizer: Normalizer,
    vo2_model,
    vo2_normalizer: Normalizer,
    hr_features,
    x,
    subject,
    hr,
    hr_mask,
    valid,
    v0,
    *,
    channels: tuple[str, ...],
    window: int = 60,
):
    """VO2 of one session from HR rolled out by the HR model: returns `(vo2 [T], hr [T])`.

    The HR model starts from the session's first observed HR and rolls out over the whole
    session (`rollout`, generative); its HR replaces the measured one in the VO2 features
    (`metabolic_features`, held past the session's end like measured HR), and the VO2 model
    rolls out from the first second of VO2. Pure: jit it whole (`hr_to_vo2_jit`), one program.
    """
    h0 = hr[jnp.argmax(hr_mask)]
    hr_pred = hr_model.rollout(hr_normalizer.apply(hr_features), h0).hr
    features = metabolic_features(x, channels, subject, hr_pred, valid, window=window)
    return vo2_model.rollout(vo2_normalizer.apply(features), v0).vo2, hr_pred


hr_to_vo2_jit = eqx.filter_jit(hr_to_vo2)


@eqx.filter_jit
def _chain_folds(hr_model, hr_norm, vo2_model, vo2_norm, hr_feats, cohort, vo2_feats, v0, idx):
    """Per fold, per held-out session: VO2 from true HR and from rolled-out HR, and that HR."""
    valid = cohort.valid
    chain = partial(hr_to_vo2, channels=cohort.channels, window=vo2_model.window)

    def per_fold(hr_model, hr_norm, vo2_model, vo2_norm, idx):
        def per_session(i):
            true_hr = vo2_model.rollout(vo2_norm.apply(vo2_feats[i]), v0[i]).vo2
            args = (cohort.x[i], cohort.subject[i], cohort.hr[i], cohort.mask[i], valid[i], v0[i])
            rolled, hr_pred = chain(hr_model, hr_norm, vo2_model, vo2_norm, hr_feats[i], *args)
            return true_hr, rolled, hr_pred

        return jax.lax.map(per_session, idx)

    return eqx.filter_vmap(per_fold)(hr_model, hr_norm, vo2_model, vo2_norm, idx)


class HRToVO2Config(NamedTuple):
    """Synthetic HR -> VO2 study; sizes chosen to run in ~5 min on two CPU cores."""

    n_runners: int = 6
    sessions_per_runner: int = 3
    min_minutes: float = 15.0
    max_minutes: float = 30.0
    hr_model: tuple[int, int] = (32, 1)  # HR Kalman (hidden, layers)
    hr_train: TrainConfig = TrainConfig(epochs=20, steps_per_epoch=8)
    hr_batch: int = 4
    vo2: VO2StudyConfig = VO2StudyConfig(
        variant=(16, 2),
        batch_size=4,
        train=VO2StudyConfig().train._replace(epochs=30, steps_per_epoch=8),
    )
    seed: int = 0


def synthetic_config(quick: bool = False, seed: int = 0) -> HRToVO2Config:
    """Settings of the synthetic HR -> VO2 study; `quick`: a smoke run of a few steps."""
    config = HRToVO2Config(seed=seed, vo2=HRToVO2Config().vo2._replace(seed=seed))
    if quick:
        config = config._replace(
            n_runners=3,
            sessions_per_runner=2,
            min_minutes=10.0,
            max_minutes=12.0,
            hr_model=(8, 1),
            hr_train=TrainConfig(epochs=2, steps_per_epoch=2),
            vo2=config.vo2._replace(
                variant=(8, 1), train=config.vo2.train._replace(epochs=2, steps_per_epoch=2)
            ),
        )
    return config


def run_hr_to_vo2(config: HRToVO2Config, *, progress: bool = True):
    """Leave-one-runner-out on a synthetic cohort: the HR Kalman model and the VO2 model are
    cross-validated on the same folds, then every session's VO2 is predicted by its fold's
    models from true HR and from HR rolled out by the HR model (`hr_to_vo2`).
    Returns `(results, predictions)`."""
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.eval import hr_study

    cohort = simulate_cohort(
        jax.random.key(config.seed),
        config.n_runners,
        config.sessions_per_runner,
        min_minutes=config.min_minutes,
        max_minutes=config.max_minutes,
    )
    vo2_cfg = config.vo2._replace(subjects_out=1, validation_subjects=1, seed=config.seed)
    kind_size = ("kalman", *config.hr_model)
    hr_cfg = hr_study.HRStudyConfig(
        models=(kind_size,),
        runners_out=1,
        train=config.hr_train,
        batch_size=config.hr_batch,
        seed=config.seed,
    )
    hr_data, hr_fold, hr_test, _, _ = hr_study.prepare(cohort, hr_cfg)
    data, fold, test, val, names = prepare(cohort, vo2_cfg)
    if not np.array_equal(hr_test, test):
        raise RuntimeError("the HR and VO2 studies must hold out the same runners per fold")
    t0 = time.perf_counter()
    sample, loss, validate = hr_study.make_task(hr_cfg, cohort.x.shape[1])
    keys = jax.random.split(jax.random.key(config.seed), test.shape[0])
    kind, hidden, layers = kind_size
    n_hr = hr_data.features.shape[-1]
    init = partial(hr_study.build_model, kind, n_hr, hidden, layers, window=hr_cfg.window)
    hr_fit = cross_validate(
        lambda k: init(key=k),
        loss,
        sample,
        validate,
        hr_data,
        hr_fold,
        hr_cfg.train,
        keys,
        progress="hr" if progress else False,
    )
    vo2_fit = train_vo2(data, fold, vo2_cfg, progress=progress)
    train_s = time.perf_counter() - t0
    runner = np.asarray(cohort.runner)
    idx, ok = held_out_table(test, runner)
    out = _chain_folds(
        hr_fit.model,
        hr_fold.normalizer,
        vo2_fit.model,
        fold.normalizer,
        hr_data.features,
        cohort,
        data.features,
        data.v0,
        jnp.asarray(idx),
    )
    shape = data.vo2.shape
    true_hr, rolled, hr_pred = (scatter_held_out(o, idx, ok, shape) for o in out)
    scored = _scored(data)
    run_config = {"hr_model": list(config.hr_model), "vo2_variant": list(vo2_cfg.variant)}
    results = _results_skeleton(cohort, names, test, 1, run_config)
    results["train_seconds"] = train_s
    predictions = {"vo2": np.asarray(data.vo2), "scored": scored, "hr_rollout": hr_pred}
    for name, p in (("vo2_kalman_true_hr", true_hr), ("vo2_kalman_rolled_hr", rolled)):
        results["models"][name] = score(p, data, scored, runner, cohort.runner_names)
        predictions[name] = p
    _score_baselines(results, predictions, data, test, runner, scored, cohort.runner_names)
    hr_scored = np.asarray(cohort.mask & cohort.valid) & ~np.asarray(
        given_mask(cohort.mask, hr_cfg.window, "generative")
    )
    results["hr_rollout"] = _metrics(hr_pred, np.asarray(cohort.hr), hr_scored)
    return results, predictions


def cli_cv_vo2(data: str, quick: bool, out: Path, seed: int = 0) -> int:
    """`wearjax cv vo2 --data {synthetic,pyoxynet} [--quick] --out DIR`: run the VO2 study,
    write `DIR/metrics.json` and `DIR/report.md`, print the table; returns 0.

    Raises `WearjaxError` for unknown `data`, and when pyoxynet is not installed (naming
    `pip install wearjax[data]`)."""
    from wearjax.errors import WearjaxError

    out = Path(out)
    if data == "pyoxynet":
        cohort = load_cpet_cohort(30 if quick else None)
        results, _ = run_vo2_study(cohort, cpet_config(quick, seed))
        title = "VO2 on pyoxynet's ramp tests"
    elif data == "synthetic":
        results, _ = run_hr_to_vo2(synthetic_config(quick, seed))
        title = "HR -> VO2 on the synthetic cohort"
    else:
        raise WearjaxError(f"unknown VO2 data {data!r}: choose 'synthetic' or 'pyoxynet'")
    print(write_report(results, out, title))
    return 0
