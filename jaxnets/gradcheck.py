"""Gradient checking for hand-written backward rules (doc 001 appendix, doc 003 §3.1.5, doc 004 §1.5.3).

All functions work on any params pytree. For meaningful tolerances run them in float64
(``with jax.enable_x64(True):`` and float64 params/inputs); :func:`check_layer` does so itself.

A disagreement raises :class:`jaxnets.errors.GradientCheckError` whose message says, per
parameter, what the disagreement looks like (:data:`DIAGNOSES`: transposed, a constant factor, only
at kinks, a missing activation derivative, a bias summed over the wrong axis, non-finite, shape or
structure mismatch, all zeros), so a learner knows where to look. A NaN or ±Inf on either side
is always a failure.
"""
from __future__ import annotations

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
             "constant factor", "missing activation derivative", "wrong axis", "no known pattern")


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

    def central(self, i: int, j: int, eps: float) -> float:
        return (self.at(i, j, eps) - self.at(i, j, -eps)) / (2 * eps)

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
    probe = _Probe(f, params)
    keys = jax.random.split(key if key is not None else jax.random.key(0), len(probe.leaves))
    out = []
    for i, v in enumerate(probe.leaves):
        g = np.full(np.shape(v), np.nan)
        sampled = n_samples is not None and n_samples < g.size
        idx = (np.asarray(jax.random.choice(keys[i], g.size, (n_samples,), replace=False))
               if sampled else range(g.size))
        for j in idx:
            g.reshape(-1)[j] = probe.central(i, int(j), eps)
        out.append(np.ma.masked_invalid(g) if sampled else g)
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


#: Default tolerances per dtype of the hand-written gradient. float64: doc 004's "< 1e-8" with
#: margin (hand vs autodiff agree to ~1e-13; central differences with eps 1e-5 to ~1e-9).
#: float32: round-off alone gives element-wise relative errors of ~1e-3 on entries near zero
#: (the measure divides by |x| + |y|), so only a gross mistake can be told apart; 1e-2 is
#: cs231n's "probably wrong" line; central differences need a larger step (eps 1e-2) and tolerance.
DEFAULT_TOLERANCES = {
    "float64": {"autodiff": 1e-10, "numeric": 1e-6, "eps": 1e-5},
    "float32": {"autodiff": 1e-2, "numeric": 1e-1, "eps": 1e-2},
    "float16": {"autodiff": 1e-1, "numeric": 3e-1, "eps": 1e-1},
    "bfloat16": {"autodiff": 1e-1, "numeric": 3e-1, "eps": 1e-1},
}


def default_tolerances(tree) -> tuple[str, dict]:
    """(dtype name, {"autodiff", "numeric", "eps"}) for the widest float dtype among the leaves."""
    dtypes = [jnp.dtype(v.dtype) for v in jax.tree.leaves(tree) if jnp.issubdtype(v.dtype, jnp.floating)]
    name = max(dtypes, key=lambda d: d.itemsize).name if dtypes else "float64"
    return name, DEFAULT_TOLERANCES.get(name, DEFAULT_TOLERANCES["float32"])


def _tolerance(tree, tol, kind: str) -> tuple[float, str]:
    """(tolerance, where it came from): "given" only when the caller passed one."""
    if tol is not None:
        return float(tol), "given"
    dtype, defaults = default_tolerances(tree)
    return defaults[kind], f"{dtype} default"


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


