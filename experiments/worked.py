"""The documents' worked examples, recomputed with the library.

Every item starts from the document's own matrices, converts them **explicitly** into the
library layout (params = list of ``{"W": (fan_in, fan_out), "b": (fan_out,)}``) and runs the
library's layers / losses / models on them — no separate math. The conversions:

- doc 001 writes ``α`` as (hidden × (1 + input)) with the bias in column 0 (``x0 = 1``) and ``β``
  as (output × (1 + hidden)) likewise: ``W1 = α[:, 1:].T``, ``b1 = α[:, 0]``,
  ``W2 = β[:, 1:].T``, ``b2 = β[:, 0]``. Its indices are 1-based for rows (units) and 0-based for
  columns (column 0 = bias), so ``β_{k,j}`` is ``W2[j-1, k-1]`` for j ≥ 1 and ``b2[k-1]`` for
  j = 0, and ``α_{j,i}`` is ``W1[i-1, j-1]``. Classes are numbered 1…K (label "class 3" is
  index 2). doc 001 §3 writes ``w1`` as (hidden × input) too: ``W = w1.T``.
- doc 002 already stores ``w1`` as (in × hidden) and ``w2`` as (hidden × out): used as is.
- doc 004 stores ``W1`` as (hidden × input) (``scores = relu(X W1ᵀ + b1) W2ᵀ + b2``):
  ``W = W1.T``, and ``W2`` (out × hidden): ``W = W2.T``.

Each quantity becomes a record ``{"id", "doc", "quantity", "value", "doc_value", "agrees", "note"}``
(``quantity``: the document's own name, e.g. "doc 004 §1.3.2 δ⁽¹⁾ = dl/db⁽¹⁾")
(``doc`` ∈ "001"…"004"; ``doc_value``/``agrees`` are None where the document states nothing).
Agreement is judged to the document's rounding: a value stated with ``d`` decimals agrees when
``|ours − doc| ≤ 0.5·10⁻ᵈ`` (+1e-9 relative slack for float noise); the explicit
tolerances are used where it gives them. A document's wrong answer is recorded with
``agrees=False`` and a one-line explanation; the computation is never bent towards it.

Precision: everything is computed in float64. The public functions enable it with the
``jax.enable_x64(True)`` **context manager** around their body, so no global JAX state leaks
out (callers keep their float32 default); results leave the context as Python floats/lists.

Public API::

    run() -> Report                       # all sections; report.records, report.text()
    records() -> list[dict]               # run().records
    doc001_network_q3_q5(), doc001_zero_init_symmetry(), doc001_regression(),
    doc001_conv_4_4(), doc002_q3(), doc004_sigmoid_net(), doc004_toy_two_layer_net()
                                          # one Section each (records + step tables)

Command line: The documents' worked examples: step-by-step tables and a JSON record list.

    python -m experiments.worked [--json PATH]

Prints every item's layer values, gradients and updates next to the document's stated answers
(agrees / DISAGREES, with the reason for a slip), then a summary line. ``--json PATH`` also writes
``{"tool": "experiments.worked", "records": [...]}``, each record ``{"id", "doc", "quantity", "value",
"doc_value", "agrees", "note"}`` (strict JSON: non-finite numbers appear as the strings "nan"/"inf");
an existing PATH is replaced only when it is this tool's own ``--json`` file. Computed in float64 on CPU or accelerator
alike; see :mod:`experiments.worked`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import gradcheck
from jaxnets.nn import layers as L
from jaxnets.nn import losses
from jaxnets import models
import sys

from experiments._lib import cli as _cli

__all__ = ["Section", "Report", "run", "records", "doc001_network_q3_q5", "doc001_zero_init_symmetry",
           "doc001_regression", "doc001_conv_4_4", "doc002_q3", "doc004_sigmoid_net",
           "doc004_toy_two_layer_net", "agrees_to_rounding"]


# ============================================================================ records & tables

def _plain(v):
    """A JSON-ready copy: arrays -> nested lists of Python numbers, non-finite floats -> strings."""
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else ("nan" if math.isnan(f) else ("inf" if f > 0 else "-inf"))
    if isinstance(v, (list, tuple)):
        return [_plain(u) for u in v]
    a = np.asarray(v)
    if a.ndim == 0:
        return _plain(a.item())
    return [_plain(u) for u in a.tolist()]


def agrees_to_rounding(value, doc_value, decimals: int | None = None, tol: float | None = None) -> bool:
    """True when ``value`` matches ``doc_value`` to the document's rounding.

    Strings compare exactly. Numbers (scalars or nested lists, same shape) agree when every entry
    satisfies ``|ours − doc| ≤ tol + 1e-9·max(1, |doc|)``, with ``tol = 0.5·10^(−decimals)`` unless
    given. Non-finite values never agree.
    """
    if isinstance(doc_value, str) or isinstance(value, str):
        return value == doc_value
    v = np.asarray(value, np.float64)
    d = np.asarray(doc_value, np.float64)
    if v.shape != d.shape or not np.all(np.isfinite(v)):
        return False
    if tol is None:
        tol = 0.5 * 10.0 ** (-(decimals if decimals is not None else 0))
    slack = 1e-9 * np.maximum(1.0, np.abs(d))
    return bool(np.all(np.abs(v - d) <= tol + slack))


def _criterion(doc_value, decimals, tol, agree_fn) -> str:
    """How :func:`agrees_to_rounding` judged a row, in words (the report's tolerance cell)."""
    if agree_fn is not None:
        raise ValueError("worked: a row judged by agree_fn needs criterion= (its rule in words)")
    if isinstance(doc_value, str):
        return "exact"
    if tol is not None:
        return "exact (float64)" if tol == 0 else f"±{tol:g}"
    return f"doc rounding ({decimals or 0} decimal{'' if decimals == 1 else 's'})"


def _fmt(v, precise: bool = False, decimals: int | None = None) -> str:
    """Readable text of a value: 6 decimals, or the document's ``decimals`` where it states more
    (doc 004 §1.5.1's 8-decimal scores), so no stated digit is rounded away; all 17 significant
    digits when ``precise``."""
    if v is None:
        return "—"
    if isinstance(v, (str, bool)):
        return str(v)
    a = np.asarray(v)
    if a.dtype.kind in "iu":
        return np.array2string(a, separator=", ") if a.ndim else str(int(a))
    a = a.astype(np.float64) + 0.0                       # + 0.0 turns −0.0 into 0.0
    d = max(6, decimals or 0)
    if a.ndim == 0:
        f = float(a)
        if precise or not math.isfinite(f):
            return repr(f)
        if f != 0 and (abs(f) >= 1e6 or abs(f) < 1e-4):
            return f"{f:.6e}"
        return f"{f:.{d}f}".rstrip("0").rstrip(".") if f == round(f, d) else f"{f:.{d}f}"
    big = np.any(np.abs(a[np.isfinite(a)]) >= 1e6) if a.size else False
    with np.printoptions(precision=17 if precise else d, suppress=not big, floatmode="maxprec",
                         linewidth=110):
        return np.array2string(a, separator=", ")


@dataclass
class Section:
    """One worked example: its records and a step-by-step table (steps of rows)."""
    doc: str
    title: str
    records: list = field(default_factory=list)
    steps: list = field(default_factory=list)     # [(step name, [row dicts])]
    notes: list = field(default_factory=list)     # free lines printed under the title

    def step(self, name: str, ref: str | None = None):
        """Start a step; ``ref``: the document's section its rows belong to (e.g. "§1.5.3")."""
        self.steps.append((name, []))
        self.ref = ref

    def row(self, label: str, value, doc_value=None, *, id: str | None = None, decimals: int | None = None,
            tol: float | None = None, agree_fn: Callable[[Any, Any], bool] | None = None, note: str = "",
            agrees: bool | None = None, precise: bool | None = None, ref: str | None = None,
            criterion: str | None = None, reconstruction: bool = False):
        """Add a table row; with ``id`` also a record. ``agrees`` is computed from ``doc_value``
        (to ``decimals`` / ``tol``, or by ``agree_fn``) unless given explicitly. The record's
        ``quantity`` names it as the document does: "doc 004 §1.3.2 δ⁽¹⁾ = dl/db⁽¹⁾" (``ref``: the
        document's section, default the title's part before its colon). ``criterion``: how agreement
        is judged, in words (needed with ``agree_fn`` or ``agrees``; else derived: "exact", "±tol",
        "doc rounding (d decimals)"). ``reconstruction``: the row redoes a document slip's wrong
        arithmetic to show where the stated value comes from; its agreement checks that
        explanation, and the report does not count it among the document's numbers that agree."""
        value = _plain(value)
        doc_value = _plain(doc_value)
        if doc_value is None:
            agrees = None
        elif agrees is None:
            agrees = (agree_fn(value, doc_value) if agree_fn is not None
                      else agrees_to_rounding(value, doc_value, decimals, tol))
        if not self.steps:
            self.step("values")
        if precise is None:
            precise = tol is not None and 0 < tol < 1e-6
        # the document's stated digits travel with the row (its ``decimals``, or all of them when
        # ``precise``): the text and the report show at least those (doc 001 §3's 209.4557, not 209.456)
        decimals = decimals if doc_value is not None else None
        criterion = None if agrees is None else (criterion or _criterion(doc_value, decimals, tol, agree_fn))
        self.steps[-1][1].append({"label": label, "value": value, "doc_value": doc_value, "agrees": agrees,
                                  "note": note, "id": id, "precise": precise, "decimals": decimals})
        if id is not None:
            ref = ref or getattr(self, "ref", None) or self.title.split(":")[0]
            self.records.append({"id": id, "doc": self.doc, "quantity": f"doc {self.doc} {ref} {label.strip()}",
                                 "value": value, "doc_value": doc_value, "agrees": agrees, "note": note,
                                 "decimals": decimals, "precise": precise, "criterion": criterion,
                                 **({"reconstruction": True} if reconstruction else {})})
        return value

    def text(self) -> str:
        out = [f"=== doc {self.doc} · {self.title}"]
        out += [f"    {n}" for n in self.notes]
        for name, rows in self.steps:
            out.append(f"  -- {name}")
            for r in rows:
                head = f"    {r['label']:<36} = "
                pad = " " * len(head)
                shown = lambda v: _fmt(v, r["precise"], r["decimals"]).split("\n")  # noqa: E731
                val = shown(r["value"])
                verdict = "" if r["agrees"] is None else ("agrees" if r["agrees"] else "DISAGREES")
                doc = None if r["doc_value"] is None else shown(r["doc_value"])
                if doc is not None and len(val) == 1 and len(doc) == 1:
                    out.append(f"{head}{val[0]}   [doc: {doc[0]} → {verdict}]")
                else:
                    out.append(head + val[0])
                    out += [pad + ln for ln in val[1:]]
                    if doc is not None:
                        out.append(f"{pad[:-6]}doc = " + doc[0])
                        out += [pad + ln for ln in doc[1:]]
                        out.append(f"{pad}→ {verdict}")
                if r["note"]:
                    out.append(f"{'':8}note: {r['note']}")
        return "\n".join(out)


@dataclass
class Report:
    sections: list

    @property
    def records(self) -> list:
        return [r for s in self.sections for r in s.records]

    def text(self) -> str:
        recs = self.records
        stated = [r for r in recs if r["agrees"] is not None and not r.get("reconstruction")]
        redone = [r for r in recs if r.get("reconstruction")]
        bad = [r for r in stated if not r["agrees"]]
        slips = [r for r in bad if r["note"].startswith("document slip")]
        summary = [f"{len(recs)} quantities, {len(stated)} with a stated document value: "
                   f"{len(stated) - len(bad)} agree, {len(bad)} disagree ({len(slips)} of them document slips, "
                   f"each reconstructed in its section: {sum(bool(r['agrees']) for r in redone)} of {len(redone)} "
                   "reconstructions give the stated value)."]
        bad += [r for r in redone if not r["agrees"]]
        summary += [f"  DISAGREES {r['id']}: {r['note']}" for r in bad]
        return "\n\n".join([s.text() for s in self.sections] + ["\n".join(summary)])


# ============================================================================ shared helpers

def _f64(a):
    """A float64 NumPy array; the jitted computations take NumPy inputs directly (a jnp.asarray here
    would cost one small XLA compilation per shape on some JAX versions)."""
    return np.asarray(a, np.float64)


def _trace(params, acts: list[str], x, y, loss_name: str):
    """Layer-by-layer forward and backward with the library's own pieces.

    Returns (forward rows [(a_l, h_l)], loss, backward rows [(dh_l, da_l, dW_l, db_l)] indexed
    like the layers). Uses ``layers.dense_forward``/``dense_backward``, the activation Layers and
    the loss head — the same functions ``models.mlp`` composes.
    """
    head = losses.get(loss_name)
    fwd, caches, h = [], [], x
    for p, act in zip(params, acts):
        a, dcache = L.dense_forward(p, h)
        h, acache = L.activation(act).forward({}, a)
        fwd.append((a, h))
        caches.append((dcache, acache, act))
    value, lcache = head.forward(h, y)
    dh = head.backward(lcache)
    bwd = [None] * len(params)
    for i in reversed(range(len(params))):
        dcache, acache, act = caches[i]
        _, da = L.activation(act).backward(acache, dh)
        g, dx = L.dense_backward(dcache, da)
        bwd[i] = (dh, da, g["W"], g["b"])
        dh = dx
    return fwd, value, bwd


def _assert_close(a, b, what: str, tol: float = 1e-12):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        if not np.allclose(u, v, rtol=tol, atol=tol):
            raise AssertionError(f"worked examples: {what} inconsistent: {u} vs {v}")


def _np(tree):
    """Pull a pytree of results to NumPy (further indexing then costs no JAX dispatch/compile)."""
    return jax.tree.map(np.asarray, tree)


def _sgd(params, grads, eta):
    return jax.tree.map(lambda p, g: p - eta * g, params, grads)


# ============================================================================ doc 001 §1 Q3–Q5

DOC001_ALPHA = [[1, 1, 2, -3, 0, 1, -3], [1, 2, 1, 1, 1, 0, 2], [1, 3, 2, 2, 2, 2, 1], [1, 2, 0, 3, 1, -2, 2]]
DOC001_BETA = [[1, 1, 2, -2, 3], [1, 2, -1, 3, 1], [1, 3, 1, -1, 1]]
DOC001_X = [1, 0, 1, 0, 1, 1]
DOC001_CLASS = 3          # 1-based, as the document numbers classes


def _doc001_q3_q4_rows(s: Section, r: dict) -> None:
    """doc 001 §1 Q3's forward values and Q4's gradients and SGD step, from ``compute``'s ``r``."""
    fwd, loss, bwd, grads, yhat = r["fwd"], r["loss"], r["bwd"], r["grads"], r["yhat"]
    (a1, z1), (b2, _) = fwd
    s.step("forward (Q3)", "§1 Q3")
    s.row("a = α·[1; x]  (hidden pre-act.)", a1[0], id="d001.q3.a")
    s.row("a1 (entry 1 of a)", a1[0, 0], id="d001.q3.a1")
    s.row("z = σ(a)", z1[0], id="d001.q3.z")
    s.row("z1 (entry 1 of z)", z1[0, 0], id="d001.q3.z1")
    s.row("b = β·[1; z]  (scores)", b2[0], id="d001.q3.b")
    s.row("b2 (entry 2 of b)", b2[0, 1], id="d001.q3.b2")
    s.row("ŷ = softmax(b)", yhat[0], id="d001.q3.yhat")
    s.row("ŷ2 (entry 2 of ŷ)", yhat[0, 1], id="d001.q3.yhat2")
    s.row("predicted class (1-based)", int(np.argmax(yhat[0])) + 1, id="d001.q3.predicted_class",
          note="argmax ŷ; the true label is class 3")
    s.row("loss ℓ = −log ŷ3", loss, id="d001.q3.loss")

    s.step("gradients (Q4), doc layout", "§1 Q4")
    g1, g2 = grads
    dbeta = np.concatenate([np.asarray(g2["b"])[:, None], np.asarray(g2["W"]).T], axis=1)
    dalpha = np.concatenate([np.asarray(g1["b"])[:, None], np.asarray(g1["W"]).T], axis=1)
    s.row("dℓ/db = ŷ − onehot(3)", bwd[1][1][0], id="d001.q4.dl_db")
    s.row("dℓ/dβ  (3×5, col 0 = bias)", dbeta, id="d001.q4.dl_dbeta")
    s.row("dℓ/dz = β*ᵀ dℓ/db", bwd[0][0][0], id="d001.q4.dl_dz")
    s.row("dℓ/da = dℓ/dz ⊙ z(1−z)", bwd[0][1][0], id="d001.q4.dl_da")
    s.row("dℓ/dα  (4×7, col 0 = bias)", dalpha, id="d001.q4.dl_dalpha")

    s.step("SGD update, η = 1 (Q4)", "§1 Q4")
    new = r["new"]
    beta_new = np.concatenate([np.asarray(new[1]["b"])[:, None], np.asarray(new[1]["W"]).T], axis=1)
    alpha_new = np.concatenate([np.asarray(new[0]["b"])[:, None], np.asarray(new[0]["W"]).T], axis=1)
    s.row("β' = β − η dℓ/dβ", beta_new, id="d001.q4.beta_new")
    s.row("α' = α − η dℓ/dα", alpha_new, id="d001.q4.alpha_new")
    s.row("β'_{2,1} = W2'[0,1]", new[1]["W"][0, 1], 1.9772, id="d001.q4.beta_2_1", decimals=4)
    s.row("β'_{1,0} = b2'[0]", new[1]["b"][0], 0.5477, id="d001.q4.beta_1_0", decimals=4)
    s.row("α'_{3,4} = W1'[3,2]", new[0]["W"][3, 2], 2, id="d001.q4.alpha_3_4", decimals=4,
          note="x4 = 0, so dℓ/dα_{3,4} = 0 and the weight stays exactly 2")


def doc001_network_q3_q5() -> Section:
    """doc 001 §1 Q3–Q5: the 6-4-3 sigmoid/softmax network, one SGD step (η = 1), λ = 0.01."""
    with jax.enable_x64(True):
        s = Section("001", "§1 Q3–Q5: 6-4-3 network (sigmoid hidden, softmax output, cross-entropy)")
        alpha, beta = np.asarray(DOC001_ALPHA, np.float64), np.asarray(DOC001_BETA, np.float64)
        s.notes += ["layout: α (4×7) and β (3×5) are bias-folded (column 0 = bias, x0 = z0 = 1);",
                    "        W1 = α[:,1:].T (6×4), b1 = α[:,0]; W2 = β[:,1:].T (4×3), b2 = β[:,0].",
                    "indexing: β_{k,j}/α_{j,i} have 1-based rows (units) and 0-based columns (0 = bias);",
                    "        β_{k,j} = W2[j-1,k-1] (j ≥ 1), β_{k,0} = b2[k-1]; α_{j,i} = W1[i-1,j-1].",
                    "label 'class 3' is index 2 (classes are numbered 1…3). a1, z1, b2, ŷ2 are shown both as",
                    "        the layer vectors (a, z: layer 1; b, ŷ: layer 2) and as the 1-based entries."]
        params = [{"W": _f64(alpha[:, 1:].T), "b": _f64(alpha[:, 0])},
                  {"W": _f64(beta[:, 1:].T), "b": _f64(beta[:, 0])}]
        x = _f64([DOC001_X])
        y = np.array([DOC001_CLASS - 1])
        net = models.mlp([6, 4, 3], activation="sigmoid", loss="softmax_cross_entropy")
        lam = 0.01

        @jax.jit
        def compute(params, x, y):
            fwd, loss, bwd = _trace(params, ["sigmoid", "identity"], x, y, "softmax_cross_entropy")
            loss_b, grads = net.backprop(params, x, y)
            return dict(fwd=fwd, loss=loss, bwd=bwd, loss_b=loss_b, grads=grads, scores=net.apply(params, x),
                        yhat=jax.nn.softmax(fwd[1][1], axis=-1), new=_sgd(params, grads, 1.0),
                        pen=losses.l2_penalty(params, net.decay(params)), reg_loss=net.loss(params, x, y, l2=lam))

        r = _np(compute(params, x, y))
        fwd, loss, bwd, grads, yhat = r["fwd"], r["loss"], r["bwd"], r["grads"], r["yhat"]
        (a1, z1), (b2, _) = fwd
        _assert_close(loss, r["loss_b"], "loss")
        _assert_close(r["scores"], b2, "scores")
        _assert_close(grads, [{"W": bwd[0][2], "b": bwd[0][3]}, {"W": bwd[1][2], "b": bwd[1][3]}], "grads")

        _doc001_q3_q4_rows(s, r)

        s.step("regularised loss, λ = 0.01 (Q5)", "§1 Q5")
        s.row("‖α*‖² + ‖β*‖²  (no bias cols)", r["pen"], id="d001.q5.penalty")
        s.row("ℓ + λ(‖α*‖² + ‖β*‖²)", r["reg_loss"], 3.9712, id="d001.q5.reg_loss",
              decimals=4, note="doc 001 convention: l2 = λ on Σ‖W‖², bias columns excluded")
        _doc001_q4d(s, net, params, x, y)
        _doc001_q5d(s, net, params, x, y, lam)
        return s


def _doc001_q4d(s, net, params, x, y, steps: int = 1000):
    """doc 001 §1 Q4(d): keep taking SGD steps (η = 1) on the one example, then predict again."""
    @jax.jit
    def many(p):
        return jax.lax.fori_loop(0, steps, lambda _, q: _sgd(q, net.backprop(q, x, y)[1], 1.0), p)
    p = many(params)
    probs = np.asarray(jax.nn.softmax(net.apply(p, x), axis=-1))[0]
    s.step(f"Q4(d): {steps} SGD steps (η = 1) on the same example", "§1 Q4(d)")
    s.row("ŷ after the steps", probs, id="d001.q4d.yhat")
    s.row("predicted class (1-based)", int(np.argmax(probs)) + 1, DOC001_CLASS, id="d001.q4d.predicted_class",
          decimals=0, note="the example's own label: repeated steps fit it")


def _doc001_q5d(s, net, params, x, y, lam):
    """doc 001 §1 Q5(d): each statement about L2 regularisation checked numerically on the Q3 net.
    The document ticks statements 2 and 4."""
    scale = lambda c: jax.tree.map(lambda v: c * v, params)  # noqa: E731
    cs = (0.5, 1.0, 2.0, 4.0)
    plain = [float(net.loss(scale(c), x, y)) for c in cs]
    reg = [float(net.loss(scale(c), x, y, l2=lam)) for c in cs]
    _, g0 = net.backprop(params, x, y)
    _, gr = net.backprop(params, x, y, l2=lam)
    w0 = np.concatenate([np.ravel(np.asarray(g["W"])) for g in g0])
    wr = np.concatenate([np.ravel(np.asarray(g["W"])) for g in gr])
    smaller = int(np.sum(np.abs(wr) < np.abs(w0)))
    big = scale(10.0)
    shrink = {}
    for l2 in (0.0, lam):
        step = jax.jit(lambda p, l2=l2: _sgd(p, net.backprop(p, x, y, l2=l2)[1], 1.0))
        p = big
        for _ in range(20):
            p = step(p)
        shrink[l2] = float(np.sqrt(losses.l2_penalty(big, net.decay(big))) - np.sqrt(losses.l2_penalty(p, net.decay(p))))
    inc = [(b - a) - (d - c) for a, b, c, d in zip(plain, plain[1:], reg, reg[1:])]
    tf = lambda b: "true" if b else "false"  # noqa: E731
    s.step(f"Q5(d): the statements about L2 regularisation, checked (λ = {lam}; weights scaled by {cs})", "§1 Q5(d)")
    s.row("1. non-regularised loss always higher", tf(any(a > b for a, b in zip(plain, reg))), "false",
          id="d001.q5d.s1", note=f"ℓ {_fmt(plain)} vs ℓ + λ‖W‖² {_fmt(reg)}: the penalty is ≥ 0, never the reverse")
    s.row("2. regularised loss grows faster with the weights", tf(all(v < 0 for v in inc)), "true",
          id="d001.q5d.s2", note=f"between successive scales the regularised loss rises more by {_fmt([-v for v in inc])}")
    s.row("3. regularised gradient steps always larger", tf(smaller == 0), "false", id="d001.q5d.s3",
          note=f"{smaller} of {w0.size} weight-gradient entries get smaller in magnitude with + 2λW (opposite signs)")
    s.row("4. large weights shrink faster with regularisation", tf(shrink[lam] > shrink[0.0]), "true",
          id="d001.q5d.s4", note=f"weights ×10, 20 steps η = 1: ‖W‖ falls by {shrink[lam]:.4f} with λ, "
                                 f"{shrink[0.0]:.4f} without (saturated units barely move)")
    s.row("5. none of the above", tf(not (all(v < 0 for v in inc) or shrink[lam] > shrink[0.0])), "false",
          id="d001.q5d.s5")


# ============================================================================ doc 001 §2

def doc001_zero_init_symmetry(n_steps: int = 25, eta: float = 1.0) -> Section:
    """doc 001 §2: zero init of ``y = v1 σ(z1) + v2 σ(z2)`` (3 inputs, 2 sigmoid hidden units).

    The document's network has no biases; the library's biases are kept at 0 (only the "W"
    leaves are updated). The data are arbitrary (the document argues symbolically); the loss is
    the squared error ``ℓ = (y − t)²`` of doc 001 (library ``mse`` on one example).
    """
    with jax.enable_x64(True):
        s = Section("001", "§2: zero initialisation never breaks the symmetry")
        s.notes += ["net 3-2-1 (sigmoid hidden, linear output, no biases: library biases frozen at 0),",
                    f"all weights 0; SGD η = {eta:g} (the document's) on ℓ = (y − t)², cycling over 4 fixed examples;",
                    "W1 column j = w_j (weights into hidden unit j), W2 = [v1; v2]."]
        net = models.mlp([3, 2, 1], activation="sigmoid", loss="mse", init="zeros")
        params = net.init(jax.random.key(0), jnp.float64)          # init="zeros": all 0
        X = 0.25 * _f64([[1.0, 2.0, -1.0], [0.5, -1.5, 2.0], [-2.0, 0.3, 0.7], [1.2, 1.0, -0.4]])  # small: η = 1 stays stable
        T = _f64([1.0, -0.5, 2.0, 0.3])
        head = losses.get("mse")

        @jax.jit
        def step(p, i):
            x, t = jax.lax.dynamic_slice_in_dim(X, i, 1), jax.lax.dynamic_slice_in_dim(T, i, 1)
            _, g = net.backprop(p, x, t)
            g = [{"W": gl["W"], "b": jnp.zeros_like(gl["b"])} for gl in g]     # no biases in doc 001 §2
            return _sgd(p, g, eta)

        @jax.jit
        def first(p):
            yhat = net.apply(p, X[:1])
            _, lcache = head.forward(yhat, T[:1])
            return yhat[0, 0], head.backward(lcache)[0, 0]

        s.step("one step from zero")
        yhat, dl_dy = _np(first(params))
        p1 = step(params, 0)
        p1_np = _np(p1)
        s.row("ŷ at zero init", yhat, id="d001.s2.yhat0")
        s.row("dℓ/dy = 2(ŷ − t)", dl_dy, id="d001.s2.dl_dy")
        s.row("max |w1| after 1 step", np.max(np.abs(p1_np[0]["W"][:, 0])), id="d001.s2.w1_after_1",
              note="0: dℓ/dw = x·v·σ'(0)·dℓ/dy and v = 0 at the step (the document's answer boxes are empty)")
        s.row("v2 after 1 step", p1_np[1]["W"][1, 0], id="d001.s2.v2_after_1",
              note=f"= −η·σ(0)·dℓ/dy = −½·dℓ/dy with η = {eta:g} ({-eta * 0.5 * dl_dy:.6g}); the document "
                   "states no number")
        s.row("v1 after 1 step", p1_np[1]["W"][0, 0], id="d001.s2.v1_after_1")

        s.step(f"{n_steps} steps")
        p = p1
        for k in range(1, n_steps):
            p = step(p, k % X.shape[0])
        p = _np(p)
        W1, v = p[0]["W"], p[1]["W"][:, 0]
        s.row("w1", W1[:, 0], id="d001.s2.w1_after_n")
        s.row("w2", W1[:, 1], id="d001.s2.w2_after_n")
        s.row("v", v, id="d001.s2.v_after_n")
        s.row("max |w1 − w2|", np.max(np.abs(W1[:, 0] - W1[:, 1])), id="d001.s2.w1_minus_w2",
              note="both units get identical gradients at every step; equal up to float rounding (XLA may"
                   " round the two identical columns of a fused product differently, ~1e-17); the document"
                   " ticks relations, not numbers: the relation rows compare")
        s.row("|v1 − v2|", np.abs(v[0] - v[1]), id="d001.s2.v1_minus_v2")
        s.row("max |w1| (symmetric, not zero)", np.max(np.abs(W1[:, 0])), id="d001.s2.w1_norm_after_n",
              note="the weights do move; they just move together")
        same_w = np.max(np.abs(W1[:, 0] - W1[:, 1])) <= 1e-14
        s.row("relation of w1 and w2 after n steps",
              "w1 = w2 ≠ 0" if same_w and np.max(np.abs(W1)) > 0 else "w1 = w2 = 0" if same_w else "w1 ≠ w2",
              "w1 = w2 ≠ 0", id="d001.s2.w_relation")
        s.row("relation of v1 and v2 after n steps", "v1 = v2" if abs(v[0] - v[1]) <= 1e-14 else "v1 ≠ v2",
              "v1 = v2", id="d001.s2.v_relation")
        return s


# ============================================================================ doc 001 §3

DOC001_REG_X = [[-1, 0.4], [3, 8], [-3, 0.3], [4, 10], [-0.5, 5]]
DOC001_REG_Y = [2, -4, 3.2, -8.3, -2.3]
DOC001_REG_W1 = [[0.2, 3.8], [-1.1, 2.3]]      # (hidden × input), doc 001 convention
DOC001_REG_B1 = [-1.3, 0.86]
DOC001_REG_W2 = [-1.2, 0.7]
DOC001_REG_B2 = 0.0


def _finite_or_inf(v) -> float:
    f = float(v)
    return f if math.isfinite(f) else math.inf


def doc001_regression() -> Section:
    """doc 001 §3: 2-2-1 regression net, loss 1/N Σ(ŷ − y)²; activation and η comparisons."""
    with jax.enable_x64(True):
        s = Section("001", "§3: 2-2-1 regression network, MSE")
        s.notes += ["layout: w1 is (hidden × input) → W1 = w1.T (the (in × hidden) reading gives 405.10,"
                    " not 209.46); w2 (2,) → W2 (2×1)."]
        params = [{"W": _f64(np.asarray(DOC001_REG_W1).T), "b": _f64(DOC001_REG_B1)},
                  {"W": _f64(np.asarray(DOC001_REG_W2)[:, None]), "b": _f64([DOC001_REG_B2])}]
        X, Y = _f64(DOC001_REG_X), _f64(DOC001_REG_Y)
        nets = {a: models.mlp([2, 2, 1], activation=a, loss="mse") for a in ("relu", "tanh", "sigmoid", "identity")}

        relu = nets["relu"]

        @jax.jit
        def at_start(p):
            losses_by_act = {a: n.loss(p, X, Y) for a, n in nets.items()}
            return _trace(p, ["relu", "identity"], X, Y, "mse"), relu.backprop(p, X, Y)[1], losses_by_act

        @jax.jit
        def gd_step(p, eta):
            _, g = relu.backprop(p, X, Y)
            p = _sgd(p, g, eta)
            return p, relu.loss(p, X, Y)

        (fwd, loss, bwd), grads, act_losses = _np(at_start(params))

        s.step("forward, ReLU")
        s.row("a = X W1 + b1", fwd[0][0], id="d001.s3.a")
        s.row("h = relu(a)", fwd[0][1], id="d001.s3.h")
        s.row("ŷ", fwd[1][1][:, 0], id="d001.s3.yhat")
        s.row("loss 1/N Σ(ŷ−y)²", loss, 209.4557, id="d001.s3.loss_relu", decimals=4)

        s.step("gradients at the given weights, ReLU")
        _assert_close(grads, [{"W": b[2], "b": b[3]} for b in bwd], "grads")
        s.row("dL/dW1 (in × hidden)", grads[0]["W"], id="d001.s3.dL_dW1")
        s.row("dL/db1", grads[0]["b"], id="d001.s3.dL_db1")
        s.row("dL/dW2", grads[1]["W"][:, 0], id="d001.s3.dL_dW2")
        s.row("dL/db2", grads[1]["b"][0], id="d001.s3.dL_db2")

        s.step("hidden activation comparison (same weights)")
        act_loss = {a: _finite_or_inf(v) for a, v in act_losses.items()}
        for a, v in act_loss.items():
            s.row(f"loss with {a}", v, id=f"d001.s3.loss_{a}" if a != "relu" else None)
        s.row("lowest-loss activation", min(act_loss, key=act_loss.get), "tanh", id="d001.s3.best_activation")

        s.step("2 full-batch GD steps from the given weights, ReLU")
        eta_loss = {}
        for eta in (0.1, 0.001, 0.0001, 0.9):
            p, trail = params, []
            for _ in range(2):
                p, value = gd_step(p, eta)
                trail.append(_finite_or_inf(value))
            eta_loss[eta] = trail[-1]
            s.row(f"η = {eta}: loss after steps 1, 2", trail, id=f"d001.s3.eta_{eta}_losses",
                  note="diverges" if trail[-1] > 1e6 else "")
        best = min(eta_loss, key=eta_loss.get)
        s.row("lowest-loss η after 2 steps", best, 0.001, id="d001.s3.best_eta", tol=0.0,
              note="non-finite losses would count as +inf")
        return s


# ============================================================================ doc 001 §4.4

# doc 001 §4.4 (Q4): the image X and filter F as the document prints them; J is the entry in
# row 2, column 4 of the 6×6 output grid A…Ad, i.e. (1, 3) counted from 0.
DOC001_CONV_X = ((-1, 0, -2, 3, 4, 1),
                 (2, 9, 5, 6, 0, -1),
                 (0, -3, 1, 3, 4, 4),
                 (6, 5, 2, 0, 6, 8),
                 (-5, 4, -3, 1, 3, -2),
                 (4, 1, 2, 8, 9, 7))
DOC001_CONV_F = ((-2, -2, -2),
                 (-2, 5, -2),
                 (-2, -2, -2))
DOC001_CONV_J_INDEX = (1, 3)
DOC001_CONV_J = -6


def doc001_conv_4_4(X=None, F=None, j_index=None) -> Section:
    """doc 001 §4.4: 6×6 image X ⊛ 3×3 filter F, zero 'same' padding, stride 1; entry J = −6.

    Uses the library's ``conv.conv2d_forward`` (a cross-correlation, as doc 001 defines the
    operation; F is symmetric, so a flipped kernel gives the same output). ``X``, ``F`` and
    ``j_index`` default to the document's matrices above; tests pass others.
    """
    X = DOC001_CONV_X if X is None else X
    F = DOC001_CONV_F if F is None else F
    j_index = DOC001_CONV_J_INDEX if j_index is None else j_index
    from jaxnets.nn import conv
    with jax.enable_x64(True):
        s = Section("001", "§4.4: 6×6 convolution, zero 'same' padding, stride 1")
        s.notes += ["layout: X → (1, 6, 6, 1) NHWC; F → (3, 3, 1, 1) HWIO; bias 0; cross-correlation."]
        x = _f64(X)[None, :, :, None]
        params = {"W": _f64(F)[:, :, None, None], "b": _f64([0.0])}
        out, _ = conv.conv2d_forward(params, x, stride=1, padding="same")
        out = out[0, :, :, 0]
        s.row("X ⊛ F (6×6)", out, id="d001.s4_4.output")
        s.row(f"J = output{list(j_index)}", out[tuple(j_index)], DOC001_CONV_J, id="d001.s4_4.J", decimals=0)
        return s


# ============================================================================ doc 002 Q3

def doc002_q3() -> Section:
    """doc 002 Q3: 2-3-2 network, input [1, −1], target class 0."""
    with jax.enable_x64(True):
        s = Section("002", "Q3: 2-3-2 network, softmax cross-entropy")
        params = [{"W": _f64([[1, 1, 1], [-1, -1, -1]]), "b": _f64([0, 0, 0])},
                  {"W": _f64([[1, 1], [-1, -1], [-1, -1]]), "b": _f64([0, 0])}]
        x, y = _f64([[1, -1]]), np.array([0])
        s.notes += ["layout: w1 (in × hidden) and w2 (hidden × out) are already the library layout.",
                    "hidden activation: σ reproduces the stated numbers (0.4404 = ½σ(2)); ReLU would give",
                    "        h = [2, 2, 2] and dL/dw2 rows [−1, 1], so the document's numbers are sigmoid's."]
        res = {}
        for act in ("sigmoid", "relu"):
            net = models.mlp([2, 3, 2], activation=act, loss="softmax_cross_entropy")
            fwd, loss, bwd, lb, g = jax.jit(
                lambda p, net=net, act=act: (*_trace(p, [act, "identity"], x, y, "softmax_cross_entropy"),
                                             *net.backprop(p, x, y)))(params)
            fwd, loss, bwd, lb, g = _np((fwd, loss, bwd, lb, g))
            _assert_close(lb, loss, "loss")
            res[act] = (fwd, loss, g)
        fwd, loss, g = res["sigmoid"]
        s.step("forward (sigmoid hidden)")
        s.row("a = x w1 + b1", fwd[0][0][0], id="d002.q3.a")
        s.row("h = σ(a)", fwd[0][1][0], id="d002.q3.h")
        s.row("scores", fwd[1][1][0], id="d002.q3.scores")
        s.row("loss", loss, math.log(2), id="d002.q3.loss", decimals=4, note="doc: ln 2 = 0.6931…")
        s.step("gradients")
        s.row("dL/db2", g[1]["b"], [-0.5, 0.5], id="d002.q3.dL_db2", decimals=1)
        s.row("dL/dw2", g[1]["W"], [[-0.4404, 0.4404]] * 3, id="d002.q3.dL_dw2", decimals=4)
        s.row("dL/dw1", g[0]["W"], [[0.0] * 3] * 2, id="d002.q3.dL_dw1", tol=0.0,
              note="dL/dh = w2·(p − t) = 0 because the two columns of w2 are equal")
        s.row("dL/db1", g[0]["b"], [0.0] * 3, id="d002.q3.dL_db1", tol=0.0)
        s.step("which hidden activation? (ReLU for comparison)")
        s.row("hidden activation reproducing the doc", "sigmoid", id="d002.q3.hidden_activation",
              note="only σ gives 0.4404; with ReLU dL/dw2 rows are [−1, 1]")
        s.row("dL/dw2 with ReLU hidden", res["relu"][2][1]["W"], id="d002.q3.dL_dw2_relu")
        s.row("loss with ReLU hidden", res["relu"][1], id="d002.q3.loss_relu",
              note="also ln 2: both scores are equal for any hidden activation")
        _doc002_code_rows(s, x[0].tolist(), params, "the document's own example",
                          "d002.q3.code", expect_equal=True)
        _doc002_code_rows(s, DOC002_COUNTER["x"], _doc002_params(**DOC002_COUNTER), "a counter-example "
                          f"(x = {DOC002_COUNTER['x']}, w2 = {DOC002_COUNTER['w2']}, unequal columns)",
                          "d002.q3.counter", expect_equal=False)
        return s


def doc002_q1_q2() -> Section:
    """doc 002 Q1–Q2: the local derivatives of softmax → NLL (``losses.softmax_*``/``nll_*``,
    unfused) chained on the Q3 network's scores, against the fused p − t rule and jax.grad."""
    with jax.enable_x64(True):
        s = Section("002", "Q1–Q2: local derivatives of softmax and cross-entropy, chained")
        s.notes += ["∂l/∂y from losses.nll_backward, ∂y/∂o from losses.softmax_jacobian, chained by",
                    "losses.softmax_backward (Jᵀ·∂l/∂y, a sum over i); fused: softmax_cross_entropy_backward."]
        cases = (("Q3's network (x = [1, −1])", [{"W": _f64([[1, 1, 1], [-1, -1, -1]]), "b": _f64([0, 0, 0])},
                                                 {"W": _f64([[1, 1], [-1, -1], [-1, -1]]), "b": _f64([0, 0])}],
                  [-0.5, 0.5]),
                 ("the counter-example's network", _doc002_params(**DOC002_COUNTER), None))
        x, y = _f64([[1, -1]]), np.array([0])
        for k, (what, params, stated) in enumerate(cases):
            r = _np(jax.jit(lambda p: _unfused_chain(p, x, y))(params))
            tag = "q1" if k == 0 else "q1.counter"
            s.step(f"on {what}, target class c = 0")
            s.row("y = softmax(o)", r["y"][0], id=f"d002.{tag}.y")
            s.row("∂l/∂y (Q1: −1/y_c at c, 0 elsewhere)", r["dy"][0], id=f"d002.{tag}.dl_dy",
                  note=f"−1/y_c = {-1 / r['y'][0, 0]:.6f}")
            s.row("∂y/∂o (Q1: y_i(1 − y_i), −y_i y_j)", r["J"][0], id=f"d002.{tag}.softmax_jacobian")
            s.row("∂l/∂o = Σ_i ∂l/∂y_i ∂y_i/∂o_j (unfused)", r["do"][0], stated, id=f"d002.{tag}.dl_do",
                  decimals=None if stated is None else 12,
                  note="Q2's y − t; the document states it as Q3's dL_db2 = [−0.5, 0.5]" if stated else "")
            s.row("max |unfused − fused (p − t)|", float(np.max(np.abs(r["do"] - r["fused"]))), id=f"d002.{tag}.vs_fused")
            s.row("max |unfused − jax.grad|", float(np.max(np.abs(r["do"] - r["auto"]))), id=f"d002.{tag}.vs_autodiff")
        elementwise = float(r["dy"][0, 1] * r["J"][0, 1, 1])
        s.row("Q2's step for j ≠ c: ∂l/∂y_j · ∂y_j/∂o_j", f"0 · (−y_j y_c) = {elementwise:g}", "0 · (−y_j y_c) = y_j",
              id="d002.q2.step_j_ne_c",
              note="document slip in the derivation (not the result): Q2 multiplies ∂l/∂y_j = 0 by ∂y_j/∂o_j and "
                   "writes y_j; the chain rule sums over i, and only i = c contributes: (−1/y_c)(−y_c y_j) = y_j")
        return s


def _unfused_chain(params, x, y):
    """Scores of the 2-3-2 sigmoid net, then softmax → NLL through the unfused pairs."""
    net = models.mlp([2, 3, 2], activation="sigmoid", loss="softmax_cross_entropy")
    o = net.apply(params, x)
    p, c1 = losses.softmax_forward(o)
    _, c2 = losses.nll_forward(p, y)
    dy = losses.nll_backward(c2)
    fused = losses.softmax_cross_entropy_backward(losses.softmax_cross_entropy_forward(o, y)[1])
    auto = jax.grad(lambda o: losses.nll_forward(losses.softmax_forward(o)[0], y)[0])(o)
    return dict(y=p, dy=dy, J=losses.softmax_jacobian(p), do=losses.softmax_backward(c1, dy), fused=fused, auto=auto)


# A network on which doc 002's scalar code and the correct rule disagree: w2's columns differ.
DOC002_COUNTER = {"x": [1.0, -1.0], "w1": [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]], "b1": [0.0, 0.0, 0.0],
                  "w2": [[1.0, -1.0], [2.0, 0.0], [0.0, 1.0]], "b2": [0.0, 0.0]}


