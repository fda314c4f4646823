"""Running-dynamics features and their normaliser against hand values and NumPy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.errors import WearjaxDataError
from wearjax.signal.features import (
    DEVICE_FEATURES,
    Normalizer,
    feature_names,
    fit_normalizer,
    running_features,
    session_relative,
)

CHANNELS = (
    "speed",
    "cadence",
    "vertical_oscillation",
    "stance_time_percent",
    "vertical_ratio",
    "step_length",
    "altitude",
)
# Three seconds of each raw channel, in device units.
RAW = np.array(
    [
        [2.5, 80.0, 80.0, 30.0, 8.0, 1000.0, 100.0],
        [0.0, 85.0, 90.0, 32.0, 8.5, 1200.0, 105.0],
        [4.0, 90.0, 100.0, 34.0, 9.0, 1500.0, 98.0],
    ]
)
SUBJECT = np.array([1.6, 60.0, 30.0, 1.0])
# The same seconds transformed by hand.
EXPECTED = {
    "pace_s_per_km": [400.0, 2000.0, 250.0],  # 1000 / speed; standing still -> 1000 / 0.5
    "cadence_steps_per_min": [160.0, 170.0, 180.0],
    "vertical_oscillation_per_height": [0.05, 0.05625, 0.0625],  # 0.080 m / 1.6 m, ...
    "stance_fraction": [0.30, 0.32, 0.34],
    "vertical_ratio": [0.08, 0.085, 0.09],
    "step_length_m": [1.0, 1.2, 1.5],
    "altitude_m": [100.0, 105.0, 98.0],
    "altitude_gain_m": [0.0, 5.0, -2.0],
}


def test_each_transformation_matches_hand_values(x64):
    f, names = running_features(jnp.asarray(RAW), CHANNELS, jnp.asarray(SUBJECT))
    assert names == tuple(EXPECTED)
    assert f.shape == (3, len(EXPECTED)) and f.dtype == jnp.float64
    for j, name in enumerate(names):
        assert np.allclose(np.asarray(f[:, j]), EXPECTED[name], rtol=1e-12), name


def test_float32_close_to_hand_values():
    f, names = running_features(
        jnp.asarray(RAW, jnp.float32), CHANNELS, jnp.asarray(SUBJECT, jnp.float32)
    )
    assert f.dtype == jnp.float32
    assert np.allclose(np.asarray(f), np.array([EXPECTED[n] for n in names]).T, rtol=1e-6)


def test_subset_of_channels_in_canonical_order():
    channels = ("altitude", "speed")
    x = jnp.asarray(RAW[:, [6, 0]], jnp.float32)
    no_height = jnp.asarray([0.0, 0.0, 0.0, 0.0], jnp.float32)  # not needed without VO
    f, names = running_features(x, channels, no_height)
    assert names == ("pace_s_per_km", "altitude_m", "altitude_gain_m") == feature_names(channels)
    expected = np.array([EXPECTED[n] for n in names]).T
    assert np.allclose(np.asarray(f), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("channels", "message"),
    [((), "no running-dynamics channel"), (("speed", "power"), "power")],
)
def test_bad_channel_lists_raise(channels, message):
    x = jnp.zeros((3, len(channels)), jnp.float32)
    with pytest.raises(WearjaxDataError, match=message):
        running_features(x, channels, jnp.asarray(SUBJECT, jnp.float32))


@pytest.mark.parametrize("height", [0.0, -1.7, np.nan, np.inf])
def test_bad_height_raises_when_vertical_oscillation_is_used(height):
    subject = jnp.asarray([height, 60.0, 30.0, 1.0], jnp.float32)
    with pytest.raises(WearjaxDataError, match="height_m"):
        running_features(jnp.asarray(RAW, jnp.float32), CHANNELS, subject)


def test_jit_and_vmap_match_eager():
    rng = np.random.default_rng(0)
    x = jnp.asarray(RAW[None] * rng.uniform(0.8, 1.2, (4, 3, 7)), jnp.float32)
    subject = jnp.asarray(np.tile(SUBJECT, (4, 1)) * [[1.0], [1.1], [0.9], [1.05]], jnp.float32)
    eager, names = running_features(x, CHANNELS, subject)
    jitted, _ = eqx.filter_jit(running_features)(x, CHANNELS, subject)
    vmapped = jax.vmap(lambda xi, si: running_features(xi, CHANNELS, si)[0])(x, subject)
    loop = jnp.stack([running_features(x[i], CHANNELS, subject[i])[0] for i in range(4)])
    assert tree_allclose(eager, loop) and tree_allclose(jitted, loop)
    assert tree_allclose(vmapped, loop)
    # One subject broadcast over a batch of windows of its session.
    shared, _ = running_features(x, CHANNELS, subject[0])
    assert tree_allclose(shared[1], running_features(x[1], CHANNELS, subject[0])[0])


def _numpy_normalizer(features, weight):
    w = np.where(weight > 0, weight, 0.0).astype(np.float64)[..., None]
    f = np.where(w > 0, features, 0.0).astype(np.float64)
    mean = np.sum(w * f, axis=(0, 1)) / np.sum(w)
    std = np.sqrt(np.sum(w * (f - mean) ** 2, axis=(0, 1)) / np.sum(w))
    return mean, std


def _features_and_weights(seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal([300.0, 170.0, 0.05], [40.0, 8.0, 0.01], (6, 50, 3))
    weight = (rng.random((6, 50)) > 0.2) * rng.uniform(0.5, 2.0, (6, 50))
    weight[0] = 0.0  # a test runner
    features[weight == 0] = np.nan  # padding and test data must not leak
    return features.astype(np.float32), weight.astype(np.float32)


def test_normalizer_matches_numpy_weighted_mean_and_std():
    features, weight = _features_and_weights()
    norm = fit_normalizer(jnp.asarray(features), jnp.asarray(weight))
    mean, std = _numpy_normalizer(features, weight)
    assert np.allclose(np.asarray(norm.mean), mean, rtol=1e-5)
    assert np.allclose(np.asarray(norm.std), std, rtol=1e-4)
    f = jnp.asarray(np.nan_to_num(features))
    assert tree_allclose(norm.invert(norm.apply(f)), f, rtol=1e-5, atol=1e-4)
    z = np.asarray(norm.apply(f))[weight > 0]
    assert np.allclose(np.average(z, axis=0, weights=weight[weight > 0]), 0, atol=1e-4)


def test_boolean_weight_counts_samples_equally():
    features, weight = _features_and_weights()
    norm = fit_normalizer(jnp.asarray(features), jnp.asarray(weight > 0))
    mean, std = _numpy_normalizer(features, (weight > 0).astype(np.float64))
    assert np.allclose(np.asarray(norm.mean), mean, rtol=1e-5)
    assert np.allclose(np.asarray(norm.std), std, rtol=1e-4)


def test_constant_feature_gets_unit_std():
    features = np.ones((2, 10, 2), np.float32) * np.array([1234.5, 0.0], np.float32)
    norm = fit_normalizer(jnp.asarray(features), jnp.ones((2, 10), jnp.float32))
    assert np.allclose(np.asarray(norm.mean), [1234.5, 0.0])
    assert np.array_equal(np.asarray(norm.std), [1.0, 1.0])


def test_normalizer_errors():
    features = jnp.ones((2, 10, 3), jnp.float32)
    with pytest.raises(WearjaxDataError, match="positive weight"):
        fit_normalizer(features, jnp.zeros((2, 10), jnp.float32))
    # Caught by the jaxtyping annotation when runtime checking is on, else by our own check.
    with pytest.raises((WearjaxDataError, TypeError), match="shape|weight"):
        fit_normalizer(features, jnp.ones((10,), jnp.float32))


def test_vmap_over_folds_equals_per_fold_loop():
    features, _ = _features_and_weights()
    features = jnp.asarray(np.nan_to_num(features))
    rng = np.random.default_rng(3)
    # Three folds, each holding out two of the six runners.
    folds = np.ones((3, 6, 50), np.float32) * (rng.random((6, 50)) > 0.1)
    for k in range(3):
        folds[k, 2 * k : 2 * k + 2] = 0.0
    folds = jnp.asarray(folds)
    batched = jax.jit(jax.vmap(fit_normalizer, in_axes=(None, 0)))(features, folds)
    for k in range(3):
        single = fit_normalizer(features, folds[k])
        assert isinstance(single, Normalizer)
        assert tree_allclose(jax.tree.map(lambda a, k=k: a[k], batched), single, rtol=1e-5)


def test_height_check_is_eager_only():
    # Under jit the height is a tracer: no check, and a zero height gives a non-finite feature.
    subject = jnp.asarray([0.0, 60.0, 30.0, 1.0], jnp.float32)
    f = jax.jit(lambda x, s: running_features(x, CHANNELS, s)[0])(
        jnp.asarray(RAW, jnp.float32), subject
    )
    names = feature_names(CHANNELS)
    column = names.index("vertical_oscillation_per_height")
    assert not np.isfinite(np.asarray(f[:, column])).any()
    assert np.isfinite(np.delete(np.asarray(f), column, axis=1)).all()


def _sessions(seed=5):
    """Four sessions of 40 s of the seven features, with padding after each session's end."""
    rng = np.random.default_rng(seed)
    names = feature_names(CHANNELS)
    f = rng.normal(size=(4, 40, len(names))) * rng.uniform(0.5, 3, len(names)) + 10
    valid = np.arange(40)[None] < np.array([40, 25, 33, 12])[:, None]
    f[~valid] = 0.0  # padding
    return f, valid, names


