"""Windows over a padded cohort: index tables built once, gathered inside jitted code.

A window is `(session, start)`; `gather_windows` turns an index table into `[N, W, ...]` arrays
with `lax.dynamic_slice`, so training draws fresh batches without materialising every window.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

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
