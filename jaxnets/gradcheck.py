"""Gradient checking for hand-written backward rules (doc 001 appendix, doc 003 §3.1.5, doc 004 §1.5.3).

All functions work on any params pytree. For meaningful tolerances run them in float64
(``with jax.enable_x64(True):`` and float64 params/inputs); :func:`check_layer` does so itself.

A disagreement raises :class:`jaxnets.errors.GradientCheckError` whose message says, per
parameter, what the disagreement looks like (:data:`DIAGNOSES`: transposed, a constant factor, only
at kinks, a missing activation derivative, a bias summed over the wrong axis, two leaves swapped,
non-finite, shape or structure mismatch, all zeros), so a learner knows where to look. A NaN or ±Inf
in the hand gradient is always a failure, and in either side of :func:`compare`. Where the
reference is NaN for a finite loss (``jnp.where``'s discarded branch overflowing), :func:`check_layer`
and, in float64, :func:`check_model` judge those entries by central differences instead and list
them in their reports (``nonfinite``).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import GradientCheckError
from jaxnets.nn import initializers

#: The diagnosis tags a :class:`GradientCheckError` message uses (each names one bug class).
DIAGNOSES = ("structure mismatch", "shape mismatch", "non-finite", "all zeros", "only at kinks",
             "transposed", "a missing or extra 1/N", "½ in the loss", "sign flipped",
             "constant factor", "missing activation derivative", "wrong axis", "swapped leaves",
             "factor on part of the entries", "no known pattern")


def rel_error(x, y) -> float:
    """doc 004's relative error: max |x − y| / max(1e-8, |x| + |y|) (elementwise, then max)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _paths(tree):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in leaves], [v for _, v in leaves], treedef


class _Probe:
    """A scalar ``f(tree)`` evaluated with one entry of one leaf shifted (central differences,
    one-sided differences at kinks). ``f`` should be jitted: shapes never change, so it compiles once."""

    def __init__(self, f: Callable, tree):
        self.f = f
        self.leaves, self.treedef = jax.tree.flatten(tree)
        self._f0 = None

    def at(self, i: int, j: int, delta: float) -> float:
        # order="C": reshape(-1) of a Fortran-ordered leaf (a transposed NumPy view, doc 004's
        # W = W1.T) would be a copy, and the shift would be lost.
        v = np.array(self.leaves[i], order="C")
        v.reshape(-1)[j] += delta
        new = list(self.leaves)
        new[i] = jnp.asarray(v, dtype=self.leaves[i].dtype)
        return float(self.f(jax.tree.unflatten(self.treedef, new)))

    def f0(self) -> float:
        if self._f0 is None:
            self._f0 = float(self.f(jax.tree.unflatten(self.treedef, self.leaves)))
        return self._f0

    def step(self, i: int, j: int, delta: float) -> float:
        """The shift the leaf's dtype can represent: fl(w + delta) − w (w = 1e4 and delta = 1e-5 in
        float64 shift by 1e-5 ± 2e-12, an error central differences would divide by eps)."""
        w = np.asarray(self.leaves[i]).reshape(-1)[j]
        return float(np.asarray(w + np.asarray(delta, w.dtype), w.dtype) - w)

    def central(self, i: int, j: int, eps: float) -> float:
        d = self.step(i, j, eps) - self.step(i, j, -eps)
        if d == 0.0:   # eps is below the entry's resolution (|w| ~ 1e12 in float64): a relative step
            eps *= max(1.0, abs(float(np.asarray(self.leaves[i]).reshape(-1)[j])))
            d = self.step(i, j, eps) - self.step(i, j, -eps)
        return (self.at(i, j, eps) - self.at(i, j, -eps)) / d

    def one_sided(self, i: int, j: int, h: float) -> tuple[float, float]:
        """(left, right) derivatives of f along entry j of leaf i with step h."""
        f0 = self.f0()
        return (f0 - self.at(i, j, -h)) / h, (self.at(i, j, h) - f0) / h

    def kink(self, i: int, j: int, h: float = 1e-6):
        """(left, right) when f has a kink at this entry (a ReLU input exactly at 0, a max-pool
        tie), else None. At a kink left − right does not shrink with the step; on a smooth f it
        shrinks linearly (≈ h·f''), which two steps (h and h/10) tell apart."""
        l1, r1 = self.one_sided(i, j, h)
        l2, r2 = self.one_sided(i, j, h / 10)
        jump1, jump2 = l1 - r1, l2 - r2
        floor = 1e-8 * max(1.0, abs(self.f0()))
        if abs(jump2) > floor and abs(jump2 - jump1) < 0.1 * abs(jump1):
            return l2, r2
        return None


def numerical_grad(f: Callable, params, eps: float = 1e-3, n_samples: int | None = None,
                   key=None):
    """Central differences ``(f(w+ε) − f(w−ε)) / 2ε`` of a scalar ``f(params)``.

    Every entry of every leaf when ``n_samples`` is None (plain float64 NumPy arrays); otherwise
    ``n_samples`` random entries per leaf (drawn with ``key``) and each leaf is a
    ``numpy.ma.MaskedArray`` whose unchecked entries are masked (and NaN), so they are never
    mistaken for checked: :func:`compare` skips masked entries, and a NaN at a checked entry
    fails. Returns a pytree with the structure of ``params``.
    """
    _check_settings("numerical_grad", eps=eps, n_samples=n_samples)
    probe = _Probe(f, params)
    names = _paths(params)[0]
    for name, v in zip(names, probe.leaves):
        if _float_dtype(v) is None:
            raise ValueError(f"numerical_grad: leaf params{name} has dtype {np.asarray(v).dtype}: central "
                             "differences need float leaves (a shift of eps would be truncated)")
    keys = jax.random.split(key if key is not None else jax.random.key(0), len(probe.leaves))
    out = []
    for i, v in enumerate(probe.leaves):
        g = np.full(np.shape(v), np.nan)
        sampled = n_samples is not None and n_samples < g.size
        idx = (np.asarray(jax.random.choice(keys[i], g.size, (n_samples,), replace=False))
               if sampled else range(g.size))
        checked = np.zeros(g.size, bool)
        for j in idx:
            g.reshape(-1)[j] = probe.central(i, int(j), eps)
            checked[j] = True
        # the mask is the unchecked entries, not the NaN ones: a checked entry whose difference is
        # NaN or ±Inf (the loss is not finite a step away) must stay visible to fail compare
        out.append(np.ma.masked_array(g, mask=~checked.reshape(g.shape)) if sampled else g)
    return jax.tree.unflatten(probe.treedef, out)


class Mismatch(NamedTuple):
    name: str
    index: tuple
    hand: float
    other: float
    rel_error: float


class Diagnosis(NamedTuple):
    """What a disagreement looks like: ``kind`` is one of :data:`DIAGNOSES`; ``text`` says it in
    words a learner can act on."""
    kind: str
    text: str


#: Default tolerances per dtype of the comparison (the lower precision of the two sides).
#: "autodiff": the element-wise relative error against autodiff, each entry's denominator
#: floored at the leaf's round-off level (:func:`_autodiff_floor`); "norm": the leaf's norm-wise
#: relative error ‖h − r‖ / (‖h‖ + ‖r‖) against autodiff, which a scale error of the whole leaf
#: cannot hide from; "numeric" and "eps": central differences. float64: doc 004's "< 1e-8" with
#: margin (hand vs autodiff agree to ~1e-13; central differences with eps 1e-5 to ~1e-9).
#: float32: correct rules of the library's models on image-like data gave element-wise errors up
#: to 4.7e-2 without the floor and 9e-5 with it, and norm-wise errors up to 1.3e-7, so the
#: element-wise 1e-2 (cs231n's "probably wrong" line) tells a wrong entry apart and the norm-wise
#: 1e-5 (plus the floor's allowance, ~1e-5·max|r| per entry) a whole leaf off by ~1e-4 or more;
#: central differences need a larger step (eps 1e-2) and tolerance (check_model runs them on
#: float64 copies instead).
DEFAULT_TOLERANCES = {
    "float64": {"autodiff": 1e-10, "norm": 1e-10, "numeric": 1e-6, "eps": 1e-5},
    "float32": {"autodiff": 1e-2, "norm": 1e-5, "numeric": 1e-1, "eps": 1e-2},
    "float16": {"autodiff": 1e-1, "norm": 1e-2, "numeric": 3e-1, "eps": 1e-1},
    "bfloat16": {"autodiff": 1e-1, "norm": 2e-2, "numeric": 3e-1, "eps": 1e-1},
}


def _float_dtype(v):
    d = jnp.dtype(getattr(v, "dtype", None) or np.asarray(v).dtype)
    return d if jnp.issubdtype(d, jnp.floating) else None


