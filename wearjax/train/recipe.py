"""How to learn: a `Recipe` (the optimiser, its schedules, early stopping and the epoch
count the one training loop, `train.loop`, runs) and `TrainConfig`, the settings of the
default recipe."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import optax
from jaxtyping import Array

from wearjax.train.schedules import plateau


class Recipe(NamedTuple):
    """How to learn it.

    `optimizer` gives the update direction without the step size (e.g. clip, weight decay,
    Adam moments); the step applies `-learning_rate(epoch) * plateau_scale` to it.
    `learning_rate` is a float or an optax schedule of the epoch index; `clip_norm`, if set, an
    optax schedule of the epoch clipping the gradient's global norm before the optimiser;
    `plateau` an `optax.contrib.reduce_on_plateau` fed the validation loss once per epoch.
    """

    optimizer: optax.GradientTransformation
    learning_rate: float | Callable[[Array], Array] = 1e-3
    clip_norm: Callable[[Array], Array] | None = None
    plateau: optax.GradientTransformationExtraArgs | None = None
    early_stopping_patience: int = 20
    epochs: int = 100
    steps_per_epoch: int = 50


class TrainConfig(NamedTuple):
    """Settings of the default recipe (the Lab-to-Wrist HR Kalman one): clipped, L2-decayed
    Adam with reduce-on-plateau (torch's `ReduceLROnPlateau` semantics) and early stopping."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-5  # L2 added to the gradient before Adam, as torch.optim.Adam
    clip_norm: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    plateau_cooldown: int = 0
    plateau_threshold: float = 1e-4  # relative improvement that resets the plateau counter
    min_learning_rate: float = 0.0
    early_stopping_patience: int = 20
    epochs: int = 100
    steps_per_epoch: int = 50

    def recipe(self) -> Recipe:
        return Recipe(
            optimizer=optax.chain(
                optax.clip_by_global_norm(self.clip_norm),
                optax.add_decayed_weights(self.weight_decay),
                optax.scale_by_adam(),
            ),
            learning_rate=self.learning_rate,
            plateau=plateau(
                self.plateau_factor,
                self.plateau_patience,
                cooldown=self.plateau_cooldown,
                threshold=self.plateau_threshold,
                min_scale=self.min_learning_rate / self.learning_rate,
            ),
            early_stopping_patience=self.early_stopping_patience,
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
        )
