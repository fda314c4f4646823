"""One HR model on a user's recordings: `train_hr` (behind `wearjax fit hr`) trains it on
every session but a few held out for early stopping (the loss, batches and validation of the
HR task, through `train.fit`) and calibrates its band on them; `predict_hr` (behind `wearjax
predict`) pads a new recording to a multiple of the model's window, predicts both protocols
and trims the result back; `write_prediction` writes its CSV and plot. The recordings are read
by `tasks.hr_recordings`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.data.types import Cohort, Session, stack_sessions
from wearjax.data.windows import window_index
from wearjax.errors import WearjaxDataError
from wearjax.eval.calibration import Calibration, fit_calibration
from wearjax.eval.metrics import summarize
from wearjax.eval.protocols import PROTOCOLS, first_observed, given_mask, standard_initial
from wearjax.signal.features import fit_normalizer
from wearjax.tasks.hr import (
    HR_MODELS,
    HRData,
    HRFold,
    HRStudyConfig,
    build_model,
    make_task,
    model_features,
    segment_width,
)
from wearjax.tasks.hr_bands import horizons
from wearjax.tasks.hr_recordings import HEIGHT, fill_heights, select_channels
from wearjax.train.checkpoints import run_settings
from wearjax.train.loop import fit, split_for_fold

logger = logging.getLogger(__name__)


def _training_fold(cohort: Cohort, features, train: np.ndarray, val: np.ndarray, config):
    """`HRData` and one `HRFold` training on sessions `train [S]`, validating on `val [S]`."""
    mask = cohort.mask & cohort.valid
    length = cohort.x.shape[1]
    width = segment_width(config, length)
    lengths = np.asarray(cohort.lengths)
    if config.segment_windows is None:
        lengths = np.full_like(lengths, length)
    table = window_index(lengths, width, stride=config.window)
    p = train[np.asarray(table.session)].astype(np.float32)
    vtable = window_index(lengths, width, stride=width)
    keep = val[np.asarray(vtable.session)]
    if not p.sum() or not keep.any():
        raise WearjaxDataError(
            f"no training or validation segment of {width} s: sessions are too short"
        )
    normalizer = fit_normalizer(features, jnp.asarray(train)[:, None] & mask)
    data = HRData(features, cohort.hr, mask, table.session, table.start)
    fold = HRFold(
        normalizer,
        jnp.asarray(p / p.sum()),
        vtable.session[keep],
        vtable.start[keep],
        jnp.ones(int(keep.sum()), jnp.float32),
    )
    return data, fold


class FitHR(NamedTuple):
    model: eqx.Module
    normalizer: eqx.Module
    header: dict


def train_hr(
    sessions: list[Session],
    kind: str,
    hidden: int,
    layers: int,
    config: HRStudyConfig,
    *,
    validation_fraction: float = 0.2,
    progress: bool | str = False,
    state_file: str | Path | None = None,
    resume: bool = False,
) -> FitHR:
    """Train one HR model on every session but a random `validation_fraction` (at least one)
    held out for early stopping; returns the best model, its normaliser and the checkpoint
    header. All sessions must share one channel list (`shared_channels`). With a
    `state_file` the training state is saved every epoch and on Ctrl-C, and `resume` continues
    from it (`train.fit`)."""
    if kind not in HR_MODELS:  # a checkpoint names a registry kind (HR_VARIANTS have none)
        raise ValueError(f"unknown HR model {kind!r}: choose one of {sorted(HR_MODELS)}")
    if len(sessions) < 2:
        raise WearjaxDataError(
            f"{len(sessions)} session with heart rate: training needs at least 2 (one is held "
            "out for early stopping)"
        )
    cohort = stack_sessions(sessions, bucket=config.window)
    features, names = model_features(cohort, config.session_relative)
    n = len(sessions)
    # early stopping reads whole segments: a session shorter than one cannot validate
    width = segment_width(config, cohort.x.shape[1])  # whole sessions (None): every one
    long_enough = np.flatnonzero(
        (np.asarray(cohort.lengths) >= width) | (width == len(cohort.hr[0]))
    )
    if len(long_enough) < 2:
        raise WearjaxDataError(
            f"{len(long_enough)} of {n} sessions hold a training segment of {width} s: "
            "training needs two (one held out for early stopping); record longer runs"
        )
    n_val = min(max(1, round(validation_fraction * n)), len(long_enough) - 1)
    val = np.zeros(n, bool)
    val[np.random.default_rng(config.seed).choice(long_enough, n_val, replace=False)] = True
    data, fold = _training_fold(cohort, features, ~val, val, config)
    init_key, train_key = split_for_fold(jax.random.key(config.seed))
    model = build_model(kind, len(names), hidden, layers, window=config.window, key=init_key,
                        ode_engine=config.ode_engine, gru_impl=config.gru_impl)  # fmt: skip
    task = make_task(config, cohort.x.shape[1])
    study = {"segment_windows": config.segment_windows, "batch_size": config.batch_size,
             "generative_weight": config.generative_weight, "crps_weight": config.crps_weight,
             "seed": config.seed}  # fmt: skip
    run = {"task": "hr", "kind": kind, "hidden": hidden, "layers": layers, "study": study,
           "gru_impl": config.gru_impl, "train": run_settings(config.train),
           "session_relative": list(config.session_relative),
           "sessions": [x.source for x in sessions]}  # fmt: skip
    result = fit(
        model, task, data, fold, config.train.recipe(), train_key, progress=progress,
        state_file=state_file, resume=resume, run=run,
    )  # fmt: skip
    header = {
        "task": "hr",
        "kind": HR_MODELS[kind],
        "init": {
            "n_features": len(names),
            "hidden": hidden,
            "n_layers": layers,
            "window": config.window,
            # named only when set, so older wearjax still reads the other checkpoints
            **({"gru_impl": config.gru_impl} if config.gru_impl != "autodiff" else {}),
        },
        "window": config.window,
        "features": list(names),
        # features standardised by each session's own statistics (`session_relative`)
        "session_relative": [n for n in names if n in config.session_relative],
        "channels": list(cohort.channels),
        # the height vertical oscillation of a recording without one is scaled by
        "height_m": float(np.median(np.asarray(cohort.subject)[:, HEIGHT])),
        "train": config.train._asdict(),
        "study": study,
        "data": {
            "sessions": n,
            "hours": float(np.asarray(cohort.lengths).sum() / 3600),
            # shorter than a segment: read, but no segment of theirs is trained on
            "sessions_too_short": [sessions[i].source for i in range(n) if i not in long_enough],
            "validation_sessions": [sessions[i].source for i in np.flatnonzero(val)],
            "epochs_run": int(result.history["stopped"].shape[0]),
            "best_validation_loss": float(np.min(result.history["val_loss"])),
        },
    }
    header["calibration"] = _calibrate(
        result.model, fold.normalizer, features[val], cohort.hr[val], data.mask[val]
    )
    return FitHR(result.model, fold.normalizer, header)


def _calibrate(model, normalizer, features, hr, mask) -> dict[str, dict[str, float]]:
    """The predictive band of each protocol (`eval.calibration`), fitted on the held-out
    sessions `[V, T, ...]`: the checkpoint's `calibration`, which `predict_hr` applies."""
    h0 = jax.vmap(lambda h, m: first_observed(h, m)[0])(hr, mask)
    out = jax.vmap(_protocols, in_axes=(None, None, 0, 0, 0, 0))(
        model, normalizer, features, hr, mask, h0
    )
    cal, horizon = {}, horizons(mask, model.window)
    for protocol, pred, var in zip(PROTOCOLS, out[::2], out[1::2], strict=True):
        given = given_mask(mask, model.window, protocol)
        c = fit_calibration(pred, var, hr, mask & ~given, horizon[protocol])
        cal[protocol] = {k: float(v) for k, v in c._asdict().items()}
    return cal


