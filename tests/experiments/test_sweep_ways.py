"""tools/sweep_ways.py (the comparison behind experiments._lib.common.together) and together()."""
import functools
import os
import re

import jax
import pytest
from _tools import run_tool

from experiments._lib import common

_run = functools.partial(run_tool, "sweep_ways.py")


@pytest.mark.e2e(cpu=40)
def test_every_way_is_timed_and_the_threads_give_workers_1s_bits():
    """Two workloads at smoke size, one round of 2 epochs: each table has the four ways with
    positive times, vmap/way = 1.00 for vmap, and both threaded ways (each configuration's next
    epoch and evaluations queued as its epoch ends, or waiting for every epoch) equal to workers 1
    bit for bit (params and recorded losses)."""
    r = _run("--quick", "--rounds", "1", "--epochs", "2", "--only", "e4_mlp2_ood,e7_T32")
    assert r.returncode == 0, r.stderr[-3000:]
    n = max(2, common.usable_cpus())
    for name in ("e4_mlp2_ood", "e7_T32"):
        block = r.stdout.split(f"\n{name}\n")[1].split("\n\n")[0]
        rows = re.findall(r"^\s+(vmap|workers \d+(?: wait)?)\s+(\S+)\s+\S+\s+\S+\s+(\S+)\s+\S+\s+\S+\s+(\S+)\s+(yes|no)$",
                          block, re.M)
        assert [w for w, *_ in rows] == ["vmap", "workers 1", f"workers {n} wait", f"workers {n}"], block
        assert all(float(t) > 0 and float(w) > 0 for _, t, w, _, _ in rows)
        assert rows[0][3] == "1.00" and rows[2][4] == rows[3][4] == "yes", block


@pytest.mark.e2e(cpu=10)
def test_ways_runs_only_the_ways_named():
    """``--ways`` (workers named by count): only those rows; without vmap and workers 1 the ratio
    and bit-equality columns say "—"."""
    n = max(2, common.usable_cpus())
    r = _run("--quick", "--rounds", "1", "--only", "e4_mlp2_ood", "--ways", f"{n} wait,{n}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = re.findall(r"^\s+(vmap|workers \d+(?: wait)?)\s+.*\s(\S+)\s+(\S+)$", r.stdout, re.M)
    assert rows == [(f"workers {n} wait", "—", "—"), (f"workers {n}", "—", "—")], r.stdout


@pytest.mark.parametrize("args,message", [(["--rounds", "0"], "--rounds: 0 is out of range"),
                                          (["--only", "e5"], "--only: unknown workload"),
                                          (["--ways", "3 workers"], "--ways: unknown way(s) ['workers 3 workers']")])
def test_bad_arguments_are_named(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_together_is_threads_on_a_cpu_and_says_so():
    """On the CPU backend the studies train their seeds through fit's epoch on one thread per core
    (the bits of separate fits); the record's label says which way ran."""
    assert jax.default_backend() == "cpu"
    way = common.together()
    assert way == dict(vmap=False, workers=common.usable_cpus())
    assert common.together_label(way) == (f"fit's own compiled epoch per configuration, {common.usable_cpus()} "
                                          "at a time on threads")
    assert common.together_label({}) == "one vmapped program"


@pytest.mark.e2e(cpu=10)
def test_plain_weight_grads_is_said_in_the_header_and_the_table_still_prints():
    r = _run("--quick", "--rounds", "1", "--only", "e4_mlp2_ood", "--ways", "1", "--plain-weight-grads")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "weight gradients all plain" in r.stdout
    assert re.search(r"^\s+workers 1\s+[\d.]+", r.stdout.split("\ne4_mlp2_ood\n")[1], re.M)