def test_session_relative_matches_a_float64_loop():
    f, valid, names = _sessions()
    relative = ("stance_fraction", "altitude_m")
    out = np.asarray(session_relative(jnp.asarray(f, jnp.float32), jnp.asarray(valid), names,
                                      relative))  # fmt: skip
    expected = f.copy()
    for s in range(f.shape[0]):  # reference: one session and one feature at a time
        for j, name in enumerate(names):
            if name in relative:
                x = f[s, valid[s], j]
                expected[s, :, j] = (f[s, :, j] - x.mean()) / x.std()
    assert np.allclose(out[valid], expected[valid], rtol=1e-4, atol=1e-4)
    untouched = [j for j, n in enumerate(names) if n not in relative]
    assert np.array_equal(out[..., untouched], f[..., untouched].astype(np.float32))
    same = jnp.asarray(f)
    assert session_relative(same, jnp.asarray(valid), names, ()) is same  # nothing asked
    # a source without altitude: the name is a feature, just not this source's
    speed_only = jnp.asarray(f[..., :1])
    assert session_relative(speed_only, jnp.asarray(valid), names[:1], relative) is speed_only


def test_session_relative_cancels_each_session_own_device_offset_and_scale():
    # Another watch per session: a positive scale and an offset on every device feature.
    f, valid, names = _sessions()
    rng = np.random.default_rng(0)
    cols = np.array([n in DEVICE_FEATURES for n in names])
    scale = np.where(cols, rng.uniform(0.5, 2.0, (4, 1, len(names))), 1.0)
    shift = np.where(cols, rng.uniform(-100, 100, (4, 1, len(names))), 0.0)
    a = session_relative(jnp.asarray(f), jnp.asarray(valid), names, DEVICE_FEATURES)
    b = session_relative(jnp.asarray(f * scale + shift), jnp.asarray(valid), names, DEVICE_FEATURES)
    assert np.allclose(np.asarray(a)[valid], np.asarray(b)[valid], atol=2e-4)
    # the fold-wide normaliser alone does not: fitted on each cohort, it leaves the watches in
    fold = [fit_normalizer(jnp.asarray(g), jnp.asarray(valid)).apply(jnp.asarray(g))
            for g in (f, f * scale + shift)]  # fmt: skip
    off = np.abs(np.asarray(fold[0]) - np.asarray(fold[1]))[valid][:, cols]
    assert off.max() > 0.5


