"""Losses as forward/backward pairs, plus the L2 penalty.

A loss is a :class:`Loss` of three pure functions::

    forward(s, y, mask=None) -> (value, cache)     s: (N, K) scores, value: scalar
    backward(cache, dvalue=1.0) -> ds              ds: (N, K)
    predict(s) -> (N,) int                         the class the head predicts from its scores
    labels: "class" (int labels in [0, K) or real targets) or "sign" (labels ±1)
    targets: what float targets (N, K) may hold: "probabilities" (rows of a distribution: every
             entry >= 0, each row summing to 1, as the cross-entropy heads assume) or "real" (any
             finite value: a regression head); None: "probabilities" for a head built from the
             cross-entropy forwards of this module, else "real" (see :func:`target_kind`)

``y`` is either integer labels ``(N,)`` in ``[0, K)`` (turned into one-hot targets) or real
targets ``(N, K)``. Every loss is a **mean over the batch**. ``mask`` (N,) of 0/1 weights marks
the real examples of a padded batch; the mean is then over ``sum(mask)`` examples, which is how a
ragged last batch is trained exactly without a second compilation.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.nn.layers import Static


class Loss(NamedTuple):
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    predict: Callable[..., Any]
    labels: str = "class"
    targets: str | None = None


def argmax_predict(s):
    """scores (..., K) -> (...,) int: the highest-scoring class."""
    return jnp.argmax(s, axis=-1)


def sign_predict(s):
    """scores (N, 1) or (N,) -> (N,) int labels ±1 (+1 at a score of 0)."""
    return jnp.where(jnp.reshape(s, (-1,)) >= 0, 1, -1)


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check_labels(y, num_classes: int, where: str = "labels", what: str = "labels"):
    """Raise ValueError if concrete integer labels (``what``: "token ids" for an embedding) fall
    outside [0, num_classes).

    Inside jit the check cannot run (values are unknown), and JAX would silently clamp an
    out-of-range index; data sets are therefore validated once when they are loaded.
    """
    if is_concrete(y):
        yv = np.asarray(y)
        if yv.size and (yv.min() < 0 or yv.max() >= num_classes):
            bad = yv[(yv < 0) | (yv >= num_classes)]
            raise ValueError(f"{where}: {what} must lie in [0, {num_classes}); found {bad[:5].tolist()}"
                             f" ({bad.size} out of range)")


def targets(s, y, where: str):
    """One-hot targets (N, K) from labels (N,), or real targets checked against s: (N, K)."""
    N, K = s.shape
    if jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        if jnp.shape(y) != (N,):
            raise ValueError(f"{where}: expected integer labels of shape ({N},), got {jnp.shape(y)}")
        check_labels(y, K, where)
        return jax.nn.one_hot(y, K, dtype=s.dtype)
    if K == 1 and jnp.shape(y) == (N,):
        y = jnp.reshape(y, (N, 1))
    if jnp.shape(y) != (N, K):
        raise ValueError(f"{where}: expected targets of shape ({N}, {K}) or int labels ({N},),"
                         f" got {jnp.shape(y)}")
    return jnp.asarray(y, s.dtype)


def _weights(s, mask):
    """Per-example weights w (N,) and their sum n (the mean's denominator)."""
    w = jnp.ones(s.shape[:1], s.dtype) if mask is None else jnp.asarray(mask, s.dtype)
    return w, jnp.sum(w)


def _check_scores(s, where):
    if getattr(s, "ndim", None) != 2:
        raise ValueError(f"{where}: expected scores of shape (N, K), got {jnp.shape(s)}")


# ----------------------------------------------------------------------------- softmax CE

def softmax_cross_entropy_forward(s, y, mask=None):
    """L = -1/n Σ_i w_i Σ_k t_ik log softmax(s_i)_k, stable for huge logits (max subtraction)."""
    _check_scores(s, "softmax_cross_entropy")
    t = targets(s, y, "softmax_cross_entropy")
    w, n = _weights(s, mask)
    z = s - jnp.max(s, axis=1, keepdims=True)
    lse = jnp.log(jnp.sum(jnp.exp(z), axis=1, keepdims=True))
    logp = z - lse
    value = -jnp.sum(w * jnp.sum(t * logp, axis=1)) / n
    return value, (logp, t, w, n)


def softmax_cross_entropy_backward(cache, dvalue=1.0):
    logp, t, w, n = cache
    p = jnp.exp(logp)
    # The targets sum to 1 per row, so d/ds of -Σ t log softmax(s) is softmax(s) - t.
    return dvalue * (w / n)[:, None] * (p - t)


# ----------------------------------------------------------------------------- half SSE

def half_sse_forward(s, y, mask=None):
    """L = 1/(2n) Σ_i w_i ‖s_i − t_i‖² (doc 004's MSE on scores; ½‖y−ŷ‖² for one example)."""
    _check_scores(s, "half_sse")
    t = targets(s, y, "half_sse")
    w, n = _weights(s, mask)
    r = s - t
    value = jnp.sum(w * jnp.sum(r * r, axis=1)) / (2 * n)
    return value, (r, w, n)


def half_sse_backward(cache, dvalue=1.0):
    r, w, n = cache
    return dvalue * (w / n)[:, None] * r


# ----------------------------------------------------------------------------- MSE

def mse_forward(s, y, mask=None):
    """L = 1/n Σ_i w_i ‖s_i − t_i‖² (doc 001 §3 regression)."""
    _check_scores(s, "mse")
    t = targets(s, y, "mse")
    w, n = _weights(s, mask)
    r = s - t
    value = jnp.sum(w * jnp.sum(r * r, axis=1)) / n
    return value, (r, w, n)


def mse_backward(cache, dvalue=1.0):
    r, w, n = cache
    return dvalue * (2 * w / n)[:, None] * r


# ----------------------------------------------------------------------------- logistic

def logistic_forward(s, y, mask=None):
    """L = 1/n Σ_i w_i ln(1 + exp(−y_i s_i)), labels ±1 (doc 003 mini CNN).

    s: (N, 1) or (N,) scores; y: (N,) of ±1.
    """
    s1 = jnp.reshape(s, (-1,))
    if jnp.shape(y) != s1.shape:
        raise ValueError(f"logistic: expected ±1 labels of shape {s1.shape}, got {jnp.shape(y)}")
    if is_concrete(y) and not np.all(np.isin(np.asarray(y), (-1, 1))):
        raise ValueError("logistic: labels must be -1 or +1")
    y = jnp.asarray(y, s1.dtype)
    w = jnp.ones_like(s1) if mask is None else jnp.asarray(mask, s1.dtype)
    n = jnp.sum(w)
    m = -y * s1
    value = jnp.sum(w * jnp.logaddexp(0.0, m)) / n
    return value, (m, y, w, n, Static(jnp.shape(s)))


def logistic_backward(cache, dvalue=1.0):
    m, y, w, n, s_shape = cache
    # d/ds ln(1+e^{-ys}) = -y σ(-ys)
    ds = dvalue * (w / n) * (-y) * jax.nn.sigmoid(m)
    return jnp.reshape(ds, s_shape)


# ----------------------------------------------------------------------------- token CE

def token_cross_entropy_forward(s, y, mask=None):
    """Softmax cross-entropy at every position of a sequence, mean over the real tokens.

    s: (N, T, V) logits; y: (N, T) int next-token ids; mask: (N,) per-sequence weights.
    L = -1/n Σ_{i,t} w_i log softmax(s_it)[y_it] with n = T·Σ w_i (nats per token).
    """
    if getattr(s, "ndim", None) != 3:
        raise ValueError(f"token_cross_entropy: expected logits of shape (N, T, V), got {jnp.shape(s)}")
    N, T, V = s.shape
    if jnp.shape(y) != (N, T):
        raise ValueError(f"token_cross_entropy: expected targets of shape ({N}, {T}), got {jnp.shape(y)}")
    w = None if mask is None else jnp.repeat(jnp.asarray(mask, s.dtype), T)    # (N·T,)
    value, cache = softmax_cross_entropy_forward(jnp.reshape(s, (N * T, V)), jnp.reshape(y, (N * T,)), w)
    return value, (cache, Static(s.shape))


def token_cross_entropy_backward(cache, dvalue=1.0):
    """-> ds (N, T, V) = w_i/n (softmax(s_it) − onehot(y_it))."""
    sce_cache, shape = cache
    return jnp.reshape(softmax_cross_entropy_backward(sce_cache, dvalue), shape)


LOSSES = {
    "softmax_cross_entropy": Loss(softmax_cross_entropy_forward, softmax_cross_entropy_backward,
                                  argmax_predict, targets="probabilities"),
    "half_sse": Loss(half_sse_forward, half_sse_backward, argmax_predict, targets="real"),
    "mse": Loss(mse_forward, mse_backward, argmax_predict, targets="real"),
    "logistic": Loss(logistic_forward, logistic_backward, sign_predict, labels="sign"),
    "token_cross_entropy": Loss(token_cross_entropy_forward, token_cross_entropy_backward,
                                argmax_predict, targets="probabilities"),
}

TARGET_KINDS = ("probabilities", "real")


def target_kind(head) -> str:
    """"probabilities" or "real": what float targets ``head`` (a :class:`Loss`) takes (its
    ``targets``; when None, "probabilities" for a head whose forward is one of this module's
    cross-entropies, "real" otherwise)."""
    kind = getattr(head, "targets", None)
    if kind is None:
        fwd = getattr(head, "forward", None)
        kind = "probabilities" if fwd in (softmax_cross_entropy_forward, token_cross_entropy_forward) else "real"
    if kind not in TARGET_KINDS:
        raise ValueError(f"a Loss's targets must be one of {TARGET_KINDS} (or None), got {kind!r}")
    return kind


def get(name) -> Loss:
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]


