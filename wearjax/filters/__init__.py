"""Differentiable state-space filters usable on their own.

Exact linear-Gaussian filtering and smoothing (`LinearGaussianParams`):

- `kalman_filter`, `kalman_smoother`: serial `lax.scan` Kalman filter and RTS smoother.
- `parallel_kalman_filter`, `parallel_kalman_smoother`: the same results in O(log T) depth with
  `lax.associative_scan` (Sarkka & Garcia-Fernandez 2021).

The learned-gain filter of the HR and VO2 models (`learned_gain_step`, `learned_gain_filter`)
takes any transition and gain callables, so it drops into a user's own Equinox model.

All linear-Gaussian functions take `ys [T, M]` and an optional `mask [T]` (False = sensor
dropout: the update is skipped) and return the filtered/smoothed means and covariances and
the log-likelihood; they compose with `jit`, `grad` and `vmap`, and called eagerly each runs
as one compiled program per shape (the checks of the inputs first). Time convention:
`x_0 ~ N(m0, P0)` is the state at the first observation, `y_t = H_t x_t + r_t`,
`x_{t+1} = F_t x_t + b_t + q_t` (see `filters.linear`). On CPU, compile the program that runs
them with `jax.jit(..., compiler_options=compiler_options())` (`filters.compiling`: the
parallel scans, and the serial ones vmapped over series with their own masks, up to 5.5x
faster).
"""

from wearjax.filters.compiling import compiler_options
from wearjax.filters.learned_gain import (
    LearnedGainState,
    LearnedGainStep,
    learned_gain_filter,
    learned_gain_step,
    measurement_update,
)
from wearjax.filters.linear import (
    FilterResult,
    LinearGaussianParams,
    SmootherResult,
    kalman_filter,
    kalman_smoother,
)
from wearjax.filters.parallel import parallel_kalman_filter, parallel_kalman_smoother

__all__ = [
    "FilterResult",
    "LearnedGainState",
    "LearnedGainStep",
    "learned_gain_filter",
    "learned_gain_step",
    "measurement_update",
    "LinearGaussianParams",
    "SmootherResult",
    "compiler_options",
    "kalman_filter",
    "kalman_smoother",
    "parallel_kalman_filter",
    "parallel_kalman_smoother",
]
