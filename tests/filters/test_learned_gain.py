"""Learned-gain filter with measured observations against a float64 NumPy transcription."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.filters.learned_gain import (
    LearnedGainState,
    learned_gain_filter,
    learned_gain_step,
    measurement_update,
)

T = 16
WEIGHTS = (1.0, 0.5)
LOWER, UPPER = (-3.0, -0.4), (3.0, 0.4)


def _transition(z, c):
    return jnp.stack([z[0] + z[1], 0.9 * z[1]]) + jnp.tanh(c)


def _gain(p, r):
    return 0.8 * p[0] / (p[0] + r)


def _kwargs(dtype):
    return dict(
        transition=_transition,
        gain=_gain,
        update_weights=jnp.asarray(WEIGHTS, dtype),
        lower=jnp.asarray(LOWER, dtype),
        upper=jnp.asarray(UPPER, dtype),
    )


def numpy_filter(z, p, c, q, r, y, observed, m=None, measured=None, noise=None):
    """The two-stage step (learned update, then measured update, then clip) as a float64 loop."""
    z, p = np.array(z, np.float64), np.array(p, np.float64)
    w, lo, hi = np.array(WEIGHTS), np.array(LOWER), np.array(UPPER)
    means, variances = [], []
    for t in range(len(y)):
        z = np.array([z[0] + z[1], 0.9 * z[1]]) + np.tanh(c[t])
        p = p + q[t]
        if observed[t]:
            k = 0.8 * p[0] / (p[0] + r[t])
            nu = y[t] - z[0]
            z = z + w * k * nu
            p = p * (1.0 - w * k)
        if m is not None and measured[t]:
            k_m = p[0] / (p[0] + noise[t])
            z = z + w * k_m * (m[t] - z[0])
            p = p * (1.0 - w * k_m)
        z = np.clip(z, lo, hi)
        means.append(z)
        variances.append(p)
    return np.array(means), np.array(variances)


def _inputs(seed, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    return dict(
        init=LearnedGainState(
            jnp.asarray([0.3, -0.1], dtype), jnp.asarray(rng.uniform(0.1, 1.0, 2), dtype)
        ),
        contexts=jnp.asarray(0.2 * rng.normal(size=(T, 2)), dtype),
        q=jnp.asarray(rng.uniform(0.01, 0.2, (T, 2)), dtype),
        r=jnp.asarray(rng.uniform(0.2, 2.0, T), dtype),
        y=jnp.asarray(rng.normal(size=T), dtype),
        observed=jnp.asarray(rng.uniform(size=T) < 0.6),
        measurement=jnp.asarray(rng.normal(size=T), dtype),
        measured=jnp.asarray(rng.uniform(size=T) < 0.5),
        measurement_noise=jnp.asarray(rng.uniform(0.05, 1.0, T), dtype),
    )


def _run(d, **overrides):
    d = {**d, **overrides}
    return learned_gain_filter(
        d["init"],
        d["contexts"],
        d["q"],
        d["r"],
        d["y"],
        d["observed"],
        measurement=d["measurement"],
        measured=d["measured"],
        measurement_noise=d["measurement_noise"],
        **_kwargs(d["y"].dtype),
    )


def test_filter_matches_numpy_two_stage_step(x64):
    d = _inputs(0)
    assert 0 < int(d["measured"].sum()) < T and 0 < int(d["observed"].sum()) < T
    out = _run(d)
    ref_z, ref_p = numpy_filter(
        d["init"].mean,
        d["init"].var,
        *(np.asarray(d[k]) for k in ("contexts", "q", "r", "y", "observed")),
        *(np.asarray(d[k]) for k in ("measurement", "measured", "measurement_noise")),
    )
    np.testing.assert_allclose(out.mean, ref_z, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out.var, ref_p, rtol=1e-12, atol=1e-13)
    # a scalar noise is the same as a constant per-step one
    scalar = _run(d, measurement_noise=jnp.asarray(0.3))
    per_step = _run(d, measurement_noise=jnp.full((T,), 0.3))
    assert tree_allclose(scalar, per_step, rtol=0, atol=0)


def test_unmeasured_is_the_filter_without_measurements(x64):
    d = _inputs(1)
    plain = learned_gain_filter(
        d["init"], d["contexts"], d["q"], d["r"], d["y"], d["observed"], **_kwargs(jnp.float64)
    )
    ref_z, ref_p = numpy_filter(
        d["init"].mean,
        d["init"].var,
        *(np.asarray(d[k]) for k in ("contexts", "q", "r", "y", "observed")),
    )
    np.testing.assert_allclose(plain.mean, ref_z, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(plain.var, ref_p, rtol=1e-12, atol=1e-13)
    # never measured: bit-identical, whatever the measurement holds (NaN included)
    off = _run(d, measured=jnp.zeros((T,), bool), measurement=jnp.full((T,), jnp.nan))
    assert tree_allclose(off, plain, rtol=0, atol=0)


def test_nan_where_not_observed_changes_nothing_values_or_gradients(x64):
    """`y` may hold NaN where `observed` is False (the linear filters' convention): the
    outputs and the gradient are those with any finite value there, and the innovation is 0."""
    d = _inputs(2)
    gap = jnp.where(d["observed"], d["y"], jnp.nan)
    filled = jnp.where(d["observed"], d["y"], 7.0)
    with_nan, with_seven = _run(d, y=gap), _run(d, y=filled)
    assert tree_allclose(with_nan, with_seven, rtol=0, atol=0)
    assert np.all(np.asarray(with_nan.innovation)[~np.asarray(d["observed"])] == 0.0)

    def loss(r, y):
        return jnp.sum(_run(d, r=r, y=y).mean)

    g_nan, g_seven = jax.grad(loss)(d["r"], gap), jax.grad(loss)(d["r"], filled)
    assert np.all(np.isfinite(g_nan))
    np.testing.assert_array_equal(g_nan, g_seven)


def test_nan_noise_where_unused_changes_nothing_values_or_gradients(x64):
    """`r` where not `observed` and `measurement_noise` where not `measured` are unused: NaN
    there gives the values and gradients (with respect to r, q and the initial variance) of
    any finite value, where the untaken branch of a `where` used to make them NaN."""
    d = _inputs(3)
    obs, meas = d["observed"], d["measured"]
    spoiled = dict(
        r=jnp.where(obs, d["r"], jnp.nan),
        measurement_noise=jnp.where(meas, d["measurement_noise"], jnp.nan),
    )
    filled = dict(
        r=jnp.where(obs, d["r"], 0.5),
        measurement_noise=jnp.where(meas, d["measurement_noise"], 0.5),
    )
    assert tree_allclose(_run(d, **spoiled), _run(d, **filled), rtol=0, atol=0)

    def loss(r, q, var0, noise):
        init = LearnedGainState(d["init"].mean, var0)
        out = _run(d, r=r, q=q, init=init, measurement_noise=noise)
        return jnp.sum(out.mean) + jnp.sum(out.var)

    args = lambda x: (x["r"], d["q"], d["init"].var, x["measurement_noise"])  # noqa: E731
    g_nan = jax.grad(loss, argnums=(0, 1, 2, 3))(*args(spoiled))
    g_filled = jax.grad(loss, argnums=(0, 1, 2, 3))(*args(filled))
    for a, b in zip(g_nan, g_filled, strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)


def test_nan_where_observed_is_refused_naming_the_step(x64):
    """NaN in `y` or `measurement` at an observed (measured) step would spread through every
    later state: refused on concrete inputs, as the linear filters refuse it."""
    from wearjax.errors import WearjaxDataError

    d = _inputs(2)
    t = int(np.argmax(np.asarray(d["observed"])))
    with pytest.raises(WearjaxDataError, match=rf"y is not finite .* at step {t}, where observed"):
        _run(d, y=d["y"].at[t].set(jnp.nan))
    t = int(np.argmax(np.asarray(d["measured"])))
    with pytest.raises(WearjaxDataError, match=rf"measurement is not finite .* at step {t},"):
        _run(d, measurement=d["measurement"].at[t].set(jnp.inf))


def test_measurement_update_is_the_scalar_kalman_update():
    state = LearnedGainState(jnp.asarray([0.5, 0.2]), jnp.asarray([0.3, 0.1]))
    w = jnp.asarray(WEIGHTS)
    on = measurement_update(state, jnp.asarray(1.5), True, jnp.asarray(0.2), w)
    k = 0.3 / 0.5
    np.testing.assert_allclose(on.mean, [0.5 + k * 1.0, 0.2 + 0.5 * k * 1.0], rtol=1e-6)
    np.testing.assert_allclose(on.var, [0.3 * (1 - k), 0.1 * (1 - 0.5 * k)], rtol=1e-6)
    off = measurement_update(state, jnp.asarray(jnp.nan), False, jnp.asarray(0.2), w)
    assert tree_allclose(off, state, rtol=0, atol=0)
    # a step with a measured value: the learned update first, then this one
    kw = _kwargs(jnp.float32)
    args = (jnp.zeros(2), jnp.asarray([0.1, 0.05]), jnp.asarray(0.4), jnp.asarray(1.0), True)
    step = learned_gain_step(
        state, *args, measurement=jnp.asarray(1.5), measurement_noise=jnp.asarray(0.2), **kw
    )
    learned = learned_gain_step(state, *args, **{**kw, "lower": None, "upper": None})
    second = measurement_update(
        LearnedGainState(learned.mean, learned.var), jnp.asarray(1.5), True, jnp.asarray(0.2), w
    )
    np.testing.assert_allclose(step.mean, np.clip(second.mean, LOWER, UPPER), rtol=1e-6)
    np.testing.assert_allclose(step.var, second.var, rtol=1e-6)
    assert float(step.gain) == float(learned.gain)


def test_measurement_needs_its_noise():
    d = _inputs(2, jnp.float32)
    with pytest.raises(ValueError, match="measurement_noise"):
        _run(d, measurement_noise=None)
    with pytest.raises(ValueError, match="need a `measurement`"):
        _run(d, measurement=None)


def test_jit_equals_eager_and_vmap_equals_loop():
    d = _inputs(3, jnp.float32)
    batch = jnp.stack([d["measurement"] + i for i in range(3)])
    masks = jnp.stack([d["measured"], ~d["measured"], d["observed"]])

    def run(m, mask):
        return _run(d, measurement=m, measured=mask)

    eager = [run(batch[i], masks[i]) for i in range(3)]
    batched = jax.jit(jax.vmap(run))(batch, masks)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *eager)
    assert tree_allclose(batched, stacked, rtol=1e-5, atol=1e-6)
    assert tree_allclose(jax.jit(run)(batch[0], masks[0]), eager[0], rtol=1e-5, atol=1e-6)


def test_gradients_match_finite_differences(x64):
    d = _inputs(4)
    target = jnp.linspace(-1.0, 1.0, T)

    def loss(m, log_noise):
        # NaN where unmeasured must not reach the value or the gradient
        m = jnp.where(d["measured"], m, jnp.nan)
        out = _run(d, measurement=m, measurement_noise=jnp.exp(log_noise))
        return jnp.sum((out.mean[:, 0] - target) ** 2) + jnp.sum(out.var)

    m0, n0 = d["measurement"], jnp.log(d["measurement_noise"])
    gm, gn = jax.grad(loss, argnums=(0, 1))(m0, n0)
    assert np.all(np.isfinite(gm)) and np.all(np.asarray(gm)[~np.asarray(d["measured"])] == 0)
    fd_loss = jax.jit(loss)  # one compile for every finite difference
    eps = 1e-6
    for g, x, which in ((gm, m0, 0), (gn, n0, 1)):
        fd = []
        for i in range(T):
            up, down = [m0, n0], [m0, n0]
            up[which], down[which] = x.at[i].add(eps), x.at[i].add(-eps)
            fd.append((fd_loss(*up) - fd_loss(*down)) / (2 * eps))
        np.testing.assert_allclose(g, np.array(fd), rtol=1e-6, atol=1e-8)
    # vmap(grad) equals grad of the sum
    ms = jnp.stack([m0, m0 + 0.5])
    per = jax.vmap(jax.grad(loss), in_axes=(0, None))(ms, n0)
    total = jax.grad(lambda ms: loss(ms[0], n0) + loss(ms[1], n0))(ms)
    assert tree_allclose(per, total, rtol=1e-12, atol=1e-12)
