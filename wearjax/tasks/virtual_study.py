"""The virtual-sensing study behind `wearjax cv virtual` and `experiments/virtual_sensing.py`:
every information setting the data allow, the non-learned references, metrics, cost, plots.

- Data: the simulated wrist sessions (`data.wrist_synthetic`: PPG, ACC and gyro driven by the
  synthetic cohort's HR and cadence, motion severity drawn per session) or a folder of
  sampled-signal recordings (`data.sampled`; one subject per subfolder, or, in a folder
  without subfolders, one per file) with a reference HR.
  Without PPG in any file only `acc_only` runs.
- Folds: leave-one-subject-out (`subjects_out` to change it), one other subject validating.
- Metrics per setting, raw per-window estimates and Kalman-tracked (`tasks.virtual`): MAE,
  RMSE, % of windows within 5 bpm, Pearson r, pooled over held-out windows; MAE mean +- SD over
  folds; MAE per motion-severity band (light < 0.6 <= moderate < 1.5 <= heavy) when known.
  Windows without a reference HR are excluded; PPG settings are scored on every window (a
  PPG dropout is their problem to bridge). A non-finite estimate on a scored window (a
  diverged fold) makes every metric of that setting and kind NaN, as an undefined metric is
  across the project (`eval.metrics`), and `nonfinite_windows` counts them: never scored as a
  number.
- References on the same windows: `troika` (PPG with ACC-peak removal and peak tracking,
  `signal.peaks`), `ppg_peak` (PPG peak tracking alone), `acc_ridge` (a linear ridge
  regression on each window's ACC spectra as the models read them, `eval.ridge`: the linear
  form of direct regression), `acc_gait` (a linear ridge regression on the cadence the ACC
  shows, `signal.gait.stride_hz`, and its first-order lags of 10 s to 4 min,
  `signal.gait.lagged`: a kinetic model of HR from the gait alone), `train_mean` (each
  fold's mean training HR: what a model knows without the signal). The ridges fit on each
  fold's training and validation sessions, `train_mean` on its training sessions; with
  `VirtualConfig.labelled`, on those of them whose HR the models may read
  (`tasks.virtual.labelled_sessions`: the labelled training subjects, and validation).
- Cost per model: parameters used at inference (the VAE's decoders and the unused modality's
  input map left out) and the median wall time of one update (a jitted block of `context`
  windows at batch 1, the newest window's estimate, recomputed every 2 s on a watch) on
  JAX's default device, named beside it (`latency_device`: platform and kind, e.g.
  `cpu: cpu` or `gpu: NVIDIA H100 80GB HBM3`): the same model times differently on each.
- Kept: every window's estimates per setting and reference (`predictions.npz`, `study`), so
  later analyses (`experiments/virtual_gait_tracker.py`) need no retraining.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split
from wearjax.errors import TrainingInterrupted, WearjaxDataError, WearjaxError
from wearjax.eval import metrics as M
from wearjax.eval.report import write_environment
from wearjax.eval.ridge import fold_ridge
from wearjax.models.virtual import ABLATIONS, FLOOR_DB, GRID_HZ, N_GAIT, SETTINGS, compress
from wearjax.signal.peaks import track_peak, troika_hr
from wearjax.tasks import study_state
from wearjax.tasks.virtual import (
    VirtualConfig,
    build,
    gait_features,
    labelled_sessions,
    reading_split,
    run_setting,
    split_sessions,
)
from wearjax.tasks.virtual_data import (
    SpectralSessions,
    WristRecording,
    folder_sessions,
    spectral_sessions,
)

SEVERITY_BANDS = {"light": (0.0, 0.6), "moderate": (0.6, 1.5), "heavy": (1.5, np.inf)}
REFERENCES = ("troika", "ppg_peak", "acc_ridge", "acc_gait", "train_mean")


def synthetic_sessions(
    quick: bool = False, seed: int = 0, bcg: float = 1.0, subjects: int | None = None
) -> SpectralSessions:
    """The simulated wrist set: 10 subjects x 3 sessions of 10 min at 25 Hz (quick: 6 x 2 of
    6 min; `subjects` sets the count), severity log-uniform in 0.3-2.5 per session, the
    heart's trace in the ACC scaled by `bcg` (`data.wrist_synthetic`)."""
    from wearjax.data.wrist_synthetic import simulate_wrist

    n, per, minutes = (6, 2, 6.0) if quick else (10, 3, 10.0)
    if subjects is not None:
        if subjects < 2:
            raise ValueError(
                f"need at least 2 subjects (one to train on, one to test), got {subjects}"
            )
        n = subjects
    w = simulate_wrist(n, per, minutes=minutes, bcg=bcg, seed=seed)
    return spectral_sessions(
        [
            WristRecording(
                f"s{i:03d}_{w.workouts[i]}",
                f"subject{int(w.subject[i]):02d}",
                (w.acc[i], w.rate),
                (np.where(w.ppg_ok[i], w.ppg[i], np.nan), w.rate),
                (w.hr[i], 1.0),
                float(w.severity[i]),
            )
            for i in range(len(w.subject))
        ],
        ppg_gaps="zero",  # the simulated sensor reads 0 when it loses contact
    )


