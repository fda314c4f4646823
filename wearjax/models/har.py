"""Activity recognition from several inertial modalities with cross-modal disentanglement
(after CMD-HAR, arXiv 2503.21843) and on-the-fly gradient modulation (OGM, Peng et al., CVPR
2022).

A window `x [T, C]` holds the channels of every modality (accelerometer axes, gyroscope axes,
PPG or HR when present); `modalities` names each one's channel indices. Per modality `u`:

- **Encoder** (`AxisTimeEncoder`): every axis is cut into patches of `patch` samples, each
  patch embedded by one linear map shared by the axes, plus a learned axis embedding and a
  sine-cosine time position (computed for any length). Each block runs self-attention over
  time steps (per axis), then over the axes (per time step), then an MLP, pre-norm with
  residuals: the spatiotemporal attention. Mean over tokens gives `h_u`.
- **Disentanglement**: `s_u = S_u h_u` is the part meant to be shared with the other
  modalities, `p_u = P_u h_u` what `u` alone carries. `alignment_loss` pulls the modalities'
  shared parts together; `orthogonality_loss` keeps each specific part apart from its shared
  one (the squared Frobenius norm of their batch cross-correlation, as in domain separation
  networks).
- **Fusion**: the concatenation `z = [s_1, p_1, s_2, p_2, ...]` through one linear classifier.
  Its logits split exactly into modality shares `logits_u = W_u [s_u, p_u] + b / M`, which
  gradient modulation needs. (A linear fusion keeps this split exact; the attention is in the
  encoders.)

**Gradient modulation** (`modulation`): per batch, `score_u = sum_i softmax(logits_u)_i[y_i]`,
`rho_u = score_u / mean_{v != u} score_v`, and `k_u = 1 - tanh(alpha rho_u)` when `rho_u > 1`,
else 1. The encoder of modality `u` receives its gradient times `k_u`: `scale_gradient` is the
identity forward and multiplies the cotangent by `k_u` backward, applied to `h_u`, so every
gradient that reaches the encoder (classification and disentanglement terms alike) is scaled,
as in OGM, while the heads learn at full rate. With two modalities `rho_u` is the paper's
`s_u / s_other`. With Adam the scale acts through the gradient's size relative to its running
second moment rather than as a step size.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from wearjax.models.backbone import dense


class HAROutput(NamedTuple):
    logits: Float[Array, " classes"]
    modality_logits: Float[Array, "modality classes"]  # shares of `logits` (sum to it)
    shared: Float[Array, "modality latent"]
    specific: Float[Array, "modality latent"]


def time_positions(n: int, width: int) -> Float[Array, "n width"]:
    """Sine-cosine positions of `n` steps (Vaswani et al. 2017), any `n`."""
    pos = jnp.arange(n, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-jnp.log(10_000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    angle = pos * freq[None]
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(n, -1)[:, :width]


class AxisTimeBlock(eqx.Module):
    """Pre-norm attention over time (per axis), over axes (per time step), then an MLP."""

    norms: tuple[eqx.nn.LayerNorm, ...]
    over_time: eqx.nn.MultiheadAttention
    over_axes: eqx.nn.MultiheadAttention
    mlp: tuple[eqx.nn.Linear, eqx.nn.Linear]
    dropout: eqx.nn.Dropout

    def __init__(self, width: int, heads: int, dropout: float, *, key):
        k = jax.random.split(key, 4)
        self.norms = tuple(eqx.nn.LayerNorm(width) for _ in range(3))
        self.over_time = eqx.nn.MultiheadAttention(heads, width, key=k[0])
        self.over_axes = eqx.nn.MultiheadAttention(heads, width, key=k[1])
        self.mlp = (
            eqx.nn.Linear(width, 2 * width, key=k[2]),
            eqx.nn.Linear(2 * width, width, key=k[3]),
        )
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, tokens: Float[Array, "axis time width"], key=None):
        keys = (None,) * 3 if key is None else tuple(jax.random.split(key, 3))
        drop = lambda y, k: self.dropout(y, key=k, inference=k is None)  # noqa: E731
        norm = lambda i, y: jax.vmap(jax.vmap(self.norms[i]))(y)  # noqa: E731
        y = norm(0, tokens)
        tokens = tokens + drop(jax.vmap(lambda a: self.over_time(a, a, a))(y), keys[0])
        y = jnp.swapaxes(norm(1, tokens), 0, 1)  # [time, axis, width]
        attended = jax.vmap(lambda a: self.over_axes(a, a, a))(y)
        tokens = tokens + drop(jnp.swapaxes(attended, 0, 1), keys[1])
        y = norm(2, tokens)
        up, down = self.mlp
        y = dense(down.weight, down.bias, jax.nn.gelu(dense(up.weight, up.bias, y)))
        return tokens + drop(y, keys[2])


class AxisTimeEncoder(eqx.Module):
    """One modality's encoder: `[T, C_u] -> h_u [width]` (see the module docstring)."""

    embed: eqx.nn.Linear
    axis_embedding: Float[Array, "axis width"]
    blocks: tuple[AxisTimeBlock, ...]
    norm: eqx.nn.LayerNorm
    patch: int = eqx.field(static=True)

    def __init__(self, n_axes: int, width: int, *, patch: int, depth: int, heads: int,
                 dropout: float, key):  # fmt: skip
        k = jax.random.split(key, depth + 2)
        self.patch = patch
        self.embed = eqx.nn.Linear(patch, width, key=k[0])
        self.axis_embedding = 0.02 * jax.random.normal(k[1], (n_axes, width))
        self.blocks = tuple(AxisTimeBlock(width, heads, dropout, key=ki) for ki in k[2:])
        self.norm = eqx.nn.LayerNorm(width)

    def __call__(self, x: Float[Array, "time axis"], key=None) -> Float[Array, " width"]:
        n = x.shape[0] // self.patch
        if n == 0:
            raise ValueError(f"a window of {x.shape[0]} samples is shorter than one patch")
        patches = x[: n * self.patch].T.reshape(x.shape[1], n, self.patch)  # [axis, time, patch]
        width = self.axis_embedding.shape[1]
        tokens = dense(self.embed.weight, self.embed.bias, patches)
        tokens = tokens + self.axis_embedding[:, None] + time_positions(n, width)[None]
        keys = (
            (None,) * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        )
        for block, k in zip(self.blocks, keys, strict=True):
            tokens = block(tokens, k)
        return self.norm(tokens.mean(axis=(0, 1)))


