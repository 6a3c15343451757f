"""Test-wide settings.

Strict dtype promotion (as Equinox does) makes any silent float32/float64 mix in library code an
error in the tests instead of a quiet precision loss. (Rank promotion stays allowed: the bias
broadcast ``x @ W + b`` is the idiom every layer uses.)
"""
import gc
import os
import shutil
import tempfile

# One on-disk compilation cache for the whole run, set before jax is imported: both xdist workers
# and every subprocess a test starts inherit it, so the many end-to-end runs of the same tiny
# experiments (interrupts, streams, the README's commands, the main job) compile each program once.
# A user's own JAX_COMPILATION_CACHE_DIR is used as it is and never removed.
_OWN_JIT_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_JIT_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxnets-tests-jit-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import pytest

# JAXNETS_TEST_PROFILE=DIR records each test's CPU seconds and peak RSS (tests/_profile.py)
from _profile import pytest_runtest_protocol  # noqa: F401,E402
# the two test commands: default (-m "not e2e" in pyproject's addopts) and -m e2e (tests/_e2e.py)
from _e2e import (pytest_deselected, pytest_sessionfinish, pytest_terminal_summary,  # noqa: F401,E402
                  pytest_testnodedown)

jax.config.update("jax_numpy_dtype_promotion", "strict")

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config):
    """The run's compilation cache goes with the process that made it (the controller)."""
    if _OWN_JIT_CACHE and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def x64():
    """Run a test body in float64 (gradient checks)."""
    with jax.enable_x64(True):
        yield


#: a worker's resident memory above which its compiled programs are dropped after a test module
FREE_ABOVE_MIB = 1000


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc; elsewhere unknown: inf, so always free)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("inf")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after a test module once the worker holds more than
    FREE_ABOVE_MIB: a worker runs hundreds of modules' compiles, and kept they grew one worker past
    5 GB. Only past the threshold, because a later module then compiles again even the small
    programs every module uses (measured: a few CPU seconds per module). Tests never rely on a
    cache hit across modules."""
    yield
    if _rss_mib() > FREE_ABOVE_MIB:
        jax.clear_caches()
        gc.collect()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The ``e2e`` tests first, the costliest first (``@pytest.mark.e2e(cpu=SECONDS)``, CPU
    seconds measured with JAXNETS_TEST_PROFILE): pytest-xdist hands out tests round-robin in this
    order, so in ``python -m pytest -q -m e2e`` the long end-to-end runs start at once on different
    workers and the shorter ones fill in behind them, instead of one long run starting last and
    setting the wall time alone."""
    def cost(item):
        m = item.get_closest_marker("e2e")
        return -1.0 if m is None else float(m.kwargs.get("cpu", 0))
    items.sort(key=cost, reverse=True)   # stable: the order within equal costs is kept
