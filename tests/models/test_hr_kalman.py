"""HR Kalman model against a float64 NumPy transcription of the published equations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.filters.learned_gain import LearnedGainState, learned_gain_step
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


def _softplus(x):
    return np.logaddexp(0.0, x)


def _leaky(x):
    return np.where(x >= 0, x, 0.01 * x)


def _np(a):
    return np.asarray(a, np.float64)


def numpy_standard(model: HRKalman, s: np.ndarray, h_init: np.ndarray, carry=False) -> tuple:
    """The model's filter, from backbone states `s [N, W, H]`, as plain float64 loops.

    `carry=True` is the generative protocol: window n > 0 starts from window n - 1's last
    prediction and variance instead of `h_init[n]`."""
    wh, bh = _np(model.window_head.weight), _np(model.window_head.bias)
    sh, sb = _np(model.step_head.weight), _np(model.step_head.bias)
    tr = model.transition
    tc, tcb, ts = _np(tr.context.weight), _np(tr.context.bias), _np(tr.state.weight)
    to, tob = _np(tr.out.weight), _np(tr.out.bias)
    g1, g1b = _np(model.gain.hidden.weight), _np(model.gain.hidden.bias)
    g2, g2b = _np(model.gain.out.weight), _np(model.gain.out.bias)
    hrs, vars_ = [], []
    h_start, v_start = float(h_init[0]), 0.0
    tau = np.exp(float(model.log_anchor_time))
    level = OBS_CENTER + OBS_SCALE * (s @ sh[0] + sb[0])  # a_t [N, W]
    # the known HR's offset from a: each window's first second (standard) or the session's
    offset = lambda n, t: (  # noqa: E731
        np.exp(-(n * s.shape[1] + t) / tau) * (h_init[0] - level[0, 0])
        if carry
        else np.exp(-t / tau) * (h_init[n] - level[n, 0])
    )
    inflation = _softplus(float(model.carry_noise))
    for n in range(s.shape[0]):
        if not carry:
            h_start, v_start = float(h_init[n]), 0.0
        extra = inflation if carry and n > 0 else 0.0
        raw = wh @ s[n, 0] + bh
        mu = h_start + MEAN_SCALE * raw[0]
        sigma = 0.5 + SD_SCALE * _softplus(raw[1])
        lo = np.array([(HR_MIN - mu) / sigma, -MAX_RATE / sigma])
        hi = np.array([(HR_MAX - mu) / sigma, MAX_RATE / sigma])
        z = np.array([(h_start - mu) / sigma, raw[2]])
        z = np.clip(z, lo, hi)
        p = _softplus(raw[3:5] + P0_SHIFT) + 1e-4 + np.array([v_start / sigma**2 + extra, 0.0])
        out_h, out_v = [mu + sigma * z[0]], [sigma**2 * p[0]]
        for t in range(1, s.shape[1]):
            st = sh @ s[n, t] + sb
            y = (OBS_CENTER + OBS_SCALE * st[0] + offset(n, t) - mu) / sigma
            q, r = _softplus(st[1:3] + Q_SHIFT) + 1e-5, _softplus(st[3] + R_SHIFT) + 1e-5
            a = _leaky(tc @ s[n, t] + tcb + ts @ z)
            z_pred = np.array([z[0] + z[1], z[1]]) + to @ a + tob
            p_pred = p + q
            u = np.log(np.array([p_pred[0], p_pred[1], r]))
            logit = u[0] - u[2] + (g2 @ np.tanh(g1 @ u + g1b) + g2b)[0]
            k = 1.0 / (1.0 + np.exp(-logit))
            nu = y - z_pred[0]
            z = z_pred + np.array([k, 0.5 * k]) * nu
            p = p_pred * np.array([1 - k, 1 - 0.5 * k])
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
    x = jax.random.normal(jax.random.key(1), (4 * W, 5))
    hr_init = jnp.asarray([120.0, 150.0, 95.0, 170.0])
    return model, x, hr_init


def test_standard_matches_numpy_transcription(model_and_inputs):
    model, x, hr_init = model_and_inputs
    # one program, not one per operation
    pred, (s, _) = eqx.filter_jit(lambda m, x, h: (m(x, h), m.backbone(x)))(model, x, hr_init)
    ref_hr, ref_var = numpy_standard(model, np.asarray(s).reshape(4, W, -1), np.asarray(hr_init))
    np.testing.assert_allclose(pred.hr, ref_hr, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(pred.var, ref_var, rtol=1e-10, atol=1e-12)
    # the known first sample of each window is returned as given
    np.testing.assert_allclose(pred.hr.reshape(4, W)[:, 0], hr_init, rtol=1e-12)


def test_generative_scan_equals_python_loop_over_windows(model_and_inputs):
    model, x, _ = model_and_inputs
    hr0 = jnp.asarray(131.0)
    jit = eqx.filter_jit  # each call one program, not one per operation (cold: a third the time)
    out = jit(lambda m, x: m.rollout(x, hr0))(model, x)
    s_np = np.asarray(jit(lambda m, x: m.backbone(x)[0])(model, x)).reshape(4, W, -1)
    ref_hr, ref_var = numpy_standard(model, s_np, np.full(4, 131.0), carry=True)
    np.testing.assert_allclose(out.hr, ref_hr, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(out.var, ref_var, rtol=1e-10, atol=1e-12)
    # reference: feed each window the previous window's last prediction and variance
    first = jnp.zeros((4, W), bool).at[0, 0].set(True)
    anchored = jit(lambda m, x: m._anchored(m.encode(x), jnp.where(first, hr0, 0.0), first))
    per_window = anchored(model, x)
    step = jit(lambda m, window, h, v: m._filter_window(window, h, v))
    h_last, v_last, pieces = hr0, jnp.asarray(0.0), []
    for n in range(4):
        window = jax.tree_util.tree_map(lambda a, n=n: a[n], per_window)
        hr, var, _ = step(model, window, h_last, v_last)
        pieces.append(hr)
        h_last, v_last = hr[-1], var[-1]
    np.testing.assert_allclose(out.hr, np.concatenate(pieces), rtol=1e-12, atol=1e-10)
    assert float(out.hr[0]) == 131.0
    std, gen = jit(lambda m, x: m.predict_protocols(x, jnp.full(4, 120.0), hr0))(model, x)
    np.testing.assert_allclose(gen.hr, out.hr, rtol=1e-12)
    standard = jit(lambda m, x: m(x, jnp.full(4, 120.0)))(model, x)
    np.testing.assert_allclose(std.hr, standard.hr, rtol=1e-12)


def test_predictions_stay_in_physiological_range(x64):
    model = HRKalman(3, hidden=8, n_layers=1, window=W, key=jax.random.key(3))
    x = 50.0 * jax.random.normal(jax.random.key(4), (3 * W, 3))  # absurd inputs
    out = eqx.filter_jit(lambda m, x: m.rollout(x, jnp.asarray(300.0)))(model, x)  # one program
    assert np.all(np.asarray(out.hr) >= HR_MIN - 1e-9)
    assert np.all(np.asarray(out.hr) <= HR_MAX + 1e-9)
    assert np.all(np.asarray(out.var) > 0)


def test_jit_equals_eager_and_vmap_equals_loop():
    model = HRKalman(4, hidden=8, n_layers=2, window=W, key=jax.random.key(5))
    xs = jax.random.normal(jax.random.key(6), (3, 2 * W, 4))
    h0 = jnp.asarray([100.0, 140.0, 160.0])
    eager = [model.rollout(xs[i], h0[i]).hr for i in range(3)]
    batched = eqx.filter_jit(jax.vmap(lambda x, h: model.rollout(x, h).hr))(xs, h0)
    assert tree_allclose(list(batched), eager, rtol=1e-5, atol=1e-4)


def test_gradients_match_finite_differences(x64):
    model = HRKalman(3, hidden=6, n_layers=1, window=W, key=jax.random.key(7))
    x = jax.random.normal(jax.random.key(8), (2 * W, 3))
    target = 140.0 + 5.0 * jnp.sin(jnp.arange(2 * W, dtype=jnp.float64) / 5.0)

    @jax.jit  # one compile for every evaluation below, not one per operation per call
    def loss(bias):
        m = eqx.tree_at(lambda m: m.step_head.bias, model, bias)
        return jnp.mean((m.rollout(x, jnp.asarray(130.0)).hr - target) ** 2)

    b = model.step_head.bias
    grad = jax.grad(loss)(b)
    eps = 1e-6
    fd = [(loss(b.at[i].add(eps)) - loss(b.at[i].add(-eps))) / (2 * eps) for i in range(b.size)]
    np.testing.assert_allclose(grad, np.array(fd), rtol=1e-5, atol=1e-7)  # FD round-off ~1e-8


def test_learned_gain_step_skips_update_where_unobserved():
    state = LearnedGainState(jnp.asarray([0.3, -0.1]), jnp.asarray([0.5, 0.2]))
    kwargs = dict(
        transition=lambda z, c: jnp.stack([z[0] + z[1], 0.9 * z[1]]) + c,
        gain=lambda p, r: p[0] / (p[0] + r),
        update_weights=jnp.asarray([1.0, 0.5]),
    )
    ctx, q, r, y = (
        jnp.asarray([0.01, 0.0]),
        jnp.asarray([0.1, 0.05]),
        jnp.asarray(0.4),
        jnp.asarray(1.0),
    )
    off = learned_gain_step(state, ctx, q, r, y, False, **kwargs)
    np.testing.assert_allclose(off.mean, [0.3 - 0.1 + 0.01, -0.09], rtol=1e-6)
    np.testing.assert_allclose(off.var, [0.6, 0.25], rtol=1e-6)
    on = learned_gain_step(state, ctx, q, r, y, True, **kwargs)
    k = 0.6 / 1.0
    nu = 1.0 - 0.21
    np.testing.assert_allclose(on.mean, [0.21 + k * nu, -0.09 + 0.5 * k * nu], rtol=1e-6)
    np.testing.assert_allclose(on.var, [0.6 * (1 - k), 0.25 * (1 - 0.5 * k)], rtol=1e-6)


def test_session_length_must_be_whole_windows():
    model = HRKalman(3, hidden=4, n_layers=1, window=W, key=jax.random.key(0))
    with pytest.raises(ValueError, match="multiple of the 12 s window"):
        model.rollout(jnp.zeros((W + 1, 3)), jnp.asarray(120.0))
