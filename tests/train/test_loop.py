"""The training loop: reduce-on-plateau and early stopping against torch's definitions, a toy
least-squares task with a known answer, `trainable`, no retracing, vmapped folds == sequential."""

from concurrent.futures import ThreadPoolExecutor

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.conftest import tree_allclose
from wearjax.cv import compile_folds, compile_predict, fit_folds, fold_model, predict_held_out
from wearjax.data.types import CHANNEL_UNITS, Session, stack_sessions
from wearjax.errors import TrainingInterrupted, WearjaxDataError, WearjaxFileError
from wearjax.models import HRKalman
from wearjax.tasks.hr import HRStudyConfig, make_task, prepare
from wearjax.tasks.hr import predict as hr_predict
from wearjax.train.loop import Recipe, Task, TrainConfig, fit, fit_steps, plateau, split_for_fold


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


def scripted_task(vals):
    """A task whose parameter `t` counts epochs (loss -t, identity direction, step 1, one step
    per epoch) and whose validation loss is `vals[t]`: the loop sees a scripted sequence."""
    vals = jnp.asarray(vals, jnp.float32)

    def loss(model, batch, key, epoch):
        return -model["t"], ()

    def validate(model, data, fold):
        return vals[jnp.round(model["t"]).astype(jnp.int32) - 1]

    return Task(lambda data, fold, key: None, loss, validate)


@pytest.mark.parametrize("cooldown", [0, 2])
def test_plateau_and_early_stopping_match_torch(cooldown):
    cfg = TrainConfig(
        plateau_patience=2,
        plateau_cooldown=cooldown,
        plateau_factor=0.5,
        min_learning_rate=1e-4,
        early_stopping_patience=6,
    )
    vals = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.0, 3.0, 3.0, 3.0, 3.0, 2.0] + [2.5] * 8
    ref = reference_schedule(vals, cfg)
    # the plateau transformation alone, fed one validation loss per epoch
    transform = plateau(0.5, 2, cooldown=cooldown, min_scale=1e-4 / cfg.learning_rate)
    scales = []
    with jax.numpy_dtype_promotion("standard"):  # optax's int counters
        state = transform.init(jnp.zeros(()))
        for v in vals:
            _, state = transform.update(jnp.zeros(()), state, value=jnp.asarray(v))
            scales.append(float(state.scale))
    np.testing.assert_allclose(scales, [r[0] for r in ref], rtol=1e-6)
    # early stopping in the loop: a counter parameter replays the sequence; no plateau, so
    # the counter steps by exactly 1 per epoch
    recipe = Recipe(optax.identity(), 1.0, early_stopping_patience=6, epochs=len(vals),
                    steps_per_epoch=1)  # fmt: skip
    res = fit({"t": jnp.zeros(())}, scripted_task(vals), None, None, recipe, jax.random.key(0))
    stopped = [r[1] for r in ref]
    n_run = stopped.index(True) + 1 if True in stopped else len(vals)
    assert res.history["stopped"].tolist() == stopped[:n_run]
    np.testing.assert_allclose(res.history["val_loss"], vals[:n_run])
    assert float(res.model["t"]) == 1 + int(np.argmin(vals[:n_run]))  # the best epoch's params


def test_training_that_never_gives_a_finite_validation_loss_is_refused():
    """NaN from the first epoch: the kept model would be the untrained one, returned as if
    trained; a NaN later on keeps the last finite epoch's model."""

    recipe = Recipe(optax.identity(), 1.0, early_stopping_patience=3, epochs=6, steps_per_epoch=1)
    with pytest.raises(WearjaxDataError, match=r"no finite validation loss in fold\(s\) \[0\]"):
        fit({"t": jnp.zeros(())}, scripted_task([np.nan] * 6), None, None, recipe,
            jax.random.key(0))  # fmt: skip
    res = fit({"t": jnp.zeros(())}, scripted_task([3.0, 2.0] + [np.nan] * 4), None, None, recipe,
              jax.random.key(0))  # fmt: skip
    assert float(res.model["t"]) == 2  # the second epoch's parameters