READS_PPG = ("ppg_only", "fusion", "troika", "ppg_peak")
"""The settings scored only on sessions with PPG: at inference they read it."""
READS_ACC = ("acc_only", "virtual", "acc_refined", "fusion", "troika", "acc_ridge", "acc_gait")
"""The settings scored only on sessions with ACC."""
PPG_ALONE = ("ppg_only",)
"""The learned settings that read no ACC: all that runs on PPG-only recordings, beside the
`ppg_peak` and `train_mean` references."""


def _scores(pred, s: SpectralSessions, split: Split, name: str = "") -> dict:
    """The metrics of `pred [S, W]` on the tested windows with a reference HR (module
    docstring); for a setting that reads PPG (`READS_PPG`) or ACC (`READS_ACC`), those of
    sessions with it. A
    non-finite estimate on one of them makes every metric NaN and adds `nonfinite_windows`,
    their count (elsewhere, as in padding, it is never read)."""
    owner = split.owner
    tested = s.ok & (owner >= 0)[:, None]
    if name in READS_PPG:
        tested = tested & s.with_ppg[:, None]
    if name in READS_ACC:  # nor the windows with an ACC gap (`SpectralSessions.labels`)
        tested = tested & s.with_acc[:, None] & s.labels(reads_acc=True)
    true = jnp.asarray(s.hr)
    bad = int((tested & ~np.isfinite(np.asarray(pred))).sum())
    p = jnp.asarray(np.nan_to_num(pred, posinf=0.0, neginf=0.0))  # NaN'd below if scored
    out = {
        "mae": float(M.mae(p, true, jnp.asarray(tested))),
        "rmse": float(M.rmse(p, true, jnp.asarray(tested))),
        "within_5": float(M.within(p, true, jnp.asarray(tested), 5.0)),
        "pearson_r": float(M.pearson_r(p, true, jnp.asarray(tested))),
    }
    per_fold = tested[None] & (owner[None, :, None] == np.arange(split.n_folds)[:, None, None])
    folds = np.asarray(jax.vmap(lambda m: M.mae(p, true, m))(jnp.asarray(per_fold)))
    out["folds_scored"] = int(np.isfinite(folds).sum())  # a fold with no window scored: none
    out["mae_fold_mean"] = float(np.nanmean(folds))
    out["mae_fold_sd"] = float(np.nanstd(folds, ddof=1)) if len(folds) > 1 else 0.0
    if np.isfinite(s.severity).all():
        for band, (lo, hi) in SEVERITY_BANDS.items():
            rows = (s.severity >= lo) & (s.severity < hi)
            m = jnp.asarray(tested & rows[:, None])
            out[f"mae_{band}"] = float(M.mae(p, true, m)) if rows.any() else float("nan")
    if bad:  # a diverged fold: no number for the setting rather than one made up
        out = {k: float("nan") for k in out} | {"nonfinite_windows": bad}
    return out