def default_tolerances(tree, *others) -> tuple[str, dict]:
    """(dtype name, {"autodiff", "norm", "numeric", "eps"}) for the widest float dtype among a
    tree's leaves; given several trees (the two sides of a comparison), for the lowest precision
    among those: a comparison is only as precise as its less precise side."""
    names = []
    for t in (tree, *others):
        dtypes = [d for d in map(_float_dtype, jax.tree.leaves(t)) if d is not None]
        if dtypes:
            names.append(max(dtypes, key=lambda d: d.itemsize))
    name = min(names, key=lambda d: (jnp.finfo(d).bits, jnp.finfo(d).nmant)).name if names else "float64"
    return name, DEFAULT_TOLERANCES.get(name, DEFAULT_TOLERANCES["float32"])


def _tolerance(tree, tol, kind: str, *others) -> tuple[float, str]:
    """(tolerance, where it came from): "given" only when the caller passed one."""
    if tol is not None:
        return float(tol), "given"
    dtype, defaults = default_tolerances(tree, *others)
    return defaults[kind], f"{dtype} default"


def _check_settings(where: str, **settings) -> None:
    """ValueError naming the argument: a tolerance or step (``*tol``, ``eps``) that is not a finite
    number > 0 (NaN passed every comparison, 0 divided by zero), an ``n_samples`` that is not a
    whole number ≥ 1 (0 checked nothing against central differences, silently)."""
    for name, v in settings.items():
        if v is None:
            continue
        if name == "n_samples":
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{where}: n_samples must be a whole number >= 1 (None: every entry), got {v!r}")
            continue
        ok = not isinstance(v, (bool, np.bool_)) and np.ndim(v) == 0
        if not ok or not np.issubdtype(np.asarray(v).dtype, np.number) or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{where}: {name} must be a finite number > 0 (None: the dtype's default), got {v!r}")


class Comparison(dict):
    """``{leaf path: rel_error}`` plus the tolerance applied (``tol``) and where it came from
    (``tol_source``: "given" or e.g. "float32 default"); ``kinks``: ``{leaf path: count}`` of
    entries accepted at a kink (only where a central-difference check was given ``f``)."""

    def __init__(self, errors: dict, tol: float, tol_source: str, kinks: dict | None = None):
        super().__init__(errors)
        self.tol, self.tol_source = tol, tol_source
        self.kinks = kinks or {}

    def __repr__(self):
        return f"Comparison({dict.__repr__(self)}, tol={self.tol:g} ({self.tol_source}))"


# ============================================================================ diagnosis

def _close(a, b, rtol: float) -> bool:
    """a ≈ b relative to the larger magnitude (a global, not element-wise, measure)."""
    scale = max(float(np.max(np.abs(b), initial=0.0)), float(np.max(np.abs(a), initial=0.0)), 1e-300)
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= rtol * scale


def _first_bad(a) -> tuple:
    return tuple(int(k) for k in np.argwhere(~np.isfinite(a))[0])


def _nonfinite(h, r, ref_name: str):
    for arr, who in ((h, "the hand gradient"), (r, ref_name)):
        if not np.all(np.isfinite(arr)):
            i = _first_bad(arr)
            return Diagnosis("non-finite", f"{who} has {arr[i]} at index {list(i)}: a division by 0, "
                             "a log or sqrt of a non-positive number, or an overflow (exp of a large score)")
    return None


def _factor_text(c: float) -> str:
    """``c`` to 6 digits, or as 1 ± its distance from 1 where 6 digits would print 1."""
    return f"{c:.6g}" if abs(c - 1.0) >= 1e-5 else f"1 {'+' if c > 1 else '−'} {abs(c - 1.0):.3g}"


def _explains(h, r, c: float) -> bool:
    """A factor ``c`` near 1 is the difference itself, not round-off around it: h − c·r leaves at
    most a tenth of h − r (a leaf that fails only the norm-wise check, e.g. scaled by 1.0001 in
    float32, whose entries each pass the element-wise 1e-2)."""
    d = float(np.linalg.norm(h - r))
    return d > 0.0 and c != 1.0 and float(np.linalg.norm(h - c * r)) <= 0.1 * d


def _transposed(h, r, rtol: float):
    """The hand gradient equals the reference with its axes permuted (or permuted then
    reshaped back to the hand's shape)."""
    if r.ndim < 2 or r.ndim > 4:
        return None
    for perm in itertools.permutations(range(r.ndim)):
        t = np.transpose(r, perm)
        if perm == tuple(range(r.ndim)) or _close(t.reshape(r.shape), r, rtol):
            continue  # a permutation that leaves r as it is says nothing
        how = None
        if t.shape == h.shape and _close(h, t, rtol):
            how = f"the reference with its axes permuted to {perm}"
        elif t.size == h.size and _close(h, t.reshape(h.shape), rtol):
            how = f"the reference's transpose {perm} reshaped to {h.shape}"
        if how:
            return Diagnosis("transposed", f"equals {how}: the operands of a product are swapped "
                             "(e.g. daᵀ·x instead of xᵀ·da) or a transpose is missing")
    return None


def _factor(h, r, rtol: float, batch_size, layer: bool = False):
    rr = float(np.vdot(r, r))
    if rr == 0.0:
        return None
    c = float(np.vdot(h, r)) / rr
    if c == 0.0 or not _close(h, c * r, rtol):
        return None
    if abs(c - 1.0) <= max(1e-6, rtol) and not _explains(h, r, c):
        return None  # c ≈ 1 (within the closeness the test allows): the difference is elsewhere
    near = lambda target: abs(c - target) <= 1e-6 * abs(target)
    if near(-1.0):
        return Diagnosis("sign flipped", "equals −1 × the reference: a sign is flipped (a gradient "
                         "added where it is subtracted, or a − lost in the loss's derivative)")
    half = near(2.0) or near(0.5)
    per_n = bool(batch_size and batch_size > 1 and (near(float(batch_size)) or near(1.0 / batch_size)))
    why_half = ("½ in the loss on one side only (the derivative of ½(s − t)² is (s − t), that of (s − t)² "
                "is 2(s − t))" if not layer else "a factor 2 of a derivative forgotten or doubled (d(x²)/dx = 2x, "
                "d(½x²)/dx = x)")
    why_n = f"a missing or extra 1/N, the batch size N = {batch_size} (a mean loss divides by N once)"
    if half and per_n:   # N = 2: the two causes give the same factor
        return Diagnosis("½ in the loss" if not layer else "a missing or extra 1/N",
                         f"off by a factor of {c:.6g}: {why_half}, or {why_n}; with N = 2 the two give the "
                         "same factor (a check with another batch size tells them apart)")
    if half and not layer:
        return Diagnosis("½ in the loss", f"off by a factor of {c:.6g}: {why_half}")
    if per_n:
        return Diagnosis("a missing or extra 1/N", f"off by a factor of {c:.6g}: {why_n}")
    if r.size == 1:
        return None   # any single number is some multiple of another: only the factors above say something
    return Diagnosis("constant factor", f"off by a constant factor {_factor_text(c)}: a scale (a step size, "
                     "a 1/(1−p), a regularisation strength) is applied on one side only")


def _wrong_axis(h, r, candidates, rtol: float):
    """A 1-D (bias-like) gradient that equals a cotangent summed over other axes."""
    if r.ndim != 1:
        return None
    for what, c in candidates:
        right = tuple(range(c.ndim - 1))
        for k in range(1, c.ndim + 1):
            for axes in itertools.combinations(range(c.ndim), k):
                if axes == right:
                    continue
                s = np.sum(c, axis=axes)
                if s.shape == h.shape and _close(h, s, rtol):
                    return Diagnosis("wrong axis", f"equals {what} summed over axes {axes} (shape "
                                     f"{h.shape}); a bias gradient sums over every axis but the "
                                     f"features' (axes {right}), giving shape {r.shape}")
    return None


def _basic(h, r, ref_name: str, ctx: dict):
    """Diagnoses that need only the two arrays (and the batch size / cotangents in ``ctx``)."""
    rtol = ctx.get("rtol", 1e-6)
    if h.shape != r.shape:
        return (_transposed(h, r, rtol) or _wrong_axis(h, r, ctx.get("cotangents", ()), rtol)
                or Diagnosis("shape mismatch", f"shape {h.shape}, the reference's is {r.shape}: "
                             + ("dx has the shape of the layer's input x" if ctx.get("leaf") == "dx" else
                                "the gradient of a parameter has the parameter's shape")))
    return _nonfinite(h, r, ref_name)


def _all_zeros(h, r):
    """Asked only of a leaf that disagrees: a hand gradient that is exactly 0 where the reference
    is 0 up to round-off agrees (a parameter the output does not depend on)."""
    if not np.any(h) and np.any(r):
        return Diagnosis("all zeros", "every entry is 0 where the reference is not: the rule "
                         "never writes this gradient (or writes it to a copy)")
    return None


def _pattern(h, r, ctx: dict):
    rtol = ctx.get("rtol", 1e-6)
    if float(np.max(np.abs(r), initial=0.0)) <= ctx.get("floor", 1e-8) * ctx.get("tol", 0.0):
        return None   # the reference is 0 up to round-off: no factor or permutation of it means anything
    return (_transposed(h, r, rtol) or _factor(h, r, rtol, ctx.get("batch_size"), ctx.get("layer", False))
            or _wrong_axis(h, r, ctx.get("cotangents", ()), rtol))


def _kinks(i: int, idx, probe: _Probe | None, limit: int = 64):
    """'only at kinks' when every differing entry (up to ``limit`` of them) sits at a kink of f."""
    if probe is None or len(idx) == 0:
        return None
    pick = idx if len(idx) <= limit else idx[np.linspace(0, len(idx) - 1, limit).astype(int)]
    if all(probe.kink(i, int(j)) is not None for j in pick):
        return Diagnosis("only at kinks", f"the {len(idx)} entries that differ are all at kinks (a "
                         "ReLU input exactly 0, a max-pool tie), where the forward is not "
                         "differentiable: the reference follows the forward's own convention there "
                         "(jax.nn.relu: ReLU′(0) = 0; jnp.maximum(x, 0) and jnp.max split a tie, ½ "
                         "each; this library's pools: the first maximum wins) and the hand rule gives "
                         "another value. If that value is the one you meant, write the forward with "
                         "the same convention (jax.nn.relu, not jnp.maximum, for ReLU′(0) = 0; an "
                         "arg-max for a first-maximum pool); if the rule already follows the "
                         "forward's convention, look for a mistake that shows only at these "
                         "entries (a bias whose inputs all sit at a kink)")
    return None


def _numeric_only():
    """The diagnosis of a central-difference failure where autodiff agreed with the hand rule."""
    return Diagnosis("no known pattern", "agrees with autodiff but not with central differences: f "
                     "is not smooth within the step at these entries (a kink the checker could not "
                     "resolve, or an input whose scale swamps the step), or the forward's own "
                     "derivative is wrong the same way as the rule (a custom_vjp)")


def _where(bad, shape) -> str:
    """Where the differing entries lie, when that says something: all at one index of an axis
    (a boundary row or column, one example), else the first few indices."""
    idx = np.stack(np.unravel_index(bad, shape), axis=1)
    if len(shape) > 1 or len(bad) > 1:
        for ax in range(len(shape)):
            if shape[ax] > 1 and len(bad) > 1 and np.all(idx[:, ax] == idx[0, ax]):
                return (f"; they all lie at index {int(idx[0, ax])} of axis {ax} (of {shape[ax]}): an edge "
                        "or one example, e.g. a slice or loop bound off by one")
    few = ", ".join(str([int(v) for v in row]) for row in idx[:4])
    return f"; the first at {few}" + (", …" if len(bad) > 4 else "")


def _partial(h, r, bad, rtol: float):
    """A factor c ≠ 1 on the differing entries only, the others agreeing (a leaky ReLU's slope
    forgotten: right where x > 0, off by 1/slope where x < 0); c = 0: entries never written."""
    hb, rb = h.reshape(-1)[bad], r.reshape(-1)[bad]
    if len(bad) < 2 or len(bad) == h.size or not np.any(rb):
        return None   # one entry is always some multiple of its reference: no pattern in that
    c = float(np.vdot(hb, rb)) / float(np.vdot(rb, rb))
    if abs(c - 1.0) <= rtol or not _close(hb, c * rb, max(rtol, 1e-9)):
        return None
    what = ("are 0 where the reference is not: a branch or slice the rule never writes"
            if c == 0.0 else f"are off by the same factor {c:.6g}: a factor applied to part of the "
            "entries only (a leaky ReLU's slope forgotten or put on the wrong side, a scale in one branch)")
    return Diagnosis("factor on part of the entries", f"{len(bad)} of {h.size} entries differ and the "
                     f"others agree; the {len(bad)} {what}" + _where(bad, h.shape))


def _unknown(h, r, tol: float, floor: float = 1e-8, rtol: float = 1e-6):
    rr = np.abs(h - r) / np.maximum(floor, np.abs(h) + np.abs(r))
    bad = np.flatnonzero(rr > tol)
    n = len(bad)
    if h.shape == r.shape and n:
        part = _partial(h, r, bad, rtol)
        if part is not None:
            return part
    if not n:   # the leaf failed the norm-wise check only
        return Diagnosis("no known pattern", f"no entry of {r.size} is off by more than the element-wise "
                         f"tolerance {tol:g}, but together they fail the norm-wise check: small differences "
                         "spread over the leaf that fit none of the known patterns (a term or a scale missing "
                         "from part of the rule, or a precision lost on the way): derive this rule again step by step")
    return Diagnosis("no known pattern", f"{n} of {r.size} entries differ and fit none of the "
                     "known patterns: derive this rule again step by step"
                     + (_where(bad, h.shape) if h.shape == r.shape and 0 < n < h.size else ""))


# ============================================================================ comparison

class _Failure(NamedTuple):
    label: str
    worst: Mismatch | None
    diagnosis: Diagnosis
    norm: tuple | None = None    # (norm-wise relative error, its tolerance) when that failed


def _numeric_floor(probe: _Probe, eps: float, tol: float, dtype) -> float:
    """The relative error's floor for a central-difference reference: each difference carries a
    round-off error of about 100·ε_mach·|f|/eps (2e-9·|f| in float64 with eps 1e-5), so entries
    whose |hand| + |reference| lies below that error / tol are judged on that absolute scale
    (doc 004's floor 1e-8 otherwise). Without it a correct rule whose true gradient is ~0 at
    some entry (layer norm over 2 features) fails on round-off alone."""
    noise = 100 * float(jnp.finfo(dtype).eps) * max(1.0, abs(probe.f0())) / eps
    return max(1e-8, noise / tol)


def _autodiff_floor(ref, tol: float, dtype, noise=None) -> float:
    """One leaf's relative-error floor against autodiff: two exact-in-theory computations differ
    by ~ε_mach × the leaf's scale S (its largest |reference| entry), so an entry that is the small
    remainder of a cancellation is judged on the absolute scale 100·ε_mach·S. ``noise``: the
    reference's round-off measured on this leaf (its largest change when the same gradient is
    computed from a cotangent scaled by 3, which rounds differently), for a leaf that is all
    remainder (layer norm over 2 features: dx ≈ 0 from O(1) terms) and whose own scale says
    nothing; the floor is 30× that. doc 004's floor 1e-8 otherwise. Per leaf: a leaf of large
    gradients does not loosen the check of a small one."""
    scale = float(np.max(np.abs(np.asarray(ref, np.float64)), initial=0.0))
    eps = float(jnp.finfo(dtype).eps)
    # the multipliers, capped where the tolerance is within 100 ε_mach of round-off (bfloat16:
    # ε = 7.8e-3, tol 0.1), so that the allowance stays under a third of the tolerance
    k = min(100.0, 0.3 * tol / eps)
    measured = 0.0 if noise is None else min(30.0, k) * float(noise)
    return max(1e-8, (k * eps * scale + measured) / tol)


#: the cotangent scalings whose recomputed references measure a reference's round-off
_NOISE_SCALES = (3.0, 5.0)


def _noise(refs, scaled):
    """Per leaf, max over k of max |r − r_k / k|: a reference and its recomputations from the
    cotangent scaled by each k of :data:`_NOISE_SCALES` (``scaled``: one list of leaves per k)."""
    return [max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64) / k), initial=0.0))
                for k, b in zip(_NOISE_SCALES, bs)) for a, *bs in zip(refs, *scaled)]