# ----------------------------------------------------------------------------- L2 penalty

def _decayed(params, decay):
    """The leaves of ``params`` whose ``decay`` mask entry is True, in flatten order."""
    leaves, tdef = jax.tree.flatten(params)
    flags = tdef.flatten_up_to(decay)
    return [(v, bool(f)) for v, f in zip(leaves, flags)]


def l2_penalty(params, decay):
    """Σ ‖W‖² over the leaves of ``params`` marked True in ``decay`` (a pytree of bools with the
    structure of params: ``model.decay(params)``, built from each layer's decay mask).

    Multiply by ``l2`` for doc 001's ``λ(‖α‖² + ‖β‖²)`` (l2 = λ) or by ``λ/2`` for doc 004's
    ``(λ/2)(‖W1‖² + ‖W2‖²)``.
    """
    # start=0.0 is weakly typed, so the sum keeps the params' dtype (float32 or float64).
    return sum((jnp.sum(v * v) for v, f in _decayed(params, decay) if f), start=0.0)


def l2_penalty_grad(params, decay):
    """d/dparams Σ‖W‖² = 2W on the decayed leaves, 0 on everything else (params' structure)."""
    leaves, tdef = jax.tree.flatten(params)
    return jax.tree.unflatten(tdef, [2 * v if f else jnp.zeros_like(v) for v, f in _decayed(params, decay)])


