"""A user's own running recordings, read for the HR models. Behind `wearjax cv hr` (here) and
`wearjax fit hr` / `predict` (`tasks.hr_fit`).

- `read_recordings` reads a folder (`data.load_folder`, skipped files listed) or one file;
  `shared_channels` keeps the raw channels every session has, and gives a session without
  a runner height one (`fill_heights`) when vertical oscillation needs it.
- `cv_cohort` stacks sessions for `tasks.hr_study.run_hr_study`. With fewer than
  `MIN_RUNNERS_FOR_RUNNER_FOLDS` runners every session becomes its own "runner", so
  leave-k-runners-out becomes leave-k-sessions-out (a user with one watch has one runner).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from wearjax.data.folders import Skipped, load_folder, read_file
from wearjax.data.types import CHANNEL_UNITS, SUBJECT_FIELDS, Cohort, Session, stack_sessions
from wearjax.errors import WearjaxDataError
from wearjax.signal.features import FEATURE_NAMES

logger = logging.getLogger(__name__)

MIN_RUNNERS_FOR_RUNNER_FOLDS = 3
"""Fewer runners than this: cross-validate by sessions (leave-k-sessions-out)."""

SESSION_FOLDS = 5
"""Folds of a session-wise cross-validation by default (k = ceil(sessions / 5))."""

REFERENCE_HEIGHT_M = 1.75
"""Height that scales vertical oscillation when no session of a cohort knows its runner's
(a constant: after standardisation the feature is then the vertical oscillation itself)."""

HEIGHT = SUBJECT_FIELDS.index("height_m")


def read_recordings(
    path: str | Path,
    *,
    require_hr: bool,
    units: dict[str, str] | None = None,
    pauses: str = "stop",
) -> tuple[list[Session], list[Skipped]]:
    """Sessions of a folder (with the files skipped and why) or of one file; `units` and
    `pauses` as for `data.read_file`."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path, require_hr=require_hr, units=units, pauses=pauses)
    sessions = read_file(path, require_hr=require_hr, units=units, pauses=pauses)
    return [replace(s, source=s.source or str(path)) for s in sessions], []


def select_channels(session: Session, channels: tuple[str, ...]) -> Session:
    """The session with exactly `channels`, in that order; `WearjaxDataError` naming the
    first channel the recording lacks."""
    missing = [c for c in channels if c not in session.channels]
    if missing and not session.channels and session.signals:  # a wrist recording, say
        raise WearjaxDataError(
            f"{session.source or session.workout or 'recording'}: a sampled-signal recording "
            f"({', '.join(sorted(session.signals))}) without the running channels an HR model "
            f"reads ({list(channels)}); HR from ACC or PPG takes a `wearjax fit virtual` model"
        )
    if missing:
        raise WearjaxDataError(
            f"{session.source or session.workout or 'recording'}: has no {missing[0]!r} channel "
            f"(it has {list(session.channels)}), which the model needs (it was trained on "
            f"{list(channels)}); record it, or train a model on the channels this file has"
        )
    cols = [session.channels.index(c) for c in channels]
    return replace(session, x=np.asarray(session.x)[:, cols], channels=tuple(channels))


