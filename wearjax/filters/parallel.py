"""Kalman filter and RTS smoother in O(log T) depth with `jax.lax.associative_scan`.

Sarkka & Garcia-Fernandez (2021), "Temporal parallelization of Bayesian smoothers", IEEE TAC
66(1). Same model, time convention and masking as `wearjax.filters.linear`, and the same
results as `kalman_filter` / `kalman_smoother` up to rounding.

Filtering. Step t is the element (A, b, C, eta, J) of the conditional p(x_t | x_{t-1}, y_t) =
N(A x_{t-1} + b, C) together with the likelihood of y_t as a function of x_{t-1}, proportional to
N_I(x_{t-1}; eta, J) (information form), as in the paper's parallel Kalman filter. Step 0 has no
predecessor: its prior N(m0, P0) takes the place of the transition (F = 0, b = m0, Q = P0),
which gives the paper's first element. A masked step's element is the pure prediction
(A, b, C, eta, J) = (F, b, Q, 0, 0). Elements combine by the paper's rule; the b and C of the
prefix that ends at t are the filtered mean and covariance. The log-likelihood is summed from
the predictive distributions N(H_t m^-_t, H_t P^-_t H_t^T + R_t), recomputed in parallel from
the filtered moments, so it equals the serial one.

Smoothing. Step t < T-1 is the element (E, g, L) of p(x_t | x_{t+1}, y_0..y_t) =
N(E x_{t+1} + g, L), the last step is (0, m_{T-1}, P_{T-1}); they are combined from the end by a
reverse scan, as in the paper's parallel RTS smoother. L uses the Joseph-like form of `linear.py`.

The filtering combination solves against `I + C_i J_j`, which is not symmetric: one
elimination with partial pivoting per combination (`solve`, one stacked right-hand side,
no explicit inverse), written out as elementwise arithmetic up to 8 x 8 like the small kernels
of `linear.py`; the products too take forms suited to the scan's `[T, n, n]` arrays (below).
Against a LAPACK LU and `linear.py`'s products they run 2-4x faster on CPU. The depth is
O(log T), the work O(T) combinations of D x D matrices, each a few times the cost of a serial
step: it is meant for parallel hardware (GPU/TPU) and long sequences. On CPU the serial scan is
1.5-13x faster, and `associative_scan` unrolls ~2 log2(T) levels into the program, so this
compiles in 5-33 s where the serial scan takes ~1 s (benchmarks/README.md).

Where a step's process noise Q is singular (a component with no process noise), both functions
run the serial scan instead (`noiseless`, a `lax.cond`): the smoother's elements then carry
gains of F^-1 along that component, whose products over a stretch overflow where F contracts
(NaN smoothed means at T = 7200 in float64 with a damped velocity, at T = 1000 in float32),
and the filter's elements lose the covariance in float32 where F expands (a log-likelihood off
by 45 at T = 1500). Until 2026-12-07 they ran the associative scan there too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from wearjax.filters.checks import _bad_covariance
from wearjax.filters.linear import (
    FilterResult,
    LinearGaussianParams,
    SmootherResult,
    _filter,
    _smoother,
    broadcast_in_time,
    innovation_log_density,
    is_time_varying,
    kalman_predict,
    prepare_inputs,
    smoother_cov,
    smoother_gain,
)
from wearjax.filters.small import (
    _SMALL,
    cho_solve_lower,
    cholesky_lower,
    propagate_cov,
    symmetrise,
    transpose,
)

# The associative scan applies each operation to all T elements at once, on `[T, n, n]` arrays,
# not inside a scan step as `linear.py` does, and there other product forms are faster on CPU
# (benchmarks/README.md, "The associative scan's own small-matrix kernels"): `@` for n <= 2,
# which XLA turns into fused elementwise work (the filter 3.2x faster than with `linear.matmul`'s
# broadcast-and-sum; 1.5x slower at n = 4, where it calls a kernel per matrix), and above that a
# sum of n outer products, with no [T, n, n, n] intermediate (1.4-2x faster than
# broadcast-and-sum at n = 4, though it compiles 1.6-1.7x longer).


def matmul(a: Float[Array, "... n k"], b: Float[Array, "... k m"]) -> Float[Array, "... n m"]:
    k = a.shape[-1]
    if k <= 2 or k > _SMALL:
        return a @ b
    return sum(a[..., :, i, None] * b[..., None, i, :] for i in range(k))


def matvec(a: Float[Array, "... n k"], x: Float[Array, "... k"]) -> Float[Array, "... n"]:
    k = a.shape[-1]
    if k <= 2 or k > _SMALL:
        return jnp.einsum("...ij,...j->...i", a, x)
    return sum(a[..., :, i] * x[..., i, None] for i in range(k))


def solve(a: Float[Array, "... n n"], b: Float[Array, "... n k"]) -> Float[Array, "... n k"]:
    """a^{-1} b for a general (not symmetric) square `a`, leading axes matching: Gauss-Jordan
    elimination with partial pivoting, unrolled (the row with the largest pivot is swapped in
    with `jnp.where`, so the choice stays elementwise and fuses), as `jnp.linalg.solve`'s LU
    does with its own pivots; the library routine above 8 x 8."""
    n = a.shape[-1]
    if n > _SMALL:
        return jnp.linalg.solve(a, b)
    rows = list(jnp.unstack(jnp.concatenate([a, b], axis=-1), axis=-2))  # [..., n + k] each
    for col in range(n):
        for r in range(col + 1, n):  # bring the largest |pivot| of rows col..n-1 to row col
            swap = (jnp.abs(rows[r][..., col]) > jnp.abs(rows[col][..., col]))[..., None]
            rows[col], rows[r] = (
                jnp.where(swap, rows[r], rows[col]),
                jnp.where(swap, rows[col], rows[r]),
            )
        rows[col] = rows[col] / rows[col][..., col : col + 1]
        for r in range(n):
            if r != col:
                rows[r] = rows[r] - rows[r][..., col : col + 1] * rows[col]
    return jnp.stack(rows, axis=-2)[..., n:]


# ---------------------------------------------------------------------------------------------
# Filtering elements.


def _filter_element(
    a_prior: Float[Array, "state state"],
    u: Float[Array, " state"],
    c_prior: Float[Array, "state state"],
    H: Float[Array, "obs state"],
    R: Float[Array, "obs obs"],
    y: Float[Array, " obs"],
    observed: Bool[Array, ""],
) -> tuple[Array, Array, Array, Array, Array]:
    """Element (A, b, C, eta, J) of step t from x_t | x_{t-1} ~ N(a_prior x_{t-1} + u, c_prior)."""
    # A finite stand-in keeps the unused branch (and its gradient) free of NaN.
    y = jnp.where(observed, y, jnp.zeros_like(y))
    chol_s = cholesky_lower(symmetrise(propagate_cov(H, c_prior) + R))
    gain = cho_solve_lower(chol_s, matmul(H, c_prior)).T
    residual = y - matvec(H, u)
    i_kh = jnp.eye(u.shape[0], dtype=u.dtype) - matmul(gain, H)
    h_a = matmul(H, a_prior)
    s_inv_h_a = cho_solve_lower(chol_s, h_a)
    a = matmul(i_kh, a_prior)
    b = u + matvec(gain, residual)
    c = symmetrise(propagate_cov(i_kh, c_prior) + propagate_cov(gain, R))
    eta = matvec(s_inv_h_a.T, residual)
    j = symmetrise(matmul(h_a.T, s_inv_h_a))
    return (
        jnp.where(observed, a, a_prior),
        jnp.where(observed, b, u),
        jnp.where(observed, c, c_prior),
        jnp.where(observed, eta, jnp.zeros_like(eta)),
        jnp.where(observed, j, jnp.zeros_like(j)),
    )


def _combine_filter(earlier, later):
    """Combination rule: the element of steps i..j from those of i..k (earlier) and k+1..j (later).

    With M = I + C1 J2 the paper's terms are A2 M^{-1} (A1, b1 + C1 eta2, C1) and, because C1
    and J2 are symmetric, A1^T (I + J2 C1)^{-1} = (M^{-1} A1)^T: one solve against M gives all.
    """
    a1, b1, c1, eta1, j1 = earlier
    a2, b2, c2, eta2, j2 = later
    d = c1.shape[-1]
    m = jnp.broadcast_to(jnp.eye(d, dtype=c1.dtype), c1.shape) + matmul(c1, j2)
    rhs = jnp.concatenate([a1, c1, (b1 + matvec(c1, eta2))[..., None]], axis=-1)
    x = solve(m, rhs)
    m_inv_a1, m_inv_c1, m_inv_b = x[..., :d], x[..., d : 2 * d], x[..., 2 * d]
    a = matmul(a2, m_inv_a1)
    b = matvec(a2, m_inv_b) + b2
    c = symmetrise(matmul(matmul(a2, m_inv_c1), transpose(a2)) + c2)
    eta = matvec(transpose(m_inv_a1), eta2 - matvec(j2, b1)) + eta1
    j = symmetrise(matmul(matmul(transpose(m_inv_a1), j2), a1) + j1)
    return a, b, c, eta, j


def _observation_log_density(
    mean: Float[Array, " state"],
    cov: Float[Array, "state state"],
    H: Float[Array, "obs state"],
    R: Float[Array, "obs obs"],
    y: Float[Array, " obs"],
    observed: Bool[Array, ""],
) -> Float[Array, ""]:
    """log N(y; H mean, H cov H^T + R) where observed, else 0."""
    y = jnp.where(observed, y, jnp.zeros_like(y))
    chol_s = cholesky_lower(symmetrise(propagate_cov(H, cov) + R))
    log_density = innovation_log_density(y - matvec(H, mean), chol_s)
    return jnp.where(observed, log_density, jnp.zeros_like(log_density))


@jax.jit
def _parallel_filter(p: LinearGaussianParams, ys: Array, mask: Array) -> FilterResult:
    """Filter with prepared parameters `p` already broadcast in time. Jitted, as the smoother
    is: called eagerly, each of the scan's ~2 log2(T) levels would compile its slices and
    combinations one operation at a time (hundreds of programs for a short series)."""
    d = p.m0.shape[0]
    a_prior = jnp.concatenate([jnp.zeros((1, d, d), p.F.dtype), p.F[:-1]])
    u = jnp.concatenate([p.m0[None], p.b[:-1]])
    c_prior = jnp.concatenate([p.P0[None], p.Q[:-1]])
    elements = jax.vmap(_filter_element)(a_prior, u, c_prior, p.H, p.R, ys, mask)
    _, f_means, f_covs, _, _ = jax.lax.associative_scan(_combine_filter, elements)

    p_means, p_covs = jax.vmap(kalman_predict)(
        f_means[:-1], f_covs[:-1], p.F[:-1], p.Q[:-1], p.b[:-1]
    )
    p_means = jnp.concatenate([p.m0[None], p_means])
    p_covs = jnp.concatenate([p.P0[None], p_covs])
    log_densities = jax.vmap(_observation_log_density)(p_means, p_covs, p.H, p.R, ys, mask)
    return FilterResult(f_means, f_covs, p_means, p_covs, jnp.sum(log_densities))


def parallel_kalman_filter(
    params: LinearGaussianParams,
    ys: Float[Array, "time obs"],
    mask: Bool[Array, " time"] | None = None,
) -> FilterResult:
    """`kalman_filter` by an associative scan (Sarkka & Garcia-Fernandez 2021).

    Arguments, masking and results as `wearjax.filters.kalman_filter`; module docstring for
    the elements.
    """
    params, ys, mask = prepare_inputs(params, ys, mask)
    return _parallel_unless_noiseless(params, ys, mask, smooth=False)


# ---------------------------------------------------------------------------------------------
# Smoothing elements.


def _smoother_element(
    mean: Float[Array, " state"],
    cov: Float[Array, "state state"],
    F: Float[Array, "state state"],
    Q: Float[Array, "state state"],
    b: Float[Array, " state"],
) -> tuple[Array, Array, Array]:
    """Element (E, g, L) of x_t | x_{t+1}, y_0..y_t from the filtered N(mean, cov) at t."""
    pred_mean, pred_cov = kalman_predict(mean, cov, F, Q, b)
    gain = smoother_gain(cov, pred_cov, F)
    return gain, mean - matvec(gain, pred_mean), smoother_cov(gain, cov, F, Q, jnp.zeros_like(cov))


def _combine_smoother(later, earlier):
    """Smoother combination for a reverse scan: `later` covers steps k+1..j, `earlier` i..k."""
    e1, g1, l1 = earlier
    e2, g2, l2 = later
    return matmul(e1, e2), matvec(e1, g2) + g1, symmetrise(propagate_cov(e1, l2) + l1)


def parallel_kalman_smoother(
    params: LinearGaussianParams,
    ys: Float[Array, "time obs"],
    mask: Bool[Array, " time"] | None = None,
) -> SmootherResult:
    """`kalman_smoother` by two associative scans (Sarkka & Garcia-Fernandez 2021).

    Arguments, masking and results as `wearjax.filters.kalman_smoother`.
    """
    params, ys, mask = prepare_inputs(params, ys, mask)
    return _parallel_unless_noiseless(params, ys, mask, smooth=True)


def noiseless(Q: Float[Array | np.ndarray, "*time state state"]) -> bool | Bool[Array, ""]:
    """Whether some step's process noise is singular: not positive definite by the strict test
    the input checks give R (`checks._bad_covariance`, per scale). NumPy arrays are judged in
    NumPy, traced ones in JAX."""
    xp = jnp if isinstance(Q, jax.core.Tracer) else np
    if not Q.size:  # no step uses one (T = 1)
        return False
    found = _bad_covariance(xp.asarray(Q), True, xp)
    return found if xp is jnp else bool(found)


def _parallel_unless_noiseless(params, ys, mask, smooth: bool):
    """The associative scan, or the serial one where a used step's Q is singular (module
    docstring: the parallel elements overflow there). A concrete Q is judged here, so the
    program holds one of them; a traced one by a `lax.cond` (both compiled)."""
    Q = params.Q[:-1] if is_time_varying(params, "Q") else params.Q

    def parallel(p, y, m):
        return (_parallel_smoother if smooth else _parallel_filter)(
            broadcast_in_time(p, y.shape[0]), y, m
        )

    serial = _smoother if smooth else _filter
    if not isinstance(Q, jax.core.Tracer):
        return (serial if noiseless(Q) else parallel)(params, ys, mask)
    return jax.lax.cond(noiseless(Q), serial, parallel, params, ys, mask)


@jax.jit
def _parallel_smoother(p: LinearGaussianParams, ys: Array, mask: Array) -> SmootherResult:
    """Smoother with prepared parameters `p` already broadcast in time (jitted: see
    `_parallel_filter`)."""
    filtered = _parallel_filter(p, ys, mask)
    f_means, f_covs = filtered.filtered_means, filtered.filtered_covs
    d = f_means.shape[-1]
    gains, offsets, covs = jax.vmap(_smoother_element)(
        f_means[:-1], f_covs[:-1], p.F[:-1], p.Q[:-1], p.b[:-1]
    )
    elements = (
        jnp.concatenate([gains, jnp.zeros((1, d, d), gains.dtype)]),
        jnp.concatenate([offsets, f_means[-1:]]),
        jnp.concatenate([covs, f_covs[-1:]]),
    )
    _, means, covs = jax.lax.associative_scan(_combine_smoother, elements, reverse=True)
    return SmootherResult(
        smoothed_means=means,
        smoothed_covs=covs,
        filtered_means=f_means,
        filtered_covs=f_covs,
        log_likelihood=filtered.log_likelihood,
    )
