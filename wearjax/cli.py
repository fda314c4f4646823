"""The `wearjax` command: `demo`, `predict`, and `cv TASK` / `fit TASK` / `report TASK` for
every task in `wearjax.tasks.commands.TASKS`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wearjax.errors import TrainingInterrupted, WearjaxError
from wearjax.tasks.arguments import check_arguments, seed
from wearjax.tasks.commands import TASKS, demo, predict, say, unit_arguments


def _mesh(text: str) -> tuple[int, int]:
    try:
        sizes = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give FOLDS or FOLDSxDATA, e.g. 4 or 4x2")
    return sizes if len(sizes) == 2 else (sizes[0], 1)


def _mesh_argument(p: argparse.ArgumentParser, shown: bool = True) -> None:
    """`--mesh` and `--devices`; hidden from the help of a command that trains no folds (it
    still reads them, to refuse them in one line that says why)."""
    hide = None if shown else argparse.SUPPRESS
    p.add_argument(
        "--mesh", type=_mesh, metavar="FOLDSxDATA",
        help=hide or "shard training over a device mesh: folds over FOLDS devices, each batch "
        "over DATA (e.g. 4x2 on 8 devices; on CPU, with --devices 8)",
    )  # fmt: skip
    p.add_argument(
        "--devices", type=int, metavar="N",
        help=hide or "JAX CPU devices to make (default: one per usable core, or XLA_FLAGS' "
        "count); GPUs and TPUs are the ones visible",
    )  # fmt: skip


def _processes(text: str) -> tuple:
    if text == "auto":
        return ()
    try:
        address, n, i = text.split(",")
        n, i = int(n), int(i)
    except ValueError:
        n = i = -1
    host, _, port = address.rpartition(":") if n >= 1 else ("", "", "")
    if not (n >= 1 and 0 <= i < n and host and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give COORDINATOR,PROCESSES,ID with the coordinator as HOST:PORT (e.g. "
            "10.0.0.1:1234,4,0), or no value to let JAX find the cluster"
        )
    return address, n, i


def _distributed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--distributed", type=_processes, nargs="?", const=(), metavar="COORDINATOR,N,ID",
        help="one of N processes (one per host) sharing the folds through jax.distributed; "
        "no value: JAX finds the cluster (SLURM, Open MPI, a TPU pod slice); process 0 writes",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wearjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="cross-validate the HR models on the synthetic cohort")
    d.add_argument("--out", type=Path, default=Path("wearjax-demo"), help="output folder")
    d.add_argument("--quick", action="store_true", help="small cohort, short training")
    d.add_argument("--seed", type=seed, default=0)
    _mesh_argument(d)
    _distributed_argument(d)
    d.set_defaults(run=demo)

    helps = {
        "cv": "cross-validate a task's models",
        "fit": "train a model on all your data",
        "report": "run a task's study on its built-in datasets and write the report",
    }
    outs = {"cv": "output folder", "fit": "checkpoint file to write", "report": "output folder"}
    for command in ("cv", "fit", "report"):
        tasks = sub.add_parser(command, help=helps[command]).add_subparsers(
            dest="task", required=True
        )
        for task, commands in TASKS.items():
            if command not in commands:
                continue
            c = commands[command]
            p = tasks.add_parser(task, help=c.help)
            c.arguments(p)
            if c.quick:
                p.add_argument("--quick", action="store_true", help="small models, short training")
            p.add_argument("--out", type=Path, required=True, help=outs[command])
            p.add_argument("--seed", type=seed, default=0)
            _mesh_argument(p, shown=c.folds)
            if c.processes:
                _distributed_argument(p)
            p.set_defaults(run=c.run, folds=c.folds)

    p = sub.add_parser("predict", help="predict HR (or VO2) of a recording with a checkpoint")
    p.add_argument(
        "--model", type=Path, required=True,
        help="checkpoint from `wearjax fit hr`, `fit virtual` or `fit vo2`",
    )  # fmt: skip
    p.add_argument(
        "file", type=Path,
        help="a FIT, TCX or CSV recording or a folder of them (HR checkpoints); a sampled-signal "
        "CSV or NPZ (virtual-sensing checkpoints); a CPET test or a folder of them (VO2)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("wearjax-predict"), help="output folder")
    p.add_argument("--hr0", type=float, help="HR (bpm) at the first second, for files without HR")
    p.add_argument(
        "--columns",
        help="VO2 checkpoints: the tests' column names, e.g. "
        "'vo2=VO2 (ml/min),hr=HR' (default: as the model's training files were read)",
    )
    p.add_argument(
        "--vo2-unit",
        choices=("mL/min", "L/min"),
        help="VO2 checkpoints: the tests' VO2 unit (default: as in training, else detected)",
    )
    unit_arguments(p)
    p.set_defaults(run=predict)
    return parser


def compilation_cache() -> None:
    """Keep XLA's compiled programs between runs (JAX's persistent compilation cache) in
    `$WEARJAX_CACHE` (default `~/.cache/wearjax/xla`; `off` disables it): a second run of the
    same command skips most compiling."""
    where = os.environ.get("WEARJAX_CACHE", str(Path.home() / ".cache" / "wearjax" / "xla"))
    if where.lower() in ("", "0", "off", "none"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def cpu_devices(count: int | None = None) -> None:
    """`count` JAX CPU devices (`jax_num_cpu_devices`; default one per usable core), unless
    the user set a count in `XLA_FLAGS=--xla_force_host_platform_device_count` or, for the
    default, JAX has already started: training spreads its folds over them
    (`cv.spread_folds`). Other platforms are unaffected. A `count` that cannot be had (below
    1, beside XLA_FLAGS' count, or JAX started with another) is refused in one line."""
    import jax

    if count is not None and count < 1:
        raise WearjaxError(f"--devices {count}: give a number of devices of at least 1")
    if "device_count" in os.environ.get("XLA_FLAGS", ""):
        if count is not None:
            raise WearjaxError("--devices and XLA_FLAGS' device count both given; keep one")
        return
    from wearjax.sharding import usable_cores

    try:
        jax.config.update("jax_num_cpu_devices", count or usable_cores())
    except RuntimeError:  # the backend is already initialised (e.g. called from Python)
        if count is not None and count != len(jax.devices("cpu")):
            raise WearjaxError(
                f"--devices {count}: JAX has already started with {len(jax.devices('cpu'))} "
                "CPU devices; set the count before JAX starts (a new process)"
            ) from None


def join_processes(spec: tuple | None) -> None:
    """Start JAX's distributed runtime (`--distributed`) before anything else touches JAX:
    `(coordinator, processes, id)`, or `()` for JAX's own cluster detection; CPU collectives
    through gloo. Every process then trains its share of the folds (`cv.process_folds`)."""
    if spec is None:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(*spec)
    except (RuntimeError, ValueError) as err:
        raise WearjaxError(f"--distributed: {err}") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    compilation_cache()
    try:
        check_arguments(args, args.command)
        if not hasattr(args, "mesh"):
            return args.run(args)
        if not getattr(args, "folds", True):  # one model, or no training: nothing to shard
            for option in ("mesh", "devices"):
                if getattr(args, option) is not None:
                    raise WearjaxError(
                        f"--{option} shards cross-validation folds; `{args.command} {args.task}` "
                        f"trains no folds: leave --{option} out"
                    )
            return args.run(args)
        import jax

        from wearjax.cv import make_mesh, spread_folds

        join_processes(getattr(args, "distributed", None))
        cpu_devices(args.devices)
        if args.mesh is None:
            with spread_folds():
                return args.run(args)
        # each process shards its own folds over its own devices
        with jax.set_mesh(make_mesh(*args.mesh, devices=jax.local_devices())):
            return args.run(args)
    except TrainingInterrupted as err:
        say(f"{err}; run the same command with --resume to continue")
        return 130
    except KeyboardInterrupt:
        say("interrupted; nothing was written after the last file named above")
        return 130
    except WearjaxError as err:
        say(str(err))
        return 2
    except OSError as err:
        say(f"{err.filename or ''}: {err.strerror or err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
