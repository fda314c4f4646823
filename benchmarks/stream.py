"""Streaming HR, one second at a time at batch 1, as a watch runs it.

    python benchmarks/stream.py [--size 128 2] [--seconds 600] [--out benchmarks/results]

For each HR model (Kalman and ODE at the published size, the personalised ODE): the latency of
one `step` (jitted, and the `jax.export` program reloaded by `models.stream.load_stream`), the
median over `--seconds` calls each ended by `block_until_ready`, next to the cost per second of
the whole-session program (`rollout` of the same session, jitted): what streaming costs over
predicting a finished recording. Also the compile time of the step and the exported file's
size. Writes `benchmarks/results/stream_<platform>.md`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.models import HRODE, HRKalman, PersonalHRODE
from wearjax.models.stream import load_stream, write_stream


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _row(name, model, n_features, seconds):
    x = jax.random.normal(jax.random.key(1), (seconds, n_features), jnp.float32)
    hr0, nan = jnp.asarray(120.0), jnp.asarray(jnp.nan, jnp.float32)
    step = eqx.filter_jit(model.step)
    t0 = time.perf_counter()
    state = model.init_stream(hr0)
    jax.block_until_ready(step(state, x[0], nan))
    compile_s = time.perf_counter() - t0

    def stream_one():
        nonlocal state
        state, h, _ = step(state, x[0], nan)
        return h

    step_ms = _median_ms(stream_one, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_stream(Path(tmp) / "stream.npz", model, n_features)
        size_kb = path.stat().st_size / 1024
        init, exported = load_stream(path)
        leaves = init(hr0)
        jax.block_until_ready(exported(leaves, x[0], nan))

        def exported_one():
            nonlocal leaves
            leaves, h, _ = exported(leaves, x[0], nan)
            return h

        exported_ms = _median_ms(exported_one, seconds)
    rollout = eqx.filter_jit(model.rollout)
    jax.block_until_ready(rollout(x, hr0).hr)
    whole_ms = _median_ms(lambda: rollout(x, hr0).hr, 5) / seconds
    return (name, step_ms, exported_ms, whole_ms, compile_s, size_kb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs=2, type=int, default=(128, 2))
    parser.add_argument("--seconds", type=int, default=600, help="steps timed (a multiple of 60)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    hidden, layers = args.size
    key = jax.random.key(0)
    personal = PersonalHRODE(4, key=key)
    models = [
        (f"Kalman ({hidden}, {layers})", HRKalman(8, hidden, layers, key=key), 8),
        (f"ODE ({hidden}, {layers})", HRODE(8, hidden, layers, key=key), 8),
        ("personalised ODE", personal.for_runner(personal.embedding[0]), 2),
    ]
    rows = [_row(name, model, f, args.seconds) for name, model, f in models]
    platform = jax.devices()[0].platform
    lines = [
        f"# Streaming HR at batch 1 ({platform})",
        "",
        f"Command: `python benchmarks/stream.py --size {hidden} {layers} --seconds "
        f"{args.seconds}`; jax {jax.__version__}, {jax.devices()[0].device_kind}.",
        "",
        "| model | step (ms) | exported step (ms) | whole session, per second (ms) | "
        "step compile (s) | exported file (kB) |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {n} | {a:.3f} | {b:.3f} | {c:.4f} | {d:.1f} | {e:.0f} |"
            for n, a, b, c, d, e in rows
        ),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"stream_{platform}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print("wrote", out)


if __name__ == "__main__":
    main()
