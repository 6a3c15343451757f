"""tools/alloc_check.py (the page-fault measurement quoted in README's Performance)."""
import functools
import re

import pytest
from _tools import run_tool

_run = functools.partial(run_tool, "alloc_check.py")


@pytest.mark.e2e(cpu=20)
def test_every_setting_runs_in_its_own_processes_and_is_reported():
    """One child per setting: the table has the three settings, each with faults and positive
    times, default/this = 1.00 for default, and the step's temporaries (tens of MiB) stated."""
    r = _run("--rounds", "1", "--steps", "2", "--epochs", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"temporaries of one step: (\d+\.\d) MiB", r.stdout), r.stdout
    assert float(re.search(r"temporaries of one step: (\d+\.\d) MiB", r.stdout).group(1)) > 32
    rows = re.findall(r"^\s*(\w+) \|\s+(\d+)\s+(\S+) \(\s*(\S+)\)\s+(\S+) \|\s+(\d+)\s+(\S+) \(\s*(\S+)\)\s+(\S+)$",
                      r.stdout, re.M)
    assert [row[0] for row in rows] == ["default", "hugetlb", "heap"], r.stdout
    for name, sf, smin, smed, sr, ef, emin, emed, er in rows:
        assert float(smin) > 0 and float(emin) > 0
        assert (sr, er) == ("1.00", "1.00") if name == "default" else float(sr) > 0


@pytest.mark.parametrize("args,message", [(["--rounds", "0"], "--rounds must be a positive integer"),
                                          (["--steps", "-1"], "--steps must be a positive integer")])
def test_bad_arguments_are_named(args, message):
    r = _run(*args)
    assert r.returncode == 2 and message in r.stderr
