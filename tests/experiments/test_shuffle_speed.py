"""tools/shuffle_speed.py: both shuffles timed side by side, equal, and the epoch both ways."""
import re

import pytest

from _tools import run_tool


@pytest.mark.e2e(cpu=3)
def test_the_quick_sizes_and_epoch_print_both_ways():
    out = run_tool("shuffle_speed.py", "--quick", "--epochs", "--rounds", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for n in ("100", "1,000"):
        assert re.search(rf"permutation of {n} +jax.random.permutation +[\d.]+ µs .* engine.permutation +[\d.]+ µs "
                         r".* JAX ÷ engine +[\d.]+×", out.stdout), out.stdout
    assert len(re.findall(r"rounds whose keys tie: +[\d.]+%", out.stdout)) == 2, out.stdout
    assert re.search(r"MLP epoch, 1,000 images, batch 500, per step .* JAX ÷ engine +[\d.]+×", out.stdout)
    assert "params after the epoch equal bit for bit: True" in out.stdout


def test_bad_rounds_are_refused():
    out = run_tool("shuffle_speed.py", "--rounds", "0", timeout=120)
    assert out.returncode == 2 and "--rounds must be at least 1" in out.stderr, out.stderr
