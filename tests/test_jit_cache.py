"""The tests' shared on-disk compilation cache (tests/conftest.py) is read and written under a file
lock: xdist workers and the end-to-end subprocesses share it, and JAX writes an entry in place."""
import os

import filelock
import jax
import jax.numpy as jnp
import pytest
from jax._src import compilation_cache

from conftest import JIT_CACHE_MAX_BYTES

#: the cache this run's pytest made (xdist workers and subprocesses inherit both variables)
_TESTS_CACHE = os.environ.get("JAX_COMPILATION_CACHE_DIR") == os.environ.get("JAXNETS_TESTS_JIT_CACHE")


@pytest.mark.skipif(not _TESTS_CACHE, reason="JAX_COMPILATION_CACHE_DIR was set by the user: the "
                    "tests use that cache as it is")
def test_shared_cache_is_locked():
    jax.jit(lambda x: x * 3 + 1).lower(jnp.arange(7.0)).compile()   # (the cache starts with a compile)
    cache = compilation_cache._cache
    assert cache is not None, "no persistent compilation cache in use"
    assert os.path.samefile(cache.path, os.environ["JAX_COMPILATION_CACHE_DIR"])
    assert jax.config.jax_compilation_cache_max_size == JIT_CACHE_MAX_BYTES
    assert cache.eviction_enabled        # JAX locks reads and writes only then
    assert isinstance(cache.lock, filelock.FileLock)
