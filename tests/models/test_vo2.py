"""VO2 model: one Kalman-clamp step against a float64 NumPy transcription, the scan against a
loop of steps, the biGRU against its definition, and the loss against its formula."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models.backbone import GRULayer
from wearjax.models.vo2 import (
    VARIANTS,
    BiGRU,
    VO2Carry,
    VO2StepInputs,
    build_vo2_model,
    vo2_kalman_step,
)
from wearjax.tasks.losses import vo2_kalman_loss, window_statistics
from wearjax.train.schedules import CurriculumWeights


def reference_step(v1, v2, p, obs, q, r, g, lo, hi, trend, direct, alpha):
    """The module docstring's equations, line by line, in float64 NumPy."""
    prior = v1 + trend * (v1 - v2)
    p_pred = p + q
    k = 1.0 / (1.0 + np.exp(-(np.log(p_pred) - np.log(r) + g)))
    v_kf = prior + min(max(k * (obs - prior), lo), hi)
    v = alpha * direct + (1 - alpha) * v_kf
    return v, v_kf, (1 - k) * p_pred


# one second's head outputs (model units), inside the rate-of-change clamp for obs = 2.1
STEP_VALUES = dict(
    obs=2.1,
    q=0.003,
    r=0.05,
    gain_shift=0.3,
    lo=-0.04,
    hi=0.06,
    trend=0.4,
    direct=2.3,
    alpha=0.25,
)


@pytest.mark.parametrize("clamped", ["none", "low", "high"])
def test_kalman_clamp_step_matches_numpy(x64, clamped):
    obs = {"none": 2.1, "low": 0.2, "high": 4.0}[clamped]
    values = {**STEP_VALUES, "obs": obs}
    inputs = VO2StepInputs(**{k: jnp.asarray(v, jnp.float64) for k, v in values.items()})
    carry = VO2Carry(*(jnp.asarray(v, jnp.float64) for v in (2.0, 1.95, 0.01)))
    new, (v, v_kf, p) = jax.jit(vo2_kalman_step)(carry, inputs)
    ref = reference_step(2.0, 1.95, 0.01, *values.values())
    np.testing.assert_allclose([v, v_kf, p], ref, rtol=1e-12)
    assert v.dtype == jnp.float64
    np.testing.assert_allclose([new.v1, new.v2, new.var], [ref[0], 2.0, ref[2]], rtol=1e-12)
    step = ref[1] - (2.0 + 0.4 * 0.05)
    if clamped == "low":
        np.testing.assert_allclose(step, -0.04, rtol=1e-12)
    if clamped == "high":
        np.testing.assert_allclose(step, 0.06, rtol=1e-12)


def test_rollout_scan_equals_loop_of_steps_and_starts_at_v0():
    model = build_vo2_model(3, (8, 2), key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (60, 3))
    v0 = jnp.asarray(1500.0)
    pred = eqx.filter_jit(model.rollout)(x, v0)
    inputs = model.step_inputs(model.states(x, v0), v0)
    carry = VO2Carry(v0 / 1000, v0 / 1000, jax.nn.softplus(model.log_p0))
    out = [1.5]
    for t in range(1, 60):
        step_t = VO2StepInputs(*(a[t] for a in inputs))
        carry, (v, _, _) = vo2_kalman_step(carry, step_t)
        out.append(float(v))
    np.testing.assert_allclose(np.asarray(pred.vo2), 1000 * np.asarray(out), rtol=1e-5)
    assert pred.vo2[0] == v0
    assert pred.mu.shape == (1,)
    assert np.all(np.asarray(pred.sigma) > 0) and np.all(np.asarray(pred.delta95) > 0)


def test_bigru_is_forward_and_reversed_layers():
    gru = BiGRU(3, 4, 1, key=jax.random.key(2))
    x = jax.random.normal(jax.random.key(3), (10, 3))
    h0 = jnp.zeros(4)
    fwd, bwd = gru.forward[0], gru.backward[0]
    assert isinstance(fwd, GRULayer)
    want = jnp.concatenate([fwd(x, h0), bwd(x[::-1], h0)[::-1]], axis=-1)
    np.testing.assert_allclose(gru(x), want, rtol=1e-6)
    # the backward direction sees the future: changing the last input moves the first output
    y = gru(x.at[-1].add(1.0))
    assert not np.allclose(y[0, 4:], want[0, 4:])
    np.testing.assert_allclose(y[0, :4], want[0, :4])


