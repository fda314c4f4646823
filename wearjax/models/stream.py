"""HR models one second at a time, exported for deployment.

Every HR model (`AbstractHRModel`) has `init_stream(hr0)` and `step(state, x_t, hr_t)`; this
module turns them into two `jax.export` programs (StableHLO, weights baked in) that any process
with JAX reloads and runs (`jax.export.deserialize` is all `load_stream` uses):

    init(hr0)                  -> state             (a flat list of arrays)
    step(state, x_t, hr_t)     -> (state, hr, var)  (hr_t NaN: no measured HR that second)

`write_stream(path, model, n_features)` stores both in one `.npz`; `load_stream(path)` returns
the two callables. The programs take one session at batch 1 (a watch's case); `jax.vmap` the
model's own `step` for many.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.errors import WearjaxFileError


def export_stream(
    model, n_features: int, dtype=jnp.float32, platforms: tuple[str, ...] | None = None
) -> tuple[bytes, bytes]:
    """Serialized `jax.export` programs of `model.init_stream` and `model.step` (module
    docstring), for inputs of `n_features` features in `dtype`, lowered for `platforms`
    (`jax.export`'s names: "cpu", "cuda", "tpu"; default: the current backend)."""
    state = model.init_stream(jnp.zeros((), dtype))
    leaves, treedef = jax.tree_util.tree_flatten(state)

    def init(hr0):
        return jax.tree_util.tree_leaves(model.init_stream(hr0))

    def step(leaves, x_t, hr_t):
        new, hr, var = model.step(jax.tree_util.tree_unflatten(treedef, leaves), x_t, hr_t)
        return jax.tree_util.tree_leaves(new), hr, var

    scalar = jax.ShapeDtypeStruct((), dtype)
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    x_spec = jax.ShapeDtypeStruct((n_features,), dtype)
    init_program = jax.export.export(jax.jit(init), platforms=platforms)(scalar)
    step_program = jax.export.export(jax.jit(step), platforms=platforms)(specs, x_spec, scalar)
    return bytes(init_program.serialize()), bytes(step_program.serialize())


def write_stream(
    path: str | Path, model, n_features: int, dtype=jnp.float32, platforms=None
) -> Path:
    """`export_stream` written to `path` (`.npz`)."""
    init, step = export_stream(model, n_features, dtype, platforms)
    path = Path(path)
    with path.open("wb") as f:
        np.savez(f, init=np.frombuffer(init, np.uint8), step=np.frombuffer(step, np.uint8))
    return path


def load_stream(path: str | Path) -> tuple[Callable, Callable]:
    """The `(init, step)` programs of a file `write_stream` wrote; anything else is refused
    naming the file."""
    path = Path(path)
    fix = "pass a file `wearjax.models.stream.write_stream` wrote"
    try:
        with open(path, "rb") as f, np.load(f) as blobs:  # closed even if NumPy fails to read
            init, step = (
                jax.export.deserialize(bytearray(blobs[k].tobytes())) for k in ("init", "step")
            )
    except FileNotFoundError as err:
        raise WearjaxFileError(path, "no such file", fix) from err
    except UNREADABLE as err:
        raise WearjaxFileError(path, f"not an exported HR stream ({err!r})", fix) from err
    return init.call, step.call


UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError,
              zipfile.BadZipFile, struct.error)  # fmt: skip
"""What reading a truncated or garbled file raises in `np.load` and `jax.export.deserialize`."""