def _band(header: dict, protocol: str, var, mask) -> np.ndarray:
    """The calibrated variance `[T]` of a protocol's prediction (the model's own without
    calibration in the header); `mask` `[T]` marks the measured HR (`horizons`)."""
    coef = header.get("calibration", {}).get(protocol)
    if coef is None:
        return np.asarray(var)
    horizon = horizons(mask, int(header["window"]))[protocol]
    return np.asarray(Calibration(**coef).variance(jnp.asarray(var), horizon))


class HRRecordingPrediction(NamedTuple):
    """Per-second predictions `[T]` of one recording (bpm; NaN where a protocol could not
    run), and per protocol the metrics over the seconds it did not give (empty without HR)."""

    hr: np.ndarray  # measured HR, NaN where absent
    standard: np.ndarray
    standard_sd: np.ndarray
    generative: np.ndarray
    generative_sd: np.ndarray
    metrics: dict[str, dict[str, float]]
    hr0: float


@eqx.filter_jit
def _protocols(model, normalizer, features, hr, mask, hr0):
    x = normalizer.apply(features)
    std = model(x, standard_initial(hr, mask, model.window))
    gen = model.rollout(x, hr0)
    return std.hr, std.var, gen.hr, gen.var


def predict_hr(
    model, normalizer, header: dict, session: Session, *, hr0: float | None = None
) -> HRRecordingPrediction:
    """Both protocols for one recording with a trained model (`train.checkpoints.load_hr`).

    The standard protocol needs measured HR (each window's first second); the generative one
    only its first second, `hr0` (bpm) when given, else the first measured HR.
    """
    session = select_channels(session, tuple(header["channels"]))
    [session], notes = fill_heights([session], header.get("height_m"))
    for note in notes:
        logger.warning("%s: %s", session.source or "recording", note)
    cohort = stack_sessions([session], bucket=int(header["window"]))
    features, names = model_features(cohort, tuple(header.get("session_relative", ())))
    if list(names) != list(header["features"]):
        raise WearjaxDataError(
            f"{session.source}: features {list(names)} differ from the model's {header['features']}"
        )
    t = session.length
    hr, mask = cohort.hr[0], cohort.mask[0] & cohort.valid[0]
    has_hr = bool(jnp.any(mask))
    if hr0 is not None and not math.isfinite(hr0):  # NaN would make every prediction NaN
        raise WearjaxDataError(f"{session.source or 'recording'}: hr0 is {hr0}; give a bpm")
    if hr0 is None:
        if not has_hr:
            raise WearjaxDataError(
                f"{session.source or 'recording'}: no heart rate in the file, so neither "
                "protocol has a start; pass the HR at the first second with --hr0 BPM"
            )
        hr0 = float(first_observed(hr, mask)[0])
    out = _protocols(model, normalizer, features[0], hr, mask, jnp.asarray(hr0, jnp.float32))
    std, std_var, gen, gen_var = (np.asarray(a) for a in out)
    std_var = _band(header, "standard", std_var, mask)
    gen_var = _band(header, "generative", gen_var, mask)
    std, std_var, gen, gen_var = (a[:t] for a in (std, std_var, gen, gen_var))
    metrics = {}
    if has_hr:
        for protocol, pred in (("standard", std), ("generative", gen)):
            scored = mask & ~given_mask(mask, model.window, protocol)
            padded = jnp.zeros(mask.shape, jnp.float32).at[:t].set(pred)
            m = summarize(padded, hr, scored)
            metrics[protocol] = {k: float(m[k]) for k in ("mae", "rmse", "pearson_r", "n")}
    else:
        std = std_var = np.full(t, np.nan, np.float32)
    measured = np.where(np.asarray(mask)[:t], np.asarray(hr)[:t], np.nan)
    sd = lambda v: np.sqrt(np.maximum(v, 0.0))  # noqa: E731
    return HRRecordingPrediction(measured, std, sd(std_var), gen, sd(gen_var), metrics, hr0)


