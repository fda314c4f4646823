"""Running-dynamics features of the Lab-to-Wrist heart-rate model, and their normaliser.

`running_features` turns raw channels in device units (`wearjax.data.types.CHANNEL_UNITS`)
into the published model inputs; `fit_normalizer` standardises them with statistics of the
training runners only. Both are pure `jax.numpy` functions: jit-able and vmap-able.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Real

from wearjax.data.types import CHANNEL_UNITS, SUBJECT_FIELDS
from wearjax.errors import WearjaxDataError

# Speed is clipped below at this value before it becomes a pace, so that standing still (and
# the zero padding of a `Cohort`) gives a finite pace of at most 2000 s/km.
MIN_SPEED_M_PER_S: float = 0.5

# Model features each raw channel yields, in canonical order (that of `CHANNEL_UNITS`).
FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "speed": ("pace_s_per_km",),
    "cadence": ("cadence_steps_per_min",),
    "vertical_oscillation": ("vertical_oscillation_per_height",),
    "stance_time_percent": ("stance_fraction",),
    "vertical_ratio": ("vertical_ratio",),
    "step_length": ("step_length_m",),
    "altitude": ("altitude_m", "altitude_gain_m"),
}

_HEIGHT = SUBJECT_FIELDS.index("height_m")


def _pace(v: Array, height: Array) -> tuple[Array, ...]:
    return (1000.0 / jnp.maximum(v, MIN_SPEED_M_PER_S),)


def _cadence(c: Array, height: Array) -> tuple[Array, ...]:
    return (2.0 * c,)  # one stride = two steps


def _vertical_oscillation(vo: Array, height: Array) -> tuple[Array, ...]:
    return (vo / 1000.0 / height[..., None],)


def _percent(p: Array, height: Array) -> tuple[Array, ...]:
    return (p / 100.0,)


def _step_length(sl: Array, height: Array) -> tuple[Array, ...]:
    return (sl / 1000.0,)


def _altitude(a: Array, height: Array) -> tuple[Array, ...]:
    return (a, a - a[..., :1])


_TRANSFORMS: dict[str, Callable[[Array, Array], tuple[Array, ...]]] = {
    "speed": _pace,
    "cadence": _cadence,
    "vertical_oscillation": _vertical_oscillation,
    "stance_time_percent": _percent,
    "vertical_ratio": _percent,
    "step_length": _step_length,
    "altitude": _altitude,
}


def _feature_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """The channels of `channels` that yield features, in canonical order; validates names."""
    unknown = [c for c in channels if c not in CHANNEL_UNITS]
    if unknown:
        raise WearjaxDataError(
            f"unknown channels {unknown}; known channels are {sorted(CHANNEL_UNITS)}"
        )
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise WearjaxDataError(f"channels {repeated} appear more than once in {channels}")
    used = tuple(c for c in FEATURE_NAMES if c in channels)
    if not used:
        raise WearjaxDataError(
            f"no running-dynamics channel in {channels}; need at least one of {list(FEATURE_NAMES)}"
        )
    return used


def feature_names(channels: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the features `running_features` returns for these raw channels, in order."""
    return tuple(n for c in _feature_channels(tuple(channels)) for n in FEATURE_NAMES[c])


def _check_height(height: Array) -> None:
    """Raise on a non-positive, infinite or NaN height when its value is known (not under
    tracing)."""
    try:
        h = np.asarray(height)
    except jax.errors.TracerArrayConversionError:
        return
    bad = ~(np.isfinite(h) & (h > 0))  # an infinite height would scale the channel to 0
    if np.any(bad):
        raise WearjaxDataError(
            f"subject field 'height_m' must be positive and finite to scale channel "
            f"'vertical_oscillation', got {h[bad].ravel()[:5].tolist()} at "
            f"{np.argwhere(bad)[:5].tolist()}; set the subject's height or drop that channel"
        )


