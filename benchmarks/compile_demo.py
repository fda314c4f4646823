"""Where `wearjax demo --quick`'s compile time goes, program by program, and what compiling the
initialiser at a cheaper LLVM level (`cv.INIT_COMPILER_OPTIONS`) saves.

1. The quick demo's study (`tasks.hr_study.run_hr_study` on `demo_config(quick=True)`, the folds
   spread over one CPU device per core as the CLI does, no persistent compilation cache),
   with a listener on JAX's backend-compile events: XLA compile seconds per program name
   (`epoch`, the initialiser `<lambda>`, the evaluation programs, ...) and the seconds JAX
   spends in Python before XLA sees a program (tracing, lowering to MLIR), next to the wall
   time of the whole study.
2. For each HR model of the demo, its fold initialiser compiled with XLA's defaults and with
   `INIT_COMPILER_OPTIONS` in the same process (same bits asserted), and the number of
   fusions XLA emits for it (each fusion is one kernel for LLVM to compile; the LLVM level
   does not change XLA's own fusion passes).
3. For the demo's two ODE models, the epoch program on each ODE engine
   (`HRStudyConfig.ode_engine`): seconds to trace, lower and compile it, and seconds per
   epoch once compiled (the mean of epochs 2 and 3). Run after part 1 in the same process,
   its tracing is warmer than a fresh process's; `--only engines` gives the cold figures.

    python benchmarks/compile_demo.py                  # ~6 min on 2 cores
    python benchmarks/compile_demo.py --only engines   # part 3 alone, ~2 min
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np
from common import cores, machine, write_results

import wearjax.cv as cv
from wearjax.data.synthetic import simulate_cohort
from wearjax.tasks.hr import build_model, prepare
from wearjax.tasks.hr_study import _kind_fit, run_hr_study
from wearjax.tasks.presets import demo_config

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# the Python side of building a program: tracing to a jaxpr, then lowering it to MLIR
FRONT_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing to jaxprs (Python)",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering jaxprs to MLIR (Python)",
}


def study_compiles() -> tuple[dict, dict, float]:
    """Compile seconds per program name over the quick demo's study, the seconds of tracing
    and lowering (all programs), and its wall time."""
    seconds: dict = defaultdict(float)
    counts: dict = defaultdict(int)
    front: dict = defaultdict(float)

    def listen(event, duration, **kw):
        if event in FRONT_EVENTS:
            front[FRONT_EVENTS[event]] += duration
        if event == COMPILE_EVENT:
            name = kw.get("fun_name", "?")
            seconds[name] += duration
            counts[name] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    cohort_args, config = demo_config(True, 0)
    t0 = time.perf_counter()
    cohort = simulate_cohort(jax.random.key(0), **cohort_args)
    with cv.spread_folds():
        run_hr_study(cohort, config, progress=False)
    wall = time.perf_counter() - t0
    return {k: (seconds[k], counts[k]) for k in seconds}, dict(front), wall


def fusions(compiled) -> int:
    return sum(" fusion(" in line for line in compiled.as_text().splitlines())


def initialisers() -> list[str]:
    """One row per demo HR model: the initialiser's compile, default against cheap."""
    rows = []
    keys = jax.vmap(cv.split_for_fold)(jax.random.split(jax.random.key(0), 2))[0]
    for kind, hidden, layers in demo_config(True, 0)[1].models:
        init = lambda k, a=(kind, 7, hidden, layers): build_model(*a, window=60, key=k)  # noqa: E731
        lowered = cv.init_program(init).lower(keys)  # the program `cv.initialise` compiles
        times, outs = [], []
        for options in (None, cv.INIT_COMPILER_OPTIONS):
            t = time.perf_counter()
            compiled = lowered.compile(compiler_options=options)
            times.append(time.perf_counter() - t)
            outs.append(compiled(keys))
        same = all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True)
        )
        assert same, f"{kind} ({hidden}, {layers}): the cheap compile changed the parameters"
        rows.append(
            f"| {kind} ({hidden}, {layers}) | {times[0]:.2f} | {times[1]:.2f} | "
            f"{times[0] / times[1]:.2f}x | {fusions(compiled)} |"
        )
        print(rows[-1], flush=True)
    return rows


