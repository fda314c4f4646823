"""Masked error metrics of heart-rate predictions: the one place the project computes them.

Every metric takes `pred`, `true` and a boolean `mask` of one shape and reduces over all of
their axes, counting only samples where `mask` is True (vmap for per-session or per-fold
values). Values under a False mask never enter the arithmetic, so padding may hold NaN.
A metric that is undefined for the selected samples (no sample; fewer than two for
`sd_diff`; zero variance for `pearson_r` and `r2`) is NaN, by an explicit `jnp.where`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

# Fixed heart-rate zone edges in bpm, so tables compare across cohorts: low < 130 <= medium
# < 160 <= high, judged on the true heart rate.
HR_ZONES: tuple[float, float] = (130.0, 160.0)
ZONE_NAMES: tuple[str, str, str] = ("low", "medium", "high")


def _prepare(pred: Array, true: Array, mask: Array) -> tuple[Array, Array, Array, Array]:
    """`pred`, `true` zeroed where masked out, in one float dtype; the mask; the count."""
    if not (pred.shape == true.shape == mask.shape):
        raise ValueError(
            f"pred {pred.shape}, true {true.shape} and mask {mask.shape} must share one shape"
        )
    dtype = jnp.promote_types(pred.dtype, true.dtype)
    mask = mask.astype(jnp.bool_)
    pred = jnp.where(mask, pred.astype(dtype), 0)
    true = jnp.where(mask, true.astype(dtype), 0)
    return pred, true, mask, jnp.sum(mask).astype(dtype)


def _mean(values: Array, mask: Array, n: Array) -> Array:
    """Mean of `values` over `mask` (NaN when `n` is 0); `values` must be 0 where masked."""
    return jnp.where(n > 0, jnp.sum(jnp.where(mask, values, 0)) / jnp.maximum(n, 1), jnp.nan)


def mae(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Mean absolute error, mean |pred - true| over the mask."""
    pred, true, mask, n = _prepare(pred, true, mask)
    return _mean(jnp.abs(pred - true), mask, n)


