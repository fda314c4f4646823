"""What the command line is given, checked before any work starts: every problem is one
`WearjaxError` line naming the option and the fix (`check_arguments`), and argparse types for
the numbers that must be whole (`epochs`, `seed`). A run that fails here has read, trained
and written nothing. `output_name` names each predicted recording's output files."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from wearjax.errors import WearjaxError

HR0_RANGE = (25.0, 250.0)  # bpm: a first-second HR outside this is a typo, not a runner
# the names `--data` takes for a built-in dataset, per task (anything else is a path)
BUILT_IN_DATA = {
    "vo2": ("synthetic", "pyoxynet"),
    "virtual": ("synthetic",),
    "probe": ("pyoxynet_domain", "basic_motions", "watch"),
}
MAX_SEED = 2**32  # what NumPy's and JAX's generators take


def epochs(text: str) -> int:
    """An `--epochs` value: a whole number of at least 1, else argparse's one-line error."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def share(text: str) -> float:
    """A share such as `--mask-ratio`: a number strictly between 0 and 1, else argparse's
    one-line error (the grid's own limits are checked once the corpus is known)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1")
    return value


def seed(text: str) -> int:
    """A `--seed` value: a whole number from 0 to 2^32 - 1, else argparse's one-line error."""
    if not text.isdigit() or int(text) >= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {MAX_SEED - 1}")
    return int(text)


def check_arguments(args: argparse.Namespace, command: str) -> None:
    """Refuse bad paths and values before any work starts, one line each (`WearjaxError`):
    a `--data` or recording that does not exist; an `--out` of the wrong kind, in no writable
    folder, or where `predict` would write over the recordings it reads; a `fit` that would
    overwrite an interrupted run's state, or `--resume` without one;
    `--hr0` that is not a finite HR."""
    task = getattr(args, "task", None)
    built_in = BUILT_IN_DATA.get(task, ())
    for name in ("data", "file", "model", "encoder"):
        path = getattr(args, name, None)
        if isinstance(path, Path) or (name == "data" and path not in (None, *built_in)):
            if not Path(path).exists():
                label = "recording" if name == "file" else f"--{name}"
                names = f" ({command} {task} knows {', '.join(built_in)})" * bool(built_in)
                raise WearjaxError(f"{label} {path}: no such file or folder{names}; check the path")
    out = getattr(args, "out", None)
    if out is not None:
        _check_out(Path(out), wants_file=command == "fit")
        _check_out_of_data(Path(out), getattr(args, "data", None), getattr(args, "task", None))
        if command == "predict":
            _check_predict_out(Path(out), Path(args.file))
        if command == "fit" and getattr(args, "task", None) in ("hr", "pretrain", "virtual", "vo2"):
            _check_resume(Path(f"{out}.state"), args.resume)
    hr0 = getattr(args, "hr0", None)
    if hr0 is not None and not (math.isfinite(hr0) and HR0_RANGE[0] <= hr0 <= HR0_RANGE[1]):
        lo, hi = HR0_RANGE
        raise WearjaxError(
            f"--hr0 {hr0}: give the HR at the first second in bpm, {lo:.0f}-{hi:.0f}"
        )


def _check_out(out: Path, wants_file: bool) -> None:
    """`--out` is a file to write (`fit`) or a folder; the folder it is or will be made in
    must exist up the path as a writable folder, so a run does not end by failing to write."""
    if wants_file and out.is_dir():
        raise WearjaxError(f"--out {out} is a folder; pass the checkpoint file to write")
    if not wants_file and out.exists() and not out.is_dir():
        raise WearjaxError(f"--out {out} is a file; pass a folder for the outputs")
    where = out.parent if wants_file else out
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise WearjaxError(f"--out {out}: {where} is a file, not a folder; pass another path")
    if not os.access(where, os.W_OK | os.X_OK):
        raise WearjaxError(f"--out {out}: the folder {where} is not writable; pass another path")


def _check_out_of_data(out: Path, data, task: str | None = None) -> None:
    """Nothing is written into the recordings' folder (the next run would read a checkpoint or
    a prediction there as a recording), and `fit` writes its checkpoint over no other file and
    no checkpoint of another `task` (an encoder that took hours to pretrain, say)."""
    folder = Path(data).resolve() if data is not None and Path(data).is_dir() else None
    if folder is not None and (out.resolve() == folder or folder in out.resolve().parents):
        raise WearjaxError(
            f"--out {out} is inside the recordings' folder {data}; what is written there would "
            "be read as a recording next time: pass a path outside it"
        )
    if out.is_file():
        from wearjax.train.checkpoints import FORMAT  # here: the CLI starts without JAX

        with open(out, "rb") as f:  # every checkpoint begins with its format's name
            if not f.read(64).startswith(b'{"format":"' + FORMAT.encode() + b'"'):
                raise WearjaxError(
                    f"--out {out} exists and is not a wearjax checkpoint; writing the "
                    "checkpoint would destroy it: pass a new file name"
                )
            f.seek(0)
            try:
                header = json.loads(f.readline(1 << 20))
            except ValueError:  # a damaged header: its task cannot be told
                header = {}
        held = header.get("task") or ("pretrain" if header.get("kind") == "transformer" else None)
        if task is not None and held is not None and held != task:
            raise WearjaxError(
                f"--out {out} holds a `fit {held}` checkpoint; `fit {task}` would replace it: "
                "pass a new file name"
            )


def _check_predict_out(out: Path, file: Path) -> None:
    """Predictions are `OUT/<recording stem>.csv`: never over a recording, and never in the
    recordings' folder, where the next run would read them back as recordings."""
    out, file = out.resolve(), file.resolve()
    if file.is_dir() and (out == file or file in out.parents):
        raise WearjaxError(
            f"--out {out} is inside the recordings' folder {file}; predictions written there "
            "would be read as recordings next time: pass another folder"
        )
    if file.is_file() and out == file.parent:  # its CSV and PNG beside it: maybe the user's own
        raise WearjaxError(
            f"--out {out} is the recording's own folder; the prediction's {file.stem}.csv and "
            f"{file.stem}.png there could overwrite the recording or files beside it: pass "
            "another folder"
        )


def _check_resume(state: Path, resume: bool) -> None:
    """`fit hr` and `fit pretrain` save their state to `OUT.state` every epoch and delete it
    when done."""
    if resume and not state.exists():
        raise WearjaxError(f"--resume: no training state at {state}; run without --resume")
    if not resume and state.exists():
        raise WearjaxError(
            f"{state} holds an interrupted run: pass --resume to continue it, or delete the "
            "file to start again"
        )


def output_name(session, file: Path, used: set[str]) -> str:
    """Output file stem of a predicted session: its own file's stem, numbered when a file
    holds several sessions; `used` collects the names given."""
    stem = Path(session.source).stem if session.source else file.stem
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def each_predicted(sessions, file: Path, predict, say):
    """`(session, name, predict(session))` for each session of `file` (a recording or a
    folder): in a folder, a session `predict` refuses is skipped with its reason (`say`); a
    single file's refusal is raised, and so is a folder where none could be predicted."""
    from wearjax.errors import WearjaxDataError

    used: set[str] = set()
    done = 0
    for session in sessions:
        try:
            pred = predict(session)
        except WearjaxDataError as err:  # one unusable recording of a folder: say so, go on
            if not file.is_dir():
                raise
            say(f"skipped {session.source}: {err}")
            continue
        done += 1
        yield session, output_name(session, file, used), pred
    if not done:
        raise WearjaxError(f"{file}: no recording could be predicted (each reason above)")
