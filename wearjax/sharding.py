"""Where cross-validation runs: device meshes with a "fold" and a "data" axis, the folds of
one process spread over its CPU devices, and the folds shared by several processes
(`jax.distributed`). `cv.fit_folds` uses these; `wearjax.cv` re-exports the public ones.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import equinox as eqx
import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from wearjax.errors import WearjaxDataError


def make_mesh(folds: int = 1, data: int = 1, *, devices=None) -> jax.sharding.Mesh:
    """A `("fold", "data")` device mesh of `folds x data` devices (default: the first ones of
    `jax.devices()`, which spans every process after `jax.distributed.initialize`), with
    automatic sharding propagation."""
    devices = list(jax.devices() if devices is None else devices)
    if folds * data > len(devices):
        raise WearjaxDataError(
            f"a mesh of {folds} x {data} devices needs {folds * data}, but {len(devices)} are "
            f"visible; on CPU, pass --devices N (or set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts)"
        )
    auto = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh(
        (folds, data), ("fold", "data"), axis_types=auto, devices=devices[: folds * data]
    )


def place(tree, sharding):
    """`jax.device_put` of the array leaves of `tree` (other leaves stay as they are)."""
    is_array = lambda a: isinstance(a, jax.Array | np.ndarray)  # noqa: E731
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding) if is_array(a) else a, tree)


_SPREAD = contextvars.ContextVar("wearjax_spread_folds", default=False)


@contextlib.contextmanager
def spread_folds():
    """Inside it, `fit_folds` without a mesh spreads the folds over the CPU devices (the CLI
    makes one per core, `jax_num_cpu_devices`): each device runs its folds on its own thread,
    where one device would run the small per-second operations of all folds on one core."""
    token = _SPREAD.set(True)
    try:
        yield
    finally:
        _SPREAD.reset(token)


def default_mesh(n_folds: int) -> jax.sharding.Mesh | None:
    """The mesh `fit_folds` uses when none is given: the one set with `jax.set_mesh`; else,
    inside `spread_folds` on CPU, the folds over as many devices as divide their number
    (none when that is one)."""
    mesh = current_mesh()
    if mesh is not None or not _SPREAD.get():
        return mesh
    devices = jax.local_devices()  # a process spreads its own folds over its own devices
    k = fold_devices(n_folds, len(devices))
    return make_mesh(k, 1, devices=devices) if devices[0].platform == "cpu" and k > 1 else None


def fold_devices(n_folds: int, n_devices: int) -> int:
    """The most devices, at most `n_devices`, that share `n_folds` evenly: 2 for 4 folds on 3
    devices, 3 for 6 on 4 (until 2026-12-07 their greatest common divisor: 1 and 2)."""
    return max(d for d in range(1, max(1, min(n_folds, n_devices)) + 1) if n_folds % d == 0)


def process_folds(n_folds: int) -> np.ndarray:
    """The folds this process trains: all of them in a single process; after
    `jax.distributed.initialize` with P processes, the i-th contiguous share of `n_folds / P`
    (the fold count must be a multiple of P). Each process trains its share as one vmapped
    program on its own devices, and `gather_processes` assembles the held-out outputs."""
    p, i = jax.process_count(), jax.process_index()
    if p == 1:
        return np.arange(n_folds)
    if n_folds % p:
        raise WearjaxDataError(
            f"{n_folds} folds cannot be shared evenly by {p} processes: run a number of "
            f"processes that divides {n_folds}"
        )
    k = n_folds // p
    return np.arange(i * k, (i + 1) * k)


def gather_processes(tree):
    """Every process's per-session outputs `[S, ...]` (zeros where its folds do not test a
    session) summed over processes, on every process (`process_allgather`, CPU collectives
    on CPU); unchanged in a single process. Each session is tested by one fold, so the sum is
    the assembled cross-validation."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(a):
        return np.asarray(multihost_utils.process_allgather(np.asarray(a))).sum(axis=0)

    return jax.tree_util.tree_map(gather, tree)


def max_over_processes(value: int) -> int:
    """The largest of every process's `value` (e.g. the epochs its folds ran before they all
    stopped); `value` itself in a single process."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray(value))))


def gather_folds(values, local: np.ndarray, n_folds: int) -> list:
    """Per-fold values `[len(local), ...]` of this process's folds `local` (`process_folds`),
    completed with every other process's into all `n_folds`, as a list."""
    values = np.asarray(values)
    if len(local) == n_folds:
        return values.tolist()
    full = np.zeros((n_folds, *values.shape[1:]), values.dtype)
    full[local] = values
    return np.asarray(gather_processes(full)).tolist()


def current_mesh() -> jax.sharding.Mesh | None:
    """The mesh set with `jax.set_mesh`, if it has a "fold" axis (else None)."""
    mesh = jax.sharding.get_mesh()
    return None if mesh.empty or "fold" not in mesh.axis_names else mesh


