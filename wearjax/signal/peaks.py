"""A non-learned reference heart-rate tracker on windowed spectra (`spectra.band_spectra`), a
simplified TROIKA, in JAX (`lax.scan` over the windows, any leading axes).

TROIKA (Zhang, Pi & Liu, "TROIKA: a general framework for heart rate monitoring using wrist-type
photoplethysmographic signals during intensive physical exercise", IEEE TBME 62(2):522-531,
2015) estimates HR per window in three stages: signal decomposition (singular spectrum
analysis, dropping the components that share a frequency with the accelerometer), sparse signal
reconstruction (a high-resolution spectrum from a sparsity-promoting solver) and spectral peak
tracking (the peak near the last estimate, with verification and recovery rules).

Kept: **motion removal by the accelerometer**, frequencies where the ACC has a dominant peak
taken out of the PPG spectrum (`remove_motion_peaks`); and **spectral peak tracking**, the first
estimate the largest peak of the band, each later one the largest peak within `search_bpm` of
the previous estimate (`track_peak`). Simplified:

- decomposition becomes spectral zeroing: the PPG bins within `width_hz` of the ACC's dominant
  peaks (local maxima of at least `threshold` of the window's largest ACC magnitude, the
  `n_peaks` largest per axis) are set to 0, rather than time-domain components removed; a
  line the PPG holds at more than `excess` times the height, relative to the ACC's, of the
  window's most motion-like line is kept (our rule, not TROIKA's: a runner's HR often sits on
  the step rate, and zeroing that line from the first window hands the tracker whatever is
  left, a breathing line at 36 bpm in the simulator, which it then follows for good);
- sparse reconstruction becomes a zero-padded Hann periodogram (`spectra.stft`, at least 4x
  padding) with parabolic interpolation of the picked bin (`refine_peak`);
- verification and re-initialisation become four plain rules: a candidate must be a genuine
  peak (`local_maxima(..., ends=False)`: not a band end, not the shoulder of a zeroed stretch)
  standing `min_snr` times above the window's median magnitude (its noise floor); a pick
  with a candidate at 1/2 or 1/3 of its frequency at least `harmonic_ratio` as high takes that
  one (a wrist pulse is sharp: its 2nd or 3rd harmonic can outgrow the fundamental); a
  window without a candidate, or masked out, holds the previous estimate; and each held window
  widens the next search by `widen_bpm`, up to `max_search_bpm` (after a motion crossing the
  tracker must find the HR again, which moved on meanwhile). The harmonic check runs on the
  first pick and on a pick more than `search_bpm` from the last estimate (a widened search
  that lands on the pulse's 2nd harmonic is taken back to its root), not on a pick that
  continues the track. Until 2026-12-07 it ran in every window, and at rest a widened search
  reached half the HR: after 7 held windows at 72 bpm a line at 36 bpm half the pulse's
  height halved the track for good. The change can touch only tracks under 111 bpm
  (2 x `max_search_bpm` + `search_bpm` + twice the 3 bpm tolerance).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from wearjax.errors import WearjaxDataError

HARMONIC_TOL_BPM = 3.0  # a peak this close to 1/2 or 1/3 of the pick's frequency is its root


def step_hz(freqs: np.ndarray) -> float:
    """The bin spacing (Hz) of an evenly spaced frequency grid such as `band_spectra`'s."""
    freqs = np.asarray(freqs, np.float64)
    if freqs.ndim != 1 or freqs.size < 3 or not np.allclose(np.diff(freqs), freqs[1] - freqs[0]):
        raise WearjaxDataError("freqs must be an evenly spaced 1-D grid of at least three bins")
    return float(freqs[1] - freqs[0])


def local_maxima(
    spec: Float[Array, "*batch freq"], ends: bool = True
) -> Bool[Array, "*batch freq"]:
    """Bins higher than their right neighbour whose run of equal bins (the bin alone, or a
    flat top) starts above the bin before it: one bin per peak, a flat top's last. A flat step
    on a falling slope is no peak (until 2026-12-07 its last bin was). With `ends` an end bin
    compares with its one neighbour; without, neither end bin nor a bin next to a 0 is a peak
    (`track_peak`'s candidates: a slope running out of the band is no peak, nor is the
    shoulder of a zeroed motion stretch)."""
    pad = jnp.full(spec.shape[:-1] + (1,), -jnp.inf if ends else 0.0, spec.dtype)
    left = jnp.concatenate([pad, spec[..., :-1]], axis=-1)
    right = jnp.concatenate([spec[..., 1:], pad], axis=-1)
    index = jnp.arange(spec.shape[-1])
    start = jax.lax.cummax(jnp.where(spec != left, index, 0), axis=spec.ndim - 1)
    before = jnp.take_along_axis(left, start, axis=-1)  # the bin before the run of equal bins
    peak = (spec > before) & (spec > right)
    return peak if ends else peak & (before > 0) & (right > 0)


