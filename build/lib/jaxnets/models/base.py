"""Models: a layer stack plus a loss head, exposing ``init``, ``apply``, ``loss``, ``backprop``.

``backprop`` runs the **hand-written** backward rules of :mod:`jaxnets.nn.layers` /
:mod:`jaxnets.nn.losses`; ``grad_autodiff`` is the same loss differentiated by ``jax.grad`` (for
checks and for the trainer's ``grad="autodiff"`` mode).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn import layers as L
from jaxnets.nn import losses as losses_mod


class Model(NamedTuple):
    """A trainable model. Shapes: x (N, *in_shape) -> scores (N, *out_shape).

    init(key, dtype=float32) -> params
    apply(params, x) -> scores
    loss(params, x, y, l2=0.0, mask=None) -> scalar  (data loss + l2·Σ‖W‖²)
    backprop(params, x, y, l2=0.0, mask=None) -> (loss, grads)   hand-written rules
    grad_autodiff(params, x, y, l2=0.0, mask=None) -> (loss, grads)   jax.value_and_grad of loss
    predict(params, x) -> (N,) int class (argmax; sign for a single logistic output)
    """
    init: Callable[..., Any]
    apply: Callable[..., Any]
    loss: Callable[..., Any]
    backprop: Callable[..., Any]
    grad_autodiff: Callable[..., Any]
    predict: Callable[..., Any]
    layer: L.Layer
    head: losses_mod.Loss
    in_shape: tuple
    out_shape: tuple
    name: str


def _static_zero(l2) -> bool:
    """True for a Python/NumPy scalar 0 (known at trace time). Skipping the penalty then saves a
    full read of every weight per step (a reduction XLA cannot fuse into the update); a traced
    ``l2`` (a sweep's hyperparameter) always takes the general path."""
    return isinstance(l2, (int, float, np.number)) and float(l2) == 0.0


def sequential(layer: L.Layer, loss: str | losses_mod.Loss, in_shape: Sequence[int],
               name: str = "model") -> Model:
    """Wrap a layer (usually ``layers.serial(...)``) and a loss head into a :class:`Model`."""
    head = losses_mod.get(loss)
    in_shape = tuple(int(d) for d in in_shape)
    shapes = []  # the output shape is static Python data: capture it while tracing init abstractly
    jax.eval_shape(lambda k: shapes.append(layer.init(k, in_shape)[0]), jax.random.key(0))
    out_shape = tuple(int(d) for d in shapes[0])

    def init(key, dtype=jnp.float32):
        return layer.init(key, in_shape, dtype)[1]

    def _check_x(x):
        if tuple(jnp.shape(x)[1:]) != in_shape:
            raise ValueError(f"{name}: expected x of shape (N, {', '.join(map(str, in_shape))}),"
                             f" got {jnp.shape(x)}")

    def apply(params, x):
        _check_x(x)
        return layer.forward(params, x)[0]

    def loss(params, x, y, l2=0.0, mask=None):
        value, _ = head.forward(apply(params, x), y, mask)
        if _static_zero(l2):
            return value
        return value + l2 * losses_mod.l2_penalty(params)

    def backprop(params, x, y, l2=0.0, mask=None):
        _check_x(x)
        s, cache = layer.forward(params, x)
        value, loss_cache = head.forward(s, y, mask)
        ds = head.backward(loss_cache)
        grads, _ = layer.backward(cache, ds)
        if _static_zero(l2):
            return value, grads
        value = value + l2 * losses_mod.l2_penalty(params)
        grads = jax.tree.map(lambda g, r: g + l2 * r, grads, losses_mod.l2_penalty_grad(params))
        return value, grads

    def grad_autodiff(params, x, y, l2=0.0, mask=None):
        return jax.value_and_grad(loss)(params, x, y, l2, mask)

    def predict(params, x):
        s = apply(params, x)
        if head is losses_mod.LOSSES["logistic"]:
            return jnp.where(jnp.reshape(s, (-1,)) >= 0, 1, -1)
        return jnp.argmax(s, axis=-1)

    return Model(init, apply, loss, backprop, grad_autodiff, predict, layer, head,
                 in_shape, out_shape, name)


def mlp(sizes: Sequence[int], activation: str = "relu", loss: str = "softmax_cross_entropy",
        output_activation: str = "identity", init="default", **init_kwargs) -> Model:
    """Fully-connected network ``sizes = [d, h1, …, K]`` of any depth.

    params: list of {"W": (fan_in, fan_out), "b": (fan_out,)}, one per layer. x: (N, d) ->
    scores (N, K). Hidden layers use ``activation``; the last uses ``output_activation``
    ("identity" for scores/logits, "sigmoid" for doc 004 §1.3's all-sigmoid net).
    ``init`` ∈ {"default", "normal", "scaled_normal", "standard_normal", "zeros", "he", "glorot"};
    ``init_kwargs`` (e.g. ``std=1e-4``) go to the scheme.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp: sizes must list at least an input and an output size >= 1, got {sizes}")
    L.get_activation(activation)
    L.get_activation(output_activation)
    losses_mod.get(loss)
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    stack = L.serial(*[L.dense(n, a, init, **init_kwargs) for n, a in zip(sizes[1:], acts)])
    return sequential(stack, loss, (sizes[0],), name=f"mlp{'-'.join(map(str, sizes))}")


def count_params(params) -> int:
    """Number of scalar parameters in a params pytree."""
    return sum(int(v.size) for v in jax.tree.leaves(params))
