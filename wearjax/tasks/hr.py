"""The heart-rate study behind Table 1: leave-k-runners-out cross-validation of the HR models
(Kalman and neural ODE, all folds of a model in one vmapped program), both protocols, and two
baselines.

Used by `wearjax demo` and `experiments/hr_table1.py`. The steps:

1. features from raw channels (`signal.features`), one normaliser per fold fitted on that
   fold's training runners only (vmapped);
2. training batches are segments of `segment_windows` consecutive 60 s windows drawn from the
   training runners (the GRU state carries across the segment's windows; the standard protocol
   gives each window its first HR); one runner per fold is held out of training for early
   stopping;
3. every session is then predicted whole by the model of the fold that held its runner out,
   under both protocols, vmapped over folds and mapped over sessions;
4. pooled metrics (`eval.metrics.summarize`) over the seconds each protocol did not give.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.data.folds import leave_k_runners_out, validation_runners
from wearjax.data.types import Cohort
from wearjax.data.windows import gather_windows, window_index
from wearjax.eval.metrics import summarize
from wearjax.eval.protocols import first_observed, given_mask, hold_baseline, standard_initial
from wearjax.models.hr_kalman import HRKalman
from wearjax.models.hr_ode import HRODE
from wearjax.signal.features import Normalizer, fit_normalizer, running_features
from wearjax.train.fit import TrainConfig, cross_validate
from wearjax.train.losses import hr_kalman_loss


class HRStudyConfig(NamedTuple):
    # (kind, hidden, GRU layers) of every model cross-validated; kinds are keys of HR_MODELS.
    # The default is the published Table 1: Kalman and ODE, each in both sizes.
    models: tuple[tuple[str, int, int], ...] = (
        ("kalman", 128, 2),
        ("kalman", 64, 3),
        ("ode", 128, 2),
        ("ode", 64, 3),
    )
    # `eval.personal_study.PersonalConfig` to cross-validate the personalised HR ODE on the same
    # folds as a peer model ("personal_ode"), or None. Needs several sessions per runner.
    personal: Any = None
    window: int = 60
    segment_windows: int | None = None  # None: train on whole sessions (no GRU-state mismatch)
    batch_size: int = 32
    runners_out: int = 3
    train: TrainConfig = TrainConfig(epochs=30, steps_per_epoch=40)
    seed: int = 0
    eval_batch: int = 8
    generative_weight: float = 1.0  # weight of the generative rollout of each training segment
    ridge: float = 1e-3


# HR model kinds: constructors `(n_features, hidden, n_layers, *, window, key)` of models with
# `window`, `__call__(x, hr_init)` (standard), `rollout(x, hr0)` (generative) and
# `predict_protocols(x, hr_init, hr0, *, key)` returning `HRPrediction`s.
HR_MODELS = {"kalman": HRKalman, "ode": HRODE}
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
    """An HR model of kind `kind` (a key of `HR_MODELS`)."""
    if kind not in HR_MODELS:
        raise ValueError(f"unknown HR model {kind!r}: choose one of {sorted(HR_MODELS)}")
    return HR_MODELS[kind](n_features, hidden, n_layers, window=window, key=key)


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


def _segment_loss(model, x, hr, mask, keys, generative_weight: float):
    """Loss of both protocols on a batch of segments: standard + weight * generative, where
    the generative rollout starts from the segment's first observed second."""
    w = model.window

    def call(xi, hi, mi, ki):
        h0 = first_observed(hi, mi)[0]
        return model.predict_protocols(xi, standard_initial(hi, mi, w), h0, key=ki)

    std, gen = jax.vmap(call)(x, hr, mask, keys)
    loss = hr_kalman_loss(std.hr, std.mu, std.sigma, hr, mask, given_mask(mask, w, "standard"), w)
    if generative_weight:
        given = given_mask(mask, w, "generative")
        loss += generative_weight * hr_kalman_loss(gen.hr, gen.mu, gen.sigma, hr, mask, given, w)
    return loss


def segment_width(config: HRStudyConfig, length: int) -> int:
    """Seconds per training segment: whole (padded) sessions, or `segment_windows` windows."""
    return length if config.segment_windows is None else config.window * config.segment_windows


