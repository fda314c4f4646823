"""HR models one second at a time: the stream equals the whole-session programs, and its
exported form reloads in a fresh process."""

import json
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.models import HRODE, HRKalman, PersonalHRODE
from wearjax.models.stream import write_stream

W, N = 12, 5  # short windows keep the sessions small


def _f64(model):
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model
    )


def _session(n_features=5, dtype=jnp.float64):
    x = jax.random.normal(jax.random.key(1), (N * W, n_features), dtype)
    hr = 135.0 + 15.0 * jnp.sin(jnp.arange(N * W, dtype=dtype) / 7.0)
    return x, hr


def _kalman():
    model = HRKalman(5, hidden=8, n_layers=2, window=W, key=jax.random.key(0))
    return eqx.tree_at(lambda m: m.carry_noise, model, jnp.asarray(1.0))  # measurements matter


def _ode(engine):
    model = HRODE(5, 8, 2, window=W, engine=engine, key=jax.random.key(3))
    return eqx.tree_at(
        lambda m: (m.level.weight, m.rate.weight, m.rate.bias, m.demand.out.weight),
        model,
        (
            300 * model.level.weight,
            jnp.ones_like(model.rate.weight),
            jnp.full_like(model.rate.bias, 3.0),  # quick dynamics: HR moves within the windows
            300 * model.demand.out.weight,
        ),
    )


def _at_window_starts(hr):
    return jnp.where(jnp.arange(hr.shape[0]) % W == 0, hr, jnp.nan)


@pytest.mark.slow  # ~25 s on 2 cores
def test_kalman_stream_is_the_rollout_and_the_assimilation(x64):
    model = _f64(_kalman())
    x, hr = _session()
    rollout, stream = model.rollout(x, hr[0]), model.run_stream(x, hr[0])
    np.testing.assert_allclose(stream.hr, rollout.hr, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(stream.var, rollout.var, rtol=1e-12, atol=1e-12)
    measured = ((jnp.arange(N * W) % 5 == 0) & (jnp.arange(N * W) < 40)).at[0].set(True)
    assim = model.assimilate(x, hr, measured)
    stream = model.run_stream(x, hr[0], jnp.where(measured, hr, jnp.nan))
    np.testing.assert_allclose(stream.hr, assim.hr, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(stream.var, assim.var, rtol=1e-12, atol=1e-12)
    assert np.abs(np.asarray(assim.hr - rollout.hr)).max() > 1.0  # the measurements mattered


@pytest.mark.slow  # ~25 s on 2 cores
def test_float32_stream_within_1e5_of_the_scan():
    model = _kalman()
    x, hr = _session(dtype=jnp.float32)
    rollout, stream = model.rollout(x, hr[0]), eqx.filter_jit(model.run_stream)(x, hr[0])
    np.testing.assert_allclose(stream.hr, rollout.hr, rtol=1e-5)


def _personal_runner():
    model = _f64(PersonalHRODE(3, 4, 8, window=W, key=jax.random.key(2)))
    return model.for_runner(model.embedding[1])


def _activity():
    rng = np.random.default_rng(3)
    speed, grade = rng.uniform(2, 4.5, N), rng.uniform(-0.05, 0.05, N)
    return jnp.asarray(np.stack([np.repeat(speed, W), np.repeat(grade, W)], -1))


@pytest.mark.parametrize(
    ("name", "build", "inputs", "moved"),
    [
        pytest.param(  # ~25 s on 2 cores
            "ode, diffrax",
            lambda: _f64(_ode("diffrax")),
            lambda: _session()[0],
            2.0,
            marks=pytest.mark.slow,
        ),
        ("ode, scan", lambda: _f64(_ode("scan")), lambda: _session()[0], 2.0),
        ("personalised ode", _personal_runner, _activity, 1.0),
    ],
)
def test_ode_streams_are_the_rollout_and_the_standard_protocol(x64, name, build, inputs, moved):
    """The ODEs restart from a measured HR: measured at every window start, that is the
    standard protocol."""
    model, x, (_, hr) = build(), inputs(), _session()

    @eqx.filter_jit  # one program, not one per operation
    def run(model, x, hr, measured):
        return (model.rollout(x, hr[0]), model.run_stream(x, hr[0]),
                model(x, hr.reshape(N, W)[:, 0]), model.run_stream(x, hr[0], measured))  # fmt: skip

    rollout, free, standard, stream = run(model, x, hr, _at_window_starts(hr))
    np.testing.assert_allclose(free.hr, rollout.hr, rtol=1e-10)
    np.testing.assert_allclose(stream.hr, standard.hr, rtol=1e-10)
    assert np.ptp(np.asarray(rollout.hr)) > moved  # the dynamics moved HR: not a trivial check


def test_a_step_is_causal_and_compiles_once():
    model = _kalman()
    x, hr = _session(dtype=jnp.float32)
    traces = []

    @eqx.filter_jit
    def step(state, x_t, hr_t):
        traces.append(1)
        return model.step(state, x_t, hr_t)

    state, outputs = model.init_stream(hr[0]), []
    for t in range(2 * W):  # a watch's loop, one second at a time
        state, h, _ = step(state, x[t], jnp.asarray(jnp.nan, jnp.float32))
        outputs.append(float(h))
    assert len(traces) == 1
    later = model.run_stream(x.at[2 * W :].set(100.0), hr[0]).hr[: 2 * W]  # future changed
    np.testing.assert_allclose(outputs, later, rtol=1e-5)


RELOAD = """
import json, sys
import jax.numpy as jnp
import numpy as np
from wearjax.models.stream import load_stream
init, step = load_stream(sys.argv[1])
x = np.load(sys.argv[2])
state, out = init(jnp.asarray(float(sys.argv[3]), jnp.float32)), []
for t in range(x.shape[0]):
    state, h, v = step(state, jnp.asarray(x[t]), jnp.asarray(jnp.nan, jnp.float32))
    out.append([float(h), float(v)])
print(json.dumps(out))
"""


# the ODE's case in the slow step: a second fresh process (~5 s on 2 cores), the same export
@pytest.mark.parametrize("kind", ["kalman", pytest.param("ode", marks=pytest.mark.slow)])
def test_exported_stream_reloads_in_a_fresh_process(tmp_path, kind):
    model = _kalman() if kind == "kalman" else _ode("diffrax")
    x, hr = _session(dtype=jnp.float32)
    path = write_stream(tmp_path / "stream.npz", model, 5)
    np.save(tmp_path / "x.npy", np.asarray(x))
    run = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), str(tmp_path / "x.npy"), str(float(hr[0]))],
        capture_output=True,
        text=True,
        check=True,
    )
    out = np.asarray(json.loads(run.stdout))
    want = model.run_stream(x, hr[0])
    np.testing.assert_allclose(out[:, 0], want.hr, rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], want.var, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ~35 s on 2 cores
