"""The ODE models against float64 NumPy RK4 loops, finite differences, and each other's engine."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.models import hr_ode
from wearjax.models.hr_ode import HRODE
from wearjax.models.hr_personalized import (
    BOUNDS,
    PersonalHRODE,
    PersonalParams,
    asymmetric_hr_field,
    hr_field,
)
from wearjax.models.ode import DIFFRAX_CHUNK, solve


def numpy_rk4(f, y0, u):
    """Classical RK4 at 1 s with `u` linear between seconds: states at t = 0..T-1."""
    ys = [np.asarray(y0, np.float64)]
    for i in range(len(u) - 1):
        y, a, b = ys[-1], u[i], u[i + 1]
        m = 0.5 * (a + b)
        k1 = f(i, y, a)
        k2 = f(i + 0.5, y + 0.5 * k1, m)
        k3 = f(i + 0.5, y + 0.5 * k2, m)
        k4 = f(i + 1.0, y + k3, b)
        ys.append(y + (k1 + 2 * k2 + 2 * k3 + k4) / 6)
    return np.stack(ys)


def numpy_personal_field(p, asymmetric=True):
    """The personalised ODE's right-hand side, transcribed from the published equations; with
    `asymmetric`, HR falls (D < HR) at the unshaped rate rho e^A / 60."""

    def f(t, y, intensity):
        hr, demand = y
        f_min = (max(hr - p["hr_min"], 0.5) / 60) ** p["alpha"]
        f_max = (max(p["hr_max"] - hr, 0.5) / 60) ** p["beta"]
        shape = p["recovery"] if asymmetric and demand < hr else f_min * f_max
        rate = min(np.exp(p["log_rate_hr"]) * shape / 60, 2.0)
        restore = max(p["hr_min"] - hr, 0.0) - max(hr - p["hr_max"], 0.0)
        d_demand = min(np.exp(p["log_rate_demand"]) / 60, 2.0) * (intensity - demand)
        return np.array([rate * (demand - hr) + restore, d_demand])

    return f


PARAMS = dict(
    log_rate_hr=1.2,
    log_rate_demand=0.4,
    alpha=0.7,
    beta=1.6,
    hr_min=55.0,
    hr_max=185.0,
    fatigue=0.1,
    recovery=0.6,
)


def _as_params(values: dict) -> PersonalParams:
    return PersonalParams(**{k: jnp.asarray(v, jnp.float64) for k, v in values.items()})


def _f64(model):
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model
    )


@pytest.mark.parametrize("asymmetric", [False, True])
@pytest.mark.parametrize("engine", ["diffrax", "scan"])
def test_personal_field_matches_numpy_rk4(x64, engine, asymmetric):
    rng = np.random.default_rng(0)
    # intensity steps between 90 and 175 bpm: HR rises and falls, crossing D both ways
    intensity = np.repeat(rng.uniform(90, 175, 8), 25)
    y0 = np.array([100.0, 100.0])
    want = numpy_rk4(numpy_personal_field(PARAMS, asymmetric), y0, intensity)
    field = asymmetric_hr_field if asymmetric else hr_field
    got = solve(field, jnp.asarray(y0), jnp.asarray(intensity), _as_params(PARAMS), engine=engine)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-9)


def test_the_two_forms_differ_only_while_hr_falls(x64):
    p = _as_params(PARAMS)
    rising, falling = jnp.asarray([120.0, 150.0]), jnp.asarray([150.0, 120.0])
    for y in (rising, falling):
        published = np.asarray(hr_field(0.0, y, 140.0, p))
        asymmetric = np.asarray(asymmetric_hr_field(0.0, y, 140.0, p))
        np.testing.assert_array_equal(published[1], asymmetric[1])  # the demand's equation
        if y is rising:
            np.testing.assert_array_equal(published, asymmetric)
    # a fall at the unshaped rate rho e^A / 60: a mono-exponential towards D
    want = PARAMS["recovery"] * np.exp(PARAMS["log_rate_hr"]) / 60.0 * (120.0 - 150.0)
    assert float(asymmetric_hr_field(0.0, falling, 140.0, p)[0]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("engine", ["diffrax", "scan"])
def test_hr_ode_latent_matches_numpy_rk4(x64, engine):
    d = np.random.default_rng(1).normal(size=61)
    rate = np.exp(np.random.default_rng(2).uniform(-2, 2, size=61))
    want = numpy_rk4(
        lambda t, g, u: u[1] * (u[0] - g) / hr_ode.TIME_UNIT, 0.7, np.stack([d, rate], -1)
    )
    got = solve(hr_ode._relax, jnp.asarray(0.7), (jnp.asarray(d), jnp.asarray(rate)), engine=engine)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ["diffrax", "scan"])
def test_time_dependent_field_over_several_diffrax_chunks(x64, engine):
    """Diffrax solves `DIFFRAX_CHUNK` steps at a time: across chunk boundaries (two whole chunks
    and a remainder here) the field must still see absolute time and the right inputs."""
    n = 2 * DIFFRAX_CHUNK + 18
    u = np.random.default_rng(2).normal(size=n)
    want = numpy_rk4(lambda t, y, a: a * np.cos(t / 7.0) - y / 30.0, 0.4, u)
    got = solve(
        lambda t, y, a, _: a * jnp.cos(t / 7.0) - y / 30.0, jnp.asarray(0.4), u, engine=engine
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


# the asymmetric field's case in the slow step only (~8 s cold on 2 cores), the plain one fast
@pytest.mark.parametrize(
    "field", [hr_field, pytest.param(asymmetric_hr_field, marks=pytest.mark.slow)]
)
def test_solve_gradients_match_finite_differences(x64, field):
    # HR rises to 160, then falls towards 120: both branches of the asymmetric form (the field
    # is continuous where D crosses HR, so the loss is differentiable there too)
    intensity = jnp.asarray(np.repeat([100.0, 160.0, 120.0], 40))
    y0 = jnp.asarray([95.0, 101.0])

    def loss(values, y0):
        ys = solve(field, y0, intensity, _as_params(values))
        return jnp.mean(jnp.square(ys[:, 0] - 130.0)) / 100.0

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(PARAMS, y0)
    loss = jax.jit(loss)  # one compile for all the finite differences
    eps = 1e-5
    names = ["log_rate_hr", "log_rate_demand", "alpha", "beta", "hr_max"]
    if field is asymmetric_hr_field:
        names.append("recovery")
        assert abs(grads[0]["recovery"]) > 1e-6  # the fall is in the loss
    for name in names:
        up = loss({**PARAMS, name: PARAMS[name] + eps}, y0)
        down = loss({**PARAMS, name: PARAMS[name] - eps}, y0)
        np.testing.assert_allclose(grads[0][name], (up - down) / (2 * eps), rtol=1e-5)
    for i in range(2):
        e = jnp.zeros(2, jnp.float64).at[i].set(eps)
        fd = (loss(PARAMS, y0 + e) - loss(PARAMS, y0 - e)) / (2 * eps)
        np.testing.assert_allclose(grads[1][i], fd, rtol=1e-5)


@pytest.mark.slow  # ~20 s on 2 cores
def test_backsolve_adjoint_is_the_continuous_adjoint(x64):
    """Backsolve integrates the adjoint ODE (as in the Lab-to-Wrist paper): its gradient is
    that of the discrete solve up to the RK4 error of the backward solve."""
    d = jnp.asarray(np.sin(np.arange(120) / 9.0))

    def loss(scale, adjoint):
        ys = solve(
            lambda t, g, dt, a: a * dt - g / 60.0, jnp.asarray(0.3), d, scale, adjoint=adjoint
        )
        return jnp.sum(ys**2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    exact = grad(jnp.asarray(0.05), "checkpoint")
    backsolve = grad(jnp.asarray(0.05), "backsolve")
    np.testing.assert_allclose(backsolve, exact, rtol=1e-4)


def _session(n_windows=3, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(60 * n_windows, n_features)))
    hr_init = jnp.asarray(rng.uniform(110, 160, n_windows))
    return x, hr_init


def test_hr_ode_windows_match_a_numpy_transcription(x64):
    """Both protocols: each window solved from its start by the NumPy RK4 with the model's own
    demand and window heads; the generative windows start where the previous one ended."""
    model = _f64(HRODE(5, 16, 2, key=jax.random.key(0)))
    model = eqx.tree_at(lambda m: m.demand.out.weight, model, model.demand.out.weight * 100)
    model = eqx.tree_at(lambda m: m.level.weight, model, model.level.weight * 100)
    model = eqx.tree_at(lambda m: m.rate.weight, model, jnp.ones_like(model.rate.weight))
    x, hr_init = _session()
    std, gen = eqx.filter_jit(model.predict_protocols)(x, hr_init, hr_init[0])
    # one program, not one per operation
    (s_start, d, _, rate), (s, _) = eqx.filter_jit(lambda m, x: (m.encode(x), m.backbone(x)))(
        model, x
    )
    s_start, d, rate, s = np.asarray(s_start), np.asarray(d), np.asarray(rate), np.asarray(s)
    level = 140 + 30 * (s @ np.asarray(model.level.weight)[0] + float(model.level.bias[0]))
    level = np.append(level, level[-1])  # the last window's one second beyond repeats its last
    tau = np.exp(float(model.log_anchor_time))

    def window(k, h0, known_hr, known_at):
        """Window k from h0; the target A_t + b_t, b_t fading from the known HR's offset."""
        t = 60 * k + np.arange(61)
        target = level[t] + np.exp(-(t - known_at) / tau) * (known_hr - level[known_at])
        raw = np.asarray(model.window_head(jnp.asarray(s_start[k])))
        sigma = 0.5 + 5 * np.log1p(np.exp(raw[0]))
        mu = target[0]
        demand = d[k] + (target - mu) / sigma
        u = np.stack([demand, rate[k]], -1)
        g = numpy_rk4(lambda t, g, u: u[1] * (u[0] - g) / 60, (h0 - mu) / sigma, u)
        return mu + sigma * g

    # standard: each window's known start; generative: the session's first second
    want_std = np.concatenate(
        [window(k, float(hr_init[k]), float(hr_init[k]), 60 * k)[:-1] for k in range(3)]
    )
    h, want_gen = float(hr_init[0]), []
    for k in range(3):
        hr = window(k, h, float(hr_init[0]), 0)
        want_gen.append(hr[:-1])
        h = hr[-1]
    np.testing.assert_allclose(np.asarray(std.hr), want_std, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(gen.hr), np.concatenate(want_gen), rtol=1e-10)
    assert np.ptp(want_std) > 1.0  # the demand moved HR: the comparison is not trivial


