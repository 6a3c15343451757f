"""conv1d / conv2d / maxpool2d / flatten: forward vs lax, hand backward vs jax.grad and central
differences (float64), over tables of shapes, paddings, strides and channels."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxnets.nn import conv
from jaxnets import gradcheck
from jaxnets import models
from jaxnets.nn import layers as L

AUTODIFF_TOL = 1e-10
FD_TOL = 1e-6

# (N, H, W, C_in, C_out, kh, kw, stride, padding)
CONV2D_CASES = [
    (2, 7, 6, 3, 4, 3, 2, 1, "valid"),
    (2, 7, 6, 3, 4, 3, 3, 1, "same"),
    (1, 9, 8, 2, 3, 3, 3, 2, "same"),
    (2, 8, 9, 2, 3, 4, 2, (3, 2), ((1, 2), (0, 3))),
    (1, 6, 6, 1, 1, 3, 3, 1, "same"),            # doc 001 §4.4's geometry
    (2, 5, 7, 3, 2, 2, 3, (2, 1), 1),            # int padding
    (1, 10, 10, 1, 5, 7, 7, 1, "valid"),         # the OOD CNN's first layer, smaller
    (3, 5, 5, 4, 2, 1, 1, 2, "valid"),           # 1×1 kernel, strided
    (1, 8, 8, 2, 2, 3, 3, 3, "valid"),           # stride leaves the last row/col uncovered
]

# (N, L, C_in, C_out, k, stride, padding)
CONV1D_CASES = [
    (2, 3, 1, 1, 2, 1, "valid"),                 # the mini CNN's shape
    (2, 9, 2, 3, 3, 1, "same"),
    (3, 10, 3, 2, 4, 1, "valid"),
    (2, 11, 2, 2, 3, 2, (2, 1)),
    (1, 6, 1, 4, 5, 1, "same"),
]

# (N, H, W, C, window, stride, padding)
POOL_CASES = [
    (2, 6, 6, 3, 2, None, "valid"),
    (2, 7, 5, 2, 2, None, "valid"),              # odd sizes drop the last row/col
    (1, 7, 7, 2, 3, 2, "valid"),                 # overlapping windows
    (2, 6, 8, 1, (2, 3), (1, 2), "valid"),
    (1, 5, 5, 2, 2, 2, "same"),                  # −∞ padding
]


def _lax_padding(padding):
    if isinstance(padding, str):
        return padding.upper()
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return padding


def _stride2(s):
    return (s, s) if isinstance(s, int) else s


def randn(seed, shape, dtype=jnp.float64):
    """Test inputs from NumPy's generator (no per-shape XLA compilation as jax.random would need)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _case_arrays(seed, N, H, W, cin, cout, kh, kw):
    x = randn(seed, (N, H, W, cin))
    params = {"W": randn(seed + 1, (kh, kw, cin, cout)), "b": randn(seed + 2, (cout,))}
    return x, params


def fd_grad(f, *args, eps=1e-6):
    """Central differences of scalar f(*args) w.r.t. every entry of every arg, vectorised with
    vmap (traceable, so a test compiles hand, autodiff and numeric gradients in one jit)."""
    flat, unravel = ravel_pytree(args)
    E = eps * jnp.eye(flat.size, dtype=flat.dtype)
    diffs = jax.vmap(lambda e: f(*unravel(flat + e)) - f(*unravel(flat - e)))(E)
    return unravel(diffs / (2 * eps))


# ----------------------------------------------------------------------------- conv2d

