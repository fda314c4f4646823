"""Peak memory of the gradient through a 2 h generative rollout, per HR model (issue: every HR
model under 2 GB at batch 64).

For each model, the gradient of the mean absolute error of a batch of `--batch` rollouts of
`--seconds` seconds with respect to every parameter is compiled (not run) and XLA's buffer
assignment reports what the program needs (`compiled.memory_analysis()`): its temporary
buffers at their peak plus the arguments and outputs. Models: the HR Kalman filter and the HR
neural ODE at the published sizes, and the personalised ODE (scan engine, its default).

    python benchmarks/memory.py                   # batch 64 x 7200 s, ~1 min on 2 cores
    python benchmarks/memory.py --batch 8 --seconds 1800 --run   # also run each once: time, RSS
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from common import hr_models, machine, write_results

GB = 1024**3


def gradient(model, x, hr, checkpoint_every):
    """Gradient of the generative MAE of a batch, w.r.t. the model's float arrays: through
    `rollout` (None) or through `run_stream` rematerialised every `checkpoint_every` s."""

    def loss(m):
        if checkpoint_every is None:
            pred = jax.vmap(m.rollout)(x, hr[:, 0])
        else:
            run = lambda xi, h0: m.run_stream(xi, h0, checkpoint_every=checkpoint_every)  # noqa: E731
            pred = jax.vmap(run)(x, hr[:, 0])
        return jnp.mean(jnp.abs(pred.hr - hr))

    return eqx.filter_grad(loss)(model)


def compiled_gradient(model, n_in: int, batch: int, seconds: int, checkpoint_every):
    """`(compiled, params, temporaries GB, arguments + outputs GB)`: `gradient` compiled for a
    batch of `batch` x `seconds` s (nothing run) and XLA's buffer assignment of it."""
    x = jax.ShapeDtypeStruct((batch, seconds, n_in), jnp.float32)
    hr = jax.ShapeDtypeStruct((batch, seconds), jnp.float32)
    params, static = eqx.partition(model, eqx.is_array)
    grad = jax.jit(lambda p, x, hr: gradient(eqx.combine(p, static), x, hr, checkpoint_every))
    compiled = grad.lower(params, x, hr).compile()
    m = compiled.memory_analysis()
    io = (m.argument_size_in_bytes + m.output_size_in_bytes) / GB
    return compiled, params, m.temp_size_in_bytes / GB, io


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=7200)
    parser.add_argument("--run", action="store_true", help="run each gradient once as well")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_cpu.md"))
    args = parser.parse_args()
    rows = [
        "| model | gradient through | temporaries (GB) | arguments + outputs (GB) | total (GB) "
        "| under 2 GB |",
        "|---|---|---:|---:|---:|---|",
    ]
    if args.run:
        rows = [rows[0] + " run once |", rows[1] + "---|"]
    b, t = args.batch, args.seconds
    cases = [(name, mode) for name in hr_models(jax.random.key(0)) for mode in (None, 60)]
    for name, every in cases:
        model, n_in = hr_models(jax.random.key(0))[name]
        compiled, params, temp, io = compiled_gradient(model, n_in, b, t, every)
        total = temp + io
        how = "rollout" if every is None else f"run_stream, checkpoint every {every} s"
        rows.append(
            f"| {name} | {how} | {temp:.3f} | {io:.3f} | {total:.3f} | "
            f"{'yes' if total < 2 else 'no'} |"
        )
        if args.run:
            xs = jax.random.normal(jax.random.key(1), (b, t, n_in), jnp.float32)
            hrs = jnp.full((b, t), 140.0, jnp.float32)
            start = time.perf_counter()
            jax.block_until_ready(compiled(params, xs, hrs))
            seconds = time.perf_counter() - start
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            rows[-1] += f" {seconds:.2f} s; process peak RSS so far {rss:.2f} GB |"
        print(rows[-1], flush=True)
    write_results(
        args.out,
        "Peak memory of the gradient through a generative rollout",
        f"`python benchmarks/memory.py --batch {b} --seconds {t}{' --run' * args.run}`; "
        f"{machine()}. XLA's buffer assignment of the compiled gradient (batch {b} x {t} s, "
        "float32).",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
