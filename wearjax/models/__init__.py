"""Model families, one file each, and a registry of kinds.

Every model is an `eqx.Module`. HR models meet `AbstractHRModel` (`window`, `__call__` =
standard protocol, `rollout` = generative, `predict_protocols`); `PersonalHRODE` holds the
population networks and per-runner embeddings and gives one runner's `AbstractHRModel` with
`for_runner(e)`. `REGISTRY` maps a kind to its constructor: a checkpoint stores the kind and
the keyword arguments it was built with, and `build(kind, **init_args)` rebuilds it.
"""

from collections.abc import Callable
from typing import NamedTuple

from wearjax.models.hr_base import AbstractHRModel, HRPrediction
from wearjax.models.hr_kalman import HRKalman
from wearjax.models.hr_ode import HRODE
from wearjax.models.hr_personalized import PersonalHRODE, PersonalRunner
from wearjax.models.ode import solve
from wearjax.models.virtual import VirtualSensing
from wearjax.models.vo2 import VARIANTS as VO2_VARIANTS
from wearjax.models.vo2 import VO2Kalman, VO2Prediction, build_vo2_model


class ModelSpec(NamedTuple):
    """A registered kind: its constructor (keyword arguments plus `key`) and its family."""

    build: Callable
    family: str


REGISTRY: dict[str, ModelSpec] = {
    "hr_kalman": ModelSpec(HRKalman, "hr"),
    "hr_ode": ModelSpec(HRODE, "hr"),
    "hr_personal_ode": ModelSpec(PersonalHRODE, "hr"),
    "vo2_kalman": ModelSpec(VO2Kalman, "vo2"),
    "virtual_sensing": ModelSpec(VirtualSensing, "virtual"),
}


def build(kind: str, *, key, **init_args):
    """The model of registered `kind` built with `init_args` (see `REGISTRY`)."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}: choose one of {sorted(REGISTRY)}")
    return REGISTRY[kind].build(**init_args, key=key)


__all__ = [
    "REGISTRY",
    "HRODE",
    "VO2_VARIANTS",
    "AbstractHRModel",
    "HRKalman",
    "HRPrediction",
    "ModelSpec",
    "PersonalHRODE",
    "PersonalRunner",
    "VO2Kalman",
    "VO2Prediction",
    "VirtualSensing",
    "build",
    "build_vo2_model",
    "solve",
]
