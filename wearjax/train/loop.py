"""The one training loop: a `Task` (what to learn) trained by a `Recipe` (how).

A task is three pure functions, and optionally a fourth:

    sample(data, fold, key) -> batch                 draw one training batch
    loss(model, batch, key, epoch) -> (value, aux)   training loss (key for dropout; epoch for
                                                     curricula), aux a pytree of scalars
    validate(model, data, fold) -> scalar            early-stopping criterion
    shape_update(updates, aux) -> updates            the optimiser's direction, reshaped per
                                                     step (e.g. scaled per module) or None

`data` is shared by all folds (cohort arrays, passed as an argument so it never becomes a
compile-time constant); `fold` is a pytree of per-fold arrays (training weights, normalisers),
stacked on a leading axis for cross-validation (`wearjax.cv`). One epoch is a `lax.scan` over
optimiser steps followed by validation and the per-epoch bookkeeping, all in one jitted
function traced once; the Python loop runs over epochs only. The recipe's schedules (learning
rate and clip norm as optax schedules of the epoch, reduce-on-plateau as
`optax.contrib.reduce_on_plateau` state stepped once per epoch with the validation loss) and
early stopping are pure state, so vmapped folds stop independently: a stopped fold is frozen
by a mask while the others go on.

`trainable` (a filter spec as in `eqx.partition`) selects what trains: the whole model, a
linear probe, or a runner's embedding with the networks frozen (`fit_steps` runs the same
epoch inside another traced function).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from wearjax.errors import TrainingInterrupted, WearjaxDataError
from wearjax.train.interrupt import defer_ctrl_c

# `train.loop` names the recipe, its settings and `plateau` as before they moved out
from wearjax.train.recipe import Recipe
from wearjax.train.recipe import TrainConfig as TrainConfig
from wearjax.train.schedules import plateau as plateau

logger = logging.getLogger(__name__)


class Task(NamedTuple):
    """What to learn (module docstring; `validate` lower is better)."""

    sample: Callable
    loss: Callable
    validate: Callable
    shape_update: Callable | None = None


def validation_mean(values: Array, weights: Array) -> Float[Array, ""]:
    """The `weights`-weighted mean of per-item validation losses (items of weight 0, padding,
    may hold NaN); NaN when every weight is 0, not a 0 loss early stopping would keep (a fold
    with no finite validation loss is refused after training)."""
    total = jnp.sum(weights)
    value = jnp.sum(jnp.where(weights > 0, values * weights, 0.0)) / jnp.where(total > 0, total, 1)
    return jnp.where(total > 0, value, jnp.nan)


class EarlyStopping(NamedTuple):
    best_val: Float[Array, ""]
    bad_epochs: Int[Array, ""]
    stopped: Bool[Array, ""]


class TrainState(NamedTuple):
    """Everything training carries from one epoch to the next (per fold)."""

    params: Any
    best_params: Any
    opt_state: Any
    plateau_state: Any
    stop: EarlyStopping
    epoch: Int[Array, ""]
    key: PRNGKeyArray


class FitResult(NamedTuple):
    """The best model by validation loss (stacked over folds for cross-validation), the
    per-epoch history `{train_loss, val_loss, lr_scale, stopped, aux...}` (`[epochs(, K)]`)
    and how often the epoch was traced."""

    model: Any
    history: dict[str, np.ndarray]
    n_traces: int


def _strict_off():
    # optax's int step counts mix with floats, which strict dtype promotion would reject
    return jax.numpy_dtype_promotion("standard")


def init_state(params, recipe: Recipe, key: PRNGKeyArray) -> TrainState:
    """Initial training state of one fold for trainable `params`."""
    f = jnp.zeros((), jnp.result_type(float))
    with _strict_off():
        opt_state = recipe.optimizer.init(params)
        plateau_state = None if recipe.plateau is None else recipe.plateau.init(params)
    stop = EarlyStopping(f + jnp.inf, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    return TrainState(params, params, opt_state, plateau_state, stop, jnp.zeros((), jnp.int32), key)


def plateau_scale(state: TrainState) -> Float[Array, "*fold"]:
    """The reduce-on-plateau factor on the learning rate (1 without a plateau schedule); per
    fold for a stacked state."""
    if state.plateau_state is None:
        return jnp.ones((), jnp.result_type(float))
    return state.plateau_state.scale


def clip_by_global_norm(tree, max_norm: Float[Array, ""]):
    """`tree * min(1, max_norm / ||tree||)` with a traced `max_norm`."""
    norm = optax.tree.norm(tree)
    factor = jnp.where(norm > max_norm, max_norm / jnp.maximum(norm, 1e-30), 1.0)
    return jax.tree_util.tree_map(lambda g: g * factor.astype(g.dtype), tree)


def _schedule(value, epoch):
    return value(epoch) if callable(value) else value


def make_epoch(
    task: Task, recipe: Recipe, static, counter: list | None = None, *, shard_batch=None
):
    """`epoch(state, fold, data) -> (state, (train_loss, val_loss, aux))`: one pure epoch.

    `static` is the frozen part of the model (`eqx.partition`); `counter` (a list) gets one
    entry per trace; `shard_batch` (optional) places each sampled batch, e.g. split over a
    mesh's "data" axis (`cv.fit_folds`)."""
    if recipe.early_stopping_patience < 1:  # 0 would stop after the first epoch, improved or not
        raise ValueError(
            f"early_stopping_patience must be at least 1, got {recipe.early_stopping_patience}"
        )

    def epoch(state: TrainState, fold, data):
        if counter is not None:
            counter.append(1)  # runs only while tracing: counts compiles
        e = state.epoch
        rate = _schedule(recipe.learning_rate, e)
        scale = -rate * plateau_scale(state)

        def step(carry, _):
            params, opt_state, key = carry
            key, k_batch, k_loss = jax.random.split(key, 3)
            batch = task.sample(data, fold, k_batch)
            if shard_batch is not None:
                batch = shard_batch(batch)
            (value, aux), grads = jax.value_and_grad(
                lambda p: task.loss(eqx.combine(p, static), batch, k_loss, e), has_aux=True
            )(params)
            if recipe.clip_norm is not None:
                grads = clip_by_global_norm(grads, recipe.clip_norm(e))
            with _strict_off():
                updates, opt_state = recipe.optimizer.update(grads, opt_state, params)
            if task.shape_update is not None:
                updates = task.shape_update(updates, aux)
            params = jax.tree_util.tree_map(lambda p, u: p + scale * u, params, updates)
            return (params, opt_state, key), (value, aux)

        (params, opt_state, key), (losses, aux) = jax.lax.scan(
            step, (state.params, state.opt_state, state.key), None, length=recipe.steps_per_epoch
        )
        val = task.validate(eqx.combine(params, static), data, fold)
        val = jnp.where(jnp.isfinite(val), val, jnp.inf)
        # a non-finite training loss or weight ends the fold at once: its best model so far is
        # kept (never one with NaN weights, which a validation loss that reads only some of
        # them could otherwise pick), and its history shows the non-finite training loss
        finite = jnp.isfinite(jnp.mean(losses)) & _all_finite(params)
        val, losses = jnp.where(finite, val, jnp.inf), jnp.where(finite, losses, jnp.nan)
        plateau_state = state.plateau_state
        if recipe.plateau is not None:
            with _strict_off():
                _, plateau_state = recipe.plateau.update(params, plateau_state, params, value=val)
        improved = val < state.stop.best_val
        bad = jnp.where(improved, 0, state.stop.bad_epochs + 1)
        stop = EarlyStopping(
            jnp.where(improved, val, state.stop.best_val),
            bad,
            state.stop.stopped | (bad >= recipe.early_stopping_patience) | ~finite,
        )
        best = jax.tree_util.tree_map(
            lambda new, old: jnp.where(improved, new, old), params, state.best_params
        )
        new = TrainState(params, best, opt_state, plateau_state, stop, e + 1, key)
        # a fold that had already stopped keeps its state: only its key moves on; its
        # history repeats its best validation loss (the kept model's), not the one of the
        # epoch it ran and threw away, so the history's minimum and argmin stay the kept ones
        frozen = state._replace(key=key)
        out = jax.tree_util.tree_map(lambda a, b: jnp.where(state.stop.stopped, a, b), frozen, new)
        val = jnp.where(state.stop.stopped, state.stop.best_val, val)
        aux = jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), aux)
        return out, (jnp.mean(losses), val, aux)

    return epoch