def test_gradients_stay_finite_with_nan_where_nothing_was_measured():
    """Unmeasured seconds may hold NaN (a stream's "no HR"): the forward pass masks them, and
    so must the backward pass."""
    model = _kalman()
    x, hr = _session(dtype=jnp.float32)
    measured = (jnp.arange(N * W) % 7 == 0).at[0].set(True)
    gappy = jnp.where(measured, hr, jnp.nan)

    def loss(m):
        return jnp.mean(m.assimilate(x, gappy, measured).hr) + jnp.mean(
            m.run_stream(x, hr[0], gappy).hr
        )

    grads = eqx.filter_grad(loss)(model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


def test_loading_something_else_is_refused_naming_the_file(tmp_path):
    from wearjax.errors import WearjaxFileError
    from wearjax.models.stream import load_stream

    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    np.savez(
        tmp_path / "garbled.npz", init=np.arange(64, dtype=np.uint8), step=np.zeros(8, np.uint8)
    )
    whole = tmp_path / "weights.npz"
    (tmp_path / "half.npz").write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    names = ("none.npz", "weights.npz", "garbled.npz", "half.npz")  # the last two: tracebacks
    for path in (tmp_path / name for name in names):
        with pytest.raises(WearjaxFileError, match=f"{path.name}.*write_stream"):
            load_stream(path)


@pytest.mark.slow  # three float64 gradients per model: ~80 s on 2 cores
@pytest.mark.parametrize(
    ("name", "build", "inputs"),
    [
        ("kalman", lambda: _f64(_kalman()), lambda: _session()[0]),
        ("ode, scan", lambda: _f64(_ode("scan")), lambda: _session()[0]),
        ("personalised ode", _personal_runner, _activity),
    ],
)
def test_checkpointed_stream_has_the_rollouts_values_and_gradient(x64, name, build, inputs):
    """`run_stream(checkpoint_every=W)` rematerialises each chunk in the backward pass (the
    memory of a gradient through a 2 h session: `benchmarks/memory.py`); its values and its
    gradient are those of the whole-session rollout (float64)."""
    model, x, (_, hr) = build(), inputs(), _session()
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p, how):
        m = eqx.combine(p, static)
        if how == "rollout":
            pred = m.rollout(x, hr[0])
        else:
            pred = m.run_stream(x, hr[0], checkpoint_every=how)
        return jnp.mean(jnp.abs(pred.hr - hr)), pred.hr

    grads, values = {}, {}
    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    for how in ("rollout", W, 20):  # chunks at and between window starts
        (_, values[how]), grads[how] = value_and_grad(params, how)
    for how in (W, 20):
        np.testing.assert_allclose(values[how], values["rollout"], rtol=1e-10)
        for a, b in zip(
            jax.tree.leaves(grads[how]), jax.tree.leaves(grads["rollout"]), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["rollout"])) > 1e-4
    with pytest.raises(ValueError, match="not a multiple"):
        model.run_stream(x, hr[0], checkpoint_every=7)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


