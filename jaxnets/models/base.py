"""Models: a :class:`~jaxnets.nn.layers.Layer` plus a loss head, behind one contract (:class:`Model`).

``backprop`` runs the **hand-written** backward rules of the layers and the head; ``grad_autodiff``
is the same loss differentiated by ``jax.grad`` (for checks and for the trainer's
``grad="autodiff"`` mode). :func:`sequential` is the one constructor: every model of the library
(MLPs, doc 003's CNNs, the mini CNN, the transformer) is built by it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn import layers as L
from jaxnets.nn import losses as losses_mod

INPUT_DTYPES = ("float", "int")


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
    decay(params) -> pytree of bools, params' structure: True where L2 reaches (the weights)

    ``mask`` (N,) weights the examples (0 for the padding rows of a ragged last batch).
    ``key`` drives the stochastic layers (dropout); ``None`` is deterministic evaluation.
    ``l2`` multiplies Σ‖W‖² over the leaves ``decay`` marks; ``l2`` other than a literal 0 on a
    model that marks none is a ValueError. ``layer``: the network as one Layer (its caches
    expose every intermediate). ``input_dtype``: "float" or "int" (token ids).
    ``stochastic``: True when a layer draws from ``key`` (training then passes one).
    """
    init: Callable[..., Any]
    apply: Callable[..., Any]
    loss: Callable[..., Any]
    backprop: Callable[..., Any]
    grad_autodiff: Callable[..., Any]
    predict: Callable[..., Any]
    decay: Callable[..., Any]
    head: losses_mod.Loss
    layer: L.Layer
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


def _decay_mask(layer: L.Layer, params, l2, name: str):
    """``layer.decay(params)``, refused when ``l2`` asks for a penalty that would reach nothing."""
    mask = layer.decay(params)
    flags = jax.tree.leaves(mask)
    if not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise ValueError(f"{name}: a layer's decay mask must hold Python bools (static), got "
                         f"{sorted({type(f).__name__ for f in flags})}")
    if not any(flags):
        shown = "l2 != 0" if isinstance(l2, jax.core.Tracer) else f"l2={l2!r}"
        raise ValueError(f"{name}: {shown} asks for an L2 penalty, but no parameter of this model is "
                         "marked for decay (model.decay(params) is all False); pass l2=0, or build "
                         "it from layers whose decay mask names their weights")
    return mask


def _with_l2(layer, name, value, params, l2):
    """``value + l2·Σ‖W‖²`` over the decayed leaves (left out statically when ``l2`` is a literal 0)."""
    if _static_zero(l2):
        return value
    return value + l2 * losses_mod.l2_penalty(params, _decay_mask(layer, params, l2, name))


def _with_l2_grad(layer, name, value, grads, params, l2):
    """(loss, grads) of :func:`_with_l2`: the penalty's gradient ``2·l2·W`` added to the weights."""
    if _static_zero(l2):
        return value, grads
    mask = _decay_mask(layer, params, l2, name)
    return (value + l2 * losses_mod.l2_penalty(params, mask),
            jax.tree.map(lambda g, r: g + l2 * r, grads, losses_mod.l2_penalty_grad(params, mask)))


def _input_check(in_shape, input_dtype, name):
    """check(x): ValueError unless x is (N, *in_shape) (float input) or has 1 + len(in_shape) axes
    (token ids: the layers check the length and the dtype)."""
    want = f"(N, {', '.join(map(str, in_shape))})"

    def check(x):
        if input_dtype == "int":
            if jnp.ndim(x) != 1 + len(in_shape):
                raise ValueError(f"{name}: expected token ids of shape {want} or shorter, got {jnp.shape(x)}")
        elif jnp.ndim(x) < 1 or tuple(jnp.shape(x)[1:]) != in_shape:
            raise ValueError(f"{name}: expected x of shape {want}, got {jnp.shape(x)}")
    return check


