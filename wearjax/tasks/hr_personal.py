"""The personalised HR ODE (`models.hr_personalized`) in the HR study: training, calibration of
new runners, both protocols, and the response speed of the fitted runners.

Folds are those of `eval.hr_study` (leave-k-runners-out, one validation runner per fold), all
trained in one vmapped program (`train.fit.cross_validate`). Per fold:

1. training on the training runners' whole sessions: the model's shared networks and one
   embedding per training runner minimise an L2 loss on normalised HR, `((HR_hat - HR) /
   sd_HR)^2` over the seconds each protocol did not give (standard + generative), plus
   `embedding_reg * |e|^2`; sd_HR is the SD of the fold's training HR;
2. early stopping on the validation runner with the population embedding `e = 0`;
3. a held-out runner has no learned embedding. As in Nazaret et al. (2023), where the
   embedding summarises a runner's past workouts, each held-out session is predicted with an
   embedding calibrated on one *other* session of the same runner (the next one of that runner,
   cyclically): `calibration_steps` Adam steps on `e` alone (shared networks frozen), same loss.
   This model therefore sees one more session of a new runner than the other models, which see
   none: its table row is a different information setting, stated in the report.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int

from wearjax.data.types import Cohort
from wearjax.eval.hr_study import HRStudyConfig, held_out_table, prepare
from wearjax.eval.metrics import summarize
from wearjax.eval.protocols import first_observed, given_mask, standard_initial
from wearjax.models.hr_kalman import HRPrediction
from wearjax.models.hr_personalized import PersonalHRODE
from wearjax.train.fit import TrainConfig, cross_validate

GRADE_SPAN = 30  # s: grade is the altitude change over this centred span / distance covered


class PersonalConfig(NamedTuple):
    embed: int = 8
    width: int = 32
    embedding_reg: float = 1e-2
    batch_size: int = 4
    train: TrainConfig = TrainConfig(
        learning_rate=1e-2,
        epochs=30,
        steps_per_epoch=20,
        plateau_factor=0.2,
        plateau_cooldown=3,
        min_learning_rate=1e-6,
    )
    calibration_steps: int = 150
    calibration_lr: float = 0.05
    eval_batch: int = 8
    asymmetric: bool = True  # see models.hr_personalized: False is the published form
    engine: str = "diffrax"  # or "scan": same numbers (models.ode)


def activity_inputs(
    x: Float[Array, "*batch time channel"], channels: tuple[str, ...]
) -> Float[Array, "*batch time 2"]:
    """Speed (m/s) and grade (rise/run) per second from raw channels.

    Grade is the altitude change over a centred `GRADE_SPAN` s divided by the distance run in it
    (at least 1 m per second of the span), which averages out the barometer's noise; zero without
    an altitude channel. Needs a speed channel.
    """
    if "speed" not in channels:
        raise ValueError(f"the personalised HR ODE needs a 'speed' channel; got {channels}")
    speed = x[..., channels.index("speed")]
    if "altitude" not in channels:
        return jnp.stack([speed, jnp.zeros_like(speed)], axis=-1)
    alt = x[..., channels.index("altitude")]
    n = speed.shape[-1]
    half = GRADE_SPAN // 2
    t = jnp.arange(n)
    lo, hi = jnp.clip(t - half, 0, n - 1), jnp.clip(t + half, 0, n - 1)
    run = jnp.cumsum(speed, axis=-1)
    span = jnp.broadcast_to((hi - lo).astype(speed.dtype), speed.shape)
    distance = jnp.maximum(run[..., hi] - run[..., lo], span)
    grade = (alt[..., hi] - alt[..., lo]) / distance
    return jnp.stack([speed, grade], axis=-1)


class PersonalData(NamedTuple):
    inputs: Float[Array, "session time 2"]
    hr: Float[Array, "session time"]
    mask: Bool[Array, "session time"]
    runner: Int[Array, " session"]


class PersonalFold(NamedTuple):
    train_p: Float[Array, " session"]  # sampling probability (0 outside training)
    val_session: Int[Array, " val"]
    val_weight: Float[Array, " val"]
    hr_sd: Float[Array, ""]


def _predict(model: PersonalHRODE, e, u, hr, mask) -> tuple[HRPrediction, HRPrediction]:
    std = model.standard(e, u, standard_initial(hr, mask, model.window))
    gen = model.rollout(e, u, first_observed(hr, mask)[0])
    return std, gen


def session_loss(model: PersonalHRODE, e, u, hr, mask, hr_sd) -> Float[Array, ""]:
    """Normalised L2 of both protocols on one session (seconds they were not given)."""
    std, gen = _predict(model, e, u, hr, mask)
    total = jnp.zeros((), hr.dtype)
    for pred, protocol in ((std, "standard"), (gen, "generative")):
        scored = mask & ~given_mask(mask, model.window, protocol)
        err = jnp.where(scored, jnp.square((pred.hr - hr) / hr_sd), 0.0)
        total += jnp.sum(err) / jnp.maximum(jnp.sum(scored), 1).astype(hr.dtype)
    return total


def make_task(config: PersonalConfig):
    """The (sample, loss, validate) triple of the personalised ODE for `train.fit`."""

    def sample(data: PersonalData, fold: PersonalFold, key):
        i = jax.random.choice(key, data.hr.shape[0], (config.batch_size,), p=fold.train_p)
        return data.inputs[i], data.hr[i], data.mask[i], data.runner[i], fold.hr_sd

    def loss(model: PersonalHRODE, batch, key):
        del key  # deterministic model
        u, hr, mask, runner, hr_sd = batch
        e = model.embedding[runner]
        per = jax.vmap(lambda *a: session_loss(model, *a, hr_sd))(e, u, hr, mask)
        return jnp.mean(per) + config.embedding_reg * jnp.mean(jnp.sum(e**2, axis=-1))

    def validate(model: PersonalHRODE, data: PersonalData, fold: PersonalFold):
        zero = jnp.zeros(model.embedding.shape[-1], data.hr.dtype)
        i = fold.val_session
        per = jax.vmap(lambda *a: session_loss(model, zero, *a, fold.hr_sd))(
            data.inputs[i], data.hr[i], data.mask[i]
        )
        return jnp.sum(per * fold.val_weight) / jnp.maximum(jnp.sum(fold.val_weight), 1.0)

    return sample, loss, validate


def _session(data: PersonalData, i):
    return data.inputs[i], data.hr[i], data.mask[i]


def calibrate(
    model: PersonalHRODE, u, hr, mask, hr_sd, config: PersonalConfig
) -> Float[Array, " embed"]:
    """An embedding for a runner the model has not seen, fitted on one of their sessions with
    the shared networks frozen: `calibration_steps` Adam steps from e = 0 (one `lax.scan`)."""
    opt = optax.adam(config.calibration_lr)
    e0 = jnp.zeros(model.embedding.shape[-1], hr.dtype)

    def objective(e):
        reg = config.embedding_reg * jnp.sum(e**2)
        return session_loss(model, e, u, hr, mask, hr_sd) + reg

    def step(carry, _):
        e, state = carry
        g = jax.grad(objective)(e)
        with jax.numpy_dtype_promotion("standard"):  # optax's int step count
            updates, state = opt.update(g, state, e)
        return (e + updates, state), None

    with jax.numpy_dtype_promotion("standard"):
        state0 = opt.init(e0)
    (e, _), _ = jax.lax.scan(step, (e0, state0), None, length=config.calibration_steps)
    return e


def calibration_sessions(runner: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    """For each session, another session of the same runner (the next one, cyclically); a
    runner with a single session is calibrated on it."""
    out = np.empty(len(sessions), np.int64)
    for j, s in enumerate(sessions):
        own = np.flatnonzero(runner == runner[s])
        out[j] = own[(np.searchsorted(own, s) + 1) % len(own)]
    return out


@eqx.filter_jit
def _held_out(model, data: PersonalData, fold: PersonalFold, idx, cal, config: PersonalConfig):
    """Calibrate on `cal`, predict `idx` (both `[K, M]`), every fold: `[K, M, T]` arrays and the
    embeddings `[K, M, E]`."""

    def per_fold(model, fold, idx, cal):
        def per_session(pair):
            i, c = pair
            e = calibrate(model, *_session(data, c), fold.hr_sd, config)
            std, gen = _predict(model, e, *_session(data, i))
            return std.hr, gen.hr, e

        return jax.lax.map(per_session, (idx, cal), batch_size=config.eval_batch)

    return eqx.filter_vmap(per_fold)(model, fold, idx, cal)


class PersonalResult(NamedTuple):
    entry: dict  # metrics, as an `hr_study` results entry
    predictions: dict  # "standard", "generative": [S, T]
    model: PersonalHRODE  # stacked over folds
    embeddings: np.ndarray  # [S, E] calibrated embedding used for each session
    fold_of: np.ndarray  # [S] fold that held each session out
    train_runners: np.ndarray  # [K, R] runners each fold trained on (with learned embeddings)


def run_personal_study(
    cohort: Cohort,
    study: HRStudyConfig,
    config: PersonalConfig | None = None,
    *,
    progress=True,
) -> PersonalResult:
    """Cross-validate the personalised ODE on the folds of `hr_study` (same seed, same
    held-out runners) and evaluate both protocols on every session."""
    config = PersonalConfig() if config is None else config
    hr_data, _, test, val, _ = prepare(cohort, study)
    runner = np.asarray(cohort.runner)
    mask = hr_data.mask
    data = PersonalData(activity_inputs(cohort.x, cohort.channels), cohort.hr, mask, cohort.runner)
    train = (~test & ~val)[:, runner]  # [K, S]
    p = train.astype(np.float32)
    p /= p.sum(1, keepdims=True)
    val_idx, val_ok = held_out_table(val, runner)
    hr = np.asarray(cohort.hr)
    m = np.asarray(mask)
    hr_sd = np.asarray([hr[t][m[t]].std() for t in train], np.float32)
    fold = PersonalFold(
        jnp.asarray(p), jnp.asarray(val_idx), jnp.asarray(val_ok, jnp.float32), jnp.asarray(hr_sd)
    )
    sample, loss, validate = make_task(config)
    keys = jax.random.split(jax.random.key(study.seed + 1), len(test))
    t0 = time.perf_counter()
    fit = cross_validate(
        lambda k: PersonalHRODE(
            cohort.n_runners,
            config.embed,
            config.width,
            window=study.window,
            asymmetric=config.asymmetric,
            engine=config.engine,
            key=k,
        ),
        loss,
        sample,
        validate,
        data,
        fold,
        config.train,
        keys,
        progress="personal_ode" if progress else False,
    )
    train_s = time.perf_counter() - t0
    params = eqx.filter(fit.model, eqx.is_inexact_array)
    idx, ok = held_out_table(test, runner)
    cal = np.stack([calibration_sessions(runner, row) for row in idx])
    t0 = time.perf_counter()
    std, gen, emb = _held_out(fit.model, data, fold, jnp.asarray(idx), jnp.asarray(cal), config)
    eval_s = time.perf_counter() - t0
    s, t = hr.shape
    preds = {}
    for name, arr in (("standard", std), ("generative", gen)):
        full = np.zeros((s, t), np.float32)
        full[idx[ok]] = np.asarray(arr)[ok]
        preds[name] = full
    embeddings = np.zeros((s, emb.shape[-1]), np.float32)
    embeddings[idx[ok]] = np.asarray(emb)[ok]
    fold_of = np.argmax(test[:, runner], axis=0)
    entry = {}
    for protocol in ("standard", "generative"):
        scored = m & ~np.asarray(given_mask(mask, study.window, protocol))
        metrics = jax.jit(summarize)(jnp.asarray(preds[protocol]), cohort.hr, jnp.asarray(scored))
        entry[protocol] = {k: float(v) for k, v in metrics.items()}
    entry.update(
        train_seconds=train_s,
        eval_seconds=eval_s,
        epochs_run=int(fit.history["stopped"].shape[0]),
        best_val_loss=np.min(fit.history["val_loss"], axis=0).tolist(),
        best_epoch=np.argmin(fit.history["val_loss"], axis=0).tolist(),
        n_traces=fit.n_traces,
        n_parameters=sum(x.size for x in jax.tree_util.tree_leaves(params)) // len(test),
        calibration="each held-out session: embedding fitted on another session of its runner",
    )
    return PersonalResult(entry, preds, fit.model, embeddings, fold_of, ~test & ~val)


def half_time(hr: Float[np.ndarray, " time"], start: int, end: int) -> float:
    """Seconds after `start` until HR has covered half of its change from `hr[start - 1]` to
    `hr[end - 1]` (linear between seconds); NaN if it never does."""
    base, final = float(hr[start - 1]), float(hr[end - 1])
    target = base + 0.5 * (final - base)
    progress = (hr[start:end] - target) * np.sign(final - base)
    crossed = np.flatnonzero(progress >= 0)
    if final == base or not len(crossed):
        return float("nan")
    k = int(crossed[0])
    if k == 0:
        return 0.0
    before, after = progress[k - 1], progress[k]
    return float(k - 1 + (-before) / (after - before))


def step_halftimes(
    hr: Float[np.ndarray, " time"],
    hr_flat: Float[np.ndarray, " time"],
    step_up: int,
    step_down: int,
) -> tuple[float, float]:
    """Rise and recovery half-times (s) of the response to a step in speed up at `step_up` and
    down at `step_down`: `half_time` of `hr - hr_flat`, where `hr_flat` is the same run without
    the step, so a drift both runs share is not counted as response."""
    response = np.asarray(hr, np.float64) - np.asarray(hr_flat, np.float64)
    return (
        half_time(response, step_up, step_down),
        half_time(response, step_down, len(response)),
    )


def _step_rows(pairs, physiology, step_up: int, step_down: int, n: int) -> list[dict]:
    """Half-time rows for `(model, embedding, runner, extra)` pairs: simulated and predicted."""
    from wearjax.data.synthetic import hr_step_response

    rows = []
    rollout = eqx.filter_jit(lambda m, e, u, h0: m.rollout(e, u, h0).hr)
    steps = dict(step_up=step_up, step_down=step_down, n_time=n)
    for model, embedding, r, extra in pairs:
        speed, hr_true = hr_step_response(physiology, r, **steps)
        flat, hr_true_flat = hr_step_response(physiology, r, speed_high=speed[0], **steps)
        pred, pred_flat = (
            np.asarray(rollout(model, embedding, jnp.stack([v, jnp.zeros_like(v)], -1), hr_true[0]))
            for v in (speed, flat)
        )
        rise_true, recovery_true = step_halftimes(hr_true, hr_true_flat, step_up, step_down)
        rise_pred, recovery_pred = step_halftimes(pred, pred_flat, step_up, step_down)
        rows.append(
            {
                **extra,
                "runner": r,
                "rise_true_s": rise_true,
                "rise_pred_s": rise_pred,
                "recovery_true_s": recovery_true,
                "recovery_pred_s": recovery_pred,
                "rise_pred_level_s": half_time(pred, step_up, step_down),
                "recovery_pred_level_s": half_time(pred, step_down, n),
            }
        )
    return rows


def response_halftimes(
    result: PersonalResult, physiology, runner: np.ndarray, *, step_up=300, step_down=900, n=1800
) -> list[dict]:
    """Rise and recovery half-times of HR after a step in speed on the flat, simulated (truth)
    and predicted by the fitted model of each held-out session's fold with the session's
    calibrated embedding (generative, from the simulator's first second), per held-out session.

    A half-time is taken on the step response: HR minus the HR of the same run without the step
    (the low speed throughout). For the simulator, whose HR at the low speed is constant, this is
    HR itself; a model whose level drifts (the personalised ODE's fatigue raises its demand over
    the run) would otherwise have the drift counted as response and its recovery shortened. The
    half-times of HR itself are kept as `*_level_s`.

    `physiology` is the simulator's `RunnerPhysiology` of the cohort (`simulate_cohort(...,
    return_physiology=True)`); steps as in `data.synthetic.hr_step_response`.
    """
    from wearjax.train.fit import fold_model

    scored = np.flatnonzero(result.predictions["standard"].any(axis=1))
    pairs = (
        (
            fold_model(result.model, int(result.fold_of[s])),
            jnp.asarray(result.embeddings[s]),
            int(runner[s]),
            {"session": int(s)},
        )
        for s in scored
    )
    return _step_rows(pairs, physiology, step_up, step_down, n)


def training_halftimes(
    result: PersonalResult, physiology, *, step_up=300, step_down=900, n=1800
) -> list[dict]:
    """The rows of `response_halftimes` for every fold's training runners, each with the
    embedding learned in training: how well the fit itself recovers response speed, before
    any calibration of a new runner."""
    from wearjax.train.fit import fold_model

    pairs = []
    for k, row in enumerate(result.train_runners):
        model = fold_model(result.model, k)
        pairs += [(model, model.embedding[r], int(r), {"fold": k}) for r in np.flatnonzero(row)]
    return _step_rows(pairs, physiology, step_up, step_down, n)
