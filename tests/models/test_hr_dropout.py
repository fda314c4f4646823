"""HRKalman.assimilate (HR through sensor dropouts) against `rollout` and a float64 NumPy loop."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from tests.models.test_hr_kalman import _leaky, _np, _softplus
from wearjax.errors import WearjaxDataError
from wearjax.models.hr_kalman import (
    HR_MAX,
    HR_MIN,
    MAX_RATE,
    MEAN_SCALE,
    OBS_CENTER,
    OBS_SCALE,
    P0_SHIFT,
    Q_SHIFT,
    R_SHIFT,
    SD_SCALE,
    HRKalman,
)

W = 12  # a short window keeps the NumPy loops quick
N = 4


def numpy_assimilate(model: HRKalman, s, hr, measured, sd) -> tuple:
    """`assimilate` from backbone states `s [N, W, H]` as plain float64 loops.

    Copied from tests/models/test_hr_kalman.py's `numpy_standard` (generative carry) and
    extended: the observation's offset follows the last measured HR; after the learned update
    of every second, and at every carried window start,
    a measured HR is assimilated with k_m = P_g / (P_g + (sd / sigma)^2), weights (1, 0.5)."""
    wh, bh = _np(model.window_head.weight), _np(model.window_head.bias)
    sh, sb = _np(model.step_head.weight), _np(model.step_head.bias)
    tr = model.transition
    tc, tcb, ts = _np(tr.context.weight), _np(tr.context.bias), _np(tr.state.weight)
    to, tob = _np(tr.out.weight), _np(tr.out.bias)
    g1, g1b = _np(model.gain.hidden.weight), _np(model.gain.hidden.bias)
    g2, g2b = _np(model.gain.out.weight), _np(model.gain.out.bias)
    hr, measured = hr.reshape(N, W), measured.reshape(N, W)
    w = np.array([1.0, 0.5])
    h_start, v_start = float(hr.reshape(-1)[np.argmax(measured.reshape(-1))]), 0.0
    inflation = _softplus(float(model.carry_noise))
    hrs, vars_ = [], []
    tau = np.exp(float(model.log_anchor_time))
    level = (OBS_CENTER + OBS_SCALE * (s @ sh[0] + sb[0])).reshape(-1)  # a_t
    flat_hr, flat_measured = hr.reshape(-1), measured.reshape(-1)

    def offset(n, t):
        """The last measured HR's offset from a (the first measured one before any)."""
        now = n * W + t
        before = [i for i in range(now + 1) if flat_measured[i]]
        k = before[-1] if before else int(np.argmax(flat_measured))
        return np.exp(-abs(now - k) / tau) * (flat_hr[k] - level[k])

    def measure(z, p, n, t, mu, sigma, lo, hi):
        if not measured[n, t]:
            return z, p
        k_m = p[0] / (p[0] + (sd / sigma) ** 2)
        z = z + w * k_m * ((hr[n, t] - mu) / sigma - z[0])
        return np.clip(z, lo, hi), p * (1.0 - w * k_m)

    for n in range(N):
        extra = inflation if n > 0 else 0.0
        raw = wh @ s[n, 0] + bh
        mu = h_start + MEAN_SCALE * raw[0]
        sigma = 0.5 + SD_SCALE * _softplus(raw[1])
        lo = np.array([(HR_MIN - mu) / sigma, -MAX_RATE / sigma])
        hi = np.array([(HR_MAX - mu) / sigma, MAX_RATE / sigma])
        z = np.clip(np.array([(h_start - mu) / sigma, raw[2]]), lo, hi)
        p = _softplus(raw[3:5] + P0_SHIFT) + 1e-4 + np.array([v_start / sigma**2 + extra, 0.0])
        if n > 0:  # a carried start; the session's first second is the initial condition
            z, p = measure(z, p, n, 0, mu, sigma, lo, hi)
        out_h, out_v = [mu + sigma * z[0]], [sigma**2 * p[0]]
        for t in range(1, W):
            st = sh @ s[n, t] + sb
            y = (OBS_CENTER + OBS_SCALE * st[0] + offset(n, t) - mu) / sigma
            q, r = _softplus(st[1:3] + Q_SHIFT) + 1e-5, _softplus(st[3] + R_SHIFT) + 1e-5
            a = _leaky(tc @ s[n, t] + tcb + ts @ z)
            z_pred = np.array([z[0] + z[1], z[1]]) + to @ a + tob
            p_pred = p + q
            u = np.log(np.array([p_pred[0], p_pred[1], r]))
            logit = u[0] - u[2] + (g2 @ np.tanh(g1 @ u + g1b) + g2b)[0]
            k = 1.0 / (1.0 + np.exp(-logit))
            z = z_pred + np.array([k, 0.5 * k]) * (y - z_pred[0])
            p = p_pred * np.array([1 - k, 1 - 0.5 * k])
            z, p = measure(z, p, n, t, mu, sigma, lo, hi)
            z = np.clip(z, lo, hi)
            out_h.append(mu + sigma * z[0])
            out_v.append(sigma**2 * p[0])
        hrs.append(out_h)
        vars_.append(out_v)
        h_start, v_start = out_h[-1], out_v[-1]
    return np.array(hrs).reshape(-1), np.array(vars_).reshape(-1)


