"""How many seconds per iteration the GRU's rollout scan should run (`backbone.ROLLOUT_UNROLL`).

XLA's while loop on CPU pays a fixed cost per iteration (the loop's condition, its buffers'
bookkeeping, one launch per kernel); a GRU step at hidden 128 is small enough for that to
matter. `lax.scan(..., unroll=n)` runs n seconds per iteration. For each HR model at the
published (128, 2) size, the generative rollout (`jax.vmap(model.rollout)`, the path `predict`,
evaluation and validation take; gradients go through the sliced layout, which this setting
does not touch) is compiled and timed at each unroll, and its output compared with `unroll=1`:
the script stops if a single bit differs.

    python benchmarks/unroll.py                    # batch 1, 64, 1024; ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from common import hr_models, machine, write_results

from wearjax.models import backbone

UNROLLS = (1, 2, 4, 8, 16)
CASES = ((1, 7200), (64, 7200), (1024, 600))  # (batch, seconds)


def time_rollout(model, n_inputs: int, batch: int, seconds: int, repeats: int = 3):
    """(compile s, median run s, output) of the batched rollout at the current unroll."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, seconds, n_inputs)).astype(np.float32)
    hr0 = np.full((batch,), 120.0, np.float32)

    def rollout(m, xs, h0):
        return jax.vmap(lambda xi, hi: m.rollout(xi, hi).hr)(xs, h0)

    start = time.perf_counter()
    compiled = jax.jit(rollout).lower(model, x, hr0).compile()
    compile_s = time.perf_counter() - start
    out = jax.block_until_ready(compiled(model, x, hr0))  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(model, x, hr0))
        runs.append(time.perf_counter() - start)
    return compile_s, statistics.median(runs), np.asarray(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "unroll_cpu.md"
    )
    args = parser.parse_args(argv)
    chosen = backbone.ROLLOUT_UNROLL
    models = {k: v for k, v in hr_models(jax.random.key(0)).items() if "(128, 2)" in k}
    rows = [
        "| model | batch x seconds | unroll | compile (s) | run (s) | session-s per s | "
        "vs unroll 1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    try:
        for name, (model, n_inputs) in models.items():
            for batch, seconds in CASES:
                base = reference = None
                for n in UNROLLS:
                    backbone.ROLLOUT_UNROLL = n
                    compile_s, run_s, out = time_rollout(model, n_inputs, batch, seconds)
                    if reference is None:
                        base, reference = run_s, out
                    elif not np.array_equal(out, reference):
                        raise AssertionError(f"{name}: unroll {n} changed the rollout's values")
                    rows.append(
                        f"| {name} | {batch} x {seconds} | {n} | {compile_s:.2f} | {run_s:.3f} | "
                        f"{batch * seconds / run_s:,.0f} | {base / run_s:.2f}x |"
                    )
                    print(rows[-1], flush=True)
    finally:
        backbone.ROLLOUT_UNROLL = chosen
    write_results(
        args.out,
        "GRU rollout scan: seconds per loop iteration",
        f"`python benchmarks/unroll.py`; {machine()}; float32, median of 3 runs after a warm-up, "
        "one run on a shared machine. Every unroll's output equals unroll 1's bit for bit "
        f"(asserted). wearjax uses `backbone.ROLLOUT_UNROLL = {chosen}`.",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
