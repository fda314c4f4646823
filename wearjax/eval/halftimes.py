"""Response speed of fitted personalised HR ODEs: the half-times of HR rise and recovery after
a step in speed, simulated (truth) and predicted (`experiments/hr_personal_ode.py`).

`response_halftimes` and `training_halftimes` take a `tasks.hr_personal.PersonalResult`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from wearjax.data.physiology import hr_step_response
from wearjax.errors import WearjaxDataError
from wearjax.train.loop import fold_model


def half_time(hr: Float[ArrayLike, " time"], start: int, end: int) -> float:
    """Seconds after `start` until HR has covered half of its change from `hr[start - 1]` to
    `hr[end - 1]` (linear between seconds); NaN if it never does. Needs
    `1 <= start < end <= len(hr)`."""
    n = np.shape(hr)[0]
    if not 1 <= start < end <= n:
        raise WearjaxDataError(
            f"half_time: start {start} and end {end} must satisfy 1 <= start < end <= len(hr) "
            f"= {n} (hr[start - 1] is the baseline); pass a step inside the series"
        )
    base, final = float(hr[start - 1]), float(hr[end - 1])
    target = base + 0.5 * (final - base)
    progress = (hr[start:end] - target) * np.sign(final - base)
    crossed = np.flatnonzero(progress >= 0)
    if final == base or not len(crossed):
        return float("nan")
    k = int(crossed[0])
    if k == 0:
        return 0.0
    before, after = progress[k - 1], progress[k]
    return float(k - 1 + (-before) / (after - before))


def step_halftimes(
    hr: Float[ArrayLike, " time"],
    hr_flat: Float[ArrayLike, " time"],
    step_up: int,
    step_down: int,
) -> tuple[float, float]:
    """Rise and recovery half-times (s) of the response to a step in speed up at `step_up` and
    down at `step_down`: `half_time` of `hr - hr_flat`, where `hr_flat` is the same run without
    the step, so a drift both runs share is not counted as response."""
    response = np.asarray(hr, np.float64) - np.asarray(hr_flat, np.float64)
    return (
        half_time(response, step_up, step_down),
        half_time(response, step_down, len(response)),
    )


def _step_rows(pairs, physiology, step_up: int, step_down: int, n: int) -> list[dict]:
    """Half-time rows for `(model, embedding, runner, extra)` pairs: simulated and predicted."""
    rows = []
    rollout = eqx.filter_jit(lambda m, e, u, h0: m.for_runner(e).rollout(u, h0).hr)
    steps = dict(step_up=step_up, step_down=step_down, n_time=n)
    for model, embedding, r, extra in pairs:
        speed, hr_true = hr_step_response(physiology, r, **steps)
        flat, hr_true_flat = hr_step_response(physiology, r, speed_high=speed[0], **steps)
        pred, pred_flat = (
            np.asarray(rollout(model, embedding, jnp.stack([v, jnp.zeros_like(v)], -1), hr_true[0]))
            for v in (speed, flat)
        )
        rise_true, recovery_true = step_halftimes(hr_true, hr_true_flat, step_up, step_down)
        rise_pred, recovery_pred = step_halftimes(pred, pred_flat, step_up, step_down)
        rows.append(
            {
                **extra,
                "runner": r,
                "rise_true_s": rise_true,
                "rise_pred_s": rise_pred,
                "recovery_true_s": recovery_true,
                "recovery_pred_s": recovery_pred,
                "rise_pred_level_s": half_time(pred, step_up, step_down),
                "recovery_pred_level_s": half_time(pred, step_down, n),
            }
        )
    return rows


def response_halftimes(
    result, physiology, runner: np.ndarray, *, step_up=300, step_down=900, n=1800
) -> list[dict]:
    """Rise and recovery half-times of HR after a step in speed on the flat, simulated (truth)
    and predicted by the fitted model of each held-out session's fold with the session's
    calibrated embedding (generative, from the simulator's first second), per held-out session.

    A half-time is taken on the step response: HR minus the HR of the same run without the step
    (the low speed throughout). For the simulator, whose HR at the low speed is constant, this is
    HR itself; a model whose level drifts (the personalised ODE's fatigue raises its demand over
    the run) would otherwise have the drift counted as response and its recovery shortened. The
    half-times of HR itself are kept as `*_level_s`.

    `physiology` is the simulator's `RunnerPhysiology` of the cohort (`simulate_cohort(...,
    return_physiology=True)`); steps as in `data.physiology.hr_step_response`.
    """
    scored = np.flatnonzero(result.predictions["standard"].any(axis=1))
    pairs = (
        (
            _model_of_fold(result, int(result.fold_of[s])),
            jnp.asarray(result.embeddings[s]),
            int(runner[s]),
            {"session": int(s)},
        )
        for s in scored
        if _model_of_fold(result, int(result.fold_of[s])) is not None
    )
    return _step_rows(pairs, physiology, step_up, step_down, n)


def _model_of_fold(result, k: int):
    """Fold `k`'s model of a `PersonalResult`, or None where another process trained it (under
    jax.distributed a process holds only its own folds, `result.folds`)."""
    if result.folds is None:
        return fold_model(result.model, k)
    held = np.flatnonzero(np.asarray(result.folds) == k)
    return fold_model(result.model, int(held[0])) if held.size else None


def training_halftimes(result, physiology, *, step_up=300, step_down=900, n=1800) -> list[dict]:
    """The rows of `response_halftimes` for every fold's training runners, each with the
    embedding learned in training: how well the fit itself recovers response speed, before
    any calibration of a new runner."""
    pairs = []
    for k, row in enumerate(result.train_runners):
        model = _model_of_fold(result, k)
        if model is not None:  # this process's folds only, under jax.distributed
            pairs += [(model, model.embedding[r], int(r), {"fold": k}) for r in np.flatnonzero(row)]
    return _step_rows(pairs, physiology, step_up, step_down, n)