def _doc002_params(w1, b1, w2, b2, **_):
    return [{"W": _f64(w1), "b": _f64(b1)}, {"W": _f64(w2), "b": _f64(b2)}]


def doc002_code_backprop(input, w1, b1, w2, b2, target):
    """doc 002 Q3's scalar ``backprop``, line for line as printed (pure Python; only the printed
    syntax slip in ``sigmoid``'s brackets is repaired). Returns (dL_dw1, dL_db1, dL_dw2, dL_db2).

    Two lines are wrong in general: ``dL_dh`` has one entry per **output** (not per hidden unit)
    and sums rows 0 and 1 of ``w2`` only, and ``dL_do1`` multiplies every sigmoid slope by
    ``dL_dh[i]`` with the ``i`` left over from the loop above (the last output index)."""
    sig = lambda v: [1 / (1 + math.exp(-t)) for t in v]  # noqa: E731
    o1 = [sum(input[j] * w1[j][i] for j in range(len(input))) + b1[i] for i in range(len(w1[0]))]
    h = sig(o1)
    o2 = [sum(h[j] * w2[j][i] for j in range(len(h))) + b2[i] for i in range(len(w2[0]))]
    e = [math.exp(v) for v in o2]
    y = [v / sum(e) for v in e]
    dL_do2 = [y[i] - target[i] for i in range(len(y))]
    dL_dw2 = [[a * b for a in dL_do2] for b in h]
    dL_db2 = dL_do2
    dL_dh = [dL_do2[i] * w2[0][i] for i in range(len(dL_do2))]
    for i in range(len(dL_do2)):
        dL_dh[i] += dL_do2[i] * w2[1][i]
    dL_do1 = [dL_dh[i] * d_sig for d_sig in [t * (1 - t) for t in sig(o1)]]  # i: leaked, as printed
    dL_dw1 = [[dL_do1[i] * input[j] for i in range(len(dL_do1))] for j in range(len(input))]
    dL_db1 = dL_do1
    return dL_dw1, dL_db1, dL_dw2, dL_db2


