"""Test-wide JAX settings: strict dtype and rank promotion, as the anchors do."""

import contextlib
import os
import re
from pathlib import Path

import chex
import jax
import jaxtyping
import pytest
from jax.experimental.compilation_cache import compilation_cache
from jaxtyping import TypeCheckError

from wearjax.errors import WearjaxDataError

# the CLI's persistent compilation cache stays off in tests (no files in the user's home)
os.environ.setdefault("WEARJAX_CACHE", "off")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# JAX's persistent compilation cache, shared by every test process of this checkout (the two
# pytest-xdist workers, then the slow suite): most of the suite's time is XLA compiling, and the
# same programs (an initialiser's random draws, a model's step at one shape) recur across
# processes. Small programs are kept too: they are the ones that recur. `WEARJAX_TEST_XLA_CACHE`
# moves it, `off` disables it. It is not pruned (about 90 MB after both suites): JAX's size cap
# (`jax_compilation_cache_max_size`) needs the `filelock` package, which the project does not use.
_XLA_CACHE = os.environ.get(
    "WEARJAX_TEST_XLA_CACHE", str(Path(__file__).resolve().parents[1] / ".xla-cache-tests")
)
if _XLA_CACHE.lower() not in ("", "0", "off", "none"):
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.fixture
def no_persistent_cache():
    """Compile from scratch in one test (for tests of what compiling gives), then restore."""
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
        compilation_cache.reset_cache()


def _with_config(config, name: str, value):
    """Set `name` on a library's config (jax's, jaxtyping's) for one test, then restore it."""
    previous = getattr(config, name)
    config.update(name, value)
    try:
        yield
    finally:
        config.update(name, previous)


@pytest.fixture
def no_annotation_checks():
    """Call wearjax as a user does, without the test run's jaxtyping checks (which refuse the
    shapes before our own check runs), then restore them."""
    yield from _with_config(jaxtyping.config, "jaxtyping_disable", True)


@pytest.fixture
def x64():
    """Run one test in float64 and restore the previous setting afterwards."""
    yield from _with_config(jax.config, "jax_enable_x64", True)


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
