"""Backbones shared by the dynamic models: an MLP encoder and a GRU stack run as one scan.

The GRU follows the usual reset/update/candidate form (Cho et al. 2014, PyTorch's gate order):

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The input projections `W_i* x + b_i*` do not depend on the carry, so they are computed for all
time steps with one matrix product before the scan; the scan body holds only the recurrent part.

A sequence runs with those projections split per gate before the scan: three contiguous `[T, H]`
arrays, so a step reads whole rows instead of slicing one `[3H]` row three ways: 2.6x faster
per step and 1.5x per whole rollout at batch 1024 on CPU (`benchmarks/flops.py`). Its values
are bit-identical to the sliced layout, but a gradient taken through it sums the bias cotangent
in another order (1 ulp), which would move every trained figure by seed-level noise. So
derivatives are taken through the sliced layout (a `custom_jvp` whose rule is the sliced scan's
own JVP): trained weights are unchanged bit for bit, and only rollouts that are not
differentiated take the faster path.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def dense(weight: Array, bias: Array, x: Array) -> Array:
    """`x @ weight.T + bias` over any leading axes (bias broadcast explicitly)."""
    y = x @ weight.T
    return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


class Encoder(eqx.Module):
    """Per-time-step MLP: Linear -> LeakyReLU -> Dropout, repeated; `[T, F] -> [T, H]`."""

    layers: tuple[eqx.nn.Linear, ...]
    dropout: eqx.nn.Dropout

    def __init__(self, in_size: int, hidden: int, *, depth: int = 2, dropout: float = 0.1, key):
        keys = jax.random.split(key, depth)
        sizes = [in_size] + [hidden] * depth
        self.layers = tuple(
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(
        self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "time hidden"]:
        keys = (
            (None,) * len(self.layers) if key is None else jax.random.split(key, len(self.layers))
        )
        for layer, k in zip(self.layers, keys, strict=True):
            x = jax.nn.leaky_relu(dense(layer.weight, layer.bias, x))
            x = self.dropout(x, key=k, inference=k is None)
        return x


class GRULayer(eqx.Module):
    """One GRU layer over a whole sequence: `[T, I], h0 [H] -> hs [T, H]`."""

    weight_ih: Float[Array, "gates in"]
    weight_hh: Float[Array, "gates hidden"]
    bias_ih: Float[Array, " gates"]
    bias_hh: Float[Array, " gates"]

    def __init__(self, in_size: int, hidden: int, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        lim = hidden**-0.5
        u = lambda k, shape: jax.random.uniform(k, shape, minval=-lim, maxval=lim)  # noqa: E731
        self.weight_ih = u(k1, (3 * hidden, in_size))
        self.weight_hh = u(k2, (3 * hidden, hidden))
        self.bias_ih = u(k3, (3 * hidden,))
        self.bias_hh = u(k4, (3 * hidden,))

    @property
    def hidden(self) -> int:
        return self.weight_hh.shape[1]

    def gates(self, xr, xz, xn, h: Float[Array, " hidden"]) -> Float[Array, " hidden"]:
        """One step given the input projections of the three gates."""
        hr, hz, hn = jnp.split(self.weight_hh @ h + self.bias_hh, 3)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h

    def cell(
        self, xp: Float[Array, " gates"], h: Float[Array, " hidden"]
    ) -> Float[Array, " hidden"]:
        """One step given the precomputed input projection `xp = W_ih x + b_ih`."""
        return self.gates(*jnp.split(xp, 3), h)

    def __call__(
        self, x: Float[Array, "time in"], h0: Float[Array, " hidden"]
    ) -> Float[Array, "time hidden"]:
        return _sequence(self, x, h0)


def _sequence_sliced(layer: GRULayer, x, h0):
    """The layer over a sequence, each step slicing its `[3H]` projection row: the layout whose
    derivatives the trained figures were computed with."""
    xp = dense(layer.weight_ih, layer.bias_ih, x)  # all time steps at once, outside the scan

    def step(h, xp_t):
        h = layer.cell(xp_t, h)
        return h, h

    return jax.lax.scan(step, h0, xp)[1]


# Seconds per iteration of the rollout's scan (`lax.scan`'s `unroll`). Any value gives the
# values of 1 bit for bit (`tests/models/test_backbone.py`); on 2 CPU cores 2-16 ran at 0.76-1.14x
# the speed of 1 at batch 1, 64 and 1024, none faster across the board, and compiled slower
# (`benchmarks/unroll.py`), so the loop stays rolled.
ROLLOUT_UNROLL = 1


@jax.custom_jvp
def _sequence(layer: GRULayer, x, h0):
    """The same values with the projections stored per gate (no slicing inside the loop)."""
    per_gate = tuple(jnp.split(dense(layer.weight_ih, layer.bias_ih, x), 3, axis=-1))

    def step(h, xp_t):
        h = layer.gates(*xp_t, h)
        return h, h

    return jax.lax.scan(step, h0, per_gate, unroll=ROLLOUT_UNROLL)[1]


@_sequence.defjvp
def _sequence_jvp(primals, tangents):
    return jax.jvp(_sequence_sliced, primals, tangents)


class GRUStack(eqx.Module):
    """Stacked GRU layers; the state `[L, H]` is carried in and returned for the next window."""

    layers: tuple[GRULayer, ...]

    def __init__(self, in_size: int, hidden: int, n_layers: int, *, key):
        keys = jax.random.split(key, n_layers)
        self.layers = tuple(
            GRULayer(in_size if i == 0 else hidden, hidden, key=k) for i, k in enumerate(keys)
        )

    def init_state(self, dtype=jnp.float32) -> Float[Array, "layer hidden"]:
        return jnp.zeros((len(self.layers), self.layers[0].hidden), dtype)

    def __call__(
        self, x: Float[Array, "time in"], h0: Float[Array, "layer hidden"]
    ) -> tuple[Float[Array, "time hidden"], Float[Array, "layer hidden"]]:
        last = []
        for i, layer in enumerate(self.layers):
            x = layer(x, h0[i])
            last.append(x[-1])
        return x, jnp.stack(last)


class Backbone(eqx.Module):
    """Encoder + GRU stack: running features `[T, F]` -> temporal state `s_t [T, H]`.

    `s_t = f_temp(e_t, s_{t-1})` with `e_t` the encoded features; the GRU state is carried from
    one window into the next, so a session is one scan however many windows it has.
    """

    encoder: Encoder
    gru: GRUStack

    def __init__(self, n_features: int, hidden: int, n_layers: int, *, dropout=0.1, key):
        k1, k2 = jax.random.split(key)
        self.encoder = Encoder(n_features, hidden, dropout=dropout, key=k1)
        self.gru = GRUStack(hidden, hidden, n_layers, key=k2)

    @property
    def hidden(self) -> int:
        return self.gru.layers[0].hidden

    def __call__(
        self,
        x: Float[Array, "time feature"],
        state: Float[Array, "layer hidden"] | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "time hidden"], Float[Array, "layer hidden"]]:
        state = self.gru.init_state(x.dtype) if state is None else state
        return self.gru(self.encoder(x, key=key), state)

    def step(
        self, x_t: Float[Array, " feature"], state: Float[Array, "layer hidden"]
    ) -> tuple[Float[Array, " hidden"], Float[Array, "layer hidden"]]:
        """One second as `__call__` computes it inside a sequence (no dropout): `s_t` and the
        new GRU state, for models that run one second at a time."""
        h = self.encoder(x_t[None])[0]
        new = []
        for layer, h_prev in zip(self.gru.layers, state, strict=True):
            h = layer.cell(dense(layer.weight_ih, layer.bias_ih, h), h_prev)
            new.append(h)
        return h, jnp.stack(new)
