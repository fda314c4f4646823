"""Protocols and the hold baseline against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.eval.protocols import given_mask, hold_baseline, standard_initial

W = 3
HR = jnp.asarray([100.0, 101, 102, 110, 111, 112, 120, 121, 122, 130, 131, 132])


def test_standard_initial_carries_the_last_observed_window_start():
    mask = jnp.asarray([1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1], bool)
    np.testing.assert_array_equal(standard_initial(HR, mask, W), [100.0, 100.0, 120.0, 120.0])
    # a session whose first second is missing starts from its first observed HR
    late = mask.at[0].set(False)
    np.testing.assert_array_equal(standard_initial(HR, late, W), [101.0, 101.0, 120.0, 120.0])
    # a last partial window (11 seconds in windows of 3) counts as a window: it raised a
    # reshape TypeError
    np.testing.assert_array_equal(standard_initial(HR[:11], mask[:11], W), [100, 100, 120, 120])
    np.testing.assert_array_equal(hold_baseline(HR[:10], mask[:10], W, "standard")[-1], 120)


def test_given_masks_and_hold_baseline():
    mask = jnp.asarray([0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    # window 0 starts in a dropout: it begins from second 1, which is given, not scored
    np.testing.assert_array_equal(
        given_mask(mask, W, "standard"), [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    )
    held = hold_baseline(HR, mask, W, "standard")
    scored = np.asarray(mask & ~given_mask(mask, W, "standard"))
    assert held[1] == HR[1] and not scored[1]  # the hold baseline is never scored on its given HR
    np.testing.assert_array_equal(  # the HR training loss's form: window starts alone
        given_mask(mask, W, "standard", first_given=False), [0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    )
    np.testing.assert_array_equal(
        given_mask(mask, W, "generative"), [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        hold_baseline(HR, mask, W, "standard"),
        [101.0] * 3 + [110.0] * 3 + [120.0] * 3 + [130.0] * 3,
    )
    np.testing.assert_array_equal(hold_baseline(HR, mask, W, "generative"), [101.0] * 12)
    with pytest.raises(ValueError, match="unknown protocol"):
        given_mask(mask, W, "teacher")
