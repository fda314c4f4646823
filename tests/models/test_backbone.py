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
