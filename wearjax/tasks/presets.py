"""Named settings of the tasks: what `wearjax demo`, `wearjax cv`, `wearjax fit` and the
experiments run. `quick` presets are what a new user tries first; each still trains every model
far enough to beat its baselines (checked by the slow tests).
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from wearjax.data.types import Cohort
from wearjax.errors import WearjaxDataError
from wearjax.signal.features import DEVICE_FEATURES
from wearjax.tasks.hr import HRStudyConfig
from wearjax.tasks.hr_personal import PersonalConfig
from wearjax.tasks.vo2 import VO2StudyConfig
from wearjax.tasks.vo2_chain import HRToVO2Config
from wearjax.train.loop import TrainConfig

logger = logging.getLogger(__name__)

# `wearjax demo`: Table 1's four models (Kalman and ODE, (128, 2) and (64, 3)) and the
# personalised ODE. Quick: a smoke run of several minutes on 2 CPU cores; full: the
# Table-1-style study on 108 sessions of 20-60 min (training cost grows with the padded session
# length; the 20-120 min cohort runs in experiments/hr_table1.py). The quick demo's ODE models
# solve on the scan engine, which builds its programs in half Diffrax's time
# (`HRStudyConfig.ode_engine`), and its GRUs run the hand-written reverse pass, 1.5-1.8x faster
# per training step at its batch of 2 (`HRStudyConfig.gru_impl`); the full demo keeps Diffrax
# and JAX's own derivative of the GRU, the published figures' rounding.
DEMO = {
    "quick": dict(
        n_runners=6, sessions_per_runner=4, min_minutes=15.0, max_minutes=20.0,
        epochs=10, steps_per_epoch=20, batch_size=2, personal_epochs=10, ode_engine="scan",
        gru_impl="manual",
    ),
    "full": dict(
        n_runners=12, sessions_per_runner=9, min_minutes=20.0, max_minutes=60.0,
        epochs=30, steps_per_epoch=15, batch_size=1, personal_epochs=30, ode_engine="diffrax",
        gru_impl="autodiff",
    ),
}  # fmt: skip


def demo_config(quick: bool, seed: int = 0) -> tuple[dict, HRStudyConfig]:
    """The demo's cohort arguments (`data.simulate_cohort`) and its HR task settings."""
    p = DEMO["quick" if quick else "full"]
    cohort = {k: p[k] for k in ("n_runners", "sessions_per_runner", "min_minutes", "max_minutes")}
    config = HRStudyConfig(
        train=TrainConfig(epochs=p["epochs"], steps_per_epoch=p["steps_per_epoch"]),
        batch_size=p["batch_size"],
        seed=seed,
        ode_engine=p["ode_engine"],
        gru_impl=p["gru_impl"],
        personal=PersonalConfig(train=PersonalConfig().train._replace(epochs=p["personal_epochs"])),
    )
    return cohort, config


# `wearjax cv hr` / `fit hr` on a user's recordings. Full: the published sizes; training
# segments of 10 windows (600 s), which keeps a CPU step affordable on hour-long real runs.
HR_RECORDINGS = {
    "full": dict(
        sizes=((128, 2), (64, 3)), segment_windows=10, batch_size=8,
        train=TrainConfig(epochs=30, steps_per_epoch=20),
    ),
    "quick": dict(
        sizes=((32, 1),), segment_windows=5, batch_size=4,
        train=TrainConfig(epochs=4, steps_per_epoch=5, early_stopping_patience=4),
    ),
}  # fmt: skip


# `--normalise`: the fold's normaliser alone, or the device-dependent features
# (`signal.features.DEVICE_FEATURES`) standardised per session first. The CLI's default is
# "session": on synthetic runners each wearing another watch it cut the generative MAE from
# 11.55 / 10.08 to 8.64 / 8.29 bpm (Kalman / ODE, experiments/hr_watch_shift.py); on the
# shared runs, one watch, it moved MAEs by -0.43 to +0.2 bpm (README, "Another watch").
NORMALISE = ("fold", "session")
DEFAULT_NORMALISE = "session"


