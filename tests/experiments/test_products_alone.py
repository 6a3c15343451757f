"""tools/products_alone.py: it finds the products a step keeps (dead ones left out), counts their
FLOPs exactly, and prints a fraction of the peak per workload."""
import re

import jax
import jax.numpy as jnp
import pytest

from _tools import load_tool, run_tool
from jaxnets import models


@pytest.fixture(scope="module")
def tool():
    return load_tool("products_alone")


def test_the_mlp_steps_products_are_found_and_the_dead_input_gradient_left_out(tool):
    """784-256-10 at batch 500: forward x·W1, h·W2; backward dW2 = hᵀ·dz, dh = dz·W2ᵀ, dW1 = xᵀ·dh;
    the first layer's dx = dh·W1ᵀ is never used and XLA drops it, so the tool must too."""
    mlp = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy")
    p = mlp.init(jax.random.key(0))
    prods = tool.products(lambda p, x, y: mlp.backprop(p, x, y), p, jnp.zeros((500, 784)), jnp.zeros((500,), jnp.int32))
    got = sorted(tool.flops(*q) for q in prods)
    want = sorted([2 * 500 * 784 * 256] * 2 + [2 * 500 * 256 * 10] * 3)
    assert got == want


@pytest.mark.parametrize("lhs, rhs, dims, want", [
    ((5, 7), (7, 3), (((1,), (0,)), ((), ())), 2 * 5 * 7 * 3),
    ((7, 5), (7, 3), (((0,), (0,)), ((), ())), 2 * 5 * 7 * 3),             # xᵀ·dy
    ((4, 5, 7), (4, 7, 3), (((2,), (1,)), ((0,), (0,))), 2 * 4 * 5 * 7 * 3),   # batched
])
def test_flops_of_a_dot_general(tool, lhs, rhs, dims, want):
    aval = lambda s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    assert tool.flops(aval(lhs), aval(rhs), {"dimension_numbers": dims}) == want


@pytest.mark.e2e(cpu=2)
def test_the_quick_run_prints_a_fraction_per_workload():
    out = run_tool("products_alone.py", "--quick", "--rounds", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"= (\d+) GFLOP/s, ([\d.]+) of the peak", out.stdout)
    assert m and 0 < float(m.group(2)) < 5, out.stdout


def test_bad_rounds_are_refused():
    out = run_tool("products_alone.py", "--rounds", "0", timeout=120)
    assert out.returncode == 2 and "--rounds must be at least 1" in out.stderr
