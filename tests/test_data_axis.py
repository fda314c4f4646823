"""A training batch split over a mesh's "data" axis (`sharding.map_batch`): the HR, VO2 and
personalised-ODE losses and their gradients equal the one-device ones, and the compiled
gradient sums the weights' cotangents over the data devices once, after the model's scans,
not at every step inside them (where the partitioner, given only the batch's sharding, puts
them for the GRU models). Two virtual CPU devices in a subprocess (the device count is fixed
when JAX starts)."""

import json
import textwrap

import pytest

from tests.scripts import run_on_devices

SCRIPT = textwrap.dedent(
    """
    import json
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from tests.scripts import load_script
    from wearjax.cv import compile_folds, make_mesh
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.sharding import batch_mesh
    from wearjax.models.hr_personalized import PersonalHRODE
    from wearjax.models.vo2 import build_vo2_model
    from wearjax.tasks import hr_personal, vo2 as vo2_study
    from wearjax.tasks.hr import HRStudyConfig, build_model, make_task, prepare
    from wearjax.tasks.hr_study import _kind_fit
    from wearjax.train.loop import TrainConfig

    assert len(jax.devices()) == 2
    B, T, F = 4, 180, 8
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    hr = jnp.asarray(120 + 20 * np.sin(np.arange(T) / 30.0 + np.arange(B)[:, None]), jnp.float32)
    mask = jnp.asarray(rng.random((B, T)) > 0.2)
    keys = jax.random.split(jax.random.key(1), B)
    mesh = make_mesh(1, 2)
    split = NamedSharding(mesh, P("data"))

    # loop bodies (computations other than the entry one) holding an all-reduce
    loops_with_all_reduce = load_script("benchmarks", "data_axis").loops_with_all_reduce

    vo2_task = vo2_study.make_task(vo2_study.VO2StudyConfig(), T)
    hr_task = make_task(HRStudyConfig(crps_weight=0.5), T)
    vo2 = 1500 + 10 * (hr - 120)
    length = jnp.full((B,), T, jnp.int32)

    out = {}
    personal_task = hr_personal.make_task(hr_personal.PersonalConfig())
    runner = jnp.asarray([0, 1, 2, 1])
    for kind in ("kalman", "ode", "vo2", "personal"):
        if kind == "vo2":
            model = build_vo2_model(F, (16, 1), key=jax.random.key(0))
        elif kind == "personal":  # Diffrax asked for: the split runs the scan engine
            model = PersonalHRODE(3, 4, 8, window=60, engine="diffrax", key=jax.random.key(0))
        else:
            model = build_model(kind, F, 16, 1, window=60, key=jax.random.key(0))
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def loss(p, x, hr, mask, keys):
            m = eqx.combine(p, static)
            if kind == "personal":  # two activity inputs, the HR SD of the training runs
                batch = (x[..., :2], hr, mask, runner, jnp.float32(15.0))
                return personal_task.loss(m, batch, keys[0], 0)[0]
            if kind == "vo2":  # the VO2 task's loss on the same inputs, VO2 as the target
                batch = (x, vo2, mask.at[:, 0].set(True), vo2[:, 0], length)
                return vo2_task.loss(m, batch, keys[0], 3)[0]
            return hr_task.loss(m, (x, hr, mask), keys[0], 0)[0]

        grad = jax.jit(jax.value_and_grad(loss))
        plain = grad(params, x, hr, mask, keys)
        args = [jax.device_put(a, split) for a in (x, hr, mask, keys)]
        partitioner = grad.lower(params, *args).compile()
        with batch_mesh(mesh):
            mapped = jax.jit(jax.value_and_grad(loss)).lower(params, *args).compile()
        got = mapped(params, *args)
        with batch_mesh(mesh):
            jaxpr = str(jax.make_jaxpr(jax.value_and_grad(loss))(params, *args))
        leaves = lambda g: jax.tree_util.tree_leaves(g[1])
        rel = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
            for a, b in zip(leaves(plain), leaves(got))
        )
        out[kind] = {
            "value": [float(plain[0]), float(got[0])],
            "grad_rel": rel,
            "loops_partitioner": loops_with_all_reduce(partitioner),
            "loops_mapped": loops_with_all_reduce(mapped),
            "shard_map": "shard_map" in jaxpr,
        }

    # the trainer's own epoch, traced on a 1 x 2 mesh: the HR task's split is map_batch's
    cohort = simulate_cohort(
        jax.random.key(0), n_runners=4, sessions_per_runner=2, min_minutes=6, max_minutes=8
    )
    config = HRStudyConfig(
        models=(("kalman", 16, 1),), train=TrainConfig(epochs=1, steps_per_epoch=2),
        batch_size=4, runners_out=1, seed=0,
    )
    fit_args, _ = _kind_fit(cohort, config, "kalman", 16, 1, prepare(cohort, config))
    program = compile_folds(*fit_args, mesh=mesh, compile=False)
    epoch = program.epoch.lower(program.state, program.folds, program.data).compile()
    out["trainer_loops"] = loops_with_all_reduce(epoch)
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_a_batch_split_over_data_devices_sums_the_gradient_once_and_equals_one_device():
    # 428 s in a fresh-clone CI run on busy cores: the timeout catches a hang, not a slow day
    out = json.loads(run_on_devices(SCRIPT, 2, timeout=1200).strip().splitlines()[-1])
    # the epoch compile_folds builds on a data axis: one loop holds all-reduces, its scan over
    # training steps (the gradient summed once a step); left to the partitioner, the model's
    # scans inside it held them too (5 loop bodies)
    assert len(out.pop("trainer_loops")) == 1
    for kind, got in out.items():
        assert got["shard_map"], kind  # split by map_batch, not left to vmap
        plain, mapped = got["value"]
        assert abs(plain - mapped) <= 1e-5 * abs(plain), kind
        assert got["grad_rel"] < 1e-4, (kind, got["grad_rel"])
        assert got["loops_mapped"] == [], (kind, got["loops_mapped"])
        if kind != "personal":  # what map_batch removes: all-reduces in the GRU models' loops
            assert got["loops_partitioner"], kind
