"""The generic fit loop, and cross-validation as the same loop vmapped over folds.

A task is three pure functions:

    sample(data, fold, key) -> batch          draw one training batch
    loss(model, batch, key) -> scalar         training loss (key for dropout)
    validate(model, data, fold) -> scalar     early-stopping criterion

`data` is shared by all folds (the cohort arrays, passed as an argument so it never becomes a
compile-time constant); `fold` is a pytree of per-fold arrays (training weights, normalisers),
stacked on a leading axis for cross-validation. One epoch is a `lax.scan` over optimiser steps
followed by the validation and the schedule updates, all in one jitted function that is traced
once; the Python loop runs over epochs only. Reduce-on-plateau and early stopping are pure
state, so folds stop independently: a stopped fold's state is frozen by a mask while the others
go on in the same vmapped program.

Recipes other than the default one (reduce-on-plateau Adam) plug in through `EpochHooks`: a
replacement optimiser, a step size and a gradient-clip norm that are functions of the epoch
index (cosine warm restarts, a decaying clip), and a loss that receives the epoch index (a
curriculum). The epoch index is traced state (`Schedule.epoch`), so none of them recompiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


class TrainConfig(NamedTuple):
    """Optimiser and schedule settings (defaults: the Lab-to-Wrist HR Kalman recipe)."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-5  # L2 added to the gradient before Adam, as torch.optim.Adam
    clip_norm: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    plateau_cooldown: int = 0
    plateau_threshold: float = 1e-4  # relative improvement that resets the plateau counter
    min_learning_rate: float = 0.0
    early_stopping_patience: int = 20
    epochs: int = 100
    steps_per_epoch: int = 50


class Schedule(NamedTuple):
    """Reduce-on-plateau and early-stopping state of one fold (all scalars)."""

    lr_scale: Float[Array, ""]
    plateau_best: Float[Array, ""]
    plateau_bad: Int[Array, ""]
    cooldown: Int[Array, ""]
    best_val: Float[Array, ""]
    bad_epochs: Int[Array, ""]
    stopped: Bool[Array, ""]
    epoch: Int[Array, ""]


class EpochHooks(NamedTuple):
    """Optional per-epoch pieces of a training recipe; `None` keeps the default behaviour.

    `learning_rate(epoch) -> step size` replaces `config.learning_rate` (the plateau factor
    `lr_scale` still multiplies it); `clip_norm(epoch) -> norm` clips the gradient's global norm
    before the optimiser (use an optimiser without its own clip); `optimizer` replaces
    `make_optimizer(config)`; with `loss_takes_epoch` the loss is called as
    `loss(model, batch, key, epoch)`. `epoch` is an int32 scalar array counting from 0.
    """

    learning_rate: Callable[[Array], Array] | None = None
    clip_norm: Callable[[Array], Array] | None = None
    optimizer: optax.GradientTransformation | None = None
    loss_takes_epoch: bool = False


class TrainState(NamedTuple):
    params: Any
    best_params: Any
    opt_state: Any
    schedule: Schedule
    key: PRNGKeyArray