def _floors(refs, tol, dtype, noise=None) -> list[float]:
    """:func:`_autodiff_floor` of each reference leaf."""
    return [_autodiff_floor(r, tol, dtype, None if noise is None else n)
            for r, n in zip(refs, noise if noise is not None else [None] * len(refs))]


#: above this many entries that differ from central differences, a sample of them is classified
#: first, and a leaf with a real disagreement in the sample fails without probing the rest
_KINK_SAMPLE = 256


def _accept_kinks(i, bad, probe, h, ctx):
    """Drop the differing entries where central differences are no reference: f has a kink at
    the entry (a ReLU input exactly 0, a max-pool tie; the difference mixes the one-sided
    derivatives, and several ReLU inputs at 0 at once give neither side) or within the step (an
    input within eps of 0). The second needs evidence: a central difference of a 10×, 100× or
    1000× smaller step that disagrees with the eps-step one (on a smooth f the two agree within
    the tolerance, whatever the rule) and agrees with the hand value, each judged with the floor
    scaled up as the smaller step's round-off grows; or Richardson's extrapolation of the eps and
    eps/2 differences (error O(eps⁴)) that disagrees with the eps-step one and agrees with the
    hand value (f curved within the step: 1/x or log x at x a few hundred steps from 0). Those
    entries are checked against autodiff alone. Returns (entries still differing, number accepted)."""
    if probe is None or not len(bad):
        return bad, 0
    tol, floor, eps = ctx["tol"], ctx.get("floor", 1e-8), ctx.get("eps")
    flat = np.asarray(h).reshape(-1)
    near = lambda a, b, fl: abs(a - b) <= tol * max(fl, abs(a) + abs(b))   # noqa: E731

    def real(j):
        if probe.kink(i, int(j)) is not None:
            return False
        c_eps = probe.central(i, int(j), eps) if eps else None
        if eps:   # curvature within the step (1/x at x ~ 250·eps): Richardson's O(eps⁴) estimate
            rich = (4 * probe.central(i, int(j), eps / 2) - c_eps) / 3
            if near(flat[j], rich, 2 * floor) and not near(c_eps, rich, 2 * floor):
                return False
        w = abs(float(np.asarray(probe.leaves[i]).reshape(-1)[j]))
        rel = (1e-3 * w,) if eps and 0 < 1e-3 * w < eps / 1000 else ()   # a pole or log near 0
        for s in ((eps / 10, eps / 100, eps / 1000) + rel if eps else ()):
            c, fl = probe.central(i, int(j), s), floor * eps / s
            if near(flat[j], c, fl) and not near(c_eps, c, fl):
                return False
        return True
    if len(bad) > _KINK_SAMPLE and any(real(j) for j in bad[np.linspace(0, len(bad) - 1, 64).astype(int)]):
        return bad, 0
    keep = [j for j in bad if real(j)]
    return np.asarray(keep, dtype=int), len(bad) - len(keep)


