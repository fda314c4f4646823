"""Continuous wavelet transforms (Ricker and Morlet) by FFT convolution, and band-limited
resampling to a nominal rate, in JAX: batched over any leading axes (samples, channels).

A scalogram is only comparable across datasets when its scales mean the same frequencies, so
`scalogram` first resamples every input to one nominal rate (`resample`) and takes its scales
in Hz. Definitions (`t` in samples at the nominal rate):

- **Ricker** (Mexican hat), width `a`: `psi(t) = 2 / (sqrt(3 a) pi^(1/4)) (1 - (t/a)^2)
  exp(-t^2 / (2 a^2))`, the normalisation of the former `scipy.signal.ricker`. Its spectrum
  peaks at `f = sqrt(2) / (2 pi a)` cycles per sample, so a scale of `f` Hz at rate `r` is
  `a = sqrt(2) r / (2 pi f)`.
- **Morlet** (complex, `w0 = 6`), scale `s`: `psi(t) = pi^(-1/4) s^(-1/2) exp(i w0 t / s)
  exp(-t^2 / (2 s^2))`, centre frequency `w0 / (2 pi s)` cycles per sample; `s = w0 r / (2 pi
  f)`. The transform is complex; `scalogram` uses its modulus.

Each wavelet is cut at `|t| <= 5 a` (Ricker; `5 s` Morlet), as the former `scipy.signal.cwt`
sampled ten widths, and convolved with the signal in "same" mode (zero padding outside it):
`W[s, n] = sum_k x[k] psi_s(n - k)`. One FFT of the signal serves every scale.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Complex, Float

from wearjax.errors import WearjaxDataError

MORLET_W0 = 6.0
WAVELETS = ("ricker", "morlet")


def resample(
    x: Float[Array, "*batch time"], rate: float, nominal: float
) -> Float[Array, "*batch out"]:
    """Band-limited resampling along the last axis from `rate` to `nominal` Hz (Fourier
    method: the spectrum truncated or zero-padded; periodic at the ends, as
    `scipy.signal.resample`). Output length `round(T nominal / rate)`."""
    n = x.shape[-1]
    if n == 0:
        raise WearjaxDataError("resample got no samples (a last axis of length 0)")
    m = max(1, round(n * nominal / rate))
    if m == n:
        return x
    short = min(n, m)
    spectrum = jnp.fft.rfft(x, axis=-1)[..., : short // 2 + 1]
    if short % 2 == 0:  # the Nyquist bin of the shorter length: folded (down) or split (up)
        spectrum = spectrum.at[..., short // 2].multiply(2.0 if m < n else 0.5)
    return jnp.fft.irfft(spectrum, n=m, axis=-1) * (m / n)


MAX_FRACTION = 0.25  # highest scale, as a fraction of the rate: a Ricker width of 0.9 samples


def wavelet_width(freqs_hz, rate: float, wavelet: str = "ricker") -> np.ndarray:
    """Width `a` (Ricker) or scale `s` (Morlet), in samples, of each frequency (Hz). Above a
    quarter of the rate a sampled Ricker wavelet is narrower than a sample and no longer band
    pass (its response peaks at Nyquist whatever the scale), so such frequencies are refused."""
    f = np.asarray(freqs_hz, np.float64)
    if np.any(f > MAX_FRACTION * rate + 1e-12) or np.any(f <= 0):
        raise ValueError(
            f"wavelet frequencies must lie in (0, {MAX_FRACTION * rate:g}] Hz at {rate:g} Hz "
            f"(a quarter of the rate); got {f.min():g}-{f.max():g} Hz"
        )
    if wavelet == "ricker":
        return math.sqrt(2.0) * rate / (2 * math.pi * f)
    if wavelet == "morlet":
        return MORLET_W0 * rate / (2 * math.pi * f)
    raise ValueError(f"unknown wavelet {wavelet!r}: choose one of {WAVELETS}")


def wavelet_kernels(widths, length: int, wavelet: str = "ricker", dtype=None) -> np.ndarray:
    """`[S, length]` sampled wavelets on `t = -(length-1)/2 .. (length-1)/2` (odd `length`),
    zero where `|t| > 5 width`; float64 (complex128 for Morlet) unless `dtype` is given."""
    t = np.arange(length, dtype=np.float64) - (length - 1) / 2
    a = np.asarray(widths, np.float64)[:, None]
    inside = np.abs(t)[None] <= 5 * a
    if wavelet == "ricker":
        w = 2 / (np.sqrt(3 * a) * np.pi**0.25) * (1 - (t / a) ** 2) * np.exp(-(t**2) / (2 * a**2))
    elif wavelet == "morlet":
        w = np.pi**-0.25 / np.sqrt(a) * np.exp(1j * MORLET_W0 * t / a - t**2 / (2 * a**2))
    else:
        raise ValueError(f"unknown wavelet {wavelet!r}: choose one of {WAVELETS}")
    w = np.where(inside, w, 0)
    return w if dtype is None else w.astype(dtype)


def cwt(
    x: Float[Array, "*batch time"], widths, wavelet: str = "ricker"
) -> Float[Array, "*batch scale time"] | Complex[Array, "*batch scale time"]:
    """The CWT of `x` at wavelet `widths` (samples; module docstring) by FFT convolution."""
    n = x.shape[-1]
    if n == 0:
        raise WearjaxDataError("cwt got no samples (a last axis of length 0)")
    widths = np.asarray(widths, np.float64)
    half = int(min(np.ceil(5 * widths.max()), n - 1))  # beyond n-1 nothing reaches the output
    length = 2 * half + 1
    complex_out = wavelet == "morlet"
    real = jnp.float64 if x.dtype == jnp.float64 else jnp.float32  # float64: x64 mode
    kernel_dtype = {jnp.float32: jnp.complex64, jnp.float64: jnp.complex128}[real]
    kernel_dtype = kernel_dtype if complex_out else real
    kernels = wavelet_kernels(widths, length, wavelet, kernel_dtype)
    n_fft = 1 << int(np.ceil(np.log2(n + length - 1)))
    fx = jnp.fft.fft(x.astype(real), n=n_fft, axis=-1)[..., None, :]
    fk = jnp.fft.fft(jnp.asarray(kernels), n=n_fft, axis=-1)
    fk = fk.reshape((1,) * (fx.ndim - 2) + fk.shape)
    full = jnp.fft.ifft(fx * fk, axis=-1)[..., half : half + n]  # "same": centred slice
    return full if complex_out else full.real


def scale_grid(low_hz: float, high_hz: float, n: int = 65) -> np.ndarray:
    """`n` frequencies (Hz) spaced evenly in log between `low_hz` and `high_hz`, high first."""
    return np.geomspace(high_hz, low_hz, n)


def signal_planes(
    x: Float[Array, "*batch time"], rate: float, nominal: float
) -> Float[Array, "*batch 3 out"]:
    """The signal resampled to `nominal` Hz and its first and second differences, each
    standardised over time. A plane whose SD is under 1e-5 of the signal's largest magnitude
    stays zero rather than blowing noise up to 1: a constant channel, whose float mean misses
    its value by an ulp and whose resampling rings by a few. The floor is that fixed fraction
    in float32 and float64 alike, about 80 float32 ulps, so it also zeroes real but tiny
    variation on a large offset (an altitude of 2,000 m that moves by millimetres per sample
    gives zero difference planes); left so, as every encoder here was trained with it."""
    x = resample(x, rate, nominal)
    d1 = jnp.diff(x, axis=-1, prepend=x[..., :1])
    d2 = jnp.diff(d1, axis=-1, prepend=d1[..., :1])
    planes = jnp.stack([x, d1, d2], axis=-2)
    sd = planes.std(-1, keepdims=True)
    floor = 1e-5 * jnp.max(jnp.abs(x), axis=-1, keepdims=True)[..., None, :]
    centred = (planes - planes.mean(-1, keepdims=True)) / (sd + 1e-6)
    return jnp.where(sd > floor, centred, 0.0)


def visible_planes(
    x: Float[Array, "*batch time"], visible: Bool[Array, "*batch time"]
) -> tuple[Float[Array, "*batch 3 time"], Float[Array, "*batch 2"]]:
    """`signal_planes` of `x` (at the nominal rate already) that reads only the samples
    `visible` marks: each plane standardised over its visible samples and 0 elsewhere (a
    difference counts as visible where every sample it reads is), so nothing of a hidden sample
    reaches the planes or their statistics. Returns the planes and the signal's visible mean
    and SD `[..., 2]`, the units a hidden stretch is reconstructed in."""
    shift = lambda v: jnp.concatenate([v[..., :1], v[..., :-1]], axis=-1)  # noqa: E731
    v1 = visible & shift(visible)
    x = jnp.where(visible, x, 0.0)
    d1 = jnp.diff(x, axis=-1, prepend=x[..., :1])
    d2 = jnp.diff(d1, axis=-1, prepend=d1[..., :1])
    planes = jnp.stack([x, d1, d2], axis=-2)
    w = jnp.stack([visible, v1, v1 & shift(v1)], axis=-2).astype(x.dtype)
    n = jnp.maximum(w.sum(-1, keepdims=True), 1.0)
    mean = (w * planes).sum(-1, keepdims=True) / n
    sd = jnp.sqrt((w * jnp.square(planes - mean)).sum(-1, keepdims=True) / n)
    floor = 1e-5 * jnp.max(jnp.abs(x), axis=-1, keepdims=True)[..., None, :]
    keep = (w > 0) & (sd > floor)
    centred = jnp.where(keep, (planes - mean) / (sd + 1e-6), 0.0)
    return centred, jnp.concatenate([mean[..., 0, :], sd[..., 0, :]], axis=-1)


def levels(x: Float[Array, "*batch time"], rate: float, nominal: float) -> Float[Array, "*batch 2"]:
    """What standardising the planes removes: `asinh` of the resampled signal's mean and SD
    (log-like for large values, so ratios between channels become differences; finite at 0)."""
    x = resample(x, rate, nominal)
    return jnp.arcsinh(jnp.stack([x.mean(-1), x.std(-1)], axis=-1))


def scalogram(
    x: Float[Array, "*batch time"], rate: float, nominal: float, freqs_hz, wavelet: str = "ricker"
) -> Float[Array, "*batch 3 scale out"]:
    """`signal_planes` through the CWT at `freqs_hz` (Hz, at the nominal rate); the modulus
    for Morlet."""
    planes = signal_planes(x, rate, nominal)
    w = cwt(planes, wavelet_width(freqs_hz, nominal, wavelet), wavelet)
    return jnp.abs(w) if wavelet == "morlet" else w