def _doc002_code_rows(s, x, params, what, id_, expect_equal):
    """The document's scalar code next to the correct rule (the library's hand-written backprop)."""
    p = _np(params)
    code = doc002_code_backprop(x, p[0]["W"].tolist(), p[0]["b"].tolist(), p[1]["W"].tolist(),
                                p[1]["b"].tolist(), [1, 0])
    net = models.mlp([2, 3, 2], activation="sigmoid", loss="softmax_cross_entropy")
    _, g = _np(jax.jit(net.backprop)(params, _f64([x]), np.array([0])))
    same = bool(np.allclose(code[0], g[0]["W"], atol=1e-12) and np.allclose(code[1], g[0]["b"], atol=1e-12))
    s.step(f"doc 002's scalar backprop code on {what}")
    s.row("dL/dw1, the document's code", code[0], id=f"{id_}.dL_dw1_code")
    s.row("dL/dw1, correct rule (= jax.grad)", g[0]["W"], id=f"{id_}.dL_dw1_correct")
    s.row("dL/db1, the document's code", code[1], id=f"{id_}.dL_db1_code")
    s.row("dL/db1, correct rule (= jax.grad)", g[0]["b"], id=f"{id_}.dL_db1_correct")
    s.row("dL/dw2: code = correct", bool(np.allclose(code[2], g[1]["W"], atol=1e-12)), id=f"{id_}.dL_dw2_same")
    note = ("right here only because w2's two columns are equal: the true dL/dh = w2 (p − t) is 0, and so is "
            "the code's wrong sum" if expect_equal else
            "document slip in the code: dL_dh is indexed by output, sums rows 0 and 1 of w2 only, and dL_do1 "
            "reuses the leaked loop index i for every hidden unit")
    s.row("first-layer gradients: code = correct", same, id=f"{id_}.first_layer_same", note=note)