def make_task(config: HRStudyConfig, length: int):
    """The (sample, loss, validate) triple of an HR model for `train.fit`, for a
    cohort padded to `length` seconds."""
    width = segment_width(config, length)

    def sample(data: HRData, fold: HRFold, key):
        n = data.train_session.shape[0]
        i = jax.random.choice(key, n, (config.batch_size,), p=fold.train_p)
        return _segments(data, fold.normalizer, data.train_session[i], data.train_start[i], width)

    def loss(model, batch, key):
        x, hr, mask = batch
        keys = jax.random.split(key, x.shape[0])
        return _segment_loss(model, x, hr, mask, keys, config.generative_weight)

    def validate(model, data: HRData, fold: HRFold):
        x, hr, mask = _segments(data, fold.normalizer, fold.val_session, fold.val_start, width)
        mask = mask & (fold.val_weight > 0)[:, None]
        return _segment_loss(model, x, hr, mask, None, config.generative_weight)  # no dropout

    return sample, loss, validate


def prepare(cohort: Cohort, config: HRStudyConfig):
    """Features, folds, per-fold normalisers and segment tables for one cohort."""
    if cohort.x.shape[1] % config.window:
        raise ValueError(
            f"cohort length {cohort.x.shape[1]} s is not a multiple of the {config.window} s "
            "window: stack it with a bucket that is"
        )
    features, names = running_features(cohort.x, cohort.channels, cohort.subject)
    mask = cohort.mask & cohort.valid
    test = leave_k_runners_out(cohort.n_runners, config.runners_out, seed=config.seed)
    val = validation_runners(test, seed=config.seed)
    train = ~test & ~val
    runner = np.asarray(cohort.runner)
    train_sessions = train[:, runner]  # [K, S]

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
    per_fold = [np.flatnonzero(val[k, runner[v_sess]]) for k in range(len(test))]
    n_val = max(1, max(len(i) for i in per_fold))
    val_idx = np.zeros((len(test), n_val), np.int32)
    val_w = np.zeros((len(test), n_val), np.float32)
    for k, idx in enumerate(per_fold):
        val_idx[k, : len(idx)] = idx
        val_w[k, : len(idx)] = 1.0

    weight = jnp.asarray(train_sessions)[:, :, None] & mask[None]
    normalizer = jax.vmap(fit_normalizer, in_axes=(None, 0))(features, weight)
    data = HRData(features, cohort.hr, mask, table.session, table.start)
    fold = HRFold(
        normalizer,
        jnp.asarray(p),
        jnp.asarray(v_sess[val_idx]),
        jnp.asarray(v_start[val_idx]),
        jnp.asarray(val_w),
    )
    return data, fold, test, val, names


def held_out_table(test: np.ndarray, runner: np.ndarray):
    """Sessions held out by each fold, padded: index `[K, M]` and validity `[K, M]`."""
    per_fold = [np.flatnonzero(test[k, runner]) for k in range(len(test))]
    m = max(len(i) for i in per_fold)
    idx = np.zeros((len(test), m), np.int32)
    ok = np.zeros((len(test), m), bool)
    for k, i in enumerate(per_fold):
        idx[k, : len(i)] = i
        ok[k, : len(i)] = True
    return idx, ok


@eqx.filter_jit
def _predict_folds(model, normalizer, features, hr, mask, idx, batch: int):
    """Both protocols for the held-out sessions of every fold: `[K, M, T]` arrays."""

    def per_fold(model, normalizer, idx):
        def per_session(i):
            x = normalizer.apply(features[i])
            std = model(x, standard_initial(hr[i], mask[i], model.window))
            gen = model.rollout(x, first_observed(hr[i], mask[i])[0])
            return std.hr, std.var, gen.hr, gen.var

        return jax.lax.map(per_session, idx, batch_size=batch)

    return eqx.filter_vmap(per_fold)(model, normalizer, idx)


def predict_held_out(model, fold: HRFold, data: HRData, test, runner, batch=8):
    """Scatter each fold's held-out predictions back to `[S, T]` arrays per protocol."""
    idx, ok = held_out_table(test, runner)
    out = _predict_folds(
        model, fold.normalizer, data.features, data.hr, data.mask, jnp.asarray(idx), batch
    )
    s, t = data.hr.shape
    result = {}
    for name, arr in zip(
        ("standard", "standard_var", "generative", "generative_var"), out, strict=True
    ):
        full = np.zeros((s, t), np.float32)
        full[idx[ok]] = np.asarray(arr)[ok]
        result[name] = full
    return result


@jax.jit
def _linear_fit(features, hr, weight, ridge):
    """Weighted ridge regression HR ~ [1, features] (one fold)."""
    x = jnp.concatenate([jnp.ones(features.shape[:-1] + (1,), features.dtype), features], -1)
    w = weight.astype(features.dtype)
    xtx = jnp.einsum("stf,st,stg->fg", x, w, x)
    xty = jnp.einsum("stf,st,st->f", x, w, hr)
    reg = ridge * jnp.sum(w) * jnp.eye(x.shape[-1], dtype=x.dtype).at[0, 0].set(0.0)
    return jnp.linalg.solve(xtx + reg, xty)