def test_early_stopping_patience_below_one_is_refused():
    recipe = Recipe(optax.identity(), 1.0, early_stopping_patience=0, epochs=3, steps_per_epoch=1)
    with pytest.raises(ValueError, match="early_stopping_patience must be at least 1, got 0"):
        fit({"t": jnp.zeros(())}, scripted_task([3.0, 2.0, 1.0]), None, None, recipe,
            jax.random.key(0))  # fmt: skip


def test_a_data_axis_that_splits_no_batch_leaf_is_refused():
    """`--mesh 1x2` with batches of 3: every data device would run the whole batch."""
    from wearjax.errors import WearjaxDataError
    from wearjax.sharding import split_over_data

    one = jax.devices()[0]  # a mesh of two entries, only checked, never run on
    mesh = jax.sharding.Mesh(np.array([one, one]).reshape(1, 2), ("fold", "data"))
    with pytest.raises(WearjaxDataError, match=r"batch of \[3\] cannot be split over the 2"):
        split_over_data(mesh, (jnp.zeros((3, 5)), jnp.zeros(3)))


class Linear(eqx.Module):
    w: jax.Array
    b: jax.Array


def least_squares(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.7 + rng.normal(0, 0.1, n)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def mse_task():
    def loss(m, batch, key, epoch):
        x, y = batch
        r = x @ m.w + m.b - y
        return jnp.mean(r**2), {"max_abs": jnp.max(jnp.abs(r))}

    return Task(lambda data, fold, key: data, loss, lambda m, data, fold: loss(m, data, 0, 0)[0])


def test_least_squares_reaches_the_normal_equations():
    x, y = least_squares()
    design = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)
    coef = np.linalg.lstsq(design, np.asarray(y, np.float64), rcond=None)[0]
    start = Linear(jnp.zeros(3), jnp.zeros(()))
    recipe = TrainConfig(learning_rate=0.05, weight_decay=0.0, clip_norm=100.0, epochs=40,
                         steps_per_epoch=25).recipe()  # fmt: skip
    res = fit(start, mse_task(), (x, y), None, recipe, jax.random.key(0))
    np.testing.assert_allclose(res.model.w, coef[:3], atol=2e-3)
    np.testing.assert_allclose(res.model.b, coef[3], atol=2e-3)
    assert res.n_traces == 1
    assert res.history["aux_max_abs"].shape == res.history["train_loss"].shape


def test_trainable_fits_only_what_it_selects():
    """With the weights frozen at w0, the best bias is the mean residual of y - x w0."""
    x, y = least_squares()
    w0 = jnp.asarray([1.0, -1.0, 0.0])
    start = Linear(w0, jnp.zeros(()))
    only_b = Linear(False, True)
    recipe = Recipe(optax.scale_by_adam(), 0.05, epochs=1, steps_per_epoch=600)
    expected = float(np.mean(np.asarray(y) - np.asarray(x) @ np.asarray(w0)))
    res = fit(start, mse_task(), (x, y), None, recipe, jax.random.key(0), trainable=only_b)
    np.testing.assert_array_equal(res.model.w, w0)
    np.testing.assert_allclose(res.model.b, expected, atol=1e-3)
    # the same loop inside another traced function gives the same model
    inner = jax.jit(
        lambda s: fit_steps(
            s, mse_task(), (x, y), None, recipe, jax.random.key(0), trainable=only_b
        )  # fmt: skip
    )(start)
    assert tree_allclose(inner, res.model, rtol=1e-6)


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
    data, fold, split, names = prepare(cohort, cfg)
    init = lambda k: HRKalman(len(names), 8, 1, window=12, key=k)  # noqa: E731
    return cfg, data, fold, split, init


@pytest.mark.slow  # ~60 s on 2 cores: keeps the fast suite under 10 minutes
def test_vmapped_cross_validation_equals_sequential_folds(tiny_study):
    cfg, data, fold, split, init = tiny_study
    task = make_task(cfg, data.hr.shape[1])
    keys = jax.random.split(jax.random.key(1), split.n_folds)
    cv = fit_folds(init, task, data, fold, cfg.train.recipe(), keys)
    assert cv.n_traces == 1  # one compile for every epoch of every fold
    for k in range(split.n_folds):
        k_init, k_train = split_for_fold(keys[k])
        fold_k = jax.tree_util.tree_map(lambda a, k=k: a[k], fold)
        one = fit(init(k_init), task, data, fold_k, cfg.train.recipe(), k_train)
        assert tree_allclose(fold_model(cv.model, k), one.model, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cv.history["val_loss"][:, k], one.history["val_loss"], rtol=1e-4)


