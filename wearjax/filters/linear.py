"""Exact linear-Gaussian filtering and smoothing with serial scans: Kalman filter and RTS smoother.

The model, with time t = 0 .. T-1 indexing the observations:

    x_0     ~ N(m0, P0)                      the state at the FIRST observation
    y_t     = H_t x_t + r_t,        r_t ~ N(0, R_t)
    x_{t+1} = F_t x_t + b_t + q_t,  q_t ~ N(0, Q_t)

Each of `F, Q, H, R, b` is either time-invariant or carries a leading time axis of length T.
`F_t, Q_t, b_t` move the state from step t to step t+1, so their last entries (t = T-1) are
never used. Where `mask[t]` is False the update at t is skipped (sensor dropout): the filtered
distribution at t is the predicted one and the step adds nothing to the log-likelihood.
Observations at masked steps may hold anything, NaN included. A non-finite observation where
`mask` is True, a non-finite parameter, or a covariance that is not positive semi-definite (R:
positive definite) is an error naming the field: `WearjaxDataError` on concrete arrays, and
under `jit`, `vmap` or `grad` an `eqx.error_if` error with the same one-line message.

Numerics. Every solve against a covariance goes through its Cholesky factor and triangular
substitution (written out elementwise for matrices up to 8 x 8, `filters.small`; LAPACK above);
no matrix is inverted. The filter updates the covariance in Joseph form,
`(I - K H) P (I - K H)^T + K R K^T`, a sum of positive semi-definite terms that stays symmetric
positive semi-definite under rounding where the textbook `(I - K H) P` does not. The RTS smoother
uses the matching form `(I - G F) P (I - G F)^T + G (Q + P^s_{t+1}) G^T`, algebraically equal to
`P + G (P^s_{t+1} - P^-_{t+1}) G^T` but free of the cancellation in the difference. Every
covariance is symmetrised after it is formed. See Sarkka, "Bayesian Filtering and Smoothing"
(2013), Theorem 4.2 (Kalman filter) and Theorem 8.2 (RTS smoother).

Gradients through the smoother at an exactly singular covariance (P0 = 0, or Q with a
noiseless component) miss how F, Q or P0 opening that direction moves the smoothed moments:
the gain there multiplies a zero in the forward pass, so its derivative is lost (the values
are exact; the filter and its log-likelihood's gradients are unaffected). To differentiate the
smoother, give such a component a tiny variance (1e-12 in float64 matches finite differences of
the dense posterior: tested).

`parallel.py` computes the same quantities with `jax.lax.associative_scan`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from wearjax.errors import WearjaxDataError
from wearjax.filters.checks import check_values
from wearjax.filters.small import (
    cho_solve_lower,
    cholesky_lower,
    matmul,
    matvec,
    propagate_cov,
    solve_lower,
    symmetrise,
)


def _as_array_or_none(x: ArrayLike | None) -> Array | None:
    return None if x is None else jnp.asarray(x)


class LinearGaussianParams(eqx.Module):
    """Parameters of a linear-Gaussian state-space model (time convention in the module docs).

    `m0 [D]` and `P0 [D, D]` describe the state at the first observation. `F [D, D]`,
    `Q [D, D]`, `H [M, D]`, `R [M, M]` and the optional transition offset `b [D]` may each
    carry a leading time axis `[T, ...]`; `F_t, Q_t, b_t` map step t to step t+1.
    `P0, Q, R` are covariances (only their symmetric part is used); `R` must be positive
    definite, and so must each predicted covariance for the smoother.
    """

    m0: Float[Array, " state"] = eqx.field(converter=jnp.asarray)
    P0: Float[Array, "state state"] = eqx.field(converter=jnp.asarray)
    F: Float[Array, "... state state"] = eqx.field(converter=jnp.asarray)
    Q: Float[Array, "... state state"] = eqx.field(converter=jnp.asarray)
    H: Float[Array, "... obs state"] = eqx.field(converter=jnp.asarray)
    R: Float[Array, "... obs obs"] = eqx.field(converter=jnp.asarray)
    b: Float[Array, "... state"] | None = eqx.field(default=None, converter=_as_array_or_none)


class FilterResult(NamedTuple):
    """Kalman filter output. `filtered_*[t]`: p(x_t | y_0..y_t); `predicted_*[t]`:
    p(x_t | y_0..y_{t-1}) (so `predicted_*[0]` is `m0, P0`); `log_likelihood`:
    log p(y_0..y_{T-1}) over the observed steps."""

    filtered_means: Float[Array, "time state"]
    filtered_covs: Float[Array, "time state state"]
    predicted_means: Float[Array, "time state"]
    predicted_covs: Float[Array, "time state state"]
    log_likelihood: Float[Array, ""]


class SmootherResult(NamedTuple):
    """RTS smoother output. `smoothed_*[t]`: p(x_t | y_0..y_{T-1}); the filtered moments and
    the log-likelihood are those of `FilterResult`."""

    smoothed_means: Float[Array, "time state"]
    smoothed_covs: Float[Array, "time state state"]
    filtered_means: Float[Array, "time state"]
    filtered_covs: Float[Array, "time state state"]
    log_likelihood: Float[Array, ""]


# ---------------------------------------------------------------------------------------------
# Input checks and normalisation, shared with parallel.py. Shapes are checked at trace time.

_CORE_NDIM = {"F": 2, "Q": 2, "H": 2, "R": 2, "b": 1}


def prepare_inputs(
    params: LinearGaussianParams, ys: ArrayLike, mask: ArrayLike | None
) -> tuple[LinearGaussianParams, Array, Array]:
    """Check shapes and dtypes, cast everything to one float dtype and fill `b` and `mask`.

    Raises `WearjaxDataError` naming the argument at fault. The returned parameters keep their
    time-invariant or time-varying form; `b` is zeros `[D]` when it was None.
    """
    ys = jnp.asarray(ys)
    if ys.ndim != 2:
        raise WearjaxDataError(
            f"ys must have shape [time, obs] (use ys[:, None] for a scalar observation), "
            f"got shape {ys.shape}"
        )
    t, m = ys.shape
    if t == 0:
        raise WearjaxDataError("ys has no time steps (shape [0, obs]); give at least one")
    m0 = jnp.asarray(params.m0)
    if m0.ndim != 1:
        raise WearjaxDataError(f"params.m0 must have shape [state], got shape {m0.shape}")
    d = m0.shape[0]
    expected = {
        "P0": (d, d),
        "F": (d, d),
        "Q": (d, d),
        "H": (m, d),
        "R": (m, m),
        "b": (d,),
    }
    fields = {name: getattr(params, name) for name in expected}
    if fields["b"] is None:
        fields["b"] = jnp.zeros((d,), m0.dtype)
    for name, core in expected.items():
        value = jnp.asarray(fields[name])
        ok = value.shape == core or (name != "P0" and value.shape == (t, *core))
        if not ok:
            allowed = f"{core}" if name == "P0" else f"{core} or {(t, *core)}"
            raise WearjaxDataError(
                f"params.{name} must have shape {allowed} for state size {d}, {m} observed "
                f"channels and {t} time steps (from params.m0 and ys), got shape {value.shape}"
            )
        fields[name] = value

    if mask is None:
        mask = jnp.ones((t,), bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != (t,):
            raise WearjaxDataError(
                f"mask must have shape [time] = ({t},) to match ys of shape {ys.shape}, "
                f"got shape {mask.shape}"
            )
        if mask.dtype != jnp.bool_:
            raise WearjaxDataError(
                f"mask must be boolean (True where y is observed), got dtype {mask.dtype}"
            )

    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(ys, m0, *fields.values())
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    ys = ys.astype(dtype)
    cast = {name: value.astype(dtype) for name, value in fields.items()}
    # Only the symmetric part of a covariance is used, so its gradient is symmetric too and
    # the serial and parallel paths agree on it.
    cast["P0"], cast["Q"], cast["R"] = (symmetrise(cast[n]) for n in ("P0", "Q", "R"))
    params = LinearGaussianParams(m0=m0.astype(dtype), **cast)
    return check_values(params, ys, mask)


def is_time_varying(params: LinearGaussianParams, name: str) -> bool:
    """True when field `name` of prepared parameters carries a leading time axis."""
    return getattr(params, name).ndim == _CORE_NDIM[name] + 1


def broadcast_in_time(params: LinearGaussianParams, t: int) -> LinearGaussianParams:
    """Prepared parameters with `F, Q, H, R, b` all given per step (leading axis T)."""
    out = {}
    for name in _CORE_NDIM:
        value = getattr(params, name)
        out[name] = (
            value if is_time_varying(params, name) else jnp.broadcast_to(value, (t, *value.shape))
        )
    return LinearGaussianParams(m0=params.m0, P0=params.P0, **out)


# ---------------------------------------------------------------------------------------------
# One-step kernels, written for single (unbatched) arrays.


def innovation_log_density(
    innovation: Float[Array, " obs"], chol_s: Float[Array, "obs obs"]
) -> Float[Array, ""]:
    """log N(innovation; 0, S) from the lower Cholesky factor of S."""
    w = solve_lower(chol_s, innovation)
    m = innovation.shape[0]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_s)))
    return -0.5 * (jnp.sum(w * w) + log_det + m * math.log(2.0 * math.pi))


def kalman_update(
    mean: Float[Array, " state"],
    cov: Float[Array, "state state"],
    H: Float[Array, "obs state"],
    R: Float[Array, "obs obs"],
    y: Float[Array, " obs"],
) -> tuple[Float[Array, " state"], Float[Array, "state state"], Float[Array, ""]]:
    """Condition N(mean, cov) on y = H x + N(0, R): Joseph-form covariance.

    Returns the posterior mean, covariance and log N(y; H mean, H cov H^T + R).
    """
    chol_s = cholesky_lower(symmetrise(propagate_cov(H, cov) + R))
    gain = cho_solve_lower(chol_s, matmul(H, cov)).T  # cov H^T S^{-1}
    innovation = y - matvec(H, mean)
    i_kh = jnp.eye(mean.shape[0], dtype=mean.dtype) - matmul(gain, H)
    post_cov = symmetrise(propagate_cov(i_kh, cov) + propagate_cov(gain, R))
    post_mean = mean + matvec(gain, innovation)
    return post_mean, post_cov, innovation_log_density(innovation, chol_s)


def masked_kalman_update(
    mean: Float[Array, " state"],
    cov: Float[Array, "state state"],
    H: Float[Array, "obs state"],
    R: Float[Array, "obs obs"],
    y: Float[Array, " obs"],
    observed: Bool[Array, ""],
) -> tuple[Float[Array, " state"], Float[Array, "state state"], Float[Array, ""]]:
    """`kalman_update` where `observed`, else the prior unchanged and log-density 0."""
    # A finite stand-in keeps the unused branch (and its gradient) free of NaN.
    y = jnp.where(observed, y, jnp.zeros_like(y))
    post_mean, post_cov, log_density = kalman_update(mean, cov, H, R, y)
    return (
        jnp.where(observed, post_mean, mean),
        jnp.where(observed, post_cov, cov),
        jnp.where(observed, log_density, jnp.zeros_like(log_density)),
    )


def kalman_predict(
    mean: Float[Array, " state"],
    cov: Float[Array, "state state"],
    F: Float[Array, "state state"],
    Q: Float[Array, "state state"],
    b: Float[Array, " state"],
) -> tuple[Float[Array, " state"], Float[Array, "state state"]]:
    """Push N(mean, cov) through x' = F x + b + N(0, Q)."""
    return matvec(F, mean) + b, symmetrise(propagate_cov(F, cov) + Q)


