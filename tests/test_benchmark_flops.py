"""`benchmarks/flops.py`'s analytic FLOP count, which bounds VO2 where XLA cannot count."""

import importlib.util
import sys
from pathlib import Path

import jax
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow  # compiles each model's one-second program and a rollout


def _load(name: str):
    """A benchmark script as a module, by path (`benchmarks/` holds no package; its scripts
    import `common` by its bare name, so that one is loaded first)."""
    if name in sys.modules:
        return sys.modules[name]
    if name != "common":
        _load("common")
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


flops = _load("flops")
common = _load("common")


@pytest.mark.parametrize("name", ["Kalman (128, 2)", "ODE (128, 2)"])
def test_matrix_flops_match_xla_count(name):
    """2 FLOPs per matrix weight per second against XLA's count of the one-second program, for
    the models that have one."""
    model, n_in = common.hr_models(jax.random.key(0))[name]
    counted = flops.flops(model, 4, 60, n_in)[0] / 60 / 4
    assert abs(flops.matrix_flops(model) / counted - 1.0) < 0.02
