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
   of training for early stopping (`train.loop` through `cv.fit_folds`); the predictive band
   is calibrated on the other folds' test runners (`tasks.hr_bands`; on the validation
   runners only where no other fold gives residuals);
3. every session is then predicted whole by the model of the fold that held its runner out,
   under both protocols (`cv.predict_held_out`);
4. pooled metrics (`eval.metrics.summarize`) over the seconds each protocol did not give.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax import models
from wearjax.cv import (
    Split,
    padded_table,
)
from wearjax.data.types import Cohort
from wearjax.data.windows import gather_windows, window_index
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import gaussian_crps
from wearjax.eval.protocols import (
    first_observed,
    given_mask,
    standard_initial,
)
from wearjax.models.backbone import check_gru_impl
from wearjax.models.ode import ENGINES
from wearjax.sharding import map_batch, splits_batch
from wearjax.signal.features import (
    Normalizer,
    fit_normalizer,
    running_features,
    session_relative,
)
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
    # runners per fold held out of training for early stopping (and calibrating the band where
    # no other fold's test runners can, `tasks.hr_bands`); None: a tenth, at least one
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
    # how the ODE models solve their RK4 (`models.ode.solve`: "diffrax" or "scan", the same
    # numbers to 1e-6 per solve). Diffrax is the published figures' engine and the faster one
    # at scale (batch 64 x 3600 s); the scan traces and compiles in half the time, what counts
    # in short runs (the quick demo's ODE epoch programs: 7.9-8.3 against 15.4-16.0 s to build,
    # and each epoch 5-9% faster; `benchmarks/compile_demo.py --only engines`).
    ode_engine: str = "diffrax"
    # how the GRU backbones run (`models.backbone.GRU_IMPLS`). "autodiff" is the published
    # figures' rounding; "manual" (a hand-written reverse pass, the same maths) trains 1.5-1.8x
    # faster per step at batch 2, 1.1-1.2x at 1 and 16 (`benchmarks/gru_impl.py`), and moves
    # results by rounding.
    gru_impl: str = "autodiff"


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


def build_model(kind: str, n_features: int, hidden: int, n_layers: int, *, window: int, key,
                ode_engine: str | None = None, gru_impl: str | None = None):  # fmt: skip
    """An HR model of kind `kind` (a key of `HR_MODELS` or `HR_VARIANTS`); `ode_engine` sets an
    ODE model's engine (`HRStudyConfig.ode_engine`) and `gru_impl` how its GRU runs
    (`HRStudyConfig.gru_impl`); None: the model's default."""
    kind, extra = HR_VARIANTS.get(kind, (kind, {}))
    if kind not in HR_MODELS:
        known = sorted(HR_MODELS) + sorted(HR_VARIANTS)
        raise ValueError(f"unknown HR model {kind!r}: choose one of {known}")
    if ode_engine is not None and ode_engine not in ENGINES:
        raise ValueError(f"unknown ODE engine {ode_engine!r}: choose one of {list(ENGINES)}")
    if kind == "ode" and ode_engine is not None:
        extra = {**extra, "engine": ode_engine}
    if gru_impl is not None:
        check_gru_impl(gru_impl)
        extra = {**extra, "gru_impl": gru_impl}
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


def splittable(model, size: int):
    """`model` as `sharding.map_batch` can run it on a batch of `size` sessions: where the
    batch is split over a data axis, an ODE model on Diffrax moves to the scan engine, since
    Diffrax's loops cannot yet be traced inside `shard_map` (diffrax issue 765) and the two
    engines give the same numbers (`models.ode`). Any other model is returned as it is."""
    if splits_batch(size) and getattr(model, "engine", None) == "diffrax":
        return model.with_engine("scan")
    return model


def _segment_loss(model, x, hr, mask, keys, generative_weight: float, crps_weight: float = 0.0):
    """Loss of both protocols on a batch of segments: standard + weight * generative, where
    the generative rollout starts from the segment's first observed second."""
    w = model.window
    model = splittable(model, x.shape[0])

    def call(m, xi, hi, mi, ki):
        h0 = first_observed(hi, mi)[0]
        return m.predict_protocols(xi, standard_initial(hi, mi, w), h0, key=ki)

    std, gen = map_batch(call, model, x, hr, mask, keys)
    crps_weight = crps_weight if model.has_variance else 0.0  # without one, CRPS is the MAE
    given = given_mask(mask, w, "standard", first_given=False)  # the published loss's form
    loss = _protocol_loss(std, hr, mask, given, w, crps_weight)
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
        value = _segment_loss(model, x, hr, mask, None, *weights)  # no dropout
        return jnp.where(jnp.any(mask), value, jnp.nan)  # no validation HR: not a 0 loss

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
    split.check_trainable()
    train_sessions = split.train  # [K, S]

    width = segment_width(config, cohort.x.shape[1])
    lengths = np.asarray(cohort.lengths)
    if config.segment_windows is None:  # whole sessions, padding masked
        lengths = np.full_like(lengths, cohort.x.shape[1])
    table = window_index(lengths, width, stride=config.window)
    t_sess = np.asarray(table.session)
    p = train_sessions[:, t_sess].astype(np.float32)
    if empty := np.flatnonzero(p.sum(1) == 0).tolist():
        runners = np.asarray(cohort.runner)[train_sessions[empty[0]]]
        names = sorted({cohort.runner_names[int(r)] for r in runners})
        raise WearjaxDataError(
            f"fold(s) {empty} have no training segment of {width} s: their training "
            f"runner(s) {names} have no session that long; record longer sessions, hold out "
            "fewer, or shorten the segments (segment_windows)"
        )
    p /= p.sum(1, keepdims=True)

    vtable = window_index(lengths, width, stride=width)
    v_sess, v_start = np.asarray(vtable.session), np.asarray(vtable.start)
    val_idx, val_ok = padded_table(split.validation[:, v_sess])
    if short := np.flatnonzero(~np.asarray(val_ok, bool).any(axis=1)).tolist():
        runners = np.asarray(cohort.runner)[split.validation[short[0]]]
        held = sorted({cohort.runner_names[int(r)] for r in runners})
        raise WearjaxDataError(
            f"fold(s) {short} have no validation segment of {width} s: their validation "
            f"runner(s) {held} have no session that long, so early stopping would read "
            "nothing; record longer sessions, or shorten the segments (segment_windows)"
        )

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