def smoother_gain(
    filtered_cov: Float[Array, "state state"],
    predicted_cov: Float[Array, "state state"],
    F: Float[Array, "state state"],
) -> Float[Array, "state state"]:
    """RTS gain G = P_t F_t^T (P^-_{t+1})^{-1}, through a Cholesky factor of P^-_{t+1}.

    P^-_{t+1} is singular where a state component is known exactly (P0 = 0, or Q singular with
    a noiseless component the transition keeps apart), which the input checks accept: a pivot
    of its Cholesky factor is then zero, rounding or NaN. Only then (a pivot^2 within 64 eps,
    the checks' tolerance, of its diagonal entry, or a factor that is not finite) is the
    diagonal raised, by 64 eps x trace(P^-) (x 1 where P^- is zero throughout: P0 = Q = 0), and
    factored again: in the null directions P_t F_t^T is zero too, so the gain's entries there
    multiply terms that are zero. Any other covariance is factored as it is."""
    d = predicted_cov.shape[-1]
    eps = 64 * jnp.finfo(predicted_cov.dtype).eps
    plain = cholesky_lower(predicted_cov)
    pivot = jnp.square(jnp.diagonal(plain))
    failed = ~jnp.all(jnp.isfinite(plain)) | jnp.any(pivot <= eps * jnp.diagonal(predicted_cov))
    boost = jnp.where(jax.lax.stop_gradient(failed), eps, 0.0)
    trace = jnp.trace(predicted_cov)
    boost = jax.lax.stop_gradient(boost * jnp.where(trace > 0, trace, 1.0))
    chol = cholesky_lower(predicted_cov + boost * jnp.eye(d, dtype=predicted_cov.dtype))
    return cho_solve_lower(chol, matmul(F, filtered_cov)).T


