"""The one cross-validation runner: folds as masks, all folds trained in one vmapped program,
every held-out session predicted by the model of the fold that held it out.

- `Split` (from `data.folds`): boolean `[K, S]` masks of test, validation and training
  sessions per fold, from subject-wise folds (`Split.by_subject`) or given directly;
  `owner` names the fold that tests each session, `held_out_table` lists them padded;
- `fit_folds`: init + `train.fit` vmapped over folds, traced once for all epochs and folds;
  on a device mesh (`make_mesh`, given or set with `jax.set_mesh`), folds are sharded over its
  "fold" axis and each training batch over its "data" axis;
- `predict_held_out`: `predict(model, fold, data, i) -> pytree` vmapped over folds, batched
  over each fold's held-out sessions (`lax.map`), scattered back to `[S, ...]` per leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Key, PRNGKeyArray

from wearjax.data.folds import Split, padded_table
from wearjax.errors import WearjaxDataError
from wearjax.sharding import (
    batch_mesh,
    check_mesh,
    default_mesh,
    gather_folds,
    gather_processes,
    make_mesh,
    place,
    process_folds,
    split_over_data,
    spread_folds,
)
from wearjax.train.loop import (
    FitResult,
    Recipe,
    Task,
    fold_model,
    init_state,
    make_epoch,
    split_for_fold,
    train_epochs,
)

__all__ = [
    "FoldProgram",
    "Split",
    "compile_folds",
    "compile_predict",
    "fit_folds",
    "fold_model",
    "gather_folds",
    "this_process_folds",
    "gather_processes",
    "make_mesh",
    "padded_table",
    "predict_held_out",
    "predict_per_fold",
    "process_folds",
    "scatter",
    "spread_folds",
]


def this_process_folds(split: Split, fold, keys):
    """The folds this process trains (`process_folds`: all in one process) as `(fold, keys,
    local)`, the fold data and keys taken at them. A chronological split, which calibrates each
    fold on the earlier folds' models, is refused over several processes."""
    local = process_folds(split.n_folds)
    if len(local) < split.n_folds and split.calibrate_from is not None:
        raise WearjaxDataError(
            "a chronological split calibrates each fold on the earlier folds' models: run it "
            "in one process"
        )
    return jax.tree_util.tree_map(lambda a: a[local], fold), keys[local], local


# The initialiser runs once per fit, so its compile time is all it costs: LLVM's optimisation
# level 1 (of 0-3; XLA's default is 2) compiles the demo's HR models' initialisers 1.5-1.8x
# faster (benchmarks/compile_demo.py), with the same bits (tests/test_cv.py checks every model
# family). Level 0 would save more but rounds the uniform draws differently (no fused
# multiply-add), which would move every trained figure.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_program(init: Callable[[PRNGKeyArray], Any], trainable=eqx.is_inexact_array,
                 sharding=None):  # fmt: skip
    """`keys [K] -> the trainable part of init(keys[k])`, stacked over folds, jitted: one
    program for every fold (eagerly, each random draw of each shape would compile on its own:
    seconds per model). `sharding`: where its outputs go (e.g. the folds over a mesh), so
    placing them takes no program of its own per leaf."""
    return jax.jit(jax.vmap(lambda k: eqx.partition(init(k), trainable)[0]), out_shardings=sharding)


def initialise(init: Callable[[PRNGKeyArray], Any], keys: Key[Array, " fold"],
               trainable=eqx.is_inexact_array, sharding=None):  # fmt: skip
    """`init_program(init, trainable, sharding)(keys)`, compiled with
    `INIT_COMPILER_OPTIONS`."""
    program = init_program(init, trainable, sharding)
    return program.lower(keys).compile(compiler_options=INIT_COMPILER_OPTIONS)(keys)


class FoldProgram(NamedTuple):
    """What `fit_folds` builds before its first epoch (`compile_folds`): the jitted epoch of
    all folds, the initial training state and the (placed) fold data."""

    epoch: Callable
    state: Any
    folds: Any
    data: Any
    static: Any
    params: Any  # the initial trainable parameters (the resume fingerprint)
    counter: list


def _traced_on(mesh: jax.sharding.Mesh, epoch_fn: Callable) -> Callable:
    """`epoch_fn` whose tracing runs inside `sharding.batch_mesh(mesh)`."""

    def epoch(*args):
        with batch_mesh(mesh):
            return epoch_fn(*args)

    return epoch


