"""tools/microbatch_sizes.py: a case's programs timed whole and chunked, and its refusals."""
import re

import pytest

from _tools import run_tool


@pytest.mark.e2e(cpu=2)
def test_the_quick_case_prints_whole_and_chunked_times_and_the_auto_pick():
    out = run_tool("microbatch_sizes.py", "--quick", "--rounds", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mlp-quick (batch 32; auto picks the whole batch)" in out.stdout
    assert re.search(r"whole batches .* whole ÷ this 1\.00×", out.stdout)
    assert re.search(r"microbatch=16: 2 chunks of 16 .* whole ÷ this [\d.]+×", out.stdout)


@pytest.mark.parametrize("args, msg", [(("--rounds", "0"), "--rounds must be at least 1"),
                                       (("--only", "cnn9-1"), "unknown case(s) ['cnn9-1']"),
                                       (("--only", ","), "unknown case(s)")])
def test_bad_arguments_are_refused(args, msg):
    out = run_tool("microbatch_sizes.py", *args, timeout=120)
    assert out.returncode == 2 and msg in out.stderr, out.stderr
