"""The masks of masked pretraining (`tasks.pretrain`): which patches of a channel's
`rows x cols` grid (scale rows x time columns) are hidden, and a check of `mask_ratio` against
a grid before anything is built."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MASKINGS = ("random", "time", "scale", "mixed", "inpaint")


def _counts(rows: int, cols: int, kind: str) -> dict[str, int]:
    """What each mask `kind` hides a share of: patches, time columns or scale rows."""
    counts = {"random": rows * cols, "time": cols, "inpaint": cols, "scale": rows}
    if kind == "mixed":
        return {k: counts[k] for k in ("random", "time", "scale")}
    if kind not in counts:
        raise ValueError(f"unknown masking {kind!r}: choose one of {MASKINGS}")
    return {kind: counts[kind]}


def check_mask_ratio(ratio: float, rows: int, cols: int, kind: str) -> None:
    """`ValueError` unless `ratio` hides at least one and leaves at least one of what `kind`
    hides a share of (nothing to learn from, or nothing left to see), naming the range that
    does on this grid."""
    for what, n in _counts(rows, cols, kind).items():
        if not (math.isfinite(ratio) and 0 < round(ratio * n) < n):
            unit = {"random": "patches", "scale": "scale rows"}.get(what, "time columns")
            lo, hi = 0.5 / n, 1 - 0.5 / n
            hides = round(ratio * n) if math.isfinite(ratio) else "none"
            raise ValueError(
                f"mask_ratio={ratio} hides {hides} of {n} {unit} ({kind} masking on a "
                f"{rows} x {cols} grid): give one above {lo:.3g} and below {hi:.3g}"
            )


def patch_mask(key, rows: int, cols: int, ratio: float, kind: str) -> jax.Array:
    """`[rows * cols]` bool, True where a patch is hidden (`tasks.pretrain`'s docstring):
    exactly `round(ratio n)` of the `n` patches, time columns or scale rows `kind` hides,
    drawn uniformly (for `mixed`, the kind too); only the masks `kind` can use are drawn."""
    check_mask_ratio(ratio, rows, cols, kind)

    def exact(k, n):
        ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k, (n,))))
        return ranks < round(ratio * n)

    k_kind, k_r, k_t, k_s = jax.random.split(key, 4)
    make = {
        "random": lambda: exact(k_r, rows * cols),
        "time": lambda: jnp.broadcast_to(exact(k_t, cols)[None, :], (rows, cols)).reshape(-1),
        "scale": lambda: jnp.broadcast_to(exact(k_s, rows)[:, None], (rows, cols)).reshape(-1),
    }
    if kind == "mixed":
        masks = jnp.stack([make[k]() for k in ("random", "time", "scale")])
        return masks[jax.random.randint(k_kind, (), 0, 3)]
    return make["time" if kind == "inpaint" else kind]()  # inpaint: whole time columns
