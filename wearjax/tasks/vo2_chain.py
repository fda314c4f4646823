"""HR -> VO2 (Lab-to-Wrist Table 4): the HR model's generative rollout feeds the VO2 model, in
one compiled function; both models cross-validated on the same subject-wise folds.
"""

from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import fit_folds, predict_held_out
from wearjax.eval.protocols import given_mask
from wearjax.signal.features import Normalizer
from wearjax.signal.metabolic import metabolic_feature_names, metabolic_features
from wearjax.tasks import hr as hr_task
from wearjax.tasks import study_state
from wearjax.tasks.vo2 import (
    VO2StudyConfig,
    _metrics,
    prepare,
    results_skeleton,
    score,
    score_baselines,
    scored_mask,
    train_vo2,
)
from wearjax.train.loop import TrainConfig


def hr_to_vo2(
    hr_model,
    hr_normalizer: Normalizer,
    vo2_model,
    vo2_normalizer: Normalizer,
    hr_features,
    x,
    subject,
    hr,
    hr_mask,
    valid,
    v0,
    *,
    channels: tuple[str, ...],
    window: int = 60,
    keep: tuple[int, ...] | None = None,
):
    """VO2 of one session from HR rolled out by the HR model: returns `(vo2 [T], hr [T])`.

    The HR model starts from the session's first observed HR and rolls out over the whole
    session (`rollout`, generative); its HR replaces the measured one in the VO2 features
    (`metabolic_features`, held past the session's end like measured HR; `keep`: the columns
    the VO2 model reads, when its `VO2StudyConfig.without` left some out), and the VO2 model
    rolls out from the first second of VO2. Pure: jit it whole (`hr_to_vo2_jit`), one program.
    """
    h0 = hr[jnp.argmax(hr_mask)]
    hr_pred = hr_model.rollout(hr_normalizer.apply(hr_features), h0).hr
    features = metabolic_features(x, channels, subject, hr_pred, valid, window=window)
    if keep is not None:
        features = features[:, list(keep)]
    length = jnp.sum(valid)  # the backward GRU starts at the session's end, not the padding's
    return vo2_model.rollout(vo2_normalizer.apply(features), v0, length=length).vo2, hr_pred


hr_to_vo2_jit = eqx.filter_jit(hr_to_vo2)


class ChainData(NamedTuple):
    hr_features: jax.Array  # [S, T, F] HR-model features
    vo2_features: jax.Array  # [S, T, G] VO2 features from measured HR
    v0: jax.Array  # [S]
    cohort: object  # the `Cohort` (raw channels, HR, masks)


def _chain_predict(model, fold, data: ChainData, i, *, keep=None):
    """VO2 of session `i` from true HR and from rolled-out HR, and that HR (`keep`:
    `hr_to_vo2`'s)."""
    (hr_model, vo2_model), (hr_norm, vo2_norm) = model, fold
    cohort = data.cohort
    x, length = vo2_norm.apply(data.vo2_features[i]), jnp.sum(cohort.valid[i])
    true_hr = vo2_model.rollout(x, data.v0[i], length=length).vo2
    rolled, hr_pred = hr_to_vo2(
        hr_model, hr_norm, vo2_model, vo2_norm, data.hr_features[i], cohort.x[i],
        cohort.subject[i], cohort.hr[i], cohort.mask[i], cohort.valid[i], data.v0[i],
        channels=cohort.channels, window=vo2_model.window, keep=keep,
    )  # fmt: skip
    return true_hr, rolled, hr_pred


class HRToVO2Config(NamedTuple):
    """Synthetic HR -> VO2 study; sizes chosen to run in ~5 min on two CPU cores."""

    n_runners: int = 6
    sessions_per_runner: int = 3
    min_minutes: float = 15.0
    max_minutes: float = 30.0
    hr_model: tuple[int, int] = (32, 1)  # HR Kalman (hidden, layers)
    hr_train: TrainConfig = TrainConfig(epochs=20, steps_per_epoch=8)
    hr_batch: int = 4
    vo2: VO2StudyConfig = VO2StudyConfig(
        variant=(16, 2),
        batch_size=4,
        train=VO2StudyConfig().train._replace(epochs=30, steps_per_epoch=8),
    )
    seed: int = 0


