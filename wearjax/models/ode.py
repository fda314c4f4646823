"""Fixed-step RK4 for ODEs driven by per-second inputs: one numerics, two engines.

wearjax's ODE models (`hr_ode.HRODE`, `hr_personalized.PersonalHRODE`) integrate

    dy/dt = f(t, y, u(t), args)

on the 1 Hz grid of a recording, where `u` holds everything that does not depend on the state
(the demand network's output, the activity intensity), computed for all seconds before the
solver runs. `u` is known at whole seconds; between them it is the straight line joining the two
neighbouring seconds, so the classical RK4 step from second i to i+1 evaluates f at
`u_i` (stage 1), `(u_i + u_{i+1}) / 2` (stages 2 and 3) and `u_{i+1}` (stage 4).

Two engines give the same numbers:

- `"diffrax"`: `diffrax.diffeqsolve` with the classical RK4 tableau (`RK4`, which Diffrax does not
  ship), `ConstantStepSize` at 1 s, saving every step (`SaveAt(steps=True)`; `y0` is prepended,
  `max_steps` = the number of steps, so nothing is padded), `throw=False`, one solve per
  `DIFFRAX_CHUNK` steps in a `lax.scan` (see there why). Gradients through
  `RecursiveCheckpointAdjoint` (the default; `checkpoints=None` keeps one checkpoint per step, the
  fastest setting while the state fits in memory, or pass a number for Diffrax's O(n log n)
  recomputation within each chunk) or `BacksolveAdjoint` (the continuous adjoint of the
  Lab-to-Wrist paper, which solves the adjoint ODE backwards with the same RK4).
- `"scan"`: the same RK4 written as one `lax.scan`, with the stage inputs precomputed; reverse
  mode stores every stage.

`tests/models/test_ode.py` checks both against a float64 NumPy RK4 and each other to 1e-6;
`benchmarks/ode.py` times them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

Engine = Literal["diffrax", "scan"]
Adjoint = Literal["checkpoint", "backsolve"]
ENGINES: tuple[str, ...] = ("diffrax", "scan")
ADJOINTS: tuple[str, ...] = ("checkpoint", "backsolve")

# The classical fourth-order Runge-Kutta method (Kutta 1901): c = (0, 1/2, 1/2, 1),
# b = (1/6, 1/3, 1/3, 1/6), each stage from the previous one alone. No embedded error estimate:
# it is only ever used at a fixed step.
_RK4_TABLEAU = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


def _linear_interpolation(*, t0, t1, y0, y1, k) -> diffrax.LocalLinearInterpolation:
    del k  # the stages are not needed for a straight line between the step's ends
    return diffrax.LocalLinearInterpolation(t0=t0, t1=t1, y0=y0, y1=y1)


class RK4(diffrax.AbstractERK):
    """Classical RK4 for `diffrax.diffeqsolve` at a constant step size.

    Output between steps uses linear interpolation; wearjax saves only at steps, where it is
    exact.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = _RK4_TABLEAU
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = staticmethod(
        _linear_interpolation
    )

    def order(self, terms):
        del terms
        return 4


VectorField = Callable[[Array, PyTree, PyTree, Any], PyTree]


def input_at(u: PyTree, t: Array) -> PyTree:
    """`u` (leaves `[T, ...]`, one row per second) at time `t` s, linear between seconds."""
    n = jax.tree_util.tree_leaves(u)[0].shape[0]
    i = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, max(n - 2, 0))
    frac = t - i.astype(t.dtype)
    return jax.tree_util.tree_map(lambda a: a[i] + frac * (a[jnp.minimum(i + 1, n - 1)] - a[i]), u)


def _axpy(a: float | Array, x: PyTree, y: PyTree) -> PyTree:
    """`y + a x` over pytrees."""
    return jax.tree_util.tree_map(lambda xi, yi: yi + a * xi, x, y)


def rk4_step(field: VectorField, t, y: PyTree, a: PyTree, m: PyTree, b: PyTree, args) -> PyTree:
    """One classical RK4 step of 1 s from `t`: inputs `a` at its start, `m` halfway, `b` at its
    end (the `"scan"` engine's step, and the streaming models' one second)."""
    k1 = field(t, y, a, args)
    k2 = field(t + 0.5, _axpy(0.5, k1, y), m, args)
    k3 = field(t + 0.5, _axpy(0.5, k2, y), m, args)
    k4 = field(t + 1.0, _axpy(1.0, k3, y), b, args)
    return jax.tree_util.tree_map(
        lambda yi, a1, a2, a3, a4: yi + (a1 + 2.0 * a2 + 2.0 * a3 + a4) / 6.0, y, k1, k2, k3, k4
    )


def _scan_rk4(field: VectorField, y0: PyTree, u: PyTree, args) -> PyTree:
    first = jax.tree_util.tree_map(lambda a: a[:-1], u)
    last = jax.tree_util.tree_map(lambda a: a[1:], u)
    middle = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), first, last)
    n = jax.tree_util.tree_leaves(u)[0].shape[0]
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    times = jnp.arange(n - 1, dtype=dtype)

    def step(y, inputs):
        y = rk4_step(field, *inputs[:1], y, *inputs[1:], args)
        return y, y

    _, ys = jax.lax.scan(step, y0, (times, first, middle, last))
    return ys


