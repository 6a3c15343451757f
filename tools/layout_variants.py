"""Time the bench's MLP and CNN training epochs with other GEMM layouts for the gradients.

On XLA:CPU a product whose left operand is contracted on axis 0 (the weight gradients
``dW = xᵀ·d`` of layers.dense_backward and conv._patches_backward) runs on Eigen; row-major
products run on YNNPACK. The variants compute the same gradients from a transposed copy made first
(``lax.optimization_barrier`` keeps XLA from folding it back), so the product runs row-major:

  weight gradient: base ``xᵀ·d``; xT ``copy(xᵀ)·d``; dTb ``copy(copy(dᵀ)·x)ᵀ``;
                   dTall: dTb with the bias gradient from the same ``copy(dᵀ)``
  input gradient:  base ``d·Wᵀ``; WT ``d·copy(Wᵀ)``

Each variant swaps the two library functions while its model is built and traced (restored after),
builds the bench's fit epoch (experiments._lib.bench._fit_epoch, compiled before timing) and all are
timed interleaved in random order (bench.interleave): minima and medians, base ÷ variant (> 1: the
variant is faster), and each variant's largest |gradient difference| from base on one batch.

    PYTHONPATH=. python tools/layout_variants.py [--rows mlp:500,cnn3:128] [--variants base/base,xT/base]
"""
import argparse
import contextlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments import bench as cli_bench
from experiments._lib import bench
from jaxnets import models
from jaxnets.models import cnn
from jaxnets.nn import conv, layers as L

_ob = lax.optimization_barrier
WEIGHT_GRAD = {   # x (M, m), d (M, n) -> (m, n); dTall is handled where the bias is known
    "base": lambda x, d: x.T @ d,
    "xT": lambda x, d: _ob(x.T) @ d,
    "dTb": lambda x, d: _ob(_ob(d.T) @ x).T,
}
INPUT_GRAD = {"base": lambda d, W: d @ W.T, "WT": lambda d, W: d @ _ob(W.T)}   # d (M, n), W (m, n)
ORIGINAL = (L.dense_backward, conv._patches_backward)


def _weight_and_bias(wg, x, d, has_bias):
    if wg == "dTall":
        dT = _ob(d.T)
        return _ob(dT @ x).T, (jnp.sum(dT, axis=1) if has_bias else None)
    return WEIGHT_GRAD[wg](x, d), (jnp.sum(d, axis=0) if has_bias else None)


def dense_backward(wg, ig):
    def backward(cache, da):
        x2, W, st = cache
        da2 = jnp.reshape(da, (-1, W.shape[1]))
        dW, db = _weight_and_bias(wg, x2, da2, st.has_bias)
        dparams = {"W": dW} | ({"b": db} if st.has_bias else {})
        return dparams, jnp.reshape(INPUT_GRAD[ig](da2, W), st.lead + (W.shape[0],))
    return backward


def patches_backward(wg, ig):
    def backward(patches, W, g, dy):
        kh, kw, cin, cout = W.shape
        N, Ho, Wo, _ = dy.shape
        dy2 = dy.reshape(N * Ho * Wo, cout)
        dW, db = _weight_and_bias(wg, patches, dy2, g.has_bias)
        dparams = {"W": dW.reshape(kh, kw, cin, cout)} | ({"b": db} if g.has_bias else {})
        dpatches = INPUT_GRAD[ig](dy2, W.reshape(kh * kw * cin, cout)).reshape(N, Ho, Wo, kh * kw, cin)
        return dparams, conv._gather_windows_adjoint(dpatches, g.padded_hw, g.window, g.strides)
    return backward


@contextlib.contextmanager
def layout(wg, ig):
    """Within: layers.dense_backward (bound when a model is built) and conv._patches_backward
    (looked up when traced) compute with the variant's layout."""
    if (wg, ig) != ("base", "base"):
        L.dense_backward, conv._patches_backward = dense_backward(wg, ig), patches_backward(wg, ig)
    try:
        yield
    finally:
        L.dense_backward, conv._patches_backward = ORIGINAL


def _variants(text):
    out = []
    for v in text.split(","):
        wg, _, ig = v.partition("/")
        if wg not in (*WEIGHT_GRAD, "dTall") or ig not in INPUT_GRAD:
            raise SystemExit(f"--variants: {v!r} is not WEIGHT/INPUT with WEIGHT in "
                             f"{[*WEIGHT_GRAD, 'dTall']} and INPUT in {list(INPUT_GRAD)}")
        out.append((wg, ig))
    return out


def _rows(text):
    out = []
    for r in text.split(","):
        name, _, b = r.partition(":")
        if name not in ("mlp", *cnn.MODELS) or not b.isdigit() or int(b) < 1:
            raise SystemExit(f"--rows: {r!r} is not NAME:BATCH with NAME in {['mlp', *cnn.MODELS]}")
        out.append((name, int(b)))
    return out


def _row(name, B, n, variants, rounds, seed):
    split = cli_bench._mnist(name == "mlp")
    X, Y = (jax.device_put(jnp.asarray(a[:n])) for a in (split.x_train, split.y_train))
    timed, grads = [], []
    for wg, ig in variants:
        with layout(wg, ig):
            model = models.mlp([784, 256, 10], "sigmoid", "softmax_cross_entropy") if name == "mlp" \
                else cnn.MODELS[name]()
            p0 = model.init(jax.random.key(0))
            timed.append(bench._fit_epoch(model, p0, X, Y, B, "hand", f"{wg}/{ig}", with_cost=False))
            grads.append(jax.jit(model.backprop)(p0, X[:B], Y[:B])[1])
    bench.interleave(timed, rounds, seed=seed)
    base_min, base_med = min(timed[0].times), float(np.median(timed[0].times))
    print(f"\n{name} batch {B} ({n} images, {rounds} rounds)\n"
          f"  {'variant':<12} {'min s':>8} {'median s':>8} {'base/v min':>10} {'base/v med':>10} {'max|Δg|':>8}")
    for v, g in zip(timed, grads):
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads[0])))
        mn, md = min(v.times), float(np.median(v.times))
        print(f"  {v.name:<12} {mn:8.4f} {md:8.4f} {base_min / mn:10.3f} {base_med / md:10.3f} {diff:8.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python tools/layout_variants.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="mlp:5,mlp:50,mlp:500,cnn2:32,cnn2:128,cnn3:128",
                    help="NAME:BATCH rows, NAME mlp (784-256-10) or a jaxnets.models.cnn model")
    ap.add_argument("--variants", default="base/base,xT/base,xT/WT,base/WT,dTb/base,dTall/base",
                    help="WEIGHT/INPUT layouts; the first is the reference of the ratios")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timed rounds (default 15)")
    ap.add_argument("--images", type=int, default=0, help="training images per epoch (default: the "
                    "bench's, 10,000 for the MLP and 1,280 for the CNNs)")
    a = ap.parse_args(argv)
    variants, rows = _variants(a.variants), _rows(a.rows)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    for k, (name, B) in enumerate(rows):
        n = a.images or (10_000 if name == "mlp" else 1_280)
        _row(name, B, max(n, B), variants, a.rounds, seed=k)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
