"""Test-wide JAX settings: strict dtype and rank promotion, as the anchors do."""

import contextlib
import os
import re

import chex
import jax
import pytest
from jaxtyping import TypeCheckError

from wearjax.errors import WearjaxDataError

# the CLI's persistent compilation cache stays off in tests (no files in the user's home)
os.environ.setdefault("WEARJAX_CACHE", "off")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run one test in float64 and restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def tree_allclose(a, b, *, rtol=1e-5, atol=1e-8):
    """True when two pytrees have the same structure and allclose leaves (chex's check)."""
    try:
        chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)
    except AssertionError:
        return False
    return True


@contextlib.contextmanager
def raises_naming(argument, message):
    """Our `WearjaxDataError` with `message`, or, when the tests run with jaxtyping's runtime
    checks on, jaxtyping's error about `argument`, which it raises before our checks run."""
    with pytest.raises((WearjaxDataError, TypeCheckError)) as info:
        yield
    if info.type is WearjaxDataError:
        assert re.search(message, str(info.value)), str(info.value)
    else:
        assert argument in str(info.value), str(info.value)