# ============================================================================ doc 004 §1.3

def doc004_sigmoid_net() -> Section:
    """doc 004 §1.3: all-sigmoid 2-2-1 net, ½‖y − ŷ‖², x = [0.05, 0.1], y = 0.01."""
    with jax.enable_x64(True):
        s = Section("004", "§1.3: all-sigmoid 2-2-1 network, loss ½‖y − ŷ‖²")
        s.notes += ["layout: W1 = [[0.15,0.2],[0.25,0.3]] is (hidden × input) → W = W1.T",
                    "        (the (in × hidden) reading gives hidden [0.5945, 0.5963], not [0.593, 0.597]);",
                    "        W2 = [0.4, 0.45] (out × hidden) → W = W2.T (2×1)."]
        W1 = np.asarray([[0.15, 0.2], [0.25, 0.3]])
        params = [{"W": _f64(W1.T), "b": _f64([0.35, 0.35])},
                  {"W": _f64([[0.4], [0.45]]), "b": _f64([0.6])}]
        x, y = _f64([[0.05, 0.1]]), _f64([[0.01]])
        net = models.mlp([2, 2, 1], activation="sigmoid", output_activation="sigmoid", loss="half_sse")
        fwd, loss, bwd, lb, g, ga = jax.jit(
            lambda p: (*_trace(p, ["sigmoid", "sigmoid"], x, y, "half_sse"), *net.backprop(p, x, y),
                       net.grad_autodiff(p, x, y)[1]))(params)
        fwd, loss, bwd, lb, g, ga = _np((fwd, loss, bwd, lb, g, ga))
        _assert_close(lb, loss, "loss")
        _assert_close(g, ga, "hand vs jax.grad", 1e-12)
        s.step("forward")
        s.row("net_h = x W1ᵀ + b1", fwd[0][0][0], [0.3775, 0.3925], id="d004.s13.net_h", decimals=4,
              note="the document states it as z⁽¹⁾ in §1.3.2")
        s.row("hidden σ(net_h)", fwd[0][1][0], [0.593, 0.597], id="d004.s13.hidden", decimals=3)
        s.row("net_o", fwd[1][0][0, 0], id="d004.s13.net_o")
        s.row("output ŷ = σ(net_o)", fwd[1][1][0, 0], 0.751, id="d004.s13.output", decimals=3)
        s.row("loss ½(y − ŷ)²", loss, 0.275, id="d004.s13.loss", decimals=3)
        s.step("backward (§1.3.2): exact values (hand-written = jax.grad to 1e-12) next to the stated ones")
        exact = {"z2": fwd[1][0][0, 0], "delta2": bwd[1][1][0, 0], "dW2": g[1]["W"][:, 0],
                 "delta1": bwd[0][1][0], "dW1": np.asarray(g[0]["W"]).T}
        _assert_close(exact["delta2"], g[1]["b"][0], "δ⁽²⁾ = dl/db2")
        _assert_close(exact["delta1"], g[0]["b"], "δ⁽¹⁾ = dl/db1")
        for key, label, decimals in DOC004_BACKWARD_ROWS:
            s.row(label, exact[key], DOC004_STATED[key], id=f"d004.s132.{key}", decimals=decimals,
                  note="document slip: " + DOC004_SLIPS[key][0], ref="§1.3.2")
        s.step("the slips reconstructed: the document's arithmetic redone, each wrong step named")
        for key, label, decimals in DOC004_BACKWARD_ROWS:
            why, redo = DOC004_SLIPS[key]
            s.row(f"{label} as the doc computed it", redo(), DOC004_STATED[key], id=f"d004.s132.slip.{key}",
                  decimals=decimals, note=why, ref="§1.3.2", reconstruction=True)
        return s


