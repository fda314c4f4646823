"""A channel-aware transformer for any set of wearable channels, after NormWear (Luo et al.
2024, arXiv 2412.09758), in Flax NNX behind an Equinox adapter.

Input: per channel the three scalogram planes of `signal.cwt.scalogram` (`[C, 3, S, T]`: the
signal and its two differences through the CWT at `S` scales). Per channel:

- **Tokeniser**: a convolution with kernel = stride = (5 scales, 9 time steps) embeds each patch
  (`[S/5 x T/9]` tokens; a remainder is cropped), plus fixed 2-D sine-cosine positions computed
  for the grid at hand (half the width codes the scale row, half the time column), so any
  length runs without interpolation; a learned [CLS] token leads each channel's sequence.
- **Blocks**: pre-norm self-attention + MLP over each channel's own tokens, one set of weights
  for every channel (channels are a batch axis).
- **Liaison fusion**: after every `fuse_every`-th block, the channels' [CLS] tokens attend to
  each other in a separate block and are written back. This is the only path between channels:
  patch tokens never attend across channels, and nothing depends on the channel count or
  order (no channel embedding), so one set of weights runs on 1 or 7 channels, and permuting
  the channels permutes the per-channel outputs.
- **Levels**: standardising each plane (as NormWear does) throws away the signal's level and
  scale, which physiological tasks need (a metabolic domain is largely a VO2 and VE level, and
  a ratio between channels). `signal.cwt.levels` keeps `asinh` of each channel's mean and SD;
  a linear map adds them to the channel's [CLS] token, so the fusion can compare channels'
  levels (log-like values turn ratios into differences). Same weights for every channel.
  Pretraining hides one channel's levels per window and predicts them from its [CLS] token
  after the fusion (`level_head`), which teaches the fusion the relations between channels'
  levels (e.g. VO2 from HR and speed); the scalograms cannot teach that.
- **Embedding** of a recording: each channel's [CLS] token next to the mean of its patch tokens
  (`embed`: `[C, 2 width]`); downstream probes concatenate the channels or average them.
- **Decoder** (pretraining): a light block over each channel's tokens, then per time column
  the tokens averaged over scale rows and mapped to the column's 9 raw-signal samples.

Masking (`tasks.pretrain`) replaces masked patch embeddings by a learned mask token before the
positions are added (fixed shapes; every masked token keeps its place on the grid,
SimMIM-style).

`ChannelTransformer` is the NNX module; `NNXModel` is the adapter the trainer sees: an
`eqx.Module` with the static `graphdef` and the `nnx.State` (a pytree of arrays), merged on
every call, so `jit`, `grad`, `vmap` over folds and the optimiser treat it like every other
model.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

PATCH = (5, 9)  # (scales, time steps) per token
SIZES = {
    "tiny": dict(width=32, depth=2, heads=2, fuse_every=1, decoder_width=32, decoder_heads=2),
    "small": dict(width=96, depth=4, heads=4, fuse_every=2, decoder_width=64, decoder_heads=4),
    "base": dict(width=768, depth=12, heads=12, fuse_every=2, decoder_width=512, decoder_heads=8),
}


def grid_positions(rows: int, cols: int, width: int) -> Float[Array, "tokens width"]:
    """Fixed 2-D sine-cosine positions of a `rows x cols` token grid (row-major)."""
    quarter = width // 4
    freq = 1.0 / 10_000.0 ** (jnp.arange(quarter, dtype=jnp.float32) / quarter)
    r = jnp.arange(rows, dtype=jnp.float32)[:, None] * freq[None]
    c = jnp.arange(cols, dtype=jnp.float32)[:, None] * freq[None]
    row = jnp.concatenate([jnp.sin(r), jnp.cos(r)], -1)[:, None, :]  # [rows, 1, w/2]
    col = jnp.concatenate([jnp.sin(c), jnp.cos(c)], -1)[None, :, :]  # [1, cols, w/2]
    pos = jnp.concatenate(
        [
            jnp.broadcast_to(row, (rows, cols, 2 * quarter)),
            jnp.broadcast_to(col, (rows, cols, 2 * quarter)),
        ],
        axis=-1,
    )
    pos = pos.reshape(rows * cols, 4 * quarter)
    return jnp.pad(pos, ((0, 0), (0, width - 4 * quarter)))


class Block(nnx.Module):
    """Pre-norm multi-head self-attention and a GELU MLP, with residuals, over `[..., L, D]`."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads=heads, in_features=width, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x, mask=None):
        x = x + self.attention(self.norm1(x), mask=mask)
        return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class ChannelTransformer(nnx.Module):
    """The NNX encoder and its pretraining decoder (module docstring)."""

    def __init__(self, width: int, depth: int, heads: int, fuse_every: int, decoder_width: int,
                 decoder_heads: int, *, rngs: nnx.Rngs):  # fmt: skip
        self.width, self.fuse_every = width, fuse_every
        self.patch = nnx.Conv(
            3, width, kernel_size=PATCH, strides=PATCH, padding="VALID", rngs=rngs
        )
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (width,)))
        self.mask_token = nnx.Param(0.02 * jax.random.normal(rngs.params(), (width,)))
        self.level = nnx.Linear(2, width, rngs=rngs)
        self.level_token = nnx.Param(0.02 * jax.random.normal(rngs.params(), (width,)))
        self.level_head = nnx.Linear(width, 2, rngs=rngs)
        self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(depth)])
        self.fusion = nnx.List([Block(width, heads, rngs=rngs) for _ in range(depth // fuse_every)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.decoder_in = nnx.Linear(width, decoder_width, rngs=rngs)
        self.decoder_block = Block(decoder_width, decoder_heads, rngs=rngs)
        self.decoder_out = nnx.Linear(decoder_width, PATCH[1], rngs=rngs)

    def grid(self, scales: int, time: int) -> tuple[int, int]:
        """Token rows (scales) and columns (time) of a `scales x time` scalogram."""
        return scales // PATCH[0], time // PATCH[1]

    def tokens(
        self,
        planes: Float[Array, "channel 3 scale time"],
        mask: Bool[Array, "channel patch"] | None = None,
    ) -> Float[Array, "channel patch width"]:
        """Patch tokens (masked ones replaced by the mask token) with their grid positions,
        before [CLS] and the blocks: a masked patch keeps its place on the grid."""
        rows, cols = self.grid(planes.shape[2], planes.shape[3])
        if rows == 0 or cols == 0:
            raise ValueError(
                f"a {planes.shape[2]} x {planes.shape[3]} scalogram is smaller than one "
                f"{PATCH[0]} x {PATCH[1]} patch: give at least {PATCH[0]} scales and "
                f"{PATCH[1]} samples at the nominal rate"
            )
        x = jnp.moveaxis(planes, 1, -1)  # [C, S, T, 3] (NHWC)
        t = self.patch(x[:, : rows * PATCH[0], : cols * PATCH[1]])
        t = t.reshape(t.shape[0], rows * cols, self.width)
        if mask is not None:
            t = jnp.where(mask[..., None], self.mask_token[...][None, None], t)
        return t + grid_positions(rows, cols, self.width)[None]

    def encode(
        self,
        planes: Float[Array, "channel 3 scale time"],
        mask: Bool[Array, "channel patch"] | None = None,
        *,
        fuse: bool = True,
        channel_ok: Bool[Array, " channel"] | None = None,
        levels: Float[Array, "channel 2"] | None = None,
        hide_levels: Bool[Array, " channel"] | None = None,
    ) -> Float[Array, "channel tokens width"]:
        """Every channel's [CLS] and patch tokens after the blocks (masked patches replaced by
        the mask token; `fuse=False` switches the liaison fusion off; channels where
        `channel_ok` is False are padding, which the fusion does not attend to). `levels`
        (`signal.cwt.levels`: the mean and SD the scalogram's standardisation removes) are
        embedded into each channel's [CLS] token; where `hide_levels` is True a learned token
        stands in for them (pretraining predicts them back, `level_head`)."""
        t = self.tokens(planes, mask)
        cls = jnp.broadcast_to(self.cls[...][None, None], (t.shape[0], 1, self.width))
        if levels is not None:
            lv = self.level(levels)
            if hide_levels is not None:
                lv = jnp.where(hide_levels[:, None], self.level_token[...][None], lv)
            cls = cls + lv[:, None]
        t = jnp.concatenate([cls, t], axis=1)
        attend = None if channel_ok is None else channel_ok[None, None, None, :]
        fused = 0
        for i, block in enumerate(self.blocks):
            t = block(t)
            if fuse and (i + 1) % self.fuse_every == 0 and fused < len(self.fusion):
                liaison = self.fusion[fused](t[None, :, 0], attend)[0]  # the [CLS] tokens
                t = jnp.concatenate([liaison[:, None], t[:, 1:]], axis=1)
                fused += 1
        return self.norm(t)

    def embed(
        self, planes, *, fuse: bool = True, channel_ok=None, levels=None
    ) -> Float[Array, "channel width2"]:
        """Each channel's [CLS] token and the mean of its patch tokens, concatenated."""
        t = self.encode(planes, fuse=fuse, channel_ok=channel_ok, levels=levels)
        return jnp.concatenate([t[:, 0], t[:, 1:].mean(axis=1)], axis=-1)

    def reconstruct(self, tokens: Float[Array, "channel tokens width"], rows: int, cols: int):
        """The raw signal `[C, cols * 9]` from encoded tokens."""
        d = self.decoder_block(self.decoder_in(tokens))[:, 1:]
        d = d.reshape(d.shape[0], rows, cols, -1).mean(axis=1)  # [C, cols, Dd]
        return self.decoder_out(d).reshape(d.shape[0], cols * PATCH[1])


class NNXModel(eqx.Module):
    """The adapter: an NNX module as an Equinox pytree (`graphdef` static, `state` leaves)."""

    graphdef: Any = eqx.field(static=True)
    state: Any

    @classmethod
    def wrap(cls, module: nnx.Module) -> NNXModel:
        graphdef, state = nnx.split(module)
        return cls(graphdef, state)

    @property
    def module(self) -> ChannelTransformer:
        return nnx.merge(self.graphdef, self.state)

    def encode(self, planes, mask=None, **options):
        """`ChannelTransformer.encode` (options: fuse, channel_ok, levels, hide_levels)."""
        return self.module.encode(planes, mask, **options)

    def embed(self, planes, **options):
        """`ChannelTransformer.embed` (options: fuse, channel_ok, levels)."""
        return self.module.embed(planes, **options)


def build_transformer(size: str = "small", *, key, **changes) -> NNXModel:
    """The encoder of a named size (`SIZES`; `changes` override its entries), wrapped."""
    if size not in SIZES:
        raise ValueError(f"unknown transformer size {size!r}: choose one of {sorted(SIZES)}")
    return NNXModel.wrap(ChannelTransformer(**{**SIZES[size], **changes}, rngs=nnx.Rngs(key)))


def n_parameters(size: str = "base", **changes) -> int:
    """Parameter count of a size, from `nnx.eval_shape` (nothing allocated)."""
    abstract = nnx.eval_shape(
        lambda: ChannelTransformer(**{**SIZES[size], **changes}, rngs=nnx.Rngs(0))
    )
    return int(sum(a.size for a in jax.tree_util.tree_leaves(nnx.state(abstract, nnx.Param))))
