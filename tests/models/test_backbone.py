"""GRU scan against a step-by-step float64 NumPy loop; state carries across windows."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models.backbone import Backbone, Encoder, GRULayer, GRUStack, check_gru_impl


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_gru(layer, x, h):
    wi, wh = np.asarray(layer.weight_ih, np.float64), np.asarray(layer.weight_hh, np.float64)
    bi, bh = np.asarray(layer.bias_ih, np.float64), np.asarray(layer.bias_hh, np.float64)
    out = []
    for xt in x:
        gi, gh = wi @ xt + bi, wh @ h + bh
        n_h = h.shape[0]
        r = _sigmoid(gi[:n_h] + gh[:n_h])
        z = _sigmoid(gi[n_h : 2 * n_h] + gh[n_h : 2 * n_h])
        n = np.tanh(gi[2 * n_h :] + r * gh[2 * n_h :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.array(out)


def test_gru_stack_matches_numpy_loop(x64):
    gru = GRUStack(3, 5, 2, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (17, 3))
    h0 = jax.random.normal(jax.random.key(2), (2, 5))
    hs, last = gru(x, h0)
    ref = np.asarray(x, np.float64)
    finals = []
    for i, layer in enumerate(gru.layers):
        ref = numpy_gru(layer, ref, np.asarray(h0[i], np.float64))
        finals.append(ref[-1])
    np.testing.assert_allclose(hs, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last, np.array(finals), rtol=1e-12, atol=1e-12)


def test_state_carries_from_one_window_into_the_next():
    bb = Backbone(4, 8, 2, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (120, 4))
    whole, _ = bb(x)
    first, state = bb(x[:60])
    second, _ = bb(x[60:], state)
    np.testing.assert_allclose(jnp.concatenate([first, second]), whole, rtol=1e-5, atol=1e-6)


def test_encoder_dropout_only_with_a_key():
    enc = Encoder(4, 16, dropout=0.5, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (10, 4))
    np.testing.assert_array_equal(enc(x), enc(x))
    a, b = enc(x, key=jax.random.key(2)), enc(x, key=jax.random.key(3))
    assert not np.allclose(a, b)
    leaky = jax.nn.leaky_relu
    ref = x
    for layer in enc.layers:
        ref = leaky(ref @ layer.weight.T + layer.bias[None, :])
    np.testing.assert_allclose(enc(x), ref, rtol=1e-6)


def test_unrolled_rollout_scan_gives_the_same_bits(monkeypatch):
    """`ROLLOUT_UNROLL` changes only how many seconds one loop iteration runs: the rollout's
    values equal the sliced layout's exactly (its derivatives always take the sliced layout)."""
    from wearjax.models import backbone
    from wearjax.models.backbone import _sequence_sliced

    layer = GRUStack(6, 16, 1, key=jax.random.key(0)).layers[0]
    x = jax.random.normal(jax.random.key(1), (8, 50, 6))
    h0 = jnp.zeros(16)
    monkeypatch.setattr(backbone, "ROLLOUT_UNROLL", 8)
    run = lambda seq: jax.jit(jax.vmap(lambda xx: seq(layer, xx, h0)))(x)  # noqa: E731
    np.testing.assert_array_equal(run(lambda m, xx, h: m(xx, h)), run(_sequence_sliced))


def test_per_gate_rollout_equals_the_sliced_layout_bit_for_bit():
    """Rollouts run with the projections stored per gate; values and gradients must equal the
    sliced layout's exactly (float32, batched as training runs it), so that no trained or
    evaluated figure moves."""
    from wearjax.models.backbone import _sequence_sliced

    layer = GRUStack(6, 16, 1, key=jax.random.key(0)).layers[0]
    x = jax.random.normal(jax.random.key(1), (8, 50, 6))
    h0 = jnp.zeros(16)
    target = jax.random.normal(jax.random.key(2), (8, 50, 16))

    def run(sequence):
        return jax.jit(jax.vmap(lambda xx: sequence(layer, xx, h0)))(x)

    np.testing.assert_array_equal(run(lambda m, xx, h: m(xx, h)), run(_sequence_sliced))

    def loss(sequence):
        def f(m, xs):
            return jnp.mean((jax.vmap(lambda xx: sequence(m, xx, h0))(xs) - target) ** 2)

        return jax.jit(jax.grad(f, argnums=(0, 1)))(layer, x)

    got, want = loss(lambda m, xx, h: m(xx, h)), loss(_sequence_sliced)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_gate_layer_derivatives_agree_with_finite_differences(x64):
    """Forward and reverse mode through the layer's custom rule against a central difference."""
    layer = GRUStack(4, 8, 1, key=jax.random.key(0)).layers[0]
    x = jax.random.normal(jax.random.key(1), (30, 4))
    weights = jax.random.normal(jax.random.key(2), (30, 8))
    direction = jax.random.normal(jax.random.key(3), x.shape)
    f = lambda xs: jnp.sum(layer(xs, jnp.zeros(8)) * weights)  # noqa: E731
    eps = 1e-6
    fd = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jax.jvp(f, (x,), (direction,))[1], fd, rtol=1e-7)
    np.testing.assert_allclose(jnp.sum(jax.grad(f)(x) * direction), fd, rtol=1e-7)


