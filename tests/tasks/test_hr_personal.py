"""The personalised HR ODE task: inputs, calibration tables, half-times, one small run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.data.physiology import hr_step_response
from wearjax.data.synthetic import simulate_cohort
from wearjax.errors import WearjaxDataError
from wearjax.eval.halftimes import half_time, response_halftimes, step_halftimes, training_halftimes
from wearjax.tasks.hr import HRStudyConfig
from wearjax.tasks.hr_personal import (
    GRADE_SPAN,
    PersonalConfig,
    activity_inputs,
    calibration_sessions,
)
from wearjax.tasks.hr_study import run_personal_study
from wearjax.train.loop import TrainConfig


def test_grade_is_the_centred_rise_over_the_distance_run():
    rng = np.random.default_rng(0)
    speed = rng.uniform(2, 4, 200)
    alt = np.cumsum(rng.normal(0, 0.3, 200)) + 100
    x = jnp.asarray(np.stack([alt, speed], -1), jnp.float32)
    got = np.asarray(activity_inputs(x, ("altitude", "speed")))
    run = np.cumsum(speed)
    for t in (0, 7, 100, 199):
        lo, hi = max(t - GRADE_SPAN // 2, 0), min(t + GRADE_SPAN // 2, 199)
        want = (alt[hi] - alt[lo]) / max(run[hi] - run[lo], hi - lo)
        np.testing.assert_allclose(got[t], [speed[t], want], rtol=1e-4, atol=1e-6)
    # a session padded to 260 s: its last seconds' span stops at its last recorded one (it
    # read the padding's 0 m altitude: grades of -10 in a demo cohort); the padding stays finite
    padded = jnp.concatenate([x, jnp.zeros((60, 2))])[None]
    both = np.asarray(activity_inputs(padded, ("altitude", "speed"), jnp.asarray([200])))
    np.testing.assert_allclose(both[0, :200], got, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(both))
    flat = np.asarray(activity_inputs(x[:, 1:], ("speed",)))
    np.testing.assert_array_equal(flat[:, 1], 0.0)
    with pytest.raises(ValueError, match="speed"):
        activity_inputs(x[:, :1], ("altitude",))


def test_each_session_is_calibrated_on_another_of_its_runner():
    """A runner's only session is not calibrated on itself (it was: the embedding then read
    the HR it was scored on); -1 gives it the population embedding."""
    runner = np.array([0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(calibration_sessions(runner, np.arange(6)), [1, 2, 0, 4, 3, -1])


def test_half_time_of_a_first_order_step():
    tau, t = 30.0, np.arange(600.0)
    hr = np.where(t < 100, 100.0, 150.0 - 50.0 * np.exp(-(t - 99) / tau))
    assert half_time(hr, 100, 600) == pytest.approx(tau * math.log(2) - 1, abs=0.05)
    falling = 250.0 - hr
    assert half_time(falling, 100, 600) == pytest.approx(tau * math.log(2) - 1, abs=0.05)
    assert math.isnan(half_time(np.full(50, 80.0), 10, 50))


def test_step_halftimes_ignore_a_drift_both_runs_share():
    """An asymmetric first-order step (tau 20 s up, 40 s down) on top of a drift of 6 bpm per
    10 min: on the response the half-times are the exponentials' (tau ln 2, less the second the
    step starts late); on the HR level the drift shortens the recovery."""
    tau_on, tau_off, t = 20.0, 40.0, np.arange(1500.0)
    up = np.where(t < 300, 0.0, 30.0 * (1.0 - np.exp(-(t - 299) / tau_on)))
    top = 30.0 * (1.0 - np.exp(-(899 - 299) / tau_on))
    step = np.where(t < 900, up, top * np.exp(-(t - 899) / tau_off))
    drift = 100.0 + 0.01 * t
    rise, recovery = step_halftimes(drift + step, drift, 300, 900)
    assert rise == pytest.approx(tau_on * math.log(2) - 1, abs=0.05)
    assert recovery == pytest.approx(tau_off * math.log(2) - 1, abs=0.05)
    assert half_time(drift + step, 900, 1500) < recovery - 5.0


@pytest.mark.slow  # about a minute on 2 cores: compiles training and calibration
def test_a_small_study_runs_as_one_program_and_predicts_every_session():
    cohort, physiology = simulate_cohort(
        jax.random.key(0),
        n_runners=4,
        sessions_per_runner=2,
        min_minutes=6.0,
        max_minutes=8.0,
        return_physiology=True,
    )
    config = PersonalConfig(
        batch_size=2,
        train=TrainConfig(learning_rate=1e-2, epochs=2, steps_per_epoch=3),
        calibration_steps=3,
        engine="scan",  # the same numbers as Diffrax (tests/models/test_ode.py), faster to compile
    )
    result = run_personal_study(cohort, HRStudyConfig(runners_out=2), config, progress=False)
    assert result.entry["n_traces"] == 1
    assert result.entry["calibrations_failed"] == 0
    assert result.entry["population_embedding_sessions"] == 0  # every runner has two sessions
    for protocol in ("standard", "generative"):
        assert math.isfinite(result.entry[protocol]["mae"])
        assert result.entry[protocol]["mae"] < 40.0
    mask = np.asarray(cohort.mask & cohort.valid)
    pred = result.predictions["standard"]
    assert np.all(pred[mask] > 0)  # every session was someone's held-out session
    # the standard protocol restarts every window at its measured first second
    starts = np.zeros_like(mask)
    starts[:, ::60] = True
    given = mask & starts
    np.testing.assert_allclose(pred[given], np.asarray(cohort.hr)[given], atol=1e-3)
    rows = response_halftimes(result, physiology, np.asarray(cohort.runner), n=600, step_down=400)
    assert len(rows) == cohort.n_sessions
    assert all(r["rise_true_s"] > 0 for r in rows)
    # the simulator's HR at the low speed is constant, so its step response is HR itself
    runner = rows[0]["runner"]
    _, hr = hr_step_response(physiology, runner, step_up=300, step_down=400, n_time=600)
    hr = np.asarray(hr)
    assert rows[0]["rise_true_s"] == pytest.approx(half_time(hr, 300, 400), abs=1e-3)
    assert rows[0]["recovery_true_s"] == pytest.approx(half_time(hr, 400, 600), abs=1e-3)
    keys = ("rise_pred_s", "recovery_pred_s", "rise_pred_level_s", "recovery_pred_level_s")
    assert all(math.isfinite(r[k]) for r in rows for k in keys)
    # training runners: one row per (fold, runner it trained on), the truth shared across folds
    trained = training_halftimes(result, physiology, n=600, step_down=400)
    assert len(trained) == int(result.train_runners.sum())
    assert {(r["fold"], r["runner"]) for r in trained} == set(
        zip(*np.nonzero(result.train_runners), strict=True)
    )
    truth = {r["runner"]: r["rise_true_s"] for r in rows}
    assert all(r["rise_true_s"] == pytest.approx(truth[r["runner"]]) for r in trained)
    assert all(math.isfinite(r[k]) for r in trained for k in keys)


def test_a_process_holding_some_folds_takes_each_folds_own_model():
    """Under jax.distributed a `PersonalResult` stacks only its process's folds (`folds`):
    fold k's model is the one at k's place among them, and another process's fold has none
    here (halftimes skip it) rather than a wrong one."""
    from types import SimpleNamespace

    from wearjax.eval.halftimes import _model_of_fold

    stacked = {"w": jnp.asarray([20.0, 30.0])}  # folds 2 and 3 of 4
    mine = SimpleNamespace(model=stacked, folds=np.asarray([2, 3]))
    assert float(_model_of_fold(mine, 3)["w"]) == 30.0
    assert _model_of_fold(mine, 0) is None
    alone = SimpleNamespace(model={"w": jnp.arange(4.0)}, folds=None)
    assert float(_model_of_fold(alone, 3)["w"]) == 3.0


@pytest.mark.slow
def test_metrics_cover_only_the_sessions_a_fold_tests():
    """A split of one fold tests some sessions only: the others have no held-out prediction
    (0 bpm), and the study's MAE is that of the tested sessions' seconds alone. A chronological
    split is refused: a session's embedding, fitted on another of its runner's, could read the
    future."""
    from wearjax.cv import Split
    from wearjax.eval.protocols import given_mask
    from wearjax.tasks.hr_personal import run_personal

    cohort = simulate_cohort(jax.random.key(1), n_runners=3, sessions_per_runner=3,
                             min_minutes=6.0, max_minutes=7.0)  # fmt: skip
    later = Split.chronological(np.arange(cohort.n_sessions), test_fraction=0.25)
    with pytest.raises(WearjaxDataError, match="a chronological split could take from the futu"):
        run_personal(cohort, later, 60, 0, PersonalConfig(), progress=False)
    split = Split.by_subject(cohort.runner, cohort.n_runners, 1).take([0])
    tested = split.test.any(axis=0)
    assert 0 < tested.sum() < cohort.n_sessions
    train = TrainConfig(learning_rate=1e-2, epochs=1, steps_per_epoch=2)
    config = PersonalConfig(batch_size=2, calibration_steps=2, engine="scan", train=train)
    result = run_personal(cohort, split, 60, 0, config, progress=False)
    mask = np.asarray(cohort.mask & cohort.valid)
    scored = (
        mask & tested[:, None] & ~np.asarray(given_mask(cohort.mask & cohort.valid, 60, "standard"))
    )
    pred = np.asarray(result.predictions["standard"])
    want = np.mean(np.abs(pred - np.asarray(cohort.hr))[scored])
    assert result.entry["standard"]["mae"] == pytest.approx(want, rel=1e-5)
    assert result.entry["standard"]["mae"] < 40.0  # the untested sessions' 0 bpm would be ~140


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_a_runners_only_session_gets_the_population_embedding():
    """`calibration == -1` (a runner with one session) gives e = 0, whatever the session's HR;
    another calibration session gives a fitted, nonzero embedding."""
    from wearjax.models.hr_personalized import PersonalHRODE
    from wearjax.tasks.hr_personal import PersonalData, PersonalFold, _held_out_predict

    config = PersonalConfig(calibration_steps=2, engine="scan")
    model = PersonalHRODE(2, config.embed, config.width, window=30, engine="scan",
                          key=jax.random.key(0))  # fmt: skip
    t = 60
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.uniform(0, 1, (2, t, 2)), jnp.float32)
    hr = jnp.asarray(120 + 10 * rng.normal(size=(2, t)), jnp.float32)
    data = PersonalData(inputs, hr, jnp.ones((2, t), bool), jnp.asarray([0, 1]),
                        jnp.asarray([1, -1]))  # fmt: skip
    fold = PersonalFold(jnp.ones(2), jnp.zeros(1, jnp.int32), jnp.ones(1), jnp.asarray(10.0))
    predict = jax.jit(_held_out_predict(config))
    fitted = predict(model, fold, data, jnp.asarray(0))["embedding"]
    alone = predict(model, fold, data, jnp.asarray(1))["embedding"]
    assert np.abs(np.asarray(fitted)).max() > 0
    np.testing.assert_array_equal(np.asarray(alone), 0.0)
