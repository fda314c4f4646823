"""The gait in a wrist accelerometer's spectra, and the heart rate's lag behind it.

- `stride_hz`: the stride frequency (one left and one right step: the arm swing's period) of
  each window, the candidate `f0` whose power at `f0` and `2 f0` (the step frequency, where the
  bounce and the landing impacts sit) is largest. Summing the two lines resolves the ambiguity
  of a plain peak search, whose maximum jumps between the swing and the step line from window
  to window. Cadence in steps per minute is `120 x stride_hz`.
- `lagged`: first-order lags of a per-window series (`m_t = m_{t-1} + (1 - exp(-hop / tau))
  (x_t - m_{t-1})`, from `m_0 = x_0`), one per time constant, by `lax.scan` over windows. Heart
  rate follows a change of running intensity as a first-order response with a time constant of
  about half a minute to two minutes (the mono-exponential of the personalised HR ODE,
  `models.hr_personalized`), so a linear read of the lagged cadence is a kinetic model of HR
  from the gait alone (`tasks.virtual_study`'s `acc_gait` reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Real

STRIDE_RANGE_HZ = (0.6, 2.0)  # walking to sprinting: 72-240 steps per minute
LAGS_S = (10.0, 30.0, 60.0, 120.0, 240.0)
OWN_LINE = 0.05  # extra weight of a candidate's own line: half the stride, whose own line is
# missing, scores the same as the stride when the step line is missing too; this breaks the tie


def stride_hz(
    power: Float[Array | np.ndarray, "*batch freq"],
    freqs: np.ndarray,
    lo: float = STRIDE_RANGE_HZ[0],
    hi: float = STRIDE_RANGE_HZ[1],
    step: float = 0.005,
) -> Float[Array, "*batch"]:
    """Stride frequency (Hz) of each spectrum `power [..., F]` (power, not dB, on `freqs`; the
    ACC's axes summed beforehand), from candidates `lo`..`hi` every `step` Hz (module
    docstring). A step line beyond `freqs[-1]` counts as zero."""
    if not 0 < lo < hi:
        raise ValueError(f"the stride's search range needs 0 < lo < hi, got {lo} and {hi}")
    if lo < freqs[0]:  # below the grid a candidate would read the lowest bin's power
        raise ValueError(f"lo={lo} Hz lies below the spectra's grid (from {freqs[0]:g} Hz): "
                         "give lo within it")  # fmt: skip
    power = jnp.asarray(power)
    f0 = jnp.asarray(np.arange(lo, hi + step / 2, step), power.dtype)
    grid = jnp.asarray(freqs, power.dtype)
    beyond = 2 * f0 > freqs[-1]

    def one(p):
        own = jnp.interp(f0, grid, p)
        score = (1.0 + OWN_LINE) * own + jnp.where(beyond, 0.0, jnp.interp(2 * f0, grid, p))
        return f0[jnp.argmax(score)]

    flat = power.reshape(-1, power.shape[-1])
    return jax.vmap(one)(flat).reshape(power.shape[:-1])


def lagged(
    x: Real[Array | np.ndarray, "*batch window"], hop_s: float, taus_s=LAGS_S
) -> Float[Array, "*batch window lag"]:
    """First-order lags of `x` along its last axis (windows `hop_s` apart), one per time
    constant in `taus_s` (module docstring). Integer `x` (counts) is taken as float32."""
    if min(taus_s, default=0.0) <= 0 or hop_s <= 0:
        raise ValueError(f"lags need time constants and a hop > 0, got {taus_s} and {hop_s}")
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"lags need at least one window on the last axis, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)  # integer counts: the lags are fractional
    xs = jnp.moveaxis(x, -1, 0)  # [W, ...]
    a = 1.0 - jnp.exp(-hop_s / jnp.asarray(taus_s, x.dtype))
    a = a.reshape((1,) * (xs.ndim - 1) + a.shape)  # [..., L]

    def step(m, x_t):
        m = m + a * (x_t[..., None] - m)
        return m, m

    m0 = jnp.broadcast_to(xs[0][..., None], xs.shape[1:] + a.shape[-1:])
    _, out = jax.lax.scan(step, m0, xs)
    return jnp.moveaxis(out, 0, -2)
