"""Multiclass perceptron (doc 003 Problem 1, Algorithm 1) and kernel perceptron (Algorithm 2).

Weights ``W: (K, d)``, one row ``w_c`` per class; the score of class ``c`` on ``x`` is ``w_cᵀx``.
There is no bias term (as in the document); append a constant-1 feature to get one.

**Loss** of example ``i`` (a multiclass hinge with zero margin)::

    F_i(W) = max{0, max_{y ≠ y_i} (w_yᵀx_i − w_{y_i}ᵀx_i)}

Its (sub)gradient with respect to ``w_c`` — the document's four cases — with
``ŷ = argmax_{y ≠ y_i} w_yᵀx_i``:

1. ``F_i = 0`` (the true class scores at least as high as every other): ``∇_{w_c} F_i = 0`` for
   every ``c`` (also at the kink ``F_i = 0`` with a tie: the zero subgradient is used);
2. ``F_i > 0`` and ``c = y_i``: ``∇ = −x_i``;
3. ``F_i > 0`` and ``c = ŷ``: ``∇ = +x_i``;
4. ``F_i > 0`` and ``c ∉ {y_i, ŷ}``: ``∇ = 0``.

**Algorithm 1** is SGD on ``F_i`` with learning rate 1: ``W = 0``; repeat: draw a random example
``i``; ``ŷ = argmax_y w_yᵀx_i`` (over *all* classes); if ``ŷ ≠ y_i``: ``w_ŷ −= x_i``,
``w_{y_i} += x_i``. Argmax ties go to the smallest class index (``jnp.argmax``), so on the very
first step (all scores 0) an example of class 0 counts as correct and any other as a mistake
against class 0. This tie rule is the only place where Algorithm 1 differs from "update iff F_i > 0".

**Algorithm 2** (kernelised) keeps coefficients ``α: (K, N)`` with ``W = α X`` implicitly:
prediction ``argmax_y Σ_m α_{y,m} k(x_m, x)``, update on a mistake ``α_{ŷ,i} −= 1``,
``α_{y_i,i} += 1``. Features are touched only through the kernel. The training loop reads kernel
columns either from a cached Gram matrix ``G = k(X, X)`` (``N² · itemsize`` bytes, checked against
``max_gram_bytes`` with a clear refusal) or computes ``k(X, x_i)`` on the fly each step.

With the linear kernel and the same sequence of examples, Algorithm 2 makes exactly the same
predictions and mistakes as Algorithm 1 (exactly so in floating point when the arithmetic is exact,
e.g. integer-valued features). Both training loops are jitted ``lax.scan``s; the sequence of
examples is drawn from a ``jax.random`` key by :func:`sample_indices`, so the same key gives the
same sequence to both algorithms.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

#: Number of times each jitted training loop has been traced (tests use it to check no retracing).
TRACE_COUNTS: collections.Counter = collections.Counter()

DEFAULT_MAX_GRAM_BYTES = 2 * 1024 ** 3


# ----------------------------------------------------------------------------- loss F_i

def scores(W, X):
    """Class scores ``X Wᵀ``: W (K, d), X (N, d) → (N, K) (or (K,) for one x (d,))."""
    return X @ W.T


def perceptron_loss(W, x, y):
    """``F_i`` for one example x (d,), label y (int) — or the mean over a batch x (N, d), y (N,)."""
    if jnp.ndim(x) == 2:
        return jnp.mean(jax.vmap(perceptron_loss, (None, 0, 0))(W, x, y))
    s = W @ x
    K = W.shape[0]
    others = jnp.where(jnp.arange(K) == y, -jnp.inf, s)
    return jnp.maximum(jnp.max(others) - s[y], 0)


def perceptron_loss_grad(W, x, y):
    """Gradient of :func:`perceptron_loss` w.r.t. W (K, d) by the four cases (batch: the mean)."""
    if jnp.ndim(x) == 2:
        return jnp.mean(jax.vmap(perceptron_loss_grad, (None, 0, 0))(W, x, y), axis=0)
    s = W @ x
    K = W.shape[0]
    cls = jnp.arange(K)
    others = jnp.where(cls == y, -jnp.inf, s)
    yhat = jnp.argmax(others)                       # best wrong class
    active = (others[yhat] - s[y]) > 0              # case 1 when False
    coef = (jnp.where(cls == yhat, 1, 0) - jnp.where(cls == y, 1, 0)).astype(W.dtype)  # cases 2–4
    coef = jnp.where(active, coef, jnp.zeros_like(coef))
    return coef[:, None] * x[None, :]


# ----------------------------------------------------------------------------- Algorithm 1

def sample_indices(key, num_steps: int, n: int):
    """The random example sequence used by both algorithms: (num_steps,) ints in [0, n)."""
    return jax.random.randint(key, (int(num_steps),), 0, n)


class Trace(NamedTuple):
    """Per-step record of a training loop."""
    index: jax.Array     # (T,) example drawn
    pred: jax.Array      # (T,) predicted class before the update
    mistake: jax.Array   # (T,) bool, True where an update happened


@jax.jit
def _alg1_scan(W, X, y, idx):
    TRACE_COUNTS["perceptron"] += 1

    def step(W, i):
        x, yi = X[i], y[i]
        yhat = jnp.argmax(W @ x)
        m = (yhat != yi).astype(W.dtype)
        W = W.at[yhat].add(-m * x).at[yi].add(m * x)
        return W, (yhat, yhat != yi)

    W, (pred, mistake) = lax.scan(step, W, idx)
    return W, pred, mistake


def train_perceptron(X, y, num_classes: int, key=None, num_steps: int | None = None, W=None,
                     indices=None):
    """Algorithm 1. X (N, d) float, y (N,) int in [0, K). Returns (W (K, d), :class:`Trace`).

    The example sequence is ``indices`` if given, else ``sample_indices(key, num_steps, N)``
    (default one pass, ``num_steps = N``). ``W`` continues training from given weights (zeros
    otherwise), so passes can be run one call at a time without recompiling.
    """
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    _check_xy(X, y, num_classes, "train_perceptron")
    if indices is None:
        if key is None:
            raise ValueError("train_perceptron: pass a jax.random key or explicit indices")
        indices = sample_indices(key, X.shape[0] if num_steps is None else num_steps, X.shape[0])
    if W is None:
        W = jnp.zeros((num_classes, X.shape[1]), X.dtype)
    W, pred, mistake = _alg1_scan(W, X, y, jnp.asarray(indices))
    return W, Trace(jnp.asarray(indices), pred, mistake)


def predict(W, X):
    """Algorithm 1's prediction ``argmax_y w_yᵀx`` (ties → smallest class): X (N, d) → (N,) int."""
    return jnp.argmax(scores(W, X), axis=-1)