def seconds_since_measured(hr: np.ndarray) -> np.ndarray:
    """Per second, the seconds since HR was last measured (0 where it is; NaN before the first
    measurement): a gap in the sensor's HR shows as a rising count."""
    t = np.arange(len(hr))
    last = np.maximum.accumulate(np.where(np.isfinite(hr), t, -1))
    return np.where(last >= 0, t - last, np.nan)


def write_prediction(
    pred: HRRecordingPrediction, csv_path: Path, png_path: Path, title: str, start_s=None
):
    """Per-second CSV (second; with `start_s`, second 0 on the file's clock, the same second
    on that clock; measured and predicted HR with SD per protocol; seconds since HR was last
    measured, which marks the sensor's gaps) and a plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("hr", "standard", "standard_sd", "generative", "generative_sd")
    second = np.arange(len(pred.hr))
    clock = [] if start_s is None else [start_s + second]
    table = np.column_stack(
        [second, *clock] + [getattr(pred, c) for c in columns] + [seconds_since_measured(pred.hr)]
    )
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(
        csv_path,
        table,
        fmt=["%d"] + ["%.3f"] * len(clock) + ["%.2f"] * len(columns) + ["%.0f"],
        delimiter=",",
        header="second," + "time_s," * len(clock) + "measured_hr_bpm,standard_bpm,"
        "standard_sd_bpm,generative_bpm,generative_sd_bpm,since_measured_s",
        comments="",
    )
    minutes = np.arange(len(pred.hr)) / 60
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for ax, protocol in zip(axes, ("standard", "generative"), strict=True):
        mean, sd = getattr(pred, protocol), getattr(pred, f"{protocol}_sd")
        ax.plot(minutes, pred.hr, ".", ms=1.5, color="0.3", label="measured HR")
        ax.fill_between(minutes, mean - 2 * sd, mean + 2 * sd, alpha=0.25, label="±2 SD")
        ax.plot(minutes, mean, lw=1.2, label="predicted")
        m = pred.metrics.get(protocol)
        detail = f": MAE {m['mae']:.1f} bpm" if m else ""
        ax.set_title(f"{title}, {protocol} protocol{detail}", fontsize=10)
        ax.set_ylabel("HR (bpm)")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1].set_xlabel("time (min)")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return [csv_path, png_path]
