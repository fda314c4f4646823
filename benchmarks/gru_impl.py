"""The HR models' training step with each GRU implementation (`models.backbone.GRU_IMPLS`):
JAX's derivative of the scan ("autodiff", the published figures' rounding) against the
hand-written reverse pass ("manual", the quick demo's).

One training step is the value and gradient of the HR task's loss (`tasks.hr._segment_loss`:
both protocols, the CRPS term and dropout as `HRStudyConfig`'s defaults) on a batch of whole
sessions, as the demo trains: the Kalman and ODE models at the published sizes on the demo's 8
features, the ODE on the scan engine as the quick demo runs it. Per configuration the two
implementations are compiled in the same process, then timed in alternation (median of the
rounds), so the ratio is measured in one run; the table gives the largest difference between
their gradients (relative to each leaf's largest value), asserted under 1e-3.

A first table times the recurrent product alone, a scan of `tanh(W_hh h + x)` vmapped over a
batch, written `W_hh @ h` (the default layer) and `h @ W_hh^T` with `W_hh^T` made once before
the loop (the manual one).

    python benchmarks/gru_impl.py        # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from common import machine, write_results

from wearjax.tasks.hr import HRStudyConfig, _segment_loss, build_model

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
    keys = jax.random.split(jax.random.key(2), batch)  # dropout, the same for both
    config = HRStudyConfig()

    def loss(p):
        m = eqx.combine(p, static)
        return _segment_loss(m, x, hr, mask, keys, config.generative_weight, config.crps_weight)

    t0 = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    return compiled, params, time.perf_counter() - t0


def measure(batch: int, seconds: int, rounds: int) -> list[str]:
    rows = []
    for kind, hidden, layers in SIZES:
        steps = {i: _step(kind, hidden, layers, i, batch, seconds) for i in ("autodiff", "manual")}
        outs = {i: jax.block_until_ready(c(p)) for i, (c, p, _) in steps.items()}
        pairs = zip(*(jax.tree.leaves(outs[i][1]) for i in outs), strict=True)
        diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in pairs)
        assert diff < 1e-3, f"gradients disagree: {diff:.1e}"
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
            f"{steps['autodiff'][2]:.1f} / {steps['manual'][2]:.1f} | {diff:.0e} |"
        )
        print(rows[-1], flush=True)
    return rows


def product(batch: int, variant: str, hidden: int = 128, seconds: int = 1200) -> float:
    """Microseconds per second of a scan of the recurrent product, vmapped over `batch`."""
    w = 0.05 * jax.random.normal(jax.random.key(0), (3 * hidden, hidden))
    h0 = jax.numpy.zeros((batch, hidden))
    xs = jax.random.normal(jax.random.key(1), (batch, seconds, 3 * hidden))

    def sequence(h, x):
        w_t = w.T

        def step(h, x_t):
            h = jax.numpy.tanh((w @ h if variant == "W_hh @ h" else h @ w_t) + x_t)[:hidden]
            return h, h

        return jax.lax.scan(step, h, x)[1]

    run = jax.jit(jax.vmap(sequence)).lower(h0, xs).compile()
    jax.block_until_ready(run(h0, xs))
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        jax.block_until_ready(run(h0, xs))
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gru_impl_cpu.md"))
    args = parser.parse_args()
    products = ["| batch | `W_hh @ h` (us per second) | `h @ W_hh^T` (us per second) |",
                "|---:|---:|---:|"]  # fmt: skip
    for batch in (1, 2, 4):
        a, b = product(batch, "W_hh @ h"), product(batch, "h @ W_hh^T")
        products.append(f"| {batch} | {a:.2f} | {b:.2f} |")
        print(products[-1], flush=True)
    head = [
        "| model | batch | autodiff (ms) | manual (ms) | autodiff / manual | compile (s) | "
        "gradient difference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    # the quick demo's batch (2 whole 20 min sessions), the full demo's (1), and a larger batch
    rows = [*measure(2, 1200, args.rounds), *measure(1, 1200, args.rounds)]
    rows += measure(16, 600, max(3, args.rounds // 3))
    write_results(
        args.out,
        "HR training step by GRU implementation",
        f"`python benchmarks/gru_impl.py`; {machine()}; one run on a shared machine. First: the "
        "recurrent product alone (hidden 128, 1200 s). Then the value and gradient of the HR "
        "loss (both protocols), median over alternating rounds; compile: seconds to compile "
        "the step, autodiff / manual; gradient difference: the largest over the leaves, "
        "relative to the leaf's largest value.",
        products,
        head + rows,
    )


if __name__ == "__main__":
    main()