def sequential(layer: L.Layer, loss: str | losses_mod.Loss, in_shape: Sequence[int],
               input_dtype: str = "float", name: str = "model") -> Model:
    """A :class:`Model` from a :class:`~jaxnets.nn.layers.Layer` (usually ``layers.serial(...)``)
    and a loss head (a name of :mod:`jaxnets.nn.losses` or a ``Loss``).

    in_shape: the per-example input shape; input_dtype: "float" (x: (N, *in_shape)) or "int"
    (token ids (N, T), the layers check T). The output shape comes from ``layer.init``.
    """
    in_shape = tuple(int(d) for d in in_shape)
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"sequential: input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    head = losses_mod.get(loss)
    L.check_contract(layer, f"sequential({name}): the layer")
    shapes = []  # the output shape is static Python data: capture it while tracing init abstractly
    jax.eval_shape(lambda k: shapes.append(layer.init(k, in_shape)[0]), jax.random.key(0))
    out_shape = tuple(int(d) for d in shapes[0])
    check = _input_check(in_shape, input_dtype, name)

    def init(key, dtype=jnp.float32):
        return layer.init(key, in_shape, dtype)[1]

    def apply(params, x, key=None):
        check(x)
        return layer.forward(params, x, key)[0]

    def loss_(params, x, y, l2=0.0, mask=None, key=None):
        value, _ = head.forward(apply(params, x, key), y, mask)
        return _with_l2(layer, name, value, params, l2)

    def backprop(params, x, y, l2=0.0, mask=None, key=None):
        check(x)
        s, cache = layer.forward(params, x, key)
        value, loss_cache = head.forward(s, y, mask)
        grads, _ = layer.backward(cache, head.backward(loss_cache))
        return _with_l2_grad(layer, name, value, grads, params, l2)

    def grad_autodiff(params, x, y, l2=0.0, mask=None, key=None):
        return jax.value_and_grad(loss_)(params, x, y, l2, mask, key)

    def predict(params, x):
        return head.predict(apply(params, x))

    return Model(init, apply, loss_, backprop, grad_autodiff, predict, layer.decay, head, layer,
                 in_shape, out_shape, name, input_dtype, bool(layer.stochastic))


def microbatched(model: Model, size: int) -> Model:
    """``model`` whose ``backprop`` and ``grad_autodiff`` run a batch of N examples in chunks of
    at most ``size`` (:func:`chunking`; padding rows repeat the last example, with weight 0),
    one ``lax.scan`` step per chunk, and add the chunks' losses and gradients, each times its share of the batch's
    example weights (``mask``); the L2 penalty is added once. The same loss and gradient up to
    float round-off for every head of :mod:`jaxnets.nn.losses` (each a weighted mean over the
    batch; a custom head must be one too). Why: on a CPU a chunk's activations stay in cache where
    the whole batch's spill to memory (doc 003's CNNs at batch 128: see the README's bench).
    A stochastic model draws chunk c's dropout from ``split(key, k)[c]`` (other draws than the
    whole batch's). ``apply``, ``loss`` and ``predict`` are the model's own. Label values are
    not checked inside the chunks (the whole batch's head checks concrete labels; ``fit`` checks
    its data before training); y and mask must have x's rows.
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"microbatched({model.name}): size must be a positive int, got {size!r}")
    return model._replace(backprop=_chunked(model, model.backprop, int(size)),
                          grad_autodiff=_chunked(model, model.grad_autodiff, int(size)))


def _chunked(model: Model, fn, size: int):
    def run(params, x, y, l2=0.0, mask=None, key=None):
        n = jnp.shape(x)[0]
        k, c = chunking(n, size)
        if k == 1:
            return fn(params, x, y, l2, mask, key)
        _same_rows(model.name, n, y, mask)
        dtype = jax.tree.leaves(params)[0].dtype
        w = jnp.ones((n,), dtype) if mask is None else jnp.asarray(mask, dtype)
        xs, ys, ws = _in_chunks(x, k, c), _in_chunks(y, k, c), _in_chunks(w, k, c, zero_fill=True)
        keys = None if key is None else jax.random.split(key, k)
        total = jnp.sum(w)

        def chunk(acc, part):
            xc, yc, wc, kc = part
            got = fn(params, xc, yc, 0.0, wc, kc)
            share = jnp.sum(wc)
            # an all-padding chunk's mean is 0/0: it must add nothing
            return jax.tree.map(lambda a, g: a + jnp.where(share > 0, (share / total) * g, 0).astype(a.dtype),
                                acc, got), None
        # the sums in the dtypes one chunk's (loss, grads) come in (mixed-precision inputs included)
        shapes = jax.eval_shape(fn, params, xs[0], ys[0], 0.0, ws[0], None if keys is None else keys[0])
        zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        (value, grads), _ = jax.lax.scan(chunk, zero, (xs, ys, ws, keys))
        return _with_l2_grad(model.layer, model.name, value, grads, params, l2)
    return run


def _same_rows(name, n, y, mask):
    """The whole batch's forward would refuse y or a mask of another length; padding must not hide it."""
    for what, a in (("y", y), ("mask", mask)):
        if a is not None and jnp.shape(a)[:1] != (n,):
            raise ValueError(f"{name} (micro-batched): {what} has shape {jnp.shape(a)}, but x has {n} rows")