def _check_layout(ppg_spec, acc_spec) -> None:
    """Raise unless `acc_spec` is `[..., W, F]` or `[..., W, A, F]` for `ppg_spec [..., W, F]`."""
    per_axis = acc_spec.ndim == ppg_spec.ndim + 1
    if acc_spec.ndim not in (ppg_spec.ndim, ppg_spec.ndim + 1) or ppg_spec.ndim < 2:
        raise WearjaxDataError(
            f"acc_spec has shape {acc_spec.shape}, expected [..., W, F] or [..., W, A, F] for "
            f"ppg_spec {ppg_spec.shape} [..., W, F]"
        )
    window = acc_spec.shape[-3] if per_axis else acc_spec.shape[-2]
    if window != ppg_spec.shape[-2] or acc_spec.shape[-1] != ppg_spec.shape[-1]:
        fix = (
            "; band_spectra(acc [3, T]) gives [3, W, F]: pass jnp.moveaxis(acc_spec, -3, -2)"
            if per_axis and acc_spec.shape[-2] == ppg_spec.shape[-2]
            else ""
        )
        raise WearjaxDataError(
            f"acc_spec has shape {acc_spec.shape}, expected [..., W, A, F] or [..., W, F] with "
            f"the W = {ppg_spec.shape[-2]} windows and F = {ppg_spec.shape[-1]} bins of "
            f"ppg_spec{fix}"
        )


def remove_motion_peaks(
    ppg_spec: Float[Array, "*batch window freq"],
    acc_spec: Float[Array, "*batch window freq"] | Float[Array, "*batch window axis freq"],
    freqs: np.ndarray,
    *,
    n_peaks: int = 2,
    width_hz: float = 0.1,
    threshold: float = 0.5,
    per_axis: bool = False,
    excess: float | None = 2.0,
) -> Float[Array, "*batch window freq"]:
    """The PPG spectrum with every bin within `width_hz` of a dominant ACC peak set to 0.

    `acc_spec` holds one spectrum per window (`[..., W, F]`) or one per axis (`[..., W, A, F]`),
    on the bins `freqs`. The dominant peaks of an axis are its local maxima of at least
    `threshold` times the window's largest ACC magnitude over all axes, the `n_peaks` largest.
    With `per_axis` the maximum is each axis's own, as if each were normalised alone; that makes
    a still axis's noise peaks dominant, so by default a quiet axis removes nothing.

    A dominant peak's line in the PPG (its largest bin within `width_hz`) over the peak's
    height is how much of the ACC's motion the PPG shows there; the window's smallest such
    ratio is taken as motion alone, and a peak whose ratio exceeds it `excess` times over is
    left in the PPG: the pulse sits on that line too. `excess=None` zeroes every dominant
    peak, as TROIKA's decomposition does. With one dominant peak nothing is kept. The risk:
    a motion line that the PPG copies more strongly than the window's others (relative to the
    ACC) is kept too, and only the tracker's search range then tells it from the pulse.

    Windows come before axes: `band_spectra(acc [3, T])` gives `[3, W, F]`,
    which `jnp.moveaxis(acc_spec, -3, -2)` turns into `[W, 3, F]`. A window count (or, for one
    spectrum per window, a window or bin count) that differs from `ppg_spec`'s raises; with
    three windows of three axes the two layouts share one shape, so move the axis first.
    The options are Python numbers (the arithmetic compiles once per shape and options)."""
    _check_layout(ppg_spec, acc_spec)
    if excess is not None and not excess >= 1:  # under 1 even the most motion-like line stays
        raise WearjaxDataError(f"excess={excess}: give a factor of 1 or more, or None")
    options = dict(n_peaks=n_peaks, width_hz=width_hz, threshold=threshold, excess=excess)
    return _remove_motion(ppg_spec, acc_spec, step=step_hz(freqs), per_axis=per_axis, **options)


