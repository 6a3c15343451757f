"""The eager draws of jaxnets.nn.initializers: the numbers of the direct jax.random draw, bit for
bit, with one compiled sampler per size class (float32 and float64; exact equality, no tolerance)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn import initializers as I

# sizes at and around a size class's edges, several ranks, a 0-size and a large shape; each direct
# draw compiles its own sampler (~0.35 CPU-s), hence three sampler/dtype pairs, not all six
SHAPES = [(), (1,), (63,), (64,), (65,), (3, 5), (4, 3, 2, 8), (7, 0), (784, 256)]
SAMPLERS = [
    ("normal", jax.random.normal, (), "float64"),
    ("uniform", jax.random.uniform, (), "float32"),
    ("uniform ±0.3", jax.random.uniform, (-0.3, 0.3), "float64"),
]


@pytest.mark.parametrize("name,sample,args,dtype", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_eager_draw_is_the_direct_draw_bit_for_bit(x64, name, sample, args, dtype):
    for i, shape in enumerate(SHAPES):
        key = jax.random.key(i)
        got = I.draw(sample, key, shape, dtype, *args)
        want = sample(key, shape, dtype, *args)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"{name} {shape} {dtype}")


def test_eager_draws_share_one_sampler_per_size_class():
    asked = []

    def sample(key, shape, dtype):
        asked.append(shape)
        return jax.random.normal(key, shape, dtype)

    for shape in [(1,), (3, 5), (2, 2, 2), (64,), (65,), (10, 10), (128,), (129,)]:
        I.draw(sample, jax.random.key(0), shape, jnp.float32)
    assert asked == [(64,)] * 4 + [(128,)] * 3 + [(256,)]


@pytest.mark.parametrize("case", ["traced", "rbg key", "not partitionable"])
def test_other_cases_draw_as_asked(case):
    """Under jit (the key an argument, so a tracer), with a PRNG whose bits are not per-element counters, or with JAX's
    non-partitionable threefry, the draw is made at the asked shape (and so equals the direct one)."""
    asked = []

    def sample(key, shape, dtype):
        asked.append(shape)
        return jax.random.normal(key, shape, dtype)

    key = jax.random.key(1, impl="rbg") if case == "rbg key" else jax.random.key(1)
    run = lambda k=key: I.draw(sample, k, (3, 5), jnp.float32)
    if case == "traced":
        got = jax.jit(run)(key)
    elif case == "not partitionable":
        with jax.threefry_partitionable(False):
            got = run()
            want = jax.random.normal(key, (3, 5), jnp.float32)
    else:
        got = run()
    if case != "not partitionable":
        want = jax.random.normal(key, (3, 5), jnp.float32)
    assert asked == [(3, 5)]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("scheme", ["normal", "scaled_normal", "standard_normal", "he", "glorot"])
def test_schemes_give_the_direct_draws(scheme):
    """Each scheme's W (and normal's b) are the documents' formulas on the direct draws."""
    W_shape, b_shape, fan_in, fan_out = (5, 4), (4,), 5, 4
    W, b = I.get(scheme)(jax.random.key(3), W_shape, b_shape, fan_in, fan_out, jnp.float32)
    k = jax.random.key(3)
    if scheme in ("normal", "standard_normal"):
        std = 0.1 if scheme == "normal" else 1.0
        kW, kb = jax.random.split(k)
        want_W, want_b = std * jax.random.normal(kW, W_shape), std * jax.random.normal(kb, b_shape)
    elif scheme == "glorot":
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        want_W, want_b = jax.random.uniform(k, W_shape, jnp.float32, -lim, lim), jnp.zeros(b_shape)
    else:
        std = 1e-4 if scheme == "scaled_normal" else math.sqrt(2.0 / fan_in)
        want_W, want_b = std * jax.random.normal(k, W_shape), jnp.zeros(b_shape)
    np.testing.assert_array_equal(np.asarray(W), np.asarray(want_W))
    np.testing.assert_array_equal(np.asarray(b), np.asarray(want_b))