def _factor(h, r, rtol: float, batch_size):
    rr = float(np.vdot(r, r))
    if rr == 0.0:
        return None
    c = float(np.vdot(h, r)) / rr
    if c == 0.0 or abs(c - 1.0) <= 1e-6 or not _close(h, c * r, rtol):
        return None  # c ≈ 1: the two agree globally, the difference is elsewhere
    near = lambda target: abs(c - target) <= 1e-6 * abs(target)
    if near(-1.0):
        return Diagnosis("sign flipped", "equals −1 × the reference: a sign is flipped (a gradient "
                         "added where it is subtracted, or a − lost in the loss's derivative)")
    if near(2.0) or near(0.5):
        return Diagnosis("½ in the loss", f"off by a factor of {c:.6g}: ½ in the loss on one side "
                         "only (the derivative of ½(s − t)² is (s − t), that of (s − t)² is 2(s − t))")
    if batch_size and batch_size > 1 and (near(float(batch_size)) or near(1.0 / batch_size)):
        return Diagnosis("a missing or extra 1/N", f"off by a factor of {c:.6g}, the batch size "
                         f"N = {batch_size}: a missing or extra 1/N (a mean loss divides by N once)")
    return Diagnosis("constant factor", f"off by a constant factor {c:.6g}: a scale (a step size, "
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
                             "the gradient of a parameter has the parameter's shape"))
    bad = _nonfinite(h, r, ref_name)
    if bad:
        return bad
    if not np.any(h) and np.any(r):
        return Diagnosis("all zeros", "every entry is 0 where the reference is not: the rule "
                         "never writes this gradient (or writes it to a copy)")
    return None


def _pattern(h, r, ctx: dict):
    rtol = ctx.get("rtol", 1e-6)
    return (_transposed(h, r, rtol) or _factor(h, r, rtol, ctx.get("batch_size"))
            or _wrong_axis(h, r, ctx.get("cotangents", ()), rtol))


def _kinks(i: int, idx, probe: _Probe | None, limit: int = 64):
    """'only at kinks' when every differing entry (up to ``limit`` of them) sits at a kink of f."""
    if probe is None or len(idx) == 0:
        return None
    pick = idx if len(idx) <= limit else idx[np.linspace(0, len(idx) - 1, limit).astype(int)]
    if all(probe.kink(i, int(j)) is not None for j in pick):
        return Diagnosis("only at kinks", f"the {len(idx)} entries that differ are all at kinks (a "
                         "ReLU input exactly 0, a max-pool tie), where the forward is not "
                         "differentiable: the hand rule and the forward use different conventions "
                         "there (ReLU′(0) = 0 with jax.nn.relu; the first maximum wins a tie)")
    return None


def _unknown(h, r, tol: float, floor: float = 1e-8):
    rr = np.abs(h - r) / np.maximum(floor, np.abs(h) + np.abs(r))
    n = int(np.sum(rr > tol))
    return Diagnosis("no known pattern", f"{n} of {r.size} entries differ and fit none of the "
                     "known patterns: derive this rule again step by step")


# ============================================================================ comparison

class _Failure(NamedTuple):
    label: str
    worst: Mismatch | None
    diagnosis: Diagnosis


def _numeric_floor(probe: _Probe, eps: float, tol: float, dtype) -> float:
    """The relative error's floor for a central-difference reference: each difference carries a
    round-off error of about 100·ε_mach·|f|/eps (2e-9·|f| in float64 with eps 1e-5), so entries
    whose |hand| + |reference| lies below that error / tol are judged on that absolute scale
    (doc 004's floor 1e-8 otherwise). Without it a correct rule whose true gradient is ~0 at
    some entry (layer norm over 2 features) fails on round-off alone."""
    noise = 100 * float(jnp.finfo(dtype).eps) * max(1.0, abs(probe.f0())) / eps
    return max(1e-8, noise / tol)


def _autodiff_floor(ref_leaves, tol: float, dtype) -> float:
    """The relative error's floor against autodiff: two exact-in-theory computations still
    differ by ~ε_mach × the gradient's scale S (the largest |reference| entry), so an entry that
    is the small remainder of a cancellation (layer norm over 2 features: dx ≈ 1e-7 from O(1)
    terms) is judged on that absolute scale, 100·ε_mach·S; doc 004's floor 1e-8 otherwise."""
    scale = max([float(np.max(np.abs(np.asarray(r, np.float64)), initial=0.0)) for r in ref_leaves] + [1e-300])
    return max(1e-8, 100 * float(jnp.finfo(dtype).eps) * scale / tol)


