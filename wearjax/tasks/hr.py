"""The heart-rate task (Table 1 of Lab-to-Wrist): leave-k-runners-out cross-validation of the HR
models (Kalman and neural ODE, all folds of a model in one vmapped program; the personalised
ODE as a peer kind, `tasks.hr_personal`), both protocols, and two baselines.

Used by `wearjax demo`, `wearjax cv hr` and `experiments/hr_table1.py`. The steps:

1. features from raw channels (`signal.features`; with `session_relative`, the device
   features standardised by each session's own statistics first), one normaliser per fold
   fitted on that fold's training runners only (vmapped);
2. training batches are segments of `segment_windows` consecutive 60 s windows drawn from the
   training runners (the GRU state carries across the segment's windows; the standard protocol
   gives each window its first HR); a tenth of the runners per fold (at least one) is held out
   of training for early stopping (`train.loop` through `cv.fit_folds`) and for calibrating
   the predictive band (`tasks.hr_bands`);
3. every session is then predicted whole by the model of the fold that held its runner out,
   under both protocols (`cv.predict_held_out`);
4. pooled metrics (`eval.metrics.summarize`) over the seconds each protocol did not give.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax import models
from wearjax.cv import (
    Split,
    fit_folds,
    gather_processes,
    padded_table,
    predict_held_out,
    process_folds,
)
from wearjax.data.types import Cohort
from wearjax.data.windows import gather_windows, window_index
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import gaussian_crps, predictive_scores, summarize
from wearjax.eval.protocols import (
    first_observed,
    given_mask,
    standard_initial,
)
from wearjax.signal.features import (
    Normalizer,
    fit_normalizer,
    running_features,
    session_relative,
)
from wearjax.tasks import hr_personal
from wearjax.tasks.hr_bands import calibrate_bands
from wearjax.tasks.hr_baselines import baselines
from wearjax.tasks.losses import hr_kalman_loss
from wearjax.train.loop import Task, TrainConfig


class HRStudyConfig(NamedTuple):
    # (kind, hidden, GRU layers) of every model cross-validated; kinds are keys of HR_MODELS.
    # The default is the published Table 1: Kalman and ODE, each in both sizes.
    models: tuple[tuple[str, int, int], ...] = (
        ("kalman", 128, 2),
        ("kalman", 64, 3),
        ("ode", 128, 2),
        ("ode", 64, 3),
    )
    # `tasks.hr_personal.PersonalConfig` to cross-validate the personalised HR ODE on the same
    # folds as a peer model ("personal_ode"), or None. Needs several sessions per runner.
    personal: Any = None
    window: int = 60
    segment_windows: int | None = None  # None: train on whole sessions (no GRU-state mismatch)
    batch_size: int = 32
    runners_out: int = 3
    # runners per fold held out of training for early stopping and for calibrating the
    # predictive band (`calibrate`); None: a tenth of the runners, at least one
    n_validation: int | None = None
    train: TrainConfig = TrainConfig(epochs=30, steps_per_epoch=40)
    seed: int = 0
    eval_batch: int = 8
    generative_weight: float = 1.0  # weight of the generative rollout of each training segment
    # weight of the CRPS of the model's predictive distribution N(hr, var), added to each
    # protocol's loss for a model with a variance (the Kalman filter; `eval.metrics.gaussian_crps`).
    # On the shared runs it moved MAE by 0.1 bpm at most and trains the filter's variance, which
    # sets how much `HRKalman.assimilate` trusts a measurement (experiments/results).
    crps_weight: float = 1.0
    ridge: float = 1e-3
    # features standardised by each session's own statistics before the fold's normaliser
    # (`signal.features.session_relative`; e.g. `DEVICE_FEATURES`); () keeps the published inputs
    session_relative: tuple[str, ...] = ()


# HR model kinds of this task and their `models.REGISTRY` kinds: `AbstractHRModel`s built from
# `(n_features, hidden, n_layers, *, window, key)`.
HR_MODELS = {"kalman": "hr_kalman", "ode": "hr_ode"}
# Variants cross-validated beside them to measure a choice (experiments, not the CLI): kind ->
# (HR_MODELS kind, extra constructor arguments).
HR_VARIANTS = {"ode_fixed_rate": ("ode", {"learned_rate": False})}
# Changes to `HRStudyConfig.train` per kind: the ODE's published recipe reduces the learning
# rate on plateaus by 0.2 with a cooldown of 3 epochs down to 1e-6, and stops after 20 epochs
# without improvement.
TRAIN_OVERRIDES = {
    "ode": dict(
        plateau_factor=0.2,
        plateau_cooldown=3,
        min_learning_rate=1e-6,
        early_stopping_patience=20,
    )
}


def build_model(kind: str, n_features: int, hidden: int, n_layers: int, *, window: int, key):
    """An HR model of kind `kind` (a key of `HR_MODELS` or `HR_VARIANTS`)."""
    kind, extra = HR_VARIANTS.get(kind, (kind, {}))
    if kind not in HR_MODELS:
        known = sorted(HR_MODELS) + sorted(HR_VARIANTS)
        raise ValueError(f"unknown HR model {kind!r}: choose one of {known}")
    return models.build(
        HR_MODELS[kind], n_features=n_features, hidden=hidden, n_layers=n_layers, window=window,
        key=key, **extra,
    )  # fmt: skip


class HRData(NamedTuple):
    """Arrays shared by all folds (passed to the jitted epoch as an argument)."""

    features: jax.Array  # [S, T, F]
    hr: jax.Array  # [S, T]
    mask: jax.Array  # [S, T] observed and inside the session
    train_session: jax.Array  # [N] segment table: every window start of every session
    train_start: jax.Array


class HRFold(NamedTuple):
    """Per-fold arrays, stacked on a leading fold axis."""

    normalizer: Normalizer
    train_p: jax.Array  # [N] sampling probability of each segment (0 outside training)
    val_session: jax.Array  # [V] this fold's validation segments (padded)
    val_start: jax.Array
    val_weight: jax.Array  # [V] 1 for real validation segments, 0 for padding


def _segments(data: HRData, normalizer: Normalizer, session, start, width):
    x = normalizer.apply(gather_windows(data.features, session, start, width))
    hr = gather_windows(data.hr, session, start, width)
    mask = gather_windows(data.mask, session, start, width)
    return x, hr, mask


def _protocol_loss(pred, hr, mask, given, window: int, crps_weight: float):
    """The published loss of one protocol, plus `crps_weight` x the CRPS of its variance."""
    loss = hr_kalman_loss(pred.hr, pred.mu, pred.sigma, hr, mask, given, window)
    if crps_weight:
        scored = mask & ~given
        crps = jnp.where(scored, gaussian_crps(pred.hr, pred.var, hr), 0.0)
        loss += crps_weight * jnp.sum(crps) / jnp.maximum(jnp.sum(scored), 1).astype(crps.dtype)
    return loss


def _segment_loss(model, x, hr, mask, keys, generative_weight: float, crps_weight: float = 0.0):
    """Loss of both protocols on a batch of segments: standard + weight * generative, where
    the generative rollout starts from the segment's first observed second."""
    w = model.window

    def call(xi, hi, mi, ki):
        h0 = first_observed(hi, mi)[0]
        return model.predict_protocols(xi, standard_initial(hi, mi, w), h0, key=ki)

    std, gen = jax.vmap(call)(x, hr, mask, keys)
    crps_weight = crps_weight if model.has_variance else 0.0  # without one, CRPS is the MAE
    loss = _protocol_loss(std, hr, mask, given_mask(mask, w, "standard"), w, crps_weight)
    if generative_weight:
        given = given_mask(mask, w, "generative")
        loss += generative_weight * _protocol_loss(gen, hr, mask, given, w, crps_weight)
    return loss