def engines() -> list[str]:
    """One row per demo ODE model and engine: building its epoch program, and running it."""
    rows = []
    cohort_args, config = demo_config(True, 0)
    cohort = simulate_cohort(jax.random.key(0), **cohort_args)
    with cv.spread_folds():
        for kind, hidden, layers in config.models:
            if kind != "ode":
                continue
            for engine in ("scan", "diffrax"):  # scan first: it pays the first-use costs
                c = config._replace(ode_engine=engine)
                args, _ = _kind_fit(cohort, c, kind, hidden, layers, prepare(cohort, c))
                program = cv.compile_folds(*args, compile=False)
                inputs = (program.state, program.folds, program.data)
                t0 = time.perf_counter()
                traced = program.epoch.trace(*inputs)
                t1 = time.perf_counter()
                lowered = traced.lower()
                t2 = time.perf_counter()
                compiled = lowered.compile()
                t3 = time.perf_counter()
                state = jax.block_until_ready(compiled(*inputs)[0])
                t4 = time.perf_counter()
                for _ in range(2):
                    state = compiled(state, *inputs[1:])[0]
                jax.block_until_ready(state)
                run = (time.perf_counter() - t4) / 2
                rows.append(
                    f"| ode ({hidden}, {layers}) | {engine} | {t1 - t0:.2f} | {t2 - t1:.2f} | "
                    f"{t3 - t2:.2f} | {t3 - t0:.2f} | {run:.2f} |"
                )
                print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compile_demo_cpu.md"))
    parser.add_argument("--only", choices=("engines",), help="run part 3 alone")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", cores())  # as the CLI: one device per core
    engine_header = [
        "| model | engine | trace (s) | lower (s) | XLA compile (s) | to build (s) | "
        "per epoch (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    if args.only == "engines":
        engine_rows = [*engine_header, *engines()]
        write_results(
            args.out,
            "The quick demo's ODE epoch program on each engine",
            f"`python benchmarks/compile_demo.py --only engines`; {machine()}, one run on a "
            "shared machine, persistent compilation cache off (a fresh install).",
            engine_rows,
        )
        return 0
    init_rows = [
        "| model | initialiser compile, XLA defaults (s) | with INIT_COMPILER_OPTIONS (s) | "
        "saved | fusions |",
        "|---|---:|---:|---:|---:|",
        *initialisers(),
    ]
    per_program, front, wall = study_compiles()
    total = sum(s for s, _ in per_program.values())
    study_rows = ["| program | compiles | XLA compile (s) | share of the study's wall time |",
                  "|---|---:|---:|---:|"]  # fmt: skip
    for name, (s, n) in sorted(per_program.items(), key=lambda kv: -kv[1][0]):
        if s >= 0.5:
            study_rows.append(f"| `{name}` | {n} | {s:.1f} | {100 * s / wall:.0f}% |")
    rest = sum(s for s, _ in per_program.values() if s < 0.5)
    study_rows.append(
        f"| every other program (each < 0.5 s) | | {rest:.1f} | {100 * rest / wall:.0f}% |"
    )
    study_rows.append(f"| **all compiles** | | **{total:.1f}** | **{100 * total / wall:.0f}%** |")
    for name, s in front.items():
        study_rows.append(f"| {name}, before XLA | | {s:.1f} | {100 * s / wall:.0f}% |")
    study_rows.append(
        f"| the whole study (simulation, training, evaluation) | | {wall:.1f} | 100% |"
    )
    print("\n".join(study_rows))
    engine_rows = [*engine_header, *engines()]  # after the study, whose compiles it would warm
    write_results(
        args.out,
        "Compile time in the quick demo",
        f"`python benchmarks/compile_demo.py`; {machine()}, one run on a shared machine. The "
        "study's programs compiled with JAX's persistent cache off (a fresh install).",
        init_rows,
        study_rows,
        engine_rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