@eqx.filter_jit  # one program per model and dtype, not one per operation; promotion is traced
def _protocols(model, x, hr):
    """Every whole-session program of `model` and its stream, with HR measured at the window
    starts (and, for the Kalman model, assimilated every 5 s)."""
    out = {
        "rollout": model.rollout(x, hr[0]),
        "standard": model(x, hr.reshape(N, W)[:, 0]),
        "stream": model.run_stream(x, hr[0], _at_window_starts(hr)),
    }
    if isinstance(model, HRKalman):
        measured = (jnp.arange(N * W) % 5 == 0).at[0].set(True)
        out["assimilate"] = model.assimilate(x, hr, measured)
    return out


# standard promotion in the slow step: the six cases take about a minute cold on 2 cores
@pytest.mark.parametrize("promotion", ["strict", pytest.param("standard", marks=pytest.mark.slow)])
# in the fast suite one direction for each of the Kalman and personalised models (a float64
# Kalman model on float32 data, a float32 personalised one on float64 data); the other
# directions (~10 s cold each on 2 cores) and the ODE's (4-5 s each) run in the slow step
@pytest.mark.parametrize(
    ("name", "build", "inputs", "model_dtype", "data_dtype"),
    [
        ("kalman", _kalman, lambda: _session()[0], jnp.float64, jnp.float32),
        pytest.param("kalman", _kalman, lambda: _session()[0], jnp.float32, jnp.float64,
                     marks=pytest.mark.slow),
        pytest.param("ode, scan", lambda: _ode("scan"), lambda: _session()[0], jnp.float64,
                     jnp.float32, marks=pytest.mark.slow),
        pytest.param("ode, scan", lambda: _ode("scan"), lambda: _session()[0], jnp.float32,
                     jnp.float64, marks=pytest.mark.slow),
        pytest.param("personalised ode", _personal_runner, _activity, jnp.float64, jnp.float32,
                     marks=pytest.mark.slow),
        ("personalised ode", _personal_runner, _activity, jnp.float32, jnp.float64),
    ],
)  # fmt: skip
def test_mixed_model_and_data_dtypes_compute_in_the_models(
    x64, name, build, inputs, model_dtype, data_dtype, promotion
):
    """A model computes in its parameters' dtype whatever its inputs' (x, hr0, hr_init, x_t,
    hr_t): a float64 model on float32 data, and a float32 one on float64 data, run (under
    strict and standard promotion: the scans' carries keep one dtype) and give the model's
    own-dtype results on the same data."""
    model = _cast(build(), model_dtype)
    x = inputs().astype(jnp.float32)  # float32 values: exact in both dtypes
    hr = _session(dtype=jnp.float32)[1]
    want = _protocols(model, x.astype(model_dtype), hr.astype(model_dtype))
    with jax.numpy_dtype_promotion(promotion):
        got = _protocols(model, x.astype(data_dtype), hr.astype(data_dtype))
    for protocol, prediction in got.items():
        assert prediction.hr.dtype == prediction.var.dtype == model_dtype, protocol
        np.testing.assert_allclose(
            prediction.hr, want[protocol].hr, rtol=1e-5, err_msg=f"{name}: {protocol}"
        )
        np.testing.assert_allclose(
            prediction.var, want[protocol].var, rtol=1e-5, atol=1e-6, err_msg=protocol
        )
