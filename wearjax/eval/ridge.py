"""Standardised ridge regression for every cross-validation fold at once, its penalty chosen
per fold by leave-one-group-out on the fold's own fitting sessions: a linear reference that a
learned model must beat on the same folds.

Everything is computed from per-session sufficient statistics in float64 (window count, sums of
x, x x^T, y, x y, y^2 over a session's labelled windows): the statistics of any set of sessions
are sums of these, so each fold's fit, each inner fold's fit and each inner fold's held-out
squared error are closed-form, stacked over folds, inner groups and penalties (no loop over
them). Features are standardised with the fitting set's own mean and SD (a constant feature is
left unscaled) and the intercept is not penalised, as scikit-learn's `StandardScaler` followed
by `Ridge(alpha)` does: the objective is `|y - a - z w|^2 + alpha |w|^2` over standardised `z`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from wearjax.errors import WearjaxDataError

PENALTIES = np.logspace(-2, 5, 15)
"""The penalties searched per fold (on standardised features, summed squared error)."""


class Stats(NamedTuple):
    """Sufficient statistics `[..., ]` of a ridge fit over some labelled windows."""

    n: np.ndarray  # [...]
    sx: np.ndarray  # [..., F]
    sxx: np.ndarray  # [..., F, F]
    sy: np.ndarray  # [...]
    sxy: np.ndarray  # [..., F]
    syy: np.ndarray  # [...]

    def combine(self, weights: np.ndarray) -> Stats:
        """`weights [..., S]` (0/1) over the sessions' statistics `[S, ...]` -> summed stats."""
        return Stats(*(np.tensordot(weights, a, axes=(-1, 0)) for a in self))


def session_stats(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> Stats:
    """Per-session statistics `[S]` of features `x [S, W, F]` and targets `y [S, W]` over the
    windows where `ok [S, W]`."""
    w = ok.astype(np.float64)
    x = np.where(ok[..., None], np.asarray(x, np.float64), 0.0)
    y = np.where(ok, np.asarray(y, np.float64), 0.0)
    return Stats(
        w.sum(1), x.sum(1), np.einsum("swf,swg->sfg", x, x), y.sum(1),
        np.einsum("swf,sw->sf", x, y), (y * y).sum(1),
    )  # fmt: skip


def fit(stats: Stats, penalties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intercepts `[..., P]` and weights `[..., P, F]` on the raw features, for each penalty,
    fitted to the windows `stats` summarise (module docstring)."""
    n = np.maximum(stats.n, 1.0)[..., None]
    mu = stats.sx / n  # [..., F]
    ybar = stats.sy / n[..., 0]
    gram = stats.sxx - n[..., None] * mu[..., :, None] * mu[..., None, :]  # centred, [..., F, F]
    sd = np.sqrt(np.maximum(np.diagonal(gram, axis1=-2, axis2=-1), 0.0) / n)
    sd = np.where(sd > 1e-12, sd, 1.0)
    gram_z = gram / (sd[..., :, None] * sd[..., None, :])
    b_z = (stats.sxy - mu * stats.sy[..., None]) / sd  # sum of z (y - ybar)
    e, v = np.linalg.eigh(gram_z)  # one decomposition serves every penalty
    proj = np.einsum("...fg,...f->...g", v, b_z)  # [..., F]
    coef_z = np.einsum(
        "...fg,...pg->...pf", v, proj[..., None, :] / (e[..., None, :] + penalties[:, None])
    )  # [..., P, F]
    weights = coef_z / sd[..., None, :]
    intercept = ybar[..., None] - np.einsum("...pf,...f->...p", weights, mu)
    return intercept, weights


def squared_error(stats: Stats, intercept: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Summed squared error `[..., P]` of the fits `(intercept [..., P], weights [..., P, F])`
    on the windows `stats [...]` summarise, from their statistics alone."""
    a, w = intercept, weights
    wsxx = np.einsum("...pf,...fg,...pg->...p", w, stats.sxx, w)
    return (
        stats.syy[..., None] - 2 * a * stats.sy[..., None]
        - 2 * np.einsum("...pf,...f->...p", w, stats.sxy) + stats.n[..., None] * a * a
        + 2 * a * np.einsum("...pf,...f->...p", w, stats.sx) + wsxx
    )  # fmt: skip


class FoldRidge(NamedTuple):
    pred: np.ndarray  # [K, S, W] each fold's prediction of every window
    penalty: np.ndarray  # [K] the penalty each fold chose
    intercept: np.ndarray  # [K] each fold's fit on the raw features: y = intercept + x w
    weights: np.ndarray  # [K, F]


def _held_out_error(stats: Stats, fit_on: np.ndarray, member: np.ndarray, penalties):
    """`[K, P]` squared error summed over the leave-one-group-out folds of each fold's sessions
    (`member [G, S]`: the groups' sessions)."""
    inner_fit = fit_on[:, None, :] * (1.0 - member[None])  # [K, G, S]
    inner_test = fit_on[:, None, :] * member[None]
    a, w = fit(stats.combine(inner_fit), penalties)
    return squared_error(stats.combine(inner_test), a, w).sum(1)


def fold_ridge(
    x: np.ndarray, y: np.ndarray, ok: np.ndarray, fit_on: np.ndarray, group: np.ndarray,
    penalties: np.ndarray = PENALTIES,
) -> FoldRidge:  # fmt: skip
    """Ridge `y ~ x` per fold: fitted on the labelled windows of the sessions `fit_on [K, S]`
    (e.g. a fold's training and validation sessions), its penalty the one with the least squared
    error over leave-one-group-out folds of those sessions (`group [S]`: each session's
    subject), then refitted on all of them. A fold whose labelled sessions are all one
    subject's searches by leave-one-session-out instead (leave-one-subject-out would fit on
    nothing); with one labelled session it takes the smallest penalty. `x [S, W, F]`,
    `y [S, W]`, `ok [S, W]`."""
    windows = (np.asarray(fit_on, bool) & ok.any(1)[None]).sum(1)  # sessions with a label
    if (windows == 0).any():
        raise WearjaxDataError(
            f"fold {int(np.argmax(windows == 0))} has no labelled window to fit the ridge on: "
            "give each fold training sessions with a reference HR"
        )
    if not (np.isfinite(x[ok]).all() and np.isfinite(y[ok]).all()):
        raise WearjaxDataError("the ridge's features or targets are not finite in a labelled "
                               "window: mask those windows out (ok=False)")  # fmt: skip
    stats = session_stats(x, y, ok)
    labelled = np.asarray(fit_on, bool) & ok.any(1)[None]  # [K, S]
    fit_on = np.asarray(fit_on, np.float64)
    groups = np.unique(group)
    member = (group[None, :] == groups[:, None]).astype(np.float64)  # [G, S]
    one_subject = (labelled.astype(np.float64) @ member.T > 0).sum(1) < 2  # [K]
    by_session = np.eye(len(group))  # [S, S]: each session its own group
    sse = [_held_out_error(stats, fit_on, m, penalties) for m in (member, by_session)]
    best = np.argmin(np.where(one_subject[:, None], sse[1], sse[0]), axis=-1)
    a, w = fit(stats.combine(fit_on), penalties)  # [K, P], [K, P, F]
    a = np.take_along_axis(a, best[:, None], 1)[:, 0]
    w = np.take_along_axis(w, best[:, None, None], 1)[:, 0]
    pred = a[:, None, None] + np.einsum("swf,kf->ksw", np.asarray(x, np.float64), w)
    return FoldRidge(pred, penalties[best], a, w)