@jax.custom_vjp
def scale_gradient(x: Array, scale: Array) -> Array:
    """Identity forward; backward multiplies the cotangent of `x` by `scale` (no gradient to
    `scale`)."""
    return x


def _scale_fwd(x, scale):
    return x, scale


def _scale_bwd(scale, g):
    return g * scale, jnp.zeros_like(scale)


scale_gradient.defvjp(_scale_fwd, _scale_bwd)


def modulation(
    modality_logits: Float[Array, "batch modality classes"],
    y: Int[Array, " batch"],
    alpha: float,
) -> Float[Array, " modality"]:
    """OGM coefficients `k_u` of a batch (module docstring); constant to autodiff."""
    logits = jax.lax.stop_gradient(modality_logits)
    p = jax.nn.softmax(logits, axis=-1)
    score = jnp.sum(jnp.take_along_axis(p, y[:, None, None], axis=-1)[..., 0], axis=0)  # [M]
    m = score.shape[0]
    if m == 1:  # one modality: nothing to balance
        return jnp.ones(1, logits.dtype)
    others = (jnp.sum(score) - score) / (m - 1)
    rho = score / others
    return jnp.where(rho > 1, 1 - jnp.tanh(alpha * rho), 1.0)


def _unit_rows(a: Float[Array, "*batch latent"]) -> Float[Array, "*batch latent"]:
    return a / jnp.sqrt(jnp.sum(jnp.square(a), axis=-1, keepdims=True) + 1e-8)


def alignment_loss(shared: Float[Array, "batch modality latent"]) -> Float[Array, ""]:
    """Mean over modality pairs and windows of `|n(s_u) - n(s_v)|^2`, `n` the unit vector."""
    unit = _unit_rows(shared)
    m = shared.shape[1]
    if m < 2:
        return jnp.zeros((), shared.dtype)
    diff = unit[:, :, None] - unit[:, None, :]  # [B, M, M, L]
    pairs = jnp.sum(jnp.square(diff), axis=-1)
    return jnp.sum(jnp.triu(pairs.mean(0), k=1)) / (m * (m - 1) / 2)