def test_variants_and_unknown_variant():
    assert VARIANTS == {"128-4": (128, 4), "256-2": (256, 2)}
    m = build_vo2_model(2, "128-4", key=jax.random.key(0))
    assert len(m.gru.forward) == 4 and m.gru.forward[0].hidden == 128
    with pytest.raises(ValueError, match="unknown VO2 variant"):
        build_vo2_model(2, "64-1", key=jax.random.key(0))


def test_loss_matches_formula():
    rng = np.random.default_rng(0)
    t, w = 130, 60
    true = 1000 + np.cumsum(rng.normal(0, 10, (2, t)), axis=1)
    pred = true + rng.normal(0, 30, (2, t))
    mask = np.ones((2, t), bool)
    mask[1, 100:] = False
    given = np.zeros((2, t), bool)
    given[:, 0] = True
    starts = np.array([0, 30, 60], np.int32)
    wp = tuple(rng.uniform(50, 1000, (3, 2, 3)))
    weights = CurriculumWeights(jnp.asarray(0.7), jnp.asarray(0.3), jnp.asarray(0.15))
    got = vo2_kalman_loss(
        jnp.asarray(pred, jnp.float32),
        tuple(jnp.asarray(a, jnp.float32) for a in wp),
        jnp.asarray(true, jnp.float32),
        jnp.asarray(mask),
        jnp.asarray(given),
        jnp.asarray(starts),
        weights,
        window=w,
        first_weight=0.5,
        second_weight=2.0,
    )
    p, y = pred / 1000, true / 1000
    sc = mask & ~given
    main = np.abs(p - y)[sc].mean()
    m1 = mask[:, 1:] & mask[:, :-1]
    d1 = np.abs(np.diff(p) - np.diff(y))[m1].mean()
    m2 = m1[:, 1:] & m1[:, :-1]
    d2 = np.abs(np.diff(p, 2) - np.diff(y, 2))[m2].mean()
    aux = 0.0
    ok = np.array([[mask[i, s : s + w].all() for s in starts] for i in range(2)])
    win = np.stack([[y[i, s : s + w] for s in starts] for i in range(2)])
    stats = (win.mean(-1), win.std(-1), np.percentile(np.abs(np.diff(win, axis=-1)), 95, axis=-1))
    for hat, s in zip(wp, stats, strict=True):
        aux += np.abs(hat / 1000 - s)[ok].mean()
    want = 0.7 * main + 0.3 * (0.5 * d1 + 2.0 * d2) + 0.15 * aux
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    _, _, _, ok_got = window_statistics(jnp.asarray(y), jnp.asarray(mask), jnp.asarray(starts), w)
    np.testing.assert_array_equal(np.asarray(ok_got), ok)