def linear_baseline(data: HRData, fold: HRFold, train_weight, test, runner, ridge):
    """Baseline (b): HR regressed linearly on the (normalised) features of each second,
    fitted per fold on its training runners; the same prediction serves both protocols."""

    def one(normalizer, w):
        f = normalizer.apply(data.features)
        beta = _linear_fit(f, data.hr, w, ridge)
        return beta[0] + f @ beta[1:]

    preds = jax.lax.map(lambda a: one(*a), (fold.normalizer, train_weight))  # [K, S, T]
    owner = np.argmax(test[:, runner], axis=0)  # fold that held each session out
    return np.asarray(preds)[owner, np.arange(len(runner))]


def _as_floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def run_hr_study(cohort: Cohort, config: HRStudyConfig, *, progress: bool = True):
    """Cross-validate every HR model of `config.models`, evaluate both
    protocols and the baselines; returns `(results, predictions)` (see README: metrics.json)."""
    data, fold, test, val, names = prepare(cohort, config)
    runner = np.asarray(cohort.runner)
    mask = np.asarray(data.mask)
    given = {
        p: np.asarray(given_mask(data.mask, config.window, p)) for p in ("standard", "generative")
    }
    scored = {p: mask & ~given[p] for p in given}
    summarize_jit = jax.jit(summarize)
    results = {
        "cohort": {
            "n_runners": cohort.n_runners,
            "n_sessions": cohort.n_sessions,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            "features": list(names),
        },
        "folds": {
            "runners_out": config.runners_out,
            "n_folds": int(test.shape[0]),
            "test_runners": [np.flatnonzero(r).tolist() for r in test],
            "validation_runners": [np.flatnonzero(r).tolist() for r in val],
        },
        "config": {
            "window": config.window,
            "segment_windows": config.segment_windows,
            "batch_size": config.batch_size,
            **config.train._asdict(),
        },
        "models": {},
    }
    predictions = {"hr": np.asarray(data.hr), "mask": mask, "scored": scored}
    sample, loss, validate = make_task(config, cohort.x.shape[1])
    n_features = data.features.shape[-1]
    keys = jax.random.split(jax.random.key(config.seed), test.shape[0])
    for kind, hidden, layers in config.models:
        name = f"{kind}_{hidden}x{layers}"
        init = partial(build_model, kind, n_features, hidden, layers, window=config.window)
        t0 = time.perf_counter()
        fit = cross_validate(
            lambda k, init=init: init(key=k),
            loss,
            sample,
            validate,
            data,
            fold,
            config.train._replace(**TRAIN_OVERRIDES.get(kind, {})),
            keys,
            progress=name if progress else False,
        )
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = predict_held_out(fit.model, fold, data, test, runner, config.eval_batch)
        eval_s = time.perf_counter() - t0
        entry = {
            p: _as_floats(summarize_jit(jnp.asarray(pred[p]), data.hr, jnp.asarray(scored[p])))
            for p in ("standard", "generative")
        }
        stopped = fit.history["stopped"]
        entry["train_seconds"] = train_s
        entry["eval_seconds"] = eval_s
        entry["epochs_run"] = int(stopped.shape[0])
        entry["best_val_loss"] = np.min(fit.history["val_loss"], axis=0).tolist()
        entry["n_traces"] = fit.n_traces
        entry["n_parameters"] = int(
            sum(
                x.size
                for x in jax.tree_util.tree_leaves(eqx.filter(fit.model, eqx.is_inexact_array))
            )
            // test.shape[0]
        )
        results["models"][name] = entry
        predictions[name] = pred

    if config.personal is not None:
        from wearjax.eval.personal_study import run_personal_study

        personal = run_personal_study(cohort, config, config.personal, progress=progress)
        results["models"]["personal_ode"] = personal.entry
        predictions["personal_ode"] = personal.predictions

    train_weight = jnp.asarray((~test & ~val)[:, runner])[:, :, None] & data.mask[None]
    lin = linear_baseline(data, fold, train_weight, test, runner, config.ridge)
    hold = {
        p: np.asarray(
            jax.vmap(lambda h, m, p=p: hold_baseline(h, m, config.window, p))(data.hr, data.mask)
        )
        for p in ("standard", "generative")
    }
    for name, pred in (
        ("baseline_hold", hold),
        ("baseline_linear", {"standard": lin, "generative": lin}),
    ):
        results["models"][name] = {
            p: _as_floats(summarize_jit(jnp.asarray(pred[p]), data.hr, jnp.asarray(scored[p])))
            for p in ("standard", "generative")
        }
        predictions[name] = pred
    return results, predictions