#: at most this many entries of a leaf are re-derived by central differences where the
#: reference is not finite (beyond it, the non-finite reference stands)
_REPAIR_MAX = 1024


def _central_in_domain(probe, i: int, j: int, eps: float):
    """A finite central difference at entry j of leaf i, its step at most ``eps`` and at most
    1e-3 × the entry's magnitude (a log or 1/x near 0: an absolute step would leave the
    domain or straddle the pole); then steps 10×, 100×, 1000× smaller. None if none is finite."""
    w = abs(float(np.asarray(probe.leaves[i]).reshape(-1)[j]))
    steps = [min(eps, 1e-3 * w) if w > 0 else eps] + [eps / 10, eps / 100, eps / 1000]
    for s in steps:
        c = probe.central(i, j, s)
        if np.isfinite(c):
            return c
    return None


def _repair_nonfinite(i, label, h, r, probe, ctx):
    """The entries where the reference is NaN/Inf and the hand value finite. Against central
    differences (``ctx["eps"]``): the step left the forward's domain, so a smaller one in it is
    taken. Against autodiff (``ctx["judge"]`` = (eps, tol, floor)): ``jax.vjp`` of a finite
    forward can be NaN (``jnp.where`` differentiates the untaken branch too, and 0 × inf is NaN),
    so such an entry is accepted when central differences agree with the hand value (counted
    in ``ctx["nonfinite_out"]``). Returns (reference, a note on the first entry still non-finite)."""
    if probe is None or h.shape != r.shape:
        return r, ""
    idx = np.flatnonzero(~np.isfinite(r.reshape(-1)) & np.isfinite(h.reshape(-1)))
    judge, eps = ctx.get("judge"), ctx.get("eps")
    if not len(idx) or len(idx) > _REPAIR_MAX or (judge is None and eps is None):
        return r, ""
    r, hf, note, accepted = r.copy(), h.reshape(-1), "", 0
    rf = r.reshape(-1)
    for j in idx:
        c = _central_in_domain(probe, i, int(j), judge[0] if judge else eps)
        if judge is None:
            rf[j] = np.nan if c is None else c
        elif c is not None and abs(c - hf[j]) <= judge[1] * max(judge[2], abs(c) + abs(hf[j])):
            rf[j], accepted = hf[j], accepted + 1
        elif not note:
            where = list(np.unravel_index(int(j), h.shape))
            note = (f"; the forward is finite there and central differences give {c:.12g} at {where}, "
                    f"the hand gradient {hf[j]:.12g}" if c is not None else "")
    if accepted:
        ctx.setdefault("nonfinite_out", {})[label] = accepted
    return r, note


def _leaf(i, label, h, r, ref_name, tol, ctx, probe, accept_kinks, layer_diag):
    """(max rel error, kinks accepted, _Failure or None) for one leaf."""
    dtypes = (_float_dtype(h), _float_dtype(r))
    h = np.asarray(h, np.float64)
    if np.ma.isMaskedArray(r):  # sampled central differences: unchecked entries agree by fiat
        r = np.where(np.ma.getmaskarray(r), h if h.shape == r.shape else np.nan, np.ma.getdata(r))
    r = np.asarray(r, np.float64)
    r, note = _repair_nonfinite(i, label, h, r, probe, ctx)
    diag = _basic(h, r, ref_name, dict(ctx, leaf=label))
    if diag is not None and note and diag.kind == "non-finite":
        diag = diag._replace(text=diag.text + note)
    if diag is not None:
        i_bad = _first_bad(h) if h.shape == r.shape and not np.all(np.isfinite(h)) else None
        worst = None if i_bad is None else Mismatch(label, i_bad, float(h[i_bad]), float(r[i_bad]), float("nan"))
        return float("nan"), 0, _Failure(label, worst, diag)
    floors = ctx.get("floors")
    floor = floors[i] if floors is not None else ctx.get("floor", 1e-8)
    ctx = dict(ctx, floor=floor, tol=tol)
    err = np.abs(h - r) / np.maximum(floor, np.abs(h) + np.abs(r))
    bad = np.flatnonzero(err > tol)
    n_kinks = 0
    if len(bad) and accept_kinks:
        bad, n_kinks = _accept_kinks(i, bad, probe, h, ctx)
        accepted = np.setdiff1d(np.flatnonzero(err > tol), bad)
        err.reshape(-1)[accepted] = 0.0
        r = r.copy()
        r.reshape(-1)[accepted] = h.reshape(-1)[accepted]   # no reference there: out of the norm too
    max_err = float(err.max()) if err.size else 0.0
    norm_tol, norm = ctx.get("norm_tol"), None
    if norm_tol is not None and h.size:
        # ‖h − r‖ ≤ norm_tol·(‖h‖ + ‖r‖) + the floor's absolute allowance (floor·tol per entry):
        # a leaf that is all round-off (a true gradient of 0) passes on its round-off
        diff, size = float(np.linalg.norm(h - r)), float(np.linalg.norm(h) + np.linalg.norm(r))
        if diff > norm_tol * size + floor * tol * np.sqrt(h.size):
            norm = (diff / max(size, 1e-300), norm_tol)
    if not len(bad) and norm is None:
        return max_err, n_kinks, None
    pick = bad if len(bad) else np.arange(h.size)
    key = err if len(bad) else np.abs(h - r)
    w = np.unravel_index(int(pick[np.argmax(key.reshape(-1)[pick])]), err.shape)
    worst = Mismatch(label, tuple(int(k) for k in w), float(h[w]), float(r[w]), float(err[w]))
    # patterns first: a bias whose every entry sits at a kink may still be summed over the wrong
    # axis; kinks before the activation test, which a wrong ReLU′(0) also passes
    diag = (_all_zeros(h, r) or _pattern(h, r, ctx) or (None if accept_kinks or not len(bad) else _kinks(i, bad, probe))
            or (layer_diag() if layer_diag else None) or _unknown(h, r, tol, floor, ctx.get("rtol", 1e-6)))
    if diag.kind == "no known pattern" and all(d is not None for d in dtypes) and dtypes[0] != dtypes[1]:
        diag = diag._replace(text=diag.text + f" (or the precision: the hand gradient is {dtypes[0].name}, "
                             f"the reference {dtypes[1].name}; a cast on the way loses digits)")
    return max_err, n_kinks, _Failure(label, worst, diag, norm)


def _swapped(f, labels, hs, rs, rtol, failing=None):
    """A leaf with no known pattern whose hand gradient is another leaf's reference, that other
    leaf failing too (``failing``: the failing labels): the two were swapped (or one returned
    under the other's name), a learner's usual slip with dicts."""
    if f.diagnosis.kind != "no known pattern":
        return f
    h = np.asarray(hs[labels.index(f.label)], np.float64)
    for other, r in zip(labels, rs):
        r = np.ma.filled(r, np.nan) if np.ma.isMaskedArray(r) else r
        if failing is not None and other not in failing:
            continue   # its own gradient is right: an equal value there is a coincidence (dg = Σdy = db)
        if other != f.label and np.shape(r) == h.shape and np.any(h) and _close(h, np.asarray(r, np.float64), rtol):
            return f._replace(diagnosis=Diagnosis("swapped leaves", f"equals {other}'s reference: the gradients "
                                                  f"of {f.label} and {other} are swapped (or one is returned under "
                                                  "the other's name)"))
    return f


def _compare_leaves(labels, hs, rs, ref_name, tol, ctx=None, probe=None, accept_kinks=False,
                    layer_diag=None):
    """({label: max rel error}, {label: kinks accepted}, [_Failure]) over aligned leaf lists."""
    ctx = ctx or {}
    errors, kinks, failures = {}, {}, []
    for i, (label, h, r) in enumerate(zip(labels, hs, rs)):
        errors[label], n, fail = _leaf(i, label, h, r, ref_name, tol, ctx, probe, accept_kinks, layer_diag)
        if n:
            kinks[label] = n
        if fail:
            failures.append(fail)
    # A leaf whose every entry sits at a kink (a bias when a whole row of inputs is 0) reads as
    # 'only at kinks' whatever the bug; when other leaves differ away from kinks and a missing
    # activation derivative explains the layer, that is the verdict for all of them.
    failing = {f.label for f in failures}
    failures = [_swapped(f, labels, hs, rs, ctx.get("rtol", 1e-6), failing) for f in failures]
    kinds = {f.diagnosis.kind for f in failures}
    act = layer_diag() if layer_diag and "only at kinks" in kinds and len(kinds) > 1 else None
    if act is not None:
        failures = [f._replace(diagnosis=act) if f.diagnosis.kind == "only at kinks" else f for f in failures]
    return errors, kinks, _not_the_loss(failures, len(labels))