def compile_folds(
    init: Callable[[PRNGKeyArray], Any],
    task: Task,
    data,
    folds,
    recipe: Recipe,
    keys: Key[Array, " fold"],
    *,
    trainable=eqx.is_inexact_array,
    mesh: jax.sharding.Mesh | None = None,
    compile: bool = True,
) -> FoldProgram:
    """Initialise the folds of `fit_folds` and (with `compile`) compile their epoch program
    ahead of time; JAX keeps the executable, so `fit_folds(..., program=...)`'s first epoch
    does not compile again. Safe to run in a worker thread while another model trains
    (`tasks.hr_study.run_hr_study` builds the next model's program that way): pass `mesh`
    explicitly there, since `jax.set_mesh` and `spread_folds` hold for their own thread."""
    pairs = jax.vmap(split_for_fold)(keys)
    init_keys, train_keys = pairs[0], pairs[1]
    static = _static_part(init, init_keys[0], trainable)
    mesh = mesh if mesh is not None else default_mesh(len(keys))
    by_fold = shard_batch = None
    if mesh is not None:
        check_mesh(mesh, len(keys))
        if jax.process_count() > 1 and not mesh.is_fully_addressable:
            raise WearjaxDataError(
                "the mesh holds other processes' devices; with jax.distributed each process "
                "trains its own folds on its own: make_mesh(F, D, devices=jax.local_devices())"
            )
        by_fold = jax.sharding.NamedSharding(mesh, P("fold"))
        folds, train_keys = place((folds, train_keys), by_fold)
        data = place(data, jax.sharding.NamedSharding(mesh, P()))
        shard_batch = partial(split_over_data, mesh)
    params = initialise(init, init_keys, trainable, by_fold)
    counter: list = []
    epoch_fn = make_epoch(task, recipe, static, counter, shard_batch=shard_batch)
    if mesh is not None:  # traced on the mesh: the tasks' `map_batch` splits over "data"
        epoch_fn = _traced_on(mesh, epoch_fn)
    # every output leads with the fold axis: pinning it sharded keeps one compile per shape
    epoch = jax.jit(
        jax.vmap(epoch_fn, in_axes=(0, 0, None), spmd_axis_name="fold" if mesh else None),
        out_shardings=by_fold,
    )
    # one small program (eagerly, each zero-filled optimiser leaf compiled on its own)
    start = jax.jit(jax.vmap(lambda p, k: init_state(p, recipe, k)), out_shardings=by_fold)
    state = start(params, train_keys)
    if compile:
        epoch.lower(state, folds, data).compile()
    return FoldProgram(epoch, state, folds, data, static, params, counter)


def fit_folds(
    init: Callable[[PRNGKeyArray], Any],
    task: Task,
    data,
    folds,
    recipe: Recipe,
    keys: Key[Array, " fold"],
    *,
    trainable=eqx.is_inexact_array,
    progress: bool | str = False,
    mesh: jax.sharding.Mesh | None = None,
    state_file=None,
    resume: bool = False,
    every: int = 1,
    run: dict | None = None,
    program: FoldProgram | None = None,
) -> FitResult:
    """Initialise and train K models in one vmapped program; `folds` and `keys` lead with K.

    Fold k initialises with `split_for_fold(keys[k])[0]` and trains with `[1]`, exactly as
    `train.fit` would on that fold alone. On a `mesh` (default: the one set by `jax.set_mesh`,
    if it has a "fold" axis), the fold axis of parameters and fold data is sharded over "fold",
    the data is replicated and each step's batch is split over "data" (`make_mesh`); the results
    equal the unsharded run's up to float rounding. `state_file`, `resume`, `every`
    and `run` save and resume the whole training state of all folds, as in `train.fit`.
    `program`: `compile_folds` of the same arguments, built ahead (e.g. in another thread).
    """
    if program is None:
        program = compile_folds(
            init, task, data, folds, recipe, keys, trainable=trainable, mesh=mesh, compile=False
        )
    state, history = train_epochs(
        program.epoch, program.state, program.folds, program.data, recipe, progress,
        state_file=state_file, resume=resume, every=every, run=run,
        fingerprint_of=program.params,
    )  # fmt: skip
    return FitResult(eqx.combine(state.best_params, program.static), history, len(program.counter))


