"""How close a batch-1024 generative rollout comes to this CPU's matrix-product rate.

The FLOPs of each HR model's rollout come from XLA's cost analysis
(`compiled.cost_analysis()["flops"]`) of its one-second program (`model.step`, vmapped over
the batch), times the seconds: XLA counts a loop body once whatever its trip count, so its
count of the whole rollout program (also reported) misses most of the recurrent work. The VO2
model (256-2, 13 features) has no one-second program (its GRU is bidirectional): its count is
2 FLOPs per matrix weight per second (`matrix_flops`, within 2% of XLA's count for the HR
models, where both exist). The CPU's rate is that of a large float32 matrix product (`jnp.dot`,
2048 x 2048 or `--matmul-size`, all cores). The fraction reached is `flops / time / rate`.

    python benchmarks/flops.py                       # batch 1024 x 600 s, ~3 min on 2 cores
    python benchmarks/flops.py --batch 1024 --seconds 7200
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from common import hr_models, machine, write_results

from wearjax.models import backbone
from wearjax.models.vo2 import build_vo2_model


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an `n x n` float32 matrix product (median of `repeats`)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(dot(a, a))
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times)) / 1e9


def compiled_rollout(model, batch: int, seconds: int, n_in: int, out: str = "hr"):
    """`(params, compiled)`: the batched generative rollout from each session's first second
    (HR, or VO2 with `out="vo2"`), returning the prediction's `out` field."""
    params, static = eqx.partition(model, eqx.is_array)

    def rollout(p, x, start):
        return getattr(jax.vmap(eqx.combine(p, static).rollout)(x, start), out)

    x = jax.ShapeDtypeStruct((batch, seconds, n_in), jnp.float32)
    start = jax.ShapeDtypeStruct((batch,), jnp.float32)
    return params, jax.jit(rollout).lower(params, x, start).compile()


def flops(model, batch: int, seconds: int, n_in: int) -> tuple[float, float]:
    """FLOPs of a rollout of `seconds`: XLA's count of the one-second program (`step`, which
    computes what a second of the rollout does; `run_stream` equals `rollout`) times the
    seconds. Also XLA's count of the whole rollout program, which counts each loop body once
    whatever its trip count (so it misses most of the recurrent work)."""
    params, static = eqx.partition(model, eqx.is_array)

    def step(p, state, x_t):
        return eqx.combine(p, static).step(state, x_t)

    hr0 = jnp.full((batch,), 120.0, jnp.float32)
    state = jax.vmap(model.init_stream)(hr0)
    x_t = jax.ShapeDtypeStruct((batch, n_in), jnp.float32)
    one = jax.jit(jax.vmap(step, in_axes=(None, 0, 0))).lower(params, state, x_t).compile()
    whole = compiled_rollout(model, batch, seconds, n_in)[1]
    return one.cost_analysis()["flops"] * seconds, whole.cost_analysis()["flops"]


def matrix_flops(model) -> float:
    """Forward FLOPs per session-second of the model's matrix products: 2 per entry of its 2-D
    weights, which the GRU models use once per second (encoders, GRU layers, heads; VO2's
    window head runs once per 60 s window instead, 0.08% of its weights)."""
    arrays = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return 2.0 * sum(a.size for a in arrays if a.ndim == 2)


