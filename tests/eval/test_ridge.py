"""The fold ridge (`eval.ridge`) against scikit-learn's StandardScaler + Ridge fitted window by
window, one fold and one held-out subject at a time."""

import numpy as np
import pytest

from wearjax.eval import ridge

sklearn = pytest.importorskip("sklearn")


def _problem(seed=0, s=12, w=30, f=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(s, w, f)) * rng.uniform(0.1, 10.0, f) + rng.normal(size=f)
    x[..., 2] = 3.0  # a constant feature: left unscaled, never used
    y = 120 + x @ rng.normal(size=f) + 5 * rng.normal(size=(s, w))
    ok = rng.uniform(size=(s, w)) > 0.2
    group = np.repeat(np.arange(s // 2), 2)  # two sessions per subject
    return x, y, ok, group


def _sklearn(x, y, alpha):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)


def test_fit_equals_scikit_learn_for_every_penalty():
    x, y, ok, _ = _problem()
    a, w = ridge.fit(ridge.session_stats(x, y, ok).combine(np.ones(len(x))), ridge.PENALTIES)
    for p, alpha in enumerate(ridge.PENALTIES):
        ref = _sklearn(x[ok], y[ok], alpha)
        np.testing.assert_allclose(a[p] + x[ok] @ w[p], ref.predict(x[ok]), rtol=0, atol=1e-8)


def test_squared_error_from_statistics_equals_the_direct_sum():
    x, y, ok, _ = _problem(1)
    a, w = ridge.fit(ridge.session_stats(x, y, ok).combine(np.ones(len(x))), ridge.PENALTIES)
    held = ridge.session_stats(x[:3], y[:3], ok[:3]).combine(np.ones(3))
    direct = [np.sum((y[:3][ok[:3]] - a[p] - x[:3][ok[:3]] @ w[p]) ** 2) for p in range(len(a))]
    np.testing.assert_allclose(ridge.squared_error(held, a, w), direct, rtol=1e-9)


def test_fold_ridge_chooses_and_refits_as_a_grouped_search_does():
    from sklearn.model_selection import LeaveOneGroupOut

    x, y, ok, group = _problem(2)
    fit_on = np.zeros((2, len(x)), bool)
    fit_on[0, 4:] = True  # fold 0 tests subjects 0-1
    fit_on[1, :8] = True  # fold 1 tests subjects 4-5
    out = ridge.fold_ridge(x, y, ok, fit_on, group)
    for k in range(2):
        rows = np.flatnonzero(fit_on[k])
        xs, ys = x[rows][ok[rows]], y[rows][ok[rows]]
        gs = np.repeat(group[rows], ok[rows].sum(1))
        sse = np.zeros(len(ridge.PENALTIES))
        for p, alpha in enumerate(ridge.PENALTIES):
            for tr, te in LeaveOneGroupOut().split(xs, ys, gs):
                sse[p] += np.sum((_sklearn(xs[tr], ys[tr], alpha).predict(xs[te]) - ys[te]) ** 2)
        alpha = ridge.PENALTIES[np.argmin(sse)]
        assert out.penalty[k] == alpha
        ref = _sklearn(xs, ys, alpha).predict(x.reshape(-1, x.shape[-1]))
        np.testing.assert_allclose(out.pred[k].reshape(-1), ref, rtol=0, atol=1e-7)
        np.testing.assert_allclose(out.intercept[k] + x @ out.weights[k], out.pred[k], atol=1e-9)


def test_a_fold_without_labelled_windows_or_a_nan_feature_is_named():
    from wearjax.errors import WearjaxDataError

    x, y, ok, group = _problem(3)
    fit_on = np.ones((2, len(x)), bool)
    fit_on[1] = False
    with pytest.raises(WearjaxDataError, match="fold 1 has no labelled window"):
        ridge.fold_ridge(x, y, ok, fit_on, group)
    x[0, np.argmax(ok[0]), 1] = np.nan
    with pytest.raises(WearjaxDataError, match="not finite"):
        ridge.fold_ridge(x, y, ok, np.ones((2, len(x)), bool), group)


def test_a_fold_fitted_on_one_subject_searches_over_its_sessions():
    from sklearn.model_selection import LeaveOneGroupOut

    x, y, ok, group = _problem(4)
    fit_on = np.zeros((2, len(x)), bool)
    fit_on[0, :2] = True  # one subject, two sessions
    fit_on[1, 2:] = True
    out = ridge.fold_ridge(x, y, ok, fit_on, group)
    xs, ys = x[:2][ok[:2]], y[:2][ok[:2]]
    sessions = np.repeat([0, 1], ok[:2].sum(1))
    sse = [sum(np.sum((_sklearn(xs[tr], ys[tr], alpha).predict(xs[te]) - ys[te]) ** 2)
               for tr, te in LeaveOneGroupOut().split(xs, ys, sessions))
           for alpha in ridge.PENALTIES]  # fmt: skip
    assert out.penalty[0] == ridge.PENALTIES[np.argmin(sse)]
    # by subject for a fold with several (the result of the by-subject test above)
    alone = ridge.fold_ridge(x, y, ok, fit_on[1:], group)
    assert out.penalty[1] == alone.penalty[0]
