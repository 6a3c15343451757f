"""Test-wide settings.

Strict dtype promotion (as Equinox does) makes any silent float32/float64 mix in library code an
error in the tests instead of a quiet precision loss. (Rank promotion stays allowed: the bias
broadcast ``x @ W + b`` is the idiom every layer uses.)
"""
import os

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def x64():
    """Run a test body in float64 (gradient checks)."""
    with jax.enable_x64(True):
        yield
