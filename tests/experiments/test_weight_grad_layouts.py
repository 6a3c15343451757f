"""tools/weight_grad_layouts.py: both ways timed per shape, with the way the rule picks."""
import re

import pytest

from _tools import run_tool


@pytest.mark.e2e(cpu=2)
def test_the_quick_shapes_print_both_ways_and_the_rule():
    out = run_tool("weight_grad_layouts.py", "--quick", "--rounds", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rule: transposed where n_out <= 32" in out.stdout
    assert re.search(r"\(64, 256, 8\) +quick, narrow +plain .* transposed .* plain ÷ transposed +[\d.]+× "
                     r"\(medians +[\d.]+×\) +rule: transposed", out.stdout)
    assert re.search(r"\(8, 16, 32\) +quick, wide .* rule: plain", out.stdout)


def test_bad_rounds_are_refused():
    out = run_tool("weight_grad_layouts.py", "--rounds", "0", timeout=120)
    assert out.returncode == 2 and "--rounds must be at least 1" in out.stderr, out.stderr


@pytest.mark.e2e(cpu=3)
def test_the_quick_workload_times_fit_epochs_with_and_without_the_rule():
    out = run_tool("weight_grad_layouts.py", "--steps", "--quick", "--rounds", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"quick MLP 256-8, batch 64 +plain +[\d.]+ ms +rule +[\d.]+ ms per call +plain ÷ rule +[\d.]+×",
                     out.stdout)
    assert re.search(r"quick E6 trainer, 2 nets vmapped +plain .* plain ÷ rule +[\d.]+×", out.stdout)