def _static_part(init, key, trainable):
    """The frozen part of `init(key)`, from its shapes alone when it holds no array (the
    usual case: only the trainable part is computed); else from a real initialisation. Frozen
    float arrays are refused: only the trainable part is stacked over folds, so every fold
    would share fold 0's draw of them, and `fold_model` would slice them as if stacked."""
    # shapes stand in for arrays as zero-memory views, so that `trainable` sees arrays
    shapes = jax.tree_util.tree_map(
        lambda a: (
            np.broadcast_to(np.zeros((), a.dtype), a.shape)
            if isinstance(a, jax.ShapeDtypeStruct)
            else a
        ),
        eqx.filter_eval_shape(init, key),
    )
    static = eqx.partition(shapes, trainable)[1]
    leaves = jax.tree_util.tree_leaves(static)
    frozen = sum(eqx.is_inexact_array(leaf) for leaf in leaves)
    if frozen:
        raise WearjaxDataError(
            f"the frozen part of init's model holds {frozen} float array(s), which fit_folds "
            "cannot stack over folds: close over fixed arrays outside init, or make them "
            "trainable and freeze them with jax.lax.stop_gradient in the model"
        )
    if any(eqx.is_array(leaf) for leaf in leaves):
        static = eqx.partition(init(key), trainable)[1]
    return static


@eqx.filter_jit
def _predict_tables(predict, model, folds, data, idx, batch: int | None):
    def per_fold(model, fold, idx):
        return jax.lax.map(lambda i: predict(model, fold, data, i), idx, batch_size=batch)

    return eqx.filter_vmap(per_fold)(model, folds, idx)


def even_batches(idx: np.ndarray, batch: int | None) -> tuple[np.ndarray, int | None]:
    """`idx [K, M]` padded (with its last column) to whole batches of at most `batch`, and
    that batch size: `lax.map` compiles the body a second time for a remainder, so M = 12 at
    `batch` 8 runs as two batches of 6 rather than 8 + 4."""
    m = idx.shape[1]
    if batch is None or m <= batch:
        return idx, batch
    n = -(-m // batch)
    size = -(-m // n)
    pad = np.repeat(idx[:, -1:], n * size - m, axis=1)
    return np.concatenate([idx, pad], axis=1), size


def compile_predict(
    predict: Callable, model, folds, data, split: Split, *, batch: int | None = 8, which="test"
) -> None:
    """Compile `predict_held_out`'s program ahead, for models shaped and placed as `model`
    (e.g. a `FoldProgram`'s initial parameters); JAX keeps it for the call."""
    padded, batch = even_batches(split.held_out_table(which)[0], batch)
    _predict_tables.lower(predict, model, folds, data, jnp.asarray(padded), batch).compile()


def predict_held_out(
    predict: Callable, model, folds, data, split: Split, *, batch: int | None = 8, which="test"
):
    """Every session of `split.<which>` predicted by its fold's model.

    `predict(model, fold, data, i)` returns a pytree of arrays for session `i` (a traced index
    into `data`, shared by all folds and passed as an argument, not a constant); the result
    has the same pytree of numpy arrays `[S, ...]`, zero for sessions no fold holds out; one
    that several folds hold out is refused (`predict_per_fold` gives each fold's)."""
    if getattr(split, which).sum(axis=0).max(initial=0) > 1:
        raise ValueError(f"sessions in several folds' {which} sets: use predict_per_fold")
    out, idx, ok = predict_per_fold(predict, model, folds, data, split, batch=batch, which=which)
    n = split.test.shape[1]
    return jax.tree_util.tree_map(lambda a: scatter(a, idx, ok, n), out)


def predict_per_fold(
    predict: Callable, model, folds, data, split: Split, *, batch: int | None = 8, which="test"
):
    """As `predict_held_out`, without scattering back to sessions (a session may sit in the
    `which` mask of several folds, e.g. validation): the pytree of `[K, M, ...]` outputs and
    the table `(idx, ok)` (`Split.held_out_table`)."""
    idx, ok = split.held_out_table(which)
    padded, batch = even_batches(idx, batch)
    out = _predict_tables(predict, model, folds, data, jnp.asarray(padded), batch)
    return jax.tree_util.tree_map(lambda a: a[:, : idx.shape[1]], out), idx, ok


def scatter(out, idx: np.ndarray, ok: np.ndarray, n_sessions: int) -> np.ndarray:
    """`[K, M, ...]` per-fold outputs back to `[S, ...]` by the held-out table."""
    out = np.asarray(out)
    full = np.zeros((n_sessions,) + out.shape[2:], out.dtype)
    full[idx[ok]] = out[ok]
    return full
