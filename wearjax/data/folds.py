"""Leave-k-runners-out folds as boolean arrays, so all folds train in one vmapped program."""

from __future__ import annotations

import numpy as np

from wearjax.errors import WearjaxDataError


def leave_k_runners_out(n_runners: int, k: int, *, seed: int = 0) -> np.ndarray:
    """Test-runner masks `[K, n_runners]`: runners are shuffled and dealt into K = ceil(n/k) folds.

    Every runner is held out exactly once. When `n_runners` is not a multiple of `k` the last
    fold holds fewer runners. `fold[i, r]` is True when runner r is a test runner of fold i.
    """
    if k < 1 or n_runners <= k:
        raise WearjaxDataError(
            f"leave-{k}-runners-out needs more than {k} runners, the cohort has {n_runners}"
        )
    order = np.random.default_rng(seed).permutation(n_runners)
    n_folds = -(-n_runners // k)
    folds = np.zeros((n_folds, n_runners), bool)
    for i in range(n_folds):
        folds[i, order[i * k : (i + 1) * k]] = True
    return folds


def validation_runners(test: np.ndarray, n_val: int = 1, *, seed: int = 0) -> np.ndarray:
    """For each fold pick `n_val` training runners for early stopping: `[K, n_runners]` bool."""
    rng = np.random.default_rng(seed + 1)
    val = np.zeros_like(test)
    for i, row in enumerate(test):
        candidates = np.flatnonzero(~row)
        if candidates.size <= n_val:
            raise WearjaxDataError(
                f"fold {i} has {candidates.size} training runners; need more than {n_val} "
                "to hold some out for early stopping"
            )
        val[i, rng.choice(candidates, n_val, replace=False)] = True
    return val


def padded_table(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the True entries of each row of `mask [K, S]`, padded with 0: `[K, M]`
    indices and `[K, M]` validity (M >= 1)."""
    per_fold = [np.flatnonzero(row) for row in np.asarray(mask)]
    m = max(1, max(len(i) for i in per_fold))
    idx = np.zeros((len(per_fold), m), np.int32)
    ok = np.zeros((len(per_fold), m), bool)
    for k, i in enumerate(per_fold):
        idx[k, : len(i)] = i
        ok[k, : len(i)] = True
    return idx, ok
