"""Parallel (associative-scan) filter and smoother against the dense posterior and serial scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from tests.filters.test_linear import (
    TOL,
    assert_matches_reference,
    batched_weighted_outputs_grad,
    dense_reference,
    gradient_case,
    raises_naming,
    random_model,
    to_params,
    weighted_outputs_grad,
)
from wearjax.filters import (
    kalman_filter,
    kalman_smoother,
    parallel_kalman_filter,
    parallel_kalman_smoother,
)


def long_masked_case():
    """Deep enough for several levels of the combination tree, with dropout gaps."""
    model, ys, _ = random_model(20, 3, 2, 40, offset=False)
    mask = np.ones(40, bool)
    for start, length in [(0, 3), (9, 8), (21, 1), (25, 6), (37, 3)]:
        mask[start : start + length] = False
    return model, ys, mask


@pytest.mark.slow  # 1-1.5 min on 2 cores: keeps the fast suite under 10 min
def test_parallel_matches_dense_posterior_and_serial(x64):
    model, ys, mask = long_masked_case()
    assert_matches_reference(parallel_kalman_filter, parallel_kalman_smoother, model, ys, mask)
    args = (to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    assert tree_allclose(
        jax.jit(parallel_kalman_filter)(*args), jax.jit(kalman_filter)(*args), **TOL
    )
    assert tree_allclose(
        jax.jit(parallel_kalman_smoother)(*args), jax.jit(kalman_smoother)(*args), **TOL
    )


def test_parallel_smoother_time_varying_matches_dense_posterior(x64):
    # The smoother's result holds the filtered moments and the log-likelihood too.
    model, ys, mask = random_model(410, 4, 2, 10, time_varying=True)  # CASES[2]
    ref = dense_reference(model, ys, mask)
    result = jax.jit(parallel_kalman_smoother)(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    for name, value in result._asdict().items():
        assert tree_allclose(value, ref[name], **TOL), name


# the scan's products: `@` up to 2, outer sums above (5: 25 s on a cold cache, a slow test)
@pytest.mark.parametrize(  # d = 2 (~9 s cold) in the slow step too: d = 1 stays fast
    "d", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)]
)
def test_parallel_filter_and_smoother_of_each_size_match_dense_posterior(x64, d):
    model, ys, _ = random_model(500 + d, d, 1, 12)
    mask = np.ones(12, bool)
    mask[4:7] = False
    ref = dense_reference(model, ys, mask)
    args = (to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    for fn in (parallel_kalman_filter, parallel_kalman_smoother):
        for name, value in jax.jit(fn)(*args)._asdict().items():
            assert tree_allclose(value, ref[name], **TOL), (fn.__name__, name)


def test_parallel_single_step(x64):
    model, ys, _ = random_model(4, 2, 1, 1)
    assert_matches_reference(
        parallel_kalman_filter, parallel_kalman_smoother, model, ys, np.ones(1, bool)
    )


@pytest.mark.slow  # ~25 s on 2 cores
def test_parallel_vmap_grad_equals_serial_grad(x64):
    """vmap(grad) of a scalar of every smoother output, against the serial gradient per series
    (which test_linear checks against finite differences)."""
    _, (params, ys, mask), weights = gradient_case(kalman_smoother)
    rng = np.random.default_rng(7)
    ys = jnp.stack([ys, ys + jnp.asarray(rng.normal(size=ys.shape)), -ys])
    masks = jnp.stack([mask, ~mask, jnp.ones_like(mask)])
    batched = batched_weighted_outputs_grad(parallel_kalman_smoother, params, ys, masks, weights)
    for i in range(3):
        single = weighted_outputs_grad(kalman_smoother, params, ys[i], masks[i], weights)
        assert tree_allclose(jax.tree_util.tree_map(lambda g, i=i: g[i], batched), single, **TOL)


@pytest.mark.slow  # ~10 s cold on 2 cores; the parallel filters' float32 error: slow step only
def test_parallel_float32_is_close_to_float64(x64):
    model, ys, mask = random_model(410, 4, 2, 10, time_varying=True)  # compiled above in float64
    smoother = jax.jit(parallel_kalman_smoother)
    ref = smoother(to_params(model), jnp.asarray(ys), jnp.asarray(mask))
    low = smoother(to_params(model, jnp.float32), jnp.asarray(ys, jnp.float32), jnp.asarray(mask))
    assert all(x.dtype == jnp.float32 for x in low)
    assert tree_allclose(low, ref, rtol=1e-3, atol=1e-3)


def test_parallel_bad_input_names_the_argument(x64):
    model, ys, mask = random_model(24, 2, 1, 6)
    with raises_naming("mask", "mask must have shape"):
        parallel_kalman_smoother(to_params(model), jnp.asarray(ys), jnp.asarray(mask[:-1]))
    with raises_naming("params.Q", "params.Q"):
        parallel_kalman_filter(
            to_params(dict(model, Q=np.eye(3))), jnp.asarray(ys), jnp.asarray(mask)
        )


def test_an_eager_call_compiles_a_handful_of_programs_not_one_per_operation(no_persistent_cache):
    """Called outside `jit`, the smoother checks its inputs and runs one program: before, each
    level of its associative scans compiled its operations one by one (hundreds of programs)."""
    import jax.monitoring

    from wearjax.filters import LinearGaussianParams, parallel_kalman_smoother

    compiled = []

    def count(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    params = LinearGaussianParams(
        m0=np.zeros(2), P0=np.eye(2), F=np.array([[1.0, 1.0], [0.0, 1.0]]), Q=0.1 * np.eye(2),
        H=np.array([[1.0, 0.0]]), R=np.eye(1),
    )  # fmt: skip
    ys = jnp.asarray(np.random.default_rng(0).normal(size=(23, 1)))  # a length no other test uses
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        result = parallel_kalman_smoother(params, ys)
    finally:  # the worker's later tests are not counted
        jax.monitoring.unregister_event_duration_listener(count)
    assert np.all(np.isfinite(np.asarray(result.smoothed_means)))
    assert 1 <= len(compiled) <= 20, len(compiled)


def test_a_singular_process_noise_runs_the_serial_scan_where_the_elements_overflow():
    """Q = 0 with a damped velocity: the smoother's gains along it are F^-1, and their product
    over a stretch overflows float32 within T = 1000 (363 NaN smoothed means until 2026-12-07);
    Q = 0 with F = 1.1 lost the filter's covariance in float32 (log-likelihood -2210.56 against
    the serial -2255.93 at T = 1500). Both now equal the serial scan exactly."""
    from wearjax.filters import LinearGaussianParams
    from wearjax.filters.parallel import noiseless

    rng = np.random.default_rng(0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    damped = LinearGaussianParams(
        m0=f32([0.0, 0.0]), P0=f32(np.eye(2)), F=f32([[1.0, 1.0], [0.0, 0.9]]),
        H=f32([[1.0, 0.0]]), Q=f32(np.zeros((2, 2))), R=f32([[1e-2]]),
    )  # fmt: skip
    ys = f32(rng.normal(size=(1000, 1)))
    got, want = parallel_kalman_smoother(damped, ys), kalman_smoother(damped, ys)
    tree_allclose(got, want, rtol=0, atol=0)  # a concrete Q: judged before tracing
    tree_allclose(jax.jit(parallel_kalman_smoother)(damped, ys), want, rtol=0, atol=0)  # lax.cond
    growing = LinearGaussianParams(m0=f32([0.0]), P0=f32([[1.0]]), F=f32([[1.1]]), H=f32([[1.0]]),
                                   Q=f32([[0.0]]), R=f32([[1.0]]))  # fmt: skip
    ys = f32(rng.normal(size=(1500, 1)))
    tree_allclose(parallel_kalman_filter(growing, ys), kalman_filter(growing, ys), rtol=0, atol=0)
    # judged per scale: an HR variance beside a tiny drift's is no singular noise
    assert not noiseless(jnp.diag(f32([100.0, 1e-8])))
    assert noiseless(jnp.diag(f32([0.5, 0.0]))) and noiseless(f32([[1.0, 1.0], [1.0, 1.0]]))
    varying = jnp.stack([jnp.eye(2), jnp.eye(2), jnp.diag(jnp.array([1.0, 0.0]))])
    assert noiseless(varying) and not noiseless(varying[:2])
