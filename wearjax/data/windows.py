"""Windows over a padded cohort: index tables built once, gathered inside jitted code.

A window is `(session, start)`; `gather_windows` turns an index table into `[N, W, ...]` arrays
with `lax.dynamic_slice`, so training draws fresh batches without materialising every window.
`gather_seconds` takes windows in seconds instead, so one table aligns signals of any rate.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from wearjax.data.signals import SignalStack
from wearjax.errors import WearjaxDataError


class WindowIndex(eqx.Module):
    """Start positions of windows: `session [N]`, `start [N]` (seconds), and their `width`."""

    session: Int[Array, " n"]
    start: Int[Array, " n"]
    width: int = eqx.field(static=True)

    @property
    def n(self) -> int:
        return int(self.session.shape[0])


def window_index(lengths, width: int, stride: int | None = None) -> WindowIndex:
    """All windows of `width` s lying fully inside each session, every `stride` s.

    `stride = width` (the default) gives non-overlapping evaluation windows; a smaller stride
    gives overlapping training windows. Sessions shorter than `width` contribute none.
    """
    stride = width if stride is None else stride
    if width <= 0 or stride <= 0:
        raise WearjaxDataError(f"window width and stride must be positive, got {width}, {stride}")
    lengths = np.asarray(lengths)
    sessions, starts = [], []
    for s, length in enumerate(lengths):
        n = (int(length) - width) // stride + 1 if length >= width else 0
        sessions.append(np.full(n, s, np.int32))
        starts.append(np.arange(n, dtype=np.int32) * stride)
    session = np.concatenate(sessions) if sessions else np.zeros(0, np.int32)
    if session.size == 0:
        raise WearjaxDataError(
            f"no window of {width} s fits in any session (longest is {int(lengths.max(initial=0))}"
            " s): use shorter windows or longer sessions"
        )
    return WindowIndex(jnp.asarray(session), jnp.asarray(np.concatenate(starts)), width)


def gather_windows(array: Array, session: Array, start: Array, width: int) -> Array:
    """`array [S, T, ...]` -> `[N, width, ...]`: the windows at `(session[i], start[i])`."""

    def one(s, t0):
        row = array[s]
        return jax.lax.dynamic_slice_in_dim(row, t0, width, axis=0)

    return jax.vmap(one)(session, start)


def window_samples(width_s: float, rate_hz: float) -> int:
    """Samples in a window of `width_s` seconds at `rate_hz`: `round(width_s * rate_hz)`."""
    n = int(np.floor(width_s * rate_hz + 0.5))
    if n < 1:
        raise WearjaxDataError(
            f"a window of {width_s:g} s holds no sample at {rate_hz:g} Hz; widen the window"
        )
    return n


def sample_index(
    start_s: Float[Array, " n"], width_s: float, rate_hz: float
) -> Int[Array, " n width"]:
    """Sample indices `[N, W]` of windows starting at `start_s [N]` seconds, with
    `W = window_samples(width_s, rate_hz)`; row i is `round(start_s[i] * rate_hz) + 0..W-1`."""
    w = window_samples(width_s, rate_hz)
    first = jnp.floor(jnp.asarray(start_s) * rate_hz + 0.5).astype(jnp.int32)
    return first[:, None] + jnp.arange(w, dtype=jnp.int32)[None, :]


def gather_seconds(
    array: Shaped[Array, "session time *rest"],
    session: Int[Array, " n"],
    start_s: Float[Array, " n"],
    width_s: float,
    rate_hz: float,
) -> Shaped[Array, "n width *rest"]:
    """`array [S, T, ...]` sampled at `rate_hz` -> `[N, W, ...]`: the windows of `width_s`
    seconds starting at `start_s[i]` s of session `session[i]`, so that windows given in
    seconds cover the same span at every rate. One `jnp.take` of an index table (jit-able,
    `start_s` may be traced); samples outside `[0, T)` are 0 (False for a mask).
    """
    s, t = array.shape[:2]
    idx = sample_index(start_s, width_s, rate_hz)
    flat = jnp.asarray(session, jnp.int32)[:, None] * t + idx
    flat = jnp.where((idx >= 0) & (idx < t), flat, s * t)  # s * t is out of range: filled
    rows = array.reshape((s * t, *array.shape[2:]))
    return jnp.take(rows, flat, axis=0, mode="fill", fill_value=0)


def gather_signal(
    stack: SignalStack, session: Int[Array, " n"], start_s: Float[Array, " n"], width_s: float
) -> tuple[Float[Array, "n width channel"], Bool[Array, "n width"]]:
    """Windows in seconds of a stacked signal: `(values [N, W, C], mask [N, W])`; the mask is
    False in the padding and outside the recording."""
    args = (session, start_s, width_s, stack.rate_hz)
    return gather_seconds(stack.values, *args), gather_seconds(stack.mask, *args)