def _not_the_loss(failures, n_leaves: int):
    """A ½ in the loss scales every leaf: where some leaf agrees, a leaf off by 2 is a factor of
    its own rule."""
    if len(failures) == n_leaves:
        return failures

    def own(d):   # d.text starts "off by a factor of c: "
        return Diagnosis("constant factor", d.text.split(":")[0] + " on this gradient only (the others agree, "
                         "so not a ½ in the loss): a factor 2 of a derivative forgotten or doubled in its "
                         "rule (d(x²)/dx = 2x, d(½x²)/dx = x)")
    return [f._replace(diagnosis=own(f.diagnosis)) if f.diagnosis.kind == "½ in the loss" else f for f in failures]


def _section(failures, ref_name, tol, source) -> tuple[str, list[str]]:
    head = (f"hand-written gradient disagrees with {ref_name} (tolerance {tol:g}, {source}): "
            + "; ".join(f"{f.label} {f.diagnosis.kind}" for f in failures))
    lines = []
    for f in failures:
        m = f.worst
        if m is not None:
            bound = f" > {tol:g}" if m.rel_error > tol else ""
            lines.append(f"  {f.label}{list(m.index)}: hand={m.hand:.12g} {ref_name}={m.other:.12g}"
                         f" rel_error={m.rel_error:.3g}{bound}")
        if f.norm is not None:
            lines.append(f"  {f.label}: norm-wise relative error ‖hand − {ref_name}‖ / (‖hand‖ + "
                         f"‖{ref_name}‖) = {f.norm[0]:.3g} > {f.norm[1]:g}")
        lines.append(f"  {f.label}: {f.diagnosis.kind}: {f.diagnosis.text}")
    return head, lines


def _raise(sections):
    """One GradientCheckError for [(failures, ref_name, tol, source)]; its first line names every
    failing parameter with its diagnosis. ``.diagnoses``: {(ref_name, label): Diagnosis}."""
    heads, body, diagnoses = [], [], {}
    for failures, ref_name, tol, source in sections:
        if failures:
            head, lines = _section(failures, ref_name, tol, source)
            heads.append(head)
            body += [head] + lines if len(heads) > 1 else lines
            diagnoses.update({(ref_name, f.label): f.diagnosis for f in failures})
    if heads:
        err = GradientCheckError("\n".join([heads[0]] + body))
        err.diagnoses = diagnoses
        raise err


def _structure(hand, other, other_name: str, prefix: str = "params"):
    names, _, hdef = _paths(hand)
    onames, _, odef = _paths(other)
    if hdef != odef:
        missing = [n for n in onames if n not in names]
        extra = [n for n in names if n not in onames]
        err = GradientCheckError(
            f"hand-written gradient disagrees with {other_name}: {prefix} structure mismatch\n"
            f"  the hand gradient's structure {hdef} is not the reference's {odef}; missing "
            f"{[prefix + n for n in missing]}, extra {[prefix + n for n in extra]}: dparams must "
            "have exactly the structure of params ({} for a layer without parameters)")
        err.diagnoses = {(other_name, prefix): Diagnosis("structure mismatch", str(err))}
        raise err


def compare(hand, other, other_name: str = "jax.grad", tol: float | None = None, *,
            batch_size: int | None = None, f: Callable | None = None, params=None) -> Comparison:
    """Per-leaf ``rel_error`` of two gradient pytrees.

    ``tol=None`` takes the autodiff defaults of the lower precision of the two sides
    (:data:`DEFAULT_TOLERANCES`: element-wise 1e-10 and norm-wise 1e-10 in float64, 1e-2 and 1e-5
    in float32; a given ``tol`` is both); each entry's denominator is floored at its leaf's
    round-off level, 100·ε·max|other| / tol (compare sees two arrays and cannot measure more: a
    reference that is round-off around an exact 0 needs :func:`check_model`). Masked entries of ``other``
    (a sampled :func:`numerical_grad`) are skipped; a NaN or ±Inf anywhere else, on either side,
    fails. Returns a :class:`Comparison` (a dict ``{leaf path: rel_error}`` that also records the
    tolerance and its source). Raises :class:`GradientCheckError` when a leaf disagrees, naming
    the parameter, the worst index, both values, the tolerance and a diagnosis (``batch_size``
    lets it name a factor of N as the batch size; the scalar ``f(params)`` whose gradient both
    sides are, with ``params``, lets it find disagreements that sit only at kinks).
    """
    _check_settings("compare", tol=tol)
    given = tol is not None
    tol, source = _tolerance(hand, tol, "autodiff", other)
    dtype, defaults = default_tolerances(hand, other)
    _structure(hand, other, other_name)
    names, hs, _ = _paths(hand)
    _, os_, _ = _paths(other)
    probe = None if f is None or params is None else _Probe(jax.jit(f), params)
    ctx = {"batch_size": batch_size, "rtol": max(1e-6, tol), "norm_tol": tol if given else defaults["norm"],
           "floors": _floors([np.asarray(o, np.float64) if not np.ma.isMaskedArray(o) else np.ma.filled(o, 0.0)
                              for o in os_], tol, dtype)}
    errors, _, failures = _compare_leaves([f"params{n}" for n in names], hs, os_, other_name, tol, ctx, probe)
    _raise([(failures, other_name, tol, source)])
    return Comparison(dict(zip(names, errors.values())), tol, source)


# ============================================================================ models

def _finite_loss(values: dict, then: Callable):
    """A non-finite loss fails the check (NaN everywhere would otherwise compare 0 with 0);
    ``then()`` runs a comparison whose failure, if any, names the first non-finite gradient entry."""
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    if not bad:
        return
    msg = (f"non-finite loss: {', '.join(f'{k} = {v}' for k, v in bad.items())}; the gradients of a "
           "NaN/Inf loss mean nothing (check the inputs, the init scale and the loss's log/exp)")
    try:
        then()
    except GradientCheckError as e:
        msg += "\n" + str(e)
    err = GradientCheckError(msg)
    err.diagnoses = {("loss", "loss"): Diagnosis("non-finite", msg.splitlines()[0])}
    raise err