def running_features(
    x: Float[Array, "*batch time channel"],
    channels: tuple[str, ...],
    subject: Float[Array, "*#batch 4"],
) -> tuple[Float[Array, "*batch time feature"], tuple[str, ...]]:
    """Published running-dynamics features from raw channels.

    `x [..., T, C]` holds the raw channels named by the static `channels` (units in
    `CHANNEL_UNITS`); `subject [..., 4]` the `SUBJECT_FIELDS`, its leading axes broadcast to
    those of `x`. Returns `features [..., T, F]` and their names, in canonical channel order;
    a channel absent from `channels` simply contributes no feature. Per channel:

    - speed m/s -> pace_s_per_km = 1000 / max(speed, 0.5): standing still and padding give at
      most 2000 s/km instead of infinity (`MIN_SPEED_M_PER_S`);
    - cadence strides/min -> cadence_steps_per_min = 2 x cadence;
    - vertical_oscillation mm -> vertical_oscillation_per_height = VO_m / height_m;
    - stance_time_percent % -> stance_fraction = % / 100;
    - vertical_ratio % -> vertical_ratio = % / 100;
    - step_length mm -> step_length_m = mm / 1000;
    - altitude m -> altitude_m (absolute) and altitude_gain_m = altitude - altitude[..., 0]
      (gain since the first sample of the series).

    Raises `WearjaxDataError` for unknown or repeated channel names, when no channel yields a
    feature, and when vertical oscillation is present and a height is <= 0 or NaN. The height
    check runs only on concrete values; under `jit`/`vmap` it is the caller's job, and a zero
    height then gives a non-finite vertical_oscillation_per_height. The names are strings:
    under `jax.jit` return only the features (names come from `feature_names(channels)`) or
    use `eqx.filter_jit`.
    """
    channels = tuple(channels)
    used = _feature_channels(channels)
    if x.shape[-1] != len(channels):
        raise WearjaxDataError(
            f"x has {x.shape[-1]} channels on its last axis but {len(channels)} names were "
            f"given: {channels}"
        )
    if subject.shape[-1] != len(SUBJECT_FIELDS):
        raise WearjaxDataError(
            f"subject has last axis {subject.shape[-1]}, expected {len(SUBJECT_FIELDS)} "
            f"fields {SUBJECT_FIELDS}"
        )
    x = jnp.asarray(x)
    height = jnp.broadcast_to(jnp.asarray(subject)[..., _HEIGHT], x.shape[:-2]).astype(x.dtype)
    if "vertical_oscillation" in used:
        _check_height(height)
    columns: list[Array] = []
    for c in used:
        columns.extend(_TRANSFORMS[c](x[..., channels.index(c)], height))
    names = tuple(n for c in used for n in FEATURE_NAMES[c])
    return jnp.stack(columns, axis=-1), names


class Normalizer(eqx.Module):
    """Per-feature standardisation `(f - mean) / std`, fitted by `fit_normalizer`."""

    mean: Float[Array, " feature"]
    std: Float[Array, " feature"]

    def apply(self, f: Float[Array, "*batch feature"]) -> Float[Array, "*batch feature"]:
        """Standardised features `(f - mean) / std`."""
        return (f - jnp.broadcast_to(self.mean, f.shape)) / jnp.broadcast_to(self.std, f.shape)

    def invert(self, f: Float[Array, "*batch feature"]) -> Float[Array, "*batch feature"]:
        """Features in their original units: `f * std + mean`."""
        return f * jnp.broadcast_to(self.std, f.shape) + jnp.broadcast_to(self.mean, f.shape)


# A feature whose weighted std is at most this fraction of (1 + |mean|) counts as constant
# and gets std 1, so `apply` only centres it instead of dividing by (almost) zero.
STD_FLOOR_REL: float = 1e-6