def _layer_pair(in_size, hidden, key=0):
    """The same weights run by JAX's derivative of the scan and by the hand-written pass."""
    key = jax.random.key(key)
    return GRULayer(in_size, hidden, key=key), GRULayer(in_size, hidden, impl="manual", key=key)


def test_manual_gru_matches_numpy_loop_and_the_autodiff_gradients_in_float64(x64):
    """`impl="manual"`: its values against the float64 NumPy loop; its hand-written reverse
    pass against JAX's derivative of the default scan for every weight, the inputs and h0,
    batched (vmap) as training runs it."""
    auto, manual = _layer_pair(3, 5)
    x = jax.random.normal(jax.random.key(1), (4, 23, 3))
    h0 = jax.random.normal(jax.random.key(2), (4, 5))
    target = jax.random.normal(jax.random.key(3), (4, 23, 5))
    got = jax.vmap(manual)(x, h0)
    for b in range(4):
        want = numpy_gru(auto, np.asarray(x[b]), np.asarray(h0[b]))
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)

    def loss(layer, xs, hs0):
        return jnp.sum(jnp.sin(jax.vmap(layer)(xs, hs0)) * target)

    g_manual = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(manual, x, h0)
    g_auto = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(auto, x, h0)
    for a, b in zip(jax.tree.leaves(g_manual), jax.tree.leaves(g_auto), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_manual_gru_reverse_pass_agrees_with_finite_differences(x64):
    """Reverse mode through the hand-written pass against a central difference, for a
    direction in the weights and one in the inputs."""
    _, layer = _layer_pair(4, 8)
    x = jax.random.normal(jax.random.key(1), (30, 4))
    h0 = 0.5 * jax.random.normal(jax.random.key(2), (8,))
    weights = jax.random.normal(jax.random.key(3), (30, 8))
    d_x = jax.random.normal(jax.random.key(4), x.shape)
    d_w = jax.random.normal(jax.random.key(5), layer.weight_hh.shape)

    def f(w_hh, xs):
        moved = eqx.tree_at(lambda m: m.weight_hh, layer, w_hh)
        return jnp.sum(moved(xs, h0) * weights)

    eps = 1e-6
    w = layer.weight_hh
    fd = (f(w + eps * d_w, x + eps * d_x) - f(w - eps * d_w, x - eps * d_x)) / (2 * eps)
    g_w, g_x = jax.grad(f, argnums=(0, 1))(w, x)
    np.testing.assert_allclose(jnp.sum(g_w * d_w) + jnp.sum(g_x * d_x), fd, rtol=1e-7)


@pytest.mark.slow  # ~8 s cold; the float64 checks of the manual GRU stay in the fast suite
def test_manual_gru_in_float32_differs_from_the_default_by_rounding_only():
    """In float32, jitted and batched by 2 as the quick demo trains, the two implementations
    agree to rounding; the step a streaming model runs (`Backbone.step`) follows the layer's
    implementation."""
    auto, manual = _layer_pair(6, 16)
    x = jax.random.normal(jax.random.key(1), (2, 200, 6))
    h0 = jnp.zeros((2, 16))
    run = lambda layer: jax.jit(jax.vmap(layer))(x, h0)  # noqa: E731
    np.testing.assert_allclose(run(manual), run(auto), rtol=1e-5, atol=1e-6)

    def loss(layer):
        return jnp.mean(jax.vmap(layer)(x, h0) ** 2)

    g_m, g_a = jax.jit(jax.grad(loss))(manual), jax.jit(jax.grad(loss))(auto)
    for a, b in zip(jax.tree.leaves(g_m), jax.tree.leaves(g_a), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)

    bb = Backbone(6, 16, 2, gru_impl="manual", key=jax.random.key(4))
    assert all(layer.impl == "manual" for layer in bb.gru.layers)
    whole, _ = bb(x[0])
    state = bb.gru.init_state()
    stepped = []
    for t in range(20):
        s, state = bb.step(x[0, t], state)
        stepped.append(s)
    np.testing.assert_allclose(jnp.stack(stepped), whole[:20], rtol=1e-5, atol=1e-6)


def test_an_unknown_gru_implementation_is_refused():
    from wearjax.tasks.hr import build_model

    with pytest.raises(ValueError, match="unknown GRU implementation 'cudnn'"):
        check_gru_impl("cudnn")
    with pytest.raises(ValueError, match="unknown GRU implementation 'cudnn'"):
        build_model("kalman", 4, 8, 1, window=60, key=jax.random.key(0), gru_impl="cudnn")


# ~30 s on 2 cores, two float64 compiles of the whole loss; the GRU layer itself is checked in
# the fast suite (test_manual_gru_gradients_through_vmapped_folds_and_batches)
@pytest.mark.slow
def test_hr_models_train_to_the_same_gradients_on_either_gru(x64):
    """The whole HR training loss (both protocols, batch of 2) of the Kalman model: with
    `gru_impl="manual"` the same value and gradients as JAX's derivative, in float64 (the ODE
    model runs the same backbone; `tests/test_cv.py` checks it is built with it)."""
    from wearjax.tasks.hr import _segment_loss, build_model

    x = jax.random.normal(jax.random.key(1), (2, 120, 5))
    hr = jnp.tile(130.0 + 15.0 * jnp.sin(jnp.arange(120.0) / 40.0), (2, 1))
    mask = jnp.ones((2, 120), bool)
    for kind in ("kalman",):
        got = []
        for impl in ("autodiff", "manual"):
            model = build_model(kind, 5, 12, 2, window=60, key=jax.random.key(0),
                                ode_engine="scan", gru_impl=impl)  # fmt: skip
            params, static = eqx.partition(model, eqx.is_inexact_array)

            def loss(p):
                return _segment_loss(eqx.combine(p, static), x, hr, mask, None, 1.0)  # noqa: B023

            got.append(jax.jit(jax.value_and_grad(loss))(params))
        (v_a, g_a), (v_m, g_m) = got
        np.testing.assert_allclose(v_m, v_a, rtol=1e-12)
        for a, b in zip(jax.tree.leaves(g_m), jax.tree.leaves(g_a), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_manual_gru_gradients_through_vmapped_folds_and_batches(x64):
    """As `cv` trains: folds vmapped with their own weights over a loss vmapped over a batch.
    The hand-written pass against per-fold gradients of a plain loop over the batch (no
    vmap), in float64."""
    keys = jax.random.split(jax.random.key(0), 2)
    folds = jax.vmap(lambda k: GRULayer(3, 6, impl="manual", key=k))(keys)
    x = jax.random.normal(jax.random.key(1), (2, 4, 12, 3))

    def batched(layer, xs):
        return jnp.sum(jnp.sin(jax.vmap(lambda xi: layer(xi, jnp.zeros(6)))(xs)))

    got = eqx.filter_jit(eqx.filter_vmap(jax.grad(batched)))(folds, x)

    @eqx.filter_jit  # one program for both folds (a Python loop over the batch inside it)
    @jax.grad
    def looped(m, xs):
        return sum(jnp.sum(jnp.sin(m(xs[j], jnp.zeros(6)))) for j in range(xs.shape[0]))

    for k in range(2):
        layer = jax.tree.map(lambda a: a[k], folds)  # noqa: B023
        auto = GRULayer(3, 6, key=keys[k])  # the same weights, JAX's derivative
        want = looped(auto, x[k])
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda g: g[k], got)),  # noqa: B023
                        jax.tree.leaves(want), strict=True):  # fmt: skip
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        np.testing.assert_array_equal(layer.weight_hh, auto.weight_hh)
