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

import jax
import jax.numpy as jnp


def normal(std: float = 0.1):
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        kW, kb = jax.random.split(key)
        return (std * jax.random.normal(kW, W_shape, dtype),
                std * jax.random.normal(kb, b_shape, dtype))
    return init


def scaled_normal(std: float = 1e-4):
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        return std * jax.random.normal(key, W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def zeros():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        return jnp.zeros(W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def he():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        std = (2.0 / fan_in) ** 0.5
        return std * jax.random.normal(key, W_shape, dtype), jnp.zeros(b_shape, dtype)
    return init


def glorot():
    def init(key, W_shape, b_shape, fan_in, fan_out, dtype=jnp.float32):
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        W = jax.random.uniform(key, W_shape, dtype, -limit, limit)
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
