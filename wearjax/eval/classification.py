"""Masked classification metrics (activity recognition): accuracy, macro-F1, the confusion
matrix. Like `eval.metrics`, each counts only the samples where `mask` is True, so they vmap
over folds whose test sets differ in size."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def confusion(
    pred: Int[Array, " n"], true: Int[Array, " n"], mask: Bool[Array, " n"], n_classes: int
) -> Float[Array, "true pred"]:
    """Counts of (true class, predicted class) over the masked samples."""
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
    scikit-learn does when `labels` is not given)."""
    c = confusion(pred, true, mask, n_classes)
    tp = jnp.diag(c)
    support, predicted = c.sum(1), c.sum(0)
    present = (support + predicted) > 0
    f1 = jnp.where(present, 2 * tp / jnp.maximum(support + predicted, 1.0), 0.0)
    return jnp.sum(f1) / jnp.maximum(jnp.sum(present).astype(f1.dtype), 1.0)
