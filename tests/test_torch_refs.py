"""The PyTorch references of `benchmarks/torch_refs.py` compute what wearjax computes.

Each reference gets the Equinox model's weights (perturbed away from their near-zero initial
heads) and the same inputs; its generative rollout and the gradient of the benchmark's training
loss must agree with wearjax's: to rounding in float64, and to 1e-4 (rollouts) and 1e-3
(gradients) of the output's scale in float32, where the two frameworks round differently.
Skipped without torch and torchdiffeq (`pip install -e .[bench]`).
"""

from __future__ import annotations

import os

import pytest

from tests.scripts import load_script

# as in the benchmark: OpenMP threads that sleep, not spin, on a machine other jobs share
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch = pytest.importorskip("torch")
pytest.importorskip("torchdiffeq")


bench = load_script("benchmarks", "torch_vs_jax")

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


def test_train_bound_by_hand(monkeypatch):
    """One row of the training bound worked by hand: 10^6 matrix weights (the bias vector does
    not count), batch 10 x 100 s: 3 x 2 x 10^6 x 1,000 = 6 GFLOP per step; at 100 GFLOP/s a
    step could take 60 ms, so a torch step of 600 ms (10 GFLOP/s) bounds the ratio at 10x;
    wearjax at 300 ms is 2.0x, 20 GFLOP/s, 20% of the rate."""
    import equinox as eqx
    import jax.numpy as jnp

    class Toy(eqx.Module):
        w: jnp.ndarray
        b: jnp.ndarray

    monkeypatch.setattr(bench, "build", lambda name: Toy(jnp.zeros((1000, 1000)), jnp.zeros(7)))
    monkeypatch.setitem(bench.TRAIN_S, "ode", (0.3, 0.6, 10, 100))
    row = bench.train_ceiling_rows(["ode"], 100.0)[-1]
    assert row == f"| {bench.LABELS['ode']} | 6.0 | 20 | 20% | 10 | 2.0x | 10.0x |"
