"""Weight-initialisation schemes of the documents (docs 001–004), selectable by name.

An initializer is ``init(key, W_shape, b_shape, fan_in, fan_out, dtype) -> (W, b)``; the same
signature serves dense layers (``W_shape = (n_in, n_out)``) and convolutions
(``W_shape = (kh, kw, c_in, c_out)``, ``fan_in = kh*kw*c_in``).

Names:
- ``"normal"``: W and b ~ N(0, std²), std = 0.1 by default (doc 003);
- ``"scaled_normal"``: W = std·randn, b = 0 (doc 004, std = 1e-1 for the toy net, 1e-4 for CIFAR);
- ``"standard_normal"``: W and b ~ N(0, 1) (doc 002);
- ``"zeros"``: everything 0 (doc 001 §2, shows the symmetry problem);
- ``"he"`` / ``"glorot"``: He-normal (for ReLU) / Glorot-uniform weights, zero biases;
- ``"default"``: He for ReLU layers, Glorot otherwise.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# ----------------------------------------------------------------------------- draws
# Each new shape of an eager jax.random draw compiles its own threefry program: 0.3–0.7 CPU-s each
# on a 2-core Xeon, several per model init. With threefry's partitionable counters (JAX's default)
# element i of a flat draw depends only on (key, i), so an eager draw takes the flat draw of the
# next power of two (at least 64) and cuts it to size: the same numbers (tests/test_initializers.py),
# one compiled sampler per size class. Under a trace (jit, vmap) the draw is made as asked.
MIN_DRAW = 64


def _prefix_stable(key) -> bool:
    if not jax.config.jax_threefry_partitionable or isinstance(key, jax.core.Tracer):
        return False
    return str(jax.random.key_impl(key)) == "threefry2x32"


def draw(sample, key, shape, dtype, *args):
    """``sample(key, shape, dtype, *args)`` (``jax.random.normal``/``uniform``/...: element-wise
    maps of the key's bits), the same numbers with one compile per size class when eager."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    if size == 0 or not _prefix_stable(key):
        return sample(key, shape, dtype, *args)
    n = max(MIN_DRAW, 1 << (size - 1).bit_length())
    return sample(key, (n,), dtype, *args)[:size].reshape(shape)


def normal_draw(key, shape, dtype=jnp.float32):
    """N(0, 1) of ``shape``: ``jax.random.normal(key, shape, dtype)``, see :func:`draw`."""
    return draw(jax.random.normal, key, shape, dtype)


def uniform_draw(key, shape, dtype=jnp.float32, minval=0.0, maxval=1.0):
    """U[minval, maxval) of ``shape``: ``jax.random.uniform(key, shape, dtype, minval, maxval)``,
    see :func:`draw`."""
    return draw(jax.random.uniform, key, shape, dtype, minval, maxval)


# ----------------------------------------------------------------------------- schemes


def normal(std: float = 0.1):
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        kW, kb = jax.random.split(key)
        return (std * normal_draw(kW, W_shape, dtype),
                std * normal_draw(kb, b_shape, dtype))
    return init


def scaled_normal(std: float = 1e-4):
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        return std * normal_draw(key, W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def zeros():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        return jnp.zeros(W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def he():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        std = (2.0 / fan_in) ** 0.5
        return std * normal_draw(key, W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def glorot():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        W = uniform_draw(key, W_shape, dtype, -limit, limit)
        return W, jnp.zeros(b_shape, dtype)
    return init


SCHEMES = {
    "normal": normal,
    "scaled_normal": scaled_normal,
    "standard_normal": lambda: normal(1.0),
    "zeros": zeros,
    "he": he,
    "glorot": glorot,
}


def get(name, activation: str = "identity", **kwargs):
    """Initializer by name (extra kwargs such as ``std`` go to the scheme) or a callable as is."""
    if callable(name):
        return name
    if name == "default":
        return he() if activation == "relu" else glorot()
    if name not in SCHEMES:
        raise ValueError(f"unknown init scheme {name!r}; expected 'default' or one of {sorted(SCHEMES)}")
    return SCHEMES[name](**kwargs)