def accuracy(pred, y) -> jax.Array:
    return jnp.mean((jnp.asarray(pred) == jnp.asarray(y)).astype(jnp.float32))


def _check_xy(X, y, K, where):
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"{where}: expected X (N, d) and y (N,), got {X.shape} and {y.shape}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{where}: labels must be integers in [0, {K}), got dtype {y.dtype}")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise ValueError(f"{where}: features must be floating point, got dtype {X.dtype}")
    if not isinstance(y, jax.core.Tracer) and y.size and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"{where}: labels must lie in [0, {K})")


# ----------------------------------------------------------------------------- kernels

@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel ``k(A (n, d), B (m, d)) -> (n, m)`` named by ``name`` ∈ {"linear", "poly", "rbf"}
    and its hyper-parameters. Hashable and compared by value, so it can be a static jit argument
    and two equal kernels share one compilation.

    - linear: ``k(x, z) = xᵀz``;
    - poly:   ``k(x, z) = (γ xᵀz + c₀)^degree``;
    - rbf:    ``k(x, z) = exp(−γ ‖x − z‖²)`` (‖x‖² + ‖z‖² − 2xᵀz, clipped at 0).
    """
    name: str
    degree: int = 3
    gamma: float = 1.0
    coef0: float = 1.0

    def __post_init__(self):
        if self.name not in ("linear", "poly", "rbf"):
            raise ValueError(f"unknown kernel {self.name!r}; expected 'linear', 'poly' or 'rbf'")

    def __call__(self, A, B):
        if self.name == "linear":
            return A @ B.T
        if self.name == "poly":
            return (self.gamma * (A @ B.T) + self.coef0) ** self.degree
        d2 = jnp.sum(A * A, 1)[:, None] + jnp.sum(B * B, 1)[None, :] - 2 * (A @ B.T)
        return jnp.exp(-self.gamma * jnp.maximum(d2, 0))

    def describe(self) -> dict:
        if self.name == "linear":
            return {"kernel": "linear"}
        if self.name == "poly":
            return {"kernel": "poly", "degree": self.degree, "gamma": self.gamma, "coef0": self.coef0}
        return {"kernel": "rbf", "gamma": self.gamma}


def linear_kernel() -> Kernel:
    """``k(x, z) = xᵀz``."""
    return Kernel("linear")


def polynomial_kernel(degree: int = 3, gamma: float = 1.0, coef0: float = 1.0) -> Kernel:
    """``k(x, z) = (γ xᵀz + c₀)^degree``."""
    return Kernel("poly", degree=int(degree), gamma=float(gamma), coef0=float(coef0))


def rbf_kernel(gamma: float = 1.0) -> Kernel:
    """``k(x, z) = exp(−γ ‖x − z‖²)``."""
    return Kernel("rbf", gamma=float(gamma))


def get_kernel(name, **kwargs) -> Kernel:
    """A :class:`Kernel` by name ("linear", "poly"/"polynomial", "rbf") or a Kernel as is."""
    if isinstance(name, Kernel):
        return name
    table = {"linear": linear_kernel, "poly": polynomial_kernel, "polynomial": polynomial_kernel,
             "rbf": rbf_kernel}
    if name not in table:
        raise ValueError(f"unknown kernel {name!r}; expected one of {sorted(table)}")
    return table[name](**kwargs)


@functools.partial(jax.jit, static_argnames=("kernel",))
def _kernel_block(A, B, kernel):
    return kernel(A, B)


# ----------------------------------------------------------------------------- Algorithm 2

def gram_bytes(n: int, dtype=jnp.float32) -> int:
    """Memory of an (n, n) Gram matrix in bytes."""
    return int(n) * int(n) * jnp.dtype(dtype).itemsize


def format_bytes(n: int) -> str:
    """Human-readable size: '512 B', '4.0 KiB', '1.5 GiB'."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


