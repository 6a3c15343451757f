"""Convolution, max-pooling and flatten layers with hand-written backward rules.

Layouts follow ``jax.lax`` conventions for channels-last data:

- ``conv2d``: x ``(N, H, W, C_in)`` (NHWC), kernel ``W`` ``(kh, kw, C_in, C_out)`` (HWIO), bias
  ``b`` ``(C_out,)`` → y ``(N, H_out, W_out, C_out)``. Like ``lax.conv_general_dilated`` (and like
  doc 001 §4.4 / doc 003) this is a *cross-correlation*: the kernel is not flipped,
  ``y[n, p, q, o] = b[o] + Σ_{i,j,c} x_pad[n, p·sh + i, q·sw + j, c] · W[i, j, c, o]``.
- ``conv1d``: x ``(N, L, C_in)`` (NWC), kernel ``W`` ``(k, C_in, C_out)``, bias ``(C_out,)``.
- ``maxpool2d``: x ``(N, H, W, C)`` → ``(N, H_out, W_out, C)``.
- ``flatten``: ``(N, *shape)`` → ``(N, prod(shape))`` in C (row-major) order.

Padding is ``'valid'``, ``'same'`` (lax's rule: total padding ``max((⌈H/s⌉−1)·s + k − H, 0)``,
the smaller half on top/left), an int (the same on every side), or explicit
``((top, bottom), (left, right))`` (conv1d: ``(left, right)``). Padding is zero for convolutions
and −∞ for max-pooling. Output size: ``H_out = ⌊(H + top + bottom − kh) / sh⌋ + 1``.

Implementation (no Python loops over pixels). Forward conv2d is im2col: one strided slice per
window offset ``(i, j)`` reads that entry of every output position's window from the zero-padded
input; stacked, they give patches ``(N·H_out·W_out, kh·kw·C_in)`` (columns ordered ``(i, j, c)``)
which feed a single matmul with the kernel reshaped to ``(kh·kw·C_in, C_out)``. The backward rule
is the adjoint of that construction:

- ``dW = patchesᵀ · dy`` (one matmul on the cached patches), ``db = Σ dy``;
- ``dpatches = dy · Wᵀ`` (one matmul), then *col2im*: the adjoint of each strided slice is a zero
  pad back onto the padded grid, so every patch entry returns to the input position it was read
  from (overlapping windows add up), followed by cropping off the border padding.

Max-pool uses the same window slices (and their adjoint); its tie rule is documented at
:func:`maxpool2d_forward`, and its forward is written so that ``jax.grad`` routes ties the same way.
Every layer here is a :class:`~jaxnets.nn.layers.Layer`; conv1d/conv2d decay their kernel "W".
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets.nn import initializers
from jaxnets.nn.layers import Layer, Static, _fuse_activation, decay_keys, weight_grad


# ----------------------------------------------------------------------------- helpers

def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2 or min(v) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {v}")
    return v


def resolve_padding(padding, in_hw: Sequence[int], window: Sequence[int],
                    strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Explicit ``((lo, hi), …)`` pads per spatial dim from 'valid'/'same'/int/explicit."""
    nd = len(in_hw)
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return tuple((0, 0) for _ in range(nd))
        if p == "same":
            pads = []
            for n, k, s in zip(in_hw, window, strides):
                out = -(-n // s)
                total = max((out - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"padding must be 'valid', 'same', an int or explicit pairs, got {padding!r}")
    if isinstance(padding, int):
        padding = [(padding, padding)] * nd
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != nd or min(min(p) for p in pads) < 0:
        raise ValueError(f"expected {nd} non-negative (lo, hi) padding pairs, got {padding!r}")
    return pads


def _out_size(n: int, k: int, s: int, lo: int, hi: int) -> int:
    return (n + lo + hi - k) // s + 1


def _window_slice(x, i, j, strides, out_hw):
    """The (N, Ho, Wo, C) entries that window offset (i, j) reads from x (N, Hp, Wp, C)."""
    (sh, sw), (Ho, Wo) = strides, out_hw
    return lax.slice(x, (0, i, j, 0), (x.shape[0], i + (Ho - 1) * sh + 1, j + (Wo - 1) * sw + 1, x.shape[3]),
                     (1, sh, sw, 1))


def _gather_windows(x_pad, window, strides, out_hw):
    """im2col: (N, Hp, Wp, C) → (N, Ho, Wo, kh·kw, C), window offsets (i, j) row-major.

    One strided slice per window offset, stacked (with fewer than ``_FEW_CHANNELS`` channels: kw
    column slices, then kh row slices of those, on major axes, and one transpose): XLA fuses the
    slices into loops that its consumers (the patches matmul, the pool's arg-max) read, where a
    gather with an index table runs as a much slower generic gather on XLA:CPU."""
    kh, kw = window
    (sh, sw), (Ho, Wo) = strides, out_hw
    N, Hp, _, C = x_pad.shape
    if C >= _FEW_CHANNELS:
        return jnp.stack([_window_slice(x_pad, i, j, strides, out_hw) for i in range(kh) for j in range(kw)],
                         axis=3)
    # Few channels: a stack on the last axes writes runs of C floats (one float for doc 003's
    # 28×28×1 input), which XLA:CPU emitted as kh·kw copies plus a concatenate; stacking on major
    # axes copies whole rows, and one transpose puts the (i, j) offsets next to the channels.
    # The same entries bit for bit; measured ~10× faster for the 7×7 conv on 28×28×1 (patches alone,
    # one core), while with C = 64 (the 2×2 conv of the 3-layer CNN) the one stack was faster.
    cols = jnp.stack([_window_slice(x_pad, 0, j, (1, sw), (Hp, Wo)) for j in range(kw)], axis=1)
    rows = jnp.stack([lax.slice_in_dim(cols, i, i + (Ho - 1) * sh + 1, sh, axis=2) for i in range(kh)],
                     axis=1)                                        # (N, kh, kw, Ho, Wo, C)
    return rows.transpose(0, 3, 4, 1, 2, 5).reshape(N, Ho, Wo, kh * kw, C)


#: below this many input channels :func:`_gather_windows` stacks on major axes and transposes
_FEW_CHANNELS = 8


def _gather_windows_adjoint(d, padded_hw, window, strides):
    """Adjoint of :func:`_gather_windows` (col2im): (N, Ho, Wo, kh·kw, C) → (N, Hp, Wp, C).

    The adjoint of each strided slice is a zero pad (interior padding stride − 1) back onto the
    padded grid; overlapping windows add up, in window order. The kh·kw pads are summed by one
    reduction, which fuses into one loop (a scatter-add runs serially on XLA:CPU) and keeps the
    result in memory: as a chain of adds it fused into a following 2×2 pool's backward, which
    reads each entry four times, and was recomputed per read (same bits either way on XLA:CPU,
    which adds a reduction's terms in order; other backends may order them otherwise)."""
    N, Ho, Wo, P, C = d.shape
    (Hp, Wp), (kh, kw), (sh, sw) = padded_hw, window, strides
    zero = jnp.zeros((), d.dtype)
    pads = [lax.pad(d[:, :, :, i * kw + j, :], zero,
                    ((0, 0, 0), (i, Hp - i - (Ho - 1) * sh - 1, sh - 1), (j, Wp - j - (Wo - 1) * sw - 1, sw - 1),
                     (0, 0, 0)))
            for i in range(kh) for j in range(kw)]
    # lax.reduce, not jnp.sum: it adds in d's dtype (jnp.sum adds float16/bfloat16 in float32)
    return pads[0] if P == 1 else lax.reduce(jnp.stack(pads), zero, lax.add, (0,))


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Static shape bookkeeping kept in a cache (a pytree node without leaves, so caches can be
    returned from jit and passed to a backward rule later)."""
    padded_hw: tuple
    pad_lo: tuple
    in_hw: tuple
    window: tuple
    strides: tuple
    has_bias: bool = True


def _check_nhwc(x, where: str, channels: int | None = None):
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{where}: expected x of shape (N, H, W, C), got shape {jnp.shape(x)}")
    if channels is not None and x.shape[3] != channels:
        raise ValueError(f"{where}: expected {channels} input channels, got x of shape {x.shape}")


# ----------------------------------------------------------------------------- conv2d

def conv2d_forward(params, x, stride=1, padding="valid"):
    """2-D convolution (cross-correlation), NHWC, as im2col + one matmul.

    params {"W": (kh, kw, C_in, C_out), "b": (C_out,)} (or {"W"} alone, no bias);
    x (N, H, W, C_in) → y (N, H_out, W_out, C_out).
    (XLA's convolution is not used for the one-input-channel case: its transpose, which ``jax.grad``
    of this forward needs, ran ~40× slower inside a ``lax.scan`` epoch on XLA:CPU.) A batch whose
    patches do not stay in cache is best trained in chunks: ``models.microbatched`` (``fit``'s
    ``microbatch``) chunks the whole step.
    """
    W = params["W"]
    kh, kw, cin, cout = W.shape
    _check_nhwc(x, "conv2d", cin)
    strides = _pair(stride, "stride")
    N, H, Wd, _ = x.shape
    (pt, pb), (pl, pr) = resolve_padding(padding, (H, Wd), (kh, kw), strides)
    Ho, Wo = _out_size(H, kh, strides[0], pt, pb), _out_size(Wd, kw, strides[1], pl, pr)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: kernel {(kh, kw)} does not fit input {(H, Wd)} with padding "
                         f"{((pt, pb), (pl, pr))}")
    x_pad = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))
    geom = _Geometry(tuple(x_pad.shape[1:3]), (pt, pl), (H, Wd), (kh, kw), strides, "b" in params)
    y, patches = _patches_matmul(params, x_pad, geom, (Ho, Wo))
    return y, (patches, W, geom)


def _patches_matmul(params, x_pad, g, out_hw):
    """(y (N, Ho, Wo, C_out), patches (N·Ho·Wo, kh·kw·C_in)) of the padded input."""
    W = params["W"]
    kh, kw, cin, cout = W.shape
    patches = _im2col(x_pad, g, out_hw)
    y = patches @ W.reshape(kh * kw * cin, cout)
    if g.has_bias:
        y = y + params["b"]
    return y.reshape(x_pad.shape[0], *out_hw, cout), patches


def _im2col(x_pad, g, out_hw):
    """(N·Ho·Wo, kh·kw·C_in) patches of the padded input; rows ordered (n, p, q), columns (i, j, c)."""
    N, C = x_pad.shape[0], x_pad.shape[3]
    return _gather_windows(x_pad, g.window, g.strides, out_hw).reshape(N * out_hw[0] * out_hw[1],
                                                                        g.window[0] * g.window[1] * C)


def conv2d_backward(cache, dy):
    """dy (N, H_out, W_out, C_out) → ({"W": (kh, kw, C_in, C_out)[, "b": (C_out,)]}, dx (N, H, W, C_in))."""
    patches, W, g = cache            # patches (N·Ho·Wo, kh·kw·C_in)
    dparams, dx_pad = _patches_backward(patches, W, g, dy)
    (pt, pl), (H, Wd) = g.pad_lo, g.in_hw
    return dparams, dx_pad[:, pt:pt + H, pl:pl + Wd, :]


def _patches_backward(patches, W, g, dy):
    kh, kw, cin, cout = W.shape
    N, Ho, Wo, _ = dy.shape
    dy2 = dy.reshape(N * Ho * Wo, cout)
    dW = weight_grad(patches, dy2).reshape(kh, kw, cin, cout)
    dparams = {"W": dW, "b": jnp.sum(dy2, axis=0)} if g.has_bias else {"W": dW}
    dpatches = (dy2 @ W.reshape(kh * kw * cin, cout).T).reshape(N, Ho, Wo, kh * kw, cin)
    return dparams, _gather_windows_adjoint(dpatches, g.padded_hw, g.window, g.strides)


def conv2d(c_out: int, kernel_size, stride=1, padding="valid", activation: str = "identity",
           init="default", bias: bool = True, **init_kwargs) -> Layer:
    """2-D convolution layer followed by an activation (fused, like :func:`layers.dense`).

    in_shape (H, W, C_in) → out_shape (H_out, W_out, c_out); params {"W": (kh, kw, C_in, c_out),
    "b": (c_out,)} (no "b" when ``bias=False``); decay: "W". ``init`` names a scheme of
    :mod:`jaxnets.nn.initializers` (fan_in = kh·kw·C_in, fan_out = kh·kw·c_out).
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    strides = _pair(stride, "stride")
    forward, backward = _fuse_activation(lambda p, x: conv2d_forward(p, x, strides, padding),
                                        conv2d_backward, activation)
    init_fn = initializers.get(init, activation=activation, **init_kwargs)
    resolve_padding(padding, (1, 1), (kh, kw), strides)  # validate early

    def init_(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 3:
            raise ValueError(f"conv2d: expected an input shape (H, W, C), got {tuple(in_shape)}")
        H, Wd, cin = (int(d) for d in in_shape)
        (pt, pb), (pl, pr) = resolve_padding(padding, (H, Wd), (kh, kw), strides)
        Ho, Wo = _out_size(H, kh, strides[0], pt, pb), _out_size(Wd, kw, strides[1], pl, pr)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"conv2d: kernel {(kh, kw)} does not fit input {(H, Wd)}")
        W, b = init_fn(key, (kh, kw, cin, c_out), (c_out,), kh * kw * cin, kh * kw * c_out, dtype)
        return (Ho, Wo, c_out), ({"W": W, "b": b} if bias else {"W": W})

    return Layer(init_, forward, backward, decay=decay_keys("W"))


# ----------------------------------------------------------------------------- conv1d

def _padding_1d_to_2d(padding):
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return ((0, 0), (padding, padding))
    lo, hi = padding
    return ((0, 0), (int(lo), int(hi)))


def conv1d_forward(params, x, stride=1, padding="valid"):
    """1-D convolution (cross-correlation), NWC: the H = 1 case of :func:`conv2d_forward`.

    params {"W": (k, C_in, C_out), "b": (C_out,)} (or {"W"}); x (N, L, C_in) → y (N, L_out, C_out),
    ``y[n, t, o] = b[o] + Σ_{j,c} x_pad[n, t·s + j, c] · W[j, c, o]``. The doc 003 mini CNN is the
    case L = 3, k = 2, C_in = C_out = 1, b = 0: ``a_t = x_t w_1 + x_{t+1} w_2``.
    """
    W = params["W"]
    if getattr(x, "ndim", None) != 3:
        raise ValueError(f"conv1d: expected x of shape (N, L, C), got shape {jnp.shape(x)}")
    if W.ndim != 3:
        raise ValueError(f"conv1d: expected a kernel of shape (k, C_in, C_out), got {W.shape}")
    p2 = {**params, "W": W[None]}
    y, cache = conv2d_forward(p2, x[:, None], (1, stride), _padding_1d_to_2d(padding))
    return y[:, 0], cache


def conv1d_backward(cache, dy):
    """dy (N, L_out, C_out) → ({"W": (k, C_in, C_out)[, "b": (C_out,)]}, dx (N, L, C_in))."""
    g, dx = conv2d_backward(cache, dy[:, None])
    return {**g, "W": g["W"][0]}, dx[:, 0]


def conv1d(c_out: int, kernel_size: int, stride: int = 1, padding="valid",
           activation: str = "identity", init="default", bias: bool = True, **init_kwargs) -> Layer:
    """1-D convolution layer + activation. in_shape (L, C_in) → (L_out, c_out);
    params {"W": (k, C_in, c_out), "b": (c_out,)} (no "b" when ``bias=False``); decay: "W"."""
    k, s = int(kernel_size), int(stride)
    if k < 1 or s < 1:
        raise ValueError(f"conv1d: kernel_size and stride must be >= 1, got {k}, {s}")
    forward, backward = _fuse_activation(lambda p, x: conv1d_forward(p, x, s, padding),
                                        conv1d_backward, activation)
    init_fn = initializers.get(init, activation=activation, **init_kwargs)

    def init_(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 2:
            raise ValueError(f"conv1d: expected an input shape (L, C), got {tuple(in_shape)}")
        Ln, cin = (int(d) for d in in_shape)
        ((_, _), (pl, pr)) = resolve_padding(_padding_1d_to_2d(padding), (1, Ln), (1, k), (1, s))
        Lo = _out_size(Ln, k, s, pl, pr)
        if Lo < 1:
            raise ValueError(f"conv1d: kernel {k} does not fit input length {Ln}")
        W, b = init_fn(key, (k, cin, c_out), (c_out,), k * cin, k * c_out, dtype)
        return (Lo, c_out), ({"W": W, "b": b} if bias else {"W": W})

    return Layer(init_, forward, backward, decay=decay_keys("W"))


# ----------------------------------------------------------------------------- maxpool2d

def maxpool2d_forward(x, window=2, stride=None, padding="valid"):
    """Max-pooling over (ph, pw) windows, NHWC; ``stride`` defaults to the window.

    x (N, H, W, C) → y (N, H_out, W_out, C); padding (if any) is −∞ so it never wins.

    **Tie rule**: when several entries of a window share the maximum, the whole gradient goes to
    the *first* of them in row-major order of the window (smallest row offset, then smallest
    column offset) — ``jnp.argmax`` semantics. Overlapping windows (stride < window) each route
    their gradient independently, and the contributions add up.
    """
    _check_nhwc(x, "maxpool2d")
    win = _pair(window, "window")
    strides = win if stride is None else _pair(stride, "stride")
    N, H, Wd, C = x.shape
    (pt, pb), (pl, pr) = resolve_padding(padding, (H, Wd), win, strides)
    Ho, Wo = _out_size(H, win[0], strides[0], pt, pb), _out_size(Wd, win[1], strides[1], pl, pr)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool2d: window {win} does not fit input {(H, Wd)}")
    x_pad = lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))
    geom = _Geometry(tuple(x_pad.shape[1:3]), (pt, pl), (H, Wd), win, strides)
    if strides == win:  # non-overlapping windows: a reshape of x, no window copies
        t = _tiles(x_pad, win, (Ho, Wo))                            # (N, Ho, ph, Wo, pw, C)
        # One (N, Ho, Wo, C) view per window offset; XLA fuses the views, the max, the arg-max and
        # the layer before (bias, ReLU) into one pass over x.
        y, arg = _window_max_arg(jnp.stack([t[:, :, i, :, j, :] for i in range(win[0]) for j in range(win[1])]))
        return y, (arg, geom)
    windows = _gather_windows(x_pad, win, strides, (Ho, Wo))       # (N, Ho, Wo, P, C)
    arg = jnp.argmax(windows, axis=3)                               # first maximum, row-major
    # Reading y at arg (not a max-reduce) makes jax.grad route a tie as the hand rule does.
    y = jnp.take_along_axis(windows, arg[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return y, (arg, geom)


def _first_max_pick(a, b):
    """Reducer of :func:`_window_max_arg`: of two (value, window index) pairs keep the maximum, a
    NaN before any number, and of equals (or of two NaNs) the smaller index: ``jnp.argmax``
    semantics, commutative and associative, so XLA may combine the pairs in any order. The value
    is ``jnp.maximum``'s (NaN if either is; +0 of a −0/+0 tie, in either order), as the
    elementwise maxima of the views give it."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = jnp.isnan(av), jnp.isnan(bv)
    take_a = jnp.where(a_nan | b_nan, a_nan & ~(b_nan & (bi < ai)), (av > bv) | ((av == bv) & (ai < bi)))
    return jnp.maximum(av, bv), jnp.where(take_a, ai, bi)


def _max_arg_reduce(s):
    idx = lax.broadcasted_iota(jnp.int32, s.shape, 0)
    init = (jnp.array(-jnp.inf, s.dtype), jnp.int32(s.shape[0]))
    return lax.reduce((s, idx), init, _first_max_pick, (0,))


@jax.custom_jvp
def _window_max_arg(s):
    """(maximum, index of its first occurrence) over axis 0 of the stacked window views
    s (P, N, Ho, Wo, C) -> y (N, Ho, Wo, C), arg int32 (N, Ho, Wo, C); NaN counts as the maximum.

    One reduction, so XLA:CPU keeps y and arg in memory: written as elementwise maxima and
    compares, the pool fused into each consumer that reads a pooled entry several times (the
    backward's 2×2 upsampling, the next conv's im2col) and was recomputed there per read (the
    README's Performance section has the step times before and after; the same bits on XLA:CPU).
    Its derivative follows the pool's tie rule: the tangent of the *first* maximum passes, where
    ``jnp.max``'s own derivative would share it among the tied entries. So ``jax.grad`` of
    :func:`maxpool2d_forward` equals :func:`maxpool2d_backward` at ties too (ReLU outputs of real
    images tie often: flat regions give equal pre-activations)."""
    return _max_arg_reduce(s)


@_window_max_arg.defjvp
def _window_max_arg_jvp(primals, tangents):
    (s,), (ds,) = primals, tangents
    y, arg = _window_max_arg(s)    # (not the bare reduce, which has no derivative: keeps higher orders)
    dy = jnp.zeros_like(y)
    for k in reversed(range(s.shape[0])):
        dy = jnp.where(arg == k, ds[k], dy)
    return (y, arg), (dy, np.zeros(arg.shape, jax.dtypes.float0))


def _tiles(x_pad, win, out_hw):
    """Non-overlapping windows as a view: (N, Hp, Wp, C) → (N, Ho, ph, Wo, pw, C), rows and
    columns past the last full window cropped (a 'valid' pool never reads them)."""
    N, _, _, C = x_pad.shape
    (ph, pw), (Ho, Wo) = win, out_hw
    return x_pad[:, :Ho * ph, :Wo * pw, :].reshape(N, Ho, ph, Wo, pw, C)


def _tile_offsets(win):
    """Row-major window offset i·pw + j, shaped (1, 1, ph, 1, pw, 1) to broadcast against tiles."""
    shape = (1, 1, win[0], 1, win[1], 1)
    return lax.broadcasted_iota(jnp.int32, shape, 2) * win[1] + lax.broadcasted_iota(jnp.int32, shape, 4)


def maxpool2d_backward(cache, dy):
    """dy (N, H_out, W_out, C) → dx (N, H, W, C): dy is routed to each window's arg-max."""
    arg, g = cache
    (pt, pl), (H, Wd) = g.pad_lo, g.in_hw
    if g.strides == g.window:  # non-overlapping: each input entry gets dy of its one window or 0
        N, Ho, Wo, C = dy.shape
        (ph, pw), (Hp, Wp) = g.window, g.padded_hw
        hit = arg[:, :, None, :, None, :] == _tile_offsets(g.window)             # (N, Ho, ph, Wo, pw, C)
        d = jnp.where(hit, dy[:, :, None, :, None, :], jnp.zeros((), dy.dtype)).reshape(N, Ho * ph, Wo * pw, C)
        dx_pad = lax.pad(d, jnp.zeros((), dy.dtype), ((0, 0, 0), (0, Hp - Ho * ph, 0), (0, Wp - Wo * pw, 0), (0, 0, 0)))
        return dx_pad[:, pt:pt + H, pl:pl + Wd, :]
    P = g.window[0] * g.window[1]
    hit = arg[:, :, :, None, :] == jnp.arange(P)[None, None, None, :, None]   # (N, Ho, Wo, P, C)
    d = jnp.where(hit, dy[:, :, :, None, :], jnp.zeros((), dy.dtype))
    dx_pad = _gather_windows_adjoint(d, g.padded_hw, g.window, g.strides)
    return dx_pad[:, pt:pt + H, pl:pl + Wd, :]


def maxpool2d(window=2, stride=None, padding="valid") -> Layer:
    """Max-pooling layer (params ``{}``). in_shape (H, W, C) → (H_out, W_out, C)."""
    win = _pair(window, "window")
    strides = win if stride is None else _pair(stride, "stride")

    def init(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 3:
            raise ValueError(f"maxpool2d: expected an input shape (H, W, C), got {tuple(in_shape)}")
        H, Wd, C = (int(d) for d in in_shape)
        (pt, pb), (pl, pr) = resolve_padding(padding, (H, Wd), win, strides)
        Ho, Wo = _out_size(H, win[0], strides[0], pt, pb), _out_size(Wd, win[1], strides[1], pl, pr)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"maxpool2d: window {win} does not fit input {(H, Wd)}")
        return (Ho, Wo, C), {}

    def forward(params, x, key=None):
        return maxpool2d_forward(x, win, strides, padding)

    def backward(cache, dy):
        return {}, maxpool2d_backward(cache, dy)

    return Layer(init, forward, backward)


# ----------------------------------------------------------------------------- flatten

def flatten_forward(x):
    """(N, *shape) → (N, prod(shape)), row-major (for NHWC: h, then w, then channel)."""
    return x.reshape(x.shape[0], -1), Static(x.shape)


def flatten_backward(cache, dy):
    return dy.reshape(cache)


def flatten() -> Layer:
    """Flatten layer (params ``{}``). in_shape (*shape) → (prod(shape),)."""

    def init(key, in_shape, dtype=jnp.float32):
        return (int(math.prod(in_shape)),), {}

    def forward(params, x, key=None):
        return flatten_forward(x)

    def backward(cache, dy):
        return {}, flatten_backward(cache, dy)

    return Layer(init, forward, backward)