def recordings_config(
    kind: str, quick: bool, *, seed: int = 0, runners_out: int = 3,
    normalise: str = DEFAULT_NORMALISE,
) -> HRStudyConfig:  # fmt: skip
    """The HR task settings of a recordings preset for models of `kind`."""
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {NORMALISE}, got {normalise!r}")
    p = HR_RECORDINGS["quick" if quick else "full"]
    return HRStudyConfig(
        session_relative=DEVICE_FEATURES if normalise == "session" else (),
        models=tuple((kind, h, layers) for h, layers in p["sizes"]),
        segment_windows=p["segment_windows"],
        batch_size=p["batch_size"],
        runners_out=runners_out,
        train=p["train"],
        seed=seed,
    )


def check_segments(sessions: list, model: str, quick: bool, need: int) -> None:
    """Refuse, before any model is built, recordings of which fewer than `need` hold one
    training segment of `wearjax cv hr` / `fit hr` (`presets.HR_RECORDINGS`: 600 s, 300 s
    with `--quick`), where the reader takes anything from 60 s."""

    def width(quick: bool) -> int:
        config = recordings_config(model, quick)
        return config.window * config.segment_windows

    long_enough = sum(s.length >= width(quick) for s in sessions)
    if long_enough < need:
        longest = max(s.length for s in sessions)
        hint = "" if quick else f", or pass --quick ({width(True)} s segments)"
        raise WearjaxDataError(
            f"{long_enough} of {len(sessions)} sessions last a training segment of "
            f"{width(quick)} s (the longest: {longest} s), and training needs {need}: "
            f"record longer runs{hint}"
        )


def cpet_config(quick: bool = False, seed: int = 0, **changes) -> VO2StudyConfig:
    """The settings of the pyoxynet ramp-test study (`experiments/vo2_cpet.py`).

    Ten subject-wise folds (leave 9 of 87 subjects out, 4 more per fold for early stopping) and
    a (32, 2) biGRU: the published (256, 2) and (128, 4) do not train 10 folds in 15 minutes on
    two CPU cores (pass `variant=` for them). 70 epochs end the third cosine cycle.
    `quick` (the first 30 tests, `wearjax cv vo2 --data pyoxynet --quick`) beats both baselines
    in about 20 s: 15.9 / 13.8 / 11.9% MAPE for seeds 0 / 1 / 2 against 20.0-20.8% and 30.5%.
    """
    base = VO2StudyConfig()
    config = VO2StudyConfig(
        variant=(32, 2),
        batch_size=4,
        subjects_out=9,
        validation_subjects=4,
        train=base.train._replace(epochs=70, steps_per_epoch=8),
        seed=seed,
    )
    if quick:  # 30 tests, 3 folds, 30 epochs (two cosine cycles): ~20 s on 2 cores
        config = config._replace(
            variant=(16, 1),
            subjects_out=10,
            validation_subjects=2,
            train=base.train._replace(epochs=30, steps_per_epoch=6),
        )
    return config._replace(**changes)


def load_cpet_cohort(limit: int | None = None) -> Cohort:
    """pyoxynet's ramp tests (`data.pyoxynet`) as a cohort padded to whole minutes."""
    from wearjax.data.pyoxynet import load_ramp_tests
    from wearjax.data.types import stack_sessions

    sessions, skipped = load_ramp_tests(limit)
    for s in skipped:
        logger.info("skipped %s: %s", s.path.name, s.reason)
    return stack_sessions(sessions, bucket=60)


def synthetic_config(quick: bool = False, seed: int = 0) -> HRToVO2Config:
    """Settings of the synthetic HR -> VO2 study. `quick` (about a minute on 2 cores): 6 runners
    x 2 sessions of 12-18 min, an HR (16, 1) model for 6 epochs and the VO2 model for 30. The
    VO2 model beats the linear HR baseline at seed 0 (13.3% against 16.9% MAPE from rolled-out
    HR) and at seed 1 (19.0% against 22.3%), by less than the spread over seeds: the cohort is
    small (README)."""
    config = HRToVO2Config(seed=seed, vo2=HRToVO2Config().vo2._replace(seed=seed))
    if quick:
        config = config._replace(
            n_runners=6,
            sessions_per_runner=2,
            min_minutes=12.0,
            max_minutes=18.0,
            hr_model=(16, 1),
            hr_train=TrainConfig(epochs=6, steps_per_epoch=8),
            vo2=config.vo2._replace(train=config.vo2.train._replace(epochs=30, steps_per_epoch=8)),
        )
    return config


