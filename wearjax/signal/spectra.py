"""Short-time spectra of wrist signals over sliding windows, in JAX: the inputs of spectral heart
rate (HR) estimation from PPG and accelerometer (ACC) recordings.

Windows are 8 s long with a 2 s hop by default, the convention of wrist-PPG HR work (the IEEE
Signal Processing Cup 2015 data and their successors score one HR every 2 s over 8 s windows);
the HR band is 0.5-4 Hz (30-240 bpm). Window `w` covers samples `[s_w, s_w + win)` with
`win = round(window_s rate)` and `s_w = round(w hop_s rate)`: only whole windows, none padded
(`W` of them, 0 when `T < win`). Where `hop_s rate` is a whole number `hop`, `s_w = w hop` and
`W = 1 + (T - win) // hop`; where it is not (51.2 Hz), each start is rounded on its own, so window
`w` starts within half a sample of `w hop_s` seconds at any rate and stays paired with the same
window of a signal at another rate (a reference HR at 1 Hz) instead of drifting by the rounding
of every hop.

The STFT of window `w` at bin `k` (`n = 0 .. win-1`):

    X[w, k] = sum_n (x[w hop + n] - mean_w) h[n] exp(-2 pi i k n / nfft) / sum_n h[n]

- `h` is the **periodic** Hann window, `h[n] = 0.5 - 0.5 cos(2 pi n / win)`, the default of
  `scipy.signal.get_window("hann", win)` and so of `scipy.signal.stft`; the tests compare with
  `scipy.signal.ShortTimeFFT(h, hop, rate, mfft=nfft, scale_to="magnitude", phase_shift=None)`
  and its `stft_detrend(x, "constant")`, framed to start at sample 0.
- Each frame's **mean is removed** before windowing (`mean_w` is the mean of the frame's `win`
  samples, taken after subtracting its first sample, so a large offset costs no float32
  precision): the DC level of a PPG, or gravity on an ACC axis, is far larger than the pulse,
  and the window's sidelobes (for windows under 4 s its main lobe, `2 / window_s` Hz either
  side) would carry it into the band.
- The sum is zero padded to `nfft` points, by default the next power of two at or above
  `4 win`: bins (`rate / nfft` Hz) of at most a quarter of the window's resolution `1 /
  window_s` (1/32 Hz, 1.875 bpm, for 8 s windows), so a peak's top bin lies close to the peak
  and a parabola through it and its neighbours (`peaks.refine_peak`) closer still.
- Dividing by `sum h` ("magnitude" scaling) makes `|X|` at a sinusoid's bin half its amplitude,
  whatever the window length and rate.
- The phase is that of the frame starting at its first sample (no centring shift).

Frames are gathered with one `[W, win]` index table, so everything is one batched FFT: it jits,
vmaps and differentiates, over any leading axes (`[..., time]`, e.g. the ACC as `[3, T]`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Complex, Float, Shaped

from wearjax.errors import WearjaxDataError

WINDOW_S = 8.0  # s, the HR window
HOP_S = 2.0  # s, one HR estimate every 2 s
HR_BAND = (0.5, 4.0)  # Hz: 30-240 bpm
BAND_TOL = 1e-9  # Hz: a bin this close outside the band's edge counts as inside


def _lengths(rate: float, window_s: float, hop_s: float) -> tuple[int, int]:
    """`(win, hop)` in whole samples; both at least one sample."""
    win, hop = round(window_s * rate), round(hop_s * rate)
    if win < 1 or hop < 1:
        raise WearjaxDataError(
            f"a window of {window_s:g} s with a hop of {hop_s:g} s at {rate:g} Hz is "
            f"{win} and {hop} samples; both must be at least one sample"
        )
    return win, hop


def frame_starts(
    n_samples: int, rate: float, window_s: float = WINDOW_S, hop_s: float = HOP_S
) -> np.ndarray:
    """`[W]` sample index of each window's first sample, `round(w hop_s rate)`, for every whole
    window in `n_samples` (none when `n < win`; module docstring). Static NumPy."""
    win, hop = _lengths(rate, window_s, hop_s)
    if n_samples < win:
        return np.zeros(0, np.int64)
    step = hop_s * rate
    if abs(step - hop) < 1e-9:  # a whole number of samples per hop
        return np.arange(1 + (n_samples - win) // hop, dtype=np.int64) * hop
    starts = np.round(np.arange(int((n_samples - win) / step) + 2) * step).astype(np.int64)
    return starts[starts + win <= n_samples]


def default_nfft(win: int) -> int:
    """The FFT length for a `win`-sample window: the next power of two at or above `4 win`."""
    return 1 << int(np.ceil(np.log2(4 * win)))


def hann(win: int) -> np.ndarray:
    """The periodic Hann window of `win` samples (float64), `0.5 - 0.5 cos(2 pi n / win)`."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)


def _frames(
    x: Shaped[Array, "*batch time"], rate: float, window_s: float, hop_s: float
) -> Shaped[Array, "*batch window sample"]:
    """`[..., W, win]` frames of `x` gathered with one index table."""
    win, _ = _lengths(rate, window_s, hop_s)
    starts = frame_starts(x.shape[-1], rate, window_s, hop_s)
    index = (starts[:, None] + np.arange(win)[None, :]).astype(np.int32)
    return x[..., index]