def gram_matrix(kernel: Kernel, X, max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
                block_rows: int = 1024):
    """``G = k(X, X)`` (N, N), computed in row blocks. Refuses (MemoryError) when ``N² · itemsize``
    exceeds ``max_gram_bytes``, naming the size and the alternatives."""
    X, kernel = jnp.asarray(X), get_kernel(kernel)
    need = gram_bytes(X.shape[0], X.dtype)
    if need > max_gram_bytes:
        raise MemoryError(
            f"kernel perceptron: the Gram matrix for N={X.shape[0]} examples needs "
            f"{format_bytes(need)} ({X.dtype}), more than max_gram_bytes={format_bytes(max_gram_bytes)}; "
            f"use cache_gram=False (kernel columns computed on the fly), fewer examples, or raise "
            f"max_gram_bytes")
    return _blocked_kernel(kernel, X, X, block_rows)


def kernel_matrix(kernel, A, B, block_rows: int = 1024):
    """``k(A, B)``: (n, d), (m, d) → (n, m), computed ``block_rows`` rows of A at a time (cache a
    test-set kernel matrix once and score every pass with ``K @ alpha.T``)."""
    return _blocked_kernel(get_kernel(kernel), jnp.asarray(A), jnp.asarray(B), block_rows)


def _blocked_kernel(kernel: Kernel, A, B, block_rows: int):
    """k(A, B) (n, m), computing ``block_rows`` rows of A at a time."""
    n = A.shape[0]
    if n <= block_rows:
        return _kernel_block(A, B, kernel)
    return jnp.concatenate([_kernel_block(A[s:s + block_rows], B, kernel)
                            for s in range(0, n, block_rows)], axis=0)


def _alg2_update(alpha, s, yi, i):
    """Algorithm 2's step from the scores s (K,) of example i: on a mistake α_{ŷ,i} −= 1, α_{y_i,i} += 1."""
    yhat = jnp.argmax(s)
    m = (yhat != yi).astype(alpha.dtype)
    alpha = alpha.at[yhat, i].add(-m).at[yi, i].add(m)
    return alpha, (yhat, yhat != yi)


@jax.jit
def _alg2_scan_gram(alpha, G, y, idx):
    TRACE_COUNTS["kernel_perceptron_gram"] += 1

    def step(alpha, i):
        return _alg2_update(alpha, alpha @ G[i], y[i], i)  # Σ_m α_{c,m} k(x_m, x_i); G symmetric

    alpha, (pred, mistake) = lax.scan(step, alpha, idx)
    return alpha, pred, mistake


