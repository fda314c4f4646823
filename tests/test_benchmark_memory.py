"""Every HR model's gradient through a 2 h generative session at batch 64 fits in 2 GB when
it is rematerialised each minute (`run_stream(checkpoint_every=60)`), where the plain rollout
of the GRU models needs several: XLA's buffer assignment of the compiled gradients
(`benchmarks/memory.py`; compiled, never run)."""

import jax
import pytest

from tests.scripts import load_script

memory = load_script("benchmarks", "memory")
common = load_script("benchmarks", "common")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Kalman (128, 2)", "ODE (128, 2)", "personalised ODE"])
def test_the_gradient_through_two_hours_at_batch_64_fits_in_2_gb(name):
    model, n_in = common.hr_models(jax.random.key(0))[name]
    _, _, temp, io = memory.compiled_gradient(model, n_in, 64, 7200, 60)
    assert temp + io < 2.0, (name, temp + io)
    if name != "personalised ODE":  # the GRU models need the rematerialisation to get there
        _, _, temp, io = memory.compiled_gradient(model, n_in, 64, 7200, None)
        assert temp + io > 4.0, (name, temp + io)
