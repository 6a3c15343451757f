"""The channel-first conv prototype (experiments/_lib/conv_cf.py) against the library.

float64: hand rules vs jax.grad of the same forward and vs the library (jaxnets.nn.conv,
jaxnets.models.cnn), absolute tolerance F64_TOL. float32: the same models as the library's, to
round-off: |Δ| ≤ F32_RTOL · max(1, max |leaf|) per leaf (the products sum in another order).
Inputs include exact zeros and repeated integer values, so ReLU kinks and max-pool ties occur.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments._lib import conv_cf
from jaxnets.models import cnn
from jaxnets.nn import conv

# A measurement prototype, not used by the library: its checks run with the end-to-end tests
# (python -m pytest -q -m e2e), about 3 CPU-s each.
pytestmark = pytest.mark.e2e(cpu=3)

F64_TOL = 1e-12
F32_RTOL = 1e-5


def _images(n, dtype, seed=0):
    """(n, 28, 28, 1) with about half the pixels exactly 0 (flat regions: ReLU and pool ties)."""
    x = jax.random.normal(jax.random.key(seed), (n, 28, 28, 1), dtype)
    return jnp.maximum(x, jnp.zeros((), dtype)), jnp.arange(n, dtype=jnp.int32) % 10


def _max_abs_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _to(tree, dtype):
    return jax.tree.map(lambda v: v.astype(dtype), tree)


@pytest.mark.parametrize("name", ["cnn2", "cnn3"])
def test_params_are_the_librarys(name):
    lib, cf = cnn.MODELS[name](), conv_cf.MODELS[name]()
    a, b = lib.init(jax.random.key(3)), cf.init(jax.random.key(3))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    assert cf.decay(b) == lib.decay(a)
    assert cf.out_shape == lib.out_shape == (10,)


# model, batch, seed
CASES = [("cnn2", 3, 0), ("cnn2", 8, 1), ("cnn3", 3, 2), ("cnn3", 8, 3)]


@pytest.mark.parametrize("name,batch,seed", CASES)
def test_float64_hand_vs_autodiff_and_library(x64, name, batch, seed):
    lib, cf = cnn.MODELS[name](), conv_cf.MODELS[name]()
    p = _to(lib.init(jax.random.key(seed)), jnp.float64)
    x, y = _images(batch, jnp.float64, seed)
    l_hand, g_hand = jax.jit(cf.backprop)(p, x, y)
    l_ad, g_ad = jax.jit(cf.grad_autodiff)(p, x, y)
    l_lib, g_lib = jax.jit(lib.backprop)(p, x, y)
    assert jax.tree.structure(g_hand) == jax.tree.structure(g_lib)
    assert abs(float(l_hand - l_ad)) <= F64_TOL and abs(float(l_hand - l_lib)) <= F64_TOL
    assert _max_abs_diff(g_hand, g_ad) <= F64_TOL
    assert _max_abs_diff(g_hand, g_lib) <= F64_TOL
    np.testing.assert_allclose(cf.apply(p, x), lib.apply(p, x), rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("name,batch,seed", CASES)
def test_float32_matches_library_to_round_off(name, batch, seed):
    lib, cf = cnn.MODELS[name](), conv_cf.MODELS[name]()
    p = lib.init(jax.random.key(seed))
    x, y = _images(batch, jnp.float32, seed)
    chex.clear_trace_counter()            # the counter is per code location, shared by the cases
    step = chex.assert_max_traces(lambda p, x, y: cf.backprop(p, x, y), n=1)
    f = jax.jit(step)
    l_cf, g_cf = f(p, x, y)
    f(p, x + jnp.float32(1), y)                       # new values, same shapes: no retrace
    l_lib, g_lib = jax.jit(lib.backprop)(p, x, y)
    assert g_cf[0]["W"].dtype == jnp.float32
    assert abs(float(l_cf - l_lib)) <= F32_RTOL * max(1.0, abs(float(l_lib)))
    for u, v in zip(jax.tree.leaves(g_cf), jax.tree.leaves(g_lib)):
        assert float(jnp.max(jnp.abs(u - v))) <= F32_RTOL * max(1.0, float(jnp.max(jnp.abs(v))))


# kernel (kh, kw), C_in, C_out, stride, padding, input (H, W): strides, 'same' and explicit padding
CONVS = [((3, 3), 3, 4, 1, "same", (7, 6)), ((2, 3), 2, 5, 2, "valid", (9, 8)),
         ((3, 2), 1, 2, (2, 1), ((1, 2), (0, 1)), (6, 5)), ((2, 2), 9, 3, 1, "valid", (5, 5))]


@pytest.mark.parametrize("window,cin,cout,stride,padding,hw", CONVS)
def test_float64_conv_layer_vs_library(x64, window, cin, cout, stride, padding, hw):
    """One conv2d_cf (input (C, H, W, N)) against conv.conv2d_forward/backward on the NHWC transpose."""
    k = jax.random.split(jax.random.key(7), 4)
    n = 3
    p = {"W": jax.random.normal(k[0], (*window, cin, cout), jnp.float64),
         "b": jax.random.normal(k[1], (cout,), jnp.float64)}
    x = jax.random.normal(k[2], (cin, *hw, n), jnp.float64)
    y, cache = conv_cf.conv2d_cf_forward(p, x, stride, padding)
    y_lib, cache_lib = conv.conv2d_forward(p, x.transpose(3, 1, 2, 0), stride, padding)
    np.testing.assert_allclose(y.transpose(3, 1, 2, 0), y_lib, rtol=0, atol=F64_TOL)
    dy = jax.random.normal(k[3], y.shape, jnp.float64)
    g, dx = conv_cf.conv2d_cf_backward(cache, dy)
    g_lib, dx_lib = conv.conv2d_backward(cache_lib, dy.transpose(3, 1, 2, 0))
    assert _max_abs_diff(g, g_lib) <= F64_TOL
    np.testing.assert_allclose(dx.transpose(3, 1, 2, 0), dx_lib, rtol=0, atol=F64_TOL)


# (C, H, W, N): even and odd sizes (the odd row/column is never read and gets gradient 0)
POOLS = [(2, 4, 4, 3), (3, 5, 7, 2), (1, 6, 3, 4)]


@pytest.mark.parametrize("shape", POOLS)
def test_float64_pool_ties_vs_library(x64, shape):
    """maxpool_cf on integer-valued inputs (many ties) routes like conv.maxpool2d (first maximum)."""
    x = jnp.floor(3 * jax.random.uniform(jax.random.key(shape[1]), shape, jnp.float64))
    pool = conv_cf.maxpool_cf(2)
    y, cache = pool.forward({}, x)
    y_lib, cache_lib = conv.maxpool2d_forward(x.transpose(3, 1, 2, 0), 2, 2)
    np.testing.assert_array_equal(y.transpose(3, 1, 2, 0), y_lib)
    dy = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)
    _, dx = pool.backward(cache, dy)
    dx_lib = conv.maxpool2d_backward(cache_lib, dy.transpose(3, 1, 2, 0))
    np.testing.assert_array_equal(dx.transpose(3, 1, 2, 0), dx_lib)
