"""A virtual-sensing model for your own files: `wearjax fit virtual` trains one setting on every
subject (one held out for early stopping and for the tracker's smoothness) and writes a
checkpoint; `wearjax predict` with that checkpoint gives HR per 8 s window (every 2 s) of a
sampled-signal recording, raw and Kalman-tracked, with the reference's errors when the file
has one.

The checkpoint (`train.checkpoints` format) holds the model and, in its header, the setting,
its constructor arguments, the context length, the tracker's transition variance, the
spectra's decibel floor (`floor_db`; absent in checkpoints of linear-input models) and their
window, hop and grid, so a file at any rate is turned into the inputs the model was
trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax import models
from wearjax.cv import Split, fit_folds, padded_table
from wearjax.errors import WearjaxDataError, WearjaxError
from wearjax.eval import metrics as M
from wearjax.models.virtual import GRID_HZ, track, with_gait_coef
from wearjax.tasks.arguments import epochs
from wearjax.tasks.virtual import (
    ACC_SETTINGS,
    VirtualConfig,
    build,
    choose_q,
    device_data,
    make_folds,
    make_task,
    predict,
    reading,
    reading_split,
    tracked_windows,
)
from wearjax.tasks.virtual_data import (
    HOP_S,
    WINDOW_S,
    SpectralSessions,
    spectral_sessions,
    wrist_recording,
)
from wearjax.train import checkpoints
from wearjax.train.loop import fold_model

KIND = "virtual_sensing"


def arguments(p: argparse.ArgumentParser) -> None:
    """`wearjax cv virtual`'s and `fit virtual`'s options."""
    from wearjax.models.virtual import ABLATIONS, SETTINGS

    p.add_argument(
        "--data",
        default="synthetic",
        help="synthetic, or a folder of sampled-signal recordings (acc_x/y/z, ppg, a reference "
        "HR; one subfolder per subject, or without subfolders one file per subject)",
    )
    p.add_argument("--epochs", type=epochs, help="training epochs (default 40; quick 12)")
    p.add_argument("--subjects-out", type=epochs, help="cv: subjects held out per fold (1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (fit: "
                   "OUT.state; cv: the settings the study in OUT finished)")  # fmt: skip
    p.add_argument(
        "--setting",
        choices=SETTINGS + ABLATIONS,
        help="fit: the one to train (default virtual; ppg_only for recordings without ACC); "
        "cv: run only this one (default: every one the data allow)",
    )
    prior = p.add_mutually_exclusive_group()  # one gait prior or none
    prior.add_argument(
        "--gait",
        action="store_true",
        help="add the gait prior (cadence from the ACC and its lags) to the models that read ACC",
    )
    prior.add_argument(
        "--gait-ridge",
        action="store_true",
        help="the residual gait prior: a ridge of HR on the gait fitted first, the models "
        "learning what the spectra add to it",
    )


def fit_split(s: SpectralSessions, setting: str | None = None) -> Split:
    """One fold: the last subject validates (or, with one subject, its last session that
    holds what `setting` reads), the rest trains; nothing is tested."""
    if len(s.names) < 2:
        raise WearjaxDataError("one session: training needs another one to stop early on")
    has = reading(s, setting)[1] if setting is not None else np.ones(len(s.names), bool)
    last = np.arange(len(s.names)) == (np.flatnonzero(has)[-1] if has.any() else -1)
    val = (s.subject == s.subject.max()) if len(s.subjects) > 1 else last
    return Split(np.zeros((1, len(s.names)), bool), val[None], ~val[None])


def fit_model(s: SpectralSessions, config: VirtualConfig, setting: str, *, progress=False,
              state_file=None, resume: bool = False):  # fmt: skip
    """The trained model of `setting` and its tracker's transition variance. With a
    `state_file` the training state is saved every epoch and `resume`d from it."""
    split = reading_split(s, fit_split(s, setting), setting)
    folds = make_folds(s, split, gait_ridge=config.gait_ridge)
    data = device_data(s, floor_db=config.floor_db, reads_acc=setting in ACC_SETTINGS)
    fit = fit_folds(
        lambda key: build(config, setting, key), make_task(config, setting), data, folds,
        config.train.recipe(), jax.random.split(jax.random.key(config.seed), 1),
        progress=progress, state_file=state_file, resume=resume,
        run={"task": "virtual", "setting": setting, "config": checkpoints.run_settings(config)},
    )  # fmt: skip
    vidx, vok = (jnp.asarray(a) for a in padded_table(split.validation))
    model = with_gait_coef(fold_model(fit.model, 0), folds.gait_coef[0])

    def session(i):
        out = predict(model, None, data, i, context=config.context)
        return out.hr, out.var

    hr, var = jax.vmap(session)(vidx[0])
    ok = data.ok[vidx[0]] & vok[0][:, None]
    measured = tracked_windows(data, setting in ACC_SETTINGS)[vidx[0]]
    q = choose_q(hr[None], var[None], measured[None], data.hr[vidx[0]][None], ok[None],
                 folds.q)  # fmt: skip
    return model, float(q[0])


def save_virtual(path, model, q: float, config: VirtualConfig, setting: str) -> Path:
    header = {
        "task": "virtual", "kind": KIND,
        "init": {"setting": setting, "width": config.width, "latent": config.latent,
                 "depth": config.depth, "heads": config.heads, "gait": config.gait,
                 # only when set: older wearjax reads the checkpoints without it
                 **({"gait_ridge": True} if config.gait_ridge else {})},
        "context": config.context, "q": q, "floor_db": config.floor_db,
        "window_s": WINDOW_S, "hop_s": HOP_S,
        "grid_hz": [float(GRID_HZ[0]), float(GRID_HZ[-1]), len(GRID_HZ)],
    }  # fmt: skip
    return checkpoints.save(path, header, model)


def _skeleton(header: dict):
    if header.get("task") != "virtual" or header.get("kind") != KIND:
        raise KeyError("not a virtual-sensing checkpoint (task 'virtual')")
    grid = [float(GRID_HZ[0]), float(GRID_HZ[-1]), len(GRID_HZ)]
    if header.get("grid_hz") != grid or header.get("window_s") != WINDOW_S:
        raise KeyError(f"spectra {header.get('grid_hz')} / {header.get('window_s')} s differ "
                       f"from this wearjax's {grid} / {WINDOW_S} s")  # fmt: skip
    return models.build(KIND, **header["init"], key=jax.random.key(0))


def load_virtual(path) -> tuple[object, dict]:
    header, model = checkpoints.load(path, _skeleton)
    return model, header


def predict_recording(model, header: dict, session) -> dict:
    """Per-window HR of one sampled-signal session: columns and metrics where it has a
    reference, and notes on what of the file was left out. A PPG-only model reads files
    without ACC; streams the model does not read are not checked (a model without PPG reads
    a file whose PPG is at an unusable rate)."""
    rec = wrist_recording(
        session, require_reference=False, require_acc=model.uses_acc, use_ppg=model.uses_ppg
    )
    if model.uses_ppg and rec.ppg is None:
        raise WearjaxDataError(
            f"{rec.name}: the model ({model.setting}) needs a ppg column the file lacks; use "
            "an acc_only or virtual checkpoint"
        )
    s = spectral_sessions([rec])
    # no floor_db: a linear-input checkpoint
    data = device_data(s, floor_db=header.get("floor_db"), reads_acc=model.uses_acc)
    out = predict(model, None, data, 0, context=header["context"])
    mean, var = track(out.hr, out.var, tracked_windows(data, model.uses_acc)[0], header["q"])
    n = int(s.n_windows[0])
    cols = {
        "start_s": np.arange(n) * HOP_S, "hr": np.asarray(out.hr)[:n],
        "sd": np.sqrt(np.asarray(out.var)[:n]), "hr_tracked": np.asarray(mean)[:n],
        "sd_tracked": np.sqrt(np.asarray(var)[:n]),
        # where the model is scored (an ACC model: not in a window with an ACC gap)
        "hr_reference": np.where(data.ok[0, :n], s.hr[0, :n], np.nan),
    }  # fmt: skip
    if session.start_time_s is not None:  # each window's start on the file's own clock
        cols = {"start_s": cols["start_s"], "time_s": session.start_time_s + cols["start_s"],
                **{k: v for k, v in cols.items() if k != "start_s"}}  # fmt: skip
    metrics = {}
    ok = data.ok[0, :n]  # for an ACC model, not the windows with an ACC gap
    if bool(ok.any()):
        for key in ("hr", "hr_tracked"):
            p = jnp.asarray(cols[key])
            ref = jnp.asarray(s.hr[0, :n])
            metrics[key] = {"mae": float(M.mae(p, ref, ok)), "rmse": float(M.rmse(p, ref, ok)),
                            "windows": int(ok.sum())}  # fmt: skip
    return {"name": rec.name, "columns": cols, "metrics": metrics, "notes": rec.notes}


def fit_command(args, say) -> int:
    """`wearjax fit virtual`."""
    from wearjax.tasks.virtual_study import check_setting, command_inputs

    if args.subjects_out is not None:
        raise WearjaxError(
            "--subjects-out is for cv virtual: fit trains one model on every subject"
        )
    s, config = command_inputs(args, say)
    args.setting = args.setting or ("virtual" if s.has_acc else "ppg_only")
    check_setting(s, args.setting)
    say(f"training {args.setting} on {len(s.names)} sessions of {len(s.subjects)} subjects")
    state_file = Path(f"{args.out}.state")  # checked with --resume (`check_arguments`)
    say(f"saving the training state every epoch to {state_file} (resume with --resume)")
    model, q = fit_model(s, config, args.setting, progress=args.setting, state_file=state_file,
                         resume=args.resume)  # fmt: skip
    save_virtual(args.out, model, q, config, args.setting)
    state_file.unlink(missing_ok=True)  # the run is complete: the checkpoint holds the model
    say(f"wrote {args.out}")
    return 0


def predict_command(args, say) -> int:
    """`wearjax predict` with a virtual-sensing checkpoint: one CSV per recording."""
    from wearjax.tasks.arguments import output_name
    from wearjax.tasks.hr_recordings import read_recordings

    model, header = load_virtual(args.model)
    sessions, skipped = read_recordings(args.file, require_hr=False)
    for sk in skipped:
        say(f"skipped {sk.path}: {sk.reason}")
    args.out.mkdir(parents=True, exist_ok=True)
    done, used = 0, set()
    for session in sessions:
        try:
            pred = predict_recording(model, header, session)
        except WearjaxDataError as err:
            if not Path(args.file).is_dir():
                raise
            say(f"skipped {session.source}: {err}")
            continue
        for note in pred["notes"]:
            say(note)
        cols = pred["columns"]
        name = output_name(session, Path(args.file), used)  # s1/rec.csv and s2/rec.csv: rec-2
        path = args.out / f"{name}.csv"
        table = np.stack(list(cols.values()), axis=1)
        np.savetxt(path, table, delimiter=",", header=",".join(cols), comments="", fmt="%.3f")
        line = f"{name}: {len(cols['hr'])} windows ({model.setting})"
        for key, m in pred["metrics"].items():
            line += f"; {key} MAE {m['mae']:.2f} bpm over {m['windows']} windows"
        print(line)
        print(f"  wrote {path}")
        done += 1
    if not done:
        raise WearjaxError(f"{args.file}: no recording could be predicted (each reason above)")
    return 0