@functools.partial(jax.jit, static_argnames=("kernel",))
def _alg2_scan_onthefly(alpha, X, y, idx, kernel):
    TRACE_COUNTS["kernel_perceptron_onthefly"] += 1

    def step(alpha, i):
        k_col = kernel(X, X[i][None])[:, 0]      # k(x_m, x_i) for all m
        return _alg2_update(alpha, alpha @ k_col, y[i], i)

    alpha, (pred, mistake) = lax.scan(step, alpha, idx)
    return alpha, pred, mistake


class KernelPerceptron(NamedTuple):
    """A trained kernel perceptron: coefficients alpha (K, N) over the training points X (N, d)."""
    alpha: jax.Array
    X: jax.Array
    kernel: Kernel
    gram: jax.Array | None       # cached (N, N) Gram matrix, or None
    gram_bytes: int              # its memory (0 when not cached)


def kernel_perceptron_init(X, num_classes: int, kernel="linear", cache_gram="auto",
                           max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES, **kernel_kwargs):
    """Set up Algorithm 2 on training points X (N, d): α = 0 and (optionally) the Gram matrix.

    ``cache_gram``: True (cache, refuse with MemoryError if over ``max_gram_bytes``), False
    (compute kernel columns on the fly), "auto" (cache when it fits).
    """
    X = jnp.asarray(X)
    if X.ndim != 2 or not jnp.issubdtype(X.dtype, jnp.floating):
        raise ValueError(f"kernel_perceptron: expected floating X (N, d), got {X.shape} {X.dtype}")
    k = get_kernel(kernel, **kernel_kwargs)
    fits = gram_bytes(X.shape[0], X.dtype) <= max_gram_bytes
    if cache_gram == "auto":
        cache_gram = fits
    G = gram_matrix(k, X, max_gram_bytes) if cache_gram else None
    return KernelPerceptron(jnp.zeros((num_classes, X.shape[0]), X.dtype), X, k, G,
                            gram_bytes(X.shape[0], X.dtype) if cache_gram else 0)


def train_kernel_perceptron(model: KernelPerceptron, y, key=None, num_steps: int | None = None,
                            indices=None):
    """Algorithm 2 for ``num_steps`` random examples (default one pass) as a jitted scan.

    Returns (updated :class:`KernelPerceptron`, :class:`Trace`). Call repeatedly to train pass by pass.
    """
    y = jnp.asarray(y)
    N = model.X.shape[0]
    _check_xy(model.X, y, model.alpha.shape[0], "train_kernel_perceptron")
    if indices is None:
        if key is None:
            raise ValueError("train_kernel_perceptron: pass a jax.random key or explicit indices")
        indices = sample_indices(key, N if num_steps is None else num_steps, N)
    indices = jnp.asarray(indices)
    if model.gram is not None:
        alpha, pred, mistake = _alg2_scan_gram(model.alpha, model.gram, y, indices)
    else:
        alpha, pred, mistake = _alg2_scan_onthefly(model.alpha, model.X, y, indices, model.kernel)
    return model._replace(alpha=alpha), Trace(indices, pred, mistake)


def kernel_perceptron(X, y, num_classes: int, kernel="linear", key=None, num_steps=None,
                      indices=None, cache_gram="auto", max_gram_bytes=DEFAULT_MAX_GRAM_BYTES,
                      **kernel_kwargs):
    """Convenience: :func:`kernel_perceptron_init` + :func:`train_kernel_perceptron`."""
    model = kernel_perceptron_init(X, num_classes, kernel, cache_gram, max_gram_bytes, **kernel_kwargs)
    return train_kernel_perceptron(model, y, key, num_steps, indices)


def kernel_scores(model: KernelPerceptron, X_new, block_rows: int = 1024):
    """``Σ_m α_{c,m} k(x_m, x)`` for every x of X_new (M, d) → (M, K), in row blocks."""
    X_new = jnp.asarray(X_new)
    return _blocked_kernel(model.kernel, X_new, model.X, block_rows) @ model.alpha.T


def kernel_predict(model: KernelPerceptron, X_new, block_rows: int = 1024):
    """argmax_y Σ_m α_{y,m} k(x_m, x) (ties → smallest class): (M, d) → (M,) int."""
    return jnp.argmax(kernel_scores(model, X_new, block_rows), axis=-1)


def num_support(model: KernelPerceptron) -> int:
    """Number of training points with a non-zero coefficient for some class."""
    return int(jnp.sum(jnp.any(model.alpha != 0, axis=0)))


def linear_weights(model: KernelPerceptron):
    """For the linear kernel, the explicit weights ``W = α X`` (K, d) of the equivalent Algorithm 1."""
    return model.alpha @ model.X
