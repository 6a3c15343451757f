"""Prototype: doc 003 §3.5's CNNs with the convolutions run channel-first on transposed patches.

A measurement prototype, not a library layer. :mod:`jaxnets.nn.conv` builds patches
``(N·Ho·Wo, kh·kw·C_in)`` and computes the kernel gradient as ``patchesᵀ · dy``; XLA:CPU sends a
product whose left operand is contracted on its axis 0 to Eigen, and the other products of the
step to YNNPACK. Here im2col writes the transposed patches ``Pᵀ (kh·kw·C_in, Ho·Wo·N)`` directly
(rows (i, j, c), columns (p, q, n): each row a strided slice of the padded input, copied in runs of
N floats or more) and activations stay channel-first, batch-last ``(C, H, W, N)`` between conv,
ReLU and max-pool, so every product is contracted on its left operand's last axis:

- forward ``yᵀ (C_out, M) = Wmᵀ (C_out, K) · Pᵀ (K, M)`` (M = Ho·Wo·N, K = kh·kw·C_in);
- kernel gradient ``dWm (K, C_out) = Pᵀ · dyᵀᵀ`` (both operands contracted on their last axis);
- input gradient ``dPᵀ (K, M) = Wm (K, C_out) · dyᵀ (C_out, M)``, then col2im (zero pads, summed).

The batch-last layout makes the pool's windows and the flatten contiguous in N: the flatten is a
reshape to feature-major ``xᵀ (C·h·w, N)`` and the dense layer permutes its (small) weight rows
from the library's (h, w, c) order instead of transposing the activations: ``sᵀ = Wᵀ xᵀ``,
``dW = xᵀ · ds``, ``dxᵀ = W · dsᵀ``. (A first version kept ``(C, N, H, W)``; its flatten transpose
fused into the pool's backward loop as a gather with strides of C·N floats and made the cnn2
step ~3× slower.) Params (structure, shapes, init draws), inputs ``(N, 28, 28, 1)`` and scores
``(N, 10)`` are the library models' (:mod:`jaxnets.models.cnn`); the max-pool keeps the
library's first-maximum tie rule.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxnets.models import cnn
from jaxnets.models.base import sequential
from jaxnets.nn import conv
from jaxnets.nn import layers as L


class _ConvGeom(NamedTuple):
    """Static bookkeeping of one channel-first conv (held in the cache as Python data)."""
    in_hw: tuple
    pad: tuple          # ((top, bottom), (left, right))
    window: tuple
    strides: tuple
    out_hw: tuple
    nhwc_input: bool


def _kept_t(w):
    """wᵀ of a small weight matrix, kept a value of its own: XLA folds a bare transpose into the
    product's dimension numbers (left operand contracted on axis 0), which XLA:CPU runs on Eigen."""
    return lax.optimization_barrier(w.T)


def _im2col_t(x_pad, g):
    """Transposed patches: x_pad (C, Hp, Wp, N) → Pᵀ (kh·kw·C, Ho·Wo·N), rows (i, j, c), columns (p, q, n).

    kw column slices stacked on a new major axis, then kh row slices of that stack: each copies
    runs of Wo·N floats (stride 1) or N floats, and XLA fuses each stack into one loop (one stack
    of kh·kw slices became kh·kw copies plus a concatenate: 1.2 vs 0.43 ms for the 7×7 conv at
    batch 128, one core)."""
    C, Hp, _, N = x_pad.shape
    (kh, kw), (sh, sw), (Ho, Wo) = g.window, g.strides, g.out_hw
    cols = jnp.stack([lax.slice(x_pad, (0, 0, j, 0), (C, Hp, j + (Wo - 1) * sw + 1, N), (1, 1, sw, 1))
                      for j in range(kw)])                                     # (kw, C, Hp, Wo, N)
    rows = jnp.stack([lax.slice_in_dim(cols, i, i + (Ho - 1) * sh + 1, sh, axis=2) for i in range(kh)])
    return rows.reshape(kh * kw * C, Ho * Wo * N)                             # rows (i, j, c)