# the checks above run in Python; the arithmetic is one program per shape when called eagerly
@partial(
    jax.jit, static_argnames=("step", "n_peaks", "width_hz", "threshold", "per_axis", "excess")
)
def _remove_motion(ppg_spec, acc_spec, *, step, n_peaks, width_hz, threshold, per_axis, excess):
    acc = acc_spec if acc_spec.ndim == ppg_spec.ndim + 1 else acc_spec[..., None, :]
    over = (-1,) if per_axis else (-2, -1)
    acc = acc / jnp.maximum(jnp.max(acc, axis=over, keepdims=True), jnp.asarray(1e-12, acc.dtype))
    candidates = jnp.where(local_maxima(acc), acc, jnp.zeros((), acc.dtype))
    height, index = jax.lax.top_k(candidates, min(n_peaks, acc.shape[-1]))  # [..., W, A, P]
    dominant = (height >= threshold).reshape(height.shape + (1,))
    bins = jnp.arange(acc.shape[-1]).reshape((1,) * height.ndim + (-1,))
    offset = jnp.abs(bins - index.reshape(index.shape + (1,))).astype(jnp.float32) * step
    near = offset <= width_hz + 1e-6 * step  # [..., W, A, P, F]
    if excess is not None:
        ppg = ppg_spec[..., None, None, :]
        line = jnp.max(jnp.where(near, ppg, jnp.zeros((), ppg.dtype)), axis=-1)  # [..., W, A, P]
        ratio = line / jnp.maximum(height, jnp.asarray(1e-12, height.dtype))
        least = jnp.min(jnp.where(dominant[..., 0], ratio, jnp.inf), axis=(-2, -1), keepdims=True)
        dominant = dominant & (ratio <= excess * least)[..., None]
    motion = jnp.any(dominant & near, axis=(-3, -2))
    return jnp.where(motion, jnp.zeros((), ppg_spec.dtype), ppg_spec)


def refine_peak(
    spec: Float[Array, "*batch freq"], index: Int[Array, "*batch"]
) -> Float[Array, "*batch"]:
    """Sub-bin offset (bins, within +-0.5) of the peak at `index`: the vertex of the parabola
    through the bin and its two neighbours, `0.5 (a - c) / (a - 2 b + c)` for the values `a, b,
    c`; 0 at either end of the band or where the three values do not curve downwards. Fitted to
    the magnitude of a zero-padded Hann spectrum it is accurate to a small fraction of a bin:
    with at least 4x padding several bins lie on the main lobe's rounded top."""
    n = spec.shape[-1]
    around = jnp.clip(jnp.stack([index - 1, index, index + 1], axis=-1), 0, n - 1)
    a, b, c = jnp.moveaxis(jnp.take_along_axis(spec, around, axis=-1), -1, 0)
    curve = a - 2 * b + c
    inside = (index > 0) & (index < n - 1) & (curve < 0)
    offset = jnp.clip(0.5 * (a - c) / jnp.where(inside, curve, -1.0), -0.5, 0.5)
    return jnp.where(inside, offset, jnp.zeros((), spec.dtype))


def track_peak_bins(
    spec: Float[Array, "*batch window freq"],
    freqs: np.ndarray,
    *,
    hr0_bpm: float | None = None,
    search_bpm: float = 15.0,
    widen_bpm: float = 3.0,
    max_search_bpm: float = 45.0,
    min_snr: float = 3.0,
    harmonic_ratio: float = 0.5,
    ok: Bool[Array, "*batch window"] | None = None,
) -> tuple[Float[Array, "*batch window"], Int[Array, "*batch window"]]:
    """`(hr [..., W], bin [..., W])`: `track_peak`, and each window's pick (-1: held)."""
    step = step_hz(freqs)
    dtype = spec.dtype
    lead = spec.shape[:-2]
    bpm = jnp.asarray(np.asarray(freqs, np.float64) * 60, dtype).reshape((1,) * len(lead) + (-1,))
    ok = jnp.ones(spec.shape[:-1], bool) if ok is None else ok
    prev0 = jnp.full(lead, jnp.nan if hr0_bpm is None else hr0_bpm, dtype)
    rules = dict(search_bpm=search_bpm, widen_bpm=widen_bpm, max_search_bpm=max_search_bpm,
                 min_snr=min_snr, harmonic_ratio=harmonic_ratio)  # fmt: skip
    return _track(
        spec,
        ok,
        bpm,
        prev0,
        low_hz=float(freqs[0]),
        low_bpm=float(freqs[0] * 60),
        step=step,
        **rules,
    )


@partial(jax.jit, static_argnames=("low_hz", "low_bpm", "step", "search_bpm", "widen_bpm",
                                   "max_search_bpm", "min_snr", "harmonic_ratio"))  # fmt: skip
