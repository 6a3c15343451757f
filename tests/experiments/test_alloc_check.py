"""tools/alloc_check.py (the page-fault measurement quoted in README's Performance)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = [sys.executable, str(ROOT / "tools" / "alloc_check.py")]


def _run(*args):
    return subprocess.run(TOOL + list(args), capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


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
