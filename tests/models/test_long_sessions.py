"""Two-hour sessions at the published sizes: gradients through the 7200 s generative rollout of
every model stay finite, a 10 min dropout yields no NaN, and float32 agrees with float64 within
the bounds the README states (measured here, printed with `-s`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models import HRODE, HRKalman, PersonalHRODE, VO2Kalman

T = 7200  # two hours at 1 Hz
GAP = slice(3000, 3600)  # a 10 min dropout

pytestmark = pytest.mark.slow


def _inputs(n_features: int, dtype=jnp.float32):
    """Smooth standardised features: a random walk low-passed over ~1 min (NumPy, float64)."""
    walk = np.cumsum(np.random.default_rng(7).normal(size=(T, n_features)), axis=0)
    smooth = np.stack([np.convolve(c, np.ones(60) / 60, mode="same") for c in walk.T], axis=1)
    return jnp.asarray((smooth - smooth.mean(0)) / smooth.std(0), dtype)


def _activity(dtype=jnp.float32):
    """The personalised ODE's inputs: speed 2-4 m/s and grade within +-5%."""
    z = np.asarray(_inputs(2))
    return jnp.asarray(np.stack([3.0 + 0.5 * z[:, 0], 0.02 * z[:, 1]], axis=1), dtype)


def _hr_target(dtype=jnp.float32):
    return jnp.asarray(140.0 + 20.0 * np.sin(np.arange(T) / 600.0), dtype)


NAMES = ["kalman (128, 2)", "ode (64, 3), diffrax", "ode (64, 3), scan", "personal ode", "vo2"]


def _models():
    key = jax.random.key(0)
    personal = PersonalHRODE(3, key=key)
    return {
        "kalman (128, 2)": (HRKalman(5, 128, 2, key=key), _inputs(5)),
        "ode (64, 3), diffrax": (HRODE(5, 64, 3, key=key), _inputs(5)),
        "ode (64, 3), scan": (HRODE(5, 64, 3, engine="scan", key=key), _inputs(5)),
        "personal ode": (personal.for_runner(personal.embedding[1]), _activity()),
        "vo2": (VO2Kalman(5, key=key), _inputs(5)),
    }


def _rollout(model, x):
    if isinstance(model, VO2Kalman):
        return model.rollout(x, jnp.asarray(1500.0, x.dtype)).vo2
    return model.rollout(x, jnp.asarray(120.0, x.dtype)).hr


def _finite_leaves(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_through_a_two_hour_rollout_is_finite(name):
    model, x = _models()[name]
    target = _hr_target() * (10.0 if isinstance(model, VO2Kalman) else 1.0)

    @eqx.filter_jit
    def loss_and_grad(m):
        return eqx.filter_value_and_grad(lambda m: jnp.mean((_rollout(m, x) - target) ** 2))(m)

    loss, grads = loss_and_grad(model)
    assert np.isfinite(float(loss))
    assert _finite_leaves(grads), f"{name}: a gradient leaf is not finite"


@pytest.mark.parametrize("name", ["kalman (128, 2)", "ode (64, 3), scan", "personal ode"])
def test_a_ten_minute_dropout_gives_no_nan_and_the_kalman_band_widens(name):
    """The stream with HR measured every second except a 10 min gap (NaN there): every output
    finite, gradients too; the Kalman model's variance grows through the gap and falls after."""
    model, x = _models()[name]
    hr = _hr_target().at[GAP].set(jnp.nan)

    @eqx.filter_jit
    def run(m):
        return m.run_stream(x, hr[0], hr)

    out = run(model)
    assert bool(jnp.all(jnp.isfinite(out.hr))) and bool(jnp.all(jnp.isfinite(out.var)))
    grads = eqx.filter_grad(lambda m: jnp.mean(run(m).hr))(model)
    assert _finite_leaves(grads)
    if model.has_variance:
        var = np.asarray(out.var)
        assert var[GAP.stop - 1] > 2 * var[GAP.start - 1]  # widens through the gap
        assert var[GAP.stop + 30] < 0.5 * var[GAP.stop - 1]  # and shrinks when HR returns


# float32 vs float64 over 7200 s, max |difference| (bpm; mL/min for VO2). Measured on untrained
# models of these sizes: 3.9e-5 (Kalman), 1.7e-5 (ODE, both engines), 9.4e-5 (personal),
# 2.6e-4 (VO2); the bounds leave about 10x headroom and are the ones the README quotes.
F32_BOUNDS = {
    "kalman (128, 2)": 1e-3,
    "ode (64, 3), diffrax": 1e-3,
    "ode (64, 3), scan": 1e-3,
    "personal ode": 1e-3,
    "vo2": 5e-3,
}


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64_over_two_hours(x64, name):
    model, x = _models()[name]

    def cast(tree, dtype):
        return jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree
        )

    model, x = cast(model, jnp.float32), x.astype(jnp.float32)
    f64 = cast(model, jnp.float64)
    got = np.asarray(eqx.filter_jit(_rollout)(model, x), np.float64)
    want = np.asarray(eqx.filter_jit(_rollout)(f64, x.astype(jnp.float64)))
    gap = float(np.max(np.abs(got - want)))
    print(f"{name}: float32 vs float64 max |diff| over {T} s = {gap:.2e}")
    assert gap < F32_BOUNDS[name]