GAS_CHANNELS = ("vco2", "ve")  # from the analyser that measures the target VO2


def load_cpet_folder_cohort(
    folder, *, columns=None, vo2_unit=None, gas_inputs: bool = False, say=logger.warning
) -> tuple[Cohort, str]:
    """A folder of the user's CPET files (`data.load_cpet_folder`) as a cohort padded to whole
    minutes, and one line saying the VO2 unit read and the inputs the files share; each
    skipped file goes to `say`. VCO2 and VE come from the gas analyser that measures VO2
    (VCO2 is VO2 times the exchange ratio), so they are inputs only with `gas_inputs`: the
    task is VO2 from what a wearable measures, and its baselines read HR."""
    from wearjax.data import load_cpet_folder, stack_sessions
    from wearjax.tasks.hr_recordings import select_channels

    sessions, skipped = load_cpet_folder(folder, columns=columns, vo2_unit=vo2_unit)
    for s in skipped:
        say(f"skipped {s.path}: {s.reason}")
    gas = [c for c in GAS_CHANNELS if c in sessions[0].channels]
    if gas and not gas_inputs:
        keep = tuple(c for c in sessions[0].channels if c not in GAS_CHANNELS)
        sessions = [select_channels(s, keep) for s in sessions]
        say(f"left out {', '.join(gas)} (the gas analyser's, beside VO2): --gas-inputs uses them")
    sessions = _fill_subject_fields(sessions, say)
    meta = [dict(s.metadata) for s in sessions]
    read_as = Counter(
        f"{m.get('vo2_unit', 'mL/min')} ({m.get('vo2_unit_basis', 'declared').split(' (')[0]})"
        for m in meta
    )
    units = [f"{unit} in {n}" for unit, n in sorted(read_as.items())]
    inputs = ["hr"] if any(s.mask.any() for s in sessions) else []
    inputs += list(sessions[0].channels)
    note = (
        f"{len(sessions)} tests of {len({s.runner for s in sessions})} subjects; VO2 read as "
        f"{', '.join(units)}, reported in mL/min; inputs: {', '.join(inputs) or 'none'}"
    )
    return stack_sessions(sessions, bucket=60), note


def _fill_subject_fields(sessions, say):
    """A subject field (age, sex, height, weight) that some tests give and others lack is
    filled in the others with the median of those that give it, and said: stacking would
    read the missing ones as 0 (age 0 y, height 0 m), a value the model then learns from."""
    from dataclasses import replace

    from wearjax.data.types import SUBJECT_FIELDS

    subject = np.stack([np.asarray(s.subject, np.float64) for s in sessions])
    known = np.isfinite(subject)
    out = list(sessions)
    for j in np.flatnonzero(known.any(0) & ~known.all(0)):
        fill = float(np.median(subject[known[:, j], j]))
        say(f"{SUBJECT_FIELDS[j]}: missing in {int((~known[:, j]).sum())} of {len(out)} tests; "
            f"filled with the median of the others ({fill:g})")  # fmt: skip
        for i in np.flatnonzero(~known[:, j]):
            values = np.array(out[i].subject, np.float32)
            values[j] = fill
            out[i] = replace(out[i], subject=values)
    return out


def folder_config(n_subjects: int, quick: bool = False, seed: int = 0) -> VO2StudyConfig:
    """`cpet_config` with folds sized to a user's folder: about 10 subject-wise folds (fewer
    for a small folder) and up to 4 more subjects per fold for early stopping."""
    if n_subjects < 4:
        raise WearjaxDataError(
            f"{n_subjects} subject(s): subject-wise cross-validation needs at least 4 (one to "
            "test, one to stop early, two to train); add tests of more subjects"
        )
    out = max(1, round(n_subjects / 10))
    val = max(1, min(4, (n_subjects - out) // 5))
    return cpet_config(quick, seed, subjects_out=out, validation_subjects=val)