def _personal(asymmetric=True):
    return _f64(PersonalHRODE(3, 4, 8, asymmetric=asymmetric, key=jax.random.key(2)))


def _activity(n=180, seed=3):
    rng = np.random.default_rng(seed)
    speed = np.repeat(rng.uniform(2.0, 4.5, n // 30), 30)
    grade = np.repeat(rng.uniform(-0.05, 0.05, n // 30), 30)
    return jnp.asarray(np.stack([speed, grade], -1))


# the plain field's case in the slow step (~9 s cold): the asymmetric one (the default) stays
@pytest.mark.parametrize("asymmetric", [pytest.param(False, marks=pytest.mark.slow), True])
def test_personal_protocols_match_a_numpy_transcription(x64, asymmetric):
    model = _personal(asymmetric)
    e = model.embedding[1]
    u = _activity()
    hr_init = jnp.asarray([120.0, 150.0, 135.0])
    p = model.params(e)
    field = numpy_personal_field({k: float(v) for k, v in p._asdict().items()}, asymmetric)
    intensity = np.asarray(model.intensity(e, u, p))
    ext = np.append(intensity, intensity[-1])

    def run(reset):
        y, out = np.array([hr_init[0], hr_init[0]], np.float64), []
        for k in range(3):
            if reset:
                y = np.array([float(hr_init[k]), y[1]])
            ys = numpy_rk4(field, y, ext[60 * k : 60 * k + 61])
            out.append(ys[:-1, 0])
            y = ys[-1]
        return np.concatenate(out)

    runner = model.for_runner(e)
    standard = eqx.filter_jit(lambda r, u, h: r(u, h).hr)  # one program each, not op by op
    rollout = eqx.filter_jit(lambda r, u, h: r.rollout(u, h).hr)
    np.testing.assert_allclose(np.asarray(standard(runner, u, hr_init)), run(True), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(rollout(runner, u, hr_init[0])), run(False), rtol=1e-10)


def test_personal_parameters_stay_in_their_bounds(x64):
    model = _personal()
    # a decoder scaled up saturates: parameters must approach, not pass, their bounds
    model = eqx.tree_at(lambda m: m.decoder.weight, model, 1e3 * model.decoder.weight)
    e = jax.random.normal(jax.random.key(4), (256, 4), jnp.float64)
    p = model.params(e)
    for name, (lo, hi) in BOUNDS.items():
        v = np.asarray(getattr(p, name))
        assert np.all((v >= lo) & (v <= hi)), name
        assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo), name
    i = np.asarray(model.intensity(e[0], _activity(), model.params(e[0])))
    assert np.all((i >= 30.0) & (i <= 250.0 * 1.3))


def test_published_form_has_no_recovery_factor(x64):
    p = _personal(asymmetric=False).params(jnp.ones(4, jnp.float64))
    np.testing.assert_array_equal(np.asarray(p.recovery), 1.0)


@pytest.mark.slow  # four compiled float64 gradients each: ~40 s (checkpoint), ~75 s (backsolve)
@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve"])
def test_engines_agree_on_trajectories_and_gradients(x64, adjoint):
    """Diffrax and the scan path: same trajectories and parameter gradients to 1e-6, for both
    models and both protocols."""
    x, hr_init = _session()
    u = _activity()
    hr = jnp.asarray(np.linspace(120, 150, 180))
    rtol = 1e-6 if adjoint == "checkpoint" else 1e-3  # backsolve: the continuous adjoint

    def ode_loss(model):
        std, gen = model.predict_protocols(x, hr_init, hr_init[0])
        return jnp.mean(jnp.square(std.hr - hr) + jnp.square(gen.hr - hr))

    def personal_loss(model):
        e = model.embedding[0]
        std, gen = model.for_runner(e).predict_protocols(u, hr_init, hr_init[0])
        return jnp.mean(jnp.square(std.hr - hr) + jnp.square(gen.hr - hr))

    for model, loss in (
        (_f64(HRODE(5, 16, 2, key=jax.random.key(0))), ode_loss),
        (_personal(), personal_loss),
    ):
        scan = model.with_engine("scan")
        dfx = model.with_engine("diffrax", adjoint)
        value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
        v_scan, g_scan = value_and_grad(scan)
        v_dfx, g_dfx = value_and_grad(dfx)
        assert np.isclose(v_scan, v_dfx, rtol=1e-12)
        # (the static engine fields differ: compare the gradient arrays)
        assert tree_allclose(jax.tree.leaves(g_scan), jax.tree.leaves(g_dfx), rtol=rtol, atol=1e-9)


def test_model_gradient_matches_finite_differences(x64):
    model = _f64(HRODE(5, 16, 2, key=jax.random.key(0)))
    x, hr_init = _session()
    hr = jnp.asarray(np.linspace(120, 150, 180))

    def loss(w):
        m = eqx.tree_at(lambda m: m.demand.out.weight, model, w)
        return jnp.mean(jnp.square(m.rollout(x, hr_init[0]).hr - hr))

    w = model.demand.out.weight
    g = jax.jit(jax.grad(loss))(w)
    loss = jax.jit(loss)
    direction = jax.random.normal(jax.random.key(5), w.shape, jnp.float64)
    eps = 1e-6
    fd = (loss(w + eps * direction) - loss(w - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(g * direction), fd, rtol=1e-6)


def test_another_engine_keeps_the_models_checkpoints_and_adjoint_unless_given(x64):
    """`with_engine` kept the adjoint but reset `checkpoints` to one per step until 2026-12-07
    (the same values, more memory); both are now kept unless given."""
    for model in (HRODE(5, 8, 1, key=jax.random.key(0)), _personal()):
        model = model.with_engine("scan", checkpoints=4)
        moved = model.with_engine("diffrax")
        assert moved.engine == "diffrax" and moved.checkpoints == 4
        assert moved.adjoint == model.adjoint
        assert moved.with_engine("scan", checkpoints=2).checkpoints == 2
