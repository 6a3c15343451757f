"""The mini CNN of doc 003 Problem 2, its closed-form gradients and its SGD algorithm.

Input ``x = (x1, x2, x3)``, one 1-D convolution filter ``w = (w1, w2)`` (no bias), ReLU, a
fully-connected output ``v = (v1, v2)`` (no bias), logistic loss with labels ``y ∈ {−1, +1}``::

    a1 = x1 w1 + x2 w2,   a2 = x2 w1 + x3 w2,   o = relu(a),   ŷ = o1 v1 + o2 v2,
    L(ŷ, y) = ln(1 + exp(−y ŷ)).

params ``{"w": (2,), "v": (2,)}``; x ``(N, 3)`` (or one example ``(3,)``); y ``(N,)`` of ±1.

Closed-form gradients (doc 003, written with σ(t) = 1/(1 + e^{−t}) and ``1[a>0]`` the ReLU
derivative, 0 at the kink)::

    ∂L/∂ŷ  = −y σ(−y ŷ)
    ∂L/∂v1 = −y σ(−y ŷ) o1                       ∂L/∂v2 = −y σ(−y ŷ) o2
    ∂L/∂w1 = −y σ(−y ŷ) (v1 1[a1>0] x1 + v2 1[a2>0] x2)
    ∂L/∂w2 = −y σ(−y ŷ) (v1 1[a1>0] x2 + v2 1[a2>0] x3)

For a batch the loss (and gradient) is the mean over examples. The network is the smallest case of
:func:`jaxnets.nn.conv.conv1d` (L = 3, k = 2, one channel in and out, zero bias) followed by a ReLU
and a bias-free dense layer; ``tests/test_minicnn.py`` checks that equivalence.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


def init(key, dtype=jnp.float32, std: float = 0.1):
    """w, v ~ N(0, std²) (doc 003's N(0, 0.1²) initialisation)."""
    kw, kv = jax.random.split(key)
    return {"w": std * jax.random.normal(kw, (2,), dtype), "v": std * jax.random.normal(kv, (2,), dtype)}


def _batch(x):
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"minicnn: expected x of shape (N, 3) or (3,), got {jnp.shape(x)}")
    return x


def forward(params, x):
    """ŷ (N,) and the cache (x, a, o) of the forward pass."""
    x = _batch(x)
    w, v = params["w"], params["v"]
    a1 = x[:, 0] * w[0] + x[:, 1] * w[1]
    a2 = x[:, 1] * w[0] + x[:, 2] * w[1]
    a = jnp.stack([a1, a2], axis=1)                     # (N, 2)
    o = jnp.maximum(a, 0)
    yhat = o @ v
    return yhat, (x, a, o)


def apply(params, x):
    return forward(params, x)[0]


def predict(params, x):
    """Predicted labels ±1 (sign of ŷ, +1 at 0)."""
    return jnp.where(apply(params, x) >= 0, 1, -1)


def loss(params, x, y):
    """Mean logistic loss ``1/N Σ ln(1 + exp(−y_i ŷ_i))`` (computed stably)."""
    yhat = apply(params, x)
    y = jnp.asarray(y, yhat.dtype).reshape(yhat.shape)
    return jnp.mean(jnp.logaddexp(0.0, -y * yhat))


def grads(params, x, y):
    """The document's closed-form gradients, averaged over the batch. Returns (loss, grads)."""
    yhat, (x, a, o) = forward(params, x)
    y = jnp.asarray(y, yhat.dtype).reshape(yhat.shape)
    v = params["v"]
    N = yhat.shape[0]
    g = -y * jax.nn.sigmoid(-y * yhat) / N               # ∂(mean L)/∂ŷ_i
    r = (a > 0).astype(yhat.dtype)                       # 1[a>0], 0 at the kink
    x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
    dv1 = jnp.sum(g * o[:, 0])
    dv2 = jnp.sum(g * o[:, 1])
    dw1 = jnp.sum(g * (v[0] * r[:, 0] * x1 + v[1] * r[:, 1] * x2))
    dw2 = jnp.sum(g * (v[0] * r[:, 0] * x2 + v[1] * r[:, 1] * x3))
    value = jnp.mean(jnp.logaddexp(0.0, -y * yhat))
    return value, {"w": jnp.stack([dw1, dw2]), "v": jnp.stack([dv1, dv2])}


def grad_autodiff(params, x, y):
    return jax.value_and_grad(loss)(params, x, y)


class SGDHistory(NamedTuple):
    index: jax.Array        # (T,) example drawn at each step
    example_loss: jax.Array  # (T,) loss of that example before the update
    train_loss: jax.Array   # (T,) mean loss over the whole training set after the update


def _sgd_scan(params, X, Y, idx, lr):
    def step(p, i):
        xi, yi = X[i], Y[i]
        li, g = grads(p, xi, yi)                         # gradients at the *old* parameters
        # all four updates from the old values (a simultaneous update, as the algorithm states)
        new = {"w": p["w"] - lr * g["w"], "v": p["v"] - lr * g["v"]}
        return new, (li, loss(new, X, Y))

    params, (ex_loss, tr_loss) = lax.scan(step, params, idx)
    return params, ex_loss, tr_loss


_sgd_scan_jit = jax.jit(_sgd_scan)


def sgd(params, X, Y, key, num_steps: int, lr: float = 0.1):
    """doc 003's SGD for the mini CNN, as one jitted ``lax.scan``.

    Each step draws one example uniformly at random (indices from ``key``), runs the forward pass,
    computes the four gradients at the current (old) parameters and updates w1, w2, v1, v2
    simultaneously: ``θ ← θ − lr · ∂L/∂θ``. Returns (params, :class:`SGDHistory`).
    """
    X = _batch(X)
    Y = jnp.asarray(Y, X.dtype).reshape(X.shape[0])
    idx = jax.random.randint(key, (int(num_steps),), 0, X.shape[0])
    lr = jnp.asarray(lr, X.dtype)
    params, ex_loss, tr_loss = _sgd_scan_jit(params, X, Y, idx, lr)
    return params, SGDHistory(idx, ex_loss, tr_loss)


def synthetic_pattern_data(key, n: int, dtype=jnp.float32, teacher=None):
    """A ±1 data set whose label is decided by a local 1-D pattern.

    x ~ N(0, I_3); the label is the sign of a *teacher* mini CNN, by default filter (1, −1)
    (a falling-edge detector) and read-out (1, −1): ``y = +1`` iff the drop x1 → x2 (clipped at 0)
    exceeds the drop x2 → x3. Returns (X (n, 3), Y (n,) ±1 in ``dtype``, teacher params).
    """
    if teacher is None:
        teacher = {"w": jnp.array([1.0, -1.0], dtype), "v": jnp.array([1.0, -1.0], dtype)}
    X = jax.random.normal(key, (n, 3), dtype)
    Y = jnp.where(apply(teacher, X) >= 0, 1.0, -1.0).astype(dtype)
    return X, Y, teacher