@pytest.mark.slow  # ~30 s on 2 cores: keeps the fast suite under 10 minutes
def test_folds_built_in_a_worker_thread_train_bit_for_bit_without_compiling_again(tiny_study):
    """`tasks.hr_study` builds the next model's programs in a thread while one trains: the
    first epoch must reuse that compile (one trace) and give the same bits as building in
    turn, and `compile_predict` must leave `predict_held_out` nothing to trace."""
    cfg, data, fold, split, init = tiny_study
    task = make_task(cfg, data.hr.shape[1])
    recipe = cfg.train._replace(epochs=2, steps_per_epoch=2).recipe()
    keys = jax.random.split(jax.random.key(3), split.n_folds)
    traces = []

    def predict(model, fold, data, i):
        traces.append(1)  # runs only while tracing
        return hr_predict(model, fold, data, i)

    def build():
        program = compile_folds(init, task, data, fold, recipe, keys)
        model = eqx.combine(program.state.best_params, program.static)
        compile_predict(predict, model, fold, data, split, batch=2)
        return program

    with ThreadPoolExecutor(1) as worker:
        program = worker.submit(build).result()
    ahead = fit_folds(init, task, data, fold, recipe, keys, program=program)
    assert ahead.n_traces == 1 and len(traces) == 1
    in_turn = fit_folds(init, task, data, fold, recipe, keys)
    assert tree_allclose(ahead.model, in_turn.model, rtol=0, atol=0)
    np.testing.assert_array_equal(ahead.history["val_loss"], in_turn.history["val_loss"])
    predict_held_out(predict, ahead.model, fold, data, split, batch=2)
    assert len(traces) == 1  # the trained model has the initial one's shapes and placement


@pytest.mark.slow  # ~30 s cold on 2 cores: keeps the fast suite under 10 minutes
def test_training_step_does_not_retrace_and_loss_falls(tiny_study):
    cfg, data, fold, split, init = tiny_study
    task = make_task(cfg, data.hr.shape[1])
    fold0 = jax.tree_util.tree_map(lambda a: a[0], fold)
    train = cfg.train._replace(epochs=8, steps_per_epoch=10, early_stopping_patience=100)
    res = fit(init(jax.random.key(0)), task, data, fold0, train.recipe(), jax.random.key(1))
    assert res.n_traces == 1
    assert res.history["train_loss"].shape == (8,)
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]


@pytest.mark.slow  # ~30 s on 2 cores: keeps the fast suite under 10 minutes
def test_stopped_fold_is_frozen(tiny_study):
    cfg, data, fold, split, init = tiny_study
    task = make_task(cfg, data.hr.shape[1])
    # patience 1 with a validation loss that cannot improve after the first epoch
    const = task._replace(validate=lambda model, data, fold: jnp.asarray(1.0))
    train = cfg.train._replace(epochs=4, early_stopping_patience=1)
    keys = jax.random.split(jax.random.key(2), split.n_folds)
    cv = fit_folds(init, const, data, fold, train.recipe(), keys)
    assert cv.history["stopped"].shape[0] == 2  # stopped after epoch 2: all folds frozen
    assert np.all(cv.history["stopped"][-1])


