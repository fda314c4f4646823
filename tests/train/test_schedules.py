"""The VO2 recipe's per-epoch schedules against their formulas, and the fit loop's hooks."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax.train.loop import Recipe, Task, clip_by_global_norm, fit
from wearjax.train.schedules import curriculum_weights, decaying_clip_norm, sgdr


def reference_sgdr(epochs, max_lr, min_lr, t0, t_mult):
    """CosineAnnealingWarmRestarts stepped once per epoch, transcribed as a loop."""
    out, t_cur, t_i = [], 0, t0
    for _ in range(epochs):
        out.append(min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * t_cur / t_i)) / 2)
        t_cur += 1
        if t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * t_mult
    return np.array(out)


def test_sgdr_matches_loop():
    for t0, t_mult in ((10, 2), (3, 3), (5, 1)):
        e = jnp.arange(200, dtype=jnp.int32)
        got = jax.vmap(sgdr(4e-3, 1e-6, t0, t_mult, 200))(e)
        ref = reference_sgdr(200, 4e-3, 1e-6, t0, t_mult)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-9)


def test_clip_and_curriculum_match_formulas():
    for e in (0, 1, 7, 10, 14, 20, 35, 200):
        np.testing.assert_allclose(decaying_clip_norm(e), 1 + 4 * math.exp(-e / 10), rtol=1e-6)
        w = curriculum_weights(jnp.asarray(e, jnp.int32))
        base = max(0.3, 1 - e / 20)
        np.testing.assert_allclose(w.base, base, rtol=1e-6)
        np.testing.assert_allclose(w.dynamics, 1 - base, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(w.aux, min(0.3, 0.1 + 0.01 * e), rtol=1e-6)


def test_clip_by_global_norm_traced_norm():
    tree = {"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}
    out = jax.jit(clip_by_global_norm)(tree, jnp.asarray(2.5))
    np.testing.assert_allclose(optax.tree.norm(out), 2.5, rtol=1e-6)
    same = clip_by_global_norm(tree, jnp.asarray(10.0))
    np.testing.assert_allclose(same["a"], 3.0)


def test_recipe_passes_epoch_and_schedules_the_rate():
    """The loss sees the epoch index; a zero step size leaves the parameters alone."""
    model = eqx.nn.Linear(2, 1, key=jax.random.key(0))

    def loss(m, batch, key, epoch):
        return epoch.astype(jnp.float32) + 0.0 * jnp.sum(m.weight), ()

    recipe = Recipe(
        optimizer=optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(1e-5)),
        learning_rate=lambda e: jnp.zeros(()),
        clip_norm=decaying_clip_norm,
        early_stopping_patience=100,
        epochs=4,
        steps_per_epoch=2,
    )
    task = Task(lambda d, f, k: None, loss, lambda m, d, f: jnp.zeros(()))
    res = fit(model, task, None, None, recipe, jax.random.key(1))
    np.testing.assert_allclose(res.history["train_loss"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(res.model.weight, model.weight)
    assert res.n_traces == 1
