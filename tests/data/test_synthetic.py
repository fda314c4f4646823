"""The synthetic cohort: conventions, physiology against float64 NumPy loops, and realism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax.data.physiology import (
    DRIFT_INTENSITY,
    HR_KNEE,
    REST_VO2,
    VO2_KNEE,
    RunnerPhysiology,
    heart_rate_response,
    hr_step_response,
    speed_at_intensity,
    vo2_response,
)
from wearjax.data.synthetic import WORKOUTS, simulate_cohort, simulate_session
from wearjax.data.types import CHANNEL_UNITS, SUBJECT_FIELDS, Cohort

CHANNEL = {name: i for i, name in enumerate(CHANNEL_UNITS)}
SESSION_SECONDS = 3600


@pytest.fixture(scope="module")
def simulated() -> tuple[Cohort, RunnerPhysiology]:
    return simulate_cohort(jax.random.key(0), n_runners=3, return_physiology=True)


@pytest.fixture(scope="module")
def sessions(simulated):
    """One hour of every workout type for runner 0, with the noise-free truth."""
    _, physiology = simulated
    simulate = jax.jit(
        jax.vmap(simulate_session, in_axes=(0, None, 0, None, None)), static_argnums=4
    )
    keys = jax.random.split(jax.random.key(1), len(WORKOUTS))
    workouts = jnp.arange(len(WORKOUTS), dtype=jnp.int32)
    out = simulate(keys, physiology[0], workouts, SESSION_SECONDS, SESSION_SECONDS)
    return jax.tree.map(np.asarray, out), physiology[0]


def as_float64(physiology: RunnerPhysiology) -> dict[str, float]:
    return {k: float(np.asarray(v, np.float64)) for k, v in vars(physiology).items()}


def numpy_heart_rate(p: dict[str, float], speed, grade, hr0: float) -> np.ndarray:
    """Float64 loop of the HR model: ACSM demand -> %VO2R -> %HRR + drift -> asymmetric ODE."""
    reserve = p["hr_max"] - p["hr_rest"]
    hr = np.empty(len(speed))
    state, seconds_above = hr0, 0.0
    for t, (v, g) in enumerate(zip(speed, grade, strict=True)):
        cost = max(0.2 + 0.9 * (g if g > 0 else 0.5 * g), 0.1)
        demand = REST_VO2 + p["economy"] * cost * 60.0 * max(v, 0.0)
        intensity = (demand - REST_VO2) / (p["vo2max"] - REST_VO2)
        u = max(intensity + p["drift_rate"] * seconds_above / 60.0 / reserve, 0.0)
        if u > HR_KNEE:
            u = HR_KNEE + (1.0 - HR_KNEE) * np.tanh((u - HR_KNEE) / (1.0 - HR_KNEE))
        target = p["hr_rest"] + reserve * u
        hr[t] = state
        tau = p["tau_on"] if target > state else p["tau_off"]
        # Exact solution of dHR/dt = (target - HR) / tau over one second, target held.
        state = target + (state - target) * np.exp(-1.0 / tau)
        seconds_above += float(intensity > DRIFT_INTENSITY)
    return hr


def numpy_vo2(p: dict[str, float], speed, grade) -> np.ndarray:
    """Float64 loop of the VO2 model: phase II + slow component above threshold, capped."""
    threshold = REST_VO2 + p["economy"] * 0.2 * 60.0 * p["threshold_speed"]
    fast, slow = 1.5 * REST_VO2, 0.0
    out = np.empty(len(speed))
    for t, (v, g) in enumerate(zip(speed, grade, strict=True)):
        cost = max(0.2 + 0.9 * (g if g > 0 else 0.5 * g), 0.1)
        demand = REST_VO2 + p["economy"] * cost * 60.0 * max(v, 0.0)
        u = max((fast + slow - REST_VO2) / (p["vo2max"] - REST_VO2), 0.0)
        if u > VO2_KNEE:
            u = VO2_KNEE + (1.0 - VO2_KNEE) * np.tanh((u - VO2_KNEE) / (1.0 - VO2_KNEE))
        out[t] = p["weight"] * (REST_VO2 + (p["vo2max"] - REST_VO2) * u)
        fast = demand + (fast - demand) * np.exp(-1.0 / p["tau_vo2"])
        slow_target = p["slow_gain"] * max(demand - threshold, 0.0)
        slow = slow_target + (slow - slow_target) * np.exp(-1.0 / p["tau_slow"])
    return out


def runs(values: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values."""
    change = np.flatnonzero(np.diff(values) != 0) + 1
    edges = np.concatenate([[0], change, [len(values)]])
    return np.diff(edges)