def _accept_kinks(i, bad, probe):
    """Drop the differing entries that sit at a kink of f: a central difference there mixes the
    one-sided derivatives (several ReLU inputs at 0 at once give neither side) and is no
    reference; the autodiff comparison checks those entries. Returns (entries still
    differing, number accepted)."""
    if probe is None or len(bad) > 256:
        return bad, 0
    keep = [j for j in bad if probe.kink(i, int(j)) is None]
    return np.asarray(keep, dtype=int), len(bad) - len(keep)


def _leaf(i, label, h, r, ref_name, tol, ctx, probe, accept_kinks, layer_diag):
    """(max rel error, kinks accepted, _Failure or None) for one leaf."""
    h = np.asarray(h, np.float64)
    if np.ma.isMaskedArray(r):  # sampled central differences: unchecked entries agree by fiat
        r = np.where(np.ma.getmaskarray(r), h if h.shape == r.shape else np.nan, np.ma.getdata(r))
    r = np.asarray(r, np.float64)
    diag = _basic(h, r, ref_name, ctx)
    if diag is not None:
        i_bad = _first_bad(h) if h.shape == r.shape and not np.all(np.isfinite(h)) else None
        worst = None if i_bad is None else Mismatch(label, i_bad, float(h[i_bad]), float(r[i_bad]), float("nan"))
        return float("nan"), 0, _Failure(label, worst, diag)
    floor = ctx.get("floor", 1e-8)
    err = np.abs(h - r) / np.maximum(floor, np.abs(h) + np.abs(r))
    bad = np.flatnonzero(err > tol)
    n_kinks = 0
    if len(bad) and accept_kinks:
        bad, n_kinks = _accept_kinks(i, bad, probe)
        err.reshape(-1)[np.setdiff1d(np.flatnonzero(err > tol), bad)] = 0.0
    max_err = float(err.max()) if err.size else 0.0
    if not len(bad):
        return max_err, n_kinks, None
    w = np.unravel_index(int(bad[np.argmax(err.reshape(-1)[bad])]), err.shape)
    worst = Mismatch(label, tuple(int(k) for k in w), float(h[w]), float(r[w]), float(err[w]))
    # patterns first: a bias whose every entry sits at a kink may still be summed over the wrong
    # axis; kinks before the activation test, which a wrong ReLU′(0) also passes
    diag = (_pattern(h, r, ctx) or (None if accept_kinks else _kinks(i, bad, probe))
            or (layer_diag() if layer_diag else None) or _unknown(h, r, tol, floor))
    return max_err, n_kinks, _Failure(label, worst, diag)


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
    kinds = {f.diagnosis.kind for f in failures}
    act = layer_diag() if layer_diag and "only at kinks" in kinds and len(kinds) > 1 else None
    if act is not None:
        failures = [f._replace(diagnosis=act) if f.diagnosis.kind == "only at kinks" else f for f in failures]
    return errors, kinks, failures


