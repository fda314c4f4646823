"""Serial Kalman filter and RTS smoother against the dense Gaussian posterior of the joint model.

The reference forms the joint covariance of all states and observations with NumPy (float64)
and conditions on the observed entries; it shares no code with the filters.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from tests.conftest import raises_naming, tree_allclose
from wearjax.errors import WearjaxDataError
from wearjax.filters import (
    LinearGaussianParams,
    kalman_filter,
    kalman_smoother,
    parallel_kalman_smoother,
)

TOL = {"rtol": 1e-8, "atol": 1e-8}
# Equinox's runtime error under `jit` reaches the caller as XLA's RuntimeError, or, once an
# `eqx.filter_jit` program has run in the process (test_compiling), as the CPU callback's
# ValueError: the message is the same one line either way
JIT_ERRORS = (RuntimeError, ValueError)


# ---------------------------------------------------------------------------------------------
# Random models and the dense reference.


def random_model(seed, d, m, t, *, time_varying=False, offset=True):
    """Stable random model as a dict of float64 NumPy arrays, plus observations and a mask."""
    rng = np.random.default_rng(seed)

    def stable(n_steps):
        a = rng.normal(size=(n_steps, d, d))
        radius = np.abs(np.linalg.eigvals(a)).max(axis=-1)
        return 0.9 * a / radius[:, None, None]

    def spd(n_steps, n, scale):
        b = rng.normal(size=(n_steps, n, n))
        return scale * (b @ np.swapaxes(b, -1, -2) / n + 0.3 * np.eye(n))

    n_steps = t if time_varying else 1
    model = {
        "m0": rng.normal(size=d),
        "P0": spd(1, d, 1.0)[0],
        "F": stable(n_steps),
        "Q": spd(n_steps, d, 0.3),
        "H": rng.normal(size=(n_steps, m, d)),
        "R": spd(n_steps, m, 0.5),
        "b": rng.normal(size=(n_steps, d)) * 0.5,
    }
    if not time_varying:
        model = {k: v[0] if k not in ("m0", "P0") else v for k, v in model.items()}
    if not offset:
        model["b"] = None
    ys = rng.normal(size=(t, m)) * 2.0
    mask = rng.random(t) > 0.3
    mask[0] = False  # exercise the masked first step, where the prior is the prediction
    return model, ys, mask


def to_params(model, dtype=None):
    def cast(x):
        return None if x is None else jnp.asarray(x, dtype)

    return LinearGaussianParams(**{k: cast(v) for k, v in model.items()})


def at(x, t, core_ndim):
    return x[t] if x.ndim == core_ndim + 1 else x


def dense_joint(model, t_len):
    """Means and covariances of the stacked states x [T*D] and observations y [T*M]."""
    d = model["m0"].shape[0]
    b = model["b"] if model["b"] is not None else np.zeros(d)
    mu = [model["m0"]]
    for t in range(t_len - 1):
        mu.append(at(model["F"], t, 2) @ mu[-1] + at(b, t, 1))
    cov = np.zeros((t_len, t_len, d, d))
    cov[0, 0] = model["P0"]
    for t in range(t_len - 1):
        f = at(model["F"], t, 2)
        for s in range(t + 1):
            cov[t + 1, s] = f @ cov[t, s]
            cov[s, t + 1] = cov[t + 1, s].T
        cov[t + 1, t + 1] = f @ cov[t, t] @ f.T + at(model["Q"], t, 2)
    sxx = cov.transpose(0, 2, 1, 3).reshape(t_len * d, t_len * d)
    h = scipy.linalg.block_diag(*[at(model["H"], t, 2) for t in range(t_len)])
    r = scipy.linalg.block_diag(*[at(model["R"], t, 2) for t in range(t_len)])
    mx = np.concatenate(mu)
    return mx, sxx, h @ mx, h @ sxx @ h.T + r, sxx @ h.T


def dense_reference(model, ys, mask):
    """Filtered, predicted and smoothed moments and the log-likelihood by dense conditioning."""
    t_len, m = ys.shape
    d = model["m0"].shape[0]
    mx, sxx, my, syy, sxy = dense_joint(model, t_len)
    y = ys.reshape(-1)

    def posterior(observed_steps):
        idx = np.array([t * m + j for t in observed_steps for j in range(m)], dtype=int)
        if idx.size == 0:
            mean, cov = mx, sxx
        else:
            gain = np.linalg.solve(syy[np.ix_(idx, idx)], sxy[:, idx].T).T
            mean = mx + gain @ (y[idx] - my[idx])
            cov = sxx - gain @ sxy[:, idx].T
        blocks = [cov[t * d : (t + 1) * d, t * d : (t + 1) * d] for t in range(t_len)]
        return mean.reshape(t_len, d), np.stack(blocks)

    observed = np.flatnonzero(mask)
    filtered = [posterior(observed[observed <= t]) for t in range(t_len)]
    predicted = [posterior(observed[observed < t]) for t in range(t_len)]
    smoothed = posterior(observed)
    idx = np.array([t * m + j for t in observed for j in range(m)], dtype=int)
    if idx.size == 0:
        log_likelihood = 0.0
    else:
        log_likelihood = scipy.stats.multivariate_normal.logpdf(
            y[idx], my[idx], syy[np.ix_(idx, idx)]
        )
    return {
        "filtered_means": np.stack([f[0][t] for t, f in enumerate(filtered)]),
        "filtered_covs": np.stack([f[1][t] for t, f in enumerate(filtered)]),
        "predicted_means": np.stack([p[0][t] for t, p in enumerate(predicted)]),
        "predicted_covs": np.stack([p[1][t] for t, p in enumerate(predicted)]),
        "smoothed_means": smoothed[0],
        "smoothed_covs": smoothed[1],
        "log_likelihood": np.asarray(log_likelihood),
    }


def assert_matches_reference(filter_fn, smoother_fn, model, ys, mask):
    ref = dense_reference(model, ys, mask)
    params = to_params(model)
    filtered = jax.jit(filter_fn)(params, jnp.asarray(ys), jnp.asarray(mask))
    smoothed = jax.jit(smoother_fn)(params, jnp.asarray(ys), jnp.asarray(mask))
    for name, value in filtered._asdict().items():
        assert tree_allclose(value, ref[name], **TOL), name
    for name, value in smoothed._asdict().items():
        assert tree_allclose(value, ref[name], **TOL), name


# (D, M, T, masked, time-varying, offset): the systems every implementation is checked on.
CASES = [
    (2, 1, 12, False, False, True),
    (3, 2, 15, True, False, False),
    (4, 2, 10, True, True, True),
    (2, 1, 18, True, True, False),
]


@pytest.mark.parametrize("d, m, t, masked, time_varying, offset", CASES)
def test_serial_matches_dense_posterior(x64, d, m, t, masked, time_varying, offset):
    model, ys, mask = random_model(d * 100 + t, d, m, t, time_varying=time_varying, offset=offset)
    if not masked:
        mask = np.ones(t, bool)
    assert_matches_reference(kalman_filter, kalman_smoother, model, ys, mask)


def test_fully_masked_series_is_the_prior(x64):
    model, ys, _ = random_model(0, 3, 2, 15, offset=False)
    mask = np.zeros(15, bool)
    assert_matches_reference(kalman_filter, kalman_smoother, model, ys, mask)
    result = jax.jit(kalman_filter)(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    assert float(result.log_likelihood) == 0.0


def test_masked_step_is_the_pure_prediction(x64):
    model, ys, mask = random_model(1, 3, 1, 10)
    mask[:] = True
    mask[4] = False
    params = to_params(model)
    filter_jit = jax.jit(kalman_filter)
    result = filter_jit(params, jnp.asarray(ys), jnp.asarray(mask))
    assert tree_allclose(result.filtered_means[4], result.predicted_means[4], rtol=0, atol=0)
    assert tree_allclose(result.filtered_covs[4], result.predicted_covs[4], rtol=0, atol=0)
    f, q, b = model["F"], model["Q"], model["b"]
    m4, p4 = np.asarray(result.filtered_means[4]), np.asarray(result.filtered_covs[4])
    assert tree_allclose(result.predicted_means[5], f @ m4 + b, **TOL)
    assert tree_allclose(result.predicted_covs[5], f @ p4 @ f.T + q, **TOL)
    # Whatever y_4 holds, NaN included, changes nothing.
    ys_nan = ys.copy()
    ys_nan[4] = np.nan
    nan_result = filter_jit(params, jnp.asarray(ys_nan), jnp.asarray(mask))
    assert tree_allclose(nan_result, result, rtol=0, atol=0)


def test_nan_at_masked_steps_keeps_gradients_finite(x64):
    model, ys, mask = random_model(2, 2, 1, 12)
    ys[~mask] = np.nan
    params = to_params(model)

    def loss(p):
        return kalman_smoother(p, jnp.asarray(ys), jnp.asarray(mask)).log_likelihood

    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


def test_single_step(x64):
    model, ys, _ = random_model(4, 2, 1, 1)
    assert_matches_reference(kalman_filter, kalman_smoother, model, ys, np.ones(1, bool))


# ---------------------------------------------------------------------------------------------
# Transforms: grad against finite differences, vmap(grad), jit.


def symmetric_direction(rng, x):
    v = rng.normal(size=x.shape)
    return 0.5 * (v + np.swapaxes(v, -1, -2)) if x.ndim >= 2 and x.shape[-1] == x.shape[-2] else v


def weighted_outputs(fn, params, ys, mask, weights):
    """A scalar that depends on every output of `fn`: log-likelihood, means and covariances."""
    outputs = fn(params, ys, mask)
    return sum(jnp.sum(w * x) for w, x in zip(weights, outputs, strict=True))


def log_likelihood(fn, params, ys, mask):
    return fn(params, ys, mask).log_likelihood


# Module-level jitted transforms, keyed on the static filter function, so that the parallel
# tests reuse the serial references compiled here.
weighted_outputs_jit = jax.jit(weighted_outputs, static_argnums=0)
weighted_outputs_grad = jax.jit(jax.grad(weighted_outputs, argnums=1), static_argnums=0)
log_likelihood_grad = jax.jit(jax.grad(log_likelihood, argnums=1), static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def batched_log_likelihood_grad(fn, params, ys, masks):
    return jax.vmap(lambda y, m: jax.grad(log_likelihood, argnums=1)(fn, params, y, m))(ys, masks)


@functools.partial(jax.jit, static_argnums=0)
def batched_weighted_outputs_grad(fn, params, ys, masks, weights):
    def grad_one(y, m):
        return jax.grad(weighted_outputs, argnums=1)(fn, params, y, m, weights)

    return jax.vmap(grad_one)(ys, masks)


def gradient_case(fn):
    """The model, data and output weights of the gradient tests."""
    model, ys, mask = random_model(5, 3, 2, 10, time_varying=True)
    rng = np.random.default_rng(0)
    args = (to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    shapes = jax.eval_shape(fn, *args)
    weights = [jnp.asarray(rng.normal(size=x.shape)) for x in shapes]
    return model, args, weights


@pytest.mark.parametrize("fn", [kalman_filter, kalman_smoother])
def test_gradient_matches_finite_differences(x64, fn):
    """Central differences along random symmetry-preserving directions in parameter space."""
    model, (params, ys, mask), weights = gradient_case(fn)
    grads = weighted_outputs_grad(fn, params, ys, mask, weights)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for _ in range(3):
        direction = {k: symmetric_direction(rng, v) for k, v in model.items()}
        plus = to_params({k: v + eps * direction[k] for k, v in model.items()})
        minus = to_params({k: v - eps * direction[k] for k, v in model.items()})
        f_plus = float(weighted_outputs_jit(fn, plus, ys, mask, weights))
        f_minus = float(weighted_outputs_jit(fn, minus, ys, mask, weights))
        analytic = sum(float(np.sum(np.asarray(getattr(grads, k)) * direction[k])) for k in model)
        np.testing.assert_allclose(analytic, (f_plus - f_minus) / (2 * eps), rtol=1e-6, atol=1e-6)


def vmap_case():
    model, _, _ = random_model(6, 2, 1, 10)
    rng = np.random.default_rng(6)
    ys = jnp.asarray(rng.normal(size=(4, 10, 1)))
    masks = jnp.asarray(rng.random((4, 10)) > 0.3)
    return to_params(model), ys, masks


def test_vmap_grad_matches_per_series(x64):
    """vmap(grad) over a batch of series equals per-series grads; grad of the sum is their sum."""
    params, ys, masks = vmap_case()
    batched = batched_log_likelihood_grad(kalman_filter, params, ys, masks)
    for i in range(4):
        single = log_likelihood_grad(kalman_filter, params, ys[i], masks[i])
        assert tree_allclose(jax.tree_util.tree_map(lambda g, i=i: g[i], batched), single, **TOL)

    def total(p):
        return jnp.sum(
            jax.vmap(log_likelihood, in_axes=(None, None, 0, 0))(kalman_filter, p, ys, masks)
        )

    summed = jax.jit(jax.grad(total))(params)
    assert tree_allclose(
        summed, jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), batched), **TOL
    )


def test_vmap_over_params(x64):
    models = [random_model(s, 2, 1, 8)[0] for s in (7, 8, 9)]
    _, ys, mask = random_model(7, 2, 1, 8)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[to_params(m) for m in models])
    batched = jax.jit(jax.vmap(kalman_smoother, in_axes=(0, None, None)))(
        stacked, jnp.asarray(ys), jnp.asarray(mask)
    )
    smoother = jax.jit(kalman_smoother)
    for i, model in enumerate(models):
        single = smoother(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
        assert tree_allclose(jax.tree_util.tree_map(lambda x, i=i: x[i], batched), single, **TOL)


def test_jit_matches_eager(x64):
    model, ys, mask = random_model(10, 3, 2, 11, time_varying=True)
    args = (to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    assert tree_allclose(jax.jit(kalman_smoother)(*args), kalman_smoother(*args), **TOL)


# ---------------------------------------------------------------------------------------------
# Dtypes.


def test_dtype_follows_inputs_and_float32_is_close(x64):
    model, ys, mask = random_model(11, 3, 2, 15)
    smoother = jax.jit(kalman_smoother)
    ref = smoother(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    low = smoother(to_params(model, jnp.float32), jnp.asarray(ys, jnp.float32), jnp.asarray(mask))
    assert all(x.dtype == jnp.float32 for x in low)
    assert all(x.dtype == jnp.float64 for x in ref)
    assert tree_allclose(low, ref, rtol=1e-3, atol=1e-3)
    # Mixed widths promote to the wider one.
    mixed = jax.jit(kalman_filter)(
        to_params(model), jnp.asarray(ys, jnp.float32), jnp.asarray(mask)
    )
    assert mixed.filtered_means.dtype == jnp.float64


def test_default_float32_runs():
    model, ys, mask = random_model(12, 2, 1, 10)
    result = jax.jit(kalman_smoother)(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    assert result.smoothed_means.dtype == jnp.float32
    assert np.isfinite(np.asarray(result.log_likelihood))


# ---------------------------------------------------------------------------------------------
# Bad input.


def _bad_inputs():
    model, ys, mask = random_model(13, 2, 1, 6)
    bad_f = dict(model, F=np.zeros((5, 2, 2)))
    bad_h = dict(model, H=np.zeros((1, 3)))
    bad_p0 = dict(model, P0=np.zeros((6, 2, 2)))
    return [
        (model, ys[:, 0], mask, "ys must have shape"),
        (model, ys, mask[:-1], "mask must have shape"),
        (model, ys, mask.astype(float), "mask must be boolean"),
        (bad_f, ys, mask, "params.F"),
        (bad_h, ys, mask, "params.H"),
        (bad_p0, ys, mask, "params.P0"),
        (dict(model, m0=np.zeros((2, 1))), ys, mask, "params.m0"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_shapes_name_the_argument(x64, case):
    model, ys, mask, message = _bad_inputs()[case]
    argument = message.split()[0]
    with raises_naming(argument, message):
        kalman_filter(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    with raises_naming(argument, message):
        jax.jit(kalman_smoother)(to_params(model), jnp.asarray(ys), jnp.asarray(mask))


def _bad_values():
    """(field, how it is spoiled, message start): each gives NaN or garbage if let through."""

    def spoil(name, value):
        return lambda p, ys: (dataclasses.replace(p, **{name: value(getattr(p, name))}), ys)

    def observation(value):
        def f(p, ys):
            ys = np.array(ys)
            ys[3] = value
            return p, jnp.asarray(ys)

        return f

    negative = lambda a: a.at[0, 0].set(-1.0)  # noqa: E731
    return [
        ("ys", observation(np.nan), "ys is not finite"),
        ("ys", observation(np.inf), "ys is not finite"),
        ("R", spoil("R", lambda a: a.at[0, 0].set(jnp.nan)), "params.R must be"),
        ("R", spoil("R", lambda a: jnp.zeros_like(a)), "params.R must be"),
        ("Q", spoil("Q", negative), "params.Q must be"),
        ("P0", spoil("P0", negative), "params.P0 must be"),
        ("P0", spoil("P0", lambda a: jnp.array([[1.0, 2.0], [2.0, 1.0]])), "params.P0 must be"),
        ("F", spoil("F", lambda a: a.at[1, 0].set(jnp.inf)), "params.F is not finite"),
        ("m0", spoil("m0", lambda a: a.at[0].set(jnp.nan)), "params.m0 is not finite"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_values_are_refused_naming_the_field(x64, case):
    """Eagerly a `WearjaxDataError` naming the field; under `jit` and `vmap` Equinox's runtime
    error carrying the same one-line message. Never NaN results."""
    field, spoil, message = _bad_values()[case]
    model, ys, mask = random_model(14, 2, 1, 6)
    mask[:] = True
    params, ys = spoil(to_params(model), jnp.asarray(ys))
    mask = jnp.asarray(mask)
    assert "\n" not in message
    with pytest.raises(WearjaxDataError, match=message):
        kalman_filter(params, ys, mask)
    with pytest.raises(WearjaxDataError, match=message):
        parallel_kalman_smoother(params, ys, mask)
    with pytest.raises(JIT_ERRORS, match=message):
        jax.jit(kalman_smoother)(params, ys, mask).smoothed_means.block_until_ready()
    batched = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), (params, ys, mask))
    with pytest.raises(JIT_ERRORS, match=message):
        jax.vmap(kalman_filter)(*batched).log_likelihood.block_until_ready()
    if field != "ys":  # a caller reading only covariances, which do not depend on ys: until
        # 2026-12-07 XLA dropped the checks, attached to ys alone, as dead code
        with pytest.raises(JIT_ERRORS, match=message):
            jax.jit(lambda *a: kalman_smoother(*a).smoothed_covs)(
                params, ys, mask
            ).block_until_ready()


def test_singular_state_noise_and_inf_at_masked_steps_are_accepted(x64):
    """A noiseless state component (Q singular) and P0 = 0 are valid models; inf where the
    mask is False is ignored like NaN."""
    model, ys, mask = random_model(15, 2, 1, 8)
    params = dataclasses.replace(
        to_params(model), Q=jnp.diag(jnp.array([0.0, 0.3])), P0=jnp.zeros((2, 2))
    )
    ys[~mask] = np.inf
    result = kalman_filter(params, jnp.asarray(ys), jnp.asarray(mask))
    assert np.isfinite(np.asarray(result.log_likelihood))


# the parallel smoother's case in the slow step (~9 s cold): the serial one stays fast
@pytest.mark.parametrize(
    "smoother", [kalman_smoother, pytest.param(parallel_kalman_smoother, marks=pytest.mark.slow)]
)
def test_a_tiny_variance_gives_a_noiseless_component_exact_smoother_gradients(x64, smoother):
    """The documented way to differentiate the smoother through a noiseless component: at an
    exactly singular P0 and Q the gradient misses how F opens the null direction (the gain
    there multiplies a zero in the forward pass); with a variance of 1e-12 for that component
    it matches central differences of the dense posterior (HR and its exact velocity)."""
    ys = np.random.default_rng(5).normal(size=(5, 1))
    mask = np.ones(5, bool)
    model = {
        "m0": np.array([0.0, 1.0]), "P0": np.diag([1.0, 1e-12]), "Q": np.diag([0.1, 1e-12]),
        "F": np.array([[1.0, 1.0], [0.0, 1.0]]), "H": np.array([[1.0, 0.0]]), "R": np.eye(1),
        "b": None,
    }  # fmt: skip

    def dense(F):
        return dense_reference({**model, "F": F}, ys, mask)["smoothed_means"].sum()

    def ours(F):
        return smoother(to_params({**model, "F": F}), jnp.asarray(ys)).smoothed_means.sum()

    grad = np.asarray(jax.grad(ours)(jnp.asarray(model["F"])))
    fd = np.zeros((2, 2))
    for i, j in np.ndindex(2, 2):
        e = np.zeros((2, 2))
        e[i, j] = 1e-6
        fd[i, j] = (dense(model["F"] + e) - dense(model["F"] - e)) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-5)
    exact = {**model, "P0": np.diag([1.0, 0.0]), "Q": np.diag([0.1, 0.0])}
    lost = jax.grad(
        lambda F: smoother(to_params({**exact, "F": F}), jnp.asarray(ys)).smoothed_means.sum()
    )
    assert abs(float(lost(jnp.asarray(model["F"]))[1, 0]) - fd[1, 0]) > 0.1  # the documented gap


def test_covariances_are_judged_per_scale_in_float32():
    """A diagonal R of channels on different scales (HR in bpm^2 beside an accelerometer in
    g^2) is positive definite and accepted; a Q with a small negative variance is refused. Both
    were judged against the largest eigenvalue's rounding: the first refused, the second let
    through to negative variances and a NaN smoother."""
    model, ys, mask = random_model(16, 2, 2, 6)
    base = to_params(model, jnp.float32)
    ys32, mask32 = jnp.asarray(ys, jnp.float32), jnp.asarray(mask)
    mixed = dataclasses.replace(base, R=jnp.diag(jnp.asarray([25.0, 1e-4], jnp.float32)))
    for run in (kalman_filter, jax.jit(kalman_filter)):
        assert np.isfinite(np.asarray(run(mixed, ys32, mask32).log_likelihood))
    negative = dataclasses.replace(base, Q=jnp.diag(jnp.asarray([25.0, -1e-2], jnp.float32)))
    with pytest.raises(WearjaxDataError, match="params.Q must be"):
        kalman_smoother(negative, ys32, mask32)
    with pytest.raises(JIT_ERRORS, match="params.Q must be"):
        jax.jit(kalman_smoother)(negative, ys32, mask32).smoothed_means.block_until_ready()
    # a noiseless component as rounding leaves it (a variance of -4e-17 beside 0.9) is valid
    rounded = dataclasses.replace(base, P0=jnp.asarray(np.diag([0.9, -4e-17])))
    assert np.isfinite(
        float(kalman_filter(rounded, jnp.asarray(ys), jnp.asarray(mask)).log_likelihood)
    )
    coupled = jnp.asarray([[0.0, 1e-3], [1e-3, 1.0]], jnp.float32)  # a zero variance, covarying
    with pytest.raises(WearjaxDataError, match="params.P0 must be"):
        kalman_filter(dataclasses.replace(base, P0=coupled), ys32, mask32)


def test_a_float32_rank_one_covariance_is_judged_eagerly_as_under_jit():
    """Q = L L^T from a float32 L [3, 1], as the error message advises: its smallest
    eigenvalues are float32 rounding (-2e-9, say). Judged at float64's tolerance eagerly it
    was refused, where `jit`, at float32's, accepted it."""
    rng = np.random.default_rng(0)
    model, ys, mask = random_model(3, 3, 1, 6)
    for _ in range(20):
        low = jnp.asarray(rng.normal(size=(3, 1)), jnp.float32)
        params = dataclasses.replace(to_params(model, jnp.float32), Q=low @ low.T)
        ys32, mask32 = jnp.asarray(ys, jnp.float32), jnp.asarray(mask)
        eager = kalman_filter(params, ys32, mask32).log_likelihood
        jitted = jax.jit(kalman_filter)(params, ys32, mask32).log_likelihood
        np.testing.assert_allclose(eager, jitted, rtol=1e-5)


