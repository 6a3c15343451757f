"""Reference oracles without JAX: doc 002's network written three times, and doc 004's gradient-check procedure.

The network is doc 002's: one sigmoid hidden layer, a softmax output and cross-entropy,

    a = x W1 + b1,   h = σ(a),   s = h W2 + b2,   p = softmax(s),   ℓ = −log p_y,

with the loss of a batch the **mean** of ℓ over its examples (as the library's
``softmax_cross_entropy``). Parameters use the library layout, so every function here can be
compared directly with ``models.mlp([d, h, K], activation="sigmoid")``::

    params = [{"W": W1 (d, h), "b": b1 (h,)}, {"W": W2 (h, K), "b": b2 (K,)}]

Three levels, as doc 002 builds them (and as the rungs of the jit benchmark ladder):

1. **scalar** (``scalar_*``): pure Python lists and loops, one example at a time. Parameters are
   nested lists with the same layout (``W[i][j]`` = weight from input ``i`` to unit ``j``);
   ``to_lists`` / ``from_lists`` convert. ``scalar_train`` is doc 002's scalar training loop:
   every step draws one example *with replacement* and takes an SGD step on it.
2. **per example** (``example_*``): NumPy vectors, one example at a time; a minibatch gradient is
   the mean of the per-example gradients.
3. **batched** (``batched_*``): NumPy matrices, one minibatch at a time ("homework style").
   Works in the dtype of the parameters (float32 or float64, never silently promoted);
   ``batched_sgd_epoch`` is one epoch of minibatch SGD in fixed order (the NumPy baseline of the
   jit benchmark, e.g. 784-256-10 at batch 5 or 50).

Every minibatch loss is a mean over the examples of that batch; a ragged last batch is a mean over
its own (fewer) examples, which is what the library's masked batches compute.

Timing note: the NumPy rungs call BLAS; on a loaded machine a multi-threaded BLAS can spin and
slow small matmuls 10-50× (seen here: 784-256-10 float32 epoch at batch 50, 0.08 s with one
BLAS thread vs 1.4 s with two under load). Benchmarks should pin ``OMP_NUM_THREADS`` /
``OPENBLAS_NUM_THREADS`` (or use ``threadpoolctl``) and report the setting.

Nothing here imports JAX; the module is an oracle for the tests, not part of the library's
computation path.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np

__all__ = [
    "init_params", "to_numpy", "to_lists", "from_lists",
    "scalar_sigmoid", "scalar_forward", "scalar_loss", "scalar_backward", "scalar_sgd_step",
    "scalar_loss_and_grads", "scalar_sgd_epoch", "scalar_train",
    "example_forward", "example_backward", "example_loss_and_grads", "example_sgd_epoch",
    "batched_forward", "batched_loss", "batched_loss_and_grads", "batched_sgd_step",
    "batched_sgd_epoch", "sigmoid",
    "doc004_eval_numerical_gradient", "doc004_rel_error", "doc004_two_layer_loss",
]


# ============================================================================ parameters

def init_params(d: int, h: int, K: int, seed: int = 0, dtype=np.float64, std: float = 1.0):
    """doc 002's init: every weight and bias ~ N(0, std²) (std = 1: standard normal).

    Returns library-layout NumPy params ``[{"W": (d, h), "b": (h,)}, {"W": (h, K), "b": (K,)}]``.
    """
    rng = np.random.default_rng(seed)
    shapes = [((d, h), (h,)), ((h, K), (K,))]
    return [{"W": (std * rng.standard_normal(ws)).astype(dtype),
             "b": (std * rng.standard_normal(bs)).astype(dtype)} for ws, bs in shapes]


def to_numpy(params, dtype=None):
    """Copy library params (JAX or NumPy arrays) into NumPy arrays (optionally cast to ``dtype``)."""
    return [{"W": np.array(p["W"], dtype=dtype), "b": np.array(p["b"], dtype=dtype)} for p in params]


def to_lists(params):
    """Library params -> nested Python lists of floats (same layout) for the scalar code."""
    return [{"W": np.asarray(p["W"], np.float64).tolist(), "b": np.asarray(p["b"], np.float64).tolist()}
            for p in params]


def from_lists(params, dtype=np.float64):
    """Nested-list params -> NumPy params."""
    return [{"W": np.array(p["W"], dtype=dtype), "b": np.array(p["b"], dtype=dtype)} for p in params]


def _check_two_layers(params):
    if len(params) != 2:
        raise ValueError(f"reference: expected params of 2 layers [{{W1, b1}}, {{W2, b2}}], got {len(params)}")


# ============================================================================ 1. scalar

def scalar_sigmoid(a: float) -> float:
    """σ(a) = 1 / (1 + e^{−a}), evaluated without overflow for large |a|."""
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _scalar_scores(params, x):
    """Hidden activations h, scores s and log Σ exp(s) (max-shifted) of one example."""
    (l1, l2) = params
    W1, b1, W2, b2 = l1["W"], l1["b"], l2["W"], l2["b"]
    d, H, K = len(W1), len(b1), len(b2)
    if len(x) != d:
        raise ValueError(f"scalar_forward: expected {d} features, got {len(x)}")
    h = []
    for j in range(H):
        a = b1[j]
        for i in range(d):
            a += x[i] * W1[i][j]
        h.append(scalar_sigmoid(a))
    s = []
    for k in range(K):
        v = b2[k]
        for j in range(H):
            v += h[j] * W2[j][k]
        s.append(v)
    m = max(s)
    lse = m + math.log(sum(math.exp(v - m) for v in s))
    return h, s, lse


def scalar_forward(params, x: Sequence[float]):
    """One example, pure Python. Returns ``(h, p)``: hidden activations and softmax probabilities."""
    h, s, lse = _scalar_scores(params, x)
    return h, [math.exp(v - lse) for v in s]


def scalar_loss(params, x, y: int) -> float:
    """ℓ = −log p_y = log Σ_k e^{s_k} − s_y for one example (stable for huge scores)."""
    _, s, lse = _scalar_scores(params, x)
    return lse - s[y]


def scalar_backward(params, x, y: int):
    """Loss and gradients of one example, pure Python. Returns ``(loss, grads)`` (nested lists)."""
    (l1, l2) = params
    W2 = l2["W"]
    d, H, K = len(x), len(l1["b"]), len(l2["b"])
    if not 0 <= y < K:
        raise ValueError(f"scalar_backward: label {y} outside [0, {K})")
    h, s, lse = _scalar_scores(params, x)
    p = [math.exp(v - lse) for v in s]
    loss = lse - s[y]
    # output layer: dℓ/ds_k = p_k − [k = y]
    ds = [p[k] - (1.0 if k == y else 0.0) for k in range(K)]
    dW2 = [[h[j] * ds[k] for k in range(K)] for j in range(H)]
    db2 = list(ds)
    # hidden layer: dℓ/dh_j = Σ_k W2[j][k] ds_k,  dℓ/da_j = dℓ/dh_j · h_j (1 − h_j)
    da = []
    for j in range(H):
        dh = 0.0
        for k in range(K):
            dh += W2[j][k] * ds[k]
        da.append(dh * h[j] * (1.0 - h[j]))
    dW1 = [[x[i] * da[j] for j in range(H)] for i in range(d)]
    db1 = list(da)
    return loss, [{"W": dW1, "b": db1}, {"W": dW2, "b": db2}]


def _scalar_axpy(params, grads, scale: float):
    """params + scale · grads, as new nested lists."""
    out = []
    for p, g in zip(params, grads):
        out.append({"W": [[w + scale * gw for w, gw in zip(row, grow)] for row, grow in zip(p["W"], g["W"])],
                    "b": [b + scale * gb for b, gb in zip(p["b"], g["b"])]})
    return out


def scalar_sgd_step(params, x, y: int, lr: float):
    """One SGD step on one example. Returns ``(loss before the step, new params)``."""
    loss, grads = scalar_backward(params, x, y)
    return loss, _scalar_axpy(params, grads, -lr)


def _rows(X):
    return X.tolist() if hasattr(X, "tolist") else [list(r) for r in X]


def _labels(y):
    return [int(v) for v in (y.tolist() if hasattr(y, "tolist") else y)]


def scalar_loss_and_grads(params, X, y):
    """Mean loss and mean gradients over a batch, one example at a time (pure Python)."""
    X, y = _rows(X), _labels(y)
    n = len(X)
    total, acc = 0.0, None
    for xi, yi in zip(X, y):
        loss, g = scalar_backward(params, xi, yi)
        total += loss
        acc = g if acc is None else _scalar_axpy(acc, g, 1.0)
    zero = [{"W": [[0.0] * len(r) for r in p["W"]], "b": [0.0] * len(p["b"])} for p in params]
    return total / n, _scalar_axpy(zero, acc, 1.0 / n)


def scalar_sgd_epoch(params, X, y, lr: float):
    """One epoch of per-example SGD (batch size 1) in fixed order. Returns ``(mean loss, params)``."""
    X, y = _rows(X), _labels(y)
    total = 0.0
    for xi, yi in zip(X, y):
        loss, params = scalar_sgd_step(params, xi, yi, lr)
        total += loss
    return total / len(X), params


def scalar_train(params, X, y, lr: float, epochs: int, seed: int = 0, steps_per_epoch: int | None = None):
    """doc 002's scalar training loop: each step draws one example **with replacement**
    (``random.Random(seed)``) and takes an SGD step on it.

    An "epoch" is ``steps_per_epoch`` steps (default: the number of examples). Returns
    ``(params, epoch_losses)`` where each entry is the mean of the per-step losses (each measured
    before its update) over that epoch.
    """
    X, y = _rows(X), _labels(y)
    rng = random.Random(seed)
    n = len(X)
    steps = n if steps_per_epoch is None else int(steps_per_epoch)
    history = []
    for _ in range(epochs):
        total = 0.0
        for _ in range(steps):
            i = rng.randrange(n)
            loss, params = scalar_sgd_step(params, X[i], y[i], lr)
            total += loss
        history.append(total / steps)
    return params, history


# ============================================================================ NumPy helpers

def sigmoid(a):
    """σ(a) = ½(1 + tanh(a/2)): equal to 1/(1+e^{−a}), never overflows, keeps the dtype."""
    return 0.5 * (np.tanh(0.5 * a) + 1)


def _log_softmax(s):
    z = s - s.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ============================================================================ 2. per example

def example_forward(params, x):
    """One example x: (d,) -> (h: (H,), p: (K,)), NumPy vectors."""
    _check_two_layers(params)
    (l1, l2) = params
    h = sigmoid(x @ l1["W"] + l1["b"])
    p = np.exp(_log_softmax(h @ l2["W"] + l2["b"]))
    return h, p


def example_backward(params, x, y: int):
    """One example: ``(loss, grads)`` with vector outer products (doc 002's vectorised rung)."""
    (l1, l2) = params
    K = l2["b"].shape[0]
    if not 0 <= int(y) < K:
        raise ValueError(f"example_backward: label {y} outside [0, {K})")
    h = sigmoid(x @ l1["W"] + l1["b"])
    logp = _log_softmax(h @ l2["W"] + l2["b"])
    ds = np.exp(logp)
    ds[y] -= 1                                   # dℓ/ds = p − onehot(y)
    da = (l2["W"] @ ds) * h * (1 - h)            # dℓ/da = (W2 ds) ⊙ σ'(a)
    grads = [{"W": np.outer(x, da), "b": da}, {"W": np.outer(h, ds), "b": ds}]
    return -logp[y], grads


def example_loss_and_grads(params, X, y):
    """Mean loss and gradients over a batch, looping over its examples."""
    n = X.shape[0]
    total, acc = 0.0, None
    for i in range(n):
        loss, g = example_backward(params, X[i], int(y[i]))
        total += loss
        acc = g if acc is None else [{k: a[k] + gi[k] for k in a} for a, gi in zip(acc, g)]
    return total / n, [{k: v / n for k, v in a.items()} for a in acc]


def example_sgd_epoch(params, X, y, lr: float, batch_size: int = 1):
    """One epoch of minibatch SGD in fixed order, each minibatch gradient the mean of per-example
    gradients computed one at a time. Returns ``(mean of the minibatch losses, new params)``."""
    _check_two_layers(params)
    params = to_numpy(params)
    n = X.shape[0]
    losses = []
    for start in range(0, n, batch_size):
        loss, g = example_loss_and_grads(params, X[start:start + batch_size], y[start:start + batch_size])
        for p, gp in zip(params, g):
            p["W"] -= lr * gp["W"]
            p["b"] -= lr * gp["b"]
        losses.append(loss)
    return float(np.mean(losses)), params


# ============================================================================ 3. batched

def batched_forward(params, X):
    """X: (N, d) -> (h: (N, H), p: (N, K))."""
    _check_two_layers(params)
    (l1, l2) = params
    if X.ndim != 2 or X.shape[1] != l1["W"].shape[0]:
        raise ValueError(f"batched_forward: expected X of shape (N, {l1['W'].shape[0]}), got {X.shape}")
    h = sigmoid(X @ l1["W"] + l1["b"])
    p = np.exp(_log_softmax(h @ l2["W"] + l2["b"]))
    return h, p


def batched_loss(params, X, y):
    """Mean cross-entropy of the batch."""
    (l1, l2) = params
    h = sigmoid(X @ l1["W"] + l1["b"])
    logp = _log_softmax(h @ l2["W"] + l2["b"])
    return -logp[np.arange(X.shape[0]), y].mean()


def batched_loss_and_grads(params, X, y):
    """Mean loss and its gradients for a minibatch, in the params' dtype.

    Shapes: X (N, d), y (N,) int in [0, K); grads have the params' layout.
    """
    _check_two_layers(params)
    (l1, l2) = params
    W1, b1, W2, b2 = l1["W"], l1["b"], l2["W"], l2["b"]
    N, K = X.shape[0], b2.shape[0]
    y = np.asarray(y)
    if y.shape != (N,) or (N and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"batched_loss_and_grads: expected {N} labels in [0, {K}), got shape {y.shape}")
    rows = np.arange(N)
    h = sigmoid(X @ W1 + b1)                     # (N, H)
    logp = _log_softmax(h @ W2 + b2)             # (N, K)
    loss = -logp[rows, y].mean()
    ds = np.exp(logp)
    ds[rows, y] -= 1
    ds /= N                                      # d(mean ℓ)/ds = (p − onehot) / N
    dW2 = h.T @ ds
    db2 = ds.sum(axis=0)
    da = (ds @ W2.T) * h * (1 - h)
    dW1 = X.T @ da
    db1 = da.sum(axis=0)
    return loss, [{"W": dW1, "b": db1}, {"W": dW2, "b": db2}]


def batched_sgd_step(params, X, y, lr: float):
    """One SGD step on a minibatch, **in place** on ``params``; returns the loss before it."""
    loss, g = batched_loss_and_grads(params, X, y)
    for p, gp in zip(params, g):
        p["W"] -= lr * gp["W"]
        p["b"] -= lr * gp["b"]
    return loss


def batched_sgd_epoch(params, X, y, lr: float, batch_size: int):
    """One epoch of minibatch SGD in fixed order (no shuffling; doc 001 Algorithm 1 style).

    Works in the dtype of ``params`` (pass float32 arrays for a float32 run; ``X`` should then be
    float32 too). ``params`` is copied, not modified. Returns ``(mean of the minibatch losses,
    new params)``; a ragged last batch is averaged over its own examples.
    """
    _check_two_layers(params)
    params = to_numpy(params)
    dtype = params[0]["W"].dtype
    if X.dtype != dtype:
        raise ValueError(f"batched_sgd_epoch: X has dtype {X.dtype} but params are {dtype};"
                         f" cast one of them (no silent promotion)")
    n = X.shape[0]
    losses = []
    for start in range(0, n, batch_size):
        losses.append(batched_sgd_step(params, X[start:start + batch_size], y[start:start + batch_size], lr))
    return float(np.mean(losses)), params


# ============================================================================ doc 004's procedure

def doc004_eval_numerical_gradient(f, x, h: float = 1e-5):
    """doc 004 §1.5.3's ``eval_numerical_gradient`` (the course's gradient-check utility): central
    differences entry by entry, perturbing ``x`` **in place** (and restoring it), ``f(x)`` read
    after each perturbation. float64 NumPy; returns an array shaped like ``x``."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def doc004_rel_error(x, y) -> float:
    """doc 004's ``rel_error``: max |x − y| / max(1e-8, |x| + |y|)."""
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def doc004_two_layer_loss(P, X, y, reg: float):
    """doc 004's TwoLayerNet loss in NumPy, its layout (``W1`` (hidden, input), ``W2`` (out,
    hidden)): ``1/(2N) Σ‖s − onehot‖² + (reg/2)(‖W1‖² + ‖W2‖²)`` with ``s = relu(X W1ᵀ + b1) W2ᵀ
    + b2``. Returns ``(loss, grads)`` (grads in the same layout, the analytic backward pass)."""
    h = np.maximum(0, X.dot(P["W1"].T) + P["b1"])
    s = h.dot(P["W2"].T) + P["b2"]
    N = X.shape[0]
    T = np.zeros_like(s)
    T[np.arange(N), y] = 1
    loss = np.sum((s - T) ** 2) / (2 * N) + 0.5 * reg * (np.sum(P["W1"] * P["W1"]) + np.sum(P["W2"] * P["W2"]))
    ds = (s - T) / N
    dh = ds.dot(P["W2"])
    dh[h <= 0] = 0
    grads = {"W1": dh.T.dot(X) + reg * P["W1"], "b1": dh.sum(0), "W2": ds.T.dot(h) + reg * P["W2"], "b2": ds.sum(0)}
    return loss, grads