def test_a_fold_that_stops_early_is_frozen_while_another_trains_on():
    """Two folds in one program: fold 0 validates against the opposite slope, so its
    validation loss rises from the first epoch and it stops (patience 1); fold 1 validates on
    its training data and trains on. Fold 0's model is the same with 4 epochs or 8, and its
    history holds its best validation loss from the stop on, so the history's minimum and
    argmin are those of the model kept."""
    from wearjax.cv import fit_folds

    x, y = least_squares()
    sign = jnp.asarray([-1.0, 1.0])  # per fold: the validation target's slope sign

    def validate(m, data, fold_sign):
        x, y = data
        return jnp.mean((x @ m.w + m.b - fold_sign * y) ** 2)

    task = mse_task()._replace(validate=validate)
    keys = jax.random.split(jax.random.key(3), 2)

    def init(key):
        return Linear(jnp.zeros(3), jnp.zeros(()))

    runs = {}
    for epochs in (4, 8):
        recipe = TrainConfig(learning_rate=0.05, clip_norm=100.0, epochs=epochs,
                             steps_per_epoch=5, early_stopping_patience=1).recipe()  # fmt: skip
        runs[epochs] = fit_folds(init, task, (x, y), sign, recipe, keys)
    history = runs[8].history
    stopped = np.asarray(history["stopped"])
    assert stopped[:, 0].any() and not stopped[:, 1].any()  # fold 0 stopped, fold 1 did not
    for a, b in zip(jax.tree.leaves(runs[4].model), jax.tree.leaves(runs[8].model), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[0])  # frozen
        assert not np.array_equal(np.asarray(a)[1], np.asarray(b)[1])  # still training
    val = np.asarray(history["val_loss"])[:, 0]
    kept = jax.tree.map(lambda a: a[0], runs[8].model)
    np.testing.assert_allclose(val.min(), validate(kept, (x, y), -1.0), rtol=1e-6)
    first_stop = int(np.argmax(stopped[:, 0]))
    assert np.all(val[first_stop + 1 :] == val.min())


