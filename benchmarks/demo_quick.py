"""Where the time of `wearjax demo --quick` goes, and what the two fixes of this round buy.

Each configuration runs in its own process (the CPU device count is fixed when JAX starts) on
the quick demo's cohort and settings (`tasks.presets.demo_config(quick=True)`):

- `folds`: one HR model's training (`cv.fit_folds`, 2 folds vmapped) on one CPU device
  against the folds spread over one device per core (`cv.spread_folds`, the CLI's default):
  the first epoch (compile + run) and the median of the others, in seconds;
- `personal`: the personalised ODE's training and held-out evaluation (150 calibration steps
  per session) with the Diffrax engine against the scan engine (the default since this round).

    python benchmarks/demo_quick.py                 # ~4 min on 2 cores
    python benchmarks/demo_quick.py --model ode_64x3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from common import cores, machine, write_results

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import jax
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    import numpy as np
    import wearjax.cv as cv
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.tasks import hr_personal
    from wearjax.tasks.hr import prepare
    from wearjax.tasks.hr_study import cross_validate_kind
    from wearjax.tasks.presets import demo_config

    what, arg = sys.argv[2], sys.argv[3]
    cohort_args, config = demo_config(True, 0)
    cohort = simulate_cohort(jax.random.key(0), **cohort_args)
    prepared = prepare(cohort, config)
    epochs, original = [], cv.train_epochs

    def timed(epoch_fn, *a, **k):
        def run(*args):
            t = time.perf_counter()
            out = jax.block_until_ready(epoch_fn(*args))
            epochs.append(time.perf_counter() - t)
            return out
        return original(run, *a, **k)

    cv.train_epochs = timed
    with cv.spread_folds():
        if what == "folds":
            kind, size = arg.split("_")
            hidden, layers = (int(n) for n in size.split("x"))
            entry, _, _ = cross_validate_kind(
                cohort, config, kind, hidden, layers, prepared, progress=False
            )
        else:
            personal = config.personal._replace(engine=arg)
            entry = hr_personal.run_personal(
                cohort, prepared[2], config.window, config.seed, personal, progress=False
            ).entry
    print(json.dumps({
        "first_epoch": epochs[0], "epoch": float(np.median(epochs[1:])),
        "train": entry["train_seconds"], "eval": entry["eval_seconds"],
        "generative_mae": entry["generative"]["mae"],
    }))
    """
)


def run(devices: int, what: str, arg: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(devices), what, arg],
        capture_output=True, text=True, check=True,
        env={**os.environ, "XLA_FLAGS": ""},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="kalman_128x2", help="KIND_HxL of the fold timing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_quick_cpu.md"))
    args = parser.parse_args()
    n = cores()
    rows = [
        "| configuration | first epoch (s) | other epochs, median (s) | train (s) | eval (s) | "
        "generative MAE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    cases = [
        (f"{args.model}, 1 device", 1, "folds", args.model),
        (f"{args.model}, {n} devices (folds spread)", n, "folds", args.model),
        ("personalised ODE, diffrax engine", n, "personal", "diffrax"),
        ("personalised ODE, scan engine", n, "personal", "scan"),
    ]
    for name, devices, what, arg in cases:
        r = run(devices, what, arg)
        rows.append(
            f"| {name} | {r['first_epoch']:.1f} | {r['epoch']:.2f} | {r['train']:.1f} | "
            f"{r['eval']:.1f} | {r['generative_mae']:.2f} |"
        )
        print(rows[-1], flush=True)
    write_results(
        args.out,
        "The quick demo's costs",
        f"`python benchmarks/demo_quick.py --model {args.model}`; {machine()}. The quick "
        "demo's cohort (6 runners, 24 sessions) and settings, 2 folds; one run each, on a "
        "shared machine.",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
