"""The README example, run as written: learn the noise of a heart-rate Kalman filter.

```python
import jax
import jax.numpy as jnp
import numpy as np
import optax
from wearjax.filters import LinearGaussianParams, kalman_filter

# State (HR, HR velocity): HR_{t+1} = HR_t + v_t, v_{t+1} = rho v_t; the watch measures HR.
rho, true_q, true_r = 0.9, np.array([0.5, 0.05]), 1.0
F, H = np.array([[1.0, 1.0], [0.0, rho]]), np.array([[1.0, 0.0]])

# Simulate 16 one-hour sessions at 1 Hz, 5 dropout gaps each (NaN where mask is False).
rng, n, T = np.random.default_rng(0), 16, 3600
x, hr, mask = np.tile([120.0, 0.0], (n, 1)), np.empty((n, T)), np.ones((n, T), bool)
for t in range(T):
    hr[:, t] = x[:, 0] + rng.normal(0.0, np.sqrt(true_r), n)
    x = x @ F.T + rng.normal(0.0, np.sqrt(true_q), (n, 2))
for i, start in zip(np.repeat(np.arange(n), 5), rng.integers(0, T - 120, 5 * n), strict=True):
    mask[i, start : start + rng.integers(10, 120)] = False
hr[~mask] = np.nan

def params(theta):  # log-parameterised noise: Q = diag(q), R = r
    return LinearGaussianParams(
        m0=jnp.array([120.0, 0.0]), P0=jnp.diag(jnp.array([25.0, 1.0])), F=F, H=H,
        Q=jnp.diag(jnp.exp(theta["log_q"])), R=jnp.exp(theta["log_r"]).reshape(1, 1))

def loss(theta):  # negative log-likelihood per second, averaged over sessions
    result = jax.vmap(kalman_filter, in_axes=(None, 0, 0))(params(theta), hr[..., None], mask)
    return -jnp.mean(result.log_likelihood) / T

theta, optimizer = {"log_q": jnp.zeros(2), "log_r": jnp.zeros(())}, optax.adam(0.1)
opt_state = optimizer.init(theta)

@jax.jit
def step(theta, opt_state):
    updates, opt_state = optimizer.update(jax.grad(loss)(theta), opt_state)
    return optax.apply_updates(theta, updates), opt_state

for _ in range(150):
    theta, opt_state = step(theta, opt_state)
print("Q =", np.exp(theta["log_q"]), "R =", np.exp(theta["log_r"]))  # ~ true_q, true_r
```
"""

import re

import jax
import numpy as np


def test_readme_example_recovers_the_noise_variances(capsys):
    code = re.search(r"```python\n(.*?)```", __doc__, re.DOTALL).group(1)
    namespace: dict = {}
    # As a user runs it: optax's adam (0.2.8) computes `b1**count` with an int32 count, which the
    # strict promotion of conftest rejects; wearjax's own code is checked strict elsewhere.
    with jax.numpy_dtype_promotion("standard"):
        exec(compile(code, "README example", "exec"), namespace)
    theta = namespace["theta"]
    np.testing.assert_allclose(np.exp(theta["log_q"]), namespace["true_q"], rtol=0.1)
    np.testing.assert_allclose(np.exp(theta["log_r"]), namespace["true_r"], rtol=0.1)
    assert "Q = " in capsys.readouterr().out