def _track(spec, ok, bpm, prev0, *, low_hz, low_bpm, step, search_bpm, widen_bpm, max_search_bpm,
           min_snr, harmonic_ratio):  # fmt: skip
    dtype, lead = spec.dtype, spec.shape[:-2]

    def one(carry, inputs):
        prev, held = carry  # [...] the last estimate (NaN before any), windows held since
        s, good = inputs  # [..., F], [...]
        started = ~jnp.isnan(prev)
        reach = jnp.minimum(search_bpm + widen_bpm * held.astype(dtype), max_search_bpm)
        near = jnp.abs(bpm - jnp.where(started, prev, 0.0)[..., None]) <= reach[..., None]
        floor = jnp.nanmedian(jnp.where(s > 0, s, jnp.nan), axis=-1, keepdims=True)
        strong = s >= min_snr * floor
        allowed = jnp.where(started[..., None], near, True) & local_maxima(s, ends=False) & strong
        index = jnp.argmax(jnp.where(allowed, s, -jnp.inf), axis=-1)
        top = low_bpm + index.astype(dtype)[..., None] * (step * 60)
        # the harmonic check, on a first pick or one that jumps beyond `search_bpm` from the
        # last estimate (a pick near it continues a track already checked; until 2026-12-07
        # every window was checked, so a widened search could halve a track below 111 bpm):
        # a peak at 1/2 of the pick's frequency, else one at 1/3 (until 2026-12-07 a line at
        # 1/3 also replaced a root found at 1/2)
        check = ~started | (jnp.abs(top[..., 0] - prev) > search_bpm)
        height = jnp.take_along_axis(s, index[..., None], -1)
        rival = allowed & (s >= harmonic_ratio * height) & check[..., None]
        found = jnp.zeros(index.shape, bool)
        for d in (2, 3):
            under = rival & (jnp.abs(bpm - top / d) <= HARMONIC_TOL_BPM) & ~found[..., None]
            hit = jnp.any(under, axis=-1)
            index = jnp.where(hit, jnp.argmax(jnp.where(under, s, -jnp.inf), axis=-1), index)
            found = found | hit
        pick = good & jnp.any(allowed, axis=-1)
        hz = low_hz + (index.astype(dtype) + refine_peak(s, index)) * step
        hr = jnp.where(pick, hz * 60, prev)
        held = jnp.where(pick | ~started, 0, held + 1)
        return (hr, held), (hr, jnp.where(pick, index, -1))

    xs = (jnp.moveaxis(spec, -2, 0), jnp.moveaxis(ok, -1, 0))
    _, (hr, bins) = jax.lax.scan(one, (prev0, jnp.zeros(lead, jnp.int32)), xs)
    return jnp.moveaxis(hr, 0, -1), jnp.moveaxis(bins, 0, -1)


def track_peak(
    spec: Float[Array, "*batch window freq"],
    freqs: np.ndarray,
    *,
    hr0_bpm: float | None = None,
    search_bpm: float = 15.0,
    ok: Bool[Array, "*batch window"] | None = None,
    **options,
) -> Float[Array, "*batch window"]:
    """HR (bpm) per window by spectral peak tracking over the windows in order (`lax.scan`).

    Candidates are the window's peaks (`local_maxima` without ends) at least `min_snr` times its
    median magnitude over the bins above 0 (zeroed bins are removed, not quiet). The first
    window takes the largest candidate of the band, or its fundamental by the harmonic check
    (module docstring; given `hr0_bpm`, the largest within `search_bpm` of it, as a continued
    track takes it); every later one the largest within `min(search_bpm + widen_bpm n,
    max_search_bpm)` of the last estimate, `n` the windows held since the last pick. A window
    that `ok` masks out, or without a candidate in range, holds the last estimate (NaN before
    the first one when no `hr0_bpm` is given). The estimate is the picked bin's frequency plus
    its parabolic offset (`refine_peak`), times 60. `freqs`: the evenly spaced bins of `spec`.
    `options`: `widen_bpm` (3), `max_search_bpm` (45), `min_snr` (3), `harmonic_ratio` (0.5);
    Python numbers, as they are compiled in (`hr0_bpm` and `ok` may be arrays)."""
    options.update(hr0_bpm=hr0_bpm, search_bpm=search_bpm, ok=ok)
    return track_peak_bins(spec, freqs, **options)[0]


def troika_hr(
    ppg_spec: Float[Array, "*batch window freq"],
    acc_spec: Float[Array, "*batch window freq"] | Float[Array, "*batch window axis freq"] | None,
    freqs: np.ndarray,
    *,
    n_peaks: int = 2,
    width_hz: float = 0.1,
    threshold: float = 0.5,
    excess: float | None = 2.0,
    **track,
) -> Float[Array, "*batch window"]:
    """HR (bpm) per window: `remove_motion_peaks` (with `n_peaks`, `width_hz`, `threshold`,
    `excess`) when an ACC spectrum is given, then `track_peak` with the keyword arguments
    `track` (`hr0_bpm`, `search_bpm`, `ok`, ...)."""
    if acc_spec is not None:
        motion = dict(n_peaks=n_peaks, width_hz=width_hz, threshold=threshold, excess=excess)
        ppg_spec = remove_motion_peaks(ppg_spec, acc_spec, freqs, **motion)
    return track_peak(ppg_spec, freqs, **track)