# doc 004 §1.3.2's stated backward values and, per value, (the wrong step, the wrong arithmetic redone
# from the document's own rounded numbers). x⁽⁰⁾ = [0.05, 0.1], x⁽¹⁾ ≈ [0.593, 0.597], ŷ ≈ 0.751.
DOC004_STATED = {"z2": 0.665, "delta2": 0.1662, "dW2": [0.0986, 0.0992], "delta1": [0.0321, 0.0361],
                 "dW1": [[0.00522, 0.00522], [0.00522, 0.00522]]}
DOC004_BACKWARD_ROWS = (("z2", "z⁽²⁾ = W⁽²⁾x⁽¹⁾ + b⁽²⁾", 3), ("delta2", "δ⁽²⁾ = dl/db⁽²⁾", 4),
                        ("dW2", "dl/dW⁽²⁾ = δ⁽²⁾ x⁽¹⁾", 4), ("delta1", "δ⁽¹⁾ = dl/db⁽¹⁾", 4),
                        ("dW1", "dl/dW⁽¹⁾ = δ⁽¹⁾ x⁽⁰⁾ᵀ (hidden × input)", 5))


def _dsig(z):
    s = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))
    return s * (1.0 - s)


_X0, _W2 = np.array([0.05, 0.1]), np.array([0.4, 0.45])
DOC004_SLIPS = {
    "z2": ("z⁽²⁾ was computed from the input x⁽⁰⁾ instead of the hidden output x⁽¹⁾: "
           "W⁽²⁾·x⁽⁰⁾ + b⁽²⁾ = 0.4·0.05 + 0.45·0.1 + 0.6 = 0.665 (the forward pass itself used x⁽¹⁾: "
           "z⁽²⁾ = 1.1059, ŷ = 0.751)",
           lambda: float(_W2 @ _X0 + 0.6)),
    "delta2": ("the error times the sigmoid slope at the wrong z⁽²⁾ = 0.665 (σ'(0.665) = 0.2243 instead of "
               "σ'(1.1059) = 0.1868); the document writes the error as −(0.01 − 0.75) = 0.74, which gives "
               "0.74·0.2243 = 0.1660, but its 0.1662 needs 0.751 − 0.01 = 0.741 (the unrounded ŷ): "
               "0.741·0.2243 = 0.1662",
               lambda: float((0.751 - 0.01) * _dsig(0.665))),
    "dW2": ("this step is right (δ⁽²⁾ times x⁽¹⁾) but carries the wrong δ⁽²⁾: 0.1662·[0.593, 0.597] "
            "= [0.0986, 0.0992]",
            lambda: (0.1662 * np.array([0.593, 0.597])).tolist()),
    "delta1": ("besides the wrong δ⁽²⁾, one slope for both hidden units, ≈ 0.4826 = 2·σ'(z₁⁽¹⁾), was used "
               "instead of the per-unit vector σ'(z⁽¹⁾) = [0.2413, 0.2406] (the stated values are exactly "
               "proportional to W⁽²⁾: 0.0321/0.4 = 0.0361/0.45 ≈ 0.0802); 0.1662·[0.4, 0.45]·0.4826 = "
               "[0.0321, 0.0361] (adding both units' slopes, 0.4819, gives [0.0320, 0.0360])",
               lambda: (0.1662 * _W2 * 2 * _dsig(0.3775)).tolist()),
    "dW1": ("δ⁽¹⁾ and x⁽⁰⁾ were multiplied as an inner product (one number, written into all four "
            "entries) instead of the outer product δ⁽¹⁾ x⁽⁰⁾ᵀ: 0.0321·0.05 + 0.0361·0.1 = 0.005215 ≈ 0.00522",
            lambda: np.full((2, 2), float(np.array([0.0321, 0.0361]) @ _X0)).tolist()),
}


