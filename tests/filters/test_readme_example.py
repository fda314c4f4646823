"""The README example under "Filters you can import", read from README.md and run as
written: learn the noise of a heart-rate Kalman filter."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    section = README.read_text().split("### Filters you can import", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_readme_example_recovers_the_noise_variances(capsys):
    code = readme_block()
    assert "kalman_filter" in code and "optax" in code
    namespace: dict = {}
    # As a user runs it: optax's adam (0.2.8) computes `b1**count` with an int32 count, which the
    # strict promotion of conftest rejects; wearjax's own code is checked strict elsewhere.
    with jax.numpy_dtype_promotion("standard"):
        exec(compile(code, "README example", "exec"), namespace)
    theta = namespace["theta"]
    np.testing.assert_allclose(np.exp(theta["log_q"]), namespace["true_q"], rtol=0.1)
    np.testing.assert_allclose(np.exp(theta["log_r"]), namespace["true_r"], rtol=0.1)
    assert "Q = " in capsys.readouterr().out
