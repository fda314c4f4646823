"""The PyTorch references of `benchmarks/torch_refs.py` compute what wearjax computes.

Each reference gets the Equinox model's weights (perturbed away from their near-zero initial
heads) and the same inputs; its generative rollout and the gradient of the benchmark's training
loss must agree with wearjax's: to rounding in float64, and to 1e-4 (rollouts) and 1e-3
(gradients) of the output's scale in float32, where the two frameworks round differently.
Skipped without torch and torchdiffeq (`pip install -e .[bench]`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# as in the benchmark: OpenMP threads that sleep, not spin, on a machine other jobs share
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch = pytest.importorskip("torch")
pytest.importorskip("torchdiffeq")


def _load(path: Path):
    """A benchmark script as a module, by path (`benchmarks/` holds no package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


bench = _load(Path(__file__).resolve().parents[1] / "benchmarks" / "torch_vs_jax.py")

pytestmark = pytest.mark.slow  # a few seconds per model and precision (compiles)

BATCH, LENGTH = 2, 180


@pytest.mark.parametrize("name", bench.MODELS)
def test_float32_agrees(name):
    a = bench.agreement(name, BATCH, LENGTH)
    assert a["out_rel"] <= bench.OUT_RTOL, a
    assert a["grad_rel"] <= bench.GRAD_RTOL, a


@pytest.mark.parametrize("name", bench.MODELS)
def test_float64_is_the_same_computation(name, x64):
    a = bench.agreement(name, BATCH, LENGTH, dtype=torch.float64)
    assert a["out_rel"] <= 1e-12, a
    assert a["grad_rel"] <= 1e-9, a


def test_vo2_window_statistics():
    import jax
    import numpy as np

    model = bench.build("vo2")
    ref = bench.torch_refs.from_wearjax(model)
    (x, v0), _ = bench.inputs("vo2", BATCH, LENGTH)
    ours = jax.vmap(model.rollout)(x, v0)
    with torch.no_grad():
        _, theirs = ref.rollout(torch.from_numpy(x), torch.from_numpy(v0))
    for a, b in zip((ours.mu, ours.sigma, ours.delta95), theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-2)


def test_an_unknown_model_has_no_reference():
    with pytest.raises(TypeError, match="no PyTorch reference"):
        bench.torch_refs.from_wearjax(object())