def _section(failures, ref_name, tol, source) -> tuple[str, list[str]]:
    head = (f"hand-written gradient disagrees with {ref_name} (tolerance {tol:g}, {source}): "
            + "; ".join(f"{f.label} {f.diagnosis.kind}" for f in failures))
    lines = []
    for f in failures:
        m = f.worst
        if m is not None:
            lines.append(f"  {f.label}{list(m.index)}: hand={m.hand:.12g} {ref_name}={m.other:.12g}"
                         f" rel_error={m.rel_error:.3g} > {tol:g}")
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

    ``tol=None`` takes the autodiff default of the hand gradient's dtype
    (:data:`DEFAULT_TOLERANCES`: 1e-10 in float64, 1e-2 in float32). Masked entries of ``other``
    (a sampled :func:`numerical_grad`) are skipped; a NaN or ±Inf anywhere else, on either side,
    fails. Returns a :class:`Comparison` (a dict ``{leaf path: rel_error}`` that also records the
    tolerance and its source). Raises :class:`GradientCheckError` when a leaf disagrees, naming
    the parameter, the worst index, both values, the tolerance and a diagnosis (``batch_size``
    lets it name a factor of N as the batch size; the scalar ``f(params)`` whose gradient both
    sides are, with ``params``, lets it find disagreements that sit only at kinks).
    """
    tol, source = _tolerance(hand, tol, "autodiff")
    _structure(hand, other, other_name)
    names, hs, _ = _paths(hand)
    _, os_, _ = _paths(other)
    probe = None if f is None or params is None else _Probe(jax.jit(f), params)
    errors, _, failures = _compare_leaves([f"params{n}" for n in names], hs, os_, other_name, tol,
                                          {"batch_size": batch_size, "rtol": max(1e-6, tol)}, probe)
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
    a meaningful check runs in float64). Central differences at a kink (a ReLU input exactly 0,
    a max-pool tie) average the two one-sided derivatives, so there the hand value is accepted
    when it is one of them (counted in ``"kinks"``). The relative errors have a floor at the
    round-off level of each reference (:func:`_autodiff_floor`, :func:`_numeric_floor`), so an
    entry that is ~0 up to round-off is judged on an absolute scale. Returns ``{"autodiff": {leaf: rel_error},
    "numeric": {leaf: rel_error}, "kinks": {leaf: count}, "tolerance": {"autodiff", "numeric"},
    "tolerance_source": {...}, "dtype", "eps"}``; raises :class:`GradientCheckError` on failure
    (a non-finite loss included).
    """
    dtype, defaults = default_tolerances(params)
    a_tol, a_src = _tolerance(params, autodiff_tol, "autodiff")
    n_tol, n_src = _tolerance(params, numeric_tol, "numeric")
    eps = defaults["eps"] if eps is None else eps
    # jitted closures: the data are constants, so each function compiles once (eager op-by-op
    # dispatch of a deep model costs far more than the check itself)
    loss_h, hand = jax.jit(lambda p: model.backprop(p, x, y, l2, mask))(params)
    loss_a, auto = jax.jit(lambda p: model.grad_autodiff(p, x, y, l2, mask))(params)
    f = jax.jit(lambda p: model.loss(p, x, y, l2, mask))
    _finite_loss({"backprop loss": float(loss_h), "jax.grad loss": float(loss_a)},
                 lambda: compare(hand, auto, "jax.grad", a_tol))
    _structure(hand, auto, "jax.grad")
    names, hs, _ = _paths(hand)
    labels = [f"params{n}" for n in names]
    ctx = {"batch_size": int(np.shape(x)[0]), "rtol": max(1e-6, a_tol)}
    probe = _Probe(f, params)
    ctx_a = dict(ctx, floor=_autodiff_floor(jax.tree.leaves(auto), a_tol, dtype))
    ad, _, fail_a = _compare_leaves(labels, hs, jax.tree.leaves(auto), "jax.grad", a_tol, ctx_a, probe)
    num = numerical_grad(f, params, eps=eps, n_samples=n_samples, key=key)
    ctx_n = dict(ctx, floor=_numeric_floor(probe, eps, n_tol, dtype))
    nu, kinks, fail_n = _compare_leaves(labels, hs, jax.tree.leaves(num), "central differences",
                                        n_tol, ctx_n, probe, accept_kinks=True)
    _raise([(fail_a, "jax.grad", a_tol, a_src), (fail_n, "central differences", n_tol, n_src)])
    strip = lambda d: {k[len("params"):]: v for k, v in d.items()}
    return {"autodiff": strip(ad), "numeric": strip(nu), "kinks": strip(kinks),
            "tolerance": {"autodiff": a_tol, "numeric": n_tol},
            "tolerance_source": {"autodiff": a_src, "numeric": n_src}, "dtype": dtype, "eps": eps}


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
    tolerance: ``{"autodiff": (tol, source), "numeric": (tol, source)}``; eps: the difference step.
    """
    autodiff: dict
    numeric: dict
    kinks: dict
    tolerance: dict
    eps: float

    def __str__(self):
        (ta, sa), (tn, sn) = self.tolerance["autodiff"], self.tolerance["numeric"]
        rows = [f"{'gradient':<24} {'vs jax.vjp':>12} {'vs central diff.':>17}  kinks"]
        for name in self.autodiff:
            rows.append(f"{name:<24} {self.autodiff[name]:>12.2e} {self.numeric[name]:>17.2e}"
                        f"  {self.kinks.get(name, 0)}")
        rows.append(f"tolerances: {ta:g} ({sa}) / {tn:g} ({sn}); eps {self.eps:g}; float64")
        return "\n".join(rows)


def _to64(v):
    v = jnp.asarray(v)
    return v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v


def _layer_setup(layer, x, params, key, dy, fkey):
    """float64 x, params, forward output y, cache, cotangent dy."""
    k_init, k_dy = jax.random.split(jax.random.key(0) if key is None else key)
    x = _to64(x)
    if params is None:
        params = layer.init(k_init, tuple(x.shape[1:]), jnp.float64)[1]
    params = jax.tree.map(_to64, params)
    y, cache = layer.forward(params, x, fkey)
    if not np.all(np.isfinite(np.asarray(y))):
        i = _first_bad(np.asarray(y))
        err = GradientCheckError(f"forward output non-finite: y{list(i)} = {np.asarray(y)[i]}; a "
                                 "gradient of a NaN/Inf output means nothing")
        err.diagnoses = {("forward", "y"): Diagnosis("non-finite", str(err))}
        raise err
    dy = initializers.normal_draw(k_dy, y.shape, jnp.float64) if dy is None else _to64(dy)
    return x, params, y, cache, dy


def check_layer(layer, x, params=None, *, key=None, dy=None, fkey=None, autodiff_tol=None,
                numeric_tol=None, eps=None, n_samples=None) -> LayerReport:
    """Check a layer's hand-written ``backward`` against ``jax.vjp`` of its ``forward`` and
    against central differences, in float64, with a diagnosis when they disagree.

    layer: anything with ``init(key, in_shape, dtype) -> (out_shape, params)``,
    ``forward(params, x, key=None) -> (y, cache)`` and ``backward(cache, dy) -> (dparams, dx)``
    (a :class:`jaxnets.nn.layers.Layer`). x: (N, *in_shape), cast to float64 (integer inputs,
    e.g. token ids, stay as they are and get no dx). params: the layer's params (cast to
    float64), or None to take ``layer.init(key, in_shape, float64)``. dy: the cotangent of the
    output (default: standard normal from ``key``); the checked scalar is ``Σ dy ⊙ forward(x)``.
    fkey: the key passed to ``forward`` (a stochastic layer's mask stays fixed). Tolerances and
    eps default to :data:`DEFAULT_TOLERANCES`' float64 row; ``n_samples`` limits the central
    differences to that many entries per gradient. Entries at a kink and entries below the
    references' round-off level are judged as in :func:`check_model`.

    Returns a :class:`LayerReport` (``print`` it for a table); raises :class:`GradientCheckError`
    naming each disagreeing gradient (``params['W']``, ``dx``), its worst index and a diagnosis.
    """
    with jax.enable_x64(True):
        x, params, y, cache, dy = _layer_setup(layer, x, params, key, dy, fkey)
        dparams, dx = layer.backward(cache, dy)
        has_dx = bool(jnp.issubdtype(x.dtype, jnp.floating))
        primal = (params, x) if has_dx else (params,)
        f = jax.jit(lambda t: jnp.sum(layer.forward(t[0], t[1] if has_dx else x, fkey)[0] * dy))
        _, vjp = jax.vjp(lambda *t: layer.forward(t[0], t[1] if has_dx else x, fkey)[0], *primal)
        ref = vjp(dy)
        _structure(dparams, ref[0], "jax.vjp")
        names = _paths(params)[0]
        labels = [f"params{n}" for n in names] + (["dx"] if has_dx else [])
        hs = jax.tree.leaves(dparams) + ([dx] if has_dx else [])
        rs = jax.tree.leaves(ref[0]) + ([ref[1]] if has_dx else [])
        return _check_layer_leaves(layer, cache, y, dy, f, primal, labels, hs, rs, x.shape[0],
                                   autodiff_tol, numeric_tol, eps, n_samples, key)


def _check_layer_leaves(layer, cache, y, dy, f, primal, labels, hs, rs, batch, autodiff_tol,
                        numeric_tol, eps, n_samples, key):
    a_tol, a_src = _tolerance({"x": jnp.zeros((), jnp.float64)}, autodiff_tol, "autodiff")
    n_tol, n_src = _tolerance({"x": jnp.zeros((), jnp.float64)}, numeric_tol, "numeric")
    eps = DEFAULT_TOLERANCES["float64"]["eps"] if eps is None else eps
    probe = _Probe(f, primal)
    cot = [("dy", np.asarray(dy))] + [(f"{n}′(y)⊙dy", np.asarray(d(y) * dy))
                                      for n, d in _ACTIVATION_DERIVATIVES.items()]
    ctx = {"batch_size": int(batch), "rtol": 1e-6, "cotangents": cot}
    memo = []

    def layer_diag():  # computed once, and only when a gradient disagrees
        if not memo:
            memo.append(_activation_diag(layer, cache, y, dy, rs, 1e-6))
        return memo[0]

    ctx_a = dict(ctx, floor=_autodiff_floor(rs, a_tol, jnp.float64))
    ad, _, fail_a = _compare_leaves(labels, hs, rs, "jax.vjp", a_tol, ctx_a, probe, False, layer_diag)
    num = jax.tree.leaves(numerical_grad(f, primal, eps=eps, n_samples=n_samples, key=key))
    ctx_n = dict(ctx, floor=_numeric_floor(probe, eps, n_tol, jnp.float64))
    nu, kinks, fail_n = _compare_leaves(labels, hs, num, "central differences", n_tol, ctx_n, probe,
                                        True, layer_diag)
    _raise([(fail_a, "jax.vjp", a_tol, a_src), (fail_n, "central differences", n_tol, n_src)])
    return LayerReport(ad, nu, kinks, {"autodiff": (a_tol, a_src), "numeric": (n_tol, n_src)}, eps)


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

    Returns a list of ``{"param", "index", "backprop", "approx", "rel_error", "degenerate",
    "alt_index", "alt_backprop", "alt_approx", "alt_rel_error", "why"}`` rows, one per parameter.
    """
    _, hand = model.backprop(params, x, y)
    probe = _Probe(lambda p: model.loss(p, x, y), params)
    names, leaves, _ = _paths(params)
    rows = []
    for i, (name, g) in enumerate(zip(names, jax.tree.leaves(hand))):
        g = np.asarray(g, np.float64)
        zero, alt = (0,) * g.ndim, np.unravel_index(int(np.argmax(np.abs(g))), g.shape)
        bp, approx = float(g[zero]) + 0.0, probe.central(i, 0, eps)  # + 0.0: no −0.0
        abp, aapprox = float(g[alt]), probe.central(i, int(np.ravel_multi_index(alt, g.shape)), eps)
        degenerate = bp == 0.0 and abs(approx) < 1e-12
        why = ("the document's (0, …, 0) entry compares 0 with 0 (its input is 0 for this example), "
               "so it cannot tell a wrong rule from a right one; the largest-|gradient| entry can"
               if degenerate else "both entries have a non-zero gradient")
        rows.append({"param": name, "index": zero, "backprop": bp, "approx": approx,
                     "rel_error": rel_error(bp, approx), "degenerate": degenerate,
                     "alt_index": tuple(int(k) for k in alt), "alt_backprop": abp,
                     "alt_approx": aapprox, "alt_rel_error": rel_error(abp, aapprox), "why": why})
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
