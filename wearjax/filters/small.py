"""Small-matrix kernels of the linear-Gaussian filters (`linear`, `parallel`), written for
single (unbatched) arrays: products, Cholesky factors and triangular solves as elementwise
arithmetic up to 8 x 8, the library routines above."""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float


def symmetrise(a: Float[Array, "... n n"]) -> Float[Array, "... n n"]:
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


# The matrices of a state-space model are tiny. On CPU, XLA turns a dot of tiny matrices into a
# runtime call per matrix (per series under vmap), and a Cholesky factorisation or triangular
# solve into a LAPACK call. Up to this size the kernels below are written as elementwise
# arithmetic instead, which XLA fuses into the scan body: at T = 7200 the serial filter runs
# 4x faster at D = 4 and the smoother 10x faster at D = 2 (benchmarks/filters.py). Larger
# matrices use the library routines.
_SMALL = 8


def matmul(a: Float[Array, "... n k"], b: Float[Array, "... k m"]) -> Float[Array, "... n m"]:
    """a @ b over the last two axes (leading axes must match)."""
    if a.shape[-1] > _SMALL:
        return a @ b
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def matvec(a: Float[Array, "... n k"], x: Float[Array, "... k"]) -> Float[Array, "... n"]:
    """a @ x for matrices and vectors with matching leading axes."""
    if a.shape[-1] > _SMALL:
        return jnp.einsum("...ij,...j->...i", a, x)
    return jnp.sum(a * x[..., None, :], axis=-1)


def transpose(a: Float[Array, "... n m"]) -> Float[Array, "... m n"]:
    return jnp.swapaxes(a, -1, -2)


def propagate_cov(
    a: Float[Array, "... n k"], cov: Float[Array, "... k k"]
) -> Float[Array, "... n n"]:
    """a cov a^T: the covariance of a x when x has covariance cov."""
    return matmul(matmul(a, cov), transpose(a))


def cholesky_lower(a: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """Lower Cholesky factor L (L L^T = a) of a symmetric positive-definite matrix; NaN where
    `a` is not positive definite, as `jnp.linalg.cholesky`. Cholesky-Banachiewicz, unrolled."""
    n = a.shape[-1]
    if n > _SMALL:
        return jnp.linalg.cholesky(a)
    zero = jnp.zeros_like(a[0, 0])
    low = [[zero] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            rest = sum((low[i][k] * low[j][k] for k in range(j)), start=zero)
            low[i][j] = jnp.sqrt(a[i, i] - rest) if i == j else (a[i, j] - rest) / low[j][j]
    return jnp.stack([jnp.stack(row) for row in low])


def _substitute(chol: Array, b: Array, *, transposed: bool) -> Array:
    """L^{-1} b (forward substitution) or L^{-T} b (backward) for lower-triangular L and b of
    shape [n] or [n, k], unrolled."""
    n = chol.shape[-1]
    order = range(n - 1, -1, -1) if transposed else range(n)
    x: dict[int, Array] = {}
    for i in order:
        acc = b[i]
        for k in x:  # the unknowns already solved for
            acc = acc - (chol[k, i] if transposed else chol[i, k]) * x[k]
        x[i] = acc / chol[i, i]
    return jnp.stack([x[i] for i in range(n)])


def solve_lower(chol: Float[Array, "n n"], b: Float[Array, "n ..."]) -> Float[Array, "n ..."]:
    """L^{-1} b for a lower-triangular L."""
    if chol.shape[-1] > _SMALL:
        return jsl.solve_triangular(chol, b, lower=True)
    return _substitute(chol, b, transposed=False)


def cho_solve_lower(chol: Float[Array, "n n"], b: Float[Array, "n ..."]) -> Float[Array, "n ..."]:
    """(L L^T)^{-1} b from the lower Cholesky factor L."""
    if chol.shape[-1] > _SMALL:
        return jsl.cho_solve((chol, True), b)
    return _substitute(chol, _substitute(chol, b, transposed=False), transposed=True)
