"""The activity-recognition study behind `wearjax har report` and `experiments/har.py`: every
variant and baseline on each dataset's folds, accuracy and macro-F1 as mean +- SD over seeds
(official split) or over folds x seeds (leave-subjects-out), and the edge report of the full
model.

- BasicMotions (`data.imu.basic_motions`): the official 40/40 split, `seeds` seeds.
- seglearn `watch` (`data.imu.watch`, 4 s windows every 2 s): leave-2-subjects-out, 5 folds.
- the synthetic wrist-IMU set (`data.imu_synthetic`: 10 subjects x 5 activities x 24 windows of
  8 s at 25 Hz): leave-2-subjects-out, 5 folds.

`quick` runs BasicMotions alone with the full model, the CNN and both baselines, fewer epochs,
one seed: a smoke run of a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from wearjax.data.imu import LabelledWindows, basic_motions, watch
from wearjax.data.imu_synthetic import simulate_activities
from wearjax.errors import TrainingInterrupted, WearjaxError
from wearjax.eval.report import write_environment
from wearjax.sharding import check_fold_layout
from wearjax.tasks.har import VARIANTS, HARConfig, normalise, official_split, run, subject_split
from wearjax.tasks.har_baselines import BASELINES, baseline_predictions
from wearjax.tasks.har_edge import edge_report
from wearjax.tasks.probe import scores
from wearjax.tasks.study_state import replace_file

logger = logging.getLogger(__name__)

QUICK_VARIANTS = ("cmd", "cnn")
STUDY_VARIANTS = tuple(v for v in VARIANTS if v != "update_modulation")
"""The full study's models; `update_modulation` runs when named (`--variants`), so the
published table's command trains what it trained."""


def _summary(acc: np.ndarray, f1: np.ndarray, seconds: float) -> dict:
    acc, f1 = np.asarray(acc, float), np.asarray(f1, float)
    sd = lambda a: float(a.std(ddof=1)) if a.size > 1 else 0.0  # noqa: E731
    return {
        "accuracy_mean": float(acc.mean()), "accuracy_sd": sd(acc),
        "macro_f1_mean": float(f1.mean()), "macro_f1_sd": sd(f1),
        "n": int(acc.size), "seconds": round(seconds, 1),
    }  # fmt: skip


def _baseline_scores(name, windows: LabelledWindows, split, seed: int):
    return scores(baseline_predictions(name, windows, split, seed), windows, split)


DATASETS = {True: ("basic_motions",), False: ("basic_motions", "watch", "synthetic")}
"""The datasets of the quick and the full study, in the order they run."""


def datasets(quick: bool) -> dict:
    """Name -> (windows, split, seeds) of the study (`DATASETS[quick]`)."""
    loaders = {
        "basic_motions": lambda: (bm := basic_motions(), official_split(bm), 1 if quick else 3),
        "watch": lambda: (w := watch(), subject_split(w), 1),
        "synthetic": lambda: (s := simulate_activities(), subject_split(s), 1),
    }
    return {name: loaders[name]() for name in DATASETS[quick]}