def smoother_cov(
    gain: Float[Array, "state state"],
    filtered_cov: Float[Array, "state state"],
    F: Float[Array, "state state"],
    Q: Float[Array, "state state"],
    next_cov: Float[Array, "state state"],
) -> Float[Array, "state state"]:
    """(I - G F) P (I - G F)^T + G (Q + next_cov) G^T, symmetrised (module docs)."""
    i_gf = jnp.eye(F.shape[0], dtype=F.dtype) - matmul(gain, F)
    return symmetrise(propagate_cov(i_gf, filtered_cov) + propagate_cov(gain, Q + next_cov))


# ---------------------------------------------------------------------------------------------
# Public filters.


def _split_in_time(params: LinearGaussianParams, names: tuple[str, ...]):
    """Time-varying fields go through the scan as inputs, the others are closed over."""
    scanned = {n: getattr(params, n) for n in names if is_time_varying(params, n)}
    constant = {n: getattr(params, n) for n in names if n not in scanned}
    return scanned, constant


@jax.jit  # one program when called eagerly, not one per operation around the scans
def _filter(params: LinearGaussianParams, ys: Array, mask: Array) -> FilterResult:
    scanned, constant = _split_in_time(params, ("F", "Q", "H", "R", "b"))

    def step(carry, inputs):
        mean, cov = carry
        y, observed, per_step = inputs
        p = constant | per_step
        f_mean, f_cov, log_density = masked_kalman_update(mean, cov, p["H"], p["R"], y, observed)
        next_mean, next_cov = kalman_predict(f_mean, f_cov, p["F"], p["Q"], p["b"])
        return (next_mean, next_cov), (f_mean, f_cov, mean, cov, log_density)

    _, (f_means, f_covs, p_means, p_covs, log_densities) = jax.lax.scan(
        step, (params.m0, params.P0), (ys, mask, scanned)
    )
    return FilterResult(f_means, f_covs, p_means, p_covs, jnp.sum(log_densities))


