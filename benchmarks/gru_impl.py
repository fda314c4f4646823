"""The HR models' training step with each GRU implementation (`models.backbone.GRU_IMPLS`):
JAX's derivative of the scan ("autodiff", the published figures' rounding) against the
hand-written reverse pass ("manual", the quick demo's).

One training step is the value and gradient of the HR task's loss (`tasks.hr._segment_loss`:
both protocols, no dropout) on a batch of whole sessions, as the demo trains: the Kalman and ODE
models at the published sizes on the demo's 8 features, the ODE on the scan engine as the quick
demo runs it. Per configuration the two implementations are compiled in the same process, then
timed in alternation (median of the rounds), so the ratio is measured in one run; the gradients
are checked to agree to float32 rounding.

    python benchmarks/gru_impl.py        # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from common import machine, write_results

from wearjax.tasks.hr import _segment_loss, build_model

SIZES = (("kalman", 128, 2), ("kalman", 64, 3), ("ode", 128, 2), ("ode", 64, 3))
N_FEATURES, WINDOW = 8, 60


def _step(kind, hidden, layers, impl, batch, seconds):
    """A compiled training step and its arguments."""
    model = build_model(kind, N_FEATURES, hidden, layers, window=WINDOW, key=jax.random.key(0),
                        ode_engine="scan", gru_impl=impl)  # fmt: skip
    params, static = eqx.partition(model, eqx.is_inexact_array)
    k = jax.random.split(jax.random.key(1), 2)
    x = jax.random.normal(k[0], (batch, seconds, N_FEATURES))
    hr = 140.0 + 10.0 * jax.random.normal(k[1], (batch, seconds))
    mask = np.ones((batch, seconds), bool)

    def loss(p):
        return _segment_loss(eqx.combine(p, static), x, hr, mask, None, 1.0)

    t0 = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    return compiled, params, time.perf_counter() - t0


def measure(batch: int, seconds: int, rounds: int) -> list[str]:
    rows = []
    for kind, hidden, layers in SIZES:
        steps = {i: _step(kind, hidden, layers, i, batch, seconds) for i in ("autodiff", "manual")}
        outs = {i: jax.block_until_ready(c(p)) for i, (c, p, _) in steps.items()}
        for a, b in zip(*(jax.tree.leaves(outs[i][1]) for i in outs), strict=True):
            scale = float(np.max(np.abs(a))) + 1e-12
            assert float(np.max(np.abs(a - b))) <= 1e-3 * scale, "gradients disagree"
        times = {i: [] for i in steps}
        for _ in range(rounds):
            for i, (c, p, _) in steps.items():
                t0 = time.perf_counter()
                jax.block_until_ready(c(p))
                times[i].append(time.perf_counter() - t0)
        med = {i: 1e3 * float(np.median(t)) for i, t in times.items()}
        rows.append(
            f"| {kind} ({hidden}, {layers}) | {batch} x {seconds} s | {med['autodiff']:.1f} | "
            f"{med['manual']:.1f} | {med['autodiff'] / med['manual']:.2f}x | "
            f"{steps['autodiff'][2]:.1f} / {steps['manual'][2]:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gru_impl_cpu.md"))
    args = parser.parse_args()
    head = [
        "| model | batch | autodiff (ms) | manual (ms) | autodiff / manual | compile (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    # the quick demo's batch (2 whole 20 min sessions), the full demo's (1), and a larger batch
    rows = [*measure(2, 1200, args.rounds), *measure(1, 1200, args.rounds)]
    rows += measure(16, 600, max(3, args.rounds // 3))
    write_results(
        args.out,
        "HR training step by GRU implementation",
        f"`python benchmarks/gru_impl.py`; {machine()}; one run on a shared machine. Value and "
        "gradient of the HR loss (both protocols), median over alternating rounds; compile: "
        "seconds to compile the step, autodiff / manual.",
        head + rows,
    )


if __name__ == "__main__":
    main()