@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
def test_conv2d_forward_vs_lax_backward_vs_autodiff_and_fd(x64, case):
    N, H, W, cin, cout, kh, kw, s, pad = case
    x, params = _case_arrays(1, N, H, W, cin, cout, kh, kw)

    def ref_fwd(p, x):
        return lax.conv_general_dilated(x, p["W"], _stride2(s), _lax_padding(pad),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"]

    R = randn(4, jax.eval_shape(ref_fwd, params, x).shape)

    # a non-linear scalar of the output, so the check exercises more than a linear functional
    def f(p, x):
        return jnp.sum(jnp.sin(conv.conv2d_forward(p, x, s, pad)[0]) * R)

    @jax.jit
    def run(p, x):
        y, cache = conv.conv2d_forward(p, x, s, pad)
        hand = conv.conv2d_backward(cache, jnp.cos(y) * R)
        auto = jax.grad(lambda p, x: jnp.sum(jnp.sin(ref_fwd(p, x)) * R), argnums=(0, 1))(p, x)
        return y, ref_fwd(p, x), hand, auto, fd_grad(f, p, x)

    y, ref, hand, auto, fd = run(params, x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gradcheck.compare(hand, auto, "jax.grad(lax.conv_general_dilated)", AUTODIFF_TOL)
    gradcheck.compare(hand, fd, "central differences", FD_TOL)


# (N, Hp, Wp, C, window, strides): padded input geometry of _gather_windows
GATHER_CASES = [(3, 28, 28, 1, (7, 7), (1, 1)),       # the OOD CNN's first conv
                (2, 11, 11, 4, (2, 2), (1, 1)),       # its second conv (fewer channels)
                (2, 9, 8, 2, (3, 3), (2, 2)),
                (1, 10, 11, 3, (4, 2), (3, 2)),       # stride leaves rows/cols unread
                (2, 6, 6, 2, (1, 1), (2, 1)),
                (2, 6, 7, 8, (2, 3), (1, 2))]         # ≥ _FEW_CHANNELS: the one-stack branch


@pytest.mark.parametrize("case", GATHER_CASES, ids=str)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gather_windows_is_the_one_stack_of_window_slices(x64, case, dtype):
    """im2col, both branches (few channels: stacks on major axes + a transpose; else one stack),
    holds exactly (bit for bit, float32 and float64, with −0.0, ±∞ and NaN entries) what one
    stack of the kh·kw strided window slices holds: [n, p, q, i·kw + j, c] = x[n, p·sh + i, q·sw + j, c]."""
    N, Hp, Wp, C, (kh, kw), (sh, sw) = case
    x = np.random.default_rng(0).standard_normal((N, Hp, Wp, C))
    x.flat[:4] = [-0.0, np.inf, -np.inf, np.nan]
    x = jnp.asarray(x, dtype)
    out_hw = ((Hp - kh) // sh + 1, (Wp - kw) // sw + 1)
    got = jax.jit(conv._gather_windows, static_argnums=(1, 2, 3))(x, (kh, kw), (sh, sw), out_hw)
    want = jnp.stack([conv._window_slice(x, i, j, (sh, sw), out_hw) for i in range(kh) for j in range(kw)],
                     axis=3)
    assert got.dtype == dtype and got.shape == want.shape == (N, *out_hw, kh * kw, C)
    assert jnp.array_equal(got, want, equal_nan=True)
    assert jnp.array_equal(jnp.signbit(got), jnp.signbit(want))


def test_conv2d_layer_relu_kink_gets_zero_gradient(x64):
    """At a ReLU kink (pre-activation exactly 0) the derivative is 0 (doc 001's rule)."""
    layer = conv.conv2d(2, 3, padding="same", activation="relu")
    params = {"W": jnp.zeros((3, 3, 1, 2), jnp.float64), "b": jnp.zeros((2,), jnp.float64)}
    x = randn(1, (2, 5, 5, 1))                              # every pre-activation is exactly 0

    @jax.jit
    def run(params, x):
        y, cache = layer.forward(params, x)
        return layer.backward(cache, jnp.ones_like(y))

    dp, dx = run(params, x)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves((dp, dx)))


@pytest.mark.parametrize("case", [CONV2D_CASES[1], CONV2D_CASES[3]], ids=str)
def test_conv2d_layer_in_a_model(x64, case):
    """conv2d Layer (init shapes, fused tanh) inside a model: hand backprop vs jax.grad and FD."""
    N, H, W, cin, cout, kh, kw, s, pad = case
    model = models.sequential(L.serial(conv.conv2d(cout, (kh, kw), s, pad, "tanh", "normal", std=0.5),
                                       conv.flatten(), L.dense(3)),
                              "softmax_cross_entropy", (H, W, cin))
    params = model.init(jax.random.key(2), jnp.float64)
    x = randn(3, (N, H, W, cin))
    y = jnp.asarray(np.random.default_rng(4).integers(0, 3, N))
    run = jax.jit(lambda p: (model.backprop(p, x, y, 0.01)[1], model.grad_autodiff(p, x, y, 0.01)[1],
                             fd_grad(lambda p: model.loss(p, x, y, 0.01), p)[0]))
    hand, auto, fd = run(params)
    gradcheck.compare(hand, auto, "jax.grad", AUTODIFF_TOL)
    gradcheck.compare(hand, fd, "central differences", FD_TOL)


def test_conv2d_shape_errors():
    layer = conv.conv2d(4, 3)
    with pytest.raises(ValueError, match="input shape"):
        layer.init(jax.random.key(0), (28, 28))
    with pytest.raises(ValueError, match="does not fit"):
        layer.init(jax.random.key(0), (2, 2, 1))
    _, p = layer.init(jax.random.key(0), (8, 8, 2))
    with pytest.raises(ValueError, match="input channels"):
        layer.forward(p, jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="padding"):
        conv.conv2d(4, 3, padding="full")


def test_conv2d_same_padding_keeps_size_and_layer_shapes():
    out, p = conv.conv2d(5, 3, 1, "same").init(jax.random.key(0), (6, 6, 2))
    assert out == (6, 6, 5) and p["W"].shape == (3, 3, 2, 5) and p["b"].shape == (5,)
    out, _ = conv.conv2d(5, 3, 2, "same").init(jax.random.key(0), (7, 7, 2))
    assert out == (4, 4, 5)
    out, _ = conv.conv2d(5, (3, 2), (2, 1), ((1, 0), (2, 2))).init(jax.random.key(0), (7, 7, 2))
    assert out == (3, 10, 5)


# ----------------------------------------------------------------------------- conv1d

@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d_forward_and_backward(x64, case):
    N, Ln, cin, cout, k, s, pad = case
    x = randn(5, (N, Ln, cin))
    params = {"W": randn(6, (k, cin, cout)), "b": randn(7, (cout,))}
    lax_pad = pad.upper() if isinstance(pad, str) else (pad,)

    def ref_fwd(p, x):
        return lax.conv_general_dilated(x, p["W"], (s,), lax_pad,
                                        dimension_numbers=("NWC", "WIO", "NWC")) + p["b"]

    R = randn(4, jax.eval_shape(ref_fwd, params, x).shape)

    @jax.jit
    def run(p, x):
        y, cache = conv.conv1d_forward(p, x, s, pad)
        hand = conv.conv1d_backward(cache, jnp.cos(y) * R)
        auto = jax.grad(lambda p, x: jnp.sum(jnp.sin(ref_fwd(p, x)) * R), argnums=(0, 1))(p, x)
        fd = fd_grad(lambda p, x: jnp.sum(jnp.sin(conv.conv1d_forward(p, x, s, pad)[0]) * R), p, x)
        return y, ref_fwd(p, x), hand, auto, fd

    y, ref, hand, auto, fd = run(params, x)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gradcheck.compare(hand, auto, "jax.grad", AUTODIFF_TOL)
    gradcheck.compare(hand, fd, "central differences", FD_TOL)
    out_shape, p0 = conv.conv1d(cout, k, s, pad).init(jax.random.key(0), (Ln, cin))
    assert out_shape == y.shape[1:] and p0["W"].shape == (k, cin, cout)


# ----------------------------------------------------------------------------- maxpool2d

def _pool_ref(x, window, stride, padding):
    win = conv._pair(window, "w")
    st = win if stride is None else conv._pair(stride, "s")
    pads = conv.resolve_padding(padding, x.shape[1:3], win, st)
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, *win, 1), (1, *st, 1),
                             ((0, 0), *pads, (0, 0)))


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool2d_vs_reduce_window(x64, case):
    """Continuous random inputs have no ties (checked), so every gradient is unambiguous."""
    N, H, W, C, window, stride, pad = case
    x = randn(6, (N, H, W, C))
    assert len(np.unique(np.asarray(x))) == x.size                       # no ties anywhere
    R = randn(7, jax.eval_shape(lambda x: _pool_ref(x, window, stride, pad), x).shape)

    @jax.jit
    def run(x):
        y, cache = conv.maxpool2d_forward(x, window, stride, pad)
        hand = conv.maxpool2d_backward(cache, R)
        auto = jax.grad(lambda x: jnp.sum(_pool_ref(x, window, stride, pad) * R))(x)
        fd = fd_grad(lambda x: jnp.sum(conv.maxpool2d_forward(x, window, stride, pad)[0] * R), x)[0]
        return y, _pool_ref(x, window, stride, pad), hand, auto, fd

    y, ref, dx, auto, fd = run(x)
    np.testing.assert_array_equal(y, ref)
    gradcheck.compare(dx, auto, "jax.grad(reduce_window)", AUTODIFF_TOL)
    gradcheck.compare(dx, fd, "central differences", FD_TOL)
    out_shape, p = conv.maxpool2d(window, stride, pad).init(None, (H, W, C))
    assert out_shape == y.shape[1:] and p == {}


