"""The heart-rate study of `tasks.hr`: every HR model of `HRStudyConfig.models` (and the
personalised ODE) cross-validated on the same folds, both protocols scored, beside the
baselines. Used by `wearjax demo`, `wearjax cv hr` and `experiments/hr_table1.py`.

Where training leaves cores idle (accelerators; fewer CPU devices than cores), a worker thread
builds the next model while one trains: initialises its folds and compiles its epoch and its
held-out prediction (`kind_program`, `cv.compile_folds`, `cv.compile_predict`), with the same
results bit for bit. Building in turn left cores idle even with a fold per core (tracing is
Python on one core; the study kept 1.63 of 2 cores busy on average), but there the overlap
gained nothing, while with the quick demo's folds on one device it took the study from 247 to
201 s (`benchmarks/demo_ahead.py`).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import (
    FoldProgram,
    Split,
    compile_folds,
    compile_predict,
    fit_folds,
    gather_folds,
    gather_processes,
    predict_held_out,
    process_folds,
    this_process_folds,
)
from wearjax.data.types import Cohort
from wearjax.eval.metrics import predictive_scores, summarize
from wearjax.eval.protocols import given_mask
from wearjax.sharding import cores_to_spare, current_mesh, default_mesh, max_over_processes
from wearjax.tasks import hr_personal, study_state
from wearjax.tasks.hr import (
    HR_VARIANTS,
    TRAIN_OVERRIDES,
    HRStudyConfig,
    build_model,
    make_task,
    predict,
    prepare,
)
from wearjax.tasks.hr_bands import calibrate_bands
from wearjax.tasks.hr_baselines import baselines


def _as_floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


def score_protocols(pred: dict, hr, scored: dict, summarize_jit=None) -> dict:
    """Pooled metrics (`eval.metrics.summarize`) of each protocol's `[S, T]` prediction, and
    the calibration of its band (`predictive_scores`) where `pred` has a `{protocol}_var`."""
    summarize_jit = summarize_jit or jax.jit(summarize)
    out = {}
    for p in ("standard", "generative"):
        out[p] = _as_floats(summarize_jit(jnp.asarray(pred[p]), hr, jnp.asarray(scored[p])))
        if np.any(pred.get(f"{p}_var", 0.0) > 0):  # a model with a variance: its calibration
            scores = predictive_scores(
                jnp.asarray(pred[p]), jnp.asarray(pred[f"{p}_var"]), hr, jnp.asarray(scored[p])
            )
            out[p].update(_as_floats(scores))
        own = pred.get(f"{p}_var_model")
        if own is not None and np.any(own > 0):  # the model's own variance, uncalibrated
            scores = predictive_scores(
                jnp.asarray(pred[p]), jnp.asarray(own), hr, jnp.asarray(scored[p])
            )
            out[p]["coverage_2sd_model"] = float(scores["coverage_2sd"])
    return out


def _header(cohort: Cohort, config: HRStudyConfig, split: Split, names) -> dict:
    runner = np.asarray(cohort.runner)
    runners_of = lambda m: [sorted(set(runner[row].tolist())) for row in m]  # noqa: E731
    return {
        "cohort": {
            "n_runners": cohort.n_runners,
            "n_sessions": cohort.n_sessions,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            "features": list(names),
        },
        "folds": {
            "runners_out": config.runners_out,
            "n_folds": split.n_folds,
            "test_runners": runners_of(split.test),
            "validation_runners": runners_of(split.validation),
        },
        "config": {
            "window": config.window,
            "segment_windows": config.segment_windows,
            "batch_size": config.batch_size,
            "ode_engine": config.ode_engine,
            "gru_impl": config.gru_impl,
            "session_relative": [n for n in names if n in config.session_relative],
            **config.train._asdict(),
        },
        "models": {},
    }


def _kind_fit(cohort: Cohort, config: HRStudyConfig, kind: str, hidden: int, layers: int,
              prepared):  # fmt: skip
    """The positional arguments of `cv.fit_folds` for one (kind, size) on this process's folds
    (all of them unless jax.distributed runs several processes), and those folds."""
    data, fold, split, _ = prepared
    init = partial(build_model, kind, data.features.shape[-1], hidden, layers,
                   window=config.window, ode_engine=config.ode_engine,
                   gru_impl=config.gru_impl)  # fmt: skip
    keys = jax.random.split(jax.random.key(config.seed), split.n_folds)
    fold, keys, local = this_process_folds(split, fold, keys)
    overrides = TRAIN_OVERRIDES.get(HR_VARIANTS.get(kind, (kind,))[0], {})
    recipe = config.train._replace(**overrides).recipe()
    task = make_task(config, cohort.x.shape[1])
    return (lambda k: init(key=k), task, data, fold, recipe, keys), local


def kind_program(cohort: Cohort, config: HRStudyConfig, kind: str, hidden: int, layers: int,
                 prepared, mesh=None) -> FoldProgram:  # fmt: skip
    """`cv.compile_folds` of one (kind, size), for `cross_validate_kind(..., program=...)`:
    its folds initialised, its epoch and its held-out prediction compiled."""
    args, local = _kind_fit(cohort, config, kind, hidden, layers, prepared)
    program = compile_folds(*args, mesh=mesh)
    model = eqx.combine(program.state.best_params, program.static)
    split = prepared[2].take(local)
    compile_predict(predict, model, args[3], args[2], split, batch=config.eval_batch)
    return program


def cross_validate_kind(
    cohort: Cohort, config: HRStudyConfig, kind: str, hidden: int, layers: int, prepared=None,
    *, progress: bool = True, program: FoldProgram | None = None, state_file=None,
    resume: bool = False,
):  # fmt: skip
    """Cross-validate one (kind, size) on `prepare`'s folds; returns `(entry, predictions,
    fit)` with the metrics entry of `metrics.json` and the `[S, T]` predictions. `program`:
    its `kind_program`, built ahead; `state_file` and `resume`: the folds' training state
    saved every epoch and resumed (`cv.fit_folds`)."""
    prepared = prepared or prepare(cohort, config)
    data, _, split, _ = prepared
    scored = scored_masks(data.mask, config.window, split)
    name = f"{kind}_{hidden}x{layers}"
    args, local = _kind_fit(cohort, config, kind, hidden, layers, prepared)
    fold = args[3]
    whole, split = split, split.take(local)
    t0 = time.perf_counter()
    fit = fit_folds(*args, progress=name if progress else False, program=program,
                    state_file=state_file, resume=resume,
                    run={"study": "cv hr", "model": name})  # fmt: skip
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if progress:
        print(f"{name}: predicting the held-out sessions, calibrating the band", file=sys.stderr)
    pred = predict_held_out(predict, fit.model, fold, data, split, batch=config.eval_batch)
    if len(local) < whole.n_folds:  # every process's held-out predictions, assembled
        pred, split = gather_processes(pred), whole
    pred = calibrate_bands(
        predict, fit.model, fold, data, split, config.window, pred, batch=config.eval_batch
    )
    eval_s = time.perf_counter() - t0
    entry = score_protocols(pred, data.hr, scored)
    params = jax.tree_util.tree_leaves(eqx.filter(fit.model, eqx.is_inexact_array))
    entry.update(
        train_seconds=train_s,
        eval_seconds=eval_s,
        epochs_run=max_over_processes(fit.history["stopped"].shape[0]),  # each its own folds
        best_val_loss=gather_folds(np.min(fit.history["val_loss"], axis=0), local, whole.n_folds),
        n_traces=fit.n_traces,
        n_parameters=int(sum(x.size for x in params) // len(local)),
    )
    return entry, pred, fit


def scored_masks(mask, window: int, split: Split) -> dict[str, np.ndarray]:
    """Per protocol, the observed seconds it did not give, in the sessions some fold tests:
    what its metrics cover."""
    m = np.asarray(mask) & split.test.any(axis=0)[:, None]
    return {p: m & ~np.asarray(given_mask(mask, window, p)) for p in ("standard", "generative")}


def run_personal_study(cohort: Cohort, study: HRStudyConfig, config=None, *, progress=True):
    """The personalised ODE (`tasks.hr_personal`) cross-validated on this task's folds."""
    _, _, split, _ = prepare(cohort, study)
    return hr_personal.run_personal(
        cohort, split, study.window, study.seed, config, progress=progress
    )


def run_hr_study(
    cohort: Cohort, config: HRStudyConfig, *, split: Split | None = None, progress: bool = True,
    ahead: bool | None = None, out=None, resume: bool = False,
):  # fmt: skip
    """Cross-validate every HR model of `config.models` (and the personalised ODE when
    `config.personal` is set) on `split` (default: leave-`runners_out`-runners-out), evaluate
    both protocols and the baselines; returns `(results, predictions)` (README: metrics.json).
    `ahead`: build each next model's programs in a worker thread while one trains (the same
    results); None (default): when training leaves cores idle (`sharding.cores_to_spare`).
    `out`: keep the study's progress there until the caller `study_state.clear`s it (each
    finished model's metrics and predictions, and the training state of the one in training,
    `OUT/partial_NAME.state`, every epoch); `resume` continues an interrupted study of the
    same data and settings, with the same results as an uninterrupted one."""
    prepared = prepare(cohort, config, split)
    data, fold, split, names = prepared
    scored = scored_masks(data.mask, config.window, split)
    results = _header(cohort, config, split, names)
    predictions = {"hr": np.asarray(data.hr), "mask": np.asarray(data.mask), "scored": scored}
    # the next model's programs (`kind_program`), built in a worker thread while one trains
    mesh = default_mesh(len(process_folds(split.n_folds)))
    if mesh is not None and mesh.shape["data"] > 1:  # `sharding.map_batch` needs the scan engine
        results["config"]["ode_engine_in_training"] = "scan"
    labels = [f"{kind}_{hidden}x{layers}" for kind, hidden, layers in config.models]
    runs = [partial(cross_validate_kind, cohort, config, *m, prepared) for m in config.models]
    builders = [partial(kind_program, cohort, config, *m, prepared, mesh) for m in config.models]
    if config.personal is not None:
        labels.append("personal_ode")
        runs.append(partial(_personal, cohort, split, config))
        builders.append(partial(hr_personal.personal_program, cohort, split, config.window,
                                config.seed, config.personal, mesh))  # fmt: skip
    progress_of = _Progress(out, resume, cohort, results, labels, config)
    for name, (entry, pred) in progress_of.finished.items():  # by an interrupted study
        results["models"][name], predictions[name] = entry, pred
    todo = [i for i, name in enumerate(labels) if name not in progress_of.finished]
    worker = ThreadPoolExecutor(1, thread_name_prefix="wearjax-compile")
    try:
        # a mesh set with jax.set_mesh holds for its own thread only: then build in turn
        ahead = (cores_to_spare(mesh) if ahead is None else ahead) and current_mesh() is None
        pending = [labels[i] for i in todo]
        programs = _one_ahead(worker, [builders[i] for i in todo], pending, progress) if ahead \
            else iter([None] * len(todo))  # fmt: skip
        for i, program in zip(todo, programs, strict=False):
            state_file, resumed = progress_of.training_state(labels[i])
            entry, pred, _ = runs[i](progress=progress, program=program, state_file=state_file,
                                     resume=resumed)  # fmt: skip
            results["models"][labels[i]], predictions[labels[i]] = entry, pred
            progress_of.finish(labels[i], entry, pred)
    finally:
        worker.shutdown(wait=False, cancel_futures=True)
    results["models"] = {name: results["models"][name] for name in labels}  # the config's order
    summarize_jit = jax.jit(summarize)
    for name, pred in baselines(data, fold, split, config).items():
        results["models"][name] = score_protocols(pred, data.hr, scored, summarize_jit)
        predictions[name] = pred
    return results, predictions


def _personal(cohort: Cohort, split: Split, config: HRStudyConfig, **kw):
    """`hr_personal.run_personal` as `cross_validate_kind` answers: (entry, predictions, fit)."""
    r = hr_personal.run_personal(cohort, split, config.window, config.seed, config.personal, **kw)
    return r.entry, r.predictions, r


class _Progress:
    """An HR study's finished models in `out` (`tasks.study_state`), when it has an `out`."""

    def __init__(self, out, resume: bool, cohort: Cohort, results: dict, labels: list[str],
                 config: HRStudyConfig):  # fmt: skip
        self.out, self.resume, self.finished = out, resume, {}
        if out is None:
            return
        # what a model's training depends on (the seed and the losses' weights since
        # 2026-12-07: before, another --seed whose folds came out the same was resumed)
        self.key = {
            "study": "cv hr", "models": labels, "config": results["config"],
            "folds": results["folds"], "features": results["cohort"]["features"],
            "data": study_state.fingerprint(cohort.x, cohort.hr, cohort.mask, cohort.valid),
            "seed": config.seed, "personal": repr(config.personal),
            "losses": [config.generative_weight, config.crps_weight, config.ridge],
        }  # fmt: skip
        if not resume:
            study_state.check(out, False, "cv hr study")
            Path(out).mkdir(parents=True, exist_ok=True)
            study_state.save(out, self.key, {}, {}, {})
            return
        entries, arrays, _ = study_state.load(out, self.key, {})
        for name, entry in entries.items():
            fields = {k.partition("/")[2]: v for k, v in arrays.items() if k.startswith(name + "/")}
            self.finished[name] = (entry, fields)

    def training_state(self, name: str):
        """Where the training state of `name` is kept, and whether to resume from it."""
        return study_state.training_state(self.out, name, self.resume)

    def finish(self, name: str, entry: dict, pred: dict) -> None:
        if self.out is None:
            return
        self.finished[name] = (entry, pred)
        entries = {n: e for n, (e, _) in self.finished.items()}
        arrays = {f"{n}/{k}": v for n, (_, p) in self.finished.items() for k, v in p.items()}
        study_state.save(self.out, self.key, entries, arrays, {})
        self.training_state(name)[0].unlink(missing_ok=True)


def _one_ahead(worker: ThreadPoolExecutor, builders: list, names: list[str], progress: bool):
    """`builders[i]()` for each i in turn, built in `worker` while the caller uses the one
    before (one ahead: two builds at once fight over Python's lock and the cores)."""
    following = worker.submit(builders[0]) if builders else None
    for i, name in enumerate(names):
        if progress and not following.done():
            print(f"{name}: compiling", file=sys.stderr, flush=True)
        program = following.result()
        following = worker.submit(builders[i + 1]) if i + 1 < len(builders) else None
        yield program