def _col2im_t(dpt, g, C, N):
    """Adjoint of :func:`_im2col_t` then the crop: dPᵀ (kh·kw·C, Ho·Wo·N) → dx (C, H, W, N).

    Each slice's adjoint is a zero pad (interior stride − 1) back onto the padded grid; a sum of
    pads fuses into one elementwise loop (a scatter-add runs serially on XLA:CPU)."""
    (kh, kw), (sh, sw), (Ho, Wo) = g.window, g.strides, g.out_hw
    (H, Wd), ((pt, pb), (pl, pr)) = g.in_hw, g.pad
    Hp, Wp = H + pt + pb, Wd + pl + pr
    d = dpt.reshape(kh, kw, C, Ho, Wo, N)
    zero, out = jnp.zeros((), dpt.dtype), None
    for i in range(kh):
        for j in range(kw):
            t = lax.pad(d[i, j], zero, ((0, 0, 0), (i, Hp - i - (Ho - 1) * sh - 1, sh - 1),
                                        (j, Wp - j - (Wo - 1) * sw - 1, sw - 1), (0, 0, 0)))
            out = t if out is None else out + t
    return out[:, pt:pt + H, pl:pl + Wd, :]


def conv2d_cf_forward(params, x, stride=1, padding="valid", nhwc_input=False):
    """Channel-first conv: x (C_in, H, W, N) (or (N, H, W, C_in) when ``nhwc_input``) with the
    library's params {"W": (kh, kw, C_in, C_out), "b": (C_out,)} → y (C_out, Ho, Wo, N), cache."""
    W = params["W"]
    kh, kw, cin, cout = W.shape
    if nhwc_input:
        x = x.transpose(3, 1, 2, 0)
    _, H, Wd, N = x.shape
    strides = conv._pair(stride, "stride")
    pad = conv.resolve_padding(padding, (H, Wd), (kh, kw), strides)
    out_hw = tuple(conv._out_size(n, k, s, *p) for n, k, s, p in zip((H, Wd), (kh, kw), strides, pad))
    g = _ConvGeom((H, Wd), pad, (kh, kw), strides, out_hw, nhwc_input)
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pad[0], 0), (*pad[1], 0), (0, 0, 0)))
    pt = _im2col_t(x_pad, g)                                          # (K, M)
    y = _kept_t(W.reshape(kh * kw * cin, cout)) @ pt                  # (C_out, M)
    if "b" in params:
        y = y + params["b"][:, None]
    return y.reshape(cout, *out_hw, N), (pt, W, g, "b" in params)


def conv2d_cf_backward(cache, dy):
    """dy (C_out, Ho, Wo, N) → ({"W": (kh, kw, C_in, C_out)[, "b"]}, dx in the forward's x layout)."""
    pt, W, g, has_bias = cache
    kh, kw, cin, cout = W.shape
    N = dy.shape[3]
    dyt = dy.reshape(cout, -1)                                         # (C_out, M)
    dWm = pt @ dyt.T                                                   # (K, C_out): both contracted on their last axis
    dparams = {"W": dWm.reshape(kh, kw, cin, cout)}
    if has_bias:
        dparams["b"] = jnp.sum(dyt, axis=1)
    dx = _col2im_t(W.reshape(kh * kw * cin, cout) @ dyt, g, cin, N)   # (C_in, H, W, N)
    return dparams, (dx.transpose(3, 1, 2, 0) if g.nhwc_input else dx)


def conv2d_cf(c_out, kernel_size, stride=1, padding="valid", activation="relu", nhwc_input=False) -> L.Layer:
    """The library's ``conv.conv2d`` (same init, params, decay) run channel-first: x (C_in, H, W, N)
    (or NHWC when ``nhwc_input``) → (c_out, Ho, Wo, N)."""
    lib = conv.conv2d(c_out, kernel_size, stride, padding, activation)
    forward, backward = L._fuse_activation(lambda p, x: conv2d_cf_forward(p, x, stride, padding, nhwc_input),
                                           conv2d_cf_backward, activation)
    return L.Layer(lib.init, forward, backward, decay=lib.decay)


