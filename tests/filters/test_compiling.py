"""`filters.compiler_options`: the serial and parallel smoothers vmapped over series with their
own masks, compiled with the options, against the dense posterior of each series; and the
fallback where XLA does not know the option."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from tests.filters.test_linear import TOL, dense_reference, random_model, to_params
from wearjax.filters import (
    compiler_options,
    compiling,
    kalman_smoother,
    parallel_kalman_smoother,
)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are the CPU backend's")
def test_cpu_options_keep_library_fusions_to_matrix_products():
    assert compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
    compiler_options()["changed"] = "x"  # a fresh dict each call
    assert "changed" not in compiler_options()


# (smoother, D): the parallel one at D = 2, which compiles in 40% of the time it takes at 4
@pytest.mark.parametrize("smoother, d", [(kalman_smoother, 4), (parallel_kalman_smoother, 2)])
def test_vmapped_smoother_with_the_options_matches_each_series_posterior(x64, smoother, d):
    model, _, _ = random_model(11, d, 2, 10)
    rng = np.random.default_rng(11)
    ys = rng.normal(size=(3, 10, 2)) * 2.0
    masks = rng.random((3, 10)) > 0.3
    run = jax.jit(
        jax.vmap(smoother, in_axes=(None, 0, 0)),
        compiler_options=compiler_options(),
    )
    out = run(to_params(model), jnp.asarray(ys), jnp.asarray(masks))
    for i in range(3):
        ref = dense_reference(model, ys[i], masks[i])
        for name, value in out._asdict().items():
            assert tree_allclose(value[i], ref[name], **TOL), (i, name)


def test_no_options_where_xla_does_not_know_them(monkeypatch):
    compiling._accepted.cache_clear()
    monkeypatch.setattr(compiling, "_OPTION", "xla_cpu_no_such_option_in_any_xla")
    try:
        assert compiler_options() == {}
    finally:
        compiling._accepted.cache_clear()


def test_equinox_filter_jit_passes_the_options_on(x64):
    """The README's note: `eqx.filter_jit(f, compiler_options=...)` compiles with them."""
    model, ys, mask = random_model(12, 2, 1, 6)
    params = to_params(model)
    plain = jax.jit(kalman_smoother)(params, jnp.asarray(ys), jnp.asarray(mask))
    run = eqx.filter_jit(kalman_smoother, compiler_options=compiler_options())
    assert tree_allclose(run(params, jnp.asarray(ys), jnp.asarray(mask)), plain, **TOL)
    bad = eqx.filter_jit(kalman_smoother, compiler_options={"xla_cpu_no_such_option": "x"})
    with pytest.raises(RuntimeError, match="xla_cpu_no_such_option"):
        bad(params, jnp.asarray(ys), jnp.asarray(mask))
