"""Prototype: doc 003 §3.5's CNNs with the convolutions run channel-first on transposed patches.

A measurement prototype, not a library layer. :mod:`jaxnets.nn.conv` builds patches
``(N·Ho·Wo, kh·kw·C_in)`` and computes the kernel gradient as ``patchesᵀ · dy``; XLA:CPU sends a
product whose left operand is contracted on its axis 0 to Eigen, and every other product of the
step to YNNPACK. Here im2col writes the transposed patches ``Pᵀ (kh·kw·C_in, N·Ho·Wo)`` directly
(one row per window offset and channel, copied from the padded input by whole-row slices) and
activations stay channel-first ``(C, N, H, W)`` between conv, ReLU and max-pool, so every product
has its contraction on the left operand's last axis:

- forward ``yᵀ (C_out, M) = Wmᵀ (C_out, K) · Pᵀ (K, M)`` (M = N·Ho·Wo, K = kh·kw·C_in);
- kernel gradient ``dWm (K, C_out) = Pᵀ · (dyᵀ)ᵀ`` (both operands contracted on their last axis);
- input gradient ``dPᵀ (K, M) = Wm (K, C_out) · dyᵀ (C_out, M)``, then col2im (zero pads, summed).

The flatten transposes once, to feature-major ``xᵀ (F, N)`` with features in the library's
(h, w, c) order, and the dense layer works on that: ``sᵀ = Wᵀ xᵀ``, ``dW (F, K) = xᵀ (F, N) · ds (N, K)``
and ``dxᵀ = W · dsᵀ``. Params (their structure, shapes,
init draws), inputs ``(N, 28, 28, 1)`` and scores ``(N, 10)`` are the library models'
(:mod:`jaxnets.models.cnn`); the max-pool keeps the library's first-maximum tie rule.
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
    """wᵀ of a small weight matrix, materialised: XLA folds a bare transpose into the product's
    dimension numbers (left operand contracted on axis 0), which XLA:CPU runs on Eigen, not YNNPACK."""
    return lax.optimization_barrier(w.T)


def _im2col_t(x_pad, g):
    """Transposed patches: x_pad (C, N, Hp, Wp) → Pᵀ (kh·kw·C, N·Ho·Wo), rows (i, j, c), columns (n, p, q).

    One strided slice per window offset (i, j), stacked on a new major axis: each copies whole
    output rows of its channel, so nothing is written one float at a time."""
    C, N = x_pad.shape[:2]
    (kh, kw), (sh, sw), (Ho, Wo) = g.window, g.strides, g.out_hw
    rows = [lax.slice(x_pad, (0, 0, i, j), (C, N, i + (Ho - 1) * sh + 1, j + (Wo - 1) * sw + 1), (1, 1, sh, sw))
            for i in range(kh) for j in range(kw)]
    return jnp.stack(rows).reshape(kh * kw * C, N * Ho * Wo)


def _col2im_t(dpt, g, C, N):
    """Adjoint of :func:`_im2col_t` then the crop: dPᵀ (kh·kw·C, N·Ho·Wo) → dx (C, N, H, W).

    Each slice's adjoint is a zero pad (interior stride − 1) back onto the padded grid; a sum of
    pads fuses into one elementwise loop (a scatter-add runs serially on XLA:CPU)."""
    (kh, kw), (sh, sw), (Ho, Wo) = g.window, g.strides, g.out_hw
    (H, Wd), ((pt, pb), (pl, pr)) = g.in_hw, g.pad
    Hp, Wp = H + pt + pb, Wd + pl + pr
    d = dpt.reshape(kh, kw, C, N, Ho, Wo)
    zero, out = jnp.zeros((), dpt.dtype), None
    for i in range(kh):
        for j in range(kw):
            t = lax.pad(d[i, j], zero, ((0, 0, 0), (0, 0, 0), (i, Hp - i - (Ho - 1) * sh - 1, sh - 1),
                                        (j, Wp - j - (Wo - 1) * sw - 1, sw - 1)))
            out = t if out is None else out + t
    return out[:, :, pt:pt + H, pl:pl + Wd]


def conv2d_cf_forward(params, x, stride=1, padding="valid", nhwc_input=False):
    """Channel-first conv: x (C_in, N, H, W) (or (N, H, W, C_in) when ``nhwc_input``) with the
    library's params {"W": (kh, kw, C_in, C_out), "b": (C_out,)} → y (C_out, N, Ho, Wo), cache."""
    W = params["W"]
    kh, kw, cin, cout = W.shape
    if nhwc_input:  # for C_in = 1 (doc 003's images) this transpose is a reshape
        x = x.transpose(3, 0, 1, 2)
    _, N, H, Wd = x.shape
    strides = conv._pair(stride, "stride")
    pad = conv.resolve_padding(padding, (H, Wd), (kh, kw), strides)
    out_hw = tuple(conv._out_size(n, k, s, *p) for n, k, s, p in zip((H, Wd), (kh, kw), strides, pad))
    g = _ConvGeom((H, Wd), pad, (kh, kw), strides, out_hw, nhwc_input)
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (0, 0, 0), (*pad[0], 0), (*pad[1], 0)))
    pt = _im2col_t(x_pad, g)                                          # (K, M)
    y = _kept_t(W.reshape(kh * kw * cin, cout)) @ pt                 # (C_out, M)
    if "b" in params:
        y = y + params["b"][:, None]
    return y.reshape(cout, N, *out_hw), (pt, W, g, "b" in params)


