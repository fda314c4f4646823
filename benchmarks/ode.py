"""Diffrax vs `lax.scan` RK4 for wearjax's ODE models: forward, forward+backward, compile.

Batch 64 sessions x 3600 s (one hour at 1 Hz), float32, generative protocol (the sequential
one: every window starts where the previous ended), loss = mean squared HR error:

- `personal`: the personalised HR ODE (`models.hr_personalized`), 3600 RK4 steps of the (HR, D)
  system per session; the ODE is nearly all the work;
- `hr_ode`: the Lab-to-Wrist HR ODE's decoder (`models.hr_ode`), 60 windows x 60 steps per
  session, given the demand and window heads (the GRU backbone is left out: it is the same for
  both engines and would hide them); `hr_ode standard`: the same under the standard protocol
  (all windows of a session as one ODE with a state per window);
- `hr_ode+gru`: the whole HR ODE (64, 3) with its backbone.

Engines: `scan`, and Diffrax with recursive checkpointing (one checkpoint per step, the
default of `models.ode`, or `--few-checkpoints` of them, Diffrax's O(n log n) recomputation) or
the backsolve adjoint. "run" is the median wall time of a jitted call after compilation (each
ended by `block_until_ready`); "compile" is `jit(f).lower(...).compile()`. The last table is the
compile time of one training step (loss, gradient and Adam update) of the HR study for each
model kind and engine. Prints markdown and writes it to `--out`.

    python benchmarks/ode.py                       # ~10 min on 2 CPU cores
    python benchmarks/ode.py --quick --out /tmp/ode.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wearjax.models import ode
from wearjax.models.hr_ode import HRODE
from wearjax.models.hr_personalized import PersonalHRODE

TIME_BUDGET_S = 10.0  # stop repeating a configuration once its timed calls took this long


def _timed(fn, args, reps: int) -> tuple[float, float]:
    """(compile seconds, median run seconds) of `jax.jit(fn)(*args)`."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    runs, spent = [], 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
        spent += runs[-1]
        if spent > TIME_BUDGET_S:
            break
    return compile_s, statistics.median(runs)


def engines(few: int) -> dict[str, dict]:
    return {
        "scan": dict(engine="scan"),
        "diffrax, checkpoint every step": dict(engine="diffrax", adjoint="checkpoint"),
        f"diffrax, {few} checkpoints": dict(
            engine="diffrax", adjoint="checkpoint", checkpoints=few
        ),
        "diffrax, backsolve": dict(engine="diffrax", adjoint="backsolve"),
    }


def _inputs(batch: int, length: int):
    rng = np.random.default_rng(0)
    blocks = length // 120
    speed = np.repeat(rng.uniform(2.0, 4.5, (batch, blocks)), 120, axis=1)
    u = np.stack([speed, np.zeros_like(speed)], -1).astype(np.float32)
    hr = np.repeat(rng.uniform(110, 170, (batch, blocks)), 120, axis=1).astype(np.float32)
    return jnp.asarray(u), jnp.asarray(hr)


def personal_case(batch, length, options):
    model = PersonalHRODE(batch, key=jax.random.key(0))
    u, hr = _inputs(batch, length)

    def loss(params):
        m = eqx.combine(params, static)
        pred = jax.vmap(lambda e, ui, h: m.for_runner(e).rollout(ui, h[0]).hr)(m.embedding, u, hr)
        return jnp.mean(jnp.square(pred - hr))

    params, static = eqx.partition(_with(model, options), eqx.is_inexact_array)
    return loss, params


def hr_decoder_case(batch, length, options, protocol="generative"):
    model = _with(HRODE(8, 64, 3, key=jax.random.key(0)), options)
    rng = np.random.default_rng(1)
    n = length // model.window
    s_start = jnp.asarray(rng.normal(size=(batch, n, 64)).astype(np.float32))
    per_second = lambda scale, shift: jnp.asarray(  # noqa: E731
        (shift + scale * rng.normal(size=(batch, n, model.window + 1))).astype(np.float32)
    )
    # what `encode` gives the decoder: demand, level (bpm) and rate per second
    encoded = (s_start, per_second(1.0, 0.0), per_second(10.0, 140.0), per_second(0.1, 1.0))
    _, hr = _inputs(batch, length)

    def loss(params):
        m = eqx.combine(params, static)
        if protocol == "standard":
            starts = hr[:, :: m.window]
            pred = jax.vmap(lambda e, h: m.standard(e, h).hr)(encoded, starts)
        else:
            pred = jax.vmap(lambda e, h: m.generative(e, h[0]).hr)(encoded, hr)
        return jnp.mean(jnp.square(pred - hr))

    params, static = eqx.partition(model, eqx.is_inexact_array)
    return loss, params


