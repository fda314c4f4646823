"""Per-epoch schedules of the Lab-to-Wrist VO2 recipe (appendix B.5), as functions of the epoch.

Each takes the epoch index `e` (an int32 scalar array from 0, or a Python int) and returns a
scalar, so it plugs into a `train.loop.Recipe` and runs inside the jitted epoch:

- `sgdr`: SGDR (Loshchilov & Hutter 2017, eq. 5), as
  `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` stepped once per epoch:
  `lr = min + (max - min) (1 + cos(pi T_cur / T_i)) / 2`, restart periods `T_i = T0 Tmult^i`;
- `decaying_clip_norm`: gradient-clip norm `1 + 4 exp(-e / 10)`;
- `curriculum_weights`: `lambda_base = max(0.3, 1 - e/20)`, `lambda_dyn = 1 - lambda_base`,
  `lambda_aux = min(0.3, 0.1 + 0.01 e)`.

`plateau` is the learning-rate drop on a validation plateau (torch's `ReduceLROnPlateau`)
that the default HR recipe (`train.loop.TrainConfig`) uses.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int


def _epoch(e: Int[Array, ""] | int) -> Float[Array, ""]:
    return jnp.asarray(e).astype(jnp.result_type(float))


def sgdr(max_lr: float, min_lr: float, t0: int, t_mult: int, epochs: int):
    """Cosine annealing with warm restarts of the epoch (module docstring): optax cosine
    decays joined at the restarts (`optax.join_schedules`), enough cycles to cover `epochs`."""
    if t0 < 1 or t_mult < 1:
        raise ValueError(f"need t0 >= 1 and t_mult >= 1, got t0={t0}, t_mult={t_mult}")
    cycles, boundaries, total, period = [], [], 0, t0
    while total < max(epochs, 1):
        cycles.append(optax.cosine_decay_schedule(max_lr, period, alpha=min_lr / max_lr))
        total, period = total + period, period * t_mult
        boundaries.append(total)
    schedule = optax.join_schedules(cycles, boundaries[:-1])

    def rate(e):
        with jax.numpy_dtype_promotion("standard"):  # optax mixes the int count with floats
            return jnp.asarray(schedule(e), jnp.result_type(float))

    return rate


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


def plateau(
    factor: float,
    patience: int,
    *,
    cooldown: int = 0,
    threshold: float = 1e-4,
    min_scale: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """`optax.contrib.reduce_on_plateau` with torch's patience: the scale drops after
    `patience` epochs without relative improvement `threshold`, i.e. on the next bad one."""
    return optax.contrib.reduce_on_plateau(
        factor=factor,
        patience=patience + 1,
        rtol=threshold,
        atol=0.0,
        cooldown=cooldown,
        accumulation_size=1,
        min_scale=min_scale,
    )