def conv2d_cf_backward(cache, dy):
    """dy (C_out, N, Ho, Wo) → ({"W": (kh, kw, C_in, C_out)[, "b"]}, dx of the forward's x layout)."""
    pt, W, g, has_bias = cache
    kh, kw, cin, cout = W.shape
    N = dy.shape[1]
    dyt = dy.reshape(cout, -1)                                         # (C_out, M)
    dWm = pt @ dyt.T                                                   # (K, C_out): both contracted on their last axis
    dparams = {"W": dWm.reshape(kh, kw, cin, cout)}
    if has_bias:
        dparams["b"] = jnp.sum(dyt, axis=1)
    dx = _col2im_t(W.reshape(kh * kw * cin, cout) @ dyt, g, cin, N)   # (C_in, N, H, W)
    return dparams, (dx.transpose(1, 2, 3, 0) if g.nhwc_input else dx)


def conv2d_cf(c_out, kernel_size, stride=1, padding="valid", activation="relu", nhwc_input=False) -> L.Layer:
    """The library's ``conv.conv2d`` (same init, params, decay) run channel-first: x (C_in, N, H, W)
    (or NHWC when ``nhwc_input``) → (c_out, N, Ho, Wo)."""
    lib = conv.conv2d(c_out, kernel_size, stride, padding, activation)
    forward, backward = L._fuse_activation(lambda p, x: conv2d_cf_forward(p, x, stride, padding, nhwc_input),
                                           conv2d_cf_backward, activation)
    return L.Layer(lib.init, forward, backward, decay=lib.decay)


def _pool_views(x, win):
    """x (C, N, H, W) → the ph·pw window views (C, N, Ho, Wo), row-major window order ('valid', stride = window)."""
    C, N, H, Wd = x.shape
    (ph, pw) = win
    Ho, Wo = H // ph, Wd // pw
    t = x[:, :, :Ho * ph, :Wo * pw].reshape(C, N, Ho, ph, Wo, pw)
    return [t[:, :, :, i, :, j] for i in range(ph) for j in range(pw)]


def maxpool_cf(window=2) -> L.Layer:
    """2-D max-pool, stride = window, 'valid', on (C, N, H, W); the library's tie rule (the whole
    gradient to the first maximum, row-major) via its ``_window_max`` / ``_first_argmax``."""
    win = conv._pair(window, "window")
    lib = conv.maxpool2d(win, win)

    def forward(params, x, key=None):
        ts = _pool_views(x, win)
        y = conv._window_max(*ts)
        return y, (conv._first_argmax(ts, y), x.shape)

    def backward(cache, dy):
        arg, (C, N, H, Wd) = cache
        (ph, pw), (Ho, Wo) = win, dy.shape[2:]
        off = (lax.broadcasted_iota(jnp.int32, (1, 1, 1, ph, 1, pw), 3) * pw
               + lax.broadcasted_iota(jnp.int32, (1, 1, 1, ph, 1, pw), 5))
        hit = arg[:, :, :, None, :, None] == off
        d = jnp.where(hit, dy[:, :, :, None, :, None], jnp.zeros((), dy.dtype)).reshape(C, N, Ho * ph, Wo * pw)
        return {}, jnp.pad(d, ((0, 0), (0, 0), (0, H - Ho * ph), (0, Wd - Wo * pw)))

    return L.Layer(lib.init, forward, backward)


def flatten_cf() -> L.Layer:
    """(C, N, H, W) → feature-major xᵀ (H·W·C, N), features in the library's (h, w, c) order: the
    one transpose of the step (and its adjoint in the backward)."""
    lib = conv.flatten()

    # The barriers keep each transpose a copy of its own, which XLA:CPU emits as a tiled
    # transpose; fused into the pool's loops it became an element-wise gather with strides of
    # C·N floats (the backward: ~50 ms instead of ~1 ms for cnn2 at batch 128).
    def forward(params, x, key=None):
        C, N, H, Wd = x.shape
        return lax.optimization_barrier(x.transpose(2, 3, 0, 1)).reshape(H * Wd * C, N), x.shape

    def backward(cache, dy):
        C, N, H, Wd = cache
        return {}, lax.optimization_barrier(dy.reshape(H, Wd, C, N).transpose(2, 3, 0, 1))

    return L.Layer(lib.init, forward, backward)


def dense_fm(n_out: int) -> L.Layer:
    """The library's ``layers.dense(n_out)`` (identity activation) on feature-major xᵀ (F, N):
    scores (N, n_out) = (Wᵀ xᵀ)ᵀ + b; dW = xᵀ · ds; dxᵀ = W · dsᵀ."""
    lib = L.dense(n_out, "identity")

    def forward(params, xt, key=None):
        W = params["W"]
        # the barrier keeps sᵀ a product of its own: XLA would fold the transpose into it,
        # contracting xᵀ on axis 0 (Eigen)
        return lax.optimization_barrier(_kept_t(W) @ xt).T + params["b"], (xt, W)

    def backward(cache, ds):
        xt, W = cache
        return {"W": xt @ ds, "b": jnp.sum(ds, axis=0)}, W @ ds.T

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
