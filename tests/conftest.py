"""Test-wide settings.

Strict dtype promotion (as Equinox does) makes any silent float32/float64 mix in library code an
error in the tests instead of a quiet precision loss. (Rank promotion stays allowed: the bias
broadcast ``x @ W + b`` is the idiom every layer uses.)
"""
import ctypes
import gc
import os
import shutil
import tempfile

# One on-disk compilation cache for the whole run, set before jax is imported: both xdist workers
# and every subprocess a test starts inherit it, so the many end-to-end runs of the same tiny
# experiments (interrupts, streams, the README's commands, the main job) compile each program once.
# A user's own JAX_COMPILATION_CACHE_DIR is used as it is and never removed. The cache has no size
# cap: a cap turns on JAX's file lock, but also a scan of every entry at each write, under the lock
# (tests/test_gradcheck_adversarial.py took 78 s instead of 63 s with a fresh cache, one run each;
# the default command ran 24.6 min with it, 7.7 min in the CI run before). Without the lock a process may read another's half-written
# entry: JAX warns and compiles the program again, the result unchanged.
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
from _e2e import (pytest_configure, pytest_deselected, pytest_sessionfinish,  # noqa: F401,E402
                  pytest_terminal_summary, pytest_testnodedown)

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


#: a worker's resident memory above which its compiled programs are dropped after a test module.
#: Each drop makes later modules compile again what they share; measured on the default command
#: (quiet, one after another): 1000 MiB 360 s wall / 686 CPU-s / largest process 1.45 GiB;
#: 1200: 314 s / 596 CPU-s / 1.52 GiB; 1400: 283 s / 531 CPU-s / 1.87 GiB (too near 2 GB)
FREE_ABOVE_MIB = 1200
#: ... and after a single test that itself grew the worker by FREE_TEST_GROWTH_MIB: a module's own
#: compiles (hypothesis' random shapes, the sweep tests) would otherwise carry a worker past 2 GB
#: before the module ends. Only such tests: freeing after every test once past the mark made each
#: later test of the file compile again (one loaded run: the three heaviest files took 55 CPU s more)
FREE_TEST_ABOVE_MIB = 1400
FREE_TEST_GROWTH_MIB = 100


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc; elsewhere unknown: inf, so always free)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("inf")


def _libc_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _free(above_mib: float) -> None:
    """Drop JAX's compiled programs and hand freed heap back to the system when this process holds
    more than ``above_mib``: without the trim glibc keeps what compiles freed (measured: 120 small
    programs left ~170 MB resident after their functions were gone; the trim returned ~95 MB)."""
    if _rss_mib() > above_mib:
        jax.clear_caches()
        gc.collect()
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after a test module once the worker holds more than
    FREE_ABOVE_MIB: a worker runs hundreds of modules' compiles, and kept they grew one worker past
    5 GB. Only past the threshold, because a later module then compiles again even the small
    programs every module uses (measured: a few CPU seconds per module). Tests never rely on a
    cache hit across modules."""
    yield
    _free(FREE_ABOVE_MIB)


@pytest.fixture(autouse=True)
def _free_compiled_programs_of_a_heavy_test():
    """The same after a test that grew the worker by FREE_TEST_GROWTH_MIB, at FREE_TEST_ABOVE_MIB
    (a later test of the module may then compile again what it shared with an earlier one; no test
    relies on a cache hit across tests)."""
    before = _rss_mib()
    yield
    if _rss_mib() - before > FREE_TEST_GROWTH_MIB:
        _free(FREE_TEST_ABOVE_MIB)

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The ``e2e`` tests first, the costliest first (``@pytest.mark.e2e(cpu=SECONDS)``, CPU
    seconds measured with JAXNETS_TEST_PROFILE): pytest-xdist (``--dist loadfile``) hands out
    whole test files in the order of their first test, so in ``python -m pytest -q -m e2e`` the
    files of the long end-to-end runs start at once on different workers and the shorter ones fill
    in behind them, instead of one long run starting last and setting the wall time alone."""
    def cost(item):
        m = item.get_closest_marker("e2e")
        return -1.0 if m is None else float(m.kwargs.get("cpu", 0))
    items.sort(key=cost, reverse=True)   # stable: the order within equal costs is kept