@pytest.fixture
def model_and_inputs(x64):
    model = HRKalman(5, hidden=8, n_layers=2, window=W, key=jax.random.key(0))
    # a model whose filter is uncertain enough for measurements to matter
    model = eqx.tree_at(lambda m: m.carry_noise, model, jnp.asarray(1.0))
    x = jax.random.normal(jax.random.key(1), (N * W, 5))
    t = jnp.arange(N * W, dtype=jnp.float64)
    hr = 135.0 + 15.0 * jnp.sin(t / 7.0)
    return model, x, hr


def test_first_second_only_equals_rollout(model_and_inputs):
    model, x, hr = model_and_inputs
    first = jnp.zeros((N * W,), bool).at[0].set(True)
    out = model.assimilate(x, hr, first)
    ref = model.rollout(x, hr[0])
    assert tree_allclose(out, ref, rtol=0, atol=0)
    # the first measured second anchors the rollout, wherever it lies
    later = jnp.zeros((N * W,), bool).at[3].set(True)
    shifted = model.assimilate(x, jnp.where(later, hr, 0.0), later, measurement_sd=1.0)
    np.testing.assert_allclose(shifted.hr[0], hr[3], rtol=1e-12)
    # no second measured: it used to start from hr[0] (NaN, or a 0 clipped to 30 bpm) silently
    with pytest.raises(WearjaxDataError, match="no second of `measured` is True"):
        model.assimilate(x, hr, jnp.zeros((N * W,), bool))


def test_matches_numpy_transcription(model_and_inputs):
    model, x, hr = model_and_inputs
    rng = np.random.default_rng(0)
    measured = rng.uniform(size=N * W) < 0.5
    measured[0] = False  # the first measured second is not the first second
    measured[W] = measured[2 * W] = True  # measured carried starts
    noisy = np.asarray(hr) + rng.normal(0.0, 3.0, N * W)
    out = model.assimilate(x, jnp.asarray(noisy), jnp.asarray(measured), measurement_sd=2.5)
    s = np.asarray(model.backbone(x)[0]).reshape(N, W, -1)
    ref_hr, ref_var = numpy_assimilate(model, s, noisy, measured, 2.5)
    np.testing.assert_allclose(out.hr, ref_hr, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(out.var, ref_var, rtol=1e-10, atol=1e-12)
    # measurements pull the prediction towards them and shrink the variance
    free = model.rollout(x, jnp.asarray(noisy[np.argmax(measured)]))
    err_on = np.mean(np.abs(np.asarray(out.hr) - np.asarray(hr)))
    err_off = np.mean(np.abs(np.asarray(free.hr) - np.asarray(hr)))
    assert err_on < err_off
    assert np.all(np.asarray(out.var) <= np.asarray(free.var) + 1e-12)


def test_tiny_noise_tracks_the_measurements(model_and_inputs):
    model, x, hr = model_and_inputs
    out = model.assimilate(x, hr, jnp.ones((N * W,), bool), measurement_sd=1e-3)
    np.testing.assert_allclose(out.hr, hr, atol=0.01)
    assert np.all(np.asarray(out.var)[1:] < 1e-3)  # the first second is the initial condition


@pytest.mark.slow  # ~30 s on 2 cores
def test_jit_vmap_and_gradient_in_measurement_sd(x64):
    model = HRKalman(3, hidden=6, n_layers=1, window=W, key=jax.random.key(7))
    x = jax.random.normal(jax.random.key(8), (2, 2 * W, 3))
    hr = 140.0 + 5.0 * jax.random.normal(jax.random.key(9), (2, 2 * W), jnp.float64)
    measured = jax.random.uniform(jax.random.key(10), (2, 2 * W)) < 0.5

    def loss(sd, i):
        out = model.assimilate(x[i], hr[i], measured[i], measurement_sd=sd)
        return jnp.mean((out.hr - 140.0) ** 2)

    batched = eqx.filter_jit(
        jax.vmap(lambda xi, hi, mi: model.assimilate(xi, hi, mi, measurement_sd=2.0).hr)
    )(x, hr, measured)
    eager = [model.assimilate(x[i], hr[i], measured[i], measurement_sd=2.0).hr for i in range(2)]
    assert tree_allclose(list(batched), eager, rtol=1e-12, atol=1e-10)
    sd, eps = jnp.asarray(2.0), 1e-6
    grad = jax.grad(loss)(sd, 0)
    fd = (loss(sd + eps, 0) - loss(sd - eps, 0)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert abs(float(grad)) > 0