def test_resumed_training_equals_an_uninterrupted_run_bit_for_bit(tmp_path):
    x, y = least_squares()
    start = Linear(jnp.zeros(3), jnp.zeros(()))
    cfg = TrainConfig(learning_rate=0.05, clip_norm=100.0, epochs=6, steps_per_epoch=5,
                      plateau_patience=1)  # fmt: skip
    key = jax.random.key(4)
    whole = fit(start, mse_task(), (x, y), None, cfg.recipe(), key)
    state_file = tmp_path / "run.state"
    run = {"task": "toy", "train": cfg._asdict()}
    first = cfg._replace(epochs=3).recipe()
    fit(start, mse_task(), (x, y), None, first, key, state_file=state_file, run=run)
    resumed = fit(start, mse_task(), (x, y), None, cfg.recipe(), key, state_file=state_file,
                  resume=True, run=run)  # fmt: skip
    for a, b in zip(jax.tree.leaves(whole.model), jax.tree.leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in whole.history:
        np.testing.assert_array_equal(whole.history[name], resumed.history[name])
    # other data, or other settings, are refused naming what differs
    with pytest.raises(WearjaxFileError, match="field 'fingerprint' differs"):
        fit(start, mse_task(), (x, 2 * y), None, cfg.recipe(), key, state_file=state_file,
            resume=True, run=run)  # fmt: skip
    with pytest.raises(WearjaxFileError, match="field 'task' differs"):
        fit(start, mse_task(), (x, y), None, cfg.recipe(), key, state_file=state_file,
            resume=True, run={**run, "task": "other"})  # fmt: skip
    # the recipe is checked whatever `run` holds (`fit virtual` once named only its task), and
    # a resume may not ask for fewer epochs than are done
    for other, match in [
        (cfg._replace(learning_rate=0.5), "field 'recipe' differs"),
        (cfg._replace(steps_per_epoch=6), "field 'recipe' differs"),
        (cfg._replace(epochs=4), "holds 6 epochs, more than the 4 asked"),
    ]:
        with pytest.raises(WearjaxFileError, match=match):
            fit(start, mse_task(), (x, y), None, other.recipe(), key, state_file=state_file,
                resume=True, run={"task": "toy"})  # fmt: skip


def test_ctrl_c_saves_the_last_finished_epoch():
    from wearjax.train.loop import init_state, run_epochs

    calls, saved = [], []

    def epoch(state, fold, data):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return state._replace(epoch=state.epoch + 1), (jnp.ones(()), jnp.ones(()), ())

    state = init_state({"w": jnp.zeros(())}, Recipe(optax.identity()), jax.random.key(0))
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 2"):
        run_epochs(epoch, state, None, None, 10, on_epoch=lambda s, h: saved.append((s, h)))
    last_state, history = saved[-1]
    assert int(last_state.epoch) == 2 and len(history["train_loss"]) == 2


def test_a_real_sigint_finishes_the_running_epoch_then_saves_and_stops():
    """SIGINT sent to the process during epoch 3 (as Ctrl-C is) lets that epoch finish, saves
    it and stops: the interrupt never lands inside library code; the handler is restored."""
    import os
    import signal
    import threading

    from wearjax.train.loop import init_state, run_epochs

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set on the main thread")
    calls, saved = [], []
    before = signal.getsignal(signal.SIGINT)

    def epoch(state, fold, data):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return state._replace(epoch=state.epoch + 1), (jnp.ones(()), jnp.ones(()), ())

    state = init_state({"w": jnp.zeros(())}, Recipe(optax.identity()), jax.random.key(0))
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 3"):
        run_epochs(epoch, state, None, None, 10, on_epoch=lambda s, h: saved.append((s, h)))
    last_state, history = saved[-1]
    assert int(last_state.epoch) == 3 and len(history["train_loss"]) == 3
    assert signal.getsignal(signal.SIGINT) is before


def test_a_sigint_in_the_epoch_that_stops_early_is_not_dropped():
    """Until 2026-12-07 an early stop's `break` came before the check for a deferred
    Ctrl-C, so training returned as if never interrupted and a study went on to its next
    model; at the last of the asked epochs it was raised. Both now stop the same way."""
    import os
    import signal
    import threading

    from wearjax.train.loop import init_state, run_epochs

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set on the main thread")
    calls, saved = [], []

    def epoch(state, fold, data):
        calls.append(1)
        stop = state.stop
        if len(calls) == 3:  # Ctrl-C in the epoch early stopping ends
            os.kill(os.getpid(), signal.SIGINT)
            stop = stop._replace(stopped=jnp.asarray(True))
        return state._replace(epoch=state.epoch + 1, stop=stop), (jnp.ones(()), jnp.ones(()), ())

    state = init_state({"w": jnp.zeros(())}, Recipe(optax.identity()), jax.random.key(0))
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 3"):
        run_epochs(epoch, state, None, None, 10, on_epoch=lambda s, h: saved.append((s, h)))
    assert len(calls) == 3 and bool(saved[-1][0].stop.stopped)


@pytest.mark.slow  # ~60 s on 2 cores: keeps the fast suite under 10 minutes
def test_cross_validation_resumes_bit_for_bit(tiny_study, tmp_path):
    cfg, data, fold, split, init = tiny_study
    task = make_task(cfg, data.hr.shape[1])
    train = cfg.train._replace(epochs=4, steps_per_epoch=2, early_stopping_patience=100)
    keys = jax.random.split(jax.random.key(5), split.n_folds)
    whole = fit_folds(init, task, data, fold, train.recipe(), keys)
    state_file = tmp_path / "cv.state"
    fit_folds(init, task, data, fold, train._replace(epochs=2).recipe(), keys,
              state_file=state_file)  # fmt: skip
    resumed = fit_folds(init, task, data, fold, train.recipe(), keys, state_file=state_file,
                        resume=True)  # fmt: skip
    for a, b in zip(jax.tree.leaves(whole.model), jax.tree.leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.history["val_loss"], resumed.history["val_loss"])


def test_static_part_from_shapes_alone_unless_something_frozen_is_an_array():
    """The frozen part of a model comes from its shapes (no eager initialisation, whose every
    random draw compiles on its own) unless the frozen part holds arrays, which need values;
    frozen float arrays are refused."""
    from wearjax.cv import _static_part

    concrete = []

    def init(key):
        concrete.append(not isinstance(key, jax.core.Tracer))
        return Linear(jax.random.normal(key, (3,)), jnp.zeros(()))

    static = _static_part(init, jax.random.key(0), eqx.is_inexact_array)
    assert concrete == [False]  # traced for its shapes only
    assert jax.tree_util.tree_leaves(static) == []

    def init_int(key):
        concrete.append(not isinstance(key, jax.core.Tracer))
        return Linear(jax.random.normal(key, (3,)), jax.random.randint(key, (), 0, 9))

    static = _static_part(init_int, jax.random.key(0), eqx.is_inexact_array)  # an int, frozen
    assert concrete[-1] is True  # the frozen array needs its values
    np.testing.assert_array_equal(static.b, init_int(jax.random.key(0)).b)
    # a frozen float array (a random projection left untrained) is refused: only the
    # trainable part is stacked over folds, so every fold had fold 0's draw of it, and
    # `fold_model` sliced its rows as if they were folds
    with pytest.raises(WearjaxDataError, match=r"frozen part .* 1 float array"):
        _static_part(init, jax.random.key(0), Linear(False, True))


class _Pair(eqx.Module):
    w: jax.Array  # what validation reads
    e: jax.Array  # what it does not (an embedding, say)


def _nan_from(epoch_nan: int, *, only_e: bool = False) -> Task:
    """Least squares to 1 whose training loss turns NaN from `epoch_nan` on (everywhere, or
    through the unvalidated `e` alone), validated on `w` only."""

    def loss(m, batch, key, epoch):
        poison = jnp.where(epoch >= epoch_nan, jnp.nan, 0.0)
        w_term = jnp.sum((m.w - 1.0) ** 2) + (0.0 if only_e else poison)
        return w_term + jnp.sum((m.e - 1.0) ** 2 + poison * m.e), ()

    return Task(lambda d, f, k: None, loss, lambda m, d, f: jnp.sum((m.w - 1.0) ** 2))


@pytest.mark.parametrize("only_e", [False, True])
def test_a_non_finite_training_loss_stops_the_fold_and_keeps_its_last_finite_best(only_e, caplog):
    """From the epoch the training loss turns NaN the fold stops, with a warning naming it;
    the model kept is the best before it, never one with NaN weights (when validation reads
    only the weights that stayed finite, it would otherwise look ever better)."""
    recipe = Recipe(optax.scale_by_adam(), 0.1, early_stopping_patience=5, epochs=20,
                    steps_per_epoch=2)  # fmt: skip
    start = _Pair(jnp.zeros(2), jnp.zeros(2))
    result = fit(start, _nan_from(3, only_e=only_e), None, None, recipe, jax.random.key(0))
    train = np.asarray(result.history["train_loss"])
    assert len(train) == 4 and np.isfinite(train[:3]).all() and np.isnan(train[3])
    assert bool(result.history["stopped"][-1])
    assert "fold(s) [0]: the training loss or weights are not finite at epoch 4" in caplog.text
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result.model))
    # the kept model is epoch 3's: the same as training 3 epochs without any NaN
    three = fit(start, _nan_from(99), None, None, recipe._replace(epochs=3), jax.random.key(0))
    tree_allclose(result.model, three.model, rtol=0, atol=0)


