"""Serial (`lax.scan`) vs parallel (`lax.associative_scan`) Kalman filter and RTS smoother.

For T = 7200 steps (two hours at 1 Hz), state size D in {2, 4}, one observed channel (M = 1),
10% of the steps masked, float32, and a batch of 1 series (one call) or 256 series (`vmap`,
shared parameters): the steady-state wall time of one jitted call after compilation (median
of up to `--reps` calls, each ended by `block_until_ready`) and the compile time
(`jit(...).lower(...).compile()`); each configuration again compiled with
`filters.compiler_options()` (on CPU: XLA's library fusions kept to matrix products).
Then the training case: the gradient of the mean log-likelihood of the serial filter under
`vmap` over 64 series with their own masks, with and without the options. Prints markdown
tables and writes them to `--out`.

    python benchmarks/filters.py                      # ~8 min on 2 CPU cores
    python benchmarks/filters.py --reps 3 --out /tmp/filters.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.filters import (
    LinearGaussianParams,
    compiler_options,
    kalman_filter,
    kalman_smoother,
    parallel_kalman_filter,
    parallel_kalman_smoother,
)

T = 7200
STATE_SIZES = (2, 4)
BATCHES = (1, 256)
IMPLEMENTATIONS = {
    ("filter", "serial"): kalman_filter,
    ("filter", "parallel"): parallel_kalman_filter,
    ("smoother", "serial"): kalman_smoother,
    ("smoother", "parallel"): parallel_kalman_smoother,
}
# Stop repeating a configuration once its timed calls have taken this long (seconds).
TIME_BUDGET_S = 8.0


def model(d: int) -> LinearGaussianParams:
    """A stable chain of D states (HR, its rate, ...) observed through the first one."""
    f = 0.95 * np.eye(d) + 0.5 * np.eye(d, k=1)
    h = np.zeros((1, d))
    h[0, 0] = 1.0
    return LinearGaussianParams(
        m0=jnp.zeros(d),
        P0=jnp.eye(d),
        F=jnp.asarray(f, jnp.float32),
        Q=0.1 * jnp.eye(d),
        H=jnp.asarray(h, jnp.float32),
        R=jnp.eye(1),
    )


def data(batch: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    ys = rng.normal(size=(batch, T, 1)).astype(np.float32)
    mask = rng.random((batch, T)) > 0.1
    return jnp.asarray(ys), jnp.asarray(mask)


def measure(fn, params, ys, mask, reps: int, options=None) -> tuple[float, float, int]:
    """(compile seconds, median steady-state seconds, number of timed calls)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params, ys, mask).compile(compiler_options=options)
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, ys, mask))  # warm-up
    times: list[float] = []
    while len(times) < reps and (not times or sum(times) < TIME_BUDGET_S):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, ys, mask))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times), len(times)


def run(reps: int, sizes=STATE_SIZES, batches=BATCHES) -> list[dict]:
    """Every implementation at every state size and batch; the options arm only where
    `compiler_options()` has options (on CPU), else its times are NaN."""
    rows = []
    options = compiler_options()
    for (operation, implementation), fn in IMPLEMENTATIONS.items():
        for d in sizes:
            for batch in batches:
                params = model(d)
                ys, mask = data(batch)
                if batch == 1:
                    call, ys, mask = fn, ys[0], mask[0]
                else:
                    call = jax.vmap(fn, in_axes=(None, 0, 0))
                compile_s, run_s, n = measure(call, params, ys, mask, reps)
                options_s, n_options = float("nan"), 0
                if options:
                    _, options_s, n_options = measure(call, params, ys, mask, reps, options)
                row = dict(
                    operation=operation,
                    implementation=implementation,
                    d=d,
                    batch=batch,
                    run_ms=1e3 * run_s,
                    options_ms=1e3 * options_s,
                    compile_s=compile_s,
                    reps=n,
                )
                print(
                    f"{operation:8s} {implementation:8s} D={d} batch={batch:3d}: "
                    f"{row['run_ms']:9.1f} ms (median of {n}), compile {compile_s:5.1f} s; "
                    f"with the options {_ms(row['options_ms'])} ms (median of {n_options})",
                    flush=True,
                )
                rows.append(row)
    return rows


