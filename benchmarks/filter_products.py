"""How the serial filter's small-matrix products are written, against how fast it runs on one
series and under `vmap` over 256 series with their own masks.

`filters.linear.matmul` computes every product of the serial Kalman filter and RTS smoother.
Each form below replaces it (the module attribute, before anything is compiled) in a process of
its own, and the filter and smoother of `benchmarks/filters.py`'s model (D = 4, T = 7200,
float32, 10% masked) are timed on one series and on 256; the last arm keeps the library's form
and compiles with `wearjax.filters.compiler_options()`. Prints a markdown table and writes it
to `--out`.

    python benchmarks/filter_products.py        # ~4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

FORMS = {
    "sum": "broadcast-and-sum over the middle axis (the library's form)",
    "outer": "a sum of k outer products",
    "scalar": "unrolled scalar products, stacked",
    "last": "broadcast-and-sum over the last axis",
    "dot": "`@` (a kernel call per matrix)",
    "options": "broadcast-and-sum, compiled with `compiler_options()`",
}
D = 4


def _product(form: str):
    import jax.numpy as jnp

    def outer(a, b):
        return sum(a[..., :, i, None] * b[..., None, i, :] for i in range(a.shape[-1]))

    def scalar(a, b):
        n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
        rows = [
            jnp.stack(
                [sum(a[..., i, q] * b[..., q, j] for q in range(k)) for j in range(m)], axis=-1
            )
            for i in range(n)
        ]
        return jnp.stack(rows, axis=-2)

    def last(a, b):
        return jnp.sum(a[..., :, None, :] * jnp.swapaxes(b, -1, -2)[..., None, :, :], axis=-1)

    return {"outer": outer, "scalar": scalar, "last": last, "dot": lambda a, b: a @ b}.get(form)


def time_form(form: str, reps: int) -> dict:
    """In this process: replace the product, time filter and smoother at batch 1 and 256."""
    import jax
    from filters import data, measure, model

    import wearjax.filters.linear as linear
    from wearjax.filters import compiler_options, kalman_filter, kalman_smoother

    if _product(form) is not None:
        linear.matmul = _product(form)
    options = compiler_options() if form == "options" else None
    params = model(D)
    ys, mask = data(256)
    out = {}
    for name, fn in (("filter", kalman_filter), ("smoother", kalman_smoother)):
        _, one, _ = measure(fn, params, ys[0], mask[0], reps, options)
        batched = jax.vmap(fn, in_axes=(None, 0, 0))
        _, many, _ = measure(batched, params, ys, mask, reps, options)
        out[name] = (1e3 * one, 1e3 * many)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed calls per configuration")
    parser.add_argument("--form", choices=FORMS, help=argparse.SUPPRESS)  # one arm, internal
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "filter_products_cpu.md"
    )
    args = parser.parse_args()
    if args.form:
        print(json.dumps(time_form(args.form, args.reps)))
        return
    from common import machine, write_results

    lines = [
        f"| `filters.linear.matmul` as | filter D = {D}, 1 / 256 series (ms) "
        f"| smoother D = {D}, 1 / 256 series (ms) |",
        "|---|---:|---:|",
    ]
    for form, label in FORMS.items():
        arm = [sys.executable, __file__, "--form", form, "--reps", str(args.reps)]
        done = subprocess.run(arm, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{form}: the arm failed (exit {done.returncode}):\n{done.stderr}")
        times = json.loads(done.stdout.strip().splitlines()[-1])
        (f1, fb), (s1, sb) = times["filter"], times["smoother"]
        lines.append(f"| {label} | {f1:.1f} / {fb:.0f} | {s1:.1f} / {sb:.0f} |")
        print(lines[-1], flush=True)
    intro = (
        f"The serial Kalman filter and RTS smoother of `benchmarks/filters.py` (D = {D}, "
        f"T = 7200, float32, 10% masked; 256 series under `vmap`, each with its own mask) with "
        f"each form of the small-matrix product, each in its own process; {machine()}. Median "
        f"of up to {args.reps} calls after compilation. `python benchmarks/filter_products.py`."
    )
    write_results(args.out, "The serial filter's product forms", intro, lines)


if __name__ == "__main__":
    main()
