"""GRU scan against a step-by-step float64 NumPy loop; state carries across windows."""

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.models.backbone import Backbone, Encoder, GRUStack


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
