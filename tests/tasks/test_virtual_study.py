"""The virtual-sensing study's bookkeeping: label-scarce references, the KL schedule, how
non-finite estimates are scored, and where the latency was timed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tasks.test_virtual import _recording
from wearjax.eval import metrics as M
from wearjax.eval.ridge import fold_ridge
from wearjax.models.virtual import FLOOR_DB, compress
from wearjax.tasks.virtual import (
    VirtualConfig,
    build,
    gait_features,
    kl_beta,
    make_folds,
    split_sessions,
)
from wearjax.tasks.virtual_data import spectral_sessions
from wearjax.tasks.virtual_study import _scores, cost, latency_device, references, study


def _sessions(n: int = 12, seconds: int = 30, ppg: bool = False):
    return spectral_sessions(
        [_recording(i, f"sub{i % 6}", seconds=seconds, ppg=ppg) for i in range(n)]
    )


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_label_scarce_references_fit_on_the_labelled_subjects_only():
    """With `labelled`, `train_mean` is the mean HR of the fold's labelled training subjects'
    windows and the ridges are fitted on the sessions the models may read (the labelled
    training subjects' and validation), the labelled subjects those `make_folds` draws;
    without it, the references are those fitted on every training (and validation) session."""
    s = _sessions()
    split = split_sessions(s, 1)
    owner = np.maximum(split.owner, 0)
    acc_db = np.asarray(compress(jnp.asarray(s.acc), FLOOR_DB)).reshape(s.acc.shape[:2] + (-1,))
    gait = np.asarray(gait_features(s))

    def by_hand(train):  # [K, S] the training sessions each fold's references may read
        fit_on = train | split.validation
        mean = np.asarray([s.hr[t][s.ok[t]].mean() for t in train])
        return {
            "acc_ridge": fold_ridge(acc_db, s.hr, s.ok, fit_on, s.subject).pred,
            "acc_gait": fold_ridge(gait, s.hr, s.ok, fit_on, s.subject).pred,
            "train_mean": np.broadcast_to(mean[:, None, None], (len(train),) + s.hr.shape),
        }

    def check(got, want):
        for name, fitted in want.items():  # each session by the fold that tests it
            expected = fitted[owner, np.arange(len(owner))].astype(np.float32)
            np.testing.assert_allclose(got[name], expected, rtol=1e-5, err_msg=name)

    full = references(s, split)
    check(full, by_hand(split.train))
    labelled = np.asarray(make_folds(s, split, labelled=2, seed=3).labelled)
    scarce = references(s, split, labelled=2, seed=3)
    check(scarce, by_hand(split.train & labelled))
    for name in ("acc_ridge", "acc_gait", "train_mean"):
        assert np.abs(scarce[name] - full[name]).max() > 0.1, name
    # as many labelled subjects as a fold trains on: every label, as without `labelled`
    every = references(s, split, labelled=len(s.subjects), seed=3)
    for name, hr in full.items():
        np.testing.assert_array_equal(every[name], hr)


def test_a_study_with_no_learned_setting_scores_the_references(tmp_path):
    """`settings=()` (`virtual_sensing.py --references-only`) trains nothing and scores the
    references; from 2026-12-06 to 12-07 it was refused as 'no setting can run'."""
    s = _sessions(6, ppg=True)
    metrics = study(s, VirtualConfig(), tmp_path / "o", settings=(), say=lambda _: None)
    split = split_sessions(s, 1)
    scored = s.labels() & (np.asarray(split.owner) >= 0)[:, None]
    want = references(s, split)["train_mean"][scored]
    np.testing.assert_allclose(
        metrics["train_mean"]["raw"]["mae"], np.abs(want - s.hr[scored]).mean(), rtol=1e-5
    )
    assert {"troika", "ppg_peak", "acc_ridge", "acc_gait"} <= set(metrics)
    assert not {"acc_only", "virtual", "ppg_only", "fusion"} & set(metrics)
    assert (tmp_path / "o" / "table.md").exists()
    assert (tmp_path / "o" / "environment.json").exists()  # the packages that computed it


def test_the_kl_weight_is_full_from_the_first_epoch_without_warmup():
    warm = VirtualConfig(kl_weight=0.5)  # the default 10 epochs of annealing, as before
    for epoch in (0, 3, 10, 25):
        expected = 0.5 * jnp.minimum(1.0, jnp.asarray(epoch, jnp.float32) / 10)
        assert float(kl_beta(warm, jnp.asarray(epoch))) == float(expected)
    for warmup in (0, -2):
        config = VirtualConfig(kl_weight=0.5, kl_warmup=warmup)
        for epoch in (0, 1, 30):
            assert float(kl_beta(config, jnp.asarray(epoch))) == 0.5


def test_a_non_finite_estimate_on_a_scored_window_makes_the_settings_metrics_nan():
    # one longer session: the others' padding windows are never scored
    s = spectral_sessions(
        [_recording(i, f"sub{i}", 40 if i == 0 else 30, ppg=False) for i in range(4)]
    )
    split = split_sessions(s, 1)
    tested = s.ok & (split.owner >= 0)[:, None]
    rng = np.random.default_rng(0)
    pred = (s.hr + rng.normal(0.0, 4.0, s.hr.shape)).astype(np.float32)
    got = _scores(pred, s, split)
    # finite estimates: the metrics of the tested windows, computed directly
    p, true, m = jnp.asarray(pred), jnp.asarray(s.hr), jnp.asarray(tested)
    assert got["mae"] == float(M.mae(p, true, m))
    assert got["rmse"] == float(M.rmse(p, true, m))
    assert got["within_5"] == float(M.within(p, true, m, 5.0))
    assert "nonfinite_windows" not in got
    # a NaN where nothing is scored (a window without reference HR) changes nothing
    unscored = np.argwhere(~tested)[0]
    hole = pred.copy()
    hole[tuple(unscored)] = np.nan
    assert _scores(hole, s, split) == got
    # on scored windows: no number at all, and the count said
    for bad in (np.nan, np.inf):
        broken = pred.copy()
        broken[tuple(np.argwhere(tested)[[0, 5]].T)] = bad
        scores = _scores(broken, s, split)
        assert scores.pop("nonfinite_windows") == 2
        assert scores.keys() == got.keys()
        assert all(np.isnan(v) for v in scores.values()), scores


def test_the_latency_names_the_device_it_was_timed_on():
    assert latency_device().startswith(jax.default_backend() + ": ")
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        assert latency_device() == f"cpu: {cpu.device_kind}"
    s = _sessions(n=2, seconds=40)
    config = VirtualConfig(width=4, context=4)
    model = build(config, "acc_only", jax.random.key(0))
    got = cost(model, s, config)
    assert got["latency_device"] == latency_device()
    assert got["parameters"] == model.inference_parameters()
    assert got["latency_ms_per_update"] > 0


@pytest.mark.parametrize("depth", [1, 2])
def test_the_encoder_sees_its_window_and_the_two_per_layer_before_it(depth):
    """The models' docstring: each causal conv of 3 windows adds 2 earlier windows, so the
    `acc_only` estimate of a window reads the `2 x depth` windows before it and no others."""
    from wearjax.models.virtual import VirtualSensing

    m = VirtualSensing("acc_only", width=4, depth=depth, key=jax.random.key(0))
    acc = jax.random.uniform(jax.random.key(1), (10, 64, 3))
    ppg = jnp.zeros((10, 64, 1))
    base = np.asarray(m(acc, ppg).hr)
    reads = [t for t in range(10) if np.asarray(m(acc.at[t].add(0.5), ppg).hr)[-1] != base[-1]]
    assert reads == list(range(9 - 2 * depth, 10))