def chunking(n: int, size: int) -> tuple[int, int]:
    """(k chunks, c rows each) for a batch of ``n`` in chunks of at most ``size``: c is the largest
    divisor of n in [size/2, size] (no padding; the measured best for doc 003's CNNs at batch 128
    were such divisors, 32 and 16), else k = ⌈n / size⌉ chunks of ⌈n / k⌉ rows (the last padded)."""
    if n <= size:
        return 1, n
    for c in range(size, (size + 1) // 2 - 1, -1):
        if n % c == 0:
            return n // c, c
    k = -(-n // size)
    return k, -(-n // k)


def _in_chunks(a, k: int, c: int, zero_fill: bool = False):
    """(N, ...) → (k, c, ...), padded to k·c rows with copies of the last row (a valid input and
    label for any head or layer; their weight is 0), or with zeros (``zero_fill``: the weights)."""
    a = jnp.asarray(a)
    pad = k * c - a.shape[0]
    if pad:
        fill = jnp.zeros((pad, *a.shape[1:]), a.dtype) if zero_fill else jnp.repeat(a[-1:], pad, axis=0)
        a = jnp.concatenate([a, fill])
    return a.reshape(k, c, *a.shape[1:])


def mlp(sizes: Sequence[int], activation: str = "relu", loss: str = "softmax_cross_entropy",
        output_activation: str = "identity", init="default", **init_kwargs) -> Model:
    """Fully-connected network ``sizes = [d, h1, …, K]`` of any depth.

    params: list of {"W": (fan_in, fan_out), "b": (fan_out,)}, one per layer. x: (N, d) ->
    scores (N, K). Hidden layers use ``activation``; the last uses ``output_activation``
    ("identity" for scores/logits, "sigmoid" for doc 004 §1.3's all-sigmoid net).
    ``init`` ∈ {"default", "normal", "scaled_normal", "standard_normal", "zeros", "he", "glorot"};
    ``init_kwargs`` (e.g. ``std=1e-4``) go to the scheme. L2 reaches every "W", no "b".
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp: sizes must list at least an input and an output size >= 1, got {sizes}")
    L.activation(activation)
    L.activation(output_activation)
    losses_mod.get(loss)
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    stack = L.serial(*[L.dense(n, a, init, **init_kwargs) for n, a in zip(sizes[1:], acts)])
    return sequential(stack, loss, (sizes[0],), name=f"mlp{'-'.join(map(str, sizes))}")


def count_params(params) -> int:
    """Number of scalar parameters in a params pytree."""
    return sum(int(v.size) for v in jax.tree.leaves(params))