def har_study(
    out: str | Path, *, quick: bool = False, variants=None, epochs: int | None = None,
    progress=False, resume: bool = False, seed: int = 0,
) -> dict:  # fmt: skip
    """Run the study (module docstring), write `out/metrics.json` and `out/edge/`; return the
    metrics. `out/metrics.json` is rewritten after every model, so an interrupted study keeps
    what it finished; `resume` skips the entries an earlier run with the same settings wrote
    (the full model on BasicMotions is trained again when the edge report is missing), and
    without it an unfinished study in `out` is refused, not written over. `seed`
    draws the models' initialisation and training and MiniRocket's kernels; the folds stay
    those of the study."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variants = tuple(variants or (QUICK_VARIANTS if quick else STUDY_VARIANTS))
    base = HARConfig(seed=seed)
    epochs = (25 if quick else base.train.epochs) if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    metrics: dict = {"config": {"quick": quick, "epochs": epochs, "variants": list(variants)}}
    if seed:  # only then: a seed-0 run resumes the metrics of runs that had no seed option
        metrics["config"]["seed"] = seed
    path = out / "metrics.json"
    if resume:
        if not path.exists():
            raise WearjaxError(
                f"--resume: {path} does not exist, so there is no study to continue; run "
                "without --resume"
            )
        metrics = _earlier(path, metrics["config"])
    elif missing := _unfinished(path):
        raise WearjaxError(
            f"{path} holds an unfinished study (missing: {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); continue it with --resume, or delete it "
            "or pass another --out to start again"
        )
    sets = datasets(quick)
    for _, split, seeds in sets.values():  # a --mesh that cannot split one: refused up front
        check_fold_layout(split.n_folds * seeds)
    edge_source = None
    for name, (windows, split, seeds) in sets.items():
        table = metrics.setdefault(name, {})
        for variant in variants:
            needed_for_edge = variant == "cmd" and edge_source is None and "edge" not in metrics
            if variant in table and not needed_for_edge:
                continue
            config = base.variant(variant)._replace(seeds=seeds)
            config = config._replace(train=config.train._replace(epochs=epochs))
            logger.info("%s: %s, %d folds x %d seeds", name, variant, split.n_folds, seeds)
            t0 = time.perf_counter()
            result = run(windows, split, config, progress=progress and f"{name} {variant}")
            table[variant] = _summary(result.accuracy, result.macro_f1, time.perf_counter() - t0)
            _write(path, metrics)
            if needed_for_edge:
                edge_source = (result, windows, split)
        for baseline in BASELINES:
            if baseline in table:
                continue
            t0 = time.perf_counter()
            acc, f1 = _baseline_scores(baseline, windows, split, seed)
            table[baseline] = _summary(acc, f1, time.perf_counter() - t0)
            _write(path, metrics)
    if edge_source is not None:
        result, windows, split = edge_source
        model, fold = result.one(0)
        test = split.test[0]
        x = np.asarray(normalise(jnp.asarray(windows.x[test]), fold))
        metrics["edge"] = edge_report(model, x, windows.y[test], out / "edge")
    _write(path, metrics)
    return metrics


def _unfinished(path: Path) -> list[str]:
    """The entries an earlier study's `path` lacks (dataset and model, the edge report); none
    when there is no such file or it is not a study's metrics, which a new study replaces."""
    try:
        earlier = json.loads(path.read_text())
        config = earlier["config"]
        quick, variants = bool(config["quick"]), list(config["variants"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    models = (*variants, *BASELINES)
    tables = {name: earlier.get(name) for name in DATASETS[quick]}
    missing = [f"{name} {model}" for name, table in tables.items() for model in models
               if not isinstance(table, dict) or model not in table]  # fmt: skip
    if "cmd" in variants and "edge" not in earlier:
        missing.append("the edge report")
    return missing


def _earlier(path: Path, config: dict) -> dict:
    """The metrics an earlier run wrote to `path`, when it ran with the same `config`; else one
    line saying what differs (`--resume` keeps only models trained as this run would)."""
    try:
        earlier = json.loads(path.read_text())
        old = earlier["config"]
        old.keys()  # a dict, or AttributeError
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WearjaxError(
            f"--resume: {path} is not the metrics of an earlier `report har` ({err!r}); "
            "delete it, or pass another --out, to start again"
        ) from None
    differ = [f"{k} {old.get(k)!r} -> {config.get(k)!r}" for k in sorted({*old, *config})
              if old.get(k) != config.get(k)]  # fmt: skip
    if differ:
        raise WearjaxError(
            f"--resume: {path} was written with other settings ({'; '.join(differ)}); run "
            "with its settings, or without --resume to start again"
        )
    return earlier


def _write(path: Path, metrics: dict) -> None:
    """Replace `path` atomically: an interrupted write never leaves half a file to resume."""
    replace_file(path, lambda p: p.write_text(json.dumps(metrics, indent=2)))
    write_environment(path.parent)


def markdown_table(metrics: dict) -> str:
    """Accuracy and macro-F1 (mean +- SD) per dataset and model."""
    rows = ["| dataset | model | accuracy | macro-F1 | n |", "|---|---|---:|---:|---:|"]
    for name, table in metrics.items():
        if name in ("config", "edge"):
            continue
        for model, m in table.items():
            rows.append(
                f"| {name} | {model} | {m['accuracy_mean']:.3f} +- {m['accuracy_sd']:.3f} "
                f"| {m['macro_f1_mean']:.3f} +- {m['macro_f1_sd']:.3f} | {m['n']} |"
            )
    return "\n".join(rows)


def report_command(args) -> int:
    """`wearjax report har`: the study (`har_study`) and its edge report, printed."""
    try:
        metrics = har_study(
            args.out, quick=args.quick, epochs=args.epochs, progress=True, seed=args.seed,
            resume=args.resume,
        )  # fmt: skip
    except KeyboardInterrupt:
        if not (Path(args.out) / "metrics.json").exists():
            raise
        raise TrainingInterrupted(
            f"interrupted; the finished models are kept in {args.out}/metrics.json"
        ) from None
    print(markdown_table(metrics))
    e = metrics["edge"]
    print(
        f"edge (cmd, BasicMotions): {e['parameters']} parameters, {e['flops_per_window']:.3g} "
        f"FLOPs/window, {e['latency_ms_batch1_median']:.2f} ms/window at batch 1, int8 accuracy "
        f"change {e['accuracy_change_int8']:+.3f}; written to {args.out}"
    )
    return 0