def references(
    s: SpectralSessions, split: Split, floor_db: float | None = FLOOR_DB, *,
    labelled: int | None = None, seed: int = 0,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-window HR `[S, W]` of the references (module docstring); `floor_db`: the decibel
    scale of the spectra the ridge reads, the models' (`VirtualConfig.floor_db`). With
    `labelled` (`VirtualConfig.labelled`, `seed` its draw's: `VirtualConfig.seed`) the learned
    references fit only on the sessions whose HR the models may read
    (`tasks.virtual.labelled_sessions`): the ACC ridges those of the ACC models' draw, on the
    split as they read it (`reading_split`)."""
    known = labelled_sessions(s, split, labelled, seed)  # [K, S], all True without `labelled`
    grid = np.asarray(GRID_HZ)
    raw = s.acc * s.acc_scale[:, :, None, :]  # un-normalised: a quiet axis stays quiet
    acc = jnp.moveaxis(jnp.asarray(raw), -1, -2)  # [S, W, 3, F]
    ppg = jnp.asarray(s.ppg[..., 0])
    ok = jnp.asarray(s.ppg_ok)
    out = {}
    if s.has_ppg and s.has_acc:
        out["troika"] = np.asarray(
            jax.vmap(lambda p, a, o: troika_hr(p, a, grid, ok=o))(ppg, acc, ok)
        )
    if s.has_ppg:
        out["ppg_peak"] = np.asarray(jax.vmap(lambda p, o: track_peak(p, grid, ok=o))(ppg, ok))
    owner = np.maximum(split.owner, 0)
    if s.has_acc:
        acc_split = split  # as the ACC models read it, with their draw of labelled subjects
        with contextlib.suppress(WearjaxDataError):  # no ACC model runs: fit where they can
            acc_split = reading_split(s, split, "acc_only")
        known_acc = labelled_sessions(s, acc_split, labelled, seed)
        acc_db = np.asarray(compress(jnp.asarray(s.acc), floor_db))
        fit_on = (acc_split.train | acc_split.validation) & known_acc & s.with_acc
        labels = s.labels(reads_acc=True)
        fitted = fold_ridge(
            acc_db.reshape(s.acc.shape[:2] + (-1,)), s.hr, labels, fit_on, s.subject
        )
        out["acc_ridge"] = fitted.pred[owner, np.arange(len(owner))].astype(np.float32)
        gait = np.asarray(gait_features(s))
        fitted = fold_ridge(gait, s.hr, labels, fit_on, s.subject)
        out["acc_gait"] = fitted.pred[owner, np.arange(len(owner))].astype(np.float32)
    w = (split.train & known)[:, :, None] & s.ok[None]
    with np.errstate(invalid="ignore"):  # a fold with no labelled window: NaN, not 0 bpm
        mean = (w * s.hr[None]).sum((1, 2)) / w.sum((1, 2))  # [K]
    out["train_mean"] = np.broadcast_to(mean[owner][:, None], s.hr.shape).copy()
    for name in ("troika", "ppg_peak"):  # no estimate before a session's first usable PPG:
        if name in out:  # the training mean there, as a watch shows a default (was 0 bpm)
            out[name] = np.where(np.isfinite(out[name]), out[name], out["train_mean"])
    return out


def latency_device() -> str:
    """The device `latency_ms` runs on, JAX's default: `"platform: kind"`."""
    d = next(iter(jnp.zeros(()).devices()))
    return f"{d.platform}: {d.device_kind}"


def latency_ms(model, s: SpectralSessions, config: VirtualConfig, repeats: int = 50) -> float:
    """Median wall time (ms) of one jitted block of `config.context` windows from linear
    spectra (their decibel scale included), on JAX's default device (`latency_device`; a CPU
    time only when that is the CPU), the result waited for: what a watch computes at each 2 s
    update to give the newest window's estimate."""
    acc = jnp.asarray(s.acc[0, : config.context])
    ppg = jnp.asarray(s.ppg[0, : config.context])
    gait = jnp.full((config.context, N_GAIT), 160.0)  # running averages: a few operations

    @jax.jit
    def f(a, p, g):
        return model(compress(a, config.floor_db), compress(p, config.floor_db), g).hr

    f(acc, ppg, gait).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(acc, ppg, gait).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def cost(model, s: SpectralSessions, config: VirtualConfig) -> dict:
    """One model's `parameters` at inference, `latency_ms_per_update` (`latency_ms`) and the
    `latency_device` it was timed on."""
    return {
        "parameters": model.inference_parameters(),
        "latency_ms_per_update": latency_ms(model, s, config),
        "latency_device": latency_device(),
    }


def study(s: SpectralSessions, config: VirtualConfig, out: Path, *, subjects_out: int = 1,
          settings=None, progress=False, resume: bool = False, say=print) -> dict:  # fmt: skip
    """Every setting the data allow and the references on one split; writes
    `out/metrics.json`, `out/table.md`, plots and `out/predictions.npz` (the reference HR and
    its masks per window, per session its subject, severity, name and testing fold (-1: none),
    per learned setting `NAME/hr`, `NAME/var`, `NAME/tracked`, `NAME/tracked_var` and per
    reference `NAME/hr`, so later analyses need no retraining); returns the metrics. Each
    finished setting is kept in `out` (`tasks.study_state`) until the outputs are written;
    `resume` skips those an interrupted study of the same data and options finished. A
    setting that reads PPG is left out, said with its reason (`say`), where a fold has too few
    subjects with PPG to train and stop early on (`reading_split`)."""
    out = Path(out)
    study_state.check(out, resume, "cv virtual study")
    out.mkdir(parents=True, exist_ok=True)
    split = split_sessions(s, subjects_out, seed=config.seed)
    allowed = PPG_ALONE if not s.has_acc else (
        SETTINGS + ABLATIONS if s.has_ppg else ("acc_only", "acc_refined"))  # fmt: skip
    settings = [x for x in (SETTINGS + ABLATIONS if settings is None else settings) if x in allowed]
    not_run = {}
    for name in list(settings):
        try:
            reading_split(s, split, name)
        except WearjaxDataError as err:
            not_run[name] = str(err)
            settings.remove(name)
            say(f"not run: {err}")
    if not settings and not_run:  # none asked for (settings=()) runs the references alone
        raise WearjaxDataError(f"no setting can run: {'; '.join(not_run.values())}")
    metrics: dict = {"data": {"sessions": len(s.names), "subjects": len(s.subjects),
                              "windows": int(s.ok.sum()), "folds": split.n_folds,
                              "floor_db": config.floor_db, "context": config.context,
                              "batch_size": config.batch_size, "gait": config.gait,
                              "gait_ridge": config.gait_ridge,
                              "labelled": config.labelled, "not_run": not_run}}  # fmt: skip
    tracks: dict = {}
    saved = {"hr": s.hr, "ok": s.ok, "acc_labels": s.labels(), "valid": s.valid,
             "ppg_ok": s.ppg_ok, "subject": s.subject,
             "severity": s.severity, "names": np.asarray(s.names),
             "test_fold": np.asarray(split.owner)}  # fmt: skip
    first = None
    key = {"config": {**config._replace(train=None)._asdict(), "train": config.train._asdict()},
           "settings": settings, "subjects_out": subjects_out, "sessions": list(s.names),
           "data": study_state.fingerprint(s.acc, s.ppg, s.hr, s.ok, s.valid)}  # fmt: skip
    if resume:
        skeleton = {"virtual": lambda: build(config, "virtual", jax.random.key(0))}
        metrics, saved, trees = study_state.load(out, key, skeleton)
        first = trees.get("virtual")
        tracks = {name: saved[f"{name}/tracked"] for name in settings if name in metrics}
    for name in settings:
        if name in metrics:  # finished by the interrupted study
            continue
        t0 = time.perf_counter()
        r = run_setting(s, split, config, name, progress=progress and f"{name}")
        seconds = time.perf_counter() - t0
        one = jax.tree_util.tree_map(lambda a: a[0] if hasattr(a, "ndim") and a.ndim else a,
                                     r.model)  # fmt: skip
        metrics[name] = {
            "raw": _scores(r.hr, s, split, name), "tracked": _scores(r.tracked, s, split, name),
            **cost(one, s, config),
            "epochs": len(r.history.get("val_loss", [])), "seconds": round(seconds, 1),
        }  # fmt: skip
        tracks[name] = r.tracked
        saved.update({f"{name}/{k}": np.asarray(getattr(r, k))
                      for k in ("hr", "var", "tracked", "tracked_var")})  # fmt: skip
        if name == "virtual":
            first = one
        study_state.save(out, key, metrics, saved, {} if first is None else {"virtual": first})
    refs = references(s, split, config.floor_db, labelled=config.labelled, seed=config.seed)
    for name, hr in refs.items():
        metrics[name] = {"raw": _scores(hr, s, split, name)}
        tracks[name] = hr
        saved[f"{name}/hr"] = np.asarray(hr)
    np.savez_compressed(out / "predictions.npz", **saved)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_environment(out)
    (out / "table.md").write_text(markdown_table(metrics) + "\n")
    from wearjax.tasks.virtual_plots import plot_session

    plot_session(s, split, tracks, first, config, out / "plots")
    study_state.clear(out)
    return metrics


def markdown_table(metrics: dict) -> str:
    rows = [
        "| setting | MAE (bpm) | MAE over folds | RMSE | within 5 bpm | r | MAE light / "
        "moderate / heavy | params | ms/update |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (*SETTINGS, *ABLATIONS, *REFERENCES):
        if name not in metrics:
            continue
        m = metrics[name]
        for kind in ("raw", "tracked"):
            if kind not in m:
                continue
            x = m[kind]
            bands = " / ".join(f"{x.get(f'mae_{b}', float('nan')):.2f}" for b in SEVERITY_BANDS)
            label = name if kind == "raw" else f"{name} + Kalman"
            cost = (f"{m['parameters']:,} | {m['latency_ms_per_update']:.2f}"
                    if "parameters" in m else "- | -")  # fmt: skip
            rows.append(
                f"| {label} | {x['mae']:.2f} | {x['mae_fold_mean']:.2f} +- {x['mae_fold_sd']:.2f}"
                f" | {x['rmse']:.2f} | {100 * x['within_5']:.1f}% | {x['pearson_r']:.3f} | "
                f"{bands} | {cost} |"
            )
    return "\n".join(rows)


def command_inputs(args, say) -> tuple[SpectralSessions, VirtualConfig]:
    """The sessions `--data` names (skipped files said, one line each) and the config the
    command's options give (`--epochs`, `--quick`, `--seed`)."""
    if (args.gait or args.gait_ridge) and args.setting == "ppg_only":  # before reading files
        flag = "--gait" if args.gait else "--gait-ridge"
        raise WearjaxError(f"{flag} adds a prior to the settings that read ACC; --setting "
                           f"ppg_only reads none: leave {flag} out")  # fmt: skip
    if args.data == "synthetic":
        sessions = synthetic_sessions(args.quick, seed=args.seed)
    else:
        sessions, skipped = folder_sessions(Path(args.data), say)
        for s in skipped:
            say(f"skipped {s.path}: {s.reason}")
        if (args.gait or args.gait_ridge) and not sessions.has_acc:
            flag = "--gait" if args.gait else "--gait-ridge"
            raise WearjaxError(f"{flag} reads the gait from the ACC; these recordings have "
                               f"none: leave {flag} out")  # fmt: skip
    config = VirtualConfig(seed=args.seed, gait=args.gait, gait_ridge=args.gait_ridge)
    epochs = args.epochs or (12 if args.quick else config.train.epochs)
    return sessions, config._replace(train=config.train._replace(epochs=epochs))


def check_setting(s: SpectralSessions, setting: str | None) -> None:
    """`WearjaxError` when `--setting` needs a stream the recordings lack."""
    if setting is None:
        return
    if not s.has_ppg and setting not in ("acc_only", "acc_refined"):
        raise WearjaxError(f"--setting {setting} needs PPG in the files; use --setting acc_only")
    if not s.has_acc and setting not in PPG_ALONE:
        raise WearjaxError(f"--setting {setting} needs ACC in the files; use --setting ppg_only")


def cv_command(args, say) -> int:
    """`wearjax cv virtual`: every information setting the data allow, the references, the
    table and plots; `say` prints one line on stderr."""
    study_state.check(args.out, args.resume, "cv virtual study")  # before reading any file
    sessions, config = command_inputs(args, say)
    check_setting(sessions, args.setting)
    if not sessions.has_ppg:
        say("no PPG in these recordings: only the ACC-only settings run (acc_only, acc_refined)")
    say(f"{len(sessions.names)} sessions of {len(sessions.subjects)} subjects; compiling first")
    chosen = [args.setting] if args.setting else None
    try:
        metrics = study(sessions, config, args.out, subjects_out=args.subjects_out or 1,
                        settings=chosen, progress=True, resume=args.resume, say=say)  # fmt: skip
    except KeyboardInterrupt:
        if not study_state.exists(args.out):
            raise
        raise TrainingInterrupted(
            f"interrupted; the finished settings are kept in {args.out}"
        ) from None
    print(markdown_table(metrics))
    say(f"wrote {args.out}/metrics.json, table.md and plots/")
    return 0
