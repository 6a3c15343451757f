"""Test-wide settings.

Strict dtype promotion (as Equinox does) makes any silent float32/float64 mix in library code an
error in the tests instead of a quiet precision loss. (Rank promotion stays allowed: the bias
broadcast ``x @ W + b`` is the idiom every layer uses.)
"""
import gc
import os

import jax
import pytest

# JAXNETS_TEST_PROFILE=DIR records each test's CPU seconds and peak RSS (tests/_profile.py)
from _profile import pytest_runtest_protocol  # noqa: F401,E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def x64():
    """Run a test body in float64 (gradient checks)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module: a worker runs hundreds of modules'
    compiles, and kept they grew one worker past 3 GB. A later module that needs a program
    compiles it again (tests never rely on a cache hit across modules)."""
    yield
    jax.clear_caches()
    gc.collect()