def half_time(hr: np.ndarray, start: int) -> float:
    """Seconds after `start` until HR first covers half its way to the value 600 s later."""
    before, after = hr[start], hr[start + 600]
    progress = (hr[start:] - before) / (after - before)
    k = int(np.argmax(progress >= 0.5))
    return k - 1 + (0.5 - progress[k - 1]) / (progress[k] - progress[k - 1])


@pytest.mark.slow  # ~11 s cold on 2 cores (two more cohorts simulated): slow step only
def test_same_key_same_cohort_other_key_other_cohort(simulated):
    cohort, physiology = simulated
    again, physiology_again = simulate_cohort(
        jax.random.key(0), n_runners=3, return_physiology=True
    )
    assert tree_allclose((cohort, physiology), (again, physiology_again), rtol=0.0, atol=0.0)
    other = simulate_cohort(jax.random.key(5), n_runners=3)
    assert other.workouts != cohort.workouts or not np.array_equal(other.lengths, cohort.lengths)
    common = min(other.x.shape[1], cohort.x.shape[1])
    assert not np.allclose(other.x[:, :common], cohort.x[:, :common])


def test_shapes_padding_and_masks(simulated):
    cohort, physiology = simulated
    n_sessions, n_time = 3 * 9, cohort.x.shape[1]
    lengths = np.asarray(cohort.lengths)
    assert cohort.x.shape == (n_sessions, n_time, len(CHANNEL_UNITS))
    assert cohort.channels == tuple(CHANNEL_UNITS)
    assert n_time % 600 == 0 and n_time - 600 < lengths.max() <= n_time
    assert 20 * 60 <= lengths.min() and lengths.max() <= 120 * 60
    assert cohort.x.dtype == cohort.hr.dtype == cohort.vo2.dtype == jnp.float32
    assert cohort.mask.dtype == cohort.vo2_mask.dtype == jnp.bool_
    assert cohort.lengths.dtype == cohort.runner.dtype == jnp.int32
    assert cohort.runner_names == ("runner00", "runner01", "runner02")
    np.testing.assert_array_equal(cohort.runner, np.repeat(np.arange(3), 9))
    assert len(cohort.workouts) == n_sessions and cohort.subject.shape == (n_sessions, 4)
    for leaf in (cohort.x, cohort.hr, cohort.vo2, cohort.subject):
        assert np.all(np.isfinite(leaf))
    valid = np.asarray(cohort.valid)
    mask = np.asarray(cohort.mask)
    assert not np.any(mask & ~valid)
    assert np.all(mask[:, :60])  # the first minute is always observed
    np.testing.assert_array_equal(cohort.vo2_mask, valid)
    assert np.all(np.asarray(cohort.x)[~valid] == 0.0)
    assert np.all(np.asarray(cohort.hr)[~mask] == 0.0)
    assert np.all(np.asarray(cohort.vo2)[~valid] == 0.0)
    assert np.all(np.asarray(cohort.vo2)[valid] > 0.0)
    # Subject scalars are the runner's, in SUBJECT_FIELDS order.
    runner = np.asarray(cohort.runner)
    truth = [physiology.height, physiology.weight, physiology.age, physiology.sex_male]
    assert SUBJECT_FIELDS == ("height_m", "weight_kg", "age_years", "sex_male")
    np.testing.assert_allclose(cohort.subject, np.stack(truth, axis=1)[runner], rtol=1e-6)


def test_every_workout_type_appears(simulated):
    cohort, _ = simulated
    workouts = np.array(cohort.workouts).reshape(3, 9)
    for runner in workouts:  # nine sessions each: every runner does every type once
        assert sorted(runner) == sorted(WORKOUTS)
    assert [list(w) for w in workouts] != [list(workouts[0])] * 3  # in their own orders


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="at least one runner"):
        simulate_cohort(jax.random.key(0), n_runners=0)
    with pytest.raises(ValueError, match="min_minutes"):
        simulate_cohort(jax.random.key(0), min_minutes=60.0, max_minutes=30.0)


def test_hr_stays_between_rest_and_max(simulated, sessions):
    cohort, physiology = simulated
    rest = np.asarray(physiology.hr_rest)[np.asarray(cohort.runner)][:, None]
    peak = np.asarray(physiology.hr_max)[np.asarray(cohort.runner)][:, None]
    hr, mask = np.asarray(cohort.hr), np.asarray(cohort.mask)
    low, high = (hr - rest)[mask], (hr - peak)[mask]
    assert low.min() > -25.0 and high.max() < 25.0  # spikes are at most 20 bpm
    assert np.mean(low < -6.0) < 0.005 and np.mean(high > 6.0) < 0.005
    truth, p = sessions
    assert np.all(truth.hr_clean >= float(p.hr_rest)) and np.all(truth.hr_clean <= float(p.hr_max))


