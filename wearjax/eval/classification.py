"""Masked classification metrics (activity recognition, linear probes): accuracy, macro-F1,
the confusion matrix, and the one-vs-rest AUROC of class scores. Like `eval.metrics`, each
counts only the samples where `mask` is True, so they vmap over folds whose test sets differ
in size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def confusion(
    pred: Int[Array, " n"], true: Int[Array, " n"], mask: Bool[Array, " n"], n_classes: int
) -> Float[Array, "true pred"]:
    """Counts of (true class, predicted class) over the masked samples. A prediction outside
    `[0, n_classes)` has no column: its sample is left out (`macro_f1` counts it as a miss)."""
    classes = jnp.arange(n_classes)[None]
    one_true = (true[:, None] == classes) & mask[:, None]
    one_pred = pred[:, None] == classes
    return one_true.astype(jnp.float32).T @ one_pred.astype(jnp.float32)


def accuracy(
    pred: Int[Array, " n"], true: Int[Array, " n"], mask: Bool[Array, " n"]
) -> Float[Array, ""]:
    """Fraction of masked samples predicted right (NaN with none)."""
    n = jnp.sum(mask).astype(jnp.float32)
    right = jnp.sum((pred == true) & mask).astype(jnp.float32)
    return jnp.where(n > 0, right / jnp.maximum(n, 1.0), jnp.nan)


def macro_f1(
    pred: Int[Array, " n"], true: Int[Array, " n"], mask: Bool[Array, " n"], n_classes: int
) -> Float[Array, ""]:
    """Unweighted mean over classes of `2 TP / (2 TP + FP + FN)`, over the classes that occur
    in the masked true labels or predictions (a class absent from both is left out, as
    scikit-learn's `f1_score(..., average="macro")` does when `labels` is not given); NaN with
    no masked sample, as `accuracy`. A class's support is its count among the masked true
    labels, so a prediction outside `[0, n_classes)` is a miss of its true class and counts for
    no class (scikit-learn without `labels` would count it as a class of its own)."""
    c = confusion(pred, true, mask, n_classes)
    tp = jnp.diag(c)
    one_true = (true[:, None] == jnp.arange(n_classes)[None]) & mask[:, None]
    support, predicted = jnp.sum(one_true, axis=0).astype(c.dtype), c.sum(0)
    present = (support + predicted) > 0
    f1 = jnp.where(present, 2 * tp / jnp.maximum(support + predicted, 1.0), 0.0)
    score = jnp.sum(f1) / jnp.maximum(jnp.sum(present).astype(f1.dtype), 1.0)
    return jnp.where(jnp.any(mask), score, jnp.nan)


def macro_auroc(
    score: Float[Array, "n classes"], true: Int[Array, " n"], mask: Bool[Array, " n"]
) -> Float[Array, ""]:
    """Unweighted mean over classes of the one-vs-rest area under the ROC curve of
    `score[:, c]` (a probability, a decision value: only its order counts) over the masked
    samples: the chance that a sample of class `c` outscores one of another class, ties counting
    one half (the Mann-Whitney statistic: where every class occurs among the masked samples,
    what scikit-learn's `roc_auc_score(multi_class="ovr", average="macro")` gives). Classes
    without both positives and negatives among the masked samples are left out (NaN when none
    is left), where scikit-learn refuses; a non-finite score (NaN, +-inf) among the masked
    samples gives NaN, where scikit-learn refuses too. Sorting instead of comparing every pair keeps
    it `O(n log n)`, so it vmaps over folds of thousands of windows."""
    n_classes = score.shape[1]

    def one(c):
        s = score[:, c]
        pos = mask & (true == c)
        neg = mask & (true != c)
        negatives = jnp.sort(jnp.where(neg, s, jnp.inf))  # masked-out ones sort past every score
        n_pos, n_neg = jnp.sum(pos).astype(s.dtype), jnp.sum(neg).astype(s.dtype)
        # at most the n_neg real negatives: a tie with the +inf sentinels is no win
        below = jnp.minimum(jnp.searchsorted(negatives, s, side="left").astype(s.dtype), n_neg)
        above = jnp.minimum(jnp.searchsorted(negatives, s, side="right").astype(s.dtype), n_neg)
        wins = jnp.sum(jnp.where(pos, below + 0.5 * (above - below), 0.0))
        ok = (n_pos > 0) & (n_neg > 0)
        return jnp.where(ok, wins / jnp.maximum(n_pos * n_neg, 1.0), 0.0), ok

    auc, ok = jax.vmap(one)(jnp.arange(n_classes))
    n_ok = jnp.sum(ok).astype(auc.dtype)
    finite = ~jnp.any(mask[:, None] & ~jnp.isfinite(score))
    return jnp.where(finite & (n_ok > 0), jnp.sum(auc) / jnp.maximum(n_ok, 1.0), jnp.nan)
