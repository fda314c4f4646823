"""Virtual sensing: the gait's HR estimate as a second measurement in the HR tracker.

Reads a virtual-sensing study's `predictions.npz` (`experiments/virtual_sensing.py`, `wearjax
cv virtual`), so nothing is retrained. For each learned ACC setting, a random-walk Kalman
filter over HR (`wearjax.filters.kalman_filter`, as `models.virtual.track`) observes two
measurements per window: the model's estimate with its own predicted variance, and the gait
ridge's (`acc_gait`: the cadence and its lags) with one variance per fold, the gait ridge's
mean squared error on the sessions the other folds test (where the gait gave no estimate, the
model's own with a large variance). The transition variance is chosen per fold the same way,
among `q0 x Q_FACTORS` (`q0`: the other folds' mean squared HR step between windows, at least
0.25), by the lowest tracked MAE on the other folds' sessions. A fold's own sessions choose
nothing it is scored with; the other folds' predictions come from models that trained on its
subjects, a second-order leak that `choose_q` (the fold's own validation subject) avoids. So
the table has a control: the same procedure without the gait measurement (`track`, "+ Kalman, q
as above"), next to the study's own tracked row. The filter treats the gait ridge's errors as
independent between windows, though they persist for minutes (its lags reach 4 min), and the
two measurements as uncorrelated, though both come from the ACC: it trusts the gait more than
it should. A second combination needs no noise model: per fold, a ridge regression of the true HR
on the model's estimate and the gait ridge's (`stack`, `eval.ridge.fold_ridge`), fitted on the
other folds' sessions (the same second-order leak) and applied to the fold's own.

    python experiments/virtual_gait_tracker.py --study experiments/results/virtual_sensing_ctx128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.eval.ridge import fold_ridge
from wearjax.filters.linear import LinearGaussianParams, kalman_filter
from wearjax.models.virtual import PRIOR, track
from wearjax.tasks.virtual import Q_FACTORS


def fused_track(hr, var, gait, var_gait, ok, q):
    """Filtered HR `[W]` from two measurements per window, `hr` (variance `var [W]`) and
    `gait` (variance `var_gait [W]`), under a random walk of variance `q` per hop."""
    dtype = hr.dtype
    r = jnp.zeros((hr.shape[0], 2, 2), dtype).at[:, 0, 0].set(var).at[:, 1, 1].set(var_gait)
    params = LinearGaussianParams(
        m0=jnp.full((1,), PRIOR[0], dtype), P0=jnp.full((1, 1), PRIOR[1] ** 2, dtype),
        F=jnp.ones((1, 1), dtype), Q=(jnp.zeros((), dtype) + q).reshape(1, 1),
        H=jnp.ones((2, 1), dtype), R=r,
    )  # fmt: skip
    return kalman_filter(params, jnp.stack([hr, gait], -1), ok).filtered_means[:, 0]


MISSING = 1e4  # bpm^2: the gait's variance where it gave no estimate (the model's used there)


def _per_fold_q(f, fold_axes):
    """`f(..., q)` over sessions, then a q grid, then folds (`fold_axes`: which arguments carry
    a fold axis; the q grid always does), jitted."""
    over_sessions = jax.vmap(f, in_axes=(0,) * (len(fold_axes) - 1) + (None,))
    over_q = jax.vmap(over_sessions, in_axes=(None,) * (len(fold_axes) - 1) + (0,))
    return jax.jit(jax.vmap(over_q, in_axes=fold_axes))


_FUSED = _per_fold_q(fused_track, (None, None, None, 0, None, 0))
_SINGLE = _per_fold_q(lambda hr, var, ok, q: track(hr, var, ok, q)[0], (None, None, None, 0))


def _maes(pred, true, tested, owner, n_folds):
    """Pooled MAE and per-fold MAEs `[K]` over the tested windows."""
    err = np.where(tested, np.abs(pred - true), 0.0)
    member = (owner[None] == np.arange(n_folds)[:, None]).astype(float)  # [K, S]
    folds = (member @ err.sum(1)) / (member @ tested.sum(1))
    return err.sum() / tested.sum(), folds


def acc_labels(saved: dict) -> np.ndarray:
    """`[S, W]`: the windows an ACC setting is scored on (a reference HR, no ACC gap); a study
    saved before 2026-12-07 has only `ok`, which then meant the same."""
    return saved["acc_labels"] if "acc_labels" in saved else saved["ok"]


def fuse(saved: dict, setting: str) -> dict:
    """Tracked estimates `[S, W]` of `setting` with the gait measurement (`fused`) and without
    it (`control`), each with its own per-fold q, and the gait variance per fold (module
    docstring)."""
    true, ok, valid = saved["hr"], acc_labels(saved), saved["valid"]
    owner = saved["test_fold"]
    n_folds = int(owner.max()) + 1
    tested = ok & (owner >= 0)[:, None]
    seen = np.isfinite(saved["acc_gait/hr"])
    other = (owner[None] != np.arange(n_folds)[:, None]) & (owner >= 0)[None]  # [K, S]
    sq = np.where(tested & seen, np.square(np.nan_to_num(saved["acc_gait/hr"]) - true), 0.0)
    var_gait = (other @ sq.sum(1)) / (other @ (tested & seen).sum(1))  # [K]
    known = saved["ok"] & (owner >= 0)[:, None]  # every reference step, as `make_folds`
    steps = np.where(known[:, 1:] & known[:, :-1], np.square(np.diff(true, axis=1)), 0.0)
    both = (known[:, 1:] & known[:, :-1]).sum(1)
    q0 = np.maximum((other @ steps.sum(1)) / (other @ both), 0.25)  # [K], as `make_folds`
    grid = q0[:, None] * np.asarray(Q_FACTORS)[None]  # [K, Q]
    hr = np.nan_to_num(saved[f"{setting}/hr"])
    var = np.where(valid, saved[f"{setting}/var"], 1.0)
    gait = np.where(seen, saved["acc_gait/hr"], hr)
    var_w = np.where(seen[None], var_gait[:, None, None], MISSING)  # [K, S, W]
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    ok = jnp.asarray(valid)
    fused = _FUSED(f32(hr), f32(var), f32(gait), f32(var_w), ok, f32(grid))  # [K, Q, S, W]
    control = _SINGLE(f32(hr), f32(var), ok, f32(grid))
    return {
        "fused": _choose(np.asarray(fused), true, tested, other, owner),
        "control": _choose(np.asarray(control), true, tested, other, owner),
        "var_gait": var_gait,
    }


def stack(saved: dict, setting: str) -> np.ndarray:
    """`[S, W]`: per fold, a linear regression of the true HR on the model's estimate and the
    gait ridge's (`eval.ridge.fold_ridge`, its penalty chosen by leave-one-subject-out), fitted
    on the other folds' tested windows where both gave an estimate and applied to the fold's
    own sessions (the model's estimate alone where the gait gave none)."""
    true, owner = saved["hr"], saved["test_fold"]
    n_folds = int(owner.max()) + 1
    model, gait = np.nan_to_num(saved[f"{setting}/hr"]), saved["acc_gait/hr"]
    seen = np.isfinite(gait)
    tested = acc_labels(saved) & (owner >= 0)[:, None] & seen
    other = (owner[None] != np.arange(n_folds)[:, None]) & (owner >= 0)[None]  # [K, S]
    x = np.stack([model, np.nan_to_num(gait)], -1)  # [S, W, 2]
    fitted = fold_ridge(x, true, tested, other, saved["subject"])
    own = fitted.pred[np.maximum(owner, 0), np.arange(len(owner))]
    return np.where(seen, own, model)


def _choose(tracked, true, tested, other, owner):
    """Per fold, the q (of `tracked [K, Q, S, W]`) with the lowest MAE on the other folds'
    sessions; each session's track under its own fold's choice `[S, W]`."""
    err = np.abs(tracked - true[None, None])  # [K, Q, S, W]
    mask = (other[:, None, :, None] & tested[None, None]).astype(float)
    choice = np.argmin((err * mask).sum((2, 3)) / mask.sum((2, 3)), axis=1)  # [K]
    own = np.maximum(owner, 0)
    return tracked[own, choice[own], np.arange(len(owner))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="a study's output folder")
    args = parser.parse_args(argv)
    path = args.study / "predictions.npz"
    if not path.is_file():
        print(f"virtual_gait_tracker: {path} not found; run the study first", file=sys.stderr)
        return 2
    saved = dict(np.load(path))
    if "acc_gait/hr" not in saved:
        print(f"virtual_gait_tracker: {path} has no acc_gait estimate", file=sys.stderr)
        return 2
    owner, true = saved["test_fold"], saved["hr"]
    n_folds = int(owner.max()) + 1
    tested = acc_labels(saved) & (owner >= 0)[:, None]
    rows = ["| estimate | MAE (bpm) | MAE over folds |", "|---|---:|---:|"]
    notes = []

    def row(name, pred):
        pooled, folds = _maes(pred, true, tested, owner, n_folds)
        rows.append(f"| {name} | {pooled:.2f} | {folds.mean():.2f} +- {folds.std(ddof=1):.2f} |")

    row("acc_gait (ridge on cadence and its lags)", np.nan_to_num(saved["acc_gait/hr"]))
    settings = sorted(k.split("/")[0] for k in saved if k.endswith("/tracked"))
    for setting in settings:
        if setting in ("ppg_only", "fusion"):
            continue
        out = fuse(saved, setting)
        row(f"{setting}", saved[f"{setting}/hr"])
        row(f"{setting} + Kalman", saved[f"{setting}/tracked"])
        row(f"{setting} + Kalman, q as above", out["control"])
        row(f"{setting} + gait + Kalman", out["fused"])
        row(f"{setting} + gait, stacked", stack(saved, setting))
        var = np.round(out["var_gait"], 1).tolist()
        print(f"{setting}: gait variance per fold {var} bpm^2", file=sys.stderr)
        err, own = saved[f"{setting}/hr"] - true, saved[f"{setting}/var"]
        mse = np.mean(np.square(err[tested]))
        notes.append(f"{setting}: predicted variance {own[tested].mean():.0f} bpm^2 on average "
                     f"against a mean squared error of {mse:.0f}")  # fmt: skip
    table = "\n".join(rows) + "\n\n" + "\n".join(notes)
    (args.study / "gait_tracker.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