def _median_time(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gru_breakdown(batch: int, seconds: int, hidden: int = 128) -> list[str]:
    """Milliseconds per second of session of one GRU layer's scan at `batch`: the recurrent
    matrix product alone, then the whole cell (gates and the per-step slice of the input
    projection computed before the scan): where a rollout's time goes."""
    key = jax.random.split(jax.random.key(2), 2)
    w = 0.05 * jax.random.normal(key[0], (3 * hidden, hidden), jnp.float32)
    xp = jax.random.normal(key[1], (seconds, batch, 3 * hidden), jnp.float32)

    def matmul_only(h, x):
        return jnp.tanh(h @ w[:hidden].T)

    def cell(h, x):
        hr, hz, hn = jnp.split(h @ w.T, 3, -1)
        xr, xz, xn = jnp.split(x, 3, -1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        return (1 - z) * jnp.tanh(xn + r * hn) + z * h

    def cell_per_gate(h, x):  # as GRULayer runs a rollout: input projections stored per gate
        hr, hz, hn = jnp.split(h @ w.T, 3, -1)
        xr, xz, xn = x
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        return (1 - z) * jnp.tanh(xn + r * hn) + z * h

    per_gate = tuple(jnp.split(xp, 3, -1))  # three contiguous [T, B, H] projections
    rows = []
    cases = [
        ("recurrent product alone", matmul_only, hidden, xp),
        (
            "whole GRU cell, one [B, 3H] row sliced per step (the layout gradients take)",
            cell,
            3 * hidden,
            xp,
        ),
        (
            "whole GRU cell, projections stored per gate (wearjax rollouts)",
            cell_per_gate,
            3 * hidden,
            per_gate,
        ),
    ]
    for name, step, width, xs in cases:
        run = jax.jit(
            lambda xs, step=step: jax.lax.scan(
                lambda h, x: (step(h, x), h), jnp.zeros((batch, hidden)), xs
            )[1]
        )
        per = _median_time(run, xs) / seconds
        gflops = 2 * batch * hidden * width / per / 1e9
        rows.append(f"| {name} | {1e3 * per:.3f} | {gflops:.0f} |")
    return rows


@contextlib.contextmanager
def sliced_layout():
    """Run `GRULayer` as its gradients do (one `[3H]` projection row sliced per step), for a
    same-run comparison with the per-gate layout its rollouts use."""
    fast = backbone._sequence
    backbone._sequence = backbone._sequence_sliced
    try:
        yield
    finally:
        backbone._sequence = fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/flops_cpu.md"))
    parser.add_argument(
        "--matmul-size", type=int, default=2048, help="n of the n x n product that sets the rate"
    )
    args = parser.parse_args()
    rate = matmul_rate(args.matmul_size)
    print(f"matrix product: {rate:.1f} GFLOP/s", flush=True)
    b, t = args.batch, args.seconds
    rows = [
        "| model | GFLOP per rollout | XLA's count of the rollout program | run (s) | GFLOP/s "
        "| of the matmul rate | within 3x of the bound |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    timed = []
    for name, (model, n_in) in hr_models(jax.random.key(0)).items():
        total, counted = flops(model, b, t, n_in)
        x = jax.random.normal(jax.random.key(1), (b, t, n_in), jnp.float32)
        hr0 = jnp.full((b,), 120.0, jnp.float32)
        layouts = [(name, contextlib.nullcontext)]
        if "personalised" not in name:  # the GRU models
            layouts.append((f"{name}, GRU sliced per step", sliced_layout))
        for label, layout in layouts:
            with layout():
                params, run = compiled_rollout(model, b, t, n_in)
                seconds = _median_time(run, params, x, hr0)
            timed.append((label, total, counted, seconds))
            print(f"{label}: {seconds:.2f} s", flush=True)
    vo2 = build_vo2_model(13, "256-2", key=jax.random.key(2))
    params, run = compiled_rollout(vo2, b, t, 13, out="vo2")
    x = jax.random.normal(jax.random.key(1), (b, t, 13), jnp.float32)
    seconds = _median_time(run, params, x, jnp.full((b,), 1000.0, jnp.float32))
    timed.append(("VO2 256-2", matrix_flops(vo2) * b * t, run.cost_analysis()["flops"], seconds))
    print(f"VO2 256-2: {seconds:.2f} s", flush=True)
    # the bound is the faster of two measurements, before and after: the machine is shared
    rate = max(rate, matmul_rate(args.matmul_size))
    print(f"matrix product after: {rate:.1f} GFLOP/s (the faster of the two)", flush=True)
    for label, total, counted, seconds in timed:
        achieved = total / seconds / 1e9
        fraction = achieved / rate
        rows.append(
            f"| {label} | {total / 1e9:.1f} | {counted / 1e9:.1f} | {seconds:.2f} | "
            f"{achieved:.1f} | {100 * fraction:.0f}% | {'yes' if fraction >= 1 / 3 else 'no'} |"
        )
        print(rows[-1], flush=True)
    write_results(
        args.out,
        "A batch of generative rollouts against the CPU's matrix-product rate",
        f"`python benchmarks/flops.py --batch {b} --seconds {t} --matmul-size "
        f"{args.matmul_size}`; {machine()}; matrix product "
        f"({args.matmul_size} x {args.matmul_size}, float32 at JAX's default precision: TF32 "
        f"on NVIDIA GPUs): {rate:.1f} GFLOP/s, the faster "
        "of a measurement before and one after the rollouts. FLOPs from XLA's cost analysis "
        "(VO2: 2 per matrix weight per second); run: median of 3 after a warm-up, float32.",
        rows,
        [
            f"One GRU layer (hidden 128) at batch {b}, per second of session, recurrent part "
            "only (the input projection is computed before the scan):",
            "",
            "| scan body | ms per second | GFLOP/s of its matrix product |",
            "|---|---:|---:|",
            *gru_breakdown(b, t),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
