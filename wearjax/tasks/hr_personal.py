"""The personalised HR ODE (`models.hr_personalized`), a peer kind of the HR task: training,
calibration of new runners, both protocols.

Folds are those of `tasks.hr` (leave-k-runners-out; a tenth of the runners, at least one,
validate each fold), all
trained in one vmapped program (`cv.fit_folds`). Per fold:

1. training on the training runners' whole sessions: the model's shared networks and one
   embedding per training runner minimise an L2 loss on normalised HR, `((HR_hat - HR) /
   sd_HR)^2` over the seconds each protocol did not give (standard + generative), plus
   `embedding_reg * |e|^2`; sd_HR is the SD of the fold's training HR;
2. early stopping on the validation runners with the population embedding `e = 0`;
3. a held-out runner has no learned embedding. As in Nazaret et al. (2023), where the
   embedding summarises a runner's past workouts, each held-out session is predicted with an
   embedding calibrated on one *other* session of the same runner (the next one of that runner,
   cyclically): `calibration_steps` Adam steps on `e` alone (shared networks frozen), same loss,
   through the same training loop (`train.loop.fit_steps` with `trainable` the embedding).
   This model therefore sees one more session of a new runner than the other models, which see
   none: its table row is a different information setting, stated in the report.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int

from wearjax.cv import (
    FoldProgram,
    Split,
    compile_folds,
    compile_predict,
    fit_folds,
    gather_folds,
    gather_processes,
    padded_table,
    predict_held_out,
    this_process_folds,
)
from wearjax.data.types import Cohort
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import predictive_scores, summarize
from wearjax.eval.protocols import first_observed, given_mask, standard_initial
from wearjax.models.hr_base import HRPrediction
from wearjax.models.hr_personalized import PersonalHRODE
from wearjax.sharding import map_batch, max_over_processes
from wearjax.tasks.hr import splittable
from wearjax.tasks.hr_bands import calibrate_bands
from wearjax.train.loop import Recipe, Task, TrainConfig, fit_steps, validation_mean

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
    # "scan" or "diffrax": the same RK4 steps (models.ode; tested to agree). The scan is the
    # default here: 1.6x faster per gradient on this 2-state ODE (benchmarks/ode.py), 3.3x on
    # the held-out calibrations of `wearjax demo --quick` (benchmarks/demo_quick.py)
    engine: str = "scan"


def activity_inputs(
    x: Float[Array, "*batch time channel"], channels: tuple[str, ...], lengths=None
) -> Float[Array, "*batch time 2"]:
    """Speed (m/s) and grade (rise/run) per second from raw channels.

    Grade is the altitude change over a centred `GRADE_SPAN` s divided by the distance run in it
    (at least 1 m per second of the span), which averages out the barometer's noise; zero without
    an altitude channel. Needs a speed channel. `lengths` (`*batch`): each session's recorded
    seconds, so the span stops at its last one; without them at the array's end (a padded
    session's last seconds would read the padding's 0 m as a steep descent).
    """
    if "speed" not in channels:
        raise ValueError(f"the personalised HR ODE needs a 'speed' channel; got {channels}")
    speed = x[..., channels.index("speed")]
    if "altitude" not in channels:
        return jnp.stack([speed, jnp.zeros_like(speed)], axis=-1)
    alt = x[..., channels.index("altitude")]
    n = speed.shape[-1]
    half = GRADE_SPAN // 2
    t = jnp.broadcast_to(jnp.arange(n), speed.shape)
    last = (
        n - 1
        if lengths is None
        else jnp.broadcast_to((jnp.asarray(lengths) - 1)[..., None], speed.shape)
    )
    lo, hi = jnp.clip(t - half, 0, last), jnp.clip(t + half, 0, last)
    at = lambda a, i: jnp.take_along_axis(a, i, axis=-1)  # noqa: E731
    run = jnp.cumsum(speed, axis=-1)
    span = jnp.maximum(hi - lo, 1).astype(speed.dtype)  # >= 1 s: padding past `last` stays finite
    distance = jnp.maximum(at(run, hi) - at(run, lo), span)
    grade = (at(alt, hi) - at(alt, lo)) / distance
    return jnp.stack([speed, grade], axis=-1)


class PersonalData(NamedTuple):
    inputs: Float[Array, "session time 2"]
    hr: Float[Array, "session time"]
    mask: Bool[Array, "session time"]
    runner: Int[Array, " session"]
    calibration: Int[Array, " session"]  # the session each one's embedding is calibrated on


class PersonalFold(NamedTuple):
    train_p: Float[Array, " session"]  # sampling probability (0 outside training)
    val_session: Int[Array, " val"]
    val_weight: Float[Array, " val"]
    hr_sd: Float[Array, ""]


def _predict(model: PersonalHRODE, e, u, hr, mask) -> tuple[HRPrediction, HRPrediction]:
    return model.for_runner(e).predict_protocols(
        u, standard_initial(hr, mask, model.window), first_observed(hr, mask)[0]
    )


def session_loss(model: PersonalHRODE, e, u, hr, mask, hr_sd) -> Float[Array, ""]:
    """Normalised L2 of both protocols on one session (seconds they were not given)."""
    std, gen = _predict(model, e, u, hr, mask)
    total = jnp.zeros((), hr.dtype)
    for pred, protocol in ((std, "standard"), (gen, "generative")):
        scored = mask & ~given_mask(mask, model.window, protocol)
        err = jnp.where(scored, jnp.square((pred.hr - hr) / hr_sd), 0.0)
        total += jnp.sum(err) / jnp.maximum(jnp.sum(scored), 1).astype(hr.dtype)
    return total


def make_task(config: PersonalConfig) -> Task:
    """The `Task` of the personalised ODE: shared networks and training runners' embeddings."""

    def sample(data: PersonalData, fold: PersonalFold, key):
        i = jax.random.choice(key, data.hr.shape[0], (config.batch_size,), p=fold.train_p)
        return data.inputs[i], data.hr[i], data.mask[i], data.runner[i], fold.hr_sd

    def loss(model: PersonalHRODE, batch, key, epoch):
        del key, epoch  # deterministic model, no curriculum
        u, hr, mask, runner, hr_sd = batch
        e = model.embedding[runner]
        one = lambda shared, *a: session_loss(shared[0], *a, shared[1])  # noqa: E731
        per = map_batch(one, (splittable(model, u.shape[0]), hr_sd), e, u, hr, mask)
        return jnp.mean(per) + config.embedding_reg * jnp.mean(jnp.sum(e**2, axis=-1)), ()

    def validate(model: PersonalHRODE, data: PersonalData, fold: PersonalFold):
        zero = jnp.zeros(model.embedding.shape[-1], data.hr.dtype)
        i = fold.val_session
        per = jax.vmap(lambda *a: session_loss(model, zero, *a, fold.hr_sd))(
            data.inputs[i], data.hr[i], data.mask[i]
        )
        return validation_mean(per, fold.val_weight)

    return Task(sample, loss, validate)


