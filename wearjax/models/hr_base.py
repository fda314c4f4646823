"""The contract every heart-rate model meets, and its prediction type.

An HR model reads per-second inputs `x [T, F]` (features, or activity inputs) and predicts HR
under the two Lab-to-Wrist protocols (section 4): *standard*, where each `window`-second
window starts from its measured first second, and *generative* (`rollout`), where only the
session's first second is known. Subclasses implement the three abstract methods; `__call__`,
`rollout` and `predict_protocols` are written here once, so both protocols of a training step
share one pass over the inputs (`encode` does not depend on HR).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray


class HRPrediction(NamedTuple):
    """HR prediction of one session: `hr [T]` and its variance `var [T]` (bpm, bpm^2; zero
    for deterministic models), and per window `mu [N]`, `sigma [N]` (bpm)."""

    hr: Float[Array, " time"]
    var: Float[Array, " time"]
    mu: Float[Array, " window"]
    sigma: Float[Array, " window"]


class AbstractHRModel(eqx.Module):
    """An HR model: `window` seconds per protocol window; `encode`, `standard`, `generative`."""

    window: eqx.AbstractVar[int]

    @abc.abstractmethod
    def encode(self, x: Float[Array, "time feature"], *, key: PRNGKeyArray | None = None) -> Any:
        """Everything that does not depend on HR, for the whole session (e.g. the GRU pass);
        `key` drives dropout in training (None: inference)."""

    @abc.abstractmethod
    def standard(self, encoded: Any, hr_init: Float[Array, " window"]) -> HRPrediction:
        """Standard protocol from `encode`'s output and each window's first HR (bpm)."""

    @abc.abstractmethod
    def generative(self, encoded: Any, hr0: Float[Array, ""]) -> HRPrediction:
        """Generative protocol from `encode`'s output and the session's first HR (bpm)."""

    def __call__(
        self,
        x: Float[Array, "time feature"],
        hr_init: Float[Array, " window"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> HRPrediction:
        """Standard protocol: each window starts from its first HR `hr_init` (bpm), given by
        `eval.protocols.standard_initial`."""
        return self.standard(self.encode(x, key=key), hr_init)

    def rollout(self, x: Float[Array, "time feature"], hr0: Float[Array, ""]) -> HRPrediction:
        """Generative protocol: only `hr0`, the session's first second (bpm), is known."""
        return self.generative(self.encode(x), hr0)

    def predict_protocols(
        self,
        x: Float[Array, "time feature"],
        hr_init: Float[Array, " window"],
        hr0: Float[Array, ""],
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[HRPrediction, HRPrediction]:
        """Standard and generative predictions from one `encode` (used in training)."""
        encoded = self.encode(x, key=key)
        return self.standard(encoded, hr_init), self.generative(encoded, hr0)


def check_window(length: int, window: int) -> None:
    """Sessions are whole windows: the cohort is padded to a bucket that is a multiple."""
    if length % window:
        raise ValueError(
            f"session length {length} s is not a multiple of the {window} s window; "
            "pad the cohort to a length bucket that is"
        )
