"""The channel-aware transformer's structure: any channel count and length with one set of
weights, channel permutation equivariance, the liaison fusion as the only path between
channels, and the base size's parameter count and forward pass (abstractly, nothing
allocated)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.models.transformer import build_transformer, n_parameters


def _planes(c, t=90, s=65, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(c, 3, s, t)), jnp.float32)


MODEL = build_transformer("tiny", key=jax.random.key(0))
# compiled once per shape and option, not op by op: the same maths a fraction of the time cold
_encode = eqx.filter_jit(lambda m, x, **options: m.encode(x, **options))
_embed = eqx.filter_jit(lambda m, x: m.embed(x))


def test_one_set_of_weights_runs_on_any_channel_count_and_length():
    for c in (1, 3, 7):
        for t in (54, 100):  # 100 is not a multiple of the 9-step patch: the tail is cropped
            tokens = _encode(MODEL, _planes(c, t))
            assert tokens.shape == (c, 1 + 13 * (t // 9), 32)
            assert bool(jnp.all(jnp.isfinite(tokens)))


def test_permuting_channels_permutes_tokens_and_embeddings():
    x = _planes(5)
    perm = jnp.asarray([3, 0, 4, 1, 2])
    tokens, permuted = _encode(MODEL, x), _encode(MODEL, x[perm])
    np.testing.assert_allclose(permuted, tokens[perm], rtol=1e-4, atol=1e-5)
    e, ep = _embed(MODEL, x), _embed(MODEL, x[perm])
    np.testing.assert_allclose(ep.reshape(-1), e[perm].reshape(-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ep.mean(0), e.mean(0), rtol=1e-4, atol=1e-5)


def test_the_liaison_fusion_is_the_only_path_between_channels():
    x = _planes(4)
    y = x.at[2].add(1.0)  # perturb one channel
    alone, alone_y = _encode(MODEL, x, fuse=False), _encode(MODEL, y, fuse=False)
    others = jnp.asarray([0, 1, 3])
    np.testing.assert_array_equal(alone[others], alone_y[others])
    fused, fused_y = _encode(MODEL, x), _encode(MODEL, y)
    assert float(jnp.max(jnp.abs(fused[others] - fused_y[others]))) > 1e-4
    # padded channels (channel_ok False) do not reach the others either
    ok = jnp.asarray([True, True, False, True])
    a, b = _encode(MODEL, x, channel_ok=ok), _encode(MODEL, y, channel_ok=ok)
    np.testing.assert_allclose(a[others], b[others], rtol=1e-5, atol=1e-6)


def test_base_size_parameter_count():
    n = n_parameters("base")
    print(f"base: {n:,} parameters (encoder and decoder)")
    assert 120e6 < n < 140e6  # NormWear's base: about 135M with its decoder
    assert n_parameters("tiny") < 1e5


def test_base_size_forward_pass_abstractly():
    """`base` built and run under `jax.eval_shape` (traced, nothing allocated or computed): 4
    channels of NormWear's 6 s at 65 Hz (390 samples, 65 scales: the 13 x 43 patch grid)."""
    planes = jax.ShapeDtypeStruct((4, 3, 65, 390), jnp.float32)
    levels = jax.ShapeDtypeStruct((4, 2), jnp.float32)

    def run(planes, levels):
        model = build_transformer("base", key=jax.random.key(0))
        tokens = model.encode(planes, levels=levels)
        embedding = model.embed(planes, levels=levels)
        return tokens, embedding, model.module.reconstruct(tokens, 13, 43)

    tokens, embedding, signal = jax.eval_shape(run, planes, levels)
    assert tokens.shape == (4, 1 + 13 * 43, 768)  # [CLS] and the patch tokens per channel
    assert embedding.shape == (4, 2 * 768)  # [CLS] beside the patch mean
    assert signal.shape == (4, 43 * 9)  # the decoder gives back the raw signal it covers


def test_masked_patches_keep_their_place_on_the_grid():
    """Masked tokens differ by position, so the decoder can give two masked columns different
    signals."""
    x = _planes(1)
    mask = jnp.ones((1, 13 * 10), bool)
    tokens = MODEL.encode(x, mask)
    assert float(jnp.max(jnp.abs(tokens[0, 1] - tokens[0, 2]))) > 1e-3
    recon = MODEL.module.reconstruct(tokens, 13, 10)
    assert float(jnp.max(jnp.abs(recon[0, :9] - recon[0, 9:18]))) > 1e-4
