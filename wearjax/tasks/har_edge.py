"""What an activity model would cost on a watch: size, compute, latency, memory, a portable
program and int8 weights.

`edge_report(model, x_test, y_test, out_dir)` measures one trained model on windows `[N, T, C]`
(already normalised):

- parameters (trainable floats) and their bytes in float32 and in int8;
- FLOPs per window from XLA's cost analysis of the compiled batch-1 program;
- median wall time per window at batch 1 on this machine's CPU (jitted, 200 calls after a
  warm-up), and XLA's memory analysis of that program (arguments + outputs + temporaries: the
  peak working memory of one call, weights included as arguments);
- a `jax.export` (StableHLO) artifact `out_dir/har_model.jaxexport` with the weights baked in,
  reloaded in a fresh Python process (`reload_check`) and compared with the in-process batch-1
  program's logits (the same program: the difference should be exactly zero);
- post-training int8 weight quantisation (`quantize_int8`: symmetric, one scale per output row
  of every weight matrix, biases and norms kept in float32) and the test accuracy it changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.errors import WearjaxError

EXPORT_NAME = "har_model.jaxexport"

_RELOAD = """
import sys, numpy as np, jax
program = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.stack([np.asarray(program.call(xi)) for xi in x]))
"""


def n_parameters(model) -> int:
    return int(
        sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))
    )


def quantize_int8(model):
    """`model` with every floating weight of two or more dimensions rounded to int8 with one
    symmetric scale per output row (the first axis), then dequantised to float32 for running;
    and the bytes the int8 weights, their scales and the untouched parameters take. Biases
    stay float32 whatever their shape (a convolution's is `[channels, 1]`)."""
    nbytes = 0

    def one(path, a):
        nonlocal nbytes
        if not eqx.is_inexact_array(a):
            return a
        if a.ndim < 2 or getattr(path[-1], "name", None) == "bias":
            nbytes += a.size * 4
            return a
        rows = a.reshape(a.shape[0], -1)
        scale = jnp.max(jnp.abs(rows), axis=1, keepdims=True) / 127.0
        scale = jnp.where(scale > 0, scale, 1.0)
        q = jnp.clip(jnp.round(rows / scale), -127, 127).astype(jnp.int8)
        nbytes += q.size + scale.size * 4
        return (q.astype(a.dtype) * scale).reshape(a.shape)

    return jax.tree_util.tree_map_with_path(one, model), nbytes


def _logits_fn(model):
    return jax.jit(lambda x: model(x).logits)


def export_model(model, window_shape: tuple[int, int], path: Path) -> Path:
    """The batch-1 logits program, weights baked in, serialized to `path`."""
    spec = jax.ShapeDtypeStruct(window_shape, jnp.float32)
    program = jax.export.export(_logits_fn(model))(spec)
    path.write_bytes(bytes(program.serialize()))
    return path


def reload_check(path: Path, x: np.ndarray, expected: np.ndarray) -> float:
    """Run the exported program at `path` on `x [n, T, C]` in a fresh Python process; the
    largest absolute difference from `expected [n, classes]`."""
    tmp = path.parent
    given, out = tmp / "reload_input.npy", tmp / "reload_output.npy"
    try:
        np.save(given, np.asarray(x, np.float32))
        done = subprocess.run(
            [sys.executable, "-c", _RELOAD, str(path), str(given), str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise WearjaxError(f"{path}: the exported program did not run in a fresh process "
                               f"({last})")  # fmt: skip
        got = np.load(out)
    finally:
        for f in (given, out):
            f.unlink(missing_ok=True)
    return float(np.max(np.abs(got - expected)))


def edge_report(model, x: np.ndarray, y: np.ndarray, out_dir: str | Path, *, repeats=200) -> dict:
    """The report of the module docstring for `model` on normalised test windows `x`, labels
    `y`; writes the exported program into `out_dir` and returns the figures. A watch runs one
    device: the model is measured and exported on this process's first, whatever mesh the
    study trained on (a program exported under a mesh of 2 devices runs only on 2)."""
    one = jax.local_devices()[0]
    with jax.set_mesh(jax.make_mesh((1,), ("one",), devices=[one])):
        arrays, rest = eqx.partition(model, eqx.is_array)
        model = eqx.combine(jax.device_put(arrays, one), rest)
        return _edge_report(model, x, y, out_dir, repeats=repeats)


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return cost or {}


def _edge_report(model, x: np.ndarray, y: np.ndarray, out_dir: str | Path, *, repeats) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, np.float32)
    fn = _logits_fn(model)
    one = jnp.asarray(x[0])
    # FLOPs and memory of the program with the weights as arguments (not folded constants)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    with_weights = jax.jit(lambda p, xi: eqx.combine(p, static)(xi).logits)
    compiled = with_weights.lower(params, one).compile()
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        peak = int(
            memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
        )
    jax.block_until_ready(fn(one))
    times = []
    for i in range(repeats):
        xi = jnp.asarray(x[i % len(x)])
        t0 = time.perf_counter()
        jax.block_until_ready(fn(xi))
        times.append(time.perf_counter() - t0)
    batched = jax.jit(jax.vmap(lambda xi: model(xi).logits))
    logits = np.asarray(batched(jnp.asarray(x)))
    qmodel, qbytes = quantize_int8(model)
    qlogits = np.asarray(jax.jit(jax.vmap(lambda xi: qmodel(xi).logits))(jnp.asarray(x)))
    path = export_model(model, x.shape[1:], out_dir / EXPORT_NAME)
    check = x[: min(len(x), 16)]
    expected = np.stack([np.asarray(fn(jnp.asarray(xi))) for xi in check])  # the batch-1 program
    diff = reload_check(path, check, expected)
    n = n_parameters(model)
    acc = float(np.mean(logits.argmax(-1) == y))
    qacc = float(np.mean(qlogits.argmax(-1) == y))
    report = {
        "parameters": n,
        "float32_bytes": 4 * n,
        "int8_bytes": int(qbytes),
        "flops_per_window": float(_cost(compiled).get("flops", float("nan"))),
        "latency_ms_batch1_median": 1e3 * float(np.median(times)),
        "peak_memory_bytes": peak,
        "export": {"file": EXPORT_NAME, "bytes": path.stat().st_size, "reload_max_abs_diff": diff},
        "accuracy_float32": acc,
        "accuracy_int8": qacc,
        "accuracy_change_int8": qacc - acc,
        "max_abs_logit_change_int8": float(np.max(np.abs(qlogits - logits))),
        "test_windows": int(len(x)),
        "device": jax.devices()[0].device_kind,
    }
    (out_dir / "edge.json").write_text(json.dumps(report, indent=2))
    return report