def _session(data: PersonalData, i):
    return data.inputs[i], data.hr[i], data.mask[i]


class Calibration(eqx.Module):
    """A runner's embedding `e` to fit, beside the frozen population model."""

    model: PersonalHRODE
    e: Float[Array, " embed"]


def calibrate(
    model: PersonalHRODE, u, hr, mask, hr_sd, config: PersonalConfig
) -> Float[Array, " embed"]:
    """An embedding for a runner the model has not seen, fitted on one of their sessions with
    the shared networks frozen: `calibration_steps` Adam steps from e = 0, one epoch of the
    shared training loop (`train.loop.fit_steps`) with only `e` trainable."""
    start = Calibration(model, jnp.zeros(model.embedding.shape[-1], hr.dtype))
    trainable = eqx.tree_at(lambda c: c.e, jax.tree_util.tree_map(lambda _: False, start), True)

    def loss(c: Calibration, batch, key, epoch):
        reg = config.embedding_reg * jnp.sum(c.e**2)
        return session_loss(c.model, c.e, *batch) + reg, ()

    task = Task(lambda data, fold, key: data, loss, lambda c, data, fold: jnp.zeros(()))
    recipe = Recipe(
        optax.scale_by_adam(),
        config.calibration_lr,
        epochs=1,
        steps_per_epoch=config.calibration_steps,
    )
    key = jax.random.key(0)  # unused: the loss is deterministic
    return fit_steps(start, task, (u, hr, mask, hr_sd), None, recipe, key, trainable=trainable).e