def test_step_gradient_matches_finite_differences(x64):
    """d v_t / d (obs, gain_shift, trend, alpha) inside the clamp, float64 central differences."""
    base = dict(STEP_VALUES)
    carry = VO2Carry(*(jnp.asarray(v, jnp.float64) for v in (2.0, 1.95, 0.01)))

    def v_of(values):
        inputs = VO2StepInputs(**{k: jnp.asarray(v, jnp.float64) for k, v in values.items()})
        return vo2_kalman_step(carry, inputs)[1][0]

    for name in ("obs", "gain_shift", "trend", "alpha"):
        grad = jax.grad(lambda a, name=name: v_of(base | {name: a}))(jnp.asarray(base[name]))
        eps = 1e-6
        fd = (v_of(base | {name: base[name] + eps}) - v_of(base | {name: base[name] - eps})) / (
            2 * eps
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


# ~10 s cold on 2 cores: slow step only (the manual GRU layer's own gradients are tested fast)
@pytest.mark.slow
def test_vo2_model_on_the_manual_gru_gives_the_same_rollout_and_gradients(x64):
    """`gru_impl="manual"` reaches every layer of both directions, and the rollout's value and
    gradients equal JAX's derivative of the default layer in float64."""
    x = jax.random.normal(jax.random.key(1), (120, 3))
    got = []
    for impl in ("autodiff", "manual"):
        model = build_vo2_model(3, (6, 2), gru_impl=impl, key=jax.random.key(0))
        layers = model.gru.forward + model.gru.backward
        assert [layer.impl for layer in layers] == [impl] * 4
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss(p):
            pred = eqx.combine(p, static).rollout(x, jnp.asarray(1500.0))  # noqa: B023
            return jnp.mean(jnp.square(pred.vo2 / 1000.0 - 1.6)) + jnp.mean(pred.mu / 1000.0)

        got.append(jax.jit(jax.value_and_grad(loss))(params))
    (v_a, g_a), (v_m, g_m) = got
    np.testing.assert_allclose(v_m, v_a, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g_m), jax.tree.leaves(g_a), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="unknown GRU implementation"):
        build_vo2_model(3, "256-2", gru_impl="cudnn", key=jax.random.key(0))


def test_window_stats_refuses_concrete_starts_outside_the_session():
    """Indexing past the end clamps: a window starting at 200 of 120 s would read the last
    window's sums (its mean the session's end, no error). Concrete starts are checked."""
    model = build_vo2_model(3, (8, 2), key=jax.random.key(0))
    s = jnp.ones((120, model.window_head.weight.shape[1]))
    mu, _, _ = model.window_stats(s, jnp.asarray(900.0), jnp.asarray([0, 60]))
    assert mu.shape == (2,)
    with pytest.raises(ValueError, match=r"window starts \[90, 200\] lie outside 0..60"):
        model.window_stats(s, jnp.asarray(900.0), jnp.asarray([60, 90, 200]))


def test_a_float64_model_rolls_out_from_float32_data(x64):
    """A cohort holds float32 (inputs and the given first VO2); a model built under x64 holds
    float64 weights: the rollout runs in the model's float64 and matches float64 inputs."""
    model = build_vo2_model(3, (8, 1), key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (60, 3))
    rollout = eqx.filter_jit(lambda m, x, v0: m.rollout(x, v0))  # dtypes are set when tracing
    wide = rollout(model, x, jnp.asarray(1500.0))
    narrow = rollout(model, x.astype(jnp.float32), jnp.asarray(1500.0, jnp.float32))
    assert narrow.vo2.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(narrow.vo2), np.asarray(wide.vo2), rtol=1e-6)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_no_second_of_a_padded_session_reads_its_padding():
    """A cohort pads every test to its longest: with the session's `length`, the backward GRU
    starts at the session's last second, so its seconds equal those of the unpadded session
    whatever the padding holds (before, the last seconds moved with the padding)."""
    model = build_vo2_model(3, (8, 2), key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (120, 3))
    # one program per shape, not one per operation; `length` traced, as a cohort passes it,
    # or a Python int (static here)
    rollout = eqx.filter_jit(
        lambda m, x, length=None: m.rollout(x, jnp.asarray(1500.0), length=length)
    )
    alone = rollout(model, x)
    for fill in (0.0, 5.0):
        padded = jnp.concatenate([x, jnp.full((60, 3), fill)])
        for length in (jnp.asarray(120), 120):  # traced, and a Python int
            got = rollout(model, padded, length)
            np.testing.assert_allclose(np.asarray(got.vo2[:120]), np.asarray(alone.vo2), rtol=1e-5)
            np.testing.assert_allclose(np.asarray(got.mu[:2]), np.asarray(alone.mu), rtol=1e-5)
    unaware = rollout(model, jnp.concatenate([x, jnp.full((60, 3), 5.0)]))
    assert float(jnp.max(jnp.abs(unaware.vo2[:120] - alone.vo2))) > 1e-3  # what length fixes