def check_model(model, params, x, y, l2=0.0, mask=None, autodiff_tol=None, numeric_tol=None,
                eps=None, n_samples=None, key=None):
    """Hand-written ``model.backprop`` vs ``jax.grad`` and vs central differences.

    Tolerances and the difference step default by the params' dtype (:data:`DEFAULT_TOLERANCES`;
    a meaningful check runs in float64); against ``jax.grad`` every leaf must pass both the
    element-wise and the norm-wise tolerance. Below float64 the central differences run on float64
    copies of the params and inputs (step 1e-5) and the hand gradient is judged against them at
    its own dtype's autodiff tolerances. In float32 the hand program and ``jax.grad``'s can round a
    ReLU input within ~1e-7 of 0 to different sides, and then disagree on a correct rule: the
    guarantee that a correct rule passes is float64's. Where f has a kink at an entry (a ReLU input exactly
    0, a max-pool tie) central differences mix the one-sided derivatives and are no reference, and
    where a kink lies within the step the hand value is compared with central differences of a
    10× and a 100× smaller step: entries at or near a kink that disagree with the eps-step
    difference are counted in ``"kinks"`` and checked against ``jax.grad`` alone (whose value
    there is the forward's convention; it is no independent check when the forward's own
    derivative is the hand rule, a ``custom_vjp``). The relative errors have a floor at the
    round-off level of each reference leaf (:func:`_autodiff_floor`, with the round-off measured by
    recomputing ``jax.grad`` of the loss × 3 and × 5; :func:`_numeric_floor`), so an entry that is
    ~0 up to round-off is judged on an absolute scale. Returns ``{"autodiff": {leaf: rel_error},
    "numeric": {leaf: rel_error}, "kinks": {leaf: count}, "tolerance": {"autodiff", "numeric"},
    "tolerance_source": {...}, "dtype", "eps"}``; raises :class:`GradientCheckError` on failure
    (a non-finite loss included).
    """
    _check_settings("check_model", autodiff_tol=autodiff_tol, numeric_tol=numeric_tol, eps=eps, n_samples=n_samples)
    if np.shape(x)[0] == 0:
        raise ValueError(f"check_model: x has no examples (shape {np.shape(x)}): every gradient would be 0 "
                         "whatever the rule, so nothing would be checked")
    dtype, defaults = default_tolerances(params)
    a_tol, a_src = _tolerance(params, autodiff_tol, "autodiff")
    n_tol, n_src = _tolerance(params, numeric_tol, "numeric")
    norm_tol = a_tol if autodiff_tol is not None else defaults["norm"]
    eps = defaults["eps"] if eps is None else eps
    # jitted closures: the data are constants, so each function compiles once (eager op-by-op
    # dispatch of a deep model costs far more than the check itself)
    loss_h, hand = jax.jit(lambda p: model.backprop(p, x, y, l2, mask))(params)
    loss_a, auto = jax.jit(lambda p: model.grad_autodiff(p, x, y, l2, mask))(params)
    _finite_loss({"backprop loss": float(loss_h), "jax.grad loss": float(loss_a)},
                 lambda: compare(hand, auto, "jax.grad", a_tol))
    _structure(hand, auto, "jax.grad")
    names, hs, _ = _paths(hand)
    labels = [f"params{n}" for n in names]
    ctx = {"batch_size": int(np.shape(x)[0]), "rtol": max(1e-6, a_tol)}
    refs = jax.tree.leaves(auto)
    scaled = [jax.tree.leaves(jax.jit(jax.grad(lambda p, k=k: k * model.loss(p, x, y, l2, mask)))(params))
              for k in _NOISE_SCALES]
    noise = _noise(refs, scaled) if all(len(sc) == len(refs) for sc in scaled) else None
    ctx_a = dict(ctx, floors=_floors(refs, a_tol, dtype, noise), norm_tol=norm_tol)
    low = dtype != "float64"
    # below float64 the central differences run on float64 copies (a float32 step of 1e-2 crosses
    # ReLU kinks and its round-off hides them); the hand gradient is then judged at its own
    # dtype's autodiff tolerances, as against jax.grad
    with jax.enable_x64(True) if low else contextlib.nullcontext():
        p_num, x_num = (jax.tree.map(_to64, params), _to64(x)) if low else (params, x)
        probe = _Probe(jax.jit(lambda p: model.loss(p, x_num, y, l2, mask)), p_num)
        if not low:   # where jax.grad is NaN for a finite loss, central differences judge
            ctx_a["judge"] = (eps, n_tol, _numeric_floor(probe, eps, n_tol, dtype))
        ad, _, fail_a = _compare_leaves(labels, hs, refs, "jax.grad", a_tol, ctx_a, probe)
        if low:
            eps = DEFAULT_TOLERANCES["float64"]["eps"]
            n_tol, n_src = (a_tol, f"{a_src} (central differences in float64)") if numeric_tol is None else (n_tol, n_src)
        num = numerical_grad(probe.f, p_num, eps=eps, n_samples=n_samples, key=key)
        nums = jax.tree.leaves(num)
        ctx_n = (dict(ctx_a, floors=_floors([np.ma.filled(v, 0.0) if np.ma.isMaskedArray(v) else v for v in nums],
                                            n_tol, dtype, noise), eps=eps) if low
                 else dict(ctx, floor=_numeric_floor(probe, eps, n_tol, dtype), eps=eps))
        nu, kinks, fail_n = _compare_leaves(labels, hs, nums, "central differences", n_tol, ctx_n, probe,
                                            accept_kinks=True, layer_diag=None if fail_a else _numeric_only)
    _raise([(fail_a, "jax.grad", a_tol, a_src), (fail_n, "central differences", n_tol, n_src)])
    strip = lambda d: {k[len("params"):]: v for k, v in d.items()}
    return {"autodiff": strip(ad), "numeric": strip(nu), "kinks": strip(kinks),
            "tolerance": {"autodiff": a_tol, "numeric": n_tol},
            "tolerance_source": {"autodiff": a_src, "numeric": n_src}, "dtype": dtype, "eps": eps,
            "nonfinite": strip(ctx_a.get("nonfinite_out", {}))}


# ============================================================================ layers

#: Activation derivatives written in the activation's output y (what a fused layer's cache
#: holds): a hand gradient that matches the reference once dy is multiplied by one of these
#: forgot that activation's derivative.
_ACTIVATION_DERIVATIVES = {
    "ReLU": lambda y: (y > 0).astype(y.dtype),
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
    "softplus": lambda y: -jnp.expm1(-y),
}


def _activation_diag(layer, cache, y, dy, ref_leaves, rtol):
    """'missing activation derivative' when backward(cache, act′(y) ⊙ dy) equals the reference."""
    for name, d in _ACTIVATION_DERIVATIVES.items():
        if np.all(np.asarray(d(y)) == 1):
            continue   # ReLU′ of all-positive outputs: multiplying dy by 1 explains nothing
        dparams, dx = layer.backward(cache, d(y) * dy)
        leaves = jax.tree.leaves(dparams) + ([] if dx is None else [dx])
        if len(leaves) == len(ref_leaves) and all(
                np.shape(a) == np.shape(b) and _close(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol)
                for a, b in zip(leaves, ref_leaves)):
            return Diagnosis("missing activation derivative", f"equals the reference once dy is "
                             f"multiplied by {name}′ of the output: the backward skips the "
                             f"activation's derivative (da = {name}′(a) ⊙ dy before the core rule)")
    return None


class LayerReport(NamedTuple):
    """What :func:`check_layer` measured (all in float64).

    autodiff / numeric: ``{"params['W']": max rel error, …, "dx": …}`` against ``jax.vjp`` of
    the forward and against central differences; kinks: ``{name: entries}`` where the central
    difference straddled a kink and the hand value was accepted as a one-sided derivative;
    tolerance: ``{"autodiff": (tol, source), "numeric": (tol, source)}``; eps: the difference step;
    moved: the leaves of init's params that were moved off their single value (``params=None``);
    nonfinite: ``{name: entries}`` where ``jax.vjp`` was NaN/Inf for a finite forward and hand
    value (a ``jnp.where`` whose untaken branch is not finite) and central differences agreed.
    """
    autodiff: dict
    numeric: dict
    kinks: dict
    tolerance: dict
    eps: float
    moved: tuple = ()
    nonfinite: dict = {}

    def __str__(self):
        (ta, sa), (tn, sn) = self.tolerance["autodiff"], self.tolerance["numeric"]
        rows = [f"{'gradient':<24} {'vs jax.vjp':>12} {'vs central diff.':>17}  kinks"]
        for name in self.autodiff:
            rows.append(f"{name:<24} {self.autodiff[name]:>12.2e} {self.numeric[name]:>17.2e}"
                        f"  {self.kinks.get(name, 0)}")
        rows.append(f"tolerances: {ta:g} ({sa}) / {tn:g} ({sn}); eps {self.eps:g}; float64")
        if self.moved:
            rows.append(f"checked at init's params with {', '.join(self.moved)} moved off their single value")
        for name, n in self.nonfinite.items():
            rows.append(f"{name}: jax.vjp non-finite at {n} entries, judged by central differences alone")
        return "\n".join(rows)


def _to64(v):
    v = jnp.asarray(v)
    return v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v


def _layer_setup(layer, x, params, key, dy, fkey):
    """float64 x, params, forward output y, cache, cotangent dy."""
    k_init, k_dy = jax.random.split(jax.random.key(0) if key is None else key)
    x = _to64(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"check_layer: x has no examples (shape {tuple(x.shape)}): every gradient would be "
                         "0 whatever the rule, so nothing would be checked")
    out_shape = None
    if params is None:
        out_shape, params = _init_out(layer.init(k_init, tuple(x.shape[1:]), jnp.float64))
    elif callable(getattr(layer, "init", None)):   # the declared shape, traced abstractly
        shapes = []
        jax.eval_shape(lambda k: shapes.append(_init_out(layer.init(k, tuple(x.shape[1:]), jnp.float64))[0]),
                       k_init)
        out_shape = shapes[0]
    for name, v in zip(_paths(params)[0], jax.tree.leaves(params)):
        if _float_dtype(v) is None:
            raise ValueError(f"check_layer: params{name} has dtype {np.asarray(v).dtype}: a parameter must be a "
                             "float array (a constant belongs in the layer's closure, or in its cache as Static)")
    params = jax.tree.map(_to64, params)
    if fkey is None and getattr(layer, "stochastic", False):
        fkey = jax.random.fold_in(k_init, 2)   # key=None is evaluation mode: the training rule would go unchecked
    out = layer.forward(params, x, fkey)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"check_layer: forward must return (y, cache), got {type(out).__name__}"
                         + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
    y, cache = out
    if out_shape is not None and tuple(np.shape(y)[1:]) != tuple(out_shape):
        raise ValueError(f"check_layer: forward gave y of shape {tuple(np.shape(y))}, but init declared the "
                         f"per-example output shape {tuple(out_shape)}: a composition (serial) builds the next "
                         "layer for the declared shape")
    if not np.all(np.isfinite(np.asarray(y))):
        i = _first_bad(np.asarray(y))
        err = GradientCheckError(f"forward output non-finite: y{list(i)} = {np.asarray(y)[i]}; a "
                                 "gradient of a NaN/Inf output means nothing")
        err.diagnoses = {("forward", "y"): Diagnosis("non-finite", str(err))}
        raise err
    dy = initializers.normal_draw(k_dy, y.shape, jnp.float64) if dy is None else _to64(dy)
    if not np.any(np.asarray(dy)):
        raise ValueError("check_layer: dy is all zeros: every gradient would be 0 whatever the rule, so "
                         "nothing would be checked (leave dy out for a random cotangent)")
    return x, params, y, cache, dy, fkey