def orthogonality_loss(
    shared: Float[Array, "batch modality latent"], specific: Float[Array, "batch modality latent"]
) -> Float[Array, ""]:
    """Mean over modalities of `|S_u^T P_u|_F^2 / B^2`: `S_u`, `P_u` the batch's shared and
    specific parts, centred over the batch and scaled to unit rows."""
    b = shared.shape[0]

    def one(s, p):
        s = _unit_rows(s - s.mean(0, keepdims=True))
        p = _unit_rows(p - p.mean(0, keepdims=True))
        return jnp.sum(jnp.square(s.T @ p)) / b**2

    return jnp.mean(jax.vmap(one, in_axes=(1, 1))(shared, specific))


class HARModel(eqx.Module):
    """Encoders per modality, shared/specific projections, one linear fused classifier."""

    encoders: tuple[AxisTimeEncoder, ...]
    to_shared: tuple[eqx.nn.Linear, ...]
    to_specific: tuple[eqx.nn.Linear, ...]
    head: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    channels: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(
        self,
        channels: tuple[tuple[int, ...], ...],
        n_classes: int,
        *,
        width: int = 32,
        latent: int = 16,
        patch: int = 5,
        depth: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        key: PRNGKeyArray,
    ):
        m = len(channels)
        k = jax.random.split(key, 3 * m + 1)
        self.channels = tuple(tuple(int(c) for c in ch) for ch in channels)
        self.encoders = tuple(
            AxisTimeEncoder(
                len(ch), width, patch=patch, depth=depth, heads=heads, dropout=dropout, key=k[i]
            )  # fmt: skip
            for i, ch in enumerate(self.channels)
        )
        self.to_shared = tuple(eqx.nn.Linear(width, latent, key=k[m + i]) for i in range(m))
        self.to_specific = tuple(eqx.nn.Linear(width, latent, key=k[2 * m + i]) for i in range(m))
        self.head = eqx.nn.Linear(2 * latent * m, n_classes, key=k[-1])
        self.dropout = eqx.nn.Dropout(dropout)

    def encode(self, x: Float[Array, "time channel"], key=None) -> Float[Array, "modality width"]:
        """`h_u` of every modality."""
        m = len(self.encoders)
        keys = (None,) * m if key is None else jax.random.split(key, m)
        return jnp.stack([
            enc(x[:, jnp.asarray(ch)], k)
            for enc, ch, k in zip(self.encoders, self.channels, keys, strict=True)
        ])  # fmt: skip

    def heads(self, h: Float[Array, "modality width"], key=None) -> HAROutput:
        """Shared and specific parts, fused logits and their modality shares, from `h`."""
        pairs = lambda fs: zip(fs, h, strict=True)  # noqa: E731  one projection per modality
        shared = jnp.stack([dense(f.weight, f.bias, hu) for f, hu in pairs(self.to_shared)])
        specific = jnp.stack([dense(f.weight, f.bias, hu) for f, hu in pairs(self.to_specific)])
        z = jnp.concatenate([shared, specific], axis=-1)  # [M, 2L]
        z = self.dropout(z, key=key, inference=key is None)
        m, width = z.shape
        w = self.head.weight.reshape(-1, m, width)  # [classes, M, 2L]: block u acts on z_u
        shares = jnp.einsum("kmj,mj->mk", w, z) + self.head.bias[None] / m
        return HAROutput(shares.sum(0), shares, shared, specific)

    def __call__(self, x: Float[Array, "time channel"], *, key=None) -> HAROutput:
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        return self.heads(self.encode(x, k1), k2)


class ConvNet(eqx.Module):
    """The plain 1-D CNN baseline: conv -> ReLU blocks over all channels, global average
    pooling, a linear classifier. Same call as `HARModel`; no modalities of its own."""

    convs: tuple[eqx.nn.Conv1d, ...]
    head: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(self, n_channels: int, n_classes: int, *, width: int = 64, kernel: int = 5,
                 depth: int = 3, dropout: float = 0.1, key):  # fmt: skip
        k = jax.random.split(key, depth + 1)
        sizes = [n_channels] + [width] * depth
        self.convs = tuple(
            eqx.nn.Conv1d(a, b, kernel, padding="SAME", key=ki)
            for a, b, ki in zip(sizes[:-1], sizes[1:], k[:-1], strict=True)
        )
        self.head = eqx.nn.Linear(width, n_classes, key=k[-1])
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x: Float[Array, "time channel"], *, key=None) -> HAROutput:
        y = x.T
        for conv in self.convs:
            y = jax.nn.relu(conv(y))
        z = self.dropout(y.mean(axis=1), key=key, inference=key is None)
        logits = self.head(z)
        empty = jnp.zeros((1, 0), logits.dtype)
        return HAROutput(logits, logits[None], empty, empty)
