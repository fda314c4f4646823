"""A training batch split over a mesh's "data" axis: the partitioner against `map_batch`.

    python benchmarks/data_axis.py                 # ~2 min on 2 cores: 2 CPU devices
    python benchmarks/data_axis.py --devices 4 --batch 128

The gradient of each task's training loss (the HR task's both-protocol loss for the Kalman and
ODE models at (128, 2), the VO2 task's loss for VO2 256-2), on a batch of `--batch` sessions
of `--seconds` s, three ways (the ODE on its scan engine in all three, the one `map_batch`
can run: Diffrax cannot be traced inside `shard_map` yet):

- one device: the whole batch on the first device;
- data axis, partitioner: the batch split over `--devices` devices (a `("data",)` sharding
  of the inputs, the weights replicated), `jit`'s partitioner doing the rest, as the trainer
  did before `sharding.map_batch`;
- data axis, `map_batch`: the same split, traced inside `sharding.batch_mesh`, so each task's
  per-session work runs as one `shard_map` and the weight gradients are summed over the
  devices once.

For each it reports the median time of a value-and-gradient call (the arms alternate, after a
warm-up), how many of the compiled program's loop bodies hold an all-reduce (a collective at
every step of a scan), and the largest gradient difference from the one-device arm, relative to
that leaf's largest value. On CPU the devices are `jax_num_cpu_devices` virtual ones sharing
the machine's cores; on a GPU host, its GPUs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax

if __name__ == "__main__":  # before JAX starts its backend
    _n = sys.argv[sys.argv.index("--devices") + 1] if "--devices" in sys.argv else "2"
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_num_cpu_devices", int(_n))

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, write_results  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from wearjax.cv import make_mesh  # noqa: E402
from wearjax.models.vo2 import build_vo2_model  # noqa: E402
from wearjax.sharding import batch_mesh  # noqa: E402
from wearjax.tasks import vo2 as vo2_study  # noqa: E402
from wearjax.tasks.hr import HRStudyConfig, build_model, make_task  # noqa: E402

N_FEATURES = 8
ARMS = ("one device", "data axis, partitioner", "data axis, map_batch")


def loops_with_all_reduce(compiled) -> list[str]:
    """The names of the computations other than the entry one (loop bodies) that hold an
    all-reduce in a compiled program's HLO text."""
    head, found = None, set()
    for line in compiled.as_text().splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            head = line.split("(")[0]
        if "all-reduce" in line and "get-tuple-element" not in line and head:
            found.add(head)
    return sorted(h for h in found if not h.startswith("ENTRY"))


def inputs(batch: int, seconds: int):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, seconds, N_FEATURES)), jnp.float32)
    t = np.arange(seconds) / 30.0 + np.arange(batch)[:, None]
    hr = jnp.asarray(130 + 20 * np.sin(t), jnp.float32)
    mask = jnp.asarray(rng.random((batch, seconds)) > 0.05)
    return x, hr, mask, jax.random.split(jax.random.key(1), batch)


def loss_of(name: str, seconds: int):
    """`(model, loss(params, static, x, hr, mask, keys))` of the task that trains `name`."""
    key = jax.random.key(0)
    if name == "VO2 256-2":
        task = vo2_study.make_task(vo2_study.VO2StudyConfig(), seconds)

        def loss(p, static, x, hr, mask, keys):
            vo2 = 1500.0 + 10.0 * (hr - 120.0)
            length = jnp.full(x.shape[:1], seconds, jnp.int32)
            batch = (x, vo2, mask.at[:, 0].set(True), vo2[:, 0], length)
            return task.loss(eqx.combine(p, static), batch, keys[0], 3)[0]

        return build_vo2_model(N_FEATURES, "256-2", key=key), loss
    kind = {"HR Kalman (128, 2)": "kalman", "HR ODE (128, 2)": "ode"}[name]
    task = make_task(HRStudyConfig(), seconds)

    def loss(p, static, x, hr, mask, keys):
        return task.loss(eqx.combine(p, static), (x, hr, mask), keys[0], 0)[0]

    engine = "scan" if kind == "ode" else None
    model = build_model(kind, N_FEATURES, 128, 2, window=60, key=key, ode_engine=engine)
    return model, loss


def run(name: str, n: int, batch: int, seconds: int, reps: int) -> list[str]:
    model, loss = loss_of(name, seconds)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    grad = jax.value_and_grad(loss)
    data = inputs(batch, seconds)
    mesh = make_mesh(1, n)
    one = jax.devices()[0]
    whole = NamedSharding(mesh, P())
    split = [jax.device_put(a, NamedSharding(mesh, P("data"))) for a in data]
    arms = {}
    for arm in ARMS:
        if arm == "one device":
            args = (jax.device_put(params, one), *(jax.device_put(a, one) for a in data))
        else:
            args = (jax.device_put(params, whole), *split)
        fn = jax.jit(lambda p, *a: grad(p, static, *a))
        t0 = time.perf_counter()
        if arm.endswith("map_batch"):
            with batch_mesh(mesh):
                compiled = fn.lower(*args).compile()
        else:
            compiled = fn.lower(*args).compile()
        compile_s = time.perf_counter() - t0
        out = jax.block_until_ready(compiled(*args))  # warm-up, and the gradient compared
        arms[arm] = dict(call=compiled, args=args, compile=compile_s, grad=out[1], times=[])
        arms[arm]["loops"] = len(loops_with_all_reduce(compiled))
    for _ in range(reps):
        for arm in ARMS:
            a = arms[arm]
            t0 = time.perf_counter()
            jax.block_until_ready(a["call"](*a["args"]))
            a["times"].append(time.perf_counter() - t0)
    base = arms["one device"]
    rows = []
    for arm in ARMS:
        a = arms[arm]
        rel = max(
            float(np.max(np.abs(np.asarray(g) - np.asarray(b))) / (np.max(np.abs(b)) + 1e-30))
            for g, b in zip(
                jax.tree_util.tree_leaves(a["grad"]),
                jax.tree_util.tree_leaves(base["grad"]),
                strict=True,
            )
        )
        ms = 1000 * statistics.median(a["times"])
        speed = statistics.median(base["times"]) / statistics.median(a["times"])
        rows.append(
            f"| {name} | {arm} | {ms:,.0f} | {speed:.2f}x | {a['loops']} | {rel:.1e} "
            f"| {a['compile']:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="devices on the data axis")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--models", nargs="+", default=["HR Kalman (128, 2)", "HR ODE (128, 2)", "VO2 256-2"]
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_axis_cpu.md"))
    opts = parser.parse_args(argv)
    if len(jax.devices()) < opts.devices:
        parser.error(f"{opts.devices} devices asked for, {len(jax.devices())} visible")
    head = [
        "| model | arm | ms per value and gradient | speed vs one device | loop bodies "
        "with an all-reduce | max relative gradient difference | compile (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print(*head, sep="\n")
    rows = []
    t0 = time.perf_counter()
    for name in opts.models:
        rows += run(name, opts.devices, opts.batch, opts.seconds, opts.reps)
    intro = (
        f"{machine()}; {opts.devices} devices on the data axis; batch {opts.batch} x "
        f"{opts.seconds} s; medians of {opts.reps} calls per arm, the arms alternating; "
        f"the run took {(time.perf_counter() - t0) / 60:.1f} min "
        f"(`python benchmarks/data_axis.py {' '.join(sys.argv[1:])}`)."
    )
    write_results(opts.out, "A batch split over a data axis", intro, head + rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
