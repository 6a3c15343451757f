"""Gradient checking for hand-written backward rules (doc 001 appendix, doc 003 §3.1.5, doc 004 §1.5.3).

All functions work on any params pytree. For meaningful tolerances run them in float64
(``with jax.enable_x64(True):`` and float64 params/inputs).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def rel_error(x, y) -> float:
    """doc 004's relative error: max |x − y| / max(1e-8, |x| + |y|) (elementwise, then max)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _paths(tree):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in leaves], [v for _, v in leaves], treedef


def numerical_grad(f: Callable, params, eps: float = 1e-3, n_samples: int | None = None,
                   key=None):
    """Central differences ``(f(w+ε) − f(w−ε)) / 2ε`` of a scalar ``f(params)``.

    Every entry of every leaf when ``n_samples`` is None; otherwise ``n_samples`` random entries
    per leaf (drawn with ``key``), the rest left as NaN so they are never mistaken for checked.
    Returns a pytree with the structure of ``params`` (NumPy float64 arrays).
    """
    names, leaves, treedef = _paths(params)
    keys = (jax.random.split(key if key is not None else jax.random.key(0), len(leaves)))
    out = []
    for i, v in enumerate(leaves):
        v = np.asarray(v)
        g = np.full(v.shape, np.nan)
        if n_samples is None or n_samples >= v.size:
            idx = range(v.size)
        else:
            idx = np.asarray(jax.random.choice(keys[i], v.size, (n_samples,), replace=False))
        for j in idx:
            def shifted(delta, j=j):
                w = v.copy().reshape(-1)
                w[j] += delta
                new = list(leaves)
                new[i] = jnp.asarray(w.reshape(v.shape), dtype=v.dtype)
                return float(f(jax.tree_util.tree_unflatten(treedef, new)))
            g.reshape(-1)[j] = (shifted(eps) - shifted(-eps)) / (2 * eps)
        out.append(g)
    return jax.tree_util.tree_unflatten(treedef, out)


class Mismatch(NamedTuple):
    name: str
    index: tuple
    hand: float
    other: float
    rel_error: float


def compare(hand, other, other_name: str = "jax.grad", tol: float = 1e-10):
    """Per-leaf ``rel_error`` of two gradient pytrees (NaN entries of ``other`` skipped).

    Returns ``{leaf path: rel_error}``; raises AssertionError when one exceeds ``tol``, naming
    the parameter, the worst index, both values and which side is which.
    """
    names, hs, _ = _paths(hand)
    onames, os_, _ = _paths(other)
    if names != onames:
        raise ValueError(f"gradient structures differ: hand {names} vs {other_name} {onames}")
    errors, worst = {}, []
    for name, h, o in zip(names, hs, os_):
        h, o = np.asarray(h, np.float64), np.asarray(o, np.float64)
        if h.shape != o.shape:
            raise AssertionError(f"{name}: hand gradient shape {h.shape} != {other_name} shape {o.shape}")
        ok = ~np.isnan(o)
        r = np.abs(h - o) / np.maximum(1e-8, np.abs(h) + np.abs(o))
        r = np.where(ok, r, 0.0)
        errors[name] = float(r.max()) if r.size else 0.0
        if r.size and r.max() > tol:
            i = np.unravel_index(np.argmax(r), r.shape)
            worst.append(Mismatch(name, tuple(int(k) for k in i), float(h[i]), float(o[i]), float(r[i])))
    if worst:
        lines = [f"  params{m.name}{list(m.index)}: hand={m.hand:.12g} {other_name}={m.other:.12g}"
                 f" rel_error={m.rel_error:.3g} > {tol:g}" for m in worst]
        raise AssertionError("hand-written gradient disagrees with " + other_name + ":\n" + "\n".join(lines))
    return errors


def check_model(model, params, x, y, l2=0.0, mask=None, autodiff_tol=1e-10, numeric_tol=1e-6,
                eps=1e-5, n_samples=None, key=None):
    """Hand-written ``model.backprop`` vs ``jax.grad`` and vs central differences.

    Returns ``{"autodiff": {leaf: rel_error}, "numeric": {leaf: rel_error}}``; raises on failure.
    """
    _, hand = model.backprop(params, x, y, l2, mask)
    _, auto = model.grad_autodiff(params, x, y, l2, mask)
    f = jax.jit(lambda p: model.loss(p, x, y, l2, mask))
    num = numerical_grad(f, params, eps=eps, n_samples=n_samples, key=key)
    return {"autodiff": compare(hand, auto, "jax.grad", autodiff_tol),
            "numeric": compare(hand, num, "central differences", numeric_tol)}


def gradient_checker(model, params, x, y, eps: float = 1e-3):
    """doc 003 §3.1.5: for the (0, …, 0) entry of every parameter, the backprop value next to the
    central-difference approximation on the given (typically single, first) training example.

    Returns a list of ``{"param", "backprop", "approx", "rel_error"}`` rows.
    """
    _, hand = model.backprop(params, x, y)
    names, leaves, treedef = _paths(params)
    hand_leaves = jax.tree.leaves(hand)
    rows = []
    for i, (name, v) in enumerate(zip(names, leaves)):
        zero = (0,) * v.ndim

        def f_at(delta, i=i, v=v, zero=zero):
            new = list(leaves)
            new[i] = v.at[zero].add(delta)
            return float(model.loss(jax.tree_util.tree_unflatten(treedef, new), x, y))
        approx = (f_at(eps) - f_at(-eps)) / (2 * eps)
        bp = float(hand_leaves[i][zero])
        rows.append({"param": name, "backprop": bp, "approx": approx, "rel_error": rel_error(bp, approx)})
    return rows


def magnitude_checker(model, params, x, y, small: int = 50, large: int = 5000):
    """doc 003: sum of the first-layer weight gradient on the first ``small`` vs first ``large``
    examples. A minibatch gradient of a mean loss is an unbiased estimate of the full one, so both
    sums have the same magnitude (they would differ ~large/small-fold with a summed loss).
    """
    def first_w_sum(n):
        _, g = model.backprop(params, x[:n], y[:n])
        leaves = jax.tree_util.tree_flatten_with_path(g)[0]
        return float(jnp.sum(next(v for p, v in leaves if jax.tree_util.keystr(p).endswith("['W']"))))
    return {"batch_small": min(small, len(x)), "sum_small": first_w_sum(small),
            "batch_large": min(large, len(x)), "sum_large": first_w_sum(large)}
