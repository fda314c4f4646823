"""The activity model's pieces against hand computations: gradient-modulation coefficients
(OGM's formula), the gradient scaling they drive, the disentanglement losses, and the fused
head's split into modality shares."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models.har import (
    ConvNet,
    HARModel,
    alignment_loss,
    modulation,
    orthogonality_loss,
    scale_gradient,
    time_positions,
)
from wearjax.tasks.har import forward


def _ogm_reference(logits, y, alpha):
    """OGM's coefficients in a float64 NumPy loop."""
    logits = np.asarray(logits, np.float64)
    b, m, _ = logits.shape
    score = np.zeros(m)
    for u in range(m):
        for i in range(b):
            p = np.exp(logits[i, u] - logits[i, u].max())
            score[u] += p[y[i]] / p.sum()
    k = np.ones(m)
    for u in range(m):
        rho = score[u] / np.mean([score[v] for v in range(m) if v != u])
        if rho > 1:
            k[u] = 1 - np.tanh(alpha * rho)
    return k


@pytest.mark.parametrize("m", [2, 3])
def test_modulation_coefficients_follow_the_formula(m):
    rng = np.random.default_rng(m)
    logits = rng.normal(size=(16, m, 4)).astype(np.float32)
    logits[:, 0] *= 3  # one modality more confident, so its rho exceeds 1
    y = rng.integers(0, 4, 16)
    logits[np.arange(16), 0, y] += 2.0
    k = modulation(jnp.asarray(logits), jnp.asarray(y), 0.5)
    ref = _ogm_reference(logits, y, 0.5)
    np.testing.assert_allclose(k, ref, rtol=1e-5)
    assert ref[0] < 1 and ref.min() == ref[0]  # the dominant modality is slowed most


def test_scale_gradient_is_the_identity_forward_and_scales_the_cotangent():
    x = jnp.asarray([1.0, -2.0, 3.0])
    w = jnp.asarray([0.5, 1.5, -1.0])
    k = jnp.asarray(0.3)
    f = lambda x: jnp.sum(scale_gradient(x, k) * w * x)  # noqa: E731
    assert float(f(x)) == float(jnp.sum(w * x * x))
    # d/dx [s(x) w x] = k w x (through s) + w x (the direct path)
    np.testing.assert_allclose(jax.grad(f)(x), k * w * x + w * x, rtol=1e-6)


def _model(key=0, channels=((0, 1, 2), (3, 4, 5))):
    return HARModel(channels, 4, width=16, latent=8, patch=4, heads=2, dropout=0.0,
                    key=jax.random.key(key))  # fmt: skip


@pytest.mark.slow  # ~40 s on 2 cores: compiles two gradients of the model
def test_each_encoder_gets_its_gradient_times_its_coefficient():
    """With modulation, modality u's encoder gradient is k_u times the unmodulated one; the
    heads' gradient is unchanged."""
    model = _model()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 24, 6)), jnp.float32)
    x = x.at[:, :, :3].multiply(4.0)  # make the accelerometer dominate
    y = jnp.asarray(rng.integers(0, 4, 8))

    def loss(model, alpha):
        out, _ = forward(model, x, y, jax.random.key(1), alpha)
        return jnp.mean(out.logits[jnp.arange(8), y] - jax.nn.logsumexp(out.logits, -1))

    grad = eqx.filter_jit(eqx.filter_grad(loss))  # one program each way, not op by op
    _, k = eqx.filter_jit(forward)(model, x, y, jax.random.key(1), 5.0)
    g_mod = grad(model, 5.0)
    g_plain = grad(model, 0.0)
    assert np.min(k) < 1
    for u in range(2):
        a = jax.tree_util.tree_leaves(g_mod.encoders[u])
        b = jax.tree_util.tree_leaves(g_plain.encoders[u])
        for ga, gb in zip(a, b, strict=True):
            np.testing.assert_allclose(ga, k[u] * gb, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g_mod.head.weight, g_plain.head.weight, rtol=1e-5, atol=1e-8)


def test_alignment_and_orthogonality_losses_by_hand():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(5, 3, 4)).astype(np.float32)
    p = rng.normal(size=(5, 3, 4)).astype(np.float32)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    pairs = [(0, 1), (0, 2), (1, 2)]
    want_align = np.mean(
        [np.mean([np.sum((unit(s[i, u]) - unit(s[i, v])) ** 2) for i in range(5)])
         for u, v in pairs]
    )  # fmt: skip
    want_orth = 0.0
    for u in range(3):
        su, pu = unit(s[:, u] - s[:, u].mean(0)), unit(p[:, u] - p[:, u].mean(0))
        want_orth += sum((su[:, a] @ pu[:, b]) ** 2 for a in range(4) for b in range(4)) / 25 / 3
    np.testing.assert_allclose(alignment_loss(jnp.asarray(s)), want_align, rtol=1e-5)
    np.testing.assert_allclose(
        orthogonality_loss(jnp.asarray(s), jnp.asarray(p)), want_orth, rtol=1e-4
    )
    assert float(alignment_loss(jnp.asarray(s[:, :1]))) == 0.0  # one modality: nothing to align


def test_modality_shares_sum_to_the_fused_head():
    model = _model(2)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(30, 6)), jnp.float32)

    @eqx.filter_jit  # one program, not one per operation
    def run(model, x):
        out = model(x)
        return out, model.head(jnp.concatenate([out.shared, out.specific], axis=-1).reshape(-1))

    out, head = run(model, x)
    np.testing.assert_allclose(out.modality_logits.sum(0), out.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head, out.logits, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ~25 s on 2 cores
def test_any_window_length_and_the_cnn_baseline_share_the_call():
    model = _model()
    for t in (8, 23, 100):  # not a multiple of the patch: the tail is dropped
        assert model(jnp.ones((t, 6))).logits.shape == (4,)
    cnn = ConvNet(6, 4, width=8, key=jax.random.key(0))
    assert cnn(jnp.ones((50, 6))).logits.shape == (4,)
    pos = time_positions(7, 6)
    np.testing.assert_allclose(pos[3, :2], [np.sin(3.0), np.cos(3.0)], rtol=1e-6)