class FitResult(NamedTuple):
    """The best model (by validation loss; stacked over folds for cross-validation) and the
    per-epoch history `{train_loss, val_loss, lr_scale, stopped}`, each `[epochs(, K)]`."""

    model: Any
    history: dict[str, np.ndarray]
    n_traces: int


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Clip by global norm, L2 weight decay into the gradient, Adam moments (no step size:
    the step applies `-learning_rate * lr_scale`, so the plateau schedule is pure state)."""
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_adam(),
    )


def update_schedule(s: Schedule, val: Float[Array, ""], config: TrainConfig) -> Schedule:
    """One epoch's bookkeeping, following torch.optim.lr_scheduler.ReduceLROnPlateau ('rel'
    threshold mode) and patience-based early stopping on the validation loss."""
    val = jnp.where(jnp.isfinite(val), val, jnp.inf)
    better = val < s.plateau_best * (1.0 - config.plateau_threshold)
    plateau_best = jnp.where(better, val, s.plateau_best)
    bad = jnp.where(better, 0, s.plateau_bad + 1)
    in_cooldown = s.cooldown > 0
    cooldown = jnp.where(in_cooldown, s.cooldown - 1, s.cooldown)
    bad = jnp.where(in_cooldown, 0, bad)
    reduce = bad > config.plateau_patience
    floor = config.min_learning_rate / config.learning_rate
    lr_scale = jnp.where(reduce, jnp.maximum(s.lr_scale * config.plateau_factor, floor), s.lr_scale)
    cooldown = jnp.where(reduce, config.plateau_cooldown, cooldown)
    bad = jnp.where(reduce, 0, bad)

    improved = val < s.best_val
    bad_epochs = jnp.where(improved, 0, s.bad_epochs + 1)
    return Schedule(
        lr_scale=lr_scale,
        plateau_best=plateau_best,
        plateau_bad=bad,
        cooldown=cooldown,
        best_val=jnp.where(improved, val, s.best_val),
        bad_epochs=bad_epochs,
        stopped=s.stopped | (bad_epochs >= config.early_stopping_patience),
        epoch=s.epoch + 1,
    )


def _initial_state(params, optimizer, key) -> TrainState:
    f = jnp.zeros((), jnp.result_type(float))
    i = jnp.zeros((), jnp.int32)
    sched = Schedule(f + 1.0, f + jnp.inf, i, i, f + jnp.inf, i, jnp.zeros((), bool), i)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer.init(params)
    return TrainState(params, params, opt_state, sched, key)


def _make_epoch(
    static,
    sample,
    loss,
    validate,
    optimizer,
    config: TrainConfig,
    counter: list,
    hooks: EpochHooks | None = None,
):
    hooks = EpochHooks() if hooks is None else hooks

    def epoch(state: TrainState, fold, data):
        counter.append(1)  # runs only while tracing: counts compiles
        e = state.schedule.epoch
        call_loss = (lambda m, b, k: loss(m, b, k, e)) if hooks.loss_takes_epoch else loss
        rate = config.learning_rate if hooks.learning_rate is None else hooks.learning_rate(e)

        def step(carry, _):
            params, opt_state, key = carry
            key, k_batch, k_loss = jax.random.split(key, 3)
            batch = sample(data, fold, k_batch)
            value, grads = jax.value_and_grad(
                lambda p: call_loss(eqx.combine(p, static), batch, k_loss)
            )(params)
            if hooks.clip_norm is not None:
                grads = clip_by_global_norm(grads, hooks.clip_norm(e))
            # optax's Adam bias correction mixes its int step count with floats, which a user's
            # strict dtype promotion would reject; the rest of the step stays strict.
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = optimizer.update(grads, opt_state, params)
            scale = -rate * state.schedule.lr_scale
            params = jax.tree_util.tree_map(lambda p, u: p + scale * u, params, updates)
            return (params, opt_state, key), value

        (params, opt_state, key), losses = jax.lax.scan(
            step, (state.params, state.opt_state, state.key), None, length=config.steps_per_epoch
        )
        val = validate(eqx.combine(params, static), data, fold)
        schedule = update_schedule(state.schedule, val, config)
        improved = schedule.best_val < state.schedule.best_val
        best = jax.tree_util.tree_map(
            lambda new, old: jnp.where(improved, new, old), params, state.best_params
        )
        new = TrainState(params, best, opt_state, schedule, key)
        # a fold that had already stopped keeps its state: only its key moves on
        frozen = state._replace(key=key)
        out = jax.tree_util.tree_map(
            lambda a, b: jnp.where(state.schedule.stopped, a, b), frozen, new
        )
        return out, (jnp.mean(losses), val)

    return epoch


def clip_by_global_norm(tree, max_norm: Float[Array, ""]):
    """`tree * min(1, max_norm / ||tree||)` with a traced `max_norm` (optax's clip takes a
    Python float)."""
    norm = optax.tree.norm(tree)
    factor = jnp.where(norm > max_norm, max_norm / jnp.maximum(norm, 1e-30), 1.0)
    return jax.tree_util.tree_map(lambda g: g * factor.astype(g.dtype), tree)


def _run(
    params0,
    static,
    sample,
    loss,
    validate,
    data,
    fold,
    config,
    keys,
    batched,
    progress,
    hooks: EpochHooks | None = None,
):
    hooks = EpochHooks() if hooks is None else hooks
    optimizer = make_optimizer(config) if hooks.optimizer is None else hooks.optimizer
    counter: list = []
    epoch = _make_epoch(static, sample, loss, validate, optimizer, config, counter, hooks)
    if batched:
        state = jax.vmap(lambda p, k: _initial_state(p, optimizer, k))(params0, keys)
        epoch_fn = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None)))
    else:
        state = _initial_state(params0, optimizer, keys)
        epoch_fn = jax.jit(epoch)
    history = {"train_loss": [], "val_loss": [], "lr_scale": [], "stopped": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc=progress if isinstance(progress, str) else "fit")
    for _ in range(config.epochs):
        state, (train_loss, val) = epoch_fn(state, fold, data)
        history["train_loss"].append(np.asarray(train_loss))
        history["val_loss"].append(np.asarray(val))
        history["lr_scale"].append(np.asarray(state.schedule.lr_scale))
        stopped = np.asarray(state.schedule.stopped)
        history["stopped"].append(stopped)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{np.mean(train_loss):.3f}", val=f"{np.mean(val):.3f}")
        if np.all(stopped):
            break
    if bar is not None:
        bar.close()
    model = eqx.combine(state.best_params, static)
    hist = {k: np.stack(v) for k, v in history.items()}
    return FitResult(model, hist, len(counter))


def fit(
    model,
    loss: Callable,
    sample: Callable,
    validate: Callable,
    data,
    fold,
    config: TrainConfig,
    key: PRNGKeyArray,
    *,
    progress: bool | str = False,
    hooks: EpochHooks | None = None,
) -> FitResult:
    """Train one model on one fold; returns the parameters with the best validation loss.

    `hooks` (optional) replace pieces of the default recipe (`EpochHooks`)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return _run(
        params, static, sample, loss, validate, data, fold, config, key, False, progress, hooks
    )