GRADIENT_BATCH = 64


def _ms(value: float) -> str:
    """A time in ms for the tables; "-" for an arm not run (NaN)."""
    return "-" if value != value else f"{value:.1f}"


def gradient_rows(reps: int, sizes=STATE_SIZES) -> list[str]:
    """Markdown rows: the log-likelihood gradient of the vmapped serial filter, with and
    without `compiler_options()` (NaN where it has none), per state size."""
    lines = []
    for d in sizes:
        params = model(d)
        ys, mask = data(GRADIENT_BATCH)

        def loss(p, ys, mask):
            batched = jax.vmap(kalman_filter, in_axes=(None, 0, 0))(p, ys, mask)
            return -jnp.mean(batched.log_likelihood)

        grad = jax.grad(loss)
        _, plain_s, _ = measure(grad, params, ys, mask, reps)
        options_s = float("nan")
        if compiler_options():
            _, options_s, _ = measure(grad, params, ys, mask, reps, compiler_options())
        ratio = plain_s / options_s
        speedup = "-" if ratio != ratio else f"{ratio:.1f}x"
        print(f"gradient D={d}: {1e3 * plain_s:.1f} ms, options {_ms(1e3 * options_s)} ms")
        lines.append(
            f"| {d} | {GRADIENT_BATCH} | {1e3 * plain_s:.1f} | {_ms(1e3 * options_s)} | {speedup} |"
        )
    return [
        "| D | batch | gradient (ms) | gradient, options (ms) | speed-up |",
        "|---|---|---|---|---|",
        *lines,
    ]


def table(rows: list[dict], sizes=STATE_SIZES, batches=BATCHES) -> str:
    by_key = {(r["operation"], r["implementation"], r["d"], r["batch"]): r for r in rows}
    lines = [
        "| operation | D | batch | serial run (ms) | parallel run (ms) | parallel / serial "
        "| serial compile (s) | parallel compile (s) | serial, options (ms) "
        "| parallel, options (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for operation in ("filter", "smoother"):
        for d in sizes:
            for batch in batches:
                s = by_key[(operation, "serial", d, batch)]
                p = by_key[(operation, "parallel", d, batch)]
                lines.append(
                    f"| {operation} | {d} | {batch} | {s['run_ms']:.1f} | {p['run_ms']:.1f} "
                    f"| {p['run_ms'] / s['run_ms']:.1f}x | {s['compile_s']:.1f} "
                    f"| {p['compile_s']:.1f} | {_ms(s['options_ms'])} | {_ms(p['options_ms'])} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed calls per configuration")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "filters_cpu.md"
    )
    parser.add_argument("--state-sizes", type=int, nargs="+", default=list(STATE_SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    args = parser.parse_args()
    rows = run(args.reps, args.state_sizes, args.batches)
    gradient = "\n".join(gradient_rows(args.reps, args.state_sizes))
    device = jax.devices()[0]
    header = (
        f"Kalman filter / RTS smoother, T = {T}, M = 1, float32, 10% masked. "
        f"Backend {device.platform} ({device.device_kind}; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores visible), jax {jax.__version__}. Run time: median of up to "
        f"{args.reps} jitted calls after compilation; a batch above 1 is `vmap` over series, each "
        f"with its own mask. Options: compiled with {compiler_options()}."
    )
    timings = table(rows, args.state_sizes, args.batches)
    text = (
        f"{header}\n\n{timings}\n\nThe gradient of the serial filter's mean "
        f"log-likelihood over {GRADIENT_BATCH} series (`grad` of a `vmap`), each with its own "
        f"mask:\n\n{gradient}\n"
    )
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