def _pool_views(x, win):
    """x (C, H, W, N) → the ph·pw window views (C, Ho, Wo, N), row-major window order ('valid', stride = window)."""
    C, H, Wd, N = x.shape
    (ph, pw) = win
    Ho, Wo = H // ph, Wd // pw
    t = x[:, :Ho * ph, :Wo * pw, :].reshape(C, Ho, ph, Wo, pw, N)
    return [t[:, :, i, :, j, :] for i in range(ph) for j in range(pw)]


def maxpool_cf(window=2) -> L.Layer:
    """2-D max-pool, stride = window, 'valid', on (C, H, W, N); the library's tie rule (the whole
    gradient to the first maximum, row-major) via its ``_window_max_arg``."""
    win = conv._pair(window, "window")
    lib = conv.maxpool2d(win, win)

    def forward(params, x, key=None):
        y, arg = conv._window_max_arg(jnp.stack(_pool_views(x, win)))
        return y, (arg, x.shape)

    def backward(cache, dy):
        arg, (C, H, Wd, N) = cache
        (ph, pw), (Ho, Wo) = win, dy.shape[1:3]
        off = (lax.broadcasted_iota(jnp.int32, (1, 1, ph, 1, pw, 1), 2) * pw
               + lax.broadcasted_iota(jnp.int32, (1, 1, ph, 1, pw, 1), 4))
        hit = arg[:, :, None, :, None, :] == off
        d = jnp.where(hit, dy[:, :, None, :, None, :], jnp.zeros((), dy.dtype)).reshape(C, Ho * ph, Wo * pw, N)
        return {}, jnp.pad(d, ((0, 0), (0, H - Ho * ph), (0, Wd - Wo * pw), (0, 0)))

    return L.Layer(lib.init, forward, backward)


def flatten_cf() -> L.Layer:
    """(C, H, W, N) → (C, H·W, N), a reshape: feature-major with features in (c, h, w) order; the
    dense layer after it permutes its weight rows from the library's (h, w, c) order."""
    lib = conv.flatten()

    def forward(params, x, key=None):
        C, H, Wd, N = x.shape
        return x.reshape(C, H * Wd, N), x.shape

    def backward(cache, dy):
        return {}, dy.reshape(cache)

    return L.Layer(lib.init, forward, backward)


def dense_fm(n_out: int) -> L.Layer:
    """The library's ``layers.dense(n_out)`` (identity activation, params {"W": (h·w·C, n_out), "b"})
    on :func:`flatten_cf`'s xᵀ (C, h·w, N) → scores (N, n_out): sᵀ = W'ᵀ xᵀ, dW' = xᵀ · ds,
    dxᵀ = W' · dsᵀ, with W' the rows of W in (c, h, w) order."""
    lib = L.dense(n_out, "identity")

    def permuted(W, C, HW):          # rows (h, w, c) → (c, h, w)
        return W.reshape(HW, C, n_out).transpose(1, 0, 2).reshape(C * HW, n_out)

    def forward(params, x, key=None):
        C, HW, N = x.shape
        xt, Wp = x.reshape(C * HW, N), permuted(params["W"], C, HW)
        # the barrier keeps sᵀ a product of its own: XLA would fold the transpose into it,
        # contracting xᵀ on axis 0 (Eigen)
        return lax.optimization_barrier(_kept_t(Wp) @ xt).T + params["b"], (xt, Wp, (C, HW))

    def backward(cache, ds):
        xt, Wp, (C, HW) = cache
        dW = (xt @ ds).reshape(C, HW, n_out).transpose(1, 0, 2).reshape(C * HW, n_out)
        return {"W": dW, "b": jnp.sum(ds, axis=0)}, (Wp @ ds.T).reshape(C, HW, -1)

    return L.Layer(lib.init, forward, backward, decay=lib.decay)


def cnn2_cf():
    """:func:`jaxnets.models.cnn.cnn2` (same params) with the channel-first convolution."""
    stack = L.serial(conv2d_cf(64, 7, nhwc_input=True), maxpool_cf(2), flatten_cf(), dense_fm(10))
    return sequential(stack, "softmax_cross_entropy", cnn.IN_SHAPE, name="cnn2 (channel-first)")