def shared_channels(sessions: list[Session]) -> tuple[list[Session], list[str]]:
    """Sessions restricted to the raw channels all of them have (canonical order), and one
    note per channel dropped because some session lacks it. A session with no running
    channel at all (HR alone) is left out with a note naming it, rather than emptying the
    others' shared list; sessions that each have one but share none are refused, naming two."""
    name = [s.source or s.workout or "a recording" for s in sessions]
    runs = [any(c in FEATURE_NAMES for c in s.channels) for s in sessions]
    notes = [
        f"skipped {n}: no running channel (it has {list(s.channels)}); need one of "
        f"{list(FEATURE_NAMES)}"
        for n, s, ok in zip(name, sessions, runs, strict=True)
        if not ok
    ]
    if not any(runs):
        raise WearjaxDataError(notes[0].removeprefix("skipped ") + " (and so does every file)")
    name = [n for n, ok in zip(name, runs, strict=True) if ok]
    sessions = [s for s, ok in zip(sessions, runs, strict=True) if ok]
    common = [c for c in CHANNEL_UNITS if all(c in s.channels for s in sessions)]
    if not any(c in FEATURE_NAMES for c in common):
        other = next(
            i for i, s in enumerate(sessions) if set(s.channels) != set(sessions[0].channels)
        )
        raise WearjaxDataError(
            f"the recordings share no running channel: {name[0]} has "
            f"{list(sessions[0].channels)}, {name[other]} has {list(sessions[other].channels)}; "
            "keep the files that share one"
        )
    dropped = sorted({c for s in sessions for c in s.channels} - set(common))
    notes += [
        f"channel {c!r} dropped: {sum(c not in s.channels for s in sessions)} of "
        f"{len(sessions)} sessions lack it"
        for c in dropped
    ]
    sessions, filled = fill_heights([select_channels(s, tuple(common)) for s in sessions])
    return sessions, notes + filled


def fill_heights(
    sessions: list[Session], fallback: float | None = None
) -> tuple[list[Session], list[str]]:
    """Give every session a height when vertical oscillation (scaled by height) is among its
    channels: a session whose height is unknown (NaN or <= 0; many watch files carry no user
    profile) takes the median of the known ones, else `fallback` (a model's training height),
    else `REFERENCE_HEIGHT_M`. Returns the sessions and a note saying what was filled."""
    unknown = [
        i
        for i, s in enumerate(sessions)
        if "vertical_oscillation" in s.channels and not np.asarray(s.subject)[HEIGHT] > 0
    ]
    if not unknown:
        return sessions, []
    known = [float(s.subject[HEIGHT]) for s in sessions if np.asarray(s.subject)[HEIGHT] > 0]
    if known:
        height, source = float(np.median(known)), "the median of the known heights"
    elif fallback is not None:
        height, source = float(fallback), "the height the model was trained with"
    else:
        height, source = REFERENCE_HEIGHT_M, "a reference height"
    out = list(sessions)
    for i in unknown:
        subject = np.array(out[i].subject, np.float32)
        subject[HEIGHT] = height
        out[i] = replace(out[i], subject=subject)
    note = (
        f"runner height unknown in {len(unknown)} of {len(sessions)} session(s): vertical "
        f"oscillation scaled by {height:.2f} m ({source}); set the height in the watch's "
        "user profile for per-runner scaling"
    )
    return out, [note]


def cv_cohort(
    sessions: list[Session], window: int, held_out: int | None = None
) -> tuple[Cohort, int, str]:
    """A cohort for `run_hr_study`, the runners (or sessions) per test fold, and a sentence
    saying how the folds are formed."""
    runners = sorted({s.runner for s in sessions})
    if len(runners) >= MIN_RUNNERS_FOR_RUNNER_FOLDS:
        k = held_out or (3 if len(runners) >= 6 else 1)
        return stack_sessions(sessions, bucket=window), k, f"leave-{k}-runners-out"
    if len(sessions) < 3:
        raise WearjaxDataError(
            f"{len(sessions)} session(s) of {len(runners)} runner(s): cross-validation needs at "
            "least 3 sessions (one to test, one to train, one to stop early)"
        )
    k = held_out or math.ceil(len(sessions) / SESSION_FOLDS)
    k = min(k, len(sessions) - 2)
    own = [replace(s, runner=f"{i:03d} {s.workout or s.runner}") for i, s in enumerate(sessions)]
    note = (
        f"{len(runners)} runner(s): cross-validated by sessions, each of the {len(sessions)} "
        f"sessions its own 'runner', so leave-{k}-runners-out is leave-{k}-sessions-out"
    )
    return stack_sessions(own, bucket=window), k, note
