"""Layers as pure forward/backward pairs.

Every layer is a :class:`Layer` of three pure functions::

    init(key, in_shape, dtype)    -> (out_shape, params)
    forward(params, x, key=None)  -> (y, cache)
    backward(cache, dy)           -> (dparams, dx)

``key`` is a PRNG key for stochastic layers (dropout); deterministic layers ignore it, and
``key=None`` is evaluation mode, so a stochastic layer composes with :func:`serial` like any other.

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
    """A layer: ``init``, ``forward`` and its hand-written ``backward``; ``stochastic`` when its
    forward draws from ``key`` (a model built from it then needs a key to train)."""
    init: Callable[..., Any]
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    stochastic: bool = False


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


def with_activation(core_forward, core_backward, activation: str = "identity"):
    """Fuse an activation after a parametrised core pair, so the layer keeps one params dict.

    core_forward(params, x) -> (a, cache), core_backward(cache, da) -> (dparams, dx) become
    ``forward(params, x, key=None) -> (act(a), cache)`` and ``backward(cache, dh) -> (dparams, dx)``
    with ``da = act'(a) ⊙ dh``. Used by :func:`dense` and the convolutions of :mod:`jaxnets.nn.conv`.
    """
    act_fwd, act_bwd = get_activation(activation)

    def forward(params, x, key=None):
        a, core_cache = core_forward(params, x)
        h, act_cache = act_fwd(a)
        return h, (core_cache, act_cache)

    def backward(cache, dh):
        core_cache, act_cache = cache
        return core_backward(core_cache, act_bwd(act_cache, dh))

    return forward, backward


def _same_shape(key, in_shape, dtype=jnp.float32):
    return tuple(in_shape), {}


def activation(name: str) -> Layer:
    """An activation as a parameter-free :class:`Layer` (params ``{}``)."""
    fwd, bwd = get_activation(name)

    def forward(params, x, key=None):
        return fwd(x)

    def backward(cache, dy):
        return {}, bwd(cache, dy)

    return Layer(_same_shape, forward, backward)


# ----------------------------------------------------------------------------- dropout

def dropout_forward(x, key, rate: float):
    """Inverted dropout: keep each entry with probability ``1 - rate`` and scale by ``1/(1-rate)``.

    x: any shape -> y: same shape. ``key=None`` or ``rate == 0`` is the identity (cache None).
    """
    if key is None or rate == 0.0:
        return x, None
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    scale = 1.0 / (1.0 - rate)
    return jnp.where(keep, x * scale, jnp.zeros_like(x)), (keep, scale)


def dropout_backward(cache, dy):
    """dy: shape of x -> dx: same shape (the same mask and scale as the forward pass)."""
    if cache is None:
        return dy
    keep, scale = cache
    return jnp.where(keep, dy * scale, jnp.zeros_like(dy))


def dropout(rate: float) -> Layer:
    """Dropout as a parameter-free stochastic :class:`Layer`; ``key=None`` turns it off."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must lie in [0, 1), got {rate}")

    def forward(params, x, key=None):
        return dropout_forward(x, key, rate)

    def backward(cache, dy):
        return {}, dropout_backward(cache, dy)

    return Layer(_same_shape, forward, backward, stochastic=rate > 0)


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
    forward, backward = with_activation(dense_forward, dense_backward, activation)
    init_fn = initializers.get(init, activation=activation, **init_kwargs)

    def init_(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 1:
            raise ValueError(f"dense: expected a flat input shape (n_in,), got {tuple(in_shape)}")
        n_in = int(in_shape[0])
        W, b = init_fn(key, (n_in, n_out), (n_out,), n_in, n_out, dtype)
        return (n_out,), {"W": W, "b": b}

    return Layer(init_, forward, backward)


# ----------------------------------------------------------------------------- composition

def serial(*layers: Layer) -> Layer:
    """Compose layers left to right; params and dparams are lists with one entry per layer.
    A ``key`` is split among the layers (each stochastic layer gets its own stream)."""

    def init(key, in_shape, dtype=jnp.float32):
        keys = jax.random.split(key, len(layers))
        params, shape = [], tuple(in_shape)
        for k, layer in zip(keys, layers):
            shape, p = layer.init(k, shape, dtype)
            params.append(p)
        return shape, params

    def forward(params, x, key=None):
        if len(params) != len(layers):
            raise ValueError(f"serial: expected params for {len(layers)} layers, got {len(params)}")
        keys = [None] * len(layers) if key is None else list(jax.random.split(key, len(layers)))
        caches = []
        for layer, p, k in zip(layers, params, keys):
            x, c = layer.forward(p, x, k)
            caches.append(c)
        return x, caches

    def backward(caches, dy):
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].backward(caches[i], dy)
        return dparams, dy

    return Layer(init, forward, backward, stochastic=any(layer.stochastic for layer in layers))