def test_maxpool2d_tie_rule_first_maximum_in_row_major_order(x64):
    """Tie rule: the gradient goes to the first maximum of the window in row-major order."""
    x = jnp.array([[3.0, 1.0, 5.0, 5.0],
                   [3.0, 2.0, 5.0, 5.0],
                   [0.0, 4.0, 1.0, 1.0],
                   [4.0, 4.0, 1.0, 1.0]], jnp.float64)[None, :, :, None]
    dy = jnp.array([[10.0, 20.0], [30.0, 40.0]], jnp.float64)[None, :, :, None]

    @jax.jit
    def run(x, dy):
        y, cache = conv.maxpool2d_forward(x, 2)
        auto = jax.vjp(lambda x: conv.maxpool2d_forward(x, 2)[0], x)[1](dy)[0]
        return y, conv.maxpool2d_backward(cache, dy), auto

    y, dx, auto = run(x, dy)
    np.testing.assert_array_equal(y[0, :, :, 0], [[3.0, 5.0], [4.0, 1.0]])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[10, 0, 20, 0],
                                                  [0, 0, 0, 0],
                                                  [0, 30, 40, 0],
                                                  [0, 0, 0, 0]])
    # jax.grad of the forward routes ties the same way (jnp.maximum alone would split them)
    np.testing.assert_array_equal(auto, dx)


