"""`experiments/metabolic_levels.py`'s encoder checks: the levels beside an embedding's
principal components, and how much of each level an embedding gives back (issue 17)."""

import numpy as np
import pytest

from tests.scripts import load_script
from tests.windows import RowRecorder, two_class_set
from wearjax.cv import Split
from wearjax.tasks.probe import probe_scores

levels_script = load_script("experiments", "metabolic_levels")


def test_levels_beside_pcs_passes_the_levels_and_projects_the_standardised_embedding():
    rng = np.random.default_rng(0)
    lv = rng.normal(size=(200, 3))
    e = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 5.0
    got = levels_script.levels_beside_pcs(2, 3).fit(np.hstack([lv, e]))
    out = got.transform(np.hstack([lv, e]))
    assert out.shape == (200, 5)
    np.testing.assert_array_equal(out[:, :3], lv)
    z = (e - e.mean(0)) / e.std(0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    by_hand = z @ vt[:2].T  # the first two principal directions, each up to its sign
    for j in range(2):
        sign = np.sign(out[:, 3 + j] @ by_hand[:, j])
        np.testing.assert_allclose(out[:, 3 + j], sign * by_hand[:, j], atol=1e-8)


def test_level_r2_is_near_one_for_an_embedding_that_mixes_the_levels_and_near_zero_for_noise():
    rng = np.random.default_rng(1)
    n, subjects = 400, 8
    subject = np.repeat(np.arange(subjects), n // subjects)
    split = Split.by_subject(subject, subjects, 2, seed=0)
    lv = rng.normal(size=(n, 4))
    mixed = np.hstack([lv @ rng.normal(size=(4, 10)), rng.normal(size=(n, 20))])
    r2 = levels_script.level_r2(mixed + 0.01 * rng.normal(size=mixed.shape), lv, split)
    assert r2.shape == (4,) and np.all(r2 > 0.99)
    noise = levels_script.level_r2(rng.normal(size=(n, 30)), lv, split)
    assert np.all(noise < 0.1)
    # one column per window: only a fit that saw the test windows could give their levels back
    ids = levels_script.level_r2(np.eye(n), lv, split)
    assert np.all(ids < 0.05)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_probe_prepare_is_fitted_per_fold_on_its_training_windows_only():
    n_subjects = 10
    features, w, subject = two_class_set(np.random.default_rng(2), n_subjects, 10, 5, 0.5)
    n = len(subject)
    split = Split.by_subject(subject, n_subjects, 2, seed=0)
    recorder, fitted = RowRecorder.start("prepare")
    with_ids = np.hstack([np.arange(n)[:, None], features])
    got = probe_scores(with_ids, w, split, prepare=recorder)  # penalty by inner CV
    assert len(fitted) == split.n_folds
    for k, rows in enumerate(fitted):
        assert rows == set(np.flatnonzero(split.train[k] | split.validation[k]))
    plain = probe_scores(features, w, split)
    np.testing.assert_array_equal(got[0], plain[0])


def test_test_relative_takes_each_window_to_its_own_test_peak_and_place():
    x = np.zeros((5, 3, 2), np.float32)
    x[:, :, 1] = np.array([1.0, 2.0, 4.0, 3.0, 6.0])[:, None]  # VO2 means, channel 1
    subject = np.array([0, 0, 0, 1, 1])
    got = levels_script.test_relative(x, subject)
    np.testing.assert_allclose(got[:, 0], [0.25, 0.5, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(got[:, 1], [0.0, 0.5, 1.0, 0.0, 1.0])


def test_window_features_are_levels_least_squares_slopes_and_log_ratios():
    rng = np.random.default_rng(3)
    x = rng.uniform(1.0, 5.0, size=(4, 20, 3))
    got = levels_script.window_features(x)
    assert got.shape == (4, 3 * 3 + 3)
    slopes = [[np.polyfit(np.arange(20), x[n, :, c], 1)[0] for c in range(3)] for n in range(4)]
    np.testing.assert_allclose(got[:, 6:9], slopes, rtol=1e-10)
    m = np.log(x.mean(1))
    np.testing.assert_allclose(
        got[:, 9:], np.c_[m[:, 0] - m[:, 1], m[:, 0] - m[:, 2], m[:, 1] - m[:, 2]]
    )


@pytest.mark.slow  # ~20 s on 2 cores: keeps the fast suite under 10 minutes
def test_ceiling_oracle_reads_classes_set_relative_to_each_subjects_peak():
    """Classes are thirds of each subject's own range, subjects' scales differ twofold or more:
    the window's level alone cannot place it, its level over its test's peak can."""
    from wearjax.data.imu import LabelledWindows

    rng = np.random.default_rng(4)
    n_subjects, per = 12, 30
    subject = np.repeat(np.arange(n_subjects), per)
    ramp = np.tile(np.linspace(0.1, 1.0, per), n_subjects)
    scale = rng.uniform(1.0, 3.0, n_subjects)[subject]
    y = np.minimum((ramp * 3 - 1e-9).astype(int), 2)
    x = (ramp * scale)[:, None, None] * np.ones((1, 10, 2)) + 0.01 * rng.normal(
        size=(len(y), 10, 2)
    )
    w = LabelledWindows(
        x.astype(np.float32), y.astype(np.int32), subject.astype(np.int32),
        subject.astype(np.int32), ("a", "b", "c"), ("hr", "vo2"), {"all": (0, 1)}, 1.0,
    )  # fmt: skip
    split = Split.by_subject(subject, n_subjects, 3, seed=0)
    lv = levels_script.channel_levels(w.x)
    rows, r2 = levels_script.ceiling_rows(w, split, lv, 0)
    oracle = rows["levels + VO2 over the test's peak (needs the whole test)"][1]
    alone = probe_scores(lv, w, split)
    assert np.mean(oracle.accuracy) > 0.9 > np.mean(alone.accuracy) + 0.1
    assert r2 < 0.9  # the window's level does not give its subject's peak
