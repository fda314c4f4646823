"""Classification metrics against a plain NumPy count (and scikit-learn where installed)."""

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