# values a window can hold: ties, ±inf, signed zeros, NaN
PICK_VALUES = [-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf, np.nan]


def test_window_reducer_is_order_free_and_picks_the_first_maximum():
    """XLA may combine a reduction's pairs in any order, so the pool's (value, index) reducer must
    be commutative and associative, every triple of pairs tried exhaustively (distinct indices),
    and keep what jnp.argmax keeps: the largest value, a NaN before any number, of equals the
    smaller index. float64 inputs, exact comparisons."""
    pick = jax.jit(jax.vmap(conv._first_max_pick))
    vals = np.array(PICK_VALUES, np.float64)
    trip = np.array([(a, b, c) for a in range(len(vals)) for b in range(len(vals)) for c in range(len(vals))])
    with jax.enable_x64(True):
        for ia, ib, ic in [(0, 1, 2), (2, 0, 1), (1, 2, 0)]:
            A = (jnp.asarray(vals[trip[:, 0]]), jnp.full(len(trip), ia, jnp.int32))
            B = (jnp.asarray(vals[trip[:, 1]]), jnp.full(len(trip), ib, jnp.int32))
            C = (jnp.asarray(vals[trip[:, 2]]), jnp.full(len(trip), ic, jnp.int32))
            for u, v in [(pick(A, B), pick(B, A)), (pick(pick(A, B), C), pick(A, pick(B, C)))]:
                _same_bits(u[0], v[0])
                np.testing.assert_array_equal(u[1], v[1])
            stacked = jnp.stack([A[0], B[0], C[0]])[jnp.argsort(jnp.array([ia, ib, ic]))]
            y, arg = pick(pick(A, B), C)
            np.testing.assert_array_equal(arg, jnp.argmax(stacked, axis=0))
            _same_bits(y, jnp.maximum(jnp.maximum(stacked[0], stacked[1]), stacked[2]))