def test_hr_noise_and_dropouts_look_like_a_chest_strap(simulated, sessions):
    truth, _ = sessions
    residual = (truth.hr - truth.hr_clean)[truth.mask]
    assert 1.0 < np.median(np.abs(residual)) < 3.0
    cohort, _ = simulated
    gaps = []
    for mask, length in zip(np.asarray(cohort.mask), np.asarray(cohort.lengths), strict=True):
        edges = np.diff(np.concatenate([[0], (~mask[:length]).astype(int), [0]]))
        gaps.extend(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    hours = np.asarray(cohort.lengths).sum() / 3600.0
    assert 1.0 < len(gaps) / hours < 6.0
    assert min(gaps) >= 5 and max(gaps) <= 120  # 5-60 s, two may overlap


def test_channels_are_consistent(simulated):
    cohort, _ = simulated
    x = np.asarray(cohort.x, np.float64)[np.asarray(cohort.valid)]
    speed, cadence = x[:, CHANNEL["speed"]], x[:, CHANNEL["cadence"]]
    step_length = x[:, CHANNEL["step_length"]]
    oscillation = x[:, CHANNEL["vertical_oscillation"]]
    expected_step = speed / (2.0 * cadence / 60.0) * 1000.0
    error = np.abs(expected_step / step_length - 1.0)
    assert np.median(error) < 0.03 and np.quantile(error, 0.99) < 0.1
    error = np.abs(oscillation / step_length * 100.0 / x[:, CHANNEL["vertical_ratio"]] - 1.0)
    assert np.median(error) < 0.04 and np.quantile(error, 0.99) < 0.15
    # Cadence rises and stance shortens with speed; values in device ranges.
    assert np.corrcoef(speed, cadence)[0, 1] > 0.5
    assert np.corrcoef(speed, x[:, CHANNEL["stance_time_percent"]])[0, 1] < -0.5
    assert 65.0 < np.quantile(cadence, 0.01) and np.quantile(cadence, 0.99) < 110.0
    assert 18.0 < np.quantile(x[:, CHANNEL["stance_time_percent"]], 0.01)  # sprints
    assert np.quantile(x[:, CHANNEL["stance_time_percent"]], 0.99) < 55.0  # walk-jogs
    assert 4.0 < np.quantile(x[:, CHANNEL["vertical_ratio"]], 0.01)
    assert np.quantile(x[:, CHANNEL["vertical_ratio"]], 0.99) < 14.0


def test_hr_scan_matches_numpy_loop(sessions):
    truth, p = sessions
    for w in range(len(WORKOUTS)):
        hr0 = float(truth.hr_clean[w, 0])
        expected = numpy_heart_rate(as_float64(p), truth.speed[w], truth.grade[w], hr0)
        np.testing.assert_allclose(truth.hr_clean[w], expected, rtol=0, atol=0.05)


def test_hr_scan_matches_numpy_loop_in_float64(sessions, x64):
    truth, p = sessions
    w = WORKOUTS.index("intervals")
    speed, grade = np.float64(truth.speed[w]), np.float64(truth.grade[w])
    hr0 = float(truth.hr_clean[w, 0])
    p64 = jax.tree.map(lambda a: jnp.asarray(np.float64(a)), p)
    hr = heart_rate_response(p64, jnp.asarray(speed), jnp.asarray(grade), hr0)
    assert hr.dtype == jnp.float64
    expected = numpy_heart_rate(as_float64(p), speed, grade, hr0)
    np.testing.assert_allclose(hr, expected, rtol=1e-10)
    jitted = jax.jit(heart_rate_response)(p64, jnp.asarray(speed), jnp.asarray(grade), hr0)
    np.testing.assert_allclose(jitted, hr, rtol=1e-12)
    vo2 = vo2_response(p64, jnp.asarray(speed), jnp.asarray(grade))
    np.testing.assert_allclose(vo2, numpy_vo2(as_float64(p), speed, grade), rtol=1e-10)


def test_vo2_scan_matches_numpy_loop(sessions):
    truth, p = sessions
    for w in range(len(WORKOUTS)):
        expected = numpy_vo2(as_float64(p), truth.speed[w], truth.grade[w])
        np.testing.assert_allclose(truth.vo2_clean[w], expected, rtol=1e-4)


def test_step_response_half_times_match_tau_on_and_tau_off(simulated):
    _, physiology = simulated
    for runner in range(3):
        speed, hr = map(np.asarray, hr_step_response(physiology, runner))
        assert speed[299] < speed[300] and speed[899] > speed[900]
        up, down = half_time(hr, 300), half_time(hr, 900)
        ln2 = np.log(2.0)
        np.testing.assert_allclose(up, ln2 * float(physiology.tau_on[runner]), rtol=0.1)
        np.testing.assert_allclose(down, ln2 * float(physiology.tau_off[runner]), rtol=0.1)
        assert down > up  # recovery is slower than onset


def test_vo2_is_held_per_breath(simulated):
    cohort, _ = simulated
    for vo2, length in zip(np.asarray(cohort.vo2), np.asarray(cohort.lengths), strict=True):
        lengths = runs(vo2[:length])[1:-1]  # the last breath is cut by the session end
        assert lengths.min() >= 2 and lengths.max() <= 4
        assert 0.3 < 1.0 / lengths.mean() < 0.5


def test_vo2_slow_component_above_threshold_only(simulated):
    _, physiology = simulated
    threshold = speed_at_intensity(physiology, 1.0) / physiology.threshold_speed
    p = physiology[int(np.argmax(threshold))]  # lowest threshold: room under the ceiling
    assert float(p.threshold_speed / speed_at_intensity(p, 1.0)) < 0.8
    for factor in (0.8, 1.06):
        speed = jnp.full(1800, factor * p.threshold_speed)
        vo2 = np.asarray(vo2_response(p, speed, jnp.zeros_like(speed)))
        demand = REST_VO2 + float(p.economy * 0.2 * 60.0 * speed[0])
        excess = demand - (REST_VO2 + float(p.economy * 0.2 * 60.0 * p.threshold_speed))
        steady = vo2[-1] / float(p.weight)
        if factor < 1.0:  # phase II only: VO2 settles on the demand
            np.testing.assert_allclose(steady, demand, rtol=1e-4)
        else:  # plus a slow component that took minutes to build
            np.testing.assert_allclose(steady, demand + float(p.slow_gain) * excess, rtol=0.02)
            assert vo2[-1] - vo2[240] > 0.25 * float(p.slow_gain * p.weight) * excess
        assert vo2.max() <= float(p.vo2max * p.weight)


def test_cardiac_drift_in_long_runs(simulated):
    cohort, physiology = simulated
    hr, mask = np.asarray(cohort.hr), np.asarray(cohort.mask)
    for i in np.flatnonzero(np.array(cohort.workouts) == "long"):
        length = int(cohort.lengths[i])
        rate = float(physiology.drift_rate[int(cohort.runner[i])])
        early = hr[i, 840:960][mask[i, 840:960]].mean()  # minute 15
        late = hr[i, length - 600 : length][mask[i, length - 600 : length]].mean()
        expected = rate * (length - 300 - 900) / 60.0  # bpm per minute above 60 % VO2R
        assert 0.6 * expected < late - early < 1.4 * expected
    # On a constant flat run just above the drift intensity the rise is exactly linear.
    p = physiology[0]
    speed = jnp.full(3600, speed_at_intensity(p, DRIFT_INTENSITY + 0.02))
    hr = np.asarray(heart_rate_response(p, speed, jnp.zeros_like(speed), p.hr_rest))
    np.testing.assert_allclose(hr[3300] - hr[900], float(p.drift_rate) * 40.0, rtol=1e-3)


def test_workouts_look_like_their_names(sessions):
    truth, p = sessions
    speed = {name: truth.speed[w] for w, name in enumerate(WORKOUTS)}
    v_max = float(speed_at_intensity(p, 1.0))
    assert np.all(np.abs(np.diff(truth.speed, axis=1)) < 1.5)  # accelerations over seconds
    assert speed["race_1500"].max() > 1.05 * v_max and speed["hiit"].max() > 1.1 * v_max
    peak = truth.hr_clean[WORKOUTS.index("incremental")].max()
    assert peak > float(p.hr_rest + 0.93 * (p.hr_max - p.hr_rest))
    hills = truth.grade[WORKOUTS.index("hills")]
    assert hills.max() >= 0.05 and hills.min() <= -0.05
    for flat in ("incremental", "race_1500"):
        np.testing.assert_array_equal(truth.grade[WORKOUTS.index(flat)], 0.0)
    assert np.abs(truth.grade[WORKOUTS.index("easy")]).max() < 0.025
    for repeats in ("intervals", "hiit", "hills"):
        jumps = np.abs(np.diff(speed[repeats])) > 0.3
        assert np.sum(jumps) >= 4