def test_the_smoother_gain_of_a_positive_definite_model_is_the_plain_cholesky_solve():
    """The boost for singular covariances is applied only where the factor fails: a positive
    definite P^- of very different scales (HR 100 bpm^2 beside a drift of 1e-4) in float32
    gives the plain Cholesky solve's bits, where a boost of eps x trace would swamp the drift."""
    from wearjax.filters.linear import cho_solve_lower, cholesky_lower, matmul, smoother_gain

    filtered = jnp.asarray([[90.0, 0.01], [0.01, 1e-4]], jnp.float32)
    F = jnp.asarray([[1.0, 1.0], [0.0, 0.99]], jnp.float32)
    predicted = F @ filtered @ F.T + jnp.diag(jnp.asarray([10.0, 1e-5], jnp.float32))

    def plain(filtered, predicted, F):
        return cho_solve_lower(cholesky_lower(predicted), matmul(F, filtered)).T

    got = jax.jit(smoother_gain)(filtered, predicted, F)
    np.testing.assert_array_equal(got, jax.jit(plain)(filtered, predicted, F))


@pytest.mark.parametrize("smoother", ["kalman_smoother", "parallel_kalman_smoother"])
@pytest.mark.parametrize("case", ["exact start", "exact velocity"])
def test_smoothers_of_a_state_known_exactly_match_the_dense_posterior(x64, smoother, case):
    """Singular predicted covariances, which the checks accept: P0 = 0 with Q singular, and a
    velocity known exactly (P0 and Q zero along it, F carrying it forward), where the RTS
    gain's Cholesky factor would be NaN. Both smoothers match the dense posterior."""
    import wearjax.filters as filters

    model, ys, mask = random_model(15, 2, 1, 8)
    if case == "exact start":
        model = {**model, "Q": np.diag([0.0, 0.3]), "P0": np.zeros((2, 2))}
    else:
        model = {**model, "F": np.array([[1.0, 1.0], [0.0, 1.0]]), "P0": np.diag([1.0, 0.0]),
                 "Q": np.diag([0.5, 0.0])}  # fmt: skip
    want = dense_reference(model, ys, mask)
    got = getattr(filters, smoother)(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    for name in ("smoothed_means", "smoothed_covs"):
        np.testing.assert_allclose(getattr(got, name), want[name], atol=1e-6, err_msg=name)


# the parallel smoother's case in the slow step (~12 s cold on 2 cores): the gain it checks
# is `smoother_gain`, which the serial smoother's case runs too
@pytest.mark.parametrize(
    "smoother",
    ["kalman_smoother", pytest.param("parallel_kalman_smoother", marks=pytest.mark.slow)],
)
def test_smoothers_of_a_state_known_throughout_are_exact(x64, smoother):
    """P0 = Q = 0: the predicted covariance is zero throughout, with no trace to scale the
    singular case's raise by; the smoothed means were NaN. The state is F^t m0, exactly."""
    import wearjax.filters as filters

    F = jnp.array([[1.0, 1.0], [0.0, 1.0]])  # HR and its velocity, a dropout in the middle
    params = LinearGaussianParams(
        m0=jnp.array([150.0, 0.5]), P0=jnp.zeros((2, 2)), F=F, Q=jnp.zeros((2, 2)),
        H=jnp.array([[1.0, 0.0]]), R=jnp.eye(1),
    )  # fmt: skip
    ys = jnp.asarray(np.random.default_rng(0).normal(150, 3, size=(6, 1)))
    mask = jnp.array([True, True, False, False, True, True])
    got = getattr(filters, smoother)(params, ys, mask)
    t = np.arange(6)
    np.testing.assert_allclose(got.smoothed_means, np.stack([150 + 0.5 * t, 0.5 + 0 * t], 1))
    np.testing.assert_array_equal(got.smoothed_covs, 0.0)
    grad = jax.grad(
        lambda r: getattr(filters, smoother)(
            dataclasses.replace(params, R=r), ys, mask
        ).smoothed_means.sum()
    )(params.R)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 8, 9])  # 9: the library routine
def test_small_solve_matches_numpy_and_pivots(x64, d):
    """`parallel.solve` (unrolled Gauss-Jordan with partial pivoting up to 8 x 8) against NumPy's
    LU solve in float64, over leading batch axes, and on matrices whose leading entries are zero
    or tiny, which elimination without pivoting gets wrong or cannot do."""
    from wearjax.filters.parallel import solve

    rng = np.random.default_rng(d)
    a = rng.normal(size=(3, 5, d, d))
    b = rng.normal(size=(3, 5, d, 2 * d + 1))
    if d > 1:  # permutation-like rows: the natural pivot is zero or 1e-12
        a[0, 0] = np.eye(d)[::-1]
        a[0, 1] = np.eye(d)[np.roll(np.arange(d), 1)] + 1e-12 * np.eye(d)
    got = np.asarray(solve(jnp.asarray(a), jnp.asarray(b)))
    want = np.linalg.solve(a, b)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