def _same_bits(a, b):
    """Equal entries, NaN where NaN, and the same sign of every zero."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a) | np.isnan(a), np.signbit(b) | np.isnan(b))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_window_max_arg_equals_max_and_argmax_with_ties_and_nan(dtype):
    """_window_max_arg (one reduction) against the elementwise maxima of the views (the old
    forward: same values, a −0/+0 tie giving +0) and jnp.argmax on stacked views drawn from
    PICK_VALUES (ties, ±0, ±inf, NaN in most windows), jitted and under vmap."""
    with jax.enable_x64(dtype == jnp.float64):
        s = jnp.asarray(np.random.default_rng(5).choice(np.array(PICK_VALUES), (4, 3, 5, 6, 2)), dtype)
        y, arg = jax.jit(conv._window_max_arg)(s)
        _same_bits(y, jax.jit(lambda s: functools.reduce(jnp.maximum, list(s)))(s))
        np.testing.assert_array_equal(arg, jnp.argmax(s, axis=0))
        yv, argv = jax.vmap(conv._window_max_arg, in_axes=1, out_axes=0)(s)
        _same_bits(yv, y)
        np.testing.assert_array_equal(argv, arg)
        z = jnp.asarray([[-0.0], [0.0], [-1.0], [-1.0]], dtype)      # a window of signed zeros
        assert not np.signbit(np.asarray(conv._window_max_arg(z)[0]))[0]


def test_pool_second_derivative_matches_reduce_window(x64):
    """The custom JVP is itself differentiable: a Hessian-vector product of a loss through the
    pool equals the one through lax.reduce_window (tie-free float64 input, 1e-10)."""
    x = randn(11, (2, 6, 6, 3))
    R, v = randn(12, (2, 3, 3, 3)), randn(13, x.shape)
    f_pool = lambda x: jnp.sum(jnp.sin(conv.maxpool2d_forward(x, 2)[0]) * R)   # noqa: E731
    f_ref = lambda x: jnp.sum(jnp.sin(_pool_ref(x, 2, None, "valid")) * R)    # noqa: E731
    hvp = lambda f: jax.jvp(jax.grad(f), (x,), (v,))[1]                        # noqa: E731
    gradcheck.compare(jax.jit(lambda: hvp(f_pool))(), jax.jit(lambda: hvp(f_ref))(), "reduce_window HVP",
                      AUTODIFF_TOL)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_col2im_adds_in_the_input_dtype_in_window_order(dtype):
    """col2im's reduction equals the left-to-right chain of the kh·kw pads added in d's dtype,
    bit for bit (on XLA:CPU), for overlapping 3×3 windows (up to 9 terms per entry)."""
    d = jnp.asarray(np.random.default_rng(8).standard_normal((2, 4, 4, 9, 3)), dtype)

    def chain(d):
        zero, out = jnp.zeros((), d.dtype), None
        for i in range(3):
            for j in range(3):
                t = lax.pad(d[:, :, :, i * 3 + j, :], zero, ((0, 0, 0), (i, 2 - i, 0), (j, 2 - j, 0), (0, 0, 0)))
                out = t if out is None else out + t
        return out

    got = jax.jit(lambda d: conv._gather_windows_adjoint(d, (6, 6), (3, 3), (1, 1)))(d)
    assert got.dtype == dtype
    _same_bits(got.astype(jnp.float32), jax.jit(chain)(d).astype(jnp.float32))


# (window, stride, padding): non-overlapping, overlapping, 'same' (−∞ padding)
TIE_CASES = [(2, None, "valid"), ((2, 3), (2, 3), "valid"), (2, 1, "valid"), (3, 2, "valid"), (2, 2, "same")]


@pytest.mark.parametrize("window,stride,pad", TIE_CASES, ids=str)
def test_maxpool2d_autodiff_follows_the_tie_rule(x64, window, stride, pad):
    """Inputs made of few distinct values (ties in most windows, as ReLU outputs of real images
    have): the hand rule equals jax.vjp of the forward (float64 tolerance), and the values equal
    lax.reduce_window's."""
    x = jnp.asarray(np.random.default_rng(3).integers(0, 3, (2, 7, 7, 2)), jnp.float64)
    dy_shape = jax.eval_shape(lambda x: conv.maxpool2d_forward(x, window, stride, pad)[0], x).shape
    dy = randn(4, dy_shape)

    @jax.jit
    def run(x, dy):
        y, cache = conv.maxpool2d_forward(x, window, stride, pad)
        auto = jax.vjp(lambda x: conv.maxpool2d_forward(x, window, stride, pad)[0], x)[1](dy)[0]
        return y, conv.maxpool2d_backward(cache, dy), auto

    y, hand, auto = run(x, dy)
    np.testing.assert_array_equal(y, _pool_ref(x, window, stride, pad))
    gradcheck.compare(hand, auto, "jax.vjp", AUTODIFF_TOL)   # overlaps add in another order