# Steps per `diffeqsolve` on the Diffrax path. The vector field reads the inputs by index
# (`input_at`); reverse mode turns each read into an add into a cotangent the size of the inputs
# it indexes, so one solve over a whole session costs O(T^2) in the backward pass (an hour at
# 1 Hz: 8-17x the scan, `benchmarks/ode.py --diffrax-chunk 3600`). Solving in chunks of this
# many steps, one after the other, indexes chunk-sized inputs only and gives the same numbers
# (fixed steps: each chunk starts from the previous chunk's last state).
DIFFRAX_CHUNK = 60


def _diffrax_solve(
    field: VectorField,
    y0: PyTree,
    u: PyTree,
    args,
    start: Array,
    adjoint: Adjoint,
    checkpoints: int | None,
) -> PyTree:
    """One `diffeqsolve` over `u` (leaves `[n, ...]`, n - 1 steps from time `start`); returns
    the n - 1 states after `y0`."""
    n = jax.tree_util.tree_leaves(u)[0].shape[0]
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    steps = n - 1
    if adjoint == "checkpoint":
        adj = diffrax.RecursiveCheckpointAdjoint(checkpoints=min(checkpoints or steps, steps))
        saveat = diffrax.SaveAt(steps=True)
    else:  # backsolve needs the save times spelled out (it cannot save "at steps")
        adj = diffrax.BacksolveAdjoint(solver=RK4())
        saveat = diffrax.SaveAt(ts=jnp.arange(1, n, dtype=dtype))
    term = diffrax.ODETerm(lambda t, y, a: field(a[2] + t, y, input_at(a[0], t), a[1]))
    return diffrax.diffeqsolve(
        term,
        RK4(),
        t0=jnp.zeros((), dtype),
        t1=jnp.asarray(steps, dtype),
        dt0=jnp.ones((), dtype),
        y0=y0,
        args=(u, args, jnp.asarray(start, dtype)),
        saveat=saveat,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=steps,
        adjoint=adj,
        throw=False,
    ).ys


def _diffrax_rk4(
    field: VectorField, y0: PyTree, u: PyTree, args, adjoint: Adjoint, checkpoints: int | None
) -> PyTree:
    """All n - 1 steps as `DIFFRAX_CHUNK`-step solves in a `lax.scan`, the remainder last."""
    n = jax.tree_util.tree_leaves(u)[0].shape[0]
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    size = DIFFRAX_CHUNK
    n_chunks, rest = divmod(n - 1, size)
    if n - 1 <= size:
        return _diffrax_solve(field, y0, u, args, jnp.zeros((), dtype), adjoint, checkpoints)
    starts = jnp.arange(n_chunks) * size
    # chunk k reads seconds k*size ... (k+1)*size: its own and the next chunk's first
    index = starts[:, None] + jnp.arange(size + 1)[None, :]
    chunks = jax.tree_util.tree_map(lambda a: a[index], u)

    def one(y, chunk):
        u_k, start = chunk
        ys = _diffrax_solve(field, y, u_k, args, start.astype(dtype), adjoint, checkpoints)
        return jax.tree_util.tree_map(lambda a: a[-1], ys), ys

    y_end, ys = jax.lax.scan(one, y0, (chunks, starts))
    ys = jax.tree_util.tree_map(lambda a: a.reshape(n_chunks * size, *a.shape[2:]), ys)
    if rest == 0:
        return ys
    tail = jax.tree_util.tree_map(lambda a: a[n_chunks * size :], u)
    start = jnp.asarray(n_chunks * size, dtype)
    ys_tail = _diffrax_solve(field, y_end, tail, args, start, adjoint, checkpoints)
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)


def solve(
    field: VectorField,
    y0: PyTree,
    u: PyTree,
    args=None,
    *,
    engine: Engine = "diffrax",
    adjoint: Adjoint = "checkpoint",
    checkpoints: int | None = None,
) -> PyTree:
    """Integrate `dy/dt = field(t, y, u(t), args)` with RK4 at 1 s from `y0` at t = 0.

    `u` is a pytree of arrays `[T, ...]` sampled at t = 0, 1, ..., T-1 (linear in between). Returns
    the states at every second, leaves `[T, ...]`, the first being `y0`. `engine` picks Diffrax
    or the `lax.scan` path (same numbers); `adjoint` and `checkpoints` apply to Diffrax (see the
    module docstring); the scan path always stores every stage for reverse mode.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown ODE engine {engine!r}; choose one of {ENGINES}")
    if adjoint not in ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}; choose one of {ADJOINTS}")
    n = jax.tree_util.tree_leaves(u)[0].shape[0]
    if n < 2:
        ys = None
    elif engine == "scan":
        ys = _scan_rk4(field, y0, u, args)
    else:
        ys = _diffrax_rk4(field, y0, u, args, adjoint, checkpoints)
    if ys is None:
        return jax.tree_util.tree_map(lambda a: a[None], y0)
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)


def replace_static(module, **changes):
    """A copy of an Equinox module with some static fields (engine, adjoint) changed; the
    arrays are shared. (`eqx.tree_at` reaches only leaves, and the models' `__init__` builds
    new parameters.)"""
    new = object.__new__(type(module))
    for f in dataclasses.fields(module):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(module, f.name)))
    return new
