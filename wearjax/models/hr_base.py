"""The contract every heart-rate model meets, and its prediction type.

An HR model reads per-second inputs `x [T, F]` (features, or activity inputs) and predicts HR
under the two Lab-to-Wrist protocols (section 4): *standard*, where each `window`-second
window starts from its measured first second, and *generative* (`rollout`), where only the
session's first second is known. Subclasses implement the three abstract methods; `__call__`,
`rollout` and `predict_protocols` are written here once, so both protocols of a training step
share one pass over the inputs (`encode` does not depend on HR).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray


class HRPrediction(NamedTuple):
    """HR prediction of one session: `hr [T]` and its variance `var [T]` (bpm, bpm^2; zero
    for deterministic models), and per window `mu [N]`, `sigma [N]` (bpm)."""

    hr: Float[Array, " time"]
    var: Float[Array, " time"]
    mu: Float[Array, " window"]
    sigma: Float[Array, " window"]


class AbstractHRModel(eqx.Module):
    """An HR model: `window` seconds per protocol window; `encode`, `standard`, `generative`."""

    window: eqx.AbstractVar[int]
    # whether `HRPrediction.var` is the model's own predictive variance (the Kalman filter's);
    # deterministic models return zeros
    has_variance: ClassVar[bool] = False

    @abc.abstractmethod
    def encode(self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None) -> Any:
        """Everything that does not depend on HR, for the whole session (e.g. the GRU pass);
        `key` drives dropout in training (None: inference)."""

    @abc.abstractmethod
    def standard(self, encoded: Any, hr_init: Float[Array, " window"]) -> HRPrediction:
        """Standard protocol from `encode`'s output and each window's first HR (bpm)."""

    @abc.abstractmethod
    def generative(self, encoded: Any, hr0: Float[Array, ""]) -> HRPrediction:
        """Generative protocol from `encode`'s output and the session's first HR (bpm)."""

    def __call__(
        self,
        x: Float[Array, "time feature"],
        hr_init: Float[Array, " window"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> HRPrediction:
        """Standard protocol: each window starts from its first HR `hr_init` (bpm), given by
        `eval.protocols.standard_initial`."""
        return self.standard(self.encode(x, key=key), hr_init)

    def rollout(self, x: Float[Array, "time feature"], hr0: Float[Array, ""]) -> HRPrediction:
        """Generative protocol: only `hr0`, the session's first second (bpm), is known."""
        return self.generative(self.encode(x), hr0)

    @abc.abstractmethod
    def init_stream(self, hr0: Float[Array, ""]) -> Any:
        """The state of a stream that starts at second 0 with the known HR `hr0` (bpm)."""

    @abc.abstractmethod
    def step(
        self, state: Any, x_t: Float[Array, " feature"], hr_t: Float[Array, ""] | None = None
    ) -> tuple[Any, Float[Array, ""], Float[Array, ""]]:
        """One second, as a watch runs the model: the inputs `x_t` of second t and its
        measured HR `hr_t` (bpm; None or NaN where there is none) -> `(state, hr, var)` of
        second t. Causal: second t uses seconds <= t only. `run_stream` says what it equals."""

    def run_stream(
        self,
        x: Float[Array, "time feature"],
        hr0: Float[Array, ""],
        hr=None,
        *,
        checkpoint_every: int | None = None,
    ) -> HRPrediction:
        """`step` over a whole session in one `lax.scan` (`hr [T]`, NaN where not measured;
        None: only `hr0`). With `hr` None it equals `rollout(x, hr0)`; with measured HR, the
        model's own use of it:

        - Kalman: `HRKalman.assimilate(x, hr, measured)`, but only when the session's first
          second is measured and `hr0` is that HR. The stream starts from `hr0` at second 0 and
          anchors the observation's offset there, and ignores `hr[0]`. When a session starts in
          a dropout, `assimilate` starts its filter at second 0 from the first *measured* HR
          instead, taking the offset at the second it was measured, so the two differ.
        - ODEs: they restart from a measured HR, so HR measured at every window start gives the
          standard protocol. Where a window's first second is not measured, the standard
          protocol restarts that window from the last measured window start
          (`eval.protocols.standard_initial`), while the stream carries its trajectory on: the
          two differ in that window, until the next measured window start.

        `mu`, `sigma` are left empty.

        `checkpoint_every=C` (a divisor of T) bounds the memory of a gradient through a long
        session: the scan runs over chunks of C seconds, each rematerialised in the backward
        pass (`jax.checkpoint`), so only the stream state at chunk boundaries and one chunk's
        intermediates are kept (O(T / C + C) instead of O(T)), for about one more forward
        pass of compute. The values are the same."""
        hr = jnp.full(x.shape[:1], jnp.nan, x.dtype) if hr is None else hr

        def body(state, inputs):
            state, h, v = self.step(state, *inputs)
            return state, (h, v)

        state = self.init_stream(hr0)
        if checkpoint_every is None:
            _, (h, v) = jax.lax.scan(body, state, (x, hr))
        else:
            check_window(x.shape[0], checkpoint_every)
            chunks = jax.tree_util.tree_map(
                lambda a: a.reshape((-1, checkpoint_every) + a.shape[1:]), (x, hr)
            )
            chunk = jax.checkpoint(lambda s, c: jax.lax.scan(body, s, c))
            _, (h, v) = jax.lax.scan(chunk, state, chunks)
            h, v = h.reshape(-1), v.reshape(-1)
        empty = jnp.zeros((0,), h.dtype)
        return HRPrediction(h, v, empty, empty)

    def predict_protocols(
        self,
        x: Float[Array, "time feature"],
        hr_init: Float[Array, " window"],
        hr0: Float[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[HRPrediction, HRPrediction]:
        """Standard and generative predictions from one `encode` (used in training)."""
        encoded = self.encode(x, key=key)
        return self.standard(encoded, hr_init), self.generative(encoded, hr0)


def check_window(length: int, window: int) -> None:
    """Sessions are whole windows: the cohort is padded to a bucket that is a multiple."""
    if length % window:
        raise ValueError(
            f"session length {length} s is not a multiple of the {window} s window; "
            "pad the cohort to a length bucket that is"
        )


def known_offset(
    level: Float[Array, " time"],
    hr: Float[Array, " time"],
    known: Bool[Array, " time"],
    timescale: Float[Array, ""],
) -> Float[Array, " time"]:
    """How far measured HR sat from the level the features call for, carried from the last
    second HR was known and fading with the time since it:

        b_t = exp(-(t - k_t) / timescale) (hr_{k_t} - level_{k_t}),   k_t = last known second <= t

    (before the first known second, `k_t` is that second). This is how an HR model holds a
    runner's own level: at a known second its target is the measured HR, and a runner whose HR
    runs above the cohort's at a given effort keeps that offset for about `timescale` seconds
    (learned). With `level` constant and `timescale` long against the time since the known
    second it is the known HR held; far from any known second it is the level alone: the two
    baselines are its limits."""
    k = last_known(known)
    since = jnp.abs(jnp.arange(level.shape[0]) - k).astype(level.dtype)
    return faded_offset(hr[k] - level[k], since, timescale)


def last_known(known: Bool[Array, " time"]) -> Array:
    """For every second, the index of the last `known` second at or before it; before the
    first known second, that second's index (one cumulative max, no loop)."""
    t = jnp.arange(known.shape[0])
    last = jax.lax.cummax(jnp.where(known, t, -1))
    return jnp.where(last >= 0, last, jnp.argmax(known))


def measured_hr(hr_t: Float[Array, ""] | None, dtype) -> tuple[Array, Array]:
    """A stream's measured HR of one second: `(hr, measured)`, NaN and None meaning none."""
    if hr_t is None:
        return jnp.asarray(jnp.nan, dtype), jnp.asarray(False)
    hr_t = jnp.asarray(hr_t, dtype)
    return hr_t, jnp.isfinite(hr_t)


def faded_offset(offset, since, timescale):
    """`known_offset`'s fading, one second at a time: `exp(-since / timescale) offset`."""
    return jnp.exp(-since / timescale) * offset
