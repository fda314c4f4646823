"""Cross-validation sharded over a device mesh equals the unsharded run: 8 virtual CPU devices
in a subprocess (the device count is fixed when JAX starts), folds over the mesh's "fold" axis
and each training batch over its "data" axis."""

import json
import textwrap

import numpy as np
import pytest

from tests.scripts import run_on_devices

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from wearjax.cv import default_mesh, make_mesh, spread_folds
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.tasks.hr import HRStudyConfig
    from wearjax.tasks.hr_study import run_hr_study
    from wearjax.train.loop import TrainConfig

    assert len(jax.devices()) == 8
    cohort = simulate_cohort(
        jax.random.key(0), n_runners=4, sessions_per_runner=2, min_minutes=6, max_minutes=8
    )
    config = HRStudyConfig(
        models=(("kalman", 16, 1), ("ode", 16, 1)), train=TrainConfig(epochs=2, steps_per_epoch=3),
        batch_size=4, runners_out=1, seed=0,
    )
    # the CLI's default: folds over as many CPU devices as divide their number
    assert default_mesh(4) is None  # only inside spread_folds
    with spread_folds():
        assert default_mesh(1) is None and default_mesh(6).shape["fold"] == 6
        assert default_mesh(12).shape["fold"] == 6  # the most of the 8 that share 12 evenly
        assert dict(default_mesh(4).shape) == {"fold": 4, "data": 1}
    out = {}
    for name, shape in (("single", None), ("fold4_data2", (4, 2)), ("spread", "cpus")):
        if shape is None:
            results, pred = run_hr_study(cohort, config, progress=False)
        elif shape == "cpus":
            with spread_folds():
                results, pred = run_hr_study(cohort, config, progress=False)
        else:
            with jax.set_mesh(make_mesh(*shape)):
                results, pred = run_hr_study(cohort, config, progress=False)
        out[name] = {
            m: {p: results["models"][m][p]["mae"] for p in ("standard", "generative")}
            for m in ("kalman_16x1", "ode_16x1")
        }
        out[name + "_pred"] = np.asarray(pred["kalman_16x1"]["generative"]).tolist()
        out[name + "_engine"] = results["config"].get("ode_engine_in_training")
    print(json.dumps(out))
    """
)


@pytest.mark.heavy  # ~7 min on 2 cores
@pytest.mark.slow
def test_sharded_cross_validation_equals_the_unsharded_run():
    out = json.loads(run_on_devices(SCRIPT, 8, timeout=900).strip().splitlines()[-1])
    # on a data axis the ODE trains on the scan engine (sharding.map_batch), and says so
    assert (out["fold4_data2_engine"], out["spread_engine"]) == ("scan", None)
    for mesh in ("fold4_data2", "spread"):
        for model, maes in out["single"].items():
            for protocol, mae in maes.items():
                assert abs(out[mesh][model][protocol] - mae) < 1e-3 * mae, (mesh, model, protocol)
        np.testing.assert_allclose(out[mesh + "_pred"], out["single_pred"], rtol=1e-4, atol=1e-3)
