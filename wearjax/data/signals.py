"""Signals at any rate: one named signal of many sessions stacked and padded, and per-second
summaries of a signal (a 64 Hz PPG or a 0.5 Hz reference HR onto the 1 Hz grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from wearjax.data.types import Session, Signal, _hold_nan, bucket_length
from wearjax.errors import WearjaxDataError


class SignalStack(eqx.Module):
    """One signal of many sessions, zero-padded to a common length bucket.

    `values [S, T, C]` (NaN samples held at the previous finite value, 0 in the padding),
    `mask [S, T]` True where a sample is observed (False in the padding), `lengths [S]` in
    samples; `rate_hz`, `channels` and `units` are those of every stacked signal.
    """

    values: Float[Array, "session time channel"]
    mask: Bool[Array, "session time"]
    lengths: Int[Array, " session"]
    rate_hz: float = eqx.field(static=True)
    channels: tuple[str, ...] = eqx.field(static=True)
    units: tuple[str, ...] = eqx.field(static=True)

    @property
    def valid(self) -> Bool[Array, "session time"]:
        """True inside each session's recorded length (padding excluded)."""
        t = jnp.arange(self.values.shape[1])
        return t[None, :] < self.lengths[:, None]


def stack_signals(
    signals: Sequence[Signal], *, bucket_s: float = 600.0, sources: Sequence[str] | None = None
) -> SignalStack:
    """Pad signals of one rate and channel list to a bucket of `bucket_s` seconds and stack them.

    `sources` names each signal in error messages (default: its position).
    """
    if not signals:
        raise WearjaxDataError("no signals to stack: the stack would be empty")
    names = list(sources) if sources is not None else [f"signal {i}" for i in range(len(signals))]
    first = signals[0]
    for name, s in zip(names, signals, strict=True):
        if s.rate_hz != first.rate_hz or s.channels != first.channels:
            raise WearjaxDataError(
                f"{name}: {s.rate_hz:g} Hz with channels {s.channels} differs from "
                f"{names[0]}'s {first.rate_hz:g} Hz with {first.channels}; resample or select "
                "channels so that every stacked signal shares one rate and channel list"
            )
    bucket = max(1, int(np.floor(bucket_s * first.rate_hz + 0.5)))
    t_max = bucket_length(max(s.length for s in signals), bucket)
    values = np.zeros((len(signals), t_max, len(first.channels)), np.float32)
    mask = np.zeros((len(signals), t_max), bool)
    for i, s in enumerate(signals):
        v = np.asarray(s.values, np.float32)
        values[i, : s.length] = _hold_nan(v)
        mask[i, : s.length] = np.asarray(s.mask) & np.all(np.isfinite(v), axis=1)
    return SignalStack(
        values=jnp.asarray(values),
        mask=jnp.asarray(mask),
        lengths=jnp.asarray([s.length for s in signals], jnp.int32),
        rate_hz=first.rate_hz,
        channels=first.channels,
        units=first.units,
    )


def stack_signal(sessions: Sequence[Session], name: str, *, bucket_s: float = 600.0) -> SignalStack:
    """`stack_signals` of `session.signal(name)` for every session."""
    return stack_signals(
        [s.signal(name) for s in sessions],
        bucket_s=bucket_s,
        sources=[s.source or s.runner or f"session {i}" for i, s in enumerate(sessions)],
    )


def per_second(
    signal: Signal, length: int
) -> tuple[Float[np.ndarray, "time channel"], Bool[np.ndarray, " time"]]:
    """A signal on the 1 Hz grid of `length` seconds: `(values [length, C], mask [length])`.

    At 1 Hz or faster, second s is the mean of the observed samples in [s, s + 1) s; slower,
    it holds the sample covering it, `floor(s * rate_hz)` (zero-order hold). Seconds with no
    observed sample are NaN with mask False.
    """
    rate = signal.rate_hz
    v = np.asarray(signal.values, np.float64)
    ok = np.asarray(signal.mask) & np.all(np.isfinite(v), axis=1)
    c = v.shape[1]
    if rate >= 1.0:
        second = np.floor(np.arange(signal.length) / rate + 1e-9).astype(np.int64)
        keep = ok & (second < length)
        count = np.bincount(second[keep], minlength=length)
        total = np.zeros((length, c))
        for j in range(c):
            total[:, j] = np.bincount(second[keep], weights=v[keep, j], minlength=length)
        seen = count > 0
        out = np.where(seen[:, None], total / np.maximum(count, 1)[:, None], np.nan)
        return out, seen
    sample = np.floor(np.arange(length) * rate + 1e-9).astype(np.int64)
    inside = sample < signal.length
    at = np.minimum(sample, max(signal.length - 1, 0))
    seen = inside & ok[at] if signal.length else np.zeros(length, bool)
    out = np.where(seen[:, None], v[at] if signal.length else 0.0, np.nan)
    return out, seen
