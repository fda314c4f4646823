"""Classification metrics against a plain NumPy count (and scikit-learn where installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.eval.classification import accuracy, confusion, macro_f1


def _reference_f1(pred, true, n):
    scores = []
    for c in range(n):
        tp = np.sum((pred == c) & (true == c))
        fp = np.sum((pred == c) & (true != c))
        fn = np.sum((pred != c) & (true == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return np.mean(scores)


@pytest.mark.parametrize("seed", range(4))
def test_masked_metrics_equal_a_count_over_the_kept_samples(seed):
    rng = np.random.default_rng(seed)
    n, classes = 50, 5
    true = rng.integers(0, classes - 1, n)  # the last class never occurs in truth
    pred = np.where(rng.random(n) < 0.6, true, rng.integers(0, classes, n))
    mask = rng.random(n) < 0.7
    p, t, m = jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask)
    np.testing.assert_allclose(accuracy(p, t, m), np.mean(pred[mask] == true[mask]), rtol=1e-6)
    np.testing.assert_allclose(
        macro_f1(p, t, m, classes), _reference_f1(pred[mask], true[mask], classes), rtol=1e-5
    )
    c = np.asarray(confusion(p, t, m, classes))
    assert c.sum() == mask.sum() and c[true[mask][0], pred[mask][0]] >= 1
    sklearn = pytest.importorskip("sklearn.metrics")
    want = sklearn.f1_score(true[mask], pred[mask], average="macro")
    np.testing.assert_allclose(macro_f1(p, t, m, classes), want, rtol=1e-5)


def test_no_kept_sample_gives_nan_accuracy():
    z = jnp.zeros(3, jnp.int32)
    assert np.isnan(accuracy(z, z, jnp.zeros(3, bool)))


def _pairwise_auroc(score, true):
    """One-vs-rest AUROC by comparing every (positive, negative) pair, float64."""
    aucs = []
    for c in range(score.shape[1]):
        pos, neg = score[true == c, c], score[true != c, c]
        if len(pos) and len(neg):
            d = pos[:, None].astype(np.float64) - neg[None].astype(np.float64)
            aucs.append(np.mean((d > 0) + 0.5 * (d == 0)))
    return np.mean(aucs)


@pytest.mark.parametrize("seed", range(4))
def test_macro_auroc_equals_every_pair_compared_over_the_kept_samples(seed):
    from wearjax.eval.classification import macro_auroc

    rng = np.random.default_rng(seed)
    n, classes = 80, 4
    true = rng.integers(0, classes - 1, n)  # the last class never occurs: left out
    score = rng.random((n, classes)) + 0.8 * (true[:, None] == np.arange(classes))
    score[::3] = np.round(score[::3], 1)  # ties between classes' scores count one half
    mask = rng.random(n) < 0.7
    got = macro_auroc(jnp.asarray(score, jnp.float32), jnp.asarray(true), jnp.asarray(mask))
    want = _pairwise_auroc(score.astype(np.float32)[mask], true[mask])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert 0.5 < want < 1.0  # informative but imperfect scores: not a degenerate case
    sklearn = pytest.importorskip("sklearn.metrics")
    p = score[mask][:, : classes - 1] / score[mask][:, : classes - 1].sum(1, keepdims=True)
    got_p = macro_auroc(jnp.asarray(p), jnp.asarray(true[mask]), jnp.ones(mask.sum(), bool))
    want_p = sklearn.roc_auc_score(true[mask], p, multi_class="ovr", average="macro")
    np.testing.assert_allclose(got_p, want_p, rtol=1e-6)


def test_macro_auroc_vmaps_over_folds_and_is_nan_without_both_classes():
    from wearjax.eval.classification import macro_auroc

    score = jnp.asarray([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    true = jnp.asarray([0, 1, 1, 0])
    masks = jnp.asarray([[True] * 4, [True, False, False, True], [True, True, False, False]])
    got = jax.vmap(macro_auroc, in_axes=(None, None, 0))(score, true, masks)
    assert np.isnan(got[1])  # one class only
    np.testing.assert_allclose(
        np.asarray(got)[[0, 2]], [0.75, 1.0]
    )  # by hand: 3 of 4 pairs, then 1 of 1


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_macro_auroc_of_a_non_finite_masked_score_is_nan(bad):
    """A +inf score once gave 1.083 on 5 samples; scikit-learn refuses non-finite scores."""
    from wearjax.eval.classification import macro_auroc

    score = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]], np.float32)
    true = np.asarray([0, 1, 1, 0, 1])
    score[1, 1] = bad
    mask = np.ones(5, bool)
    got = macro_auroc(jnp.asarray(score), jnp.asarray(true), jnp.asarray(mask))
    assert np.isnan(got)
    sklearn = pytest.importorskip("sklearn.metrics")
    with pytest.raises(ValueError):
        sklearn.roc_auc_score(true, score[:, 1])
    # the same score masked out is ignored: the rest as if it were not there
    mask[1] = False
    got = macro_auroc(jnp.asarray(score), jnp.asarray(true), jnp.asarray(mask))
    want = _pairwise_auroc(score[mask], true[mask])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert 0.0 <= float(got) <= 1.0


@pytest.mark.parametrize("seed", range(3))
def test_macro_f1_counts_an_out_of_range_prediction_as_a_miss(seed):
    """scikit-learn's `f1_score(labels=range(C))`: a prediction outside [0, C) misses its
    sample's true class (dropping it inflated F1, 0.2433 against 0.2202)."""
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n, classes = 60, 4
    true = rng.permutation(np.arange(n) % classes)  # every class occurs
    pred = np.where(rng.random(n) < 0.4, true, rng.integers(-1, classes + 2, n))
    assert ((pred < 0) | (pred >= classes)).any()
    mask = rng.random(n) < 0.8
    got = macro_f1(jnp.asarray(pred), jnp.asarray(true), jnp.asarray(mask), classes)
    want = sklearn.f1_score(
        true[mask], pred[mask], labels=range(classes), average="macro", zero_division=0
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_macro_f1_of_no_sample_is_nan_as_accuracy():
    """An empty mask has no F1 (it was 0.0, which a mean over folds would count as a score)."""
    y = jnp.asarray([0, 1, 1])
    none = jnp.zeros(3, bool)
    assert np.isnan(float(macro_f1(y, y, none, 2))) and np.isnan(float(accuracy(y, y, none)))
    assert float(macro_f1(y, y, jnp.ones(3, bool), 2)) == 1.0
