"""The quick demo's study with each next model's programs built in a worker thread while one
trains (`tasks.hr_study.run_hr_study(ahead=True)`, the default) against building them in turn
(`ahead=False`, as before this round).

Each run is its own process with JAX's persistent compilation cache off (a fresh install) and
the folds spread over one CPU device per core, as the CLI runs `wearjax demo --quick`; the two
arms alternate, `--repeats` times. Reported: the study's wall time (simulation excluded), the
ratio in each pair, the cores kept busy on average (process CPU time / wall time), and whether
the two arms' metrics agree to the last bit.

    python benchmarks/demo_ahead.py              # ~7 min per pair on 2 cores
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
    import wearjax.cv as cv
    from wearjax.data.synthetic import simulate_cohort
    from wearjax.tasks.hr_study import run_hr_study
    from wearjax.tasks.presets import demo_config

    cohort_args, config = demo_config(True, 0)
    cohort = simulate_cohort(jax.random.key(0), **cohort_args)
    t0, c0 = time.perf_counter(), time.process_time()
    with cv.spread_folds():
        results, _ = run_hr_study(cohort, config, progress=False, ahead=sys.argv[2] == "ahead")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    metrics = {name: {p: m[p] for p in ("standard", "generative")}
               for name, m in results["models"].items()}
    print(json.dumps({"wall": wall, "cpu": cpu, "metrics": metrics}))
    """
)


def run(arm: str, devices: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(devices), arm],
        capture_output=True, text=True, check=True,
        env={**os.environ, "XLA_FLAGS": "", "WEARJAX_CACHE": "off"},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs")
    parser.add_argument(
        "--devices", type=int, default=cores(), help="CPU devices (default: one per core)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_ahead_cpu.md"))
    args = parser.parse_args()
    rows = [
        "| pair | built ahead (s) | built in turn (s) | in turn / ahead | cores busy, ahead | "
        "cores busy, in turn | same metrics |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i in range(args.repeats):
        # alternate which arm goes first, so a machine growing busier favours neither
        order = ("ahead", "in_turn") if i % 2 == 0 else ("in_turn", "ahead")
        r = {arm: run(arm, args.devices) for arm in order}
        same = r["ahead"]["metrics"] == r["in_turn"]["metrics"]
        a, b = r["ahead"]["wall"], r["in_turn"]["wall"]
        busy = {arm: r[arm]["cpu"] / r[arm]["wall"] for arm in r}
        rows.append(
            f"| {i + 1} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {busy['ahead']:.2f} | "
            f"{busy['in_turn']:.2f} | {'yes' if same else 'NO'} |"
        )
        print(rows[-1], flush=True)
    write_results(
        args.out,
        "The quick demo's study: next model built ahead or in turn",
        f"`python benchmarks/demo_ahead.py --repeats {args.repeats} --devices {args.devices}`; "
        f"{machine()}. The quick demo's cohort and settings (`demo_config(quick=True)`), all "
        f"five models, 2 folds spread over {args.devices} CPU device(s) ({cores()} cores), no "
        "persistent compilation cache; wall time of "
        "`run_hr_study`, one process per run, on a shared machine.",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
