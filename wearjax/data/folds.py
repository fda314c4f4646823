"""Folds as boolean arrays, so all folds train in one vmapped program: leave-k-runners-out
masks, padded tables of each fold's sessions, and `Split` (test, validation and training
sessions per fold; re-exported by `wearjax.cv`, the runner that trains them)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Bool

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


def _check_validation(n_validation: int) -> None:
    if n_validation < 1:  # early stopping would read a loss over nothing
        raise WearjaxDataError(f"n_validation={n_validation}: each fold needs 1 or more")


class Split(NamedTuple):
    """Which sessions each of K folds tests, validates (early stopping) and trains on, and
    whose held-out residuals calibrate its band (`tasks.hr_bands`): `calibrate_from[k, j]`
    says fold k calibrates on fold j's test sessions; None means every other fold's. A fold
    with no such fold calibrates on its own validation sessions."""

    test: Bool[np.ndarray, "fold session"]
    validation: Bool[np.ndarray, "fold session"]
    train: Bool[np.ndarray, "fold session"]
    calibrate_from: Bool[np.ndarray, "fold fold"] | None = None

    @classmethod
    def by_subject(
        cls, subject, n_subjects: int, k_out: int, *, n_validation: int = 1, seed: int = 0
    ) -> Split:
        """Leave-`k_out`-subjects-out folds over sessions whose subject index is `subject [S]`
        (`data.folds`); `n_validation` other subjects per fold for early stopping."""
        _check_validation(n_validation)
        subject = np.asarray(subject)
        outside = (subject < 0) | (subject >= n_subjects)
        if outside.any():  # -1 ("unknown") would index the last subject: its folds, silently
            raise WearjaxDataError(
                f"{int(outside.sum())} of {len(subject)} items have a subject index outside "
                f"0..{n_subjects - 1} (e.g. {int(subject[outside][0])}, unknown): give every "
                "item its subject, or split them another way"
            )
        absent = np.setdiff1d(np.arange(n_subjects), subject)
        if absent.size:  # dealt as a fold's test or validation subject, it would hold nothing
            raise WearjaxDataError(
                f"subjects {absent[:5].tolist()} of 0..{n_subjects - 1} hold no item: number "
                "the subjects present 0..n-1 (np.unique(subject, return_inverse=True))"
            )
        test = leave_k_runners_out(n_subjects, k_out, seed=seed)
        val = validation_runners(test, n_validation, seed=seed)
        return cls(test[:, subject], val[:, subject], (~test & ~val)[:, subject])

    @classmethod
    def chronological(
        cls, order, *, test_fraction: float = 0.2, n_validation: int = 1, n_folds: int = 1
    ) -> Split:
        """Folds that train on the past and test on the future (forward chaining): sessions
        sorted by `order [S]` (start times, or any sortable key), the last `n_folds` blocks of
        `test_fraction` of them tested, one block per fold in time order; each fold holds out
        the `n_validation` sessions before its block for early stopping and trains on all
        earlier ones. Fold k's band is calibrated on the test blocks of the folds before it
        (residuals of models that never saw them, all from k's past); the first fold, which
        has none, on its validation sessions."""
        _check_validation(n_validation)
        rank = np.argsort(np.argsort(np.asarray(order), kind="stable"), kind="stable")
        n = len(rank)
        n_test = max(1, round(test_fraction * n))
        if n_folds < 1 or n - n_folds * n_test - n_validation < 1:
            raise WearjaxDataError(
                f"{n} sessions: a chronological split of {n_folds} fold(s) of {n_test} test and "
                f"{n_validation} validation sessions leaves none to train on; lower "
                "test_fraction or the number of folds"
            )
        start = n - (n_folds - np.arange(n_folds)[:, None]) * n_test  # [K, 1] first test rank
        test = (rank >= start) & (rank < start + n_test)
        val = (rank >= start - n_validation) & (rank < start)
        train = rank < start - n_validation
        return cls(test, val, train, np.tri(n_folds, k=-1, dtype=bool))

    def take(self, folds) -> Split:
        """The split restricted to the folds `folds` (indices), e.g. one process's share."""
        folds = np.asarray(folds)
        sources = None if self.calibrate_from is None else self.calibrate_from[np.ix_(folds, folds)]
        return Split(self.test[folds], self.validation[folds], self.train[folds], sources)

    def keep_subjects(
        self, subject, n_subjects: int, n: int, *, seed: int = 0, among: str = "train"
    ) -> np.ndarray:
        """`[K, S]` the sessions of `n` subjects drawn per fold, with `seed`, among the
        subjects with a session in the fold's `among` set ("train", or "fit": training and
        validation); all of them where a fold has `n` or fewer. For label-scarce studies: the
        sessions whose labels a fold may use. One uniform number per (fold, subject) ranks the
        subjects, so with one seed the draws are nested: the `n` of a draw are among its
        `n + 1`."""
        if n < 1:
            raise ValueError(f"need at least 1 labelled subject, got {n}")
        if among not in ("train", "fit"):
            raise ValueError(f"among must be 'train' or 'fit', got {among!r}")
        pool = self.train if among == "train" else self.train | self.validation
        subject = np.asarray(subject)
        of = subject[None, :, None] == np.arange(n_subjects)[None, None]  # [1, S, N]
        present = (pool[:, :, None] & of).any(1)  # [K, N]
        draw = np.where(present, np.random.default_rng(seed).random(present.shape), np.inf)
        keep = (np.argsort(np.argsort(draw, axis=1), axis=1) < n) & present
        return keep[:, subject] & pool

    def fit_subjects(self, subject) -> np.ndarray:
        """`[K]` how many subjects each fold fits on (training and validation sessions)."""
        fit = self.train | self.validation
        return np.asarray([len(np.unique(np.asarray(subject)[f])) for f in fit])

    def subsample(self, subject, n_subjects: int, n: int, *, seed: int = 0) -> Split:
        """The split with each fold's training and validation sessions cut to those of `n`
        subjects drawn among them (`keep_subjects(..., among="fit")`); test sessions as they
        are. A label-scarce probe fits on what is left, training and validation together: a
        fold may keep no validation subject (or no training one), which a trainer refuses
        (`check_trainable`)."""
        keep = self.keep_subjects(subject, n_subjects, n, seed=seed, among="fit")
        return Split(self.test, self.validation & keep, self.train & keep, self.calibrate_from)

    @property
    def n_folds(self) -> int:
        return int(self.test.shape[0])

    @property
    def owner(self) -> np.ndarray:
        """`[S]` the fold that tests each session (-1: none)."""
        return np.where(self.test.any(0), np.argmax(self.test, axis=0), -1)

    def check_trainable(self) -> None:
        """Refuse, before any work, folds that a trainer cannot fit: no training session, or
        no validation session for early stopping (e.g. after `subsample`)."""
        for name, mask in (("training", self.train), ("validation", self.validation)):
            empty = np.flatnonzero(~np.asarray(mask).any(1)).tolist()
            if empty:
                raise WearjaxDataError(
                    f"folds {empty} have no {name} session: hold fewer subjects out, or keep "
                    "a validation subject in every fold"
                )

    def sampling_weights(self) -> np.ndarray:
        """`[K, S]` float32 probability of drawing each training session; the split is
        checked first (`check_trainable`)."""
        self.check_trainable()
        p = self.train.astype(np.float32)
        return p / p.sum(1, keepdims=True)

    def held_out_table(self, which: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Sessions of each fold's `which` mask, padded: index `[K, M]` and validity `[K, M]`."""
        return padded_table(getattr(self, which))