def cnn3_cf():
    """:func:`jaxnets.models.cnn.cnn3` (same params) with the channel-first convolution."""
    stack = L.serial(conv2d_cf(64, 7, nhwc_input=True), maxpool_cf(2), conv2d_cf(128, 2), maxpool_cf(2),
                     flatten_cf(), dense_fm(10))
    return sequential(stack, "softmax_cross_entropy", cnn.IN_SHAPE, name="cnn3 (channel-first)")


MODELS = {"cnn2": cnn2_cf, "cnn3": cnn3_cf}


def dot_backends(model, batch=128):
    """[(backend, dot shape, lhs / rhs contracting axes)] of one compiled SGD step of ``model``:
    "YNNPACK" for a dot inside a ``__ynn_fusion``, else "Eigen" (XLA:CPU's other dot runtime)."""
    import re

    import jax
    x, y = jnp.zeros((batch, *cnn.IN_SHAPE), jnp.float32), jnp.zeros((batch,), jnp.int32)
    p = model.init(jax.random.key(0))
    step = jax.jit(lambda p, x, y: jax.tree.map(lambda w, g: w - 0.01 * g, p, model.backprop(p, x, y)[1]))
    text = step.lower(p, x, y).compile().as_text()
    ynn = set(re.findall(r'calls=%(\S+?), .*"kind":"__ynn_fusion"', text))
    out, comp = [], None
    for line in text.splitlines():
        head = re.match(r'^(?:ENTRY )?%(\S+) .*\{$', line)
        comp = head.group(1) if head else comp
        dot = re.search(r'= (\S+) dot\(.*lhs_contracting_dims=\{(\d+)\}, rhs_contracting_dims=\{(\d+)\}', line)
        if dot:
            out.append(("YNNPACK" if comp in ynn else "Eigen", dot.group(1), f"{dot.group(2)} / {dot.group(3)}"))
    return out


def compare(rounds=15, n=1280, seed=0):
    """Library vs prototype, fit's epoch as ``experiments.bench`` builds it (``_fit_epoch``, hand
    gradients, ``interleave``: random order each round, a settling run before each timed one),
    on n Fashion-MNIST training images (found as the bench finds them); prints per-step minima and
    medians, their ratios and the max |Δgrad| of one batch (float32) against the library."""
    import jax
    import numpy as np

    from experiments import bench as cli_bench
    from experiments._lib import bench
    sp = cli_bench._mnist(False)   # Fashion-MNIST where found, else the bundled MNIST sample (said)
    X, Y = jax.device_put(jnp.asarray(sp.x_train[:n])), jax.device_put(jnp.asarray(sp.y_train[:n]))
    for k, (name, B) in enumerate(bench.CNN_CASES):
        lib, cf = cnn.MODELS[name](), MODELS[name]()
        p0 = lib.init(jax.random.key(seed))
        g0, g1 = (jax.jit(m.backprop)(p0, X[:B], Y[:B])[1] for m in (lib, cf))
        dg = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
        vs = [bench._fit_epoch(m, p0, X, Y, B, "hand", t, with_cost=False)
              for m, t in ((lib, "library"), (cf, "prototype"))]
        bench.interleave(vs, rounds, seed=seed + k)
        a, b = (np.asarray(v.times) * B / n * 1e3 for v in vs)
        print(f"{name} b{B}: ms per step, library min {a.min():.2f} med {np.median(a):.2f} | prototype min "
              f"{b.min():.2f} med {np.median(b):.2f} | library/prototype min {a.min() / b.min():.3f} med "
              f"{np.median(a) / np.median(b):.3f} | max|dgrad| {dg:.1e}", flush=True)
    for name in ("cnn2", "cnn3"):
        for tag, m in (("library", cnn.MODELS[name]()), ("prototype", MODELS[name]())):
            print(name, tag, "dots:", dot_backends(m))


if __name__ == "__main__":
    import sys
    compare(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
