"""Cross-validation as one vmapped program against the same folds one after another.

    python benchmarks/cv_vmap.py                       # ~4 min on 2 cores
    python benchmarks/cv_vmap.py --model kalman --hidden 128 --layers 2

On a synthetic cohort (`--runners` runners of `--sessions` sessions, leave-one-runner-out: one
fold per runner), one HR model is trained on every fold twice, on one CPU device:

- vmapped: `cv.fit_folds` with all K fold keys, one program whose every step runs the K folds'
  batches together;
- sequential: `cv.fit_folds` once per fold (K = 1) with that fold's key and data, the way a
  loop over folds trains them. Every call builds its program anew; JAX's persistent
  compilation cache (on, in a temporary folder) lets folds after the first load it instead of
  compiling it again, so the sequential arm pays one compilation as the vmapped one does.

Both train the same epochs and steps, with early stopping off (patience above the epoch count),
so both do the same work; wall time includes compilation. The folds' final validation losses
are compared too: the vmapped program trains each fold as the sequential one does, so they
agree up to float rounding.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 1)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="wearjax-cv-vmap-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

import numpy as np  # noqa: E402
from common import device_name  # noqa: E402

from wearjax.cv import fit_folds  # noqa: E402
from wearjax.data.synthetic import simulate_cohort  # noqa: E402
from wearjax.tasks.hr import HRStudyConfig, build_model, make_task, prepare  # noqa: E402
from wearjax.train.loop import TrainConfig  # noqa: E402


def fold_slice(tree, k: int):
    return jax.tree_util.tree_map(lambda a: a[k : k + 1], tree)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ode", choices=("kalman", "ode"))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cv_vmap_cpu.md"))
    args = parser.parse_args()

    cohort = simulate_cohort(
        jax.random.key(0), args.runners, args.sessions, min_minutes=15.0, max_minutes=20.0
    )
    train = TrainConfig(
        epochs=args.epochs, steps_per_epoch=args.steps, early_stopping_patience=args.epochs + 1
    )
    config = HRStudyConfig(
        models=((args.model, args.hidden, args.layers),), train=train, batch_size=2,
        runners_out=1, segment_windows=None, seed=0,
    )  # fmt: skip
    data, fold, split, _ = prepare(cohort, config)
    k = split.n_folds
    init = partial(
        build_model, args.model, data.features.shape[-1], args.hidden, args.layers, window=60
    )
    task = make_task(config, cohort.x.shape[1])
    keys = jax.random.split(jax.random.key(0), k)

    def fit(folds, fold_keys):
        out = fit_folds(lambda key: init(key=key), task, data, folds, train.recipe(), fold_keys)
        jax.block_until_ready(jax.tree_util.tree_leaves(out.model))
        return np.asarray(out.history["val_loss"][-1])

    t0 = time.perf_counter()
    vmapped = fit(fold, keys)
    t_vmap = time.perf_counter() - t0
    print(f"vmapped: {t_vmap:.1f} s", flush=True)
    t0 = time.perf_counter()
    sequential = np.concatenate([fit(fold_slice(fold, i), keys[i : i + 1]) for i in range(k)])
    t_seq = time.perf_counter() - t0
    print(f"sequential: {t_seq:.1f} s", flush=True)
    gap = float(np.max(np.abs(vmapped - sequential) / np.abs(sequential)))

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = f"{args.model} ({args.hidden}, {args.layers})"
    text = "\n".join(
        [
            "# Cross-validation: one vmapped program against folds one after another",
            "",
            f"`python benchmarks/cv_vmap.py --model {args.model} --hidden {args.hidden} "
            f"--layers {args.layers}`; {platform.machine()}, {cores} CPU cores, one JAX "
            f"device ({device_name()}), jax {jax.__version__}. {k} folds (leave one runner out "
            f"of {args.runners}), {args.epochs} epochs x {args.steps} steps of 2 whole sessions "
            f"(15-20 min, padded to {cohort.x.shape[1]} s); wall time including compilation; "
            "one run.",
            "",
            "| model | folds | vmapped (s) | sequential (s) | sequential / vmapped | "
            "largest relative gap in final validation loss |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {name} | {k} | {t_vmap:.1f} | {t_seq:.1f} | {t_seq / t_vmap:.2f}x | {gap:.1e} |",
            "",
        ]
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