# ============================================================================ doc 004 §1.5 toy

TOY_SCORES = [[-1.07260209, 0.05083871, -0.87253915], [-2.02778743, -0.10832494, -1.52641362],
              [-0.74225908, 0.15259725, -0.39578548], [-0.38172726, 0.10835902, -0.17328274],
              [-0.64417314, -0.18886813, -0.41106892]]           # doc 004 §1.5.1's correct_scores
TOY_SCORES_DIFF = 3.381231204052648e-08                           # its printed Σ|scores − correct_scores|
TOY_SCORES_ROW0 = TOY_SCORES[0]
# doc 004 §1.5.3's printed max relative errors (numerical vs analytic gradient, reg 0.05)
TOY_REL_ERRORS = {"W2": 8.80091875172355e-11, "b2": 2.4554844805570154e-11,
                  "W1": 1.7476665046687833e-09, "b1": 7.382451041178829e-10}
TOY_LOSS = 1.8973332763705641
TOY_FINAL_LOSS = 0.02950555626206818


def _toy_setup():
    """doc 004's init_toy_model / init_toy_data with NumPy's legacy sampler (local RandomStates,
    same streams as ``np.random.seed``; the global NumPy state is not touched).

    Returns (params in library layout, X, y, rs0) where ``rs0`` is the seed-0 stream positioned
    right after the W1, W2 draws.
    """
    rs0 = np.random.RandomState(0)
    W1 = 1e-1 * rs0.randn(10, 4)          # (hidden × input)
    W2 = 1e-1 * rs0.randn(3, 10)          # (out × hidden)
    rs1 = np.random.RandomState(1)
    X = 10 * rs1.randn(5, 4)
    params = [{"W": _f64(W1.T), "b": _f64(np.zeros(10))}, {"W": _f64(W2.T), "b": _f64(np.zeros(3))}]
    return params, _f64(X), np.array([0, 1, 2, 2, 1]), rs0, rs1


