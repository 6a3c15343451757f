"""The one building-block contract of jaxnets (:class:`Layer`, stated once, in its docstring) and
the layers that need no other module.

The layers here: activations, dropout, dense (over any leading axes), reshape, and the
combinators :func:`serial` and :func:`residual`; conv1d/conv2d/max-pool/flatten live in
:mod:`jaxnets.nn.conv`, embedding/layer norm/attention/feed-forward in :mod:`jaxnets.nn.attention`.
Each Layer is built from plain ``<name>_forward``/``<name>_backward`` functions (the hand-written
rules, each right under its forward with the same variable names); those are its implementation,
the Layer is the one public shape.

The forwards carry the derivative convention their hand rules use, so ``jax.grad`` of a forward
equals the hand rule at kinks too: ReLU is ``jax.nn.relu`` (derivative 0 at 0, doc 001's ReLU'(0)
= 0, where ``jnp.maximum(x, 0)`` would give 0.5).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxnets.nn import initializers


def no_decay(params):
    """The default decay mask: False at every leaf of ``params`` (nothing is an L2 weight)."""
    return jax.tree.map(lambda _: False, params)


class Layer(NamedTuple):
    """A building block: five parts::

        init(key, in_shape, dtype)    -> (out_shape, params)
        forward(params, x, key=None)  -> (y, cache)
        backward(cache, dy)           -> (dparams, dx)
        stochastic: bool              True when forward draws from key (dropout)
        decay(params)                 -> pytree of Python bools, params' structure: True = an L2 weight

    ``in_shape``/``out_shape`` are per-example shapes (no batch axis); ``x`` carries a leading batch
    axis ``N``. ``key`` is a PRNG key for stochastic layers; deterministic layers ignore it and
    ``key=None`` is evaluation mode, so a stochastic layer composes with :func:`serial` like any
    other. ``dparams`` has exactly the structure of ``params`` (``{}`` for layers without parameters),
    so a hand-written gradient can be compared with ``jax.grad`` by one ``jax.tree.map``; ``dx`` is
    ``None`` only where x has no gradient (token ids). The parts are called positionally, as above:
    ``forward`` must take the ``key`` argument even when it ignores it (:func:`serial` refuses a
    layer whose parts cannot be called so, naming it). ``decay`` says which leaves the L2 penalty
    ``l2·Σ‖W‖²`` reaches (doc 001's λ(‖α‖² + ‖β‖²), doc 004's (λ/2)Σ‖W‖²): weight matrices and
    kernels, never biases, gains or embeddings (``decay_keys("W")`` for a dict layer). **A layer
    with weights must declare them in** ``decay``: one that declares nothing decays nothing
    (:func:`no_decay`, the default), so its weights silently get no L2 penalty whatever ``l2`` is
    (a model none of whose layers declares a weight refuses ``l2 != 0``). The mask holds Python
    bools: it follows from the params' structure, not their values, so it is known at trace time.
    """
    init: Callable[..., Any]
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    stochastic: bool = False
    decay: Callable[..., Any] = no_decay


#: how the contract calls each part (positionally): (number of arguments, the contract's words)
_CALLS = {"init": (3, "init(key, in_shape, dtype) -> (out_shape, params)"),
          "forward": (3, "forward(params, x, key=None) -> (y, cache)"),
          "backward": (2, "backward(cache, dy) -> (dparams, dx)")}


def check_contract(layer, where: str) -> None:
    """Refuse (``TypeError``, in the contract's words and naming ``where``, e.g. "serial: layer 2
    (of 3)") a ``layer`` that is not a :class:`Layer`-like object or one of whose ``init``,
    ``forward``, ``backward`` cannot take the arguments the contract passes (a ``forward(params,
    x)`` without ``key``). Signatures only: nothing is called (a part without a readable
    signature, a builtin, passes)."""
    import inspect
    missing = [part for part in _CALLS if not callable(getattr(layer, part, None))]
    if missing:
        raise TypeError(f"{where} is a {type(layer).__name__}, not a Layer: it has no callable "
                        f"{', '.join(missing)} (a Layer is layers.Layer(init, forward, backward, "
                        f"stochastic=False, decay=no_decay))")
    for part, (n, words) in _CALLS.items():
        fn = getattr(layer, part)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        try:
            sig.bind(*([None] * n))
        except TypeError as e:
            name = getattr(fn, "__qualname__", type(fn).__name__)
            hint = (" (add the key parameter, key=None, even where the layer ignores it)"
                    if part == "forward" else "")
            raise TypeError(f"{where}: its {part} {name}{sig} does not follow the Layer contract "
                            f"{words}: it is called with {n} positional arguments and refuses them "
                            f"({e}){hint}") from None


def decay_keys(*names: str):
    """A decay mask for a dict of params: True at the keys ``names`` (the layer's weights)."""
    return lambda params: {k: k in names for k in params}


@jax.tree_util.register_static
class Static(tuple):
    """Python facts a cache carries (shapes, flags, sizes, scale factors), as a tuple that is a
    pytree without leaves: a cache holding them can be returned from one ``jax.jit`` and handed to
    the backward rule inside another, where a bare int, bool or float would arrive as a traced
    array (``reshape(dy, shape)`` or ``if fast:`` then fail). Unpack it like a tuple."""


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Static:
    """Static facts kept in a cache (a pytree node without leaves, so a cache can be returned
    from jit and passed to a backward rule later)."""
    has_bias: bool
    lead: tuple


def _check_features(x, n_in: int, where: str):
    """Shape check that also fires at trace time (shapes are static under jit)."""
    if getattr(x, "ndim", 0) < 2:
        raise ValueError(f"{where}: expected x of shape (N, ..., {n_in}), got shape {jnp.shape(x)}")
    if x.shape[-1] != n_in:
        raise ValueError(f"{where}: expected x with {n_in} features (N, ..., {n_in}), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{where}: expected a floating-point x, got dtype {x.dtype}")


# ----------------------------------------------------------------------------- activations
# The implementation pairs of :func:`activation`: forward(x) -> (y, cache), backward(cache, dy) -> dx.

def sigmoid_forward(x):
    y = jax.nn.sigmoid(x)
    return y, y


def sigmoid_backward(cache, dy):
    y = cache
    return dy * y * (1 - y)


def relu_forward(x):
    # jax.nn.relu computes jnp.maximum(x, 0) (the same values) and differentiates to 0 at 0,
    # the convention of relu_backward (doc 001: ReLU'(0) = 0).
    y = jax.nn.relu(x)
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


_ACTIVATIONS = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "identity": (identity_forward, identity_backward),
}
ACTIVATIONS = tuple(_ACTIVATIONS)


def _activation_pair(name: str):
    """(forward, backward) pair of an activation by name; ValueError naming the options."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _fuse_activation(core_forward, core_backward, activation: str = "identity"):
    """Fuse an activation after a parametrised core pair, so the layer keeps one params dict.

    core_forward(params, x) -> (a, cache), core_backward(cache, da) -> (dparams, dx) become
    ``forward(params, x, key=None) -> (act(a), cache)`` and ``backward(cache, dh) -> (dparams, dx)``
    with ``da = act'(a) ⊙ dh``. Used by :func:`dense` and the convolutions of :mod:`jaxnets.nn.conv`.
    """
    act_fwd, act_bwd = _activation_pair(activation)

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
    """An activation ("sigmoid", "relu", "tanh", "identity") as a parameter-free :class:`Layer`:
    x (N, ...) -> y (N, ...), params ``{}``."""
    fwd, bwd = _activation_pair(name)

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
    return jnp.where(keep, x * scale, jnp.zeros_like(x)), (keep, Static((scale,)))


def dropout_backward(cache, dy):
    """dy: shape of x -> dx: same shape (the same mask and scale as the forward pass)."""
    if cache is None:
        return dy
    keep, (scale,) = cache
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
    """Affine map on the last axis, ``a = x W (+ b)``, over any leading axes.

    params: {"W": (n_in, n_out), "b": (n_out,)} (or {"W"} alone, no bias);
    x: (N, ..., n_in) -> a: (N, ..., n_out).
    """
    W = params["W"]
    _check_features(x, W.shape[0], "dense")
    lead = x.shape[:-1]
    x2 = jnp.reshape(x, (-1, W.shape[0]))                          # (M, n_in)
    a2 = x2 @ W                                                     # (M, n_out)
    if "b" in params:
        a2 = a2 + params["b"][None, :]
    return jnp.reshape(a2, lead + (W.shape[1],)), (x2, W, _Static("b" in params, lead))


# XLA:CPU hands ``x2ᵀ da2`` (the contraction over the batch axis) to Eigen, and at some shapes that
# kernel is slow: 74 GFLOP/s for doc 004's 3072 -> 50 layer at batch 500, where the same product
# into the (n_out, n_in) layout ran at 302 (one run of ``tools/weight_grad_layouts.py``). That way
# was faster for narrow outputs (n_out <= 32) and where n_in is a multiple of 128; elsewhere the
# plain product mostly tied or won (784 inputs, small products, convolutions with few input
# channels). The thresholds below are a pattern over the measured shapes, not a table: at their
# edges they may pick the slower way by a few microseconds. The optimization barrier keeps XLA from
# folding the final transpose back into the product. Under vmap the rule sees one configuration's
# shapes; it applies on every backend (a GPU's GEMMs read either layout; there it costs one
# transpose of a weight-sized result).
NARROW_OUT, NARROW_RATIO, NARROW_MIN_MACS = 32, 4, 2 ** 17
ALIGNED_IN, ALIGNED_RATIO, ALIGNED_MIN_MACS = 128, 2, 2 ** 22


def transposed_weight_grad(m: int, n_in: int, n_out: int) -> bool:
    """Whether :func:`weight_grad` computes an (m, n_in)ᵀ (m, n_out) product as ``(da2ᵀ x2)ᵀ``."""
    macs = m * n_in * n_out
    narrow = n_out <= NARROW_OUT and n_in >= NARROW_RATIO * n_out and macs >= NARROW_MIN_MACS
    aligned = n_in % ALIGNED_IN == 0 and n_in >= ALIGNED_RATIO * n_out and macs >= ALIGNED_MIN_MACS
    return narrow or aligned


_PLAIN_ONLY = [False]


@contextlib.contextmanager
def plain_weight_grads():
    """Inside, :func:`weight_grad` takes the plain way at every shape, in the programs traced there
    (process-wide, every thread; a function jax traced before keeps its trace): the measurements of
    ``tools/weight_grad_layouts.py`` and ``tools/sweep_ways.py``."""
    before, _PLAIN_ONLY[0] = _PLAIN_ONLY[0], True
    try:
        yield
    finally:
        _PLAIN_ONLY[0] = before


def weight_grad(x2, da2):
    """The weight gradient ``x2ᵀ da2``: x2 (M, n_in), da2 (M, n_out) -> (n_in, n_out).

    Where :func:`transposed_weight_grad` says so, computed as ``(da2ᵀ x2)ᵀ``: the same products
    summed by another kernel, perhaps in another order (round-off only), the faster one there."""
    if not _PLAIN_ONLY[0] and transposed_weight_grad(x2.shape[0], x2.shape[1], da2.shape[1]):
        return jax.lax.optimization_barrier(da2.T @ x2).T
    return x2.T @ da2


def dense_backward(cache, da, wgrad=None):
    """da: (N, ..., n_out) -> ({"W": (n_in, n_out)[, "b": (n_out,)]}, dx: (N, ..., n_in)).

    ``dW = xᵀ da``, ``db = Σ da`` over every leading axis, ``dx = da Wᵀ``. ``wgrad(x2, da2)``
    computes ``dW`` (default :func:`weight_grad`; the transformer passes another kernel's layout).
    """
    x2, W, st = cache
    da2 = jnp.reshape(da, (-1, W.shape[1]))                        # (M, n_out)
    dparams = {"W": (wgrad or weight_grad)(x2, da2)}
    if st.has_bias:
        dparams["b"] = jnp.sum(da2, axis=0)
    return dparams, jnp.reshape(da2 @ W.T, st.lead + (W.shape[0],))


def dense(n_out: int, activation: str = "identity", init="default", bias: bool = True,
          **init_kwargs) -> Layer:
    """Fully-connected layer on the last axis followed by an activation, fused so an MLP's params
    stay a plain list of ``{"W", "b"}`` dicts.

    in_shape (..., n_in) -> out_shape (..., n_out); params {"W": (n_in, n_out), "b": (n_out,)}
    (no "b" when ``bias=False``); decay: "W". ``init`` names a scheme of
    :mod:`jaxnets.nn.initializers` (or is a callable).
    """
    forward, backward = _fuse_activation(dense_forward, dense_backward, activation)
    init_fn = initializers.get(init, activation=activation, **init_kwargs)

    def init_(key, in_shape, dtype=jnp.float32):
        if len(in_shape) < 1:
            raise ValueError(f"dense: expected an input shape (..., n_in), got {tuple(in_shape)}")
        n_in = int(in_shape[-1])
        W, b = init_fn(key, (n_in, n_out), (n_out,), n_in, n_out, dtype)
        return tuple(in_shape[:-1]) + (n_out,), ({"W": W, "b": b} if bias else {"W": W})

    return Layer(init_, forward, backward, decay=decay_keys("W"))


# ----------------------------------------------------------------------------- reshape

def reshape(out_shape) -> Layer:
    """Per-example reshape (params ``{}``): x (N, *in_shape) -> (N, *out_shape), row-major;
    the backward reshapes dy back. (:func:`jaxnets.nn.conv.flatten` is the case (prod(in_shape),).)"""
    out_shape = tuple(int(d) for d in out_shape)

    def init(key, in_shape, dtype=jnp.float32):
        if math.prod(in_shape) != math.prod(out_shape):
            raise ValueError(f"reshape: cannot reshape {tuple(in_shape)} into {out_shape}")
        return out_shape, {}

    def forward(params, x, key=None):
        return jnp.reshape(x, x.shape[:1] + out_shape), Static(x.shape)

    def backward(cache, dy):
        return {}, jnp.reshape(dy, cache)

    return Layer(init, forward, backward)


# ----------------------------------------------------------------------------- combinators

def serial(*layers: Layer) -> Layer:
    """Compose layers left to right; params, dparams and the decay mask are lists with one entry
    per layer. A ``key`` is split among the layers (each layer its own stream, stax's rule), and
    the composition is stochastic when any layer is. A layer whose parts cannot be called as the
    contract calls them is refused here, by its index (``TypeError``)."""
    for i, layer in enumerate(layers):
        check_contract(layer, f"serial: layer {i} (of {len(layers)})")
    stochastic = any(layer.stochastic for layer in layers)

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
        for i, (layer, p, k) in enumerate(zip(layers, params, keys)):
            out = layer.forward(p, x, k)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"serial: layer {i} (of {len(layers)})'s forward must return (y, cache), got "
                                f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
            x, c = out
            caches.append(c)
        return x, caches

    def backward(caches, dy):
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            try:
                dparams[i], dy = layers[i].backward(caches[i], dy)
            except (TypeError, ValueError) as e:
                if i == len(layers) - 1:
                    raise
                # a learner's usual slip: the layer above returned a dx of the wrong shape, and
                # this one fails on it; name both (trace time, no cost to a compiled step)
                raise type(e)(f"serial: layer {i} (of {len(layers)})'s backward failed on the dy that layer "
                              f"{i + 1}'s backward returned as its dx (shape {tuple(jnp.shape(dy))}; a dx has "
                              f"the shape of that layer's input): {e}") from e
        return dparams, dy

    def decay(params):
        return [layer.decay(p) for layer, p in zip(layers, params)]

    return Layer(init, forward, backward, stochastic, decay)


def residual(layer: Layer) -> Layer:
    """The residual connection ``y = x + f(x)`` around ``layer`` (its params, its decay mask).

    x: (N, *shape) -> y: same shape (``layer`` must keep the shape). Backward: the gradient
    reaches x both directly and through f, ``dx = dy + f'ᵀ dy``.
    """
    check_contract(layer, "residual: its layer")

    def init(key, in_shape, dtype=jnp.float32):
        out_shape, params = layer.init(key, in_shape, dtype)
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(f"residual: the inner layer maps {tuple(in_shape)} to {tuple(out_shape)};"
                             " a residual needs the same shape")
        return tuple(out_shape), params

    def forward(params, x, key=None):
        fx, cache = layer.forward(params, x, key)
        return x + fx, cache

    def backward(cache, dy):
        dparams, dx_f = layer.backward(cache, dy)
        return dparams, dy + dx_f

    return Layer(init, forward, backward, layer.stochastic, layer.decay)
