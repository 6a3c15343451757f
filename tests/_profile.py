"""Opt-in per-test cost record: ``JAXNETS_TEST_PROFILE=DIR python -m pytest -q`` (hook imported by conftest.py).

Writes one JSON line per test to DIR/<worker>.jsonl: CPU seconds of the worker and of its waited-for
subprocesses (getrusage SELF and CHILDREN deltas over setup+call+teardown), and the worker's peak
RSS after the test (ru_maxrss is a high-water mark, so its rise names the test that raised it).
CPU time, unlike wall time, is not inflated by other work sharing the cores.
"""
import json
import os
import resource
import time
from pathlib import Path

import pytest


def _cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024  # Linux: KiB -> MiB


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    out = os.environ.get("JAXNETS_TEST_PROFILE")
    if not out:
        yield
        return
    s0, _ = _cpu(resource.RUSAGE_SELF)
    c0, _ = _cpu(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    yield
    s1, rss = _cpu(resource.RUSAGE_SELF)
    c1, crss = _cpu(resource.RUSAGE_CHILDREN)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / f"{worker}.jsonl", "a") as f:
        f.write(json.dumps(dict(test=item.nodeid, worker=worker, cpu_self=round(s1 - s0, 3),
                                cpu_children=round(c1 - c0, 3), wall=round(time.perf_counter() - w0, 3),
                                maxrss_mib=round(rss), children_maxrss_mib=round(crss))) + "\n")