@pytest.mark.parametrize("make,in_shape", [(lambda b: conv.conv2d(3, 2, 1, "same", "relu", bias=b), (5, 5, 2)),
                                           (lambda b: conv.conv1d(3, 2, 1, "valid", "tanh", bias=b), (6, 2))])
def test_conv_layer_without_bias(x64, make, in_shape):
    """bias=False: params {"W"} only, decay {"W": True}; the forward equals the biased layer's
    at b = 0 and the hand backward equals jax.vjp."""
    layer, biased = make(False), make(True)
    _, p = layer.init(jax.random.key(0), in_shape, jnp.float64)
    assert set(p) == {"W"} and layer.decay(p) == {"W": True}
    assert biased.decay({"W": 0, "b": 0}) == {"W": True, "b": False}
    x = randn(1, (2,) + in_shape)
    y, cache = layer.forward(p, x)
    y0, _ = biased.forward({**p, "b": jnp.zeros(3, jnp.float64)}, x)
    np.testing.assert_array_equal(y, y0)
    dy = randn(2, y.shape)
    hand = layer.backward(cache, dy)
    auto = jax.vjp(lambda p, x: layer.forward(p, x)[0], p, x)[1](dy)
    gradcheck.compare(hand, auto, "jax.vjp", AUTODIFF_TOL)


def test_maxpool2d_overlapping_windows_add_up(x64):
    x = jnp.array([[0.0, 1.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]], jnp.float64)[None, :, :, None]
    @jax.jit
    def run(x):
        y, cache = conv.maxpool2d_forward(x, 2, 1)
        return y, conv.maxpool2d_backward(cache, jnp.ones_like(y))

    y, dx = run(x)
    assert np.all(np.asarray(y) == 9.0)                                  # 9 wins all four windows
    assert float(dx[0, 1, 1, 0]) == 4.0 and float(jnp.sum(dx)) == 4.0


# ----------------------------------------------------------------------------- flatten

def test_flatten_roundtrip():
    x = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 3, 4, 5)
    layer = conv.flatten()
    out_shape, p = layer.init(None, (3, 4, 5))
    y, cache = layer.forward(p, x)
    assert out_shape == (60,) and y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], np.asarray(x[1]).reshape(-1))   # row-major h, w, c
    dp, dx = layer.backward(cache, y)  # reshapes only
    assert dp == {} and dx.shape == x.shape
    np.testing.assert_array_equal(dx, x)


def test_float32_path_runs_under_jit():
    """No implicit float32/float64 mixing (strict promotion in conftest) and jit-compatible."""
    model = models.sequential(L.serial(conv.conv2d(3, 3, 1, "same", "relu"), conv.maxpool2d(2),
                                       conv.flatten(), L.dense(2)), "softmax_cross_entropy", (6, 6, 1))
    params = model.init(jax.random.key(0))
    x = randn(1, (4, 6, 6, 1), jnp.float32)
    value, g = jax.jit(model.backprop)(params, x, jnp.array([0, 1, 1, 0]))
    assert value.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in jax.tree.leaves(g))
