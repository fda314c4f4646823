"""wearjax's filters and dynamax's give the same posterior on the same model and data, in
float64 (`benchmarks/filters_vs_dynamax.py` times them; it needs the `bench` extra, so this
skips without dynamax)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.scripts import load_script

with warnings.catch_warnings():  # dynamax 1.0.3 touches a deprecated jax.core name on import
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("dynamax")
    load_script("benchmarks", "filters")  # imported by its bare name
    peer = load_script("benchmarks", "filters_vs_dynamax")


@pytest.mark.slow
@pytest.mark.parametrize("pair", list(peer.PAIRS))
@pytest.mark.parametrize("d", [2, 4])
def test_wearjax_and_dynamax_agree_in_float64(x64, pair, d):
    ours, theirs = peer.PAIRS[pair]
    p = peer.model(d)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), p)
    ys = jnp.asarray(np.random.default_rng(d).normal(size=(300, 1)))
    m1, ll1 = jax.jit(ours)(params, ys)
    m2, ll2 = jax.jit(theirs)(peer.dynamax_params(params), ys)
    assert m1.dtype == jnp.float64 and m1.shape == (300, d)
    np.testing.assert_allclose(m1, m2, rtol=1e-7, atol=1e-7)  # parallel scans: ~3e-9
    np.testing.assert_allclose(ll1, ll2, rtol=1e-9)
    assert float(jnp.std(m1[:, 0])) > 0.1  # the data move the posterior: not a trivial case