def _init_out(out):
    """``init``'s ``(out_shape, params)``, refused with the contract's order when it is not that."""
    ok = isinstance(out, tuple) and len(out) == 2
    shape = out[0] if ok else None
    if not ok or not (isinstance(shape, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in shape)):
        got = (f"a {type(out).__name__} of length {len(out)} whose first element is a {type(shape).__name__}"
               if isinstance(out, tuple) else f"a {type(out).__name__}")
        raise ValueError(f"check_layer: init must return (out_shape, params), out_shape the per-example output "
                         f"shape as a tuple of ints; it returned {got}" + (" (the two swapped?)" if ok else ""))
    return tuple(int(d) for d in shape), out[1]


#: the relative size of the noise that moves a leaf whose entries are all equal (see below)
MOVE_CONSTANT_LEAVES = 0.1


def _move_constant_leaves(params, key):
    """``params`` with every leaf whose entries are all equal (a gain of 1, a zero bias, a
    ReZero gate at 0) moved by noise of :data:`MOVE_CONSTANT_LEAVES` × its value (× 1 for 0):
    at such a value a wrong rule can agree (a gain forgotten where it is 1, a branch's derivative
    where its gate is 0). Returns (params, the moved leaves' names)."""
    names, leaves, treedef = _paths(params)
    keys = jax.random.split(key, max(1, len(leaves)))
    out, moved = [], []
    for name, v, k in zip(names, leaves, keys):
        a = np.asarray(v)
        if a.size and _float_dtype(a) is not None and np.all(a == a.reshape(-1)[0]) and np.isfinite(a.reshape(-1)[0]):
            c = float(a.reshape(-1)[0])
            scale = MOVE_CONSTANT_LEAVES * (abs(c) if c != 0.0 else 1.0)
            v = jnp.asarray(v) + scale * jax.random.normal(k, a.shape, jnp.asarray(v).dtype)
            moved.append(f"params{name}")
        out.append(v)
    return jax.tree.unflatten(treedef, out), tuple(moved)


def check_layer(layer, x, params=None, *, key=None, dy=None, fkey=None, autodiff_tol=None,
                numeric_tol=None, eps=None, n_samples=None) -> LayerReport:
    """Check a layer's hand-written ``backward`` against ``jax.vjp`` of its ``forward`` and
    against central differences, in float64, with a diagnosis when they disagree.

    layer: anything with ``init(key, in_shape, dtype) -> (out_shape, params)``,
    ``forward(params, x, key=None) -> (y, cache)`` and ``backward(cache, dy) -> (dparams, dx)``
    (a :class:`jaxnets.nn.layers.Layer`). x: (N, *in_shape), cast to float64 (integer inputs,
    e.g. token ids, stay as they are, and their backward must return dx = None). params: the
    layer's params (cast to float64), or None to take ``layer.init(key, in_shape, float64)``
    and, where any leaf's entries are all equal, once more with those leaves moved off that value
    by noise (:data:`MOVE_CONSTANT_LEAVES`; the report's ``moved``): at a gain of 1 or a gate of 0
    a wrong rule can agree, and at a zero bias real data put ReLU inputs exactly on the kink, so
    both are checked. dy: the cotangent of the output (default: standard normal from ``key``); the
    checked scalar is ``Σ dy ⊙ forward(x)``. fkey: the key passed to ``forward`` (a stochastic
    layer's mask stays fixed); a layer with ``stochastic=True`` gets one drawn from ``key`` when
    it is None, so its training rule is the one checked (``key=None`` is evaluation mode). Where
    ``jax.vjp`` is NaN/Inf for a finite forward and a finite hand value (a ``jnp.where`` whose
    untaken branch overflows), the entry is judged by central differences alone (the report's
    ``nonfinite``); where a central difference's step leaves the forward's domain (a log near 0)
    smaller and relative steps are tried. Tolerances and
    eps default to :data:`DEFAULT_TOLERANCES`' float64 row; ``n_samples`` limits the central
    differences to that many entries per gradient. Entries at or near a kink and entries below the
    references' round-off level are judged as in :func:`check_model` (the ``jax.vjp`` round-off
    measured from the cotangent × 3 and × 5). An empty batch or an all-zero ``dy`` is refused
    (``ValueError``): every gradient would be 0 whatever the rule.

    Returns a :class:`LayerReport` (``print`` it for a table); raises :class:`GradientCheckError`
    naming each disagreeing gradient (``params['W']``, ``dx``), its worst index and a diagnosis.
    """
    _check_settings("check_layer", autodiff_tol=autodiff_tol, numeric_tol=numeric_tol, eps=eps, n_samples=n_samples)
    with jax.enable_x64(True):
        report, used = _check_layer_once(layer, x, params, key, dy, fkey, autodiff_tol, numeric_tol, eps,
                                         n_samples)
        if params is not None:
            return report
        k_move = jax.random.fold_in(jax.random.key(0) if key is None else key, 7)
        moved_params, moved = _move_constant_leaves(used, k_move)
        if moved:
            try:
                _check_layer_once(layer, x, moved_params, key, dy, fkey, autodiff_tol, numeric_tol, eps, n_samples)
            except GradientCheckError as e:
                err = GradientCheckError(f"at init's params with {', '.join(moved)} moved off the single value "
                                         "init gives them (at that value the rule agreed: a rule right only "
                                         f"there, e.g. a gain of 1 or a gate of 0 left out): {e}")
                err.diagnoses = getattr(e, "diagnoses", {})
                raise err from None
        return report._replace(moved=moved)


def _check_layer_once(layer, x, params, key, dy, fkey, autodiff_tol, numeric_tol, eps, n_samples):
    """check_layer at one set of params (None: init's); returns (report, the params checked)."""
    x, params, y, cache, dy, fkey = _layer_setup(layer, x, params, key, dy, fkey)
    dparams, dx = _backward_out(layer.backward(cache, dy), params, x)
    has_dx = bool(jnp.issubdtype(x.dtype, jnp.floating))
    if has_dx and dx is None:
        err = GradientCheckError("hand-written gradient disagrees with jax.vjp: dx structure mismatch\n"
                                 "  backward returned dx = None for a float input: a layer returns dx of x's "
                                 f"shape {tuple(x.shape)} (under jit an unused dx costs nothing)")
        err.diagnoses = {("jax.vjp", "dx"): Diagnosis("structure mismatch", str(err))}
        raise err
    if not has_dx and dx is not None:
        raise ValueError(f"check_layer: x is an integer array ({x.dtype}) and backward returns a dx: dx "
                         "cannot be checked against an integer input; pass a float x (x.astype(float)) to "
                         "check it (an integer x is for token ids, whose backward returns dx = None)")
    _cache_crosses_jit(layer, params, x, fkey, dy, cache)
    primal = (params, x) if has_dx else (params,)
    with _traceable():
        f = jax.jit(lambda t: jnp.sum(layer.forward(t[0], t[1] if has_dx else x, fkey)[0] * dy))
        _, vjp = jax.vjp(lambda *t: layer.forward(t[0], t[1] if has_dx else x, fkey)[0], *primal)
        ref = vjp(dy)
        f(primal)
    scaled = [jax.tree.leaves(vjp(k * dy)) for k in _NOISE_SCALES]
    _structure(dparams, ref[0], "jax.vjp")
    names = _paths(params)[0]
    labels = [f"params{n}" for n in names] + (["dx"] if has_dx else [])
    hs = jax.tree.leaves(dparams) + ([dx] if has_dx else [])
    rs = jax.tree.leaves(ref[0]) + ([ref[1]] if has_dx else [])
    noise = _noise(jax.tree.leaves(ref), scaled)
    report = _check_layer_leaves(layer, cache, y, dy, f, primal, labels, hs, rs, x.shape[0],
                                 autodiff_tol, numeric_tol, eps, n_samples, key, noise)
    return report, params


#: JAX's errors for a traced value used as a concrete one (np.asarray of a tracer, `if` on one, a
#: traced shape): what a backward meets when it is not traceable or its cache held Python facts
_TRACER_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                  jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _cache_crosses_jit(layer, params, x, fkey, dy, cache) -> None:
    """The contract's promise that a cache can leave one ``jax.jit`` and enter another: forward
    jitted, its cache handed to a jitted backward. A bare shape or flag in the cache (``cache``,
    the eager forward's, holds a Python number where an array belongs) arrives there as a traced
    array, and the backward fails: refused, naming ``Static``. A backward that fails under jit on
    a cache of arrays is not traceable itself (NumPy on its arrays, a Python ``if`` on a value):
    refused, naming ``jax.numpy``. Any other error propagates as it is."""
    with _traceable():
        _, jcache = jax.jit(lambda p, v: layer.forward(p, v, fkey))(params, x)
    try:
        jax.block_until_ready(jax.jit(layer.backward)(jcache, dy))
    except (*_TRACER_ERRORS, TypeError) as e:   # a traced shape is a plain TypeError
        bare = [v for v in jax.tree.leaves(cache) if isinstance(v, (bool, int, float, complex, np.generic))]
        what = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if bare:
            raise ValueError(f"check_layer: the backward fails on a cache returned from a jitted forward ({what}): "
                             f"the cache holds the Python value {bare[0]!r}, which crosses jax.jit as a traced "
                             "array; Python facts the backward needs (a shape, a flag, a size) go in "
                             "jaxnets.nn.layers.Static((...)), a tuple that crosses jax.jit unchanged") from None
        if not isinstance(e, _TRACER_ERRORS) and "trace" not in str(e).lower():
            raise   # a TypeError of the backward's own, nothing to do with tracing
        raise ValueError(f"check_layer: the backward cannot be traced by JAX ({what}), which fit compiles: "
                         "write it with jax.numpy (not np.asarray/np.* on its arrays) and jnp.where instead of "
                         "a Python `if` on array values") from None


