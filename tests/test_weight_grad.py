"""layers.weight_grad: both ways of computing a weight gradient ``xᵀ dy`` give the same product,
the rule picks the way its docstring states, and the layers that use it stay equal to jax.grad."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn import conv, layers

# (M, n_in, n_out), the way the rule must pick: both branches of the rule and the plain way,
# on each side of every threshold.
RULE_CASES = [
    ((500, 3072, 50), True),        # doc 004's layer: n_in a multiple of 128
    ((500, 256, 10), True),         # narrow output
    ((64, 512, 8), True),           # narrow, 262,144 multiply-adds
    ((51, 257, 10), False),         # narrow but 131,070 multiply-adds: under 2**17
    ((52, 257, 10), True),          # narrow, 133,640
    ((128, 128, 8), True),          # narrow, exactly 2**17
    ((127, 128, 8), False),         # narrow, 130,048
    ((400, 40, 10), True),          # narrow, n_in = 4 n_out exactly
    ((400, 39, 10), False),         # n_in under 4 n_out
    ((500, 784, 32), True),         # narrow (n_out = 32)
    ((500, 784, 33), False),        # n_out 33, 784 not a multiple of 128
    ((500, 784, 256), False),       # the MLP's first layer
    ((128, 256, 128), True),        # aligned, exactly 2**22 multiply-adds, n_in = 2 n_out
    ((127, 256, 128), False),       # aligned, just under 2**22
    ((500, 128, 128), False),       # aligned, n_in < 2 n_out
    ((100352, 9, 32), False),       # a first conv's patches: n_in < 4 n_out
    ((7, 100, 30), False),          # small
]


@pytest.mark.parametrize("shape, transposed", RULE_CASES)
def test_the_rule_picks_the_way_its_thresholds_state(shape, transposed):
    assert layers.transposed_weight_grad(*shape) is transposed
    m, n_in, n_out = shape
    jaxpr = jax.make_jaxpr(layers.weight_grad)(jnp.zeros((m, n_in)), jnp.zeros((m, n_out)))
    barrier = any(e.primitive.name == "optimization_barrier" for e in jaxpr.jaxpr.eqns)
    assert barrier is transposed      # the traced program is the way the rule names


def test_plain_weight_grads_switches_the_transposed_way_off_inside_only():
    x, dy = jnp.zeros((500, 3072)), jnp.zeros((500, 50))
    # a fresh function each time: jax reuses the trace of a function it has traced before
    barrier = lambda: any(e.primitive.name == "optimization_barrier"  # noqa: E731
                          for e in jax.make_jaxpr(lambda a, b: layers.weight_grad(a, b))(x, dy).jaxpr.eqns)
    assert barrier()
    with layers.plain_weight_grads():
        assert not barrier()
        with layers.plain_weight_grads():
            assert not barrier()
        assert not barrier()
    assert barrier()
    with pytest.raises(RuntimeError), layers.plain_weight_grads():
        raise RuntimeError("an error inside still restores the rule")
    assert barrier()


# dtype, relative tolerance of the product against x.T @ dy (float64: summation order only)
DTYPES = [(jnp.float64, 1e-12), (jnp.float32, 2e-5)]


@pytest.mark.parametrize("dtype, rtol", DTYPES)
@pytest.mark.parametrize("shape", [s for s, _ in RULE_CASES if s[0] * s[1] * s[2] < 2 ** 24])
def test_both_ways_give_the_same_product(shape, dtype, rtol):
    m, n_in, n_out = shape
    with jax.enable_x64(dtype == jnp.float64):
        kx, kd = jax.random.split(jax.random.key(m + n_in + n_out))
        x = jax.random.normal(kx, (m, n_in), dtype)
        dy = jax.random.normal(kd, (m, n_out), dtype)
        got = jax.jit(layers.weight_grad)(x, dy)
        want = np.asarray(x, np.float64).T @ np.asarray(dy, np.float64)
        assert got.dtype == dtype and got.shape == (n_in, n_out)
        scale = np.abs(np.asarray(x, np.float64)).T @ np.abs(np.asarray(dy, np.float64))
        np.testing.assert_array_less(np.abs(np.asarray(got, np.float64) - want), rtol * scale + 1e-300)


def test_vmapped_over_configurations_it_matches_the_plain_product():
    """sweep's vmapped programs: x shared, dy batched (the grid of E6), and both batched."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (64, 512))
        dys = jax.random.normal(jax.random.key(1), (3, 64, 8))
        xs = jax.random.normal(jax.random.key(2), (3, 64, 512))
        chex.assert_trees_all_close(jax.vmap(lambda d: layers.weight_grad(x, d))(dys),
                                    jnp.einsum("mi,cmo->cio", x, dys), rtol=1e-12, atol=1e-12)
        chex.assert_trees_all_close(jax.vmap(layers.weight_grad)(xs, dys),
                                    jnp.einsum("cmi,cmo->cio", xs, dys), rtol=1e-12, atol=1e-12)


def _hand_vs_autodiff(layer, in_shape, n):
    """The layer's hand backward against jax.grad of its forward, float64, one random dy."""
    with jax.enable_x64(True):
        _, params = layer.init(jax.random.key(0), in_shape, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (n, *in_shape), jnp.float64)
        y, cache = layer.forward(params, x)
        dy = jax.random.normal(jax.random.key(2), y.shape, jnp.float64)
        dparams, dx = layer.backward(cache, dy)
        chex.assert_trees_all_equal_dtypes(dparams, params)
        gp, gx = jax.grad(lambda p, x: jnp.sum(layer.forward(p, x)[0] * dy), argnums=(0, 1))(params, x)
        chex.assert_trees_all_close(dparams, gp, rtol=1e-10, atol=1e-12)
        chex.assert_trees_all_close(dx, gx, rtol=1e-10, atol=1e-12)
        return params


# (layer, per-example input shape, batch, (M, n_in, n_out) of its weight-gradient product):
# identity activations keep the check off ReLU kinks; each case takes the transposed way.
LAYER_CASES = [
    ("dense narrow", lambda: layers.dense(8), (512,), 64, (64, 512, 8)),
    ("dense aligned", lambda: layers.dense(128), (256,), 128, (128, 256, 128)),
    ("dense over a time axis", lambda: layers.dense(10), (7, 384), 9, (63, 384, 10)),
    ("conv2d aligned patches", lambda: conv.conv2d(64, 2, 1, "valid"), (11, 11, 32), 8, (800, 128, 64)),
]


@pytest.mark.parametrize("name, make, in_shape, n, product", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layers_on_the_transposed_way_equal_jax_grad(name, make, in_shape, n, product):
    assert layers.transposed_weight_grad(*product)
    layer = make()
    params = _hand_vs_autodiff(layer, in_shape, n)
    # the layer's backward really takes weight_grad's transposed way (its barrier is in the program)
    with jax.enable_x64(True):
        y, cache = layer.forward(params, jnp.ones((n, *in_shape), jnp.float64))
        eqns = jax.make_jaxpr(lambda c, d: layer.backward(c, d))(cache, jnp.ones(y.shape, y.dtype)).jaxpr.eqns
    assert any(e.primitive.name == "optimization_barrier" for e in eqns)