def calibration_sessions(runner: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    """For each session, another session of the same runner (the next one, cyclically); -1
    for a runner with a single session, who gets the population embedding (e = 0): fitted on
    the session it is scored on, the embedding would read the HR it then predicts."""
    out = np.empty(len(sessions), np.int64)
    for j, s in enumerate(sessions):
        own = np.flatnonzero(runner == runner[s])
        out[j] = own[(np.searchsorted(own, s) + 1) % len(own)] if len(own) > 1 else -1
    return out


@functools.cache  # one function per config: `cv.predict_held_out` compiles it once
def _held_out_predict(config: PersonalConfig):
    """`predict(model, fold, data, i)` for `cv.predict_held_out`: calibrate an embedding on
    session i's calibration session, then both protocols of session i."""

    def predict(model, fold: PersonalFold, data: PersonalData, i):
        other = data.calibration[i]  # -1: the runner's only session, so e = 0
        e = calibrate(model, *_session(data, jnp.where(other < 0, i, other)), fold.hr_sd, config)
        e = jnp.where(other < 0, jnp.zeros_like(e), e)
        std, gen = _predict(model, e, *_session(data, i))
        return {"standard": std.hr, "generative": gen.hr, "embedding": e}

    return predict


class PersonalResult(NamedTuple):
    entry: dict  # metrics, as a `tasks.hr` results entry
    predictions: dict  # "standard", "generative": [S, T]
    model: PersonalHRODE  # stacked over this process's folds, `folds` (all in one process)
    embeddings: np.ndarray  # [S, E] calibrated embedding used for each session
    fold_of: np.ndarray  # [S] fold that held each session out
    train_runners: np.ndarray  # [K, R] runners each fold trained on (with learned embeddings)
    folds: np.ndarray | None = None  # the folds `model` holds (None: all K)


def _personal_fit(cohort: Cohort, split: Split, window: int, seed: int, config: PersonalConfig):
    """The positional arguments of `cv.fit_folds` for the personalised ODE on this process's
    folds of `split` (all of them unless jax.distributed runs several processes), and those
    folds. A chronological split is refused: each session's embedding is fitted on another
    session of its runner (`calibration_sessions`), which there could be a later one, and
    for the validation sessions that calibrate the first fold's band, a tested one."""
    if split.calibrate_from is not None:
        raise WearjaxDataError(
            "the personalised ODE fits each session's embedding on another session of its "
            "runner, which a chronological split could take from the future: cross-validate it "
            "on folds of runners (Split.by_subject)"
        )
    mask = cohort.mask & cohort.valid
    cal = calibration_sessions(np.asarray(cohort.runner), np.arange(cohort.hr.shape[0]))
    data = PersonalData(
        activity_inputs(cohort.x, cohort.channels, cohort.lengths), cohort.hr, mask, cohort.runner,
        jnp.asarray(cal, jnp.int32),
    )  # fmt: skip
    val_idx, val_ok = padded_table(split.validation)
    hr, m = np.asarray(cohort.hr), np.asarray(mask)
    hr_sd = np.asarray([hr[t][m[t]].std() for t in split.train], np.float32)
    fold = PersonalFold(
        jnp.asarray(split.sampling_weights()),
        jnp.asarray(val_idx),
        jnp.asarray(val_ok, jnp.float32),
        jnp.asarray(hr_sd),
    )
    keys = jax.random.split(jax.random.key(seed + 1), split.n_folds)

    def init(k):
        return PersonalHRODE(
            cohort.n_runners, config.embed, config.width, window=window,
            asymmetric=config.asymmetric, engine=config.engine, key=k,
        )  # fmt: skip

    fold, keys, local = this_process_folds(split, fold, keys)
    return (init, make_task(config), data, fold, config.train.recipe(), keys), local


def personal_program(cohort: Cohort, split: Split, window: int, seed: int,
                     config: PersonalConfig | None = None, mesh=None) -> FoldProgram:  # fmt: skip
    """`cv.compile_folds` of `run_personal`: its folds initialised, its epoch and its
    held-out prediction compiled."""
    config = PersonalConfig() if config is None else config
    args, local = _personal_fit(cohort, split, window, seed, config)
    program = compile_folds(*args, mesh=mesh)
    model = eqx.combine(program.state.best_params, program.static)
    predict = _held_out_predict(config)
    compile_predict(predict, model, args[3], args[2], split.take(local), batch=config.eval_batch)
    return program


def run_personal(
    cohort: Cohort,
    split: Split,
    window: int,
    seed: int,
    config: PersonalConfig | None = None,
    *,
    progress=True,
    program: FoldProgram | None = None,
    state_file=None,
    resume: bool = False,
) -> PersonalResult:
    """Cross-validate the personalised ODE on `split` (the HR task's folds) and evaluate both
    protocols on every held-out session (`program`: its `personal_program`, built ahead;
    `state_file` and `resume`: the folds' training state saved and resumed, `cv.fit_folds`)."""
    config = PersonalConfig() if config is None else config
    runner = np.asarray(cohort.runner)
    mask = cohort.mask & cohort.valid
    m = np.asarray(mask)
    args, local = _personal_fit(cohort, split, window, seed, config)
    data, fold = args[2], args[3]
    whole, split = split, split.take(local)
    t0 = time.perf_counter()
    fit = fit_folds(*args, progress="personal_ode" if progress else False, program=program,
                    state_file=state_file, resume=resume,
                    run={"study": "cv hr", "model": "personal_ode"})  # fmt: skip
    train_s = time.perf_counter() - t0
    params = eqx.filter(fit.model, eqx.is_inexact_array)
    t0 = time.perf_counter()
    if progress:
        print(
            f"personal_ode: calibrating an embedding per held-out session "
            f"({config.calibration_steps} steps each) and predicting it",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    out = predict_held_out(
        _held_out_predict(config), fit.model, fold, data, split, batch=config.eval_batch
    )
    if len(local) < whole.n_folds:  # every process's held-out sessions, assembled
        out, split = gather_processes(out), whole
    preds = {p: out[p] for p in ("standard", "generative")}
    preds = calibrate_bands(
        _held_out_predict(config), fit.model, fold, data, split, window, preds,
        batch=config.eval_batch,
    )  # fmt: skip
    eval_s = time.perf_counter() - t0
    entry = {}
    tested = m & np.asarray(split.test).any(axis=0)[:, None]  # sessions some fold predicts
    for protocol in ("standard", "generative"):
        scored = jnp.asarray(tested & ~np.asarray(given_mask(mask, window, protocol)))
        pred = jnp.asarray(preds[protocol])
        metrics = jax.jit(summarize)(pred, cohort.hr, scored)
        metrics.update(
            predictive_scores(pred, jnp.asarray(preds[f"{protocol}_var"]), cohort.hr, scored)
        )
        entry[protocol] = {k: float(v) for k, v in metrics.items()}
    entry.update(
        train_seconds=train_s,
        eval_seconds=eval_s,
        epochs_run=max_over_processes(fit.history["stopped"].shape[0]),  # each its own folds
        best_val_loss=gather_folds(np.min(fit.history["val_loss"], axis=0), local, split.n_folds),
        best_epoch=gather_folds(np.argmin(fit.history["val_loss"], axis=0), local, split.n_folds),
        n_traces=fit.n_traces,
        n_parameters=sum(x.size for x in jax.tree_util.tree_leaves(params)) // len(local),
        calibration="each held-out session: embedding fitted on another session of its "
        "runner; a runner's only session: the population embedding (e = 0)",
        population_embedding_sessions=int(
            (np.asarray(args[2].calibration)[np.asarray(split.test).any(axis=0)] < 0).sum()
        ),
        # a calibration whose every step was non-finite gives a NaN embedding (`fit_steps`),
        # so its session's predictions, and the metrics, read NaN: counted here
        calibrations_failed=int((~np.isfinite(np.asarray(out["embedding"]))).any(-1).sum()),
    )
    train_runners = np.zeros((split.n_folds, cohort.n_runners), bool)
    for k, row in enumerate(split.train):
        train_runners[k, runner[row]] = True
    folds = None if len(local) == split.n_folds else local
    return PersonalResult(
        entry, preds, fit.model, out["embedding"], split.owner, train_runners, folds
    )