def _toy_step(net, X, y, reg=5e-6):
    """Jitted SGD step on the minibatch ``X[idx]`` (regularisation (reg/2)Σ‖W‖²)."""
    @jax.jit
    def step(p, idx, lr):
        loss, g = net.backprop(p, jnp.asarray(X)[idx], jnp.asarray(y)[idx], l2=reg / 2)
        return loss, _sgd(p, g, lr)
    return step


def _toy_train(step, params, N, rs, lr=0.1, num_iters=100, batch_size=200, decay=0.95):
    """doc 004's ``TwoLayerNet.train`` loop: each iteration draws ``rs.choice(N, batch_size)``
    (with replacement), records the minibatch loss, takes an SGD step, and — as an epoch is
    ``max(N / batch_size, 1) = 1`` iteration — multiplies the learning rate by ``decay``."""
    history = []
    for _ in range(num_iters):
        idx = rs.choice(N, batch_size)
        loss, params = step(params, idx, lr)
        history.append(loss)
        lr *= decay
    return params, [float(v) for v in history]


def _toy_gradients(s: Section, net, params, X, y, reg, r):
    """doc 004 §1.5.3: the hand-written gradients against central differences and jax.grad; returns
    the hand-written ones."""
    s.step("gradients, reg = 0.05: hand-written vs central differences (ε = 1e-5) and jax.grad", "§1.5.3")
    hand, auto = r["hand"], r["auto"]
    f = jax.jit(lambda p: net.loss(p, X, y, l2=reg / 2))
    num = gradcheck.numerical_grad(f, params, eps=1e-5)
    for li, name in ((0, "W1"), (0, "b1"), (1, "W2"), (1, "b2")):
        key = name[0]
        e_num = gradcheck.rel_error(hand[li][key], num[li][key])
        e_auto = gradcheck.rel_error(hand[li][key], auto[li][key])
        s.row(f"{name}: max rel error vs numeric", e_num, "< 1e-8", id=f"d004.toy.grad_rel_error_{name}",
              agree_fn=lambda v, d: isinstance(v, float) and v < 1e-8, criterion="below 1e-8",
              note=f"vs jax.grad: {e_auto:.1e}")
    return hand