def test_nan_weights_after_a_finite_loss_and_a_nan_validation_loss_are_said(caplog):
    """Until 2026-12-07 weights turned NaN by an epoch's last step, whose loss was still
    finite, stopped the fold without a word, its history showing a finite training loss; a
    non-finite validation loss was counted as an epoch without improvement silently."""
    recipe = Recipe(optax.scale_by_adam(), 0.1, early_stopping_patience=3, epochs=20,
                    steps_per_epoch=1)  # fmt: skip

    def loss(m, batch, key, epoch):  # from epoch 2: sqrt(e) at e = 0, a finite value, inf slope
        on = epoch >= 2
        root = jnp.where(on, jnp.sqrt(jnp.where(on, m.e[0], 1.0)), 0.0)  # no NaN slope before
        return jnp.sum((m.w - 1.0) ** 2) + root, ()

    valid = lambda m, d, f: jnp.sum((m.w - 1.0) ** 2)  # noqa: E731
    start = _Pair(jnp.zeros(2), jnp.zeros(2))
    result = fit(start, Task(lambda d, f, k: None, loss, valid), None, None, recipe,
                 jax.random.key(0))  # fmt: skip
    train = np.asarray(result.history["train_loss"])
    assert len(train) == 3 and np.isfinite(train[:2]).all() and np.isnan(train[2])
    assert "fold(s) [0]: the training loss or weights are not finite at epoch 3" in caplog.text
    caplog.clear()
    blind = lambda m, d, f: jnp.where(m.w[0] > 0.15, jnp.nan, valid(m, d, f))  # noqa: E731
    task = Task(lambda d, f, k: None, lambda m, b, k, e: (valid(m, b, f=None), ()), blind)
    result = fit(start, task, None, None, recipe, jax.random.key(0))
    val = np.asarray(result.history["val_loss"])
    first = int(np.argmax(~np.isfinite(val)))
    assert first >= 1 and len(val) == first + 3  # 3 epochs without improvement: stopped
    said = [r.message for r in caplog.records if "validation loss is not finite" in r.message]
    assert said == [f"fold(s) [0]: the validation loss is not finite at epoch {first + 1}, an "
                    "epoch without improvement (check the validation data)"]  # fmt: skip


