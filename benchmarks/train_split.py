"""Where an HR training step's time goes at batch 64 x 600 s, the PyTorch benchmark's
training setting (`benchmarks/torch_vs_jax.py`).

First, per model ((128, 2) Kalman and ODE, 8 features) and GRU implementation
(`models.backbone.GRU_IMPLS`): the value and gradient of the HR task's loss
(`tasks.hr._segment_loss`, both protocols, no dropout), the loss's value alone, and the same two
for the GRU backbone alone (the mean square of its states). Then one GRU layer of the
hand-written pass (hidden 128, input 128), its pieces timed apart under a `vmap` over the batch,
as the models run it: the forward scan, the forward scan that keeps each second's gates, the
whole reverse pass, and the weight-gradient product that ends it in three forms: one product per
session summed over the batch (what the `vmap` of the reverse pass computes), one einsum over
batch and time, and one product over the flattened batch and time. Last, what a scan pays for
the arrays it writes per step: a scan over 600 s at batch 64 of three elementwise ops on
`[64, 128]`, writing nothing, one of them, all three, or their concatenation every step (why
the hand-written reverse loop keeps only dL/dh_t, `models.backbone._manual_reverse`).

    python benchmarks/train_split.py        # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from common import machine, write_results

from wearjax.models import backbone
from wearjax.tasks.hr import HRStudyConfig, _segment_loss, build_model

BATCH, SECONDS, HIDDEN, N_FEATURES = 64, 600, 128, 8


def _median_ms(fn, *args, reps: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up, waited for
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def model_rows(reps: int) -> list[str]:
    k = jax.random.split(jax.random.key(1), 2)
    x = jax.random.normal(k[0], (BATCH, SECONDS, N_FEATURES))
    hr = 140.0 + 10.0 * jax.random.normal(k[1], (BATCH, SECONDS))
    mask = np.ones((BATCH, SECONDS), bool)
    config = HRStudyConfig()
    rows = []
    for kind in ("kalman", "ode"):
        for impl in backbone.GRU_IMPLS:
            model = build_model(kind, N_FEATURES, HIDDEN, 2, window=60, key=jax.random.key(0),
                                gru_impl=impl)  # fmt: skip
            params, static = eqx.partition(model, eqx.is_inexact_array)

            def loss(p):
                m = eqx.combine(p, static)  # noqa: B023
                return _segment_loss(m, x, hr, mask, None, config.generative_weight,
                                     config.crps_weight)  # fmt: skip

            def states(p):
                bb = eqx.combine(p, static).backbone  # noqa: B023
                return jnp.mean(jnp.square(jax.vmap(lambda xi: bb(xi)[0])(x)))

            ms = [_median_ms(jax.jit(f), params, reps=reps) for f in
                  (jax.value_and_grad(loss), loss, jax.value_and_grad(states), states)]  # fmt: skip
            rows.append(
                f"| {kind} (128, 2) | {impl} | " + " | ".join(f"{m:.0f}" for m in ms) + " |"
            )
            print(rows[-1], flush=True)
    return rows


def layer_rows(reps: int) -> list[str]:
    k = jax.random.split(jax.random.key(0), 6)
    w = 0.1 * jax.random.normal(k[0], (3 * HIDDEN, HIDDEN))
    b = jnp.zeros(3 * HIDDEN)
    xr, xz, xn = (jax.random.normal(k[i], (BATCH, SECONDS, HIDDEN)) for i in (1, 2, 3))
    h0 = jnp.zeros((BATCH, HIDDEN))
    batched = (None, None, 0, 0, 0, 0)
    forward = jax.jit(jax.vmap(backbone._manual_recurrence, in_axes=batched))
    keeping = jax.jit(jax.vmap(backbone._manual_forward, in_axes=batched))
    _, res = keeping(w, b, xr, xz, xn, h0)
    res = (w, *res[1:])  # the weights are the batch's, not per session
    d_hs = jax.random.normal(k[4], (BATCH, SECONDS, HIDDEN))
    reverse = jax.jit(jax.vmap(backbone._manual_reverse, in_axes=((None, 0, 0, 0, 0, 0, 0), 0)))
    dg = jax.random.normal(k[5], (BATCH, SECONDS, 3 * HIDDEN))
    h_prev = xr
    per_session = jax.jit(lambda a, c: jax.vmap(lambda g, h: g.T @ h)(a, c).sum(0))
    einsum = jax.jit(lambda a, c: jnp.einsum("btg,bth->gh", a, c))
    flat = jax.jit(lambda a, c: a.reshape(-1, 3 * HIDDEN).T @ c.reshape(-1, HIDDEN))
    pieces = [
        ("forward", _median_ms(forward, w, b, xr, xz, xn, h0, reps=reps)),
        ("forward, keeping the gates", _median_ms(keeping, w, b, xr, xz, xn, h0, reps=reps)),
        ("reverse pass (loop and weight products)", _median_ms(reverse, res, d_hs, reps=reps)),
        ("weight products: one per session, summed", _median_ms(per_session, dg, h_prev)),
        ("weight products: one einsum", _median_ms(einsum, dg, h_prev)),
        ("weight products: one flattened product", _median_ms(flat, dg, h_prev)),
    ]
    rows = [f"| {name} | {ms:.0f} |" for name, ms in pieces]
    print("\n".join(rows), flush=True)
    return rows


def write_rows(reps: int) -> list[str]:
    xs = jax.random.normal(jax.random.key(2), (SECONDS, BATCH, HIDDEN))

    def scan_writing(kind: str):
        def step(c, x):
            a = 0.5 * c + x
            b, d = a * x, a - x
            out = {"nothing": None, "one array": a, "three arrays": (a, b, d),
                   "their concatenation": jnp.concatenate([a, b, d], -1)}[kind]  # fmt: skip
            return a, out

        return jax.jit(lambda xs: jax.lax.scan(step, jnp.zeros((BATCH, HIDDEN)), xs))

    kinds = ("nothing", "one array", "three arrays", "their concatenation")
    rows = [f"| {k} | {_median_ms(scan_writing(k), xs, reps=reps):.1f} |" for k in kinds]
    print("\n".join(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_split_cpu.md"))
    args = parser.parse_args()
    models = [
        "| model | GRU | loss and gradient (ms) | loss (ms) | backbone: gradient (ms) | "
        "backbone: forward (ms) |",
        "|---|---|---:|---:|---:|---:|",
        *model_rows(args.reps),
    ]
    layer = ["| one GRU layer, hand-written pass | ms |", "|---|---:|", *layer_rows(args.reps)]
    write_results(
        args.out,
        "Where an HR training step's time goes",
        f"`python benchmarks/train_split.py`; {machine()}; batch {BATCH} x {SECONDS} s, float32, "
        f"medians of {args.reps} calls after a waited warm-up; one run on a shared machine.",
        models,
        layer,
        [
            "| a scan of 3 elementwise ops, 64 x 128 x 600 s, writing per step | ms |",
            "|---|---:|",
            *write_rows(args.reps),
        ],  # fmt: skip
    )


if __name__ == "__main__":
    main()