def run_hr_to_vo2(config: HRToVO2Config, *, progress: bool = True, state_dir=None,
                  resume: bool = False):  # fmt: skip
    """Leave-one-runner-out on a synthetic cohort: the HR Kalman model and the VO2 model are
    cross-validated on the same folds, then every session's VO2 is predicted by its fold's
    models from true HR and from HR rolled out by the HR model (`hr_to_vo2`).
    Returns `(results, predictions)`. `state_dir`: both trainings' states are saved there
    every epoch (`study_state.training_state`) and `resume`d from them."""
    from wearjax.data.synthetic import simulate_cohort

    cohort = simulate_cohort(
        jax.random.key(config.seed),
        config.n_runners,
        config.sessions_per_runner,
        min_minutes=config.min_minutes,
        max_minutes=config.max_minutes,
    )
    vo2_cfg = config.vo2._replace(subjects_out=1, validation_subjects=1, seed=config.seed)
    kind_size = ("kalman", *config.hr_model)
    hr_cfg = hr_task.HRStudyConfig(
        models=(kind_size,),
        runners_out=1,
        train=config.hr_train,
        batch_size=config.hr_batch,
        seed=config.seed,
    )
    hr_data, hr_fold, hr_split, _ = hr_task.prepare(cohort, hr_cfg)
    data, fold, split, names = prepare(cohort, vo2_cfg)
    if not np.array_equal(hr_split.test, split.test):
        raise RuntimeError("the HR and VO2 studies must hold out the same runners per fold")
    t0 = time.perf_counter()
    keys = jax.random.split(jax.random.key(config.seed), split.n_folds)
    kind, hidden, layers = kind_size
    n_hr = hr_data.features.shape[-1]
    init = partial(hr_task.build_model, kind, n_hr, hidden, layers, window=hr_cfg.window)
    hr_state, hr_resumed = study_state.training_state(state_dir, "hr", resume)
    hr_fit = fit_folds(
        lambda k: init(key=k),
        hr_task.make_task(hr_cfg, cohort.x.shape[1]),
        hr_data,
        hr_fold,
        hr_cfg.train.recipe(),
        keys,
        progress="hr" if progress else False,
        state_file=hr_state,
        resume=hr_resumed,
        run={"study": "cv vo2", "model": "hr"},
    )
    state_file, resumed = study_state.training_state(state_dir, "vo2", resume)
    vo2_fit = train_vo2(data, fold, vo2_cfg, progress=progress, state_file=state_file,
                        resume=resumed)  # fmt: skip
    train_s = time.perf_counter() - t0
    runner = np.asarray(cohort.runner)
    every = metabolic_feature_names(cohort.channels, has_hr=True)
    keep = None if tuple(names) == every else tuple(every.index(n) for n in names)
    true_hr, rolled, hr_pred = predict_held_out(
        partial(_chain_predict, keep=keep),
        (hr_fit.model, vo2_fit.model),
        (hr_fold.normalizer, fold.normalizer),
        ChainData(hr_data.features, data.features, data.v0, cohort),
        split,
        batch=None,
    )
    scored = scored_mask(data)
    run_config = {"hr_model": list(config.hr_model), "vo2_variant": list(vo2_cfg.variant)}
    results = results_skeleton(cohort, names, split, 1, run_config)
    results["train_seconds"] = train_s
    predictions = {"vo2": np.asarray(data.vo2), "scored": scored, "hr_rollout": hr_pred}
    for name, p in (("vo2_kalman_true_hr", true_hr), ("vo2_kalman_rolled_hr", rolled)):
        results["models"][name] = score(p, data, scored, runner, cohort.runner_names)
        predictions[name] = p
    score_baselines(results, predictions, data, split, runner, scored, cohort.runner_names)
    hr_scored = np.asarray(cohort.mask & cohort.valid) & ~np.asarray(
        given_mask(cohort.mask, hr_cfg.window, "generative")
    )
    results["hr_rollout"] = _metrics(hr_pred, np.asarray(cohort.hr), hr_scored)
    return results, predictions
