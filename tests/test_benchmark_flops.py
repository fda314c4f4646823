"""`benchmarks/flops.py`'s analytic FLOP count, which bounds VO2 where XLA cannot count."""

import jax
import pytest

from tests.scripts import load_script

pytestmark = pytest.mark.slow  # compiles each model's one-second program and a rollout


flops = load_script("benchmarks", "flops")
common = load_script("benchmarks", "common")


@pytest.mark.parametrize("name", ["Kalman (128, 2)", "ODE (128, 2)"])
def test_matrix_flops_match_xla_count(name):
    """2 FLOPs per matrix weight per second against XLA's count of the one-second program, for
    the models that have one."""
    model, n_in = common.hr_models(jax.random.key(0))[name]
    counted = flops.flops(model, 4, 60, n_in)[0] / 60 / 4
    assert abs(flops.matrix_flops(model) / counted - 1.0) < 0.02
