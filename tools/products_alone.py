"""The matrix products of a training step timed alone: a ceiling on the step's fraction of the peak.

For each workload of the bench whose fraction of the matmul peak has a target (the MLP 784-256-10
at batch 500, doc 003's CNNs at batch 128), the tool reads every ``dot_general`` of the step that
``fit`` runs (the model's hand-written ``backprop`` on one batch, or on one chunk of it where
``microbatch="auto"`` chunks, times the chunks per step), compiles each product alone with
operands of its shapes, times it (minimum of ``--rounds`` interleaved calls) and prints the
products' FLOPs ÷ their summed time as a fraction of the in-run matmul peak (a jitted ``jnp.dot``
at 2048², as the bench measures it). A step does at least its products' work, and each product
already uses every core, so no step of that arithmetic with these kernels runs at a higher
fraction of the peak than its products alone do (overlap of products on 2 cores aside, which the
products-alone fraction would then understate a little).

    PYTHONPATH=. python tools/products_alone.py [--rounds 30] [--quick]
"""
import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.extend.core as jax_core  # noqa: E402
from jax._src.interpreters import partial_eval as pe  # noqa: E402  (dce_jaxpr: no public home)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import bench  # noqa: E402
from jaxnets import models, train  # noqa: E402
from jaxnets.models import cnn  # noqa: E402


def products(fn, *args) -> list:
    """Every dot_general of ``fn(*args)``'s jaxpr (nested jaxprs included) that its outputs need,
    as XLA keeps them (dead code removed: e.g. the first layer's input gradient, which a
    training step never uses): (lhs aval, rhs aval, params, (lhs, rhs) transposes). An operand
    that a ``transpose`` makes (a hand rule's ``x.T @ dy``) is kept as that transpose of its
    source (its permutation), since XLA folds the transpose into the product, which then runs on
    another kernel (Eigen) than a product of row-major operands (YNNPACK)."""
    out = []

    def walk(jaxpr):
        made_by = {v: e for e in jaxpr.eqns for v in e.outvars}
        for e in jaxpr.eqns:
            if e.primitive.name == "dot_general":
                ops = []
                for v in e.invars[:2]:
                    src = made_by.get(v)
                    if src is not None and src.primitive.name == "transpose":
                        ops.append((src.invars[0].aval, tuple(src.params["permutation"])))
                    else:
                        ops.append((v.aval, None))
                out.append((e.invars[0].aval, e.invars[1].aval, e.params, ops))
            for sub in jax_core.jaxprs_in_params(e.params):
                walk(getattr(sub, "jaxpr", sub))
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    walk(pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[0])
    return out


def flops(lhs, rhs, params, ops=None) -> float:
    (lc, _), (lb, _) = params["dimension_numbers"]
    k = np.prod([lhs.shape[d] for d in lc])
    b = np.prod([lhs.shape[d] for d in lb])
    m = np.prod(lhs.shape) / (k * b)
    n = np.prod(rhs.shape) / (k * b)
    return 2.0 * b * m * n * k


def time_products(prods, rounds: int) -> list:
    """Minimum seconds of each product alone, its operands' transposes inside the program as in
    the step (interleaved rounds; each timed call after an untimed one of the same product)."""
    keys = jax.random.split(jax.random.key(0), 2 * len(prods))
    calls = []
    for i, (_, _, params, ops) in enumerate(prods):
        a, b = (jax.random.normal(keys[2 * i + j], aval.shape, aval.dtype) for j, (aval, _) in enumerate(ops))

        def f(a, b, p=params, perms=tuple(perm for _, perm in ops)):
            a, b = (x if perm is None else jnp.transpose(x, perm) for x, perm in zip((a, b), perms))
            return jax.lax.dot_general(a, b, p["dimension_numbers"])
        calls.append((jax.jit(f).lower(a, b).compile(), a, b))
    best = [np.inf] * len(calls)
    for r in range(rounds):
        for i in np.random.default_rng(r).permutation(len(calls)):
            f, a, b = calls[i]
            jax.block_until_ready(f(a, b))
            t = time.perf_counter()
            jax.block_until_ready(f(a, b))
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def workloads(quick: bool) -> dict:
    """{name: (model, batch)}: the bench's rows with a fraction-of-peak target."""
    mlp = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy")
    if quick:
        return {"MLP 784-256-10, batch 50": (mlp, 50)}
    return {"MLP 784-256-10, batch 500": (mlp, 500), "2-layer CNN, batch 128": (cnn.cnn2(), 128),
            "3-layer CNN, batch 128": (cnn.cnn3(), 128)}


def row(name, model, batch, rounds, peak):
    p = model.init(jax.random.key(0))
    size = train.microbatch_size(model, p, batch)
    k, c = models.base.chunking(batch, size) if size else (1, batch)
    x = jnp.zeros((c, *model.in_shape), jnp.float32)
    prods = products(lambda p, x, y: model.backprop(p, x, y), p, x, jnp.zeros((c,), jnp.int32))
    secs = time_products(prods, rounds)
    fl = k * sum(flops(*q) for q in prods)
    t = k * sum(secs)
    print(f"{name}: {len(prods)} products per {'chunk of ' + str(c) if k > 1 else 'step'}"
          f"{f' × {k} chunks' if k > 1 else ''}; {fl / 1e9:.3f} GFLOP in {1e3 * t:.3f} ms alone = "
          f"{fl / t / 1e9:.0f} GFLOP/s, {fl / t / peak:.2f} of the peak")
    for (lhs, rhs, params, ops), s in sorted(zip(prods, secs), key=lambda z: -z[1]):
        f = flops(lhs, rhs, params)
        tr = "".join(f" ({side} a transpose)" for side, (_, perm) in zip(("lhs", "rhs"), ops) if perm)
        print(f"    {str(lhs.shape):>16} · {str(rhs.shape):<16} contracting {params['dimension_numbers'][0]}{tr}: "
              f"{1e6 * s:8.1f} µs  {f / s / 1e9:6.0f} GFLOP/s")
    return fl / t / peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved timed calls per product (default 30)")
    ap.add_argument("--quick", action="store_true", help="one small workload, for the tests")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {a.rounds}")
    peak = bench.matmul_peak(512 if a.quick else 2048)["flops_per_s"]
    print(f"jax {jax.__version__}; in-run float32 matmul peak {peak / 1e9:.0f} GFLOP/s; load average "
          f"{tuple(round(v, 2) for v in os.getloadavg())}")
    for name, (model, batch) in workloads(a.quick).items():
        row(name, model, batch, a.rounds, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
