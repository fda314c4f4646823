"""The known HR's offset that anchors the HR models' targets, and the baseline it contains."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.eval.protocols import hold_baseline
from wearjax.models import HRODE, HRKalman
from wearjax.models.hr_base import known_offset

W, N = 12, 4


def test_known_offset_matches_a_loop():
    rng = np.random.default_rng(0)
    level = rng.normal(150, 10, 40)
    hr = rng.normal(140, 10, 40)
    known = rng.random(40) < 0.15
    known[:3] = False
    known[5] = True
    tau = 7.0
    want = []
    for t in range(40):
        before = [k for k in range(t + 1) if known[k]]
        k = before[-1] if before else int(np.argmax(known))
        want.append(np.exp(-abs(t - k) / tau) * (hr[k] - level[k]))
    got = known_offset(jnp.asarray(level), jnp.asarray(hr), jnp.asarray(known), jnp.asarray(tau))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _zero(model, where):
    return eqx.tree_at(where, model, replace_fn=jnp.zeros_like)


@pytest.mark.parametrize("kind", ["kalman", "ode"])
def test_flat_heads_hold_the_known_hr_exactly(kind):
    """With the heads that read the features at zero (a flat level, no offset, no demand or
    learned transition) and a fading time far longer than the window, the standard protocol
    is baseline (a), the known HR held."""
    key = jax.random.key(0)
    if kind == "kalman":
        model = HRKalman(5, hidden=8, n_layers=2, window=W, key=key)
        model = _zero(model, lambda m: (m.window_head.weight, m.window_head.bias,
                                        m.step_head.weight, m.transition.out.weight,
                                        m.transition.out.bias))  # fmt: skip
    else:
        model = HRODE(5, 8, 2, window=W, key=key)
        model = _zero(model, lambda m: (m.level.weight, m.demand.out.weight,
                                        m.demand.out.bias))  # fmt: skip
    model = eqx.tree_at(lambda m: m.log_anchor_time, model, jnp.asarray(50.0))
    x = jax.random.normal(jax.random.key(1), (N * W, 5))
    hr = jnp.asarray(np.random.default_rng(2).uniform(100, 180, N * W), jnp.float32)
    run = eqx.filter_jit(lambda m, x, hr0: m(x, hr0))  # one program, not one per operation
    pred = run(model, x, hr.reshape(N, W)[:, 0])
    held = hold_baseline(hr, jnp.ones(N * W, bool), W, "standard")
    np.testing.assert_allclose(pred.hr, held, rtol=1e-6)
    # and a model whose heads do read the features departs from it
    moved = (
        HRKalman(5, 8, 2, window=W, key=key)
        if kind == "kalman"
        else HRODE(5, 8, 2, window=W, key=key)
    )
    moved = eqx.tree_at(lambda m: m.level.weight if kind == "ode" else m.step_head.weight, moved,
                        replace_fn=lambda w: 50 * w)  # fmt: skip
    assert np.abs(np.asarray(run(moved, x, hr.reshape(N, W)[:, 0]).hr - held)).max() > 0.5
