"""The fit loop: schedules against their definitions, no retracing, vmapped CV == sequential."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.data.types import CHANNEL_UNITS, Session, stack_sessions
from wearjax.eval.hr_study import HRStudyConfig, make_task, prepare
from wearjax.models.hr_kalman import HRKalman
from wearjax.train.fit import (
    Schedule,
    TrainConfig,
    cross_validate,
    fit,
    fold_model,
    split_for_fold,
    update_schedule,
)


def reference_schedule(vals, cfg: TrainConfig):
    """ReduceLROnPlateau ('min', 'rel') and patience early stopping, transcribed literally."""
    best, bad, cooldown, lr = float("inf"), 0, 0, 1.0
    best_val, bad_epochs, stopped = float("inf"), 0, False
    out = []
    for v in vals:
        if v < best * (1 - cfg.plateau_threshold):
            best, bad = v, 0
        else:
            bad += 1
        if cooldown > 0:
            cooldown -= 1
            bad = 0
        if bad > cfg.plateau_patience:
            lr = max(lr * cfg.plateau_factor, cfg.min_learning_rate / cfg.learning_rate)
            cooldown, bad = cfg.plateau_cooldown, 0
        if v < best_val:
            best_val, bad_epochs = v, 0
        else:
            bad_epochs += 1
        stopped = stopped or bad_epochs >= cfg.early_stopping_patience
        out.append((lr, stopped))
    return out


@pytest.mark.parametrize("cooldown", [0, 2])
def test_schedule_matches_reduce_on_plateau(cooldown):
    cfg = TrainConfig(
        plateau_patience=2,
        plateau_cooldown=cooldown,
        plateau_factor=0.5,
        min_learning_rate=1e-4,
        early_stopping_patience=6,
    )
    vals = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.0, 3.0, 3.0, 3.0, 3.0, 2.0] + [2.5] * 8
    f, i = jnp.zeros(()), jnp.zeros((), jnp.int32)
    s = Schedule(f + 1, f + jnp.inf, i, i, f + jnp.inf, i, jnp.zeros((), bool), i)
    got = []
    for v in vals:
        s = update_schedule(s, jnp.asarray(v), cfg)
        got.append((float(s.lr_scale), bool(s.stopped)))
    ref = reference_schedule(vals, cfg)
    np.testing.assert_allclose([g[0] for g in got], [r[0] for r in ref], rtol=1e-6)
    assert [g[1] for g in got] == [r[1] for r in ref]


def _tiny_cohort(n_runners=4, per_runner=2, length=144, seed=0):
    rng = np.random.default_rng(seed)
    sessions = []
    for r in range(n_runners):
        for _ in range(per_runner):
            speed = 3.0 + np.repeat(rng.uniform(-0.5, 1.0, length // 24), 24)
            hr = 80 + 20 * speed + rng.normal(0, 1, length)
            x = np.stack(
                [speed, 85 + 3 * speed, 90 + 0 * speed, 34 - speed, 8 + 0 * speed,
                 1000 * speed / 2.9, 50 + np.cumsum(rng.normal(0, 0.2, length))],
                axis=1,
            )  # fmt: skip
            mask = rng.uniform(size=length) > 0.05
            mask[0] = True
            sessions.append(
                Session(
                    x=x, hr=hr, vo2=np.full(length, np.nan), mask=mask,
                    vo2_mask=np.zeros(length, bool), subject=np.array([1.8, 70.0, 30.0, 1.0]),
                    runner=f"r{r}", channels=tuple(CHANNEL_UNITS),
                )
            )  # fmt: skip
    return stack_sessions(sessions, bucket=24)


@pytest.fixture(scope="module")
def tiny_study():
    cohort = _tiny_cohort()
    cfg = HRStudyConfig(
        window=12,
        segment_windows=2,
        batch_size=4,
        runners_out=2,
        train=TrainConfig(epochs=3, steps_per_epoch=3, early_stopping_patience=2),
    )
    data, fold, test, val, names = prepare(cohort, cfg)
    init = lambda k: HRKalman(len(names), 8, 1, window=12, key=k)  # noqa: E731
    return cfg, data, fold, test, init


def test_vmapped_cross_validation_equals_sequential_folds(tiny_study):
    cfg, data, fold, test, init = tiny_study
    sample, loss, validate = make_task(cfg, data.hr.shape[1])
    keys = jax.random.split(jax.random.key(1), test.shape[0])
    cv = cross_validate(init, loss, sample, validate, data, fold, cfg.train, keys)
    assert cv.n_traces == 1  # one compile for every epoch of every fold
    for k in range(test.shape[0]):
        k_init, k_train = split_for_fold(keys[k])
        fold_k = jax.tree_util.tree_map(lambda a, k=k: a[k], fold)
        one = fit(init(k_init), loss, sample, validate, data, fold_k, cfg.train, k_train)
        assert tree_allclose(fold_model(cv.model, k), one.model, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cv.history["val_loss"][:, k], one.history["val_loss"], rtol=1e-4)


def test_training_step_does_not_retrace_and_loss_falls(tiny_study):
    cfg, data, fold, test, init = tiny_study
    sample, loss, validate = make_task(cfg, data.hr.shape[1])
    fold0 = jax.tree_util.tree_map(lambda a: a[0], fold)
    train = cfg.train._replace(epochs=8, steps_per_epoch=10, early_stopping_patience=100)
    res = fit(
        init(jax.random.key(0)), loss, sample, validate, data, fold0, train, jax.random.key(1)
    )
    assert res.n_traces == 1
    assert res.history["train_loss"].shape == (8,)
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]


def test_stopped_fold_is_frozen(tiny_study):
    cfg, data, fold, test, init = tiny_study
    sample, loss, validate = make_task(cfg, data.hr.shape[1])
    # patience 1 with a validation loss that cannot improve after the first epoch
    const = lambda model, data, fold: jnp.asarray(1.0)  # noqa: E731
    train = cfg.train._replace(epochs=4, early_stopping_patience=1)
    keys = jax.random.split(jax.random.key(2), test.shape[0])
    cv = cross_validate(init, loss, sample, const, data, fold, train, keys)
    assert cv.history["stopped"].shape[0] == 2  # stopped after epoch 2: all folds frozen
    assert np.all(cv.history["stopped"][-1])