def _all_finite(tree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def run_epochs(
    epoch_fn,
    state: TrainState,
    fold,
    data,
    epochs: int,
    progress: bool | str = False,
    *,
    history: dict | None = None,
    on_epoch: Callable[[TrainState, dict], None] | None = None,
    every: int = 1,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Call a jitted epoch until `epochs` have run (counting those in a resumed `history`) or
    every fold has stopped; returns the final state and the history. `on_epoch(state,
    history)` runs every `every` epochs, at the end, and on Ctrl-C (with the state of the last
    finished epoch) before the interrupt goes on."""
    names = ("train_loss", "val_loss", "lr_scale", "stopped")
    history = {k: list(v) for k, v in (history or {k: [] for k in names}).items()}
    done = len(history["train_loss"])
    finished = done > 0 and bool(np.all(history["stopped"][-1]))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        desc = progress if isinstance(progress, str) else "fit"
        # the first call compiles the epoch (seconds to a minute on a CPU): say so on the bar
        bar = tqdm(total=epochs, initial=done, desc=f"{desc} (compiling)")
    # `saved` is the last consistent (state, history) pair, replaced by one assignment, so a
    # Ctrl-C between two statements never pairs an epoch's state with another's history
    saved, warned = (state, history), set()
    restore = defer_ctrl_c() if on_epoch is not None else None
    try:
        for i in range(done, epochs if not finished else done):
            new, (train_loss, val, aux) = epoch_fn(saved[0], fold, data)
            row = {
                "train_loss": np.asarray(train_loss),
                "val_loss": np.asarray(val),
                "lr_scale": np.asarray(plateau_scale(new)),
                **{name: np.asarray(v) for name, v in _flat_aux(aux).items()},
                "stopped": np.asarray(new.stop.stopped),
            }
            running = ~np.asarray(saved[0].stop.stopped)
            diverged = ~np.isfinite(row["train_loss"]) & running
            if diverged.any():  # NaN weights show as a NaN training loss (since 2026-12-07)
                logger.warning(
                    "fold(s) %s: the training loss or weights are not finite at epoch %d; their "
                    "training stops there, keeping the best model before it (lower the learning "
                    "rate, or check the inputs for extreme values)",
                    np.flatnonzero(np.atleast_1d(diverged)).tolist(), i + 1,
                )  # fmt: skip
            blind = set(np.flatnonzero(np.atleast_1d(~np.isfinite(row["val_loss"]) & running
                                                     & ~diverged)).tolist()) - warned  # fmt: skip
            if blind:  # once per fold: counted as an epoch without improvement
                warned |= blind
                logger.warning("fold(s) %s: the validation loss is not finite at epoch %d, an "
                               "epoch without improvement (check the validation data)",
                               sorted(blind), i + 1)  # fmt: skip
            saved = (new, {k: [*saved[1].get(k, []), v] for k, v in row.items()})
            if bar is not None:
                if i == done:
                    bar.set_description(desc)
                bar.update(1)
                bar.set_postfix(train=f"{np.mean(train_loss):.3f}", val=f"{np.mean(val):.3f}")
            last = bool(np.all(row["stopped"])) or i + 1 == epochs
            if on_epoch is not None and ((i + 1) % every == 0 or last):
                on_epoch(*saved)
            if restore is not None and restore.requested:  # before an early stop's break too
                raise KeyboardInterrupt
            if np.all(row["stopped"]):
                break
    except KeyboardInterrupt:
        if on_epoch is None:
            raise
        on_epoch(*saved)
        n = len(saved[1]["train_loss"])
        raise TrainingInterrupted(
            f"interrupted after epoch {n}; the training state is saved"
        ) from None
    finally:
        if restore is not None:
            restore()
        if bar is not None:
            bar.close()
    state, history = saved
    never = np.flatnonzero(np.isinf(np.atleast_1d(np.asarray(state.stop.best_val))))
    if len(never):  # its kept model would be the untrained one: refuse rather than return it
        raise WearjaxDataError(
            f"training gave no finite validation loss in fold(s) {never.tolist()} (NaN or inf "
            "from the first epoch, a non-finite training loss, or no validation data): check "
            "that every fold has validation sessions with targets, and the inputs and targets "
            "for NaN or inf values, or lower the learning rate"
        )
    return state, {k: np.stack(v) for k, v in history.items()}


def _flat_aux(aux) -> dict:
    if not jax.tree_util.tree_leaves(aux):  # None, (), {}: nothing to record
        return {}
    if isinstance(aux, dict):
        return {f"aux_{k}": v for k, v in aux.items()}
    return {"aux": aux}


def fit(
    model,
    task: Task,
    data,
    fold,
    recipe: Recipe,
    key: PRNGKeyArray,
    *,
    trainable=eqx.is_inexact_array,
    progress: bool | str = False,
    state_file: str | Path | None = None,
    resume: bool = False,
    every: int = 1,
    run: dict | None = None,
) -> FitResult:
    """Train the `trainable` part of `model` on one fold; returns the model with the best
    validation loss (the frozen part unchanged).

    With a `state_file`, the whole training state (parameters, best parameters, optimiser and
    schedule state, early stopping, epoch, key) and the history are written there atomically
    every `every` epochs, at the end and on Ctrl-C; `resume` continues from it and reaches
    the same parameters as an uninterrupted run, bit for bit. The file records `run` (the
    caller's settings) and a fingerprint of the data and the initial model; resuming with
    other ones is refused naming the field."""
    params, static = eqx.partition(model, trainable)
    counter: list = []
    epoch = jax.jit(make_epoch(task, recipe, static, counter))
    state = init_state(params, recipe, key)
    state, history = train_epochs(
        epoch, state, fold, data, recipe, progress,
        state_file=state_file, resume=resume, every=every, run=run, fingerprint_of=params,
    )  # fmt: skip
    return FitResult(eqx.combine(state.best_params, static), history, len(counter))


def train_epochs(
    epoch_fn, state: TrainState, fold, data, recipe: Recipe, progress: bool | str = False, *,
    state_file=None, resume: bool = False, every: int = 1, run: dict | None = None,
    fingerprint_of=None,
):  # fmt: skip
    """`run_epochs` for `recipe.epochs` with the training state saved to (and resumed from)
    `state_file` (see `fit`; its header: `checkpoints.training_header`); `fingerprint_of`
    (the initial parameters) joins the data in the fingerprint."""
    from wearjax.train import checkpoints as ckpt

    history, on_epoch, epochs = None, None, recipe.epochs
    if state_file is not None:
        header = ckpt.training_header(run, recipe, ckpt.fingerprint(data, fold, fingerprint_of))
        if resume:
            state, history = ckpt.load_training_state(state_file, state, header, epochs)
        on_epoch = lambda s, h: ckpt.save_training_state(state_file, s, h, header)  # noqa: E731
    try:
        return run_epochs(
            epoch_fn, state, fold, data, epochs, progress,
            history=history, on_epoch=on_epoch, every=every,
        )  # fmt: skip
    except TrainingInterrupted as err:
        raise TrainingInterrupted(f"{err} in {state_file}") from None


def fit_steps(
    model, task: Task, data, fold, recipe: Recipe, key: PRNGKeyArray, *, trainable
) -> Any:
    """`fit` as a pure function for use inside another traced function (e.g. calibrating an
    embedding per held-out session inside a vmapped prediction): `recipe.epochs` epochs in a
    `lax.scan`, no early stopping across calls; returns the best model. Where no epoch gave a
    finite validation loss its trainable leaves are NaN, not the untrained start: the caller's
    metrics show the failure (`fit` raises there, which a traced function cannot)."""
    params, static = eqx.partition(model, trainable)
    epoch = make_epoch(task, recipe, static)
    run = lambda s, _: (epoch(s, fold, data)[0], None)  # noqa: E731
    state, _ = jax.lax.scan(run, init_state(params, recipe, key), None, length=recipe.epochs)
    failed = jnp.isinf(state.stop.best_val)
    return eqx.combine(jax.tree.map(lambda p: jnp.where(failed, jnp.nan, p), state.best_params),
                       static)  # fmt: skip


def without_aux(loss: Callable) -> Callable:
    """Adapt `loss(model, batch, key) -> value` to the `Task` signature (no epoch, no aux)."""
    return lambda model, batch, key, epoch: (loss(model, batch, key), ())


def fold_model(stacked, k: int):
    """The model of fold k from a stacked (cross-validated) model."""
    params, static = eqx.partition(stacked, eqx.is_inexact_array)
    return eqx.combine(jax.tree_util.tree_map(lambda p: p[k], params), static)


def split_for_fold(key: PRNGKeyArray):
    """The (init, train) keys a fold key is split into (`cv.fit_folds` does the same)."""
    k = jax.random.split(key)
    return k[0], k[1]
