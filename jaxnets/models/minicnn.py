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

For a batch the loss (and gradient) is the mean over examples. The functions here (:func:`forward`,
:func:`backward`, :func:`grads`, :func:`sgd`) are the document's closed forms on params
``{"w", "v"}``. :func:`model` is the same network as a composition of library layers (the smallest
case of :func:`jaxnets.nn.conv.conv1d`: L = 3, k = 2, one channel in and out, no bias; ReLU; a
bias-free dense layer), trained by ``train.fit`` like any model; the closed forms are the oracle it
is tested against (:func:`to_layer_params` / :func:`from_layer_params` convert between the two).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.models.base import Model, sequential
from jaxnets.nn import conv
from jaxnets.nn import initializers
from jaxnets.nn import layers as L


def init(key, dtype=jnp.float32, std: float = 0.1):
    """w, v ~ N(0, std²) (doc 003's N(0, 0.1²) initialisation)."""
    kw, kv = jax.random.split(key)
    return {"w": std * initializers.normal_draw(kw, (2,), dtype),
            "v": std * initializers.normal_draw(kv, (2,), dtype)}


def _batch(x):
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"minicnn: expected x of shape (N, 3) or (3,), got {jnp.shape(x)}")
    return x


def forward(params, x):
    """ŷ (N,) and the cache (x, a, o, v) of the forward pass."""
    x = _batch(x)
    w, v = params["w"], params["v"]
    a1 = x[:, 0] * w[0] + x[:, 1] * w[1]
    a2 = x[:, 1] * w[0] + x[:, 2] * w[1]
    a = jnp.stack([a1, a2], axis=1)                     # (N, 2)
    o = jax.nn.relu(a)                                  # derivative 0 at the kink, as 1[a>0]
    yhat = o @ v
    return yhat, (x, a, o, v)


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


def backward(cache, dyhat):
    """The document's chain rule from ``dyhat = ∂L/∂ŷ`` (N,) to {"w": (2,), "v": (2,)}::

        ∂L/∂v_j = Σ_i dyhat_i o_ij,   ∂L/∂w1 = Σ_i dyhat_i (v1 1[a_i1>0] x_i1 + v2 1[a_i2>0] x_i2),
        ∂L/∂w2 = Σ_i dyhat_i (v1 1[a_i1>0] x_i2 + v2 1[a_i2>0] x_i3).
    """
    x, a, o, v = cache
    r = (a > 0).astype(dyhat.dtype)                      # 1[a>0], 0 at the kink
    x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
    dv = jnp.sum(dyhat[:, None] * o, axis=0)
    dw1 = jnp.sum(dyhat * (v[0] * r[:, 0] * x1 + v[1] * r[:, 1] * x2))
    dw2 = jnp.sum(dyhat * (v[0] * r[:, 0] * x2 + v[1] * r[:, 1] * x3))
    return {"w": jnp.stack([dw1, dw2]), "v": dv}


def grads(params, x, y):
    """The document's closed-form gradients, averaged over the batch. Returns (loss, grads)."""
    yhat, cache = forward(params, x)
    y = jnp.asarray(y, yhat.dtype).reshape(yhat.shape)
    g = -y * jax.nn.sigmoid(-y * yhat) / yhat.shape[0]   # ∂(mean L)/∂ŷ_i
    value = jnp.mean(jnp.logaddexp(0.0, -y * yhat))
    return value, backward(cache, g)


def grad_autodiff(params, x, y):
    return jax.value_and_grad(loss)(params, x, y)


class SGDHistory(NamedTuple):
    index: jax.Array        # (T,) example drawn at each step
    example_loss: jax.Array  # (T,) loss of that example before the update
    train_loss: jax.Array   # (T,) mean loss over the whole training set after the update


def stack(std: float = 0.1) -> L.Layer:
    """The network as a :class:`~jaxnets.nn.layers.Layer`: x (N, 3) -> reshape (N, 3, 1) ->
    conv1d k=2, 1 -> 1 channel, no bias, ReLU (N, 2, 1) -> flatten (N, 2) -> dense 1, no bias
    (N, 1). params ``[{}, {"W": (2, 1, 1)}, {}, {"W": (2, 1)}]`` (w and v), both N(0, std²) and
    both decayed by L2."""
    return L.serial(L.reshape((3, 1)),
                    conv.conv1d(1, 2, activation="relu", init="normal", bias=False, std=std),
                    conv.flatten(),
                    L.dense(1, init="normal", bias=False, std=std))


def model(std: float = 0.1) -> Model:
    """The mini CNN as a :class:`~jaxnets.models.Model`: :func:`stack` with the logistic head
    (labels ±1, ``predict`` is the sign), x (N, 3) -> scores (N, 1). Its hand-written backprop is
    the generic layers' chain rule, which equals the document's closed forms (:func:`grads`, tested);
    ``train.fit`` trains it like any model, with L2 on w and v. :func:`sgd` stays the document's
    own algorithm on ``{"w", "v"}``."""
    return sequential(stack(std), "logistic", (3,), name="minicnn")


def to_layer_params(params):
    """{"w": (2,), "v": (2,)} -> the params of :func:`stack`."""
    return [{}, {"W": jnp.reshape(params["w"], (2, 1, 1))}, {}, {"W": jnp.reshape(params["v"], (2, 1))}]


def from_layer_params(layer_params):
    """The params of :func:`stack` -> {"w": (2,), "v": (2,)} (the document's layout)."""
    return {"w": jnp.reshape(layer_params[1]["W"], (2,)), "v": jnp.reshape(layer_params[3]["W"], (2,))}


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
    X = initializers.normal_draw(key, (n, 3), dtype)
    Y = jnp.where(apply(teacher, X) >= 0, 1.0, -1.0).astype(dtype)
    return X, Y, teacher
