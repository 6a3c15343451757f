"""Layers as pure forward/backward pairs.

Every layer is a :class:`Layer` of three pure functions::

    init(key, in_shape, dtype) -> (out_shape, params)
    forward(params, x)         -> (y, cache)
    backward(cache, dy)        -> (dparams, dx)

``in_shape``/``out_shape`` are per-example shapes (no batch axis); ``x`` carries a leading batch
axis ``N``. ``dparams`` has exactly the structure of ``params`` (``{}`` for layers without
parameters), so a hand-written gradient can be compared with ``jax.grad`` by one ``jax.tree.map``.
Each backward rule sits right under its forward and uses the same variable names.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxnets.nn import initializers


class Layer(NamedTuple):
    """A layer: ``init``, ``forward`` and its hand-written ``backward``."""
    init: Callable[..., Any]
    forward: Callable[..., Any]
    backward: Callable[..., Any]


def _check_features(x, n_in: int, where: str):
    """Shape check that also fires at trace time (shapes are static under jit)."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"{where}: expected x of shape (N, {n_in}), got shape {jnp.shape(x)}")
    if x.shape[1] != n_in:
        raise ValueError(f"{where}: expected x with {n_in} features (N, {n_in}), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{where}: expected a floating-point x, got dtype {x.dtype}")


# ----------------------------------------------------------------------------- activations
# Activations are parameter-free: forward(x) -> (y, cache), backward(cache, dy) -> dx.

def sigmoid_forward(x):
    y = jax.nn.sigmoid(x)
    return y, y


def sigmoid_backward(cache, dy):
    y = cache
    return dy * y * (1 - y)


def relu_forward(x):
    y = jnp.maximum(x, 0)
    return y, x


def relu_backward(cache, dy):
    x = cache
    # Strict '>' makes the derivative at the kink 0, as doc 001 defines it.
    return jnp.where(x > 0, dy, jnp.zeros_like(dy))


def tanh_forward(x):
    y = jnp.tanh(x)
    return y, y


def tanh_backward(cache, dy):
    y = cache
    return dy * (1 - y * y)


def identity_forward(x):
    return x, None


def identity_backward(cache, dy):
    return dy


ACTIVATIONS = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "identity": (identity_forward, identity_backward),
}


def get_activation(name: str):
    """(forward, backward) pair of an activation by name; ValueError naming the options."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation(name: str) -> Layer:
    """An activation as a parameter-free :class:`Layer` (params ``{}``)."""
    fwd, bwd = get_activation(name)

    def init(key, in_shape, dtype=jnp.float32):
        return tuple(in_shape), {}

    def forward(params, x):
        return fwd(x)

    def backward(cache, dy):
        return {}, bwd(cache, dy)

    return Layer(init, forward, backward)


# ----------------------------------------------------------------------------- dense

def dense_forward(params, x):
    """Affine map ``a = x W + b``.

    params: {"W": (n_in, n_out), "b": (n_out,)};  x: (N, n_in) -> a: (N, n_out).
    """
    W, b = params["W"], params["b"]
    _check_features(x, W.shape[0], "dense")
    a = x @ W + b
    return a, (x, W)


def dense_backward(cache, da):
    """da: (N, n_out) -> ({"W": (n_in, n_out), "b": (n_out,)}, dx: (N, n_in))."""
    x, W = cache
    dW = x.T @ da
    db = jnp.sum(da, axis=0)
    dx = da @ W.T
    return {"W": dW, "b": db}, dx


def dense(n_out: int, activation: str = "identity", init="default", **init_kwargs) -> Layer:
    """Fully-connected layer followed by an activation, fused so an MLP's params stay a plain
    list of ``{"W", "b"}`` dicts.

    in_shape (n_in,) -> out_shape (n_out,); params {"W": (n_in, n_out), "b": (n_out,)}.
    ``init`` names a scheme of :mod:`jaxnets.nn.initializers` (or is a callable).
    """
    act_fwd, act_bwd = get_activation(activation)
    init_fn = initializers.get(init, activation=activation, **init_kwargs)

    def init_(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 1:
            raise ValueError(f"dense: expected a flat input shape (n_in,), got {tuple(in_shape)}")
        n_in = int(in_shape[0])
        W, b = init_fn(key, (n_in, n_out), (n_out,), n_in, n_out, dtype)
        return (n_out,), {"W": W, "b": b}

    def forward(params, x):
        a, dense_cache = dense_forward(params, x)
        h, act_cache = act_fwd(a)
        return h, (dense_cache, act_cache)

    def backward(cache, dh):
        dense_cache, act_cache = cache
        da = act_bwd(act_cache, dh)
        return dense_backward(dense_cache, da)

    return Layer(init_, forward, backward)


# ----------------------------------------------------------------------------- composition

def serial(*layers: Layer) -> Layer:
    """Compose layers left to right; params and dparams are lists with one entry per layer."""

    def init(key, in_shape, dtype=jnp.float32):
        keys = jax.random.split(key, len(layers))
        params, shape = [], tuple(in_shape)
        for k, layer in zip(keys, layers):
            shape, p = layer.init(k, shape, dtype)
            params.append(p)
        return shape, params

    def forward(params, x):
        if len(params) != len(layers):
            raise ValueError(f"serial: expected params for {len(layers)} layers, got {len(params)}")
        caches = []
        for layer, p in zip(layers, params):
            x, c = layer.forward(p, x)
            caches.append(c)
        return x, caches

    def backward(caches, dy):
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].backward(caches[i], dy)
        return dparams, dy

    return Layer(init, forward, backward)