def segment_width(config: HRStudyConfig, length: int) -> int:
    """Seconds per training segment: whole (padded) sessions, or `segment_windows` windows."""
    return length if config.segment_windows is None else config.window * config.segment_windows


def make_task(config: HRStudyConfig, length: int) -> Task:
    """The `Task` of an HR model for a cohort padded to `length` seconds."""
    width = segment_width(config, length)

    def sample(data: HRData, fold: HRFold, key):
        n = data.train_session.shape[0]
        i = jax.random.choice(key, n, (config.batch_size,), p=fold.train_p)
        return _segments(data, fold.normalizer, data.train_session[i], data.train_start[i], width)

    def loss(model, batch, key, epoch):
        x, hr, mask = batch
        keys = jax.random.split(key, x.shape[0])
        return _segment_loss(
            model, x, hr, mask, keys, config.generative_weight, config.crps_weight
        ), ()

    def validate(model, data: HRData, fold: HRFold):
        x, hr, mask = _segments(data, fold.normalizer, fold.val_session, fold.val_start, width)
        mask = mask & (fold.val_weight > 0)[:, None]
        weights = (config.generative_weight, config.crps_weight)
        return _segment_loss(model, x, hr, mask, None, *weights)  # no dropout

    return Task(sample, loss, validate)


