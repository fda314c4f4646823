"""Virtual sensing: the gait's HR estimate as a second measurement in the HR tracker.

Reads a virtual-sensing study's `predictions.npz` (`experiments/virtual_sensing.py`, `wearjax
cv virtual`), so nothing is retrained. For each learned ACC setting, a random-walk Kalman
filter over HR (`wearjax.filters.kalman_filter`, as `models.virtual.track`) observes two
measurements per window: the model's estimate with its own predicted variance, and the
gait ridge's (`acc_gait`: the cadence and its lags) with a variance per fold, the mean squared
error of the gait ridge on the sessions the *other* folds test. The transition variance is
chosen per fold the same way, among `q0 x Q_FACTORS` (`q0`: the mean squared HR step between
windows of the other folds' sessions), by the lowest tracked MAE on the other folds' sessions.
No fold's own subjects choose anything it is scored with.

    python experiments/virtual_gait_tracker.py --study experiments/results/virtual_sensing_ctx128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.filters.linear import LinearGaussianParams, kalman_filter
from wearjax.models.virtual import PRIOR
from wearjax.tasks.virtual import Q_FACTORS


def fused_track(hr, var, gait, var_gait, ok, q):
    """Filtered HR `[W]` from two measurements per window, `hr` (variance `var [W]`) and
    `gait` (variance `var_gait`), under a random walk of variance `q` per hop."""
    dtype = hr.dtype
    r = jnp.zeros((hr.shape[0], 2, 2), dtype).at[:, 0, 0].set(var).at[:, 1, 1].set(var_gait)
    params = LinearGaussianParams(
        m0=jnp.full((1,), PRIOR[0], dtype), P0=jnp.full((1, 1), PRIOR[1] ** 2, dtype),
        F=jnp.ones((1, 1), dtype), Q=(jnp.zeros((), dtype) + q).reshape(1, 1),
        H=jnp.ones((2, 1), dtype), R=r,
    )  # fmt: skip
    return kalman_filter(params, jnp.stack([hr, gait], -1), ok).filtered_means[:, 0]


def _maes(pred, true, tested, owner, n_folds):
    """Pooled MAE and per-fold MAEs `[K]` over the tested windows."""
    err = np.where(tested, np.abs(pred - true), 0.0)
    member = (owner[None] == np.arange(n_folds)[:, None]).astype(float)  # [K, S]
    folds = (member @ err.sum(1)) / (member @ tested.sum(1))
    return err.sum() / tested.sum(), folds


def fuse(saved: dict, setting: str) -> dict:
    """Tracked estimates `[S, W]` of `setting` with and without the gait measurement, and the
    per-fold variance and transition variance chosen (module docstring)."""
    true, ok, valid = saved["hr"], saved["ok"], saved["valid"]
    owner = saved["test_fold"]
    n_folds = int(owner.max()) + 1
    tested = ok & (owner >= 0)[:, None]
    gait = np.nan_to_num(saved["acc_gait/hr"])
    other = (owner[None] != np.arange(n_folds)[:, None]) & (owner >= 0)[None]  # [K, S]
    sq = np.where(tested, np.square(gait - true), 0.0)
    var_gait = (other @ sq.sum(1)) / (other @ tested.sum(1))  # [K]
    steps = np.where(tested[:, 1:] & tested[:, :-1], np.square(np.diff(true, axis=1)), 0.0)
    both = (tested[:, 1:] & tested[:, :-1]).sum(1)
    q0 = (other @ steps.sum(1)) / (other @ both)  # [K]
    grid = q0[:, None] * np.asarray(Q_FACTORS)[None]  # [K, Q]
    hr, var = saved[f"{setting}/hr"], saved[f"{setting}/var"]
    run = jax.jit(
        jax.vmap(  # folds' variances and q grid
            jax.vmap(  # q
                jax.vmap(fused_track, in_axes=(0, 0, 0, None, 0, None)),  # sessions
                in_axes=(None, None, None, None, None, 0),
            ),
            in_axes=(None, None, None, 0, None, 0),
        )
    )
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    args = (np.nan_to_num(hr), np.where(valid, var, 1e4), gait, var_gait)
    tracked = np.asarray(run(*map(f32, args), jnp.asarray(valid), f32(grid)))  # [K, Q, S, W]
    err = np.abs(tracked - true[None, None])  # [K, Q, S, W]
    mask = (other[:, None, :, None] & tested[None, None]).astype(float)
    choice = np.argmin((err * mask).sum((2, 3)) / mask.sum((2, 3)), axis=1)  # [K]
    own = np.maximum(owner, 0)
    fused = tracked[own, choice[own], np.arange(len(owner))]  # [S, W]
    return {"fused": fused, "var_gait": var_gait, "q": grid[np.arange(n_folds), choice]}


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
    tested = saved["ok"] & (owner >= 0)[:, None]
    rows = ["| estimate | MAE (bpm) | MAE over folds |", "|---|---:|---:|"]

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
        row(f"{setting} + gait + Kalman", out["fused"])
        print(f"{setting}: gait variance per fold {np.round(out['var_gait'], 1).tolist()} bpm^2, "
              f"q per fold {np.round(out['q'], 2).tolist()}", file=sys.stderr)  # fmt: skip
    table = "\n".join(rows)
    (args.study / "gait_tracker.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