def test_session_relative_refuses_a_session_without_valid_seconds():
    f, valid, names = _sessions()
    valid[2] = False
    with pytest.raises(WearjaxDataError, match="no valid second"):
        session_relative(jnp.asarray(f), jnp.asarray(valid), names, ("altitude_m",))


@pytest.mark.parametrize(
    ("relative", "message"),
    [("altitude_m", "tuple of feature names|relative"), (("altitude",), "unknown features")],
)
def test_session_relative_refuses_a_string_or_an_unknown_name(relative, message):
    f, valid, names = _sessions()
    # a string: caught by the jaxtyping annotation when runtime checking is on, else by ours
    with pytest.raises((WearjaxDataError, TypeError), match=message):
        session_relative(jnp.asarray(f), jnp.asarray(valid), names, relative)


def test_integer_features_keep_fractional_weights():
    """Integer features (counts) with weights 0.5 and 1.5: the weights must not be truncated."""
    rng = np.random.default_rng(7)
    features = rng.integers(0, 200, (4, 30, 2)).astype(np.int32)
    weight = rng.choice([0.0, 0.5, 1.5], (4, 30)).astype(np.float32)
    norm = fit_normalizer(jnp.asarray(features), jnp.asarray(weight))
    mean, std = _numpy_normalizer(features.astype(np.float64), weight.astype(np.float64))
    assert norm.mean.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(norm.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.std), std, rtol=1e-4)