def hr_full_case(batch, length, options):
    model = _with(HRODE(8, 64, 3, key=jax.random.key(0)), options)
    x = jax.random.normal(jax.random.key(1), (batch, length, 8))
    _, hr = _inputs(batch, length)

    def loss(params):
        m = eqx.combine(params, static)
        pred = jax.vmap(lambda xi, h: m.rollout(xi, h[0]).hr)(x, hr)
        return jnp.mean(jnp.square(pred - hr))

    params, static = eqx.partition(model, eqx.is_inexact_array)
    return loss, params


def _with(model, options):
    return model.with_engine(
        options["engine"], options.get("adjoint", "checkpoint"), options.get("checkpoints")
    )


CASES = {
    "personal": personal_case,
    "hr_ode": hr_decoder_case,
    "hr_ode standard": partial(hr_decoder_case, protocol="standard"),
    "hr_ode+gru": hr_full_case,
}


def run_case(name, batch, length, options, reps):
    loss, params = CASES[name](batch, length, options)
    return _timed(loss, (params,), reps), _timed(jax.value_and_grad(loss), (params,), reps)


def train_step_compile(kind: str, engine: str, length: int = 1800, batch: int = 8) -> float:
    """Seconds to compile one HR-study training step (both protocols' loss, gradient, Adam)."""
    from wearjax.tasks.hr import _segment_loss, build_model

    model = build_model(kind, 8, 64, 3, window=60, key=jax.random.key(0))
    if kind == "ode":
        model = model.with_engine(engine)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(1e-3)
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(params)
    x = jnp.zeros((batch, length, 8))
    hr = jnp.full((batch, length), 140.0)
    mask = jnp.ones((batch, length), bool)
    keys = jax.random.split(jax.random.key(1), batch)

    def step(params, state):
        loss = lambda p: _segment_loss(eqx.combine(p, static), x, hr, mask, keys, 1.0)  # noqa: E731
        value, grads = jax.value_and_grad(loss)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    t0 = time.perf_counter()
    jax.jit(step).lower(params, state).compile()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=3600)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--few-checkpoints", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="batch 8 x 600 s, fewer reps")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ode_cpu.md"))
    parser.add_argument(
        "--diffrax-chunk",
        type=int,
        default=ode.DIFFRAX_CHUNK,
        help="steps per diffeqsolve on the Diffrax path (the length: one solve per session)",
    )
    args = parser.parse_args(argv)
    ode.DIFFRAX_CHUNK = args.diffrax_chunk  # read when the solve is traced
    if args.quick:
        args.batch, args.length, args.reps = 8, 600, 2
    lines = [
        f"batch {args.batch} x {args.length} s, float32, {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__}, backend {jax.default_backend()}, "
        f"Diffrax solves of {args.diffrax_chunk} steps",
        "",
        "| model | engine | fwd run (ms) | fwd+bwd run (ms) | fwd+bwd / scan | fwd compile (s) "
        "| fwd+bwd compile (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for case in args.cases:
        base = None
        for label, options in engines(args.few_checkpoints).items():
            (cf, rf), (cb, rb) = run_case(case, args.batch, args.length, options, args.reps)
            base = rb if base is None else base
            line = (
                f"| {case} | {label} | {1e3 * rf:.1f} | {1e3 * rb:.1f} | {rb / base:.2f}x "
                f"| {cf:.1f} | {cb:.1f} |"
            )
            lines.append(line)
            print(line, flush=True)
    lines += [
        "",
        "| train step compile (s), HR (64, 3), batch 8 x 1800 s | seconds |",
        "|---|---:|",
    ]
    for kind, engine in (("kalman", "-"), ("ode", "scan"), ("ode", "diffrax")):
        line = f"| {kind} ({engine}) | {train_step_compile(kind, engine):.1f} |"
        lines.append(line)
        print(line, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