# ----------------------------------------------------------------------------- unfused softmax → NLL
# doc 002 Q1 derives the two local derivatives separately: ∂l/∂y_c = −1/y_c for the negative
# log-likelihood of the probabilities y, and the softmax Jacobian ∂y_i/∂o_j = y_i(δ_ij − y_j)
# (y_i(1 − y_i) on the diagonal, −y_i y_j off it). Chained, they give Q2's ∂l/∂o = y − t, which
# the fused head above uses directly. These pairs keep the two steps apart so each can be checked.

def softmax_forward(o):
    """o: (N, K) scores -> (y: (N, K) probabilities, cache) (max-shifted, stable)."""
    _check_scores(o, "softmax")
    z = o - jnp.max(o, axis=1, keepdims=True)
    e = jnp.exp(z)
    y = e / jnp.sum(e, axis=1, keepdims=True)
    return y, y


def softmax_jacobian(y):
    """y: (N, K) probabilities -> (N, K, K) with J[n, i, j] = ∂y_i/∂o_j = y_i(δ_ij − y_j)."""
    return y[:, :, None] * (jnp.eye(y.shape[1], dtype=y.dtype)[None] - y[:, None, :])


def softmax_backward(cache, dy):
    """dy: (N, K) = ∂L/∂y -> ∂L/∂o (N, K) = Jᵀ dy, through the explicit Jacobian."""
    return jnp.einsum("nij,ni->nj", softmax_jacobian(cache), dy)


def nll_forward(y, labels, mask=None):
    """L = −1/n Σ_i w_i log y_i,c(i): the mean negative log-likelihood of probabilities y (N, K)
    for integer labels (N,) (doc 002's cross-entropy of the softmax output)."""
    _check_scores(y, "nll")
    t = targets(y, labels, "nll")
    w, n = _weights(y, mask)
    value = -jnp.sum(w * jnp.log(jnp.sum(t * y, axis=1))) / n
    return value, (y, t, w, n)


def nll_backward(cache, dvalue=1.0):
    """∂L/∂y (N, K): −1/y_c in the label's column (times w_i/n), 0 elsewhere (doc 002 Q1)."""
    y, t, w, n = cache
    return dvalue * (w / n)[:, None] * jnp.where(t > 0, -t / jnp.where(t > 0, y, 1), 0)