def model_features(cohort: Cohort, relative: tuple[str, ...] = ()):
    """The model's inputs `[S, T, F]` and their names: `running_features`, with the features
    `relative` taken to each session's own level and scale (`session_relative`)."""
    features, names = running_features(cohort.x, cohort.channels, cohort.subject)
    relative = relative if isinstance(relative, str) else tuple(relative)  # a str is refused
    return session_relative(features, cohort.valid, names, relative), names


def prepare(cohort: Cohort, config: HRStudyConfig, split: Split | None = None):
    """Features, folds (leave-`runners_out`-runners-out unless a `split` is given), per-fold
    normalisers and segment tables for one cohort."""
    if cohort.x.shape[1] % config.window:
        raise ValueError(
            f"cohort length {cohort.x.shape[1]} s is not a multiple of the {config.window} s "
            "window: stack it with a bucket that is"
        )
    features, names = model_features(cohort, config.session_relative)
    mask = cohort.mask & cohort.valid
    if split is None:
        n_val = config.n_validation or max(1, cohort.n_runners // 10)
        split = Split.by_subject(
            cohort.runner, cohort.n_runners, config.runners_out, n_validation=n_val,
            seed=config.seed,
        )  # fmt: skip
    train_sessions = split.train  # [K, S]

    width = segment_width(config, cohort.x.shape[1])
    lengths = np.asarray(cohort.lengths)
    if config.segment_windows is None:  # whole sessions, padding masked
        lengths = np.full_like(lengths, cohort.x.shape[1])
    table = window_index(lengths, width, stride=config.window)
    t_sess = np.asarray(table.session)
    p = train_sessions[:, t_sess].astype(np.float32)
    if np.any(p.sum(1) == 0):
        raise ValueError(
            f"a fold has no training segment of {width} s: sessions are too short for "
            f"segment_windows={config.segment_windows}"
        )
    p /= p.sum(1, keepdims=True)

    vtable = window_index(lengths, width, stride=width)
    v_sess, v_start = np.asarray(vtable.session), np.asarray(vtable.start)
    val_idx, val_ok = padded_table(split.validation[:, v_sess])

    weight = jnp.asarray(train_sessions)[:, :, None] & mask[None]
    normalizer = jax.vmap(fit_normalizer, in_axes=(None, 0))(features, weight)
    data = HRData(features, cohort.hr, mask, table.session, table.start)
    fold = HRFold(
        normalizer,
        jnp.asarray(p),
        jnp.asarray(v_sess[val_idx]),
        jnp.asarray(v_start[val_idx]),
        jnp.asarray(val_ok, jnp.float32),
    )
    return data, fold, split, names


def predict(model, fold: HRFold, data: HRData, i) -> dict[str, jax.Array]:
    """Both protocols for session `i` (`cv.predict_held_out`): HR and variance `[T]` each."""
    x = fold.normalizer.apply(data.features[i])
    std = model(x, standard_initial(data.hr[i], data.mask[i], model.window))
    gen = model.rollout(x, first_observed(data.hr[i], data.mask[i])[0])
    return {
        "standard": std.hr,
        "standard_var": std.var,
        "generative": gen.hr,
        "generative_var": gen.var,
    }


def _as_floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def score_protocols(pred: dict, hr, scored: dict, summarize_jit=None) -> dict:
    """Pooled metrics (`eval.metrics.summarize`) of each protocol's `[S, T]` prediction, and
    the calibration of its band (`predictive_scores`) where `pred` has a `{protocol}_var`."""
    summarize_jit = summarize_jit or jax.jit(summarize)
    out = {}
    for p in ("standard", "generative"):
        out[p] = _as_floats(summarize_jit(jnp.asarray(pred[p]), hr, jnp.asarray(scored[p])))
        if np.any(pred.get(f"{p}_var", 0.0) > 0):  # a model with a variance: its calibration
            scores = predictive_scores(
                jnp.asarray(pred[p]), jnp.asarray(pred[f"{p}_var"]), hr, jnp.asarray(scored[p])
            )
            out[p].update(_as_floats(scores))
        own = pred.get(f"{p}_var_model")
        if own is not None and np.any(own > 0):  # the model's own variance, uncalibrated
            scores = predictive_scores(
                jnp.asarray(pred[p]), jnp.asarray(own), hr, jnp.asarray(scored[p])
            )
            out[p]["coverage_2sd_model"] = float(scores["coverage_2sd"])
    return out


def _header(cohort: Cohort, config: HRStudyConfig, split: Split, names) -> dict:
    runner = np.asarray(cohort.runner)
    runners_of = lambda m: [sorted(set(runner[row].tolist())) for row in m]  # noqa: E731
    return {
        "cohort": {
            "n_runners": cohort.n_runners,
            "n_sessions": cohort.n_sessions,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            "features": list(names),
        },
        "folds": {
            "runners_out": config.runners_out,
            "n_folds": split.n_folds,
            "test_runners": runners_of(split.test),
            "validation_runners": runners_of(split.validation),
        },
        "config": {
            "window": config.window,
            "segment_windows": config.segment_windows,
            "batch_size": config.batch_size,
            "session_relative": [n for n in names if n in config.session_relative],
            **config.train._asdict(),
        },
        "models": {},
    }


def cross_validate_kind(
    cohort: Cohort, config: HRStudyConfig, kind: str, hidden: int, layers: int, prepared=None,
    *, progress: bool = True,
):  # fmt: skip
    """Cross-validate one (kind, size) on `prepare`'s folds; returns `(entry, predictions,
    fit)` with the metrics entry of `metrics.json` and the `[S, T]` predictions."""
    data, fold, split, _ = prepared or prepare(cohort, config)
    scored = scored_masks(data.mask, config.window, split)
    name = f"{kind}_{hidden}x{layers}"
    n_features = data.features.shape[-1]
    init = partial(build_model, kind, n_features, hidden, layers, window=config.window)
    keys = jax.random.split(jax.random.key(config.seed), split.n_folds)
    # this process's folds (all of them unless jax.distributed runs several processes)
    local = process_folds(split.n_folds)
    if len(local) < split.n_folds and split.calibrate_from is not None:
        raise WearjaxDataError(
            "a chronological split calibrates each fold on the earlier folds' models: run it "
            "in one process"
        )
    whole, split = split, split.take(local)
    fold, keys = jax.tree_util.tree_map(lambda a: a[local], fold), keys[local]
    t0 = time.perf_counter()
    fit = fit_folds(
        lambda k: init(key=k),
        make_task(config, cohort.x.shape[1]),
        data,
        fold,
        config.train._replace(
            **TRAIN_OVERRIDES.get(HR_VARIANTS.get(kind, (kind,))[0], {})
        ).recipe(),
        keys,
        progress=name if progress else False,
    )
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if progress:
        print(f"{name}: predicting the held-out sessions, calibrating the band", file=sys.stderr)
    pred = predict_held_out(predict, fit.model, fold, data, split, batch=config.eval_batch)
    if len(local) < whole.n_folds:  # every process's held-out predictions, assembled
        pred, split = gather_processes(pred), whole
    pred = calibrate_bands(
        predict, fit.model, fold, data, split, config.window, pred, batch=config.eval_batch
    )
    eval_s = time.perf_counter() - t0
    entry = score_protocols(pred, data.hr, scored)
    params = jax.tree_util.tree_leaves(eqx.filter(fit.model, eqx.is_inexact_array))
    entry.update(
        train_seconds=train_s,
        eval_seconds=eval_s,
        epochs_run=int(fit.history["stopped"].shape[0]),
        best_val_loss=_all_folds(np.min(fit.history["val_loss"], axis=0), local, whole),
        n_traces=fit.n_traces,
        n_parameters=int(sum(x.size for x in params) // len(local)),
    )
    return entry, pred, fit


def _all_folds(values: np.ndarray, local: np.ndarray, split: Split) -> list:
    """Per-fold values of this process's folds `local`, completed with the other processes'
    (`gather_processes` of a fold-indexed array)."""
    full = np.zeros(split.n_folds, values.dtype)
    full[local] = values
    return np.asarray(gather_processes(full) if len(local) < split.n_folds else full).tolist()


def scored_masks(mask, window: int, split: Split) -> dict[str, np.ndarray]:
    """Per protocol, the observed seconds it did not give, in the sessions some fold tests:
    what its metrics cover."""
    m = np.asarray(mask) & split.test.any(axis=0)[:, None]
    return {p: m & ~np.asarray(given_mask(mask, window, p)) for p in ("standard", "generative")}


def run_personal_study(cohort: Cohort, study: HRStudyConfig, config=None, *, progress=True):
    """The personalised ODE (`tasks.hr_personal`) cross-validated on this task's folds."""
    _, _, split, _ = prepare(cohort, study)
    return hr_personal.run_personal(
        cohort, split, study.window, study.seed, config, progress=progress
    )


def run_hr_study(
    cohort: Cohort, config: HRStudyConfig, *, split: Split | None = None, progress: bool = True
):
    """Cross-validate every HR model of `config.models` (and the personalised ODE when
    `config.personal` is set) on `split` (default: leave-`runners_out`-runners-out), evaluate
    both protocols and the baselines; returns `(results, predictions)` (README: metrics.json)."""
    prepared = prepare(cohort, config, split)
    data, fold, split, names = prepared
    scored = scored_masks(data.mask, config.window, split)
    results = _header(cohort, config, split, names)
    predictions = {"hr": np.asarray(data.hr), "mask": np.asarray(data.mask), "scored": scored}
    for kind, hidden, layers in config.models:
        entry, pred, _ = cross_validate_kind(
            cohort, config, kind, hidden, layers, prepared, progress=progress
        )
        results["models"][f"{kind}_{hidden}x{layers}"] = entry
        predictions[f"{kind}_{hidden}x{layers}"] = pred
    if config.personal is not None:
        personal = hr_personal.run_personal(
            cohort, split, config.window, config.seed, config.personal, progress=progress
        )
        results["models"]["personal_ode"] = personal.entry
        predictions["personal_ode"] = personal.predictions
    summarize_jit = jax.jit(summarize)
    for name, pred in baselines(data, fold, split, config).items():
        results["models"][name] = score_protocols(pred, data.hr, scored, summarize_jit)
        predictions[name] = pred
    return results, predictions