def doc004_toy_two_layer_net() -> Section:
    """doc 004 §1.5: the toy TwoLayerNet (4-10-3, ReLU, MSE on one-hot targets)."""
    with jax.enable_x64(True):
        s = Section("004", "§1.5: toy TwoLayerNet 4-10-3 (ReLU, ½-MSE on one-hot scores)")
        s.notes += ["layout: W1 (10×4, hidden × input) → W = W1.T; W2 (3×10) → W = W2.T.",
                    "loss: 1/(2N) Σ‖s − onehot(y)‖² + (reg/2)(‖W1‖² + ‖W2‖²) → library half_sse, l2 = reg/2."]
        params, X, y, rs0, rs1 = _toy_setup()
        net = models.mlp([4, 10, 3], activation="relu", loss="half_sse")

        reg = 0.05
        ce = models.mlp([4, 10, 3], activation="relu", loss="softmax_cross_entropy")

        @jax.jit
        def compute(p):
            _, hand = net.backprop(p, X, y, l2=reg / 2)
            _, auto = net.grad_autodiff(p, X, y, l2=reg / 2)
            return dict(scores=net.apply(p, X), loss=net.loss(p, X, y, l2=reg / 2),
                        loss_full_reg=net.loss(p, X, y, l2=reg), hand=hand, auto=auto,
                        ce_loss=ce.loss(p, X, y, l2=reg / 2))

        r = _np(compute(params))
        s.step("forward (§1.5.1)", "§1.5.1")
        scores = np.asarray(r["scores"])
        for i in range(len(TOY_SCORES)):
            s.row(f"scores row {i}", scores[i], TOY_SCORES[i], id=f"d004.toy.scores_row{i}", decimals=8)
        diff = float(np.sum(np.abs(scores - np.asarray(TOY_SCORES))))
        s.row("Σ |scores − correct_scores| (all 5 rows)", diff, TOY_SCORES_DIFF, id="d004.toy.scores_sum_abs_diff",
              tol=1e-15, precise=True, note="the 8-decimal rounding of correct_scores is the whole difference; "
                                            "the last digits differ by float rounding of the scores")
        _toy_mse_example(s)
        loss = r["loss"]
        s.row("loss, reg = 0.05", loss, TOY_LOSS, id="d004.toy.loss", tol=1e-12,
              note=f"|ours − doc| = {abs(float(loss) - TOY_LOSS):.1e} (< 1e-12); convention (reg/2)Σ‖W‖²"
                   f" (reg·Σ‖W‖² would give {float(r['loss_full_reg']):.10f})")

        hand = _toy_gradients(s, net, params, X, y, reg, r)
        _toy_doc_gradcheck(s, params, X, y, hand, reg)

        s.step("training (§1.5.4): 100 iterations, lr 0.1 (×0.95 per iteration), reg 5e-6, batch 200 with replacement", "§1.5.4")
        step = _toy_step(net, X, y)
        _, hist = _toy_train(step, params, 5, rs0)
        s.row("final training loss", hist[-1], TOY_FINAL_LOSS, id="d004.toy.train_final_loss", tol=1e-12,
              note=(f"|ours − doc| = {abs(hist[-1] - TOY_FINAL_LOSS):.1e}; exact sampler stream: the notebook re-creates the net with init_toy_model() (seed 0,"
                    " W1, W2 drawn) right before train(), so np.random.choice continues after those draws"))
        s.row("loss after iterations 1, 10, 50", [hist[0], hist[9], hist[49]], id="d004.toy.train_loss_trail")
        s.row("loss history (100 iterations, figure e6_toy_loss_history.png)", hist, id="d004.toy.loss_history")
        _, hist_alt = _toy_train(step, params, 5, rs1)
        s.row("final loss, stream after seed(1)+X", hist_alt[-1], id="d004.toy.train_final_loss_seed1_stream",
              note="the same training with the sampler continuing after seed(1)'s X draws lands near, not on,"
                   " the document's value")

        s.step("bonus: the same training with softmax cross-entropy", "§1.10")
        rs_ce = _toy_setup()[3]
        _, hist_ce = _toy_train(_toy_step(ce, X, y), params, 5, rs_ce)
        s.row("initial loss (reg 0.05), softmax CE", r["ce_loss"], id="d004.toy.ce_loss")
        s.row("final training loss, softmax CE", hist_ce[-1], id="d004.toy.ce_train_final_loss",
              note="same sampler stream as the MSE run; the document states no value")
        _toy_ce_sign(s, params, X, y, reg)
        return s


def _toy_mse_example(s):
    """doc 004 §1.5.2's one-sample MSE example: pred (0.1, 0.1, 0.8), target class 2 → 0.06."""
    pred, t = _f64([[0.1, 0.1, 0.8]]), np.array([2])
    sse = float(np.sum((pred - np.eye(3)[t]) ** 2))
    half = float(losses.half_sse_forward(pred, t)[0])
    s.step("§1.5.2: the MSE example, y_pred = (0.1, 0.1, 0.8), y_target = (0, 0, 1)", "§1.5.2")
    s.row("Error = Σ_k (y_pred,k − y_target,k)²", sse, 0.06, id="d004.s152.mse_example", decimals=2,
          note="a sum over the classes, as the example writes it")
    s.row("library half_sse (the formula's 1/(2N), N = 1)", half, id="d004.s152.half_sse_example",
          note="the §1.5.2 formula's ½ halves the example's 0.06; correct_loss_MSE (1.8973…) uses the ½")


def _toy_doc_gradcheck(s, params, X, y, hand, reg):
    """doc 004 §1.5.3 with the document's own procedure: its ``eval_numerical_gradient`` (h = 1e-5,
    in-place perturbation) of its NumPy loss and its ``rel_error(num, analytic)``."""
    from experiments._lib import oracles
    P = {"W1": np.array(params[0]["W"]).T.copy(), "b1": np.array(params[0]["b"]),
         "W2": np.array(params[1]["W"]).T.copy(), "b2": np.array(params[1]["b"])}
    doc_loss, doc_grads = oracles.doc004_two_layer_loss(P, X, y, reg)
    lib = {"W1": np.asarray(hand[0]["W"]).T, "b1": np.asarray(hand[0]["b"]),
           "W2": np.asarray(hand[1]["W"]).T, "b2": np.asarray(hand[1]["b"])}
    _assert_close(doc_loss, TOY_LOSS, "doc 004 NumPy loss", 1e-12)
    s.step("§1.5.3 as the document runs it: eval_numerical_gradient (h = 1e-5) and rel_error(num, analytic)", "§1.5.3")
    for name in ("W2", "b2", "W1", "b1"):                 # the document's printing order
        num = oracles.doc004_eval_numerical_gradient(lambda W: oracles.doc004_two_layer_loss(P, X, y, reg)[0],
                                                     P[name])
        e_doc = oracles.doc004_rel_error(num, doc_grads[name])
        e_lib = oracles.doc004_rel_error(num, lib[name])
        s.row(f"{name} max relative error, NumPy analytic", e_doc, TOY_REL_ERRORS[name],
              id=f"d004.s153.rel_error_{name}", tol=0.0, precise=True,
              note="the document's loss, gradient and check in float64 NumPy: every digit")
        s.row(f"{name} max relative error, library gradient", e_lib, TOY_REL_ERRORS[name],
              id=f"d004.s153.rel_error_{name}_library", precise=True,
              agree_fn=lambda v, d: abs(v - d) <= 1e-4 * d, criterion="relative ±1e-4",
              note="the library's hand-written gradient (XLA float64) differs from NumPy's in the last bits; "
                   "a relative error of ~1e-10 is that float noise, so it agrees to ~5 significant digits")


def _toy_ce_sign(s, params, X, y, reg):
    """doc 004 §1.10 prints L_CE = 1/N Σ log p_ij + (λ/2)(‖W1‖² + ‖W2‖²) without the minus sign."""
    ce = models.mlp([4, 10, 3], activation="relu", loss="softmax_cross_entropy")
    scores = np.asarray(ce.apply(params, X))
    logp = scores - scores.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    pen = reg / 2 * sum(float(np.sum(np.asarray(p["W"]) ** 2)) for p in params)
    printed = float(np.mean(logp[np.arange(len(y)), y])) + pen
    lib = float(ce.loss(params, X, y, l2=reg / 2))
    s.step("§1.10: the cross-entropy formula as printed", "§1.10")
    s.row("L_CE formula", "−(1/N) Σ log p_i,y_i + (λ/2)(‖W1‖² + ‖W2‖²)", "(1/N) Σ log p_i,y_i + (λ/2)(‖W1‖² + ‖W2‖²)",
          id="d004.s110.ce_formula_sign",
          note=f"document slip: the formula is printed without its minus sign; on the toy net (reg {reg}) it gives "
               f"{printed:.6f}, a quantity that falls as the true-class probabilities shrink, and its gradient "
               f"would be y − p, the opposite of the stated ∂L/∂o = p − y; with the minus: {lib:.6f} "
               "(= the library's softmax_cross_entropy)")


def doc004_toy_loss_history() -> list:
    """doc 004 §1.5.4: the toy net's 100 minibatch losses (the document's sampler stream)."""
    with jax.enable_x64(True):
        params, X, y, rs0, _ = _toy_setup()
        net = models.mlp([4, 10, 3], activation="relu", loss="half_sse")
        return _toy_train(_toy_step(net, X, y), params, 5, rs0)[1]


# ============================================================================ all

SECTIONS = (doc001_network_q3_q5, doc001_zero_init_symmetry, doc001_regression, doc001_conv_4_4,
            doc002_q1_q2, doc002_q3, doc004_sigmoid_net, doc004_toy_two_layer_net)


def run() -> Report:
    """Every worked example, in float64 (enabled by a context manager, not globally)."""
    with jax.enable_x64(True):
        return Report([f() for f in SECTIONS])


def records() -> list:
    """The JSON records of :func:`run`."""
    return run().records


#: the name this tool's ``--json`` output carries (``cli.write_tool_json``)
TOOL = "experiments.worked"


def main(argv=None) -> int:
    """The command line (``python -m experiments.worked --help``); returns the exit code."""
    ap = _cli.tool_parser(__doc__.split("\n\n")[0], prog="python -m experiments.worked")
    _cli.add_json_option(ap, TOOL, "the records (under \"records\")")
    return _cli.main(ap, _body, argv, prog="experiments.worked")


def _body(args) -> int:
    report = run()
    print(report.text())
    if args.json:
        _cli.write_tool_json(args.json, TOOL, {"records": report.records})
        print(f"\nwrote {len(report.records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
