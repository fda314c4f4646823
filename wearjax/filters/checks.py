"""Value checks of the linear-Gaussian filters' inputs (`linear.prepare_inputs` calls
`check_values`): finite observations where observed, finite parameters, covariances that are
positive (semi-)definite. Each failure names the field in one line.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from wearjax.errors import WearjaxDataError

# Value checks. Concrete inputs are checked in NumPy and raise `WearjaxDataError`; traced ones
# (under `jit`, `vmap`, `grad`) through `eqx.error_if`, which raises when the program runs with
# the same one-line message. A covariance may be singular (a noiseless state component), so
# P0 and Q need only be positive semi-definite, to a rounding tolerance; R must be positive
# definite, as the innovation covariance needs it wherever H P H^T is singular.

_OBSERVED = (
    "ys is not finite (NaN or inf) at a step where mask is True; "
    "set mask[t] = False where y_t is missing"
)


def _covariance_message(name: str, strict: bool) -> str:
    need = "positive definite" if strict else "symmetric positive semi-definite"
    return (
        f"params.{name} must be a finite {need} covariance (every eigenvalue "
        f"{'> 0' if strict else '>= 0'}); build it as L @ L.T + eps * I or from variances"
    )


def _bad_covariance(a, strict: bool, xp):
    """True where a covariance (or any of a stack) is not finite, has a negative diagonal entry
    beyond rounding (with `strict`, a non-positive one), or has a negative (with `strict`,
    non-positive) eigenvalue beyond rounding in its correlation form `D^-1/2 A D^-1/2` (D its
    diagonal; 1 where that is zero or rounding below it, whose row must then be zero): judged
    per scale, so an HR variance in bpm^2 beside an accelerometer's in g^2 is not read as
    rounding. Rounding is 64 eps of the largest variance. `xp`: numpy or jax.numpy."""
    finite = xp.all(xp.isfinite(a))
    safe = xp.where(xp.isfinite(a), a, 0.0)
    diag = xp.diagonal(safe, axis1=-2, axis2=-1)
    eps = 64 * xp.finfo(safe.dtype).eps
    rounding = eps * xp.max(xp.abs(diag), axis=-1, keepdims=True)
    zero = diag <= 0  # a noiseless component (a negative variance within rounding, below)
    negative = xp.any(diag <= 0) if strict else xp.any(diag < -rounding)
    s = 1 / xp.sqrt(xp.where(zero, 1.0, xp.abs(diag)))
    corr = safe * s[..., :, None] * s[..., None, :]
    eig = xp.linalg.eigvalsh(0.5 * (corr + xp.swapaxes(corr, -1, -2)))
    tol = eps * xp.max(xp.abs(eig), axis=-1, keepdims=True)
    low = eig <= tol if strict else eig < -tol
    coupled = zero[..., :, None] & (xp.abs(corr) > eps)  # a zero variance must not covary
    return xp.logical_not(finite) | negative | xp.any(low) | xp.any(coupled)


def check_values(params, ys: Array, mask: Array):
    """Finite observations where `mask` is True; finite m0, F, H, b; covariances as above."""

    def observed_not_finite(xp, y, m):
        return xp.any(xp.logical_not(xp.isfinite(y)) & m[:, None])

    def not_finite(xp, a, _):
        return xp.logical_not(xp.all(xp.isfinite(a)))

    checks = [(ys, observed_not_finite, _OBSERVED)]
    for name in ("m0", "F", "H", "b"):
        message = f"params.{name} is not finite (NaN or inf); check how it was built"
        checks.append((getattr(params, name), not_finite, message))
    for name, strict in (("P0", False), ("Q", False), ("R", True)):
        bad = lambda xp, a, _, strict=strict: _bad_covariance(a, strict, xp)  # noqa: E731
        checks.append((getattr(params, name), bad, _covariance_message(name, strict)))

    leaves = jax.tree_util.tree_leaves((ys, mask, params))
    if not any(isinstance(x, jax.core.Tracer) for x in leaves):
        m = np.asarray(mask)
        for value, bad, message in checks:
            a = np.asarray(value)  # in its own precision, so rounding is judged as jit judges it
            if bad(np, a.astype(np.promote_types(a.dtype, np.float32)), m):
                raise WearjaxDataError(message)
        return params, ys, mask
    # on the parameters too: a caller that reads only covariances, which do not depend on
    # `ys`, would otherwise let XLA drop the checks as dead code (until 2026-12-07)
    for value, bad, message in checks:
        pred = bad(jnp, jax.lax.stop_gradient(value), mask)
        params, ys = eqx.error_if((params, ys), pred, message)
    return params, ys, mask