def stft(
    x: Float[Array, "*batch time"],
    rate: float,
    *,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    nfft: int | None = None,
) -> Complex[Array, "*batch window freq"]:
    """The short-time Fourier transform of `x` along its last axis (module docstring): `[...,
    W, nfft // 2 + 1]`, complex64 for float32 input (complex128 for float64 under x64)."""
    win, _ = _lengths(rate, window_s, hop_s)
    nfft = default_nfft(win) if nfft is None else int(nfft)
    if nfft < win:
        raise WearjaxDataError(f"nfft={nfft} is shorter than the {win}-sample window")
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    frames = _frames(x.astype(dtype), rate, window_s, hop_s)
    frames = frames - frames[..., :1]  # near 0 first: an offset does not swamp the mean
    frames = frames - frames.mean(axis=-1, keepdims=True)
    h = hann(win)
    taper = jnp.asarray(h / h.sum(), dtype).reshape((1,) * (frames.ndim - 1) + (win,))
    return jnp.fft.rfft(frames * taper, n=nfft, axis=-1)


def band_bins(rate: float, nfft: int, band: tuple[float, float] = HR_BAND) -> slice:
    """The contiguous range of `rfft` bins of length `nfft` at `rate` whose frequencies lie in
    `band` (Hz, both edges inclusive). A band past the Nyquist frequency is refused: its top
    would be cut silently, and a tracker could never report the HR there."""
    if band[1] > rate / 2 + BAND_TOL:
        raise WearjaxDataError(
            f"the band {band[0]:g}-{band[1]:g} Hz reaches past the Nyquist frequency of "
            f"{rate:g} Hz sampling ({rate / 2:g} Hz); sample at {2 * band[1]:g} Hz or more, or "
            f"lower the band's top"
        )
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    inside = np.flatnonzero((freqs >= band[0] - BAND_TOL) & (freqs <= band[1] + BAND_TOL))
    if inside.size == 0:
        raise WearjaxDataError(
            f"no frequency bin of a {nfft}-point FFT at {rate:g} Hz lies in {band[0]:g}-"
            f"{band[1]:g} Hz; lower the band or raise the rate"
        )
    return slice(int(inside[0]), int(inside[-1]) + 1)


def band_spectra(
    x: Float[Array, "*batch time"],
    rate: float,
    *,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    band: tuple[float, float] = HR_BAND,
    nfft: int | None = None,
) -> tuple[Float[Array, "*batch window freq"], np.ndarray]:
    """`(|X| [..., W, F], freqs [F])`: the STFT magnitude (`stft`) on the bins whose frequency
    lies in `band` (inclusive), and those frequencies in Hz (static NumPy, evenly spaced by
    `rate / nfft`)."""
    win, _ = _lengths(rate, window_s, hop_s)
    nfft = default_nfft(win) if nfft is None else int(nfft)
    keep = band_bins(rate, nfft, band)
    spec = stft(x, rate, window_s=window_s, hop_s=hop_s, nfft=nfft)[..., keep]
    return jnp.abs(spec), np.fft.rfftfreq(nfft, 1.0 / rate)[keep]


def normalise(
    spec: Float[Array, "*shape"], axis: int = -1, eps: float = 1e-8
) -> Float[Array, "*shape"]:
    """Each window's spectrum divided by its maximum over `axis` (the band), so its peak is 1
    (a spectrum whose maximum is below `eps` is divided by `eps`: all-zero stays zero).

    The size of a wrist spectrum says little about HR: it changes between subjects (skin, tissue,
    vessel depth), with sensor contact and strap pressure, and with motion severity, and with it
    from window to window. Where the peak lies carries the HR; the relative heights of the peaks
    say which is dominant. Dividing by the window's maximum keeps both and removes the scale."""
    peak = jnp.max(spec, axis=axis, keepdims=True)
    return spec / jnp.maximum(peak, jnp.asarray(eps, spec.dtype))


def window_mean(
    series: Float[Array, "*batch time"],
    rate: float,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    mask: Bool[Array, "*batch time"] | None = None,
) -> tuple[Float[Array, "*batch window"], Bool[Array, "*batch window"]]:
    """`(mean [..., W], ok [..., W])`: the mean of `series` (sampled at `rate` Hz, e.g. a 1 Hz
    reference HR) over each window (`frame_starts` at its own rate), counting only samples that
    `mask` keeps (all when None) and that are finite. `ok` is False, and the mean 0, for a
    window without any such sample."""
    valid = jnp.isfinite(series)
    if mask is not None:
        valid = valid & mask
    frames = _frames(series, rate, window_s, hop_s)
    keep = _frames(valid, rate, window_s, hop_s)
    zero = jnp.zeros((), series.dtype)
    total = jnp.where(keep, frames, zero).sum(axis=-1)
    count = keep.astype(series.dtype).sum(axis=-1)
    ok = count > zero
    return jnp.where(ok, total / jnp.maximum(count, jnp.ones((), series.dtype)), zero), ok