@contextlib.contextmanager
def _traceable():
    """JAX's tracer errors from a forward written with NumPy or Python control flow on values,
    turned into the contract's words."""
    try:
        yield
    except _TRACER_ERRORS as e:
        raise ValueError("check_layer: the forward cannot be traced by JAX, which the checker needs to "
                         "differentiate it (jax.vjp): write it with jax.numpy (jnp.maximum, not np.maximum) "
                         "and jnp.where instead of a Python `if` on array values "
                         f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _backward_out(out, params, x):
    """``backward``'s ``(dparams, dx)``, refused with the contract's order when it is not that."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(f"check_layer: backward must return the tuple (dparams, dx), dparams shaped like "
                         f"params; it returned a {type(out).__name__}"
                         + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
    dparams, dx = out
    pdef = jax.tree.structure(params)
    if (jax.tree.structure(dparams) != pdef and jax.tree.structure(dx) == pdef
            and np.shape(dparams) == np.shape(x)):
        raise ValueError("check_layer: backward returned (dx, dparams): the contract's order is "
                         "(dparams, dx), dparams with the structure of params")
    return dparams, dx


def _check_layer_leaves(layer, cache, y, dy, f, primal, labels, hs, rs, batch, autodiff_tol,
                        numeric_tol, eps, n_samples, key, noise):
    a_tol, a_src = _tolerance({"x": jnp.zeros((), jnp.float64)}, autodiff_tol, "autodiff")
    norm_tol = a_tol if autodiff_tol is not None else DEFAULT_TOLERANCES["float64"]["norm"]
    n_tol, n_src = _tolerance({"x": jnp.zeros((), jnp.float64)}, numeric_tol, "numeric")
    eps = DEFAULT_TOLERANCES["float64"]["eps"] if eps is None else eps
    probe = _Probe(f, primal)
    cot = [("dy", np.asarray(dy))] + [(f"{n}′(y)⊙dy", np.asarray(d(y) * dy))
                                      for n, d in _ACTIVATION_DERIVATIVES.items()]
    ctx = {"batch_size": int(batch), "rtol": 1e-6, "cotangents": cot, "layer": True}
    memo = []

    def layer_diag():  # computed once, and only when a gradient disagrees
        if not memo:
            # at the failing comparison's tolerance: a looser match would name any small
            # precision loss (a float32 dx, where ReLU′(y) ≡ 1 changes nothing) as this
            memo.append(_activation_diag(layer, cache, y, dy, rs, a_tol))
        return memo[0]

    n_floor = _numeric_floor(probe, eps, n_tol, jnp.float64)
    ctx_a = dict(ctx, floors=_floors(rs, a_tol, jnp.float64, noise), norm_tol=norm_tol,
                 judge=(eps, n_tol, n_floor))
    ad, _, fail_a = _compare_leaves(labels, hs, rs, "jax.vjp", a_tol, ctx_a, probe, False, layer_diag)
    num = jax.tree.leaves(numerical_grad(f, primal, eps=eps, n_samples=n_samples, key=key))
    ctx_n = dict(ctx, floor=n_floor, eps=eps)
    nu, kinks, fail_n = _compare_leaves(labels, hs, num, "central differences", n_tol, ctx_n, probe,
                                        True, layer_diag if fail_a else _numeric_only)
    _raise([(fail_a, "jax.vjp", a_tol, a_src), (fail_n, "central differences", n_tol, n_src)])
    return LayerReport(ad, nu, kinks, {"autodiff": (a_tol, a_src), "numeric": (n_tol, n_src)}, eps,
                       nonfinite=ctx_a.get("nonfinite_out", {}))


# ============================================================================ doc 003 §3.1.5

def gradient_checker(model, params, x, y, eps: float = 1e-3):
    """doc 003 §3.1.5: for the (0, …, 0) entry of every parameter, the backprop value next to the
    central-difference approximation (step ``eps``, the document's 1e-3) on the given (typically
    single, first) training example.

    The document's entry can be degenerate: W1(0, 0) multiplies the corner pixel, which is 0 in
    the first Fashion-MNIST training image (and nearly every other), so both sides are exactly 0
    and the row would pass any rule. Each
    row therefore also checks a second entry, the one with the largest |backprop| value
    (``alt_*``), where a wrong rule shows; ``degenerate`` says whether the document's entry
    compared 0 with 0, and ``why`` says it in words.

    ``approx_fine`` / ``alt_approx_fine``: the same differences with a 100× smaller step; where
    a ReLU input lies within ``eps`` of its kink the document's step straddles it and only the
    finer one is a reference.

    Returns a list of ``{"param", "index", "backprop", "approx", "rel_error", "degenerate",
    "alt_index", "alt_backprop", "alt_approx", "alt_rel_error", "approx_fine", "alt_approx_fine",
    "why"}`` rows, one per parameter.
    """
    _, hand = model.backprop(params, x, y)
    probe = _Probe(lambda p: model.loss(p, x, y), params)
    names, leaves, _ = _paths(params)
    rows = []
    for i, (name, g) in enumerate(zip(names, jax.tree.leaves(hand))):
        g = np.asarray(g, np.float64)
        zero, alt = (0,) * g.ndim, np.unravel_index(int(np.argmax(np.abs(g))), g.shape)
        bp, approx = float(g[zero]) + 0.0, probe.central(i, 0, eps)  # + 0.0: no −0.0
        j_alt = int(np.ravel_multi_index(alt, g.shape))
        abp, aapprox = float(g[alt]), probe.central(i, j_alt, eps)
        fine, afine = probe.central(i, 0, eps / 100), probe.central(i, j_alt, eps / 100)
        degenerate = bp == 0.0 and abs(approx) < 1e-12
        why = ("the document's (0, …, 0) entry compares 0 with 0 (its input is 0 for this example), "
               "so it cannot tell a wrong rule from a right one; the largest-|gradient| entry can"
               if degenerate else "both entries have a non-zero gradient")
        rows.append({"param": name, "index": zero, "backprop": bp, "approx": approx,
                     "rel_error": rel_error(bp, approx), "degenerate": degenerate,
                     "alt_index": tuple(int(k) for k in alt), "alt_backprop": abp,
                     "alt_approx": aapprox, "alt_rel_error": rel_error(abp, aapprox), "approx_fine": fine,
                     "alt_approx_fine": afine, "why": why})
    return rows


def weight_mask(model, params):
    """Which leaves are weights (True) as the model's L2 penalty sees them: ``model.decay(params)``
    (a pytree of bools with the structure of ``params``). A model built before the contract had
    ``decay`` falls back to the library's rule (dict keys starting with "W")."""
    if hasattr(model, "decay"):
        return model.decay(params)
    from jaxnets.nn.losses import _is_weight  # pre-``decay`` models: the same rule the L2 uses
    return jax.tree_util.tree_map_with_path(lambda p, v: _is_weight(p), params)


def magnitude_checker(model, params, x, y, small: int = 50, large: int = 5000):
    """doc 003 §3.1.5: the ℓ1-norm Σ|∂L/∂W1| of the first weight's gradient (the first leaf
    :func:`weight_mask` marks) on the first ``small`` vs the first ``large`` examples. A minibatch
    gradient of a mean loss is an unbiased estimate of the full one, so both norms have the same
    magnitude (they would differ ~large/small-fold with a summed loss).

    Returns ``{"param", "batch_small", "l1_small", "batch_large", "l1_large", "sum_small",
    "sum_large"}`` (``sum_*``: the signed sums Σ ∂L/∂W1, kept for comparison).
    """
    paths, _, _ = _paths(params)
    first = next(i for i, w in enumerate(jax.tree.leaves(weight_mask(model, params))) if w)

    def grad_w(n):
        return np.asarray(jax.tree.leaves(model.backprop(params, x[:n], y[:n])[1])[first], np.float64)
    g_small, g_large = grad_w(small), grad_w(large)
    return {"param": paths[first], "batch_small": min(small, len(x)), "l1_small": float(np.abs(g_small).sum()),
            "batch_large": min(large, len(x)), "l1_large": float(np.abs(g_large).sum()),
            "sum_small": float(g_small.sum()), "sum_large": float(g_large.sum())}
