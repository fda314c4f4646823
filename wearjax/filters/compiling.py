"""Compiler options for programs that run the filters on CPU.

XLA's CPU backend hands some reductions and elementwise work to a library (its "YNN" fusions)
at the cost of a call each. In the filters' small-matrix arithmetic that call costs more than
the work: inside the serial scan's step when it runs under `vmap` over series that each have
their own mask (the covariances then differ per series), and in the parallel scans' operations
over all T elements, batched or not. At T = 7200 (`benchmarks/filters.py`, its "options"
columns) the D = 4 serial smoother over 256 series ran 5.5x faster with the library kept to
matrix products, and the parallel filter at D = 2 on one series 4.8x faster; the serial
functions at D = 2 did not change, and on one series at D = 4 they ran 0.83-0.88x as fast in
that run (unchanged in an earlier one). The option is set per compiled program, so it is the
caller's to pass:

    run = jax.jit(jax.vmap(kalman_smoother, in_axes=(None, 0, 0)),
                  compiler_options=compiler_options())

(`eqx.filter_jit(f, compiler_options=compiler_options())` passes them on to `jax.jit`.)

It changes how XLA compiles the whole program, not what it computes, and it is no switch for
other models: an HR GRU model's loss and gradient ran 6-12% slower with it
(`benchmarks/train_split.py`, one run each). The option is experimental in XLA: where the
installed XLA does not know it, or JAX's default backend is not the CPU, `compiler_options()`
returns no options and the program compiles as before (on a GPU or TPU there is nothing to
gain: the library fusions are the CPU backend's).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
_DOT_ONLY = "LIBRARY_FUSION_TYPE_DOT"


@functools.cache
def _accepted() -> bool:
    if jax.default_backend() != "cpu":
        return False
    probe = jax.jit(jnp.negative).lower(jnp.zeros((), jnp.float32))
    try:
        probe.compile(compiler_options={_OPTION: _DOT_ONLY})
    except RuntimeError:  # JAX's runtime error for an option or value XLA does not know
        return False
    return True


def compiler_options() -> dict[str, str]:
    """Options for `jax.jit(..., compiler_options=...)` (or `.compile(compiler_options=...)`)
    of a program that runs the filters on CPU: XLA's library fusions kept to matrix products.
    Empty where they do not apply: JAX's default backend is not the CPU, or the installed XLA
    does not know the option. A new dict each call. The first call compiles a one-element
    program to ask XLA, so it starts JAX's backends: set what must precede that (e.g.
    `jax_num_cpu_devices`) first."""
    return {_OPTION: _DOT_ONLY} if _accepted() else {}