def rmse(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Root mean squared error, sqrt(mean (pred - true)^2) over the mask."""
    pred, true, mask, n = _prepare(pred, true, mask)
    return jnp.sqrt(_mean((pred - true) ** 2, mask, n))


def mape(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Mean absolute percentage error, 100 x mean |pred - true| / |true| (true must be != 0)."""
    pred, true, mask, n = _prepare(pred, true, mask)
    return _mean(100 * jnp.abs(pred - true) / jnp.where(mask, jnp.abs(true), 1), mask, n)


def within(
    pred: Float[Array, "*shape"],
    true: Float[Array, "*shape"],
    mask: Bool[Array, "*shape"],
    tolerance: float = 5.0,
) -> Float[Array, ""]:
    """Fraction (0-1) of samples with |pred - true| <= `tolerance` over the mask."""
    pred, true, mask, n = _prepare(pred, true, mask)
    hit = (jnp.abs(pred - true) <= tolerance).astype(pred.dtype)
    return _mean(hit, mask, n)


def bias(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Mean difference, mean (pred - true) over the mask (Bland-Altman bias)."""
    pred, true, mask, n = _prepare(pred, true, mask)
    return _mean(pred - true, mask, n)


def sd_diff(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Sample standard deviation (ddof = 1, the Bland-Altman convention) of pred - true.

    Limits of agreement are `bias +- 1.96 sd_diff`. NaN with fewer than two samples.
    """
    pred, true, mask, n = _prepare(pred, true, mask)
    d = pred - true
    centred = jnp.where(mask, d - _mean(d, mask, n), 0)
    var = jnp.sum(centred**2) / jnp.maximum(n - 1, 1)
    return jnp.where(n > 1, jnp.sqrt(var), jnp.nan)


def _varies(x: Array, mask: Array) -> Array:
    """True when `x` takes more than one value over the mask. Exact: a rounding residue in a
    float32 mean would make a constant look like it varies by one unit in the last place."""
    hi = jnp.max(jnp.where(mask, x, -jnp.inf))
    lo = jnp.min(jnp.where(mask, x, jnp.inf))
    return hi > lo


def pearson_r(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Pearson correlation of pred and true over the mask; NaN if either is constant."""
    pred, true, mask, n = _prepare(pred, true, mask)
    p = jnp.where(mask, pred - _mean(pred, mask, n), 0)
    t = jnp.where(mask, true - _mean(true, mask, n), 0)
    denom = jnp.sqrt(jnp.sum(p**2)) * jnp.sqrt(jnp.sum(t**2))
    ok = (denom > 0) & _varies(pred, mask) & _varies(true, mask)
    return jnp.where(ok, jnp.sum(p * t) / jnp.where(ok, denom, 1), jnp.nan)


def r2(
    pred: Float[Array, "*shape"], true: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, ""]:
    """Coefficient of determination 1 - SS_res / SS_tot (not pearson_r^2; may be negative).

    SS_tot is about the masked mean of `true`; NaN when `true` is constant over the mask.
    """
    pred, true, mask, n = _prepare(pred, true, mask)
    ss_res = jnp.sum((pred - true) ** 2)
    ss_tot = jnp.sum(jnp.where(mask, true - _mean(true, mask, n), 0) ** 2)
    ok = (ss_tot > 0) & _varies(true, mask)
    return jnp.where(ok, 1 - ss_res / jnp.where(ok, ss_tot, 1), jnp.nan)


def zone_masks(
    true: Float[Array, "*shape"],
    mask: Bool[Array, "*shape"],
    edges: tuple[float, float] = HR_ZONES,
) -> dict[str, Bool[Array, "*shape"]]:
    """Masks of the heart-rate zones by true HR: low < edges[0] <= medium < edges[1] <= high.

    The default `HR_ZONES` are fixed bpm thresholds, so zone tables compare across cohorts.
    """
    lo, hi = edges
    if not lo < hi:
        raise ValueError(f"zone edges must increase, got {edges}")
    true = jnp.where(mask, true, 0)
    zones = (true < lo, (true >= lo) & (true < hi), true >= hi)
    return {name: mask & z for name, z in zip(ZONE_NAMES, zones, strict=True)}


def _shift(a: Array, k: int) -> Array:
    """`out[..., t] = a[..., t + k]`, 0 where `t + k` falls outside the last axis."""
    if k == 0:
        return a
    size = a.shape[-1]
    pad = jnp.zeros(a.shape[:-1] + (min(abs(k), size),), a.dtype)
    if k > 0:
        return jnp.concatenate([a[..., k:], pad], axis=-1)
    return jnp.concatenate([pad, a[..., : max(size + k, 0)]], axis=-1)


def smooth_hr(
    true: Float[Array, "*batch time"], mask: Bool[Array, "*batch time"], *, width: int = 5
) -> tuple[Float[Array, "*batch time"], Bool[Array, "*batch time"]]:
    """Centred masked moving average of HR over `width` seconds (odd), and where it exists.

    Averages the observed samples in `[t - width // 2, t + width // 2]` (fewer at the edges);
    defined where at least one of them is observed, 0 elsewhere.
    """
    if width < 1 or width % 2 == 0:
        raise ValueError(f"smoothing width must be a positive odd number of seconds: {width}")
    r = width // 2
    hr = jnp.where(mask, true, 0)
    w = mask.astype(hr.dtype)
    total = sum((_shift(hr, k) for k in range(-r, r + 1)), jnp.zeros_like(hr))
    count = sum((_shift(w, k) for k in range(-r, r + 1)), jnp.zeros_like(hr))
    ok = count > 0
    return jnp.where(ok, total / jnp.where(ok, count, 1), 0), ok


def transition_mask(
    true: Float[Array, "*batch time"],
    mask: Bool[Array, "*batch time"],
    *,
    half_width: int = 10,
    threshold_bpm: float = 10.0,
    smooth: int = 5,
) -> Bool[Array, "*batch time"]:
    """Seconds where heart rate is changing fast, along the last (time) axis.

    With `s` the `smooth`-second masked moving average of true HR (`smooth_hr`), an observed
    second t is a transition when |s(t + half_width) - s(t - half_width)| >= threshold_bpm: by
    default a change of at least 10 bpm within 20 s. Near the series' ends and across gaps the
    window uses what is available: s(t + half_width) is replaced by the last defined `s` at or
    before t + half_width, and s(t - half_width) by the first at or after t - half_width (these
    lie between t and t +- half_width since s(t) is defined at an observed t). Every observed
    second is therefore evaluable: steady = mask & ~transition.
    """
    if half_width < 1:
        raise ValueError(f"half_width must be at least 1 second, got {half_width}")
    s, ok = smooth_hr(true, mask, width=smooth)
    size = s.shape[-1]
    t = jnp.broadcast_to(jnp.arange(size), s.shape)
    last = jax.lax.cummax(jnp.where(ok, t, 0), axis=s.ndim - 1)
    first = jax.lax.cummin(jnp.where(ok, t, size - 1), axis=s.ndim - 1, reverse=True)
    right = jnp.take_along_axis(s, jnp.take_along_axis(last, _ahead(t, half_width), -1), -1)
    left = jnp.take_along_axis(s, jnp.take_along_axis(first, _ahead(t, -half_width), -1), -1)
    return mask & (jnp.abs(right - left) >= threshold_bpm)


def _ahead(t: Array, k: int) -> Array:
    """Indices t + k clipped to the last axis."""
    return jnp.clip(t + k, 0, t.shape[-1] - 1)


def summarize(
    pred: Float[Array, "*shape"],
    true: Float[Array, "*shape"],
    mask: Bool[Array, "*shape"],
    *,
    edges: tuple[float, float] = HR_ZONES,
    half_width: int = 10,
    threshold_bpm: float = 10.0,
) -> dict[str, Float[Array, ""] | Int[Array, ""]]:
    """All metrics over the mask, with MAE per HR zone and for transition / steady seconds.

    Keys: mae, rmse, mape, pearson_r, r2, bias, sd_diff, n; mae_{low,medium,high,transition,
    steady} and the matching n_*; n_nonfinite, the scored samples whose prediction is NaN or
    infinite (a diverged model), which make every metric over them NaN. The last axis is time
    (for `transition_mask`). The MAE of an empty subset is NaN and its n is 0.
    """
    out: dict[str, Array] = {
        "mae": mae(pred, true, mask),
        "rmse": rmse(pred, true, mask),
        "mape": mape(pred, true, mask),
        "pearson_r": pearson_r(pred, true, mask),
        "r2": r2(pred, true, mask),
        "bias": bias(pred, true, mask),
        "sd_diff": sd_diff(pred, true, mask),
        "n": jnp.sum(mask),
        "n_nonfinite": jnp.sum(mask.astype(jnp.bool_) & ~jnp.isfinite(pred)),
    }
    moving = transition_mask(true, mask, half_width=half_width, threshold_bpm=threshold_bpm)
    subsets = zone_masks(true, mask, edges) | {"transition": moving, "steady": mask & ~moving}
    for name, m in subsets.items():
        out[f"mae_{name}"] = mae(pred, true, m)
        out[f"n_{name}"] = jnp.sum(m)
    return out


def predictive_scores(
    pred: Float[Array, "*shape"],
    var: Float[Array, "*shape"],
    true: Float[Array, "*shape"],
    mask: Bool[Array, "*shape"],
    *,
    var_floor: float = 1e-6,
) -> dict[str, Float[Array, ""]]:
    """Calibration of a Gaussian predictive distribution N(pred, var) over the mask.

    `coverage_2sd`: share of true values within pred +- 2 SD (0.954 for a calibrated
    Gaussian); `mean_sd`: mean predictive SD; `nll`: mean Gaussian negative log-likelihood;
    `crps`: mean continuous ranked probability score of the Gaussian (Gneiting & Raftery 2007,
    eq. 21: `sd [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]`, `z = (true - pred) / sd`), in the
    units of `true`. `var` is floored at `var_floor` so a zero variance gives finite scores;
    values outside the mask (NaN included) are ignored.

    Every score is NaN where it is undefined: over an empty mask (as `summarize`'s MAE), and
    where the prediction, variance or true value of a scored second is not finite (NaN or
    infinite), which would otherwise count as a miss (NaN) or a hit (infinite) in the coverage.
    """
    if not (pred.shape == var.shape == true.shape == mask.shape):  # a broadcast mask miscounts
        raise ValueError(
            f"pred {pred.shape}, var {var.shape}, true {true.shape} and mask {mask.shape} must "
            "share one shape"
        )
    v = jnp.maximum(var, var_floor)
    sd = jnp.sqrt(v)
    z = (true - pred) / sd
    n = jnp.maximum(jnp.sum(mask.astype(pred.dtype)), 1.0)
    nll = 0.5 * (jnp.log(2 * jnp.pi * v) + z**2)
    crps = gaussian_crps(pred, var, true, var_floor=var_floor)
    total = lambda x: jnp.sum(jnp.where(mask, x, 0.0))  # noqa: E731  (NaN outside the mask is ignored)
    finite = jnp.isfinite(var) & jnp.isfinite(pred) & jnp.isfinite(true)
    defined = jnp.any(mask) & jnp.all(jnp.where(mask, finite, True))
    scores = {
        "coverage_2sd": total((jnp.abs(z) <= 2.0).astype(pred.dtype)) / n,
        "mean_sd": total(sd) / n,
        "nll": total(nll) / n,
        "crps": total(crps) / n,
    }
    return {k: jnp.where(defined, x, jnp.nan) for k, x in scores.items()}


def gaussian_crps(
    pred: Float[Array, "*shape"],
    var: Float[Array, "*shape"],
    true: Float[Array, "*shape"],
    *,
    var_floor: float = 1e-6,
) -> Float[Array, "*shape"]:
    """CRPS of N(pred, var) at `true`, per element (Gneiting & Raftery 2007, eq. 21); as the
    variance goes to zero it is the absolute error, so it is a training loss that extends MAE."""
    sd = jnp.sqrt(jnp.maximum(var, var_floor))
    z = (true - pred) / sd
    pdf = jnp.exp(-0.5 * z**2) / jnp.sqrt(2 * jnp.pi)
    cdf = 0.5 * (1 + jax.scipy.special.erf(z / jnp.sqrt(2.0)))
    return sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / jnp.sqrt(jnp.pi))