def test_a_fold_with_no_validation_data_is_refused():
    """A validation loss over nothing is NaN (`validation_mean`), not a 0 that early stopping
    would keep from the first epoch; a split without validation sessions is refused first."""
    from wearjax.cv import Split
    from wearjax.errors import WearjaxDataError
    from wearjax.train.loop import validation_mean

    assert np.isnan(float(validation_mean(jnp.array([1.0, jnp.nan]), jnp.zeros(2))))
    np.testing.assert_allclose(float(validation_mean(jnp.array([1.0, jnp.nan, 3.0]),
                                                     jnp.array([1.0, 0.0, 1.0]))), 2.0)  # fmt: skip
    # weights that sum to less than 1 give the weighted mean too (until 2026-12-07: over 1)
    quarter = validation_mean(jnp.array([2.0, 4.0, 7.0]), jnp.array([0.25, 0.25, 0.0]))
    np.testing.assert_allclose(float(quarter), 3.0)
    task = Task(lambda d, f, k: None, lambda m, b, k, e: (jnp.sum(m**2), ()),
                lambda m, d, f: validation_mean(m, jnp.zeros(2)))  # fmt: skip
    recipe = Recipe(optax.sgd(1.0), 0.1, early_stopping_patience=2, epochs=5, steps_per_epoch=1)
    with pytest.raises(WearjaxDataError, match="no finite validation loss.*no validation data"):
        fit(jnp.ones(2), task, None, None, recipe, jax.random.key(0))
    for make in (lambda n: Split.chronological(np.arange(6), n_validation=n),
                 lambda n: Split.by_subject(np.arange(6), 6, 1, n_validation=n)):  # fmt: skip
        with pytest.raises(WearjaxDataError, match="n_validation=0: each fold needs 1 or more"):
            make(0)


def test_fit_steps_returns_nan_where_no_epoch_was_finite_and_aux_may_be_one_array():
    """`fit_steps` runs inside a traced function, so it cannot raise as `fit` does: a run whose
    every epoch is non-finite returns NaN leaves (once the untrained start, which a
    per-session calibration then reported as calibrated). An aux that is a single array is a
    pytree of scalars too (it once raised a TypeError after the first epoch)."""
    poisoned = _nan_from(0)
    recipe = Recipe(optax.scale_by_adam(), 0.05, epochs=3, steps_per_epoch=2)
    start = _Pair(jnp.zeros(2), jnp.zeros(2))
    out = jax.jit(lambda m: fit_steps(m, poisoned, None, None, recipe, jax.random.key(0),
                                      trainable=eqx.is_inexact_array))(start)  # fmt: skip
    assert np.isnan(np.asarray(out.w)).all() and np.isnan(np.asarray(out.e)).all()
    fine = fit_steps(start, _nan_from(99), None, None, recipe, jax.random.key(0),
                     trainable=eqx.is_inexact_array)  # fmt: skip
    assert np.isfinite(np.asarray(fine.w)).all()

    def loss(m, batch, key, epoch):
        value = jnp.sum((m.w - 1.0) ** 2)
        return value, jnp.abs(m.w).sum()

    task = Task(lambda d, f, k: None, loss, lambda m, d, f: jnp.sum((m.w - 1.0) ** 2))
    res = fit(start, task, None, None, recipe, jax.random.key(0))
    assert res.history["aux"].shape == res.history["train_loss"].shape
