"""Models: a network's forward/backward pair plus a loss head, behind one contract (:class:`Model`).

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
    """A trainable model: pure functions over a params pytree. Shapes: x (N, *in_shape) ->
    scores (N, *out_shape).

    init(key, dtype=float32) -> params
    apply(params, x, key=None) -> scores
    loss(params, x, y, l2=0.0, mask=None, key=None) -> scalar  (data loss + l2·Σ‖W‖²)
    backprop(params, x, y, l2=0.0, mask=None, key=None) -> (loss, grads)   hand-written rules
    grad_autodiff(params, x, y, l2=0.0, mask=None, key=None) -> (loss, grads)
                                                        jax.value_and_grad of ``loss``
    predict(params, x) -> int classes (``head.predict`` of the scores, no dropout)

    ``mask`` (N,) weights the examples (0 for the padding rows of a ragged last batch).
    ``key`` drives the stochastic layers (dropout); ``None`` is deterministic evaluation.
    ``input_dtype``: "float" (x is cast to the params' dtype) or "int" (token ids).
    ``stochastic``: True when a layer draws from ``key`` (training then passes one).
    """
    init: Callable[..., Any]
    apply: Callable[..., Any]
    loss: Callable[..., Any]
    backprop: Callable[..., Any]
    grad_autodiff: Callable[..., Any]
    predict: Callable[..., Any]
    head: losses_mod.Loss
    in_shape: tuple
    out_shape: tuple
    name: str
    input_dtype: str = "float"
    stochastic: bool = False


def _static_zero(l2) -> bool:
    """True for a Python/NumPy scalar 0 (known at trace time). Skipping the penalty then saves a
    full read of every weight per step (a reduction XLA cannot fuse into the update); a traced
    ``l2`` (a sweep's hyperparameter) always takes the general path."""
    return isinstance(l2, (int, float, np.number)) and float(l2) == 0.0


def with_l2(value, params, l2):
    """``value + l2·Σ‖W‖²`` (the penalty left out statically when ``l2`` is a literal 0)."""
    return value if _static_zero(l2) else value + l2 * losses_mod.l2_penalty(params)


def with_l2_grad(value, grads, params, l2):
    """(loss, grads) of :func:`with_l2`: the penalty's gradient ``2·l2·W`` added to the weights."""
    if _static_zero(l2):
        return value, grads
    return (value + l2 * losses_mod.l2_penalty(params),
            jax.tree.map(lambda g, r: g + l2 * r, grads, losses_mod.l2_penalty_grad(params)))


def from_pair(forward, backward, init, head, in_shape, out_shape, name, input_dtype="float",
              stochastic=False, check_x=None) -> Model:
    """A :class:`Model` from a forward/backward pair of the whole network and a loss head.

    forward(params, x, key=None) -> (scores, cache); backward(cache, dscores) -> (grads, dx).
    ``check_x(x)`` (optional) validates the input before anything is computed.
    """
    head = losses_mod.get(head)
    check = check_x or (lambda x: None)

    def apply(params, x, key=None):
        check(x)
        return forward(params, x, key)[0]

    def loss(params, x, y, l2=0.0, mask=None, key=None):
        value, _ = head.forward(apply(params, x, key), y, mask)
        return with_l2(value, params, l2)

    def backprop(params, x, y, l2=0.0, mask=None, key=None):
        check(x)
        s, cache = forward(params, x, key)
        value, loss_cache = head.forward(s, y, mask)
        grads, _ = backward(cache, head.backward(loss_cache))
        return with_l2_grad(value, grads, params, l2)

    def grad_autodiff(params, x, y, l2=0.0, mask=None, key=None):
        return jax.value_and_grad(loss)(params, x, y, l2, mask, key)

    def predict(params, x):
        return head.predict(apply(params, x))

    return Model(init, apply, loss, backprop, grad_autodiff, predict, head, tuple(in_shape),
                 tuple(out_shape), name, input_dtype, bool(stochastic))


def sequential(layer: L.Layer, loss: str | losses_mod.Loss, in_shape: Sequence[int],
               name: str = "model") -> Model:
    """Wrap a layer (usually ``layers.serial(...)``) and a loss head into a :class:`Model`."""
    in_shape = tuple(int(d) for d in in_shape)
    shapes = []  # the output shape is static Python data: capture it while tracing init abstractly
    jax.eval_shape(lambda k: shapes.append(layer.init(k, in_shape)[0]), jax.random.key(0))
    out_shape = tuple(int(d) for d in shapes[0])

    def init(key, dtype=jnp.float32):
        return layer.init(key, in_shape, dtype)[1]

    def check_x(x):
        if tuple(jnp.shape(x)[1:]) != in_shape:
            raise ValueError(f"{name}: expected x of shape (N, {', '.join(map(str, in_shape))}),"
                             f" got {jnp.shape(x)}")

    return from_pair(layer.forward, layer.backward, init, loss, in_shape, out_shape, name,
                     "float", layer.stochastic, check_x)


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
