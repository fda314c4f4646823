"""Inference protocols for heart rate (Lab-to-Wrist section 4).

- standard: the true HR at the first second of every 60 s window is known;
- generative: only the first observed second of the session is known; each window starts from
  the previous window's last prediction, so errors are never reset.

A protocol is described by which samples it gives the model (`given`); metrics are computed on
the observed samples that were not given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

PROTOCOLS = ("standard", "generative")


def window_starts(
    hr: Float[Array, " time"], mask: Bool[Array, " time"], window: int
) -> tuple[Float[Array, " window"], Bool[Array, " window"]]:
    """Each window's first-second HR and whether it was observed (a last partial window
    included, as `starting_window` counts it)."""
    return hr[::window], mask[::window]


def standard_initial(
    hr: Float[Array, " time"], mask: Bool[Array, " time"], window: int
) -> Float[Array, " window"]:
    """The initial HR of every window under the standard protocol.

    A window whose first second was observed starts from it. One whose first second is a
    dropout restarts from the HR of the last observed window start before it (measured a
    window or more earlier), or, before any, from the session's first observed HR; the models'
    `standard` treat that value as if measured at the window's first second. So a stream
    (`AbstractHRModel.run_stream`) given HR at the observed window starts, which carries its own
    trajectory through an unobserved one, differs from the standard protocol in such a window
    (until the next observed window start restarts both from the same HR). Only observed
    window starts (and the session's first observed second, `given_mask`) count as given.
    """
    h0, _ = first_observed(hr, mask)
    start, _ = window_starts(hr, mask, window)
    last = starting_window(mask, window)
    return jnp.where(last >= 0, start[jnp.maximum(last, 0)], h0)


def starting_window(mask: Bool[Array, " time"], window: int) -> Int[Array, " window"]:
    """Per window, the index of the window whose observed first second the standard protocol
    starts it from (itself, or the last one before it); -1 before any (`standard_initial`
    then starts from the session's first observed HR)."""
    known = mask[::window]  # each window's first second (a last partial window included)
    return jax.lax.cummax(jnp.where(known, jnp.arange(known.shape[0]), -1))


def first_observed(
    hr: Float[Array, " time"], mask: Bool[Array, " time"]
) -> tuple[Float[Array, ""], Int[Array, ""]]:
    """HR at the session's first observed second and that second's index (generative)."""
    i = jnp.argmax(mask)
    return hr[i], i


def given_mask(
    mask: Bool[Array, "*batch time"], window: int, protocol: str, *, first_given: bool = True
) -> Bool[Array, "*batch time"]:
    """The samples a protocol hands to the model (excluded from its metrics). Under the
    standard protocol: the observed window starts, and the session's first observed second,
    from which the windows before the first observed window start begin (`standard_initial`;
    it is a window start itself unless the session starts in a dropout). `first_given=False`
    leaves that second out: the HR training loss's form, kept so that the published models,
    whose training segments sometimes start in a dropout, train as they did."""
    t = jnp.broadcast_to(jnp.arange(mask.shape[-1]), mask.shape)
    first = jnp.argmax(mask, axis=-1)
    if protocol == "standard":
        return mask & ((t % window == 0) | ((t == first[..., None]) & first_given))
    if protocol == "generative":
        return mask & (t == first[..., None])
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def hold_baseline(
    hr: Float[Array, " time"], mask: Bool[Array, " time"], window: int, protocol: str
) -> Float[Array, " time"]:
    """Baseline (a): the known HR held constant.

    Standard: each window's initial HR (`standard_initial`) held over the window.
    Generative: the session's first observed HR held over the whole session.
    """
    if protocol == "generative":
        return jnp.full_like(hr, first_observed(hr, mask)[0])
    held = standard_initial(hr, mask, window)
    return jnp.repeat(held, window, total_repeat_length=hr.shape[0])