def cross_validate(
    init: Callable[[PRNGKeyArray], Any],
    loss: Callable,
    sample: Callable,
    validate: Callable,
    data,
    folds,
    config: TrainConfig,
    keys: PRNGKeyArray,
    *,
    progress: bool | str = False,
    mesh: jax.sharding.Mesh | None = None,
    hooks: EpochHooks | None = None,
) -> FitResult:
    """Initialise and train K models in one vmapped program; `folds` and `keys` lead with K.

    `init(key) -> model` builds a model; fold k uses `jax.random.split(keys[k])` for its
    initialisation and training, exactly as `fit` would on that fold alone. With a `mesh` that
    has an axis named "fold", the fold axis of parameters and fold data is sharded over it.
    `hooks` (optional) replace pieces of the default recipe (`EpochHooks`).
    """
    pairs = jax.vmap(split_for_fold)(keys)
    init_keys, train_keys = pairs[0], pairs[1]
    static = eqx.partition(init(init_keys[0]), eqx.is_inexact_array)[1]
    params = jax.vmap(lambda k: eqx.partition(init(k), eqx.is_inexact_array)[0])(init_keys)
    if mesh is not None:
        spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fold"))
        params, folds, train_keys = jax.device_put((params, folds, train_keys), spec)
    return _run(
        params,
        static,
        sample,
        loss,
        validate,
        data,
        folds,
        config,
        train_keys,
        True,
        progress,
        hooks,
    )


def fold_model(stacked, k: int):
    """The model of fold k from a stacked (cross-validated) model."""
    params, static = eqx.partition(stacked, eqx.is_inexact_array)
    return eqx.combine(jax.tree_util.tree_map(lambda p: p[k], params), static)


def split_for_fold(key: PRNGKeyArray):
    """The (init, train) keys `cross_validate` derives from a fold key; `fit` users call this
    to reproduce one fold of a cross-validation exactly."""
    k = jax.random.split(key)
    return k[0], k[1]
