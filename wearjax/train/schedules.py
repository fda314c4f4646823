"""Per-epoch schedules of the Lab-to-Wrist VO2 recipe (appendix B.5), as functions of the epoch.

Each takes the epoch index `e` (an int32 scalar array from 0, or a Python int) and returns a
scalar, so it plugs into `train.fit.EpochHooks` and runs inside the jitted epoch:

- `cosine_warm_restarts`: SGDR (Loshchilov & Hutter 2017, eq. 5), as
  `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` stepped once per epoch:
  `lr = min + (max - min) (1 + cos(pi T_cur / T_i)) / 2`, restart periods `T_i = T0 Tmult^i`;
- `decaying_clip_norm`: gradient-clip norm `1 + 4 exp(-e / 10)`;
- `curriculum_weights`: `lambda_base = max(0.3, 1 - e/20)`, `lambda_dyn = 1 - lambda_base`,
  `lambda_aux = min(0.3, 0.1 + 0.01 e)`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def _epoch(e: Int[Array, ""] | int) -> Float[Array, ""]:
    return jnp.asarray(e).astype(jnp.result_type(float))


def cosine_warm_restarts(
    e: Int[Array, ""] | int,
    *,
    max_lr: float = 4e-3,
    min_lr: float = 1e-6,
    t0: int = 10,
    t_mult: int = 2,
) -> Float[Array, ""]:
    """Learning rate of epoch `e` under cosine annealing with warm restarts (module docstring)."""
    if t0 < 1 or t_mult < 1:
        raise ValueError(f"need t0 >= 1 and t_mult >= 1, got t0={t0}, t_mult={t_mult}")
    ef = _epoch(e)
    if t_mult == 1:
        cycle = jnp.floor(ef / t0)
        start, period = cycle * t0, jnp.full_like(ef, float(t0))
    else:
        # cycles start at t0 (t_mult^i - 1) / (t_mult - 1); the +0.5 guards the log's rounding
        cycle = jnp.floor(jnp.log((ef + 0.5) * (t_mult - 1) / t0 + 1) / jnp.log(float(t_mult)))
        start = t0 * (t_mult**cycle - 1) / (t_mult - 1)
        period = t0 * t_mult**cycle
    t_cur = ef - start
    return min_lr + (max_lr - min_lr) * (1 + jnp.cos(jnp.pi * t_cur / period)) / 2


def decaying_clip_norm(e: Int[Array, ""] | int) -> Float[Array, ""]:
    """Gradient-clip norm of epoch `e`: `1 + 4 exp(-e / 10)` (5 at the start, 1 eventually)."""
    return 1.0 + 4.0 * jnp.exp(-_epoch(e) / 10.0)


class CurriculumWeights(NamedTuple):
    base: Float[Array, ""]  # weight of the MAE
    dynamics: Float[Array, ""]  # weight of the first/second-difference terms
    aux: Float[Array, ""]  # weight of the window-statistics terms


def curriculum_weights(e: Int[Array, ""] | int) -> CurriculumWeights:
    """Loss weights of epoch `e` (module docstring): level first, then dynamics."""
    ef = _epoch(e)
    base = jnp.maximum(0.3, 1.0 - ef / 20.0)
    return CurriculumWeights(base, 1.0 - base, jnp.minimum(0.3, 0.1 + 0.01 * ef))
