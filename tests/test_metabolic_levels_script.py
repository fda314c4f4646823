"""`experiments/metabolic_levels.py`'s encoder checks: the levels beside an embedding's
principal components, and how much of each level an embedding gives back (issue 17)."""

import numpy as np

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