def kalman_filter(
    params: LinearGaussianParams,
    ys: Float[Array, "time obs"],
    mask: Bool[Array, " time"] | None = None,
) -> FilterResult:
    """Kalman filter over `ys [T, M]` in one `lax.scan` (Sarkka 2013, Theorem 4.2).

    `mask [T]` is True where `ys[t]` is observed (default: everywhere); a masked step keeps the
    prediction and adds nothing to the log-likelihood. Computes in the dtype the inputs promote
    to. Time convention, masking and numerics: module docstring.
    """
    params, ys, mask = prepare_inputs(params, ys, mask)
    return _filter(params, ys, mask)


def kalman_smoother(
    params: LinearGaussianParams,
    ys: Float[Array, "time obs"],
    mask: Bool[Array, " time"] | None = None,
) -> SmootherResult:
    """Rauch-Tung-Striebel smoother: `kalman_filter`, then one reverse `lax.scan` (Sarkka 2013,
    Theorem 8.2; covariance in the Joseph-like form of the module docstring).

    `smoothed_*[t]` are the moments of p(x_t | all observed y). Arguments as `kalman_filter`.
    """
    return _smoother(*prepare_inputs(params, ys, mask))


@jax.jit
def _smoother(params: LinearGaussianParams, ys: Array, mask: Array) -> SmootherResult:
    filtered = _filter(params, ys, mask)
    scanned, constant = _split_in_time(params, ("F", "Q"))
    scanned = {n: v[:-1] for n, v in scanned.items()}

    def step(carry, inputs):
        next_mean, next_cov = carry
        f_mean, f_cov, p_mean, p_cov, per_step = inputs
        p = constant | per_step
        gain = smoother_gain(f_cov, p_cov, p["F"])
        mean = f_mean + matvec(gain, next_mean - p_mean)
        cov = smoother_cov(gain, f_cov, p["F"], p["Q"], next_cov)
        return (mean, cov), (mean, cov)

    last = (filtered.filtered_means[-1], filtered.filtered_covs[-1])
    inputs = (
        filtered.filtered_means[:-1],
        filtered.filtered_covs[:-1],
        filtered.predicted_means[1:],
        filtered.predicted_covs[1:],
        scanned,
    )
    _, (means, covs) = jax.lax.scan(step, last, inputs, reverse=True)
    return SmootherResult(
        smoothed_means=jnp.concatenate([means, last[0][None]]),
        smoothed_covs=jnp.concatenate([covs, last[1][None]]),
        filtered_means=filtered.filtered_means,
        filtered_covs=filtered.filtered_covs,
        log_likelihood=filtered.log_likelihood,
    )
