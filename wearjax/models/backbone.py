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

`GRULayer(impl="manual")` is the same layer with other rounding, faster to train at small
batches: the recurrent product is taken as `h @ W_hh^T` against a transposed copy made once per
sequence (vmapped over a batch, `W_hh @ h` became a product that transposes `W_hh` at every
step), and the reverse pass is written by hand (`_manual_recurrence`): one reverse scan carries
dL/dh and keeps only it per step, the gate derivatives follow from it for the whole sequence at
once, and the weight gradients are one matrix product after it, where JAX's derivative of the
scan adds an outer product into a `[3H, H]` carry every second. Its values differ from the
default's by float32 rounding (about 1e-6 relative), so it is opt-in
(`tasks.hr.HRStudyConfig.gru_impl`) and every published figure keeps the default. The gain is
largest at small batches above 1 (the quick demo trains 2 sessions per fold).
"""

from __future__ import annotations

from typing import Literal

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
        x = x.astype(self.layers[0].weight.dtype)  # float32 data into an x64 model
        for layer, k in zip(self.layers, keys, strict=True):
            x = jax.nn.leaky_relu(dense(layer.weight, layer.bias, x))
            x = self.dropout(x, key=k, inference=k is None)
        return x


# How a GRU layer runs (module docstring): "autodiff", the rounding of every published figure,
# or "manual", a hand-written reverse pass (training steps 1.5-1.8x faster at batch 2, 1.1-1.2x
# at batch 1 and 16: `benchmarks/gru_impl.py`). "manual" has no forward-mode derivative.
GRUImpl = Literal["autodiff", "manual"]
GRU_IMPLS: tuple[str, ...] = ("autodiff", "manual")


def check_gru_impl(impl: str) -> None:
    """Refuse an implementation name outside `GRU_IMPLS`, naming the choices."""
    if impl not in GRU_IMPLS:
        raise ValueError(f"unknown GRU implementation {impl!r}: choose one of {list(GRU_IMPLS)}")


class GRULayer(eqx.Module):
    """One GRU layer over a whole sequence: `[T, I], h0 [H] -> hs [T, H]`; `impl` chooses
    how it runs (`GRU_IMPLS`)."""

    weight_ih: Float[Array, "gates in"]
    weight_hh: Float[Array, "gates hidden"]
    bias_ih: Float[Array, " gates"]
    bias_hh: Float[Array, " gates"]
    impl: GRUImpl = eqx.field(static=True, default="autodiff")

    def __init__(self, in_size: int, hidden: int, *, impl: GRUImpl = "autodiff", key):
        check_gru_impl(impl)
        self.impl = impl
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
        if self.impl == "manual":
            recurrent = h @ self.weight_hh.T + self.bias_hh
        else:
            recurrent = self.weight_hh @ h + self.bias_hh
        return _update(recurrent, (xr, xz, xn), h)[0]

    def cell(
        self, xp: Float[Array, " gates"], h: Float[Array, " hidden"]
    ) -> Float[Array, " hidden"]:
        """One step given the precomputed input projection `xp = W_ih x + b_ih`."""
        return self.gates(*jnp.split(xp, 3), h)

    def __call__(
        self, x: Float[Array, "time in"], h0: Float[Array, " hidden"]
    ) -> Float[Array, "time hidden"]:
        if self.impl == "manual":
            per_gate = jnp.split(dense(self.weight_ih, self.bias_ih, x), 3, axis=-1)
            return _manual_recurrence(self.weight_hh, self.bias_hh, *per_gate, h0)
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


def _update(recurrent, xp, h):
    """The GRU's gate equations (module docstring) from the recurrent part `W_hh h + b_hh` and
    the input projections `xp = (xr, xz, xn)`: h' and the gates the manual reverse pass keeps
    (r, z, n and the recurrent part of n's pre-activation, W_hn h + b_hn)."""
    hr, hz, hn = jnp.split(recurrent, 3)
    r = jax.nn.sigmoid(xp[0] + hr)
    z = jax.nn.sigmoid(xp[1] + hz)
    n = jnp.tanh(xp[2] + r * hn)
    return (1.0 - z) * n + z * h, (r, z, n, hn)


def _manual_step(w_t, b_hh, h, xp):
    """One step of `impl="manual"`, with `w_t` = W_hh^T made once per sequence."""
    return _update(h @ w_t + b_hh, xp, h)


@jax.custom_vjp
def _manual_recurrence(w_hh, b_hh, xr, xz, xn, h0):
    """The recurrent part of a GRU layer over per-gate input projections `[T, H]` each."""
    w_t = w_hh.T  # once per sequence, outside the loop

    def step(h, xp):
        h = _manual_step(w_t, b_hh, h, xp)[0]
        return h, h

    return jax.lax.scan(step, h0, (xr, xz, xn))[1]


def _manual_forward(w_hh, b_hh, xr, xz, xn, h0):
    w_t = w_hh.T

    def step(h, xp):
        h, gates = _manual_step(w_t, b_hh, h, xp)
        return h, (h, *gates)

    hs, *gates = jax.lax.scan(step, h0, (xr, xz, xn))[1]
    return hs, (w_hh, h0, hs, *gates)


def _gate_cotangents(dh, r, z, n, g_n, h_before):
    """The gates' pre-activation cotangents `(d a_r, d a_z, d a_n)` from dL/dh_t and the gates
    the forward pass kept (`_manual_reverse`); elementwise, so it runs per step or per sequence."""
    d_an = dh * (1.0 - z) * (1.0 - n * n)
    d_ar = d_an * g_n * r * (1.0 - r)
    d_az = dh * (h_before - n) * z * (1.0 - z)
    return d_ar, d_az, d_an


def _manual_reverse(residuals, d_hs):
    """With a_r, a_z, a_n the gates' pre-activations and g = W_hh h_{t-1} + b_hh: per step,
    backwards, dL/dh_t (the carry plus the output's own cotangent), then

        d a_n = dh (1 - z) (1 - n^2),   d a_r = d a_n (g_n) r (1 - r),
        d a_z = dh (h_{t-1} - n) z (1 - z),   dg = (d a_r, d a_z, d a_n r),
        dL/dh_{t-1} = dh z + dg W_hh;

    the input projections' cotangents are (d a_r, d a_z, d a_n), and after the loop
    dL/dW_hh = sum_t dg_t^T h_{t-1} (one product) and dL/db_hh = sum_t dg_t.

    The loop keeps only dL/dh_t per step and the gate cotangents are computed again from it for
    the whole sequence at once: on CPU each array a scan writes per step costs about as much as
    the step's elementwise work, and writing `dg` (`[3H]`) and `d a_n` from the loop made the
    reverse pass 1.3-1.4x slower at batch 64 (`benchmarks/train_split.py`)."""
    w_hh, h0, hs, r, z, n, g_n = residuals
    h_prev = jnp.concatenate([h0[None], hs])[:-1]

    def step(d_next, t):
        d_out, r, z, n, g_n, h_before = t
        dh = d_next + d_out
        d_ar, d_az, d_an = _gate_cotangents(dh, r, z, n, g_n, h_before)
        dg = jnp.concatenate([d_ar, d_az, d_an * r], axis=-1)
        return dh * z + dg @ w_hh, dh

    xs = (d_hs, r, z, n, g_n, h_prev)
    dh0, dh = jax.lax.scan(step, jnp.zeros_like(h0), xs, reverse=True)
    d_xr, d_xz, d_xn = _gate_cotangents(dh, r, z, n, g_n, h_prev)
    dg = jnp.concatenate([d_xr, d_xz, d_xn * r], axis=-1)
    return dg.T @ h_prev, dg.sum(0), d_xr, d_xz, d_xn, dh0


_manual_recurrence.defvjp(_manual_forward, _manual_reverse)


class GRUStack(eqx.Module):
    """Stacked GRU layers; the state `[L, H]` is carried in and returned for the next window."""

    layers: tuple[GRULayer, ...]

    def __init__(
        self, in_size: int, hidden: int, n_layers: int, *, impl: GRUImpl = "autodiff", key
    ):
        keys = jax.random.split(key, n_layers)
        self.layers = tuple(
            GRULayer(in_size if i == 0 else hidden, hidden, impl=impl, key=k)
            for i, k in enumerate(keys)
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

    def __init__(
        self, n_features: int, hidden: int, n_layers: int, *, dropout=0.1,
        gru_impl: GRUImpl = "autodiff", key,
    ):  # fmt: skip
        k1, k2 = jax.random.split(key)
        self.encoder = Encoder(n_features, hidden, dropout=dropout, key=k1)
        self.gru = GRUStack(hidden, hidden, n_layers, impl=gru_impl, key=k2)

    @property
    def hidden(self) -> int:
        return self.gru.layers[0].hidden

    @property
    def param_dtype(self):
        """The weights' dtype, in which the backbone computes whatever its inputs' dtype."""
        return self.encoder.layers[0].weight.dtype

    def __call__(
        self,
        x: Float[Array, "time feature"],
        state: Float[Array, "layer hidden"] | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "time hidden"], Float[Array, "layer hidden"]]:
        x = jnp.asarray(x, self.param_dtype)  # the weights' dtype (a no-op where they agree)
        state = self.gru.init_state(self.param_dtype) if state is None else state
        return self.gru(self.encoder(x, key=key), state)

    def step(
        self, x_t: Float[Array, " feature"], state: Float[Array, "layer hidden"]
    ) -> tuple[Float[Array, " hidden"], Float[Array, "layer hidden"]]:
        """One second as `__call__` computes it inside a sequence (no dropout): `s_t` and the
        new GRU state, for models that run one second at a time."""
        h = self.encoder(jnp.asarray(x_t, self.param_dtype)[None])[0]
        new = []
        for layer, h_prev in zip(self.gru.layers, state, strict=True):
            h = layer.cell(dense(layer.weight_ih, layer.bias_ih, h), h_prev)
            new.append(h)
        return h, jnp.stack(new)