def check_mesh(mesh: jax.sharding.Mesh, n_folds: int) -> None:
    names = set(mesh.axis_names)
    if not names <= {"fold", "data"} or "fold" not in names:
        raise WearjaxDataError(
            f"the mesh has axes {tuple(mesh.axis_names)}; cross-validation shards over "
            f'"fold" and, optionally, "data" (cv.make_mesh)'
        )
    if n_folds % mesh.shape["fold"]:
        raise WearjaxDataError(
            f"{n_folds} folds cannot be split evenly over {mesh.shape['fold']} devices on the "
            f'mesh\'s "fold" axis; choose a fold axis size that divides {n_folds}'
        )


def check_fold_layout(n_folds: int) -> None:
    """Refuse, before any data is read or simulated, `n_folds` folds that this run's processes
    (`process_folds`) or the mesh set with `jax.set_mesh` cannot split evenly; `fit_folds`
    would refuse them only once it starts."""
    mesh = current_mesh()
    local = len(process_folds(n_folds))
    if mesh is not None:
        check_mesh(mesh, local)


def split_over_data(mesh: jax.sharding.Mesh, batch):
    """Each leaf of a training batch split over the mesh's "data" axis along its leading
    (batch) axis, where that axis divides evenly; other leaves stay as they are. A batch with
    no leaf to split is refused: the data devices would all run it whole."""
    n = mesh.shape.get("data", 1)
    if n == 1:
        return batch
    sizes = {a.shape[0] for a in jax.tree_util.tree_leaves(batch) if a.ndim}
    if not any(b % n == 0 for b in sizes):
        raise WearjaxDataError(
            f"a training batch of {sorted(sizes)} cannot be split over the {n} devices of the "
            f'mesh\'s "data" axis; give a data axis size that divides the batch, or 1'
        )

    def place(a):
        if a.ndim == 0 or a.shape[0] % n:
            return a
        return jax.lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, P("data")))

    return jax.tree_util.tree_map(place, batch)


_BATCH_MESH = contextvars.ContextVar("wearjax_batch_mesh", default=None)


@contextlib.contextmanager
def batch_mesh(mesh: jax.sharding.Mesh | None):
    """While a training epoch is traced inside it (`cv.compile_folds` wraps its epoch in it),
    `map_batch` splits each batch's per-example work over `mesh`'s "data" axis."""
    token = _BATCH_MESH.set(mesh)
    try:
        yield
    finally:
        _BATCH_MESH.reset(token)


def splits_batch(size: int) -> bool:
    """Whether `map_batch` runs a batch of `size` examples as one `shard_map` here: inside
    `batch_mesh` with a "data" axis of more than one device that divides `size`."""
    mesh = _BATCH_MESH.get()
    n = 1 if mesh is None else mesh.shape.get("data", 1)
    return n > 1 and size % n == 0


def map_batch(fn, shared, *batched):
    """`fn(shared, *example)` for every example along the leading axis of the `batched`
    arrays (`jax.vmap` with `shared`, e.g. the model, unbatched); every output leads with the
    batch axis. Where `splits_batch`, it runs as one `jax.shard_map` over the mesh: each
    "data" device maps its own share of the examples, and the gradient with respect to
    `shared` is summed over the devices once, where the map ends. Left to the partitioner, a
    model's scans (the GRU, the filters) all-reduce their weight gradients over the data
    devices at every step of the reverse pass (`benchmarks/data_axis.py`). `fn` must take
    every array it reads through its arguments (closing over a traced array is not allowed);
    the values equal the plain `vmap`'s to float rounding (`tests/test_data_axis.py`)."""

    def mapped(s, *b):
        return jax.vmap(fn, in_axes=(None,) + (0,) * len(b))(s, *b)

    sizes = {a.shape[0] for a in jax.tree_util.tree_leaves(batched)}
    if len(sizes) != 1 or not splits_batch(next(iter(sizes))):
        return mapped(shared, *batched)
    arrays, static = eqx.partition(shared, eqx.is_array)
    spec = (P(),) + (P("data"),) * len(batched)
    body = lambda a, *b: mapped(eqx.combine(a, static), *b)  # noqa: E731
    split = jax.shard_map(
        body, mesh=_BATCH_MESH.get(), in_specs=spec, out_specs=P("data"), check_vma=False
    )
    return split(arrays, *batched)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cores_to_spare(mesh) -> bool:
    """Whether training the folds on `mesh` (a `jax.sharding.Mesh`; None: one device) leaves
    CPU cores idle for other work, such as building the next model (`tasks.hr_study`): it runs
    on accelerators, or on fewer CPU devices than `usable_cores`. On 2 cores with a fold per
    core, building ahead gained nothing (0.98-1.01x: the cores' work grew as much as it
    overlapped); with the folds on one device, 1.23x (`benchmarks/demo_ahead.py`)."""
    devices = list(mesh.devices.flat) if mesh is not None else jax.local_devices()[:1]
    return devices[0].platform != "cpu" or usable_cores() > len(devices)
