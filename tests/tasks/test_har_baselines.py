"""The HAR baselines' class scores (`baseline_outputs`) against scikit-learn's own AUROC of the
same pipelines fitted by hand on each fold."""

import numpy as np
import pytest

from wearjax.cv import Split
from wearjax.data.imu import LabelledWindows


def _tone_windows(n_classes: int, seed: int = 0, noise: float = 2.0):
    """30 windows of 64 samples per subject, 6 subjects: each class a tone of its own
    frequency under Gaussian noise `noise` times as strong, two channels."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(6), 30).astype(np.int32)
    y = rng.integers(0, n_classes, len(subject)).astype(np.int32)
    t = np.arange(64) / 16.0
    tone = np.sin(2 * np.pi * (1.0 + y[:, None]) * t + rng.uniform(0, 6, (len(y), 1)))
    x = np.stack([tone, -tone], -1) + noise * rng.normal(size=(len(y), 64, 2))
    classes = tuple("abcd"[:n_classes])
    w = LabelledWindows(
        x.astype(np.float32), y, subject, np.arange(len(y), dtype=np.int32), classes,
        ("u", "v"), {"uv": (0, 1)}, 16.0,
    )  # fmt: skip
    return w, Split.by_subject(subject, 6, 2, seed=0)


# aeon's MiniRocket compiles its numba kernels on a fresh install (53 s in a fresh-clone CI
# run, where a warm numba cache hid it from local timings): slow step only, which CI runs
MINIROCKET = pytest.param("minirocket", marks=pytest.mark.slow)


@pytest.mark.parametrize("name", [MINIROCKET, "stats_logistic"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_baseline_scores_give_scikit_learns_auroc_and_their_own_predictions(name, n_classes):
    pytest.importorskip("aeon")
    from sklearn.metrics import roc_auc_score

    from wearjax.tasks.har_baselines import _estimator, baseline_outputs, statistical_features
    from wearjax.tasks.probe import auroc_scores

    w, split = _tone_windows(n_classes)
    pred, score = baseline_outputs(name, w, split)
    got = auroc_scores(score, w, split)
    inputs = w.x.transpose(0, 2, 1) if name == "minirocket" else statistical_features(w)
    for k in range(split.n_folds):
        fit_on, test = split.train[k] | split.validation[k], split.test[k]
        model = _estimator(name, 0).fit(inputs[fit_on], w.y[fit_on])
        np.testing.assert_array_equal(pred[k, test], model.predict(inputs[test]))
        assert np.all(pred[k, ~test] == -1) and np.all(score[k, ~test] == 0)
        if name == "minirocket":
            s = model.decision_function(inputs[test])
        else:
            s = model.predict_proba(inputs[test])
        if n_classes == 2:  # the second class's probability or decision value
            want = roc_auc_score(w.y[test], s if s.ndim == 1 else s[:, 1])
        elif name == "stats_logistic":
            want = roc_auc_score(w.y[test], s, multi_class="ovr")
        else:  # scikit-learn's multi-class AUROC takes probabilities only: one class at a time
            want = np.mean([roc_auc_score(w.y[test] == c, s[:, c]) for c in range(n_classes)])
        np.testing.assert_allclose(got[k], want, rtol=1e-5)
    assert 0.55 < got.mean() < 1.0  # the tones are found, not perfectly: a real check


@pytest.mark.slow  # MiniRocket's numba kernels (above)
def test_minirocket_regression_finds_a_tone_frequency_on_held_out_subjects():
    """The tone's frequency (1, 2 or 3 Hz) as a real target: MiniRocket's ridge predicts each
    fold's test windows, far better than their training mean, and only those."""
    pytest.importorskip("aeon")
    from wearjax.tasks.probe_ridge import minirocket_regression

    w, split = _tone_windows(3, noise=1.0)
    target = 1.0 + w.y.astype(np.float64)
    pred = minirocket_regression(w, target, split)
    for k in range(split.n_folds):
        test = split.test[k]
        assert np.all(np.isfinite(pred[k, test])) and np.all(np.isnan(pred[k, ~test]))
        mean = target[split.train[k] | split.validation[k]].mean()
        mae, mae_mean = (
            np.mean(np.abs(pred[k, test] - target[test])),
            np.mean(np.abs(mean - target[test])),
        )
        assert mae < 0.5 * mae_mean, (mae, mae_mean)