def fit_normalizer(
    features: Real[Array, "*batch time feature"],
    weight: Float[Array, "*batch time"] | Bool[Array, "*batch time"],
) -> Normalizer:
    """Weighted mean and (population) std of each feature over all axes but the last.

    Only samples with `weight > 0` count, each with its weight (a boolean weight counts
    samples equally); pass a weight that is zero for test runners and padding. Values where the
    weight is zero never enter the arithmetic, so they may be NaN. A constant feature (std <=
    `STD_FLOOR_REL` x (1 + |mean|)) gets std 1. With no positive weight the statistics are
    undefined: concrete inputs raise `WearjaxDataError`, traced ones give NaN. Vmap over a
    leading fold axis of `weight` to fit one normaliser per fold in one program. Integer
    features are taken as float32 (the statistics are fractional).
    """
    features = jnp.asarray(features)
    weight = jnp.asarray(weight)
    if weight.shape != features.shape[:-1]:
        raise WearjaxDataError(
            f"weight has shape {weight.shape}, expected {features.shape[:-1]} (features "
            f"{features.shape} without the feature axis)"
        )
    if not jnp.issubdtype(features.dtype, jnp.floating):
        features = features.astype(jnp.float32)  # integer counts: fractional weights and means
    if weight.dtype == jnp.bool_:
        w = weight.astype(features.dtype)
    else:
        w = jnp.where(weight > 0, weight, 0).astype(features.dtype)
    try:
        total_concrete = float(np.sum(np.asarray(w)))
    except jax.errors.TracerArrayConversionError:
        total_concrete = None
    if total_concrete is not None and not total_concrete > 0:
        raise WearjaxDataError("fit_normalizer: no sample has a positive weight")
    axes = tuple(range(features.ndim - 1))
    keep = (w > 0)[..., None]
    f = jnp.where(keep, features, 0)
    total = jnp.sum(w)
    mean = jnp.sum(w[..., None] * f, axis=axes) / total
    centred = jnp.where(keep, f - jnp.broadcast_to(mean, f.shape), 0)
    std = jnp.sqrt(jnp.sum(w[..., None] * centred**2, axis=axes) / total)
    std = jnp.where(std > STD_FLOOR_REL * (1 + jnp.abs(mean)), std, 1)
    return Normalizer(mean=mean, std=std)


# Features whose level and scale depend on the device and how it is worn more than on the
# runner's effort: another watch, pod or strap reports vertical oscillation, stance time,
# vertical ratio and step length by its own method, and barometric altitude has its own offset.
# Pace and cadence are counted the same way by every device; the altitude gain is relative
# already. `session_relative` can take these to each session's own level and scale.
DEVICE_FEATURES: tuple[str, ...] = (
    "vertical_oscillation_per_height",
    "stance_fraction",
    "vertical_ratio",
    "step_length_m",
    "altitude_m",
)


def session_relative(
    features: Float[Array, "*batch time feature"],
    valid: Bool[Array, "*batch time"],
    names: tuple[str, ...],
    relative: tuple[str, ...],
) -> Float[Array, "*batch time feature"]:
    """Features `relative` standardised by each session's own mean and SD over its `valid`
    seconds (`fit_normalizer` per session); the other features unchanged.

    What it buys: a device's offset and scale on those features cancel, so a model trained on
    one watch reads another's. What it costs: the session's level of each such feature (a
    session standing higher, or bouncing more, than the others) is gone, and the statistics
    need the whole session (a stream must take them from earlier recordings). Inputs only:
    heart rate never enters. Names in `relative` that `names` lacks are ignored (a source
    without that channel); a name that is no feature at all raises; a constant feature is only
    centred (`STD_FLOOR_REL`).
    """
    if isinstance(relative, str) or not all(isinstance(n, str) for n in relative):
        raise WearjaxDataError(f"session_relative: pass a tuple of feature names, got {relative!r}")
    known = {n for group in FEATURE_NAMES.values() for n in group}
    unknown = sorted(set(relative) - known)
    if unknown:
        raise WearjaxDataError(
            f"session_relative: unknown features {unknown}; known features are {sorted(known)}"
        )
    columns = np.asarray([n in relative for n in names])
    if not columns.any():
        return features
    features, valid = jnp.asarray(features), jnp.asarray(valid)
    if valid.shape != features.shape[:-1]:
        raise WearjaxDataError(
            f"valid has shape {valid.shape}, expected {features.shape[:-1]} (features "
            f"{features.shape} without the feature axis)"
        )
    flat = features.reshape(-1, *features.shape[-2:])
    if not np.all(np.asarray(jnp.any(valid.reshape(flat.shape[:2]), axis=-1))):
        raise WearjaxDataError("session_relative: a session has no valid second")
    own = jax.vmap(fit_normalizer)(flat, valid.reshape(flat.shape[:2]))
    standardised = jax.vmap(Normalizer.apply)(own, flat).reshape(features.shape)
    return jnp.where(jnp.asarray(columns), standardised, features)
