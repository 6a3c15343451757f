"""The gradient checker: it never passes a non-finite, never fails a correct rule, and says what a
wrong rule looks like (doc 001 appendix, doc 003 §3.1.5, doc 004 §1.5.3).

Every check runs in float64 (``x64`` fixture / ``check_layer`` itself) with the checker's float64
defaults (1e-10 against autodiff, 1e-6 against central differences with eps 1e-5).

The planted-bug table (layer × bug class → the first line of the error) prints with
``python tests/test_gradcheck.py``.
"""
from __future__ import annotations

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from jaxnets import data, gradcheck, models
from jaxnets.errors import GradientCheckError
from jaxnets.models import cnn
from jaxnets.nn import attention as A
from jaxnets.nn import conv
from jaxnets.nn import layers as L

F64 = jnp.float64


# ============================================================================ layers under test
# The library's Layers at chosen params and inputs (ReLU inputs at the kink, tied maxima); the
# planted bugs below wrap each Layer's backward and keep its init and forward.

def _layer(forward, backward):
    """A test-only Layer (no init: the tests give params)."""
    return L.Layer(init=None, forward=forward, backward=backward)


def _post(layer, fn):
    """The layer with ``fn`` applied to its hand-written (dparams, dx): a planted bug."""
    return layer._replace(backward=lambda c, dy: fn(*layer.backward(c, dy)))


def _normal(seed, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, F64)


def dense_case():
    """x (4, 5) with a zero row and b = 0: a ReLU input sits exactly at its kink."""
    x = _normal(0, (4, 5)).at[0].set(0.0)
    params = {"W": _normal(1, (5, 4)), "b": jnp.zeros(4, F64)}
    return L.dense(4, "relu"), x, params


def conv_case():
    """x (3, 5, 5, 4), kernel (2, 2, 4, 4), b = 0, the first image 0: kinks in every channel."""
    x = _normal(2, (3, 5, 5, 4)).at[0].set(0.0)
    params = {"W": _normal(3, (2, 2, 4, 4), 0.5), "b": jnp.zeros(4, F64)}
    return conv.conv2d(4, 2, 1, "valid", "relu"), x, params


def pool_case():
    """x (3, 4, 4, 2) continuous (no ties) for every bug but the kinks one."""
    return conv.maxpool2d(2), _normal(4, (3, 4, 4, 2)), {}


def layer_norm_case():
    params = {"g": 1 + _normal(5, (4,), 0.1), "b": _normal(6, (4,), 0.1)}
    return A.layer_norm(), _normal(7, (3, 4, 4)), params


def attention_case():
    params = {"Wq": _normal(8, (4, 4), 0.5), "Wk": _normal(9, (4, 4), 0.5), "Wv": _normal(10, (4, 4), 0.5),
              "proj": {"W": _normal(11, (4, 4), 0.5), "b": _normal(12, (4,), 0.1)}}
    return A.multi_head_attention(2), _normal(13, (3, 4, 4)), params


CASES = {"dense": dense_case, "conv2d": conv_case, "max-pool": pool_case,
         "layer norm": layer_norm_case, "attention": attention_case}


# ============================================================================ planted bugs

def _map(d, key, fn):
    """d with d[key] (a path of keys) replaced by fn(d[key])."""
    if isinstance(key, str):
        key = (key,)
    out = dict(d)
    out[key[0]] = fn(d[key[0]]) if len(key) == 1 else _map(d[key[0]], key[1:], fn)
    return out


def _drop(d, key):
    return {k: v for k, v in d.items() if k != key}


def _last_max_pool(layer):
    """Tie bug: the gradient goes to the *last* maximum of a window. The library's rule runs on the
    input flipped in H and W (which reverses the row-major window order, so its first maximum is
    the last one), and dx is flipped back; the bug needs x, so the forward's cache is x."""
    def forward(p, x, key=None):
        return layer.forward(p, x)[0], x

    def backward(x, dy):
        _, cache = layer.forward({}, jnp.flip(x, (1, 2)))
        _, dx = layer.backward(cache, jnp.flip(dy, (1, 2)))
        return {}, jnp.flip(dx, (1, 2))
    return layer._replace(forward=forward, backward=backward)


def _pool_ties():
    """x (3, 4, 4, 2) where every window's maximum is tied (two entries share it)."""
    x = _normal(14, (3, 4, 4, 2))
    return x.at[:, 1::2, 1::2, :].set(x[:, 0::2, 0::2, :] + 5.0).at[:, 0::2, 1::2, :].set(x[:, 0::2, 0::2, :] + 5.0)


# A fused ReLU layer's cache is (the core's cache, the pre-activation a) (layers._fuse_activation),
# and its rule passes dy where a > 0: a planted ReLU bug edits the a the library's rule sees.

def _kink_relu(layer):
    """ReLU′(0) = 1: a = 0 read as positive, disagreeing with jax.nn.relu at the kink only."""
    return layer._replace(backward=lambda c, dy: layer.backward((c[0], jnp.where(c[1] == 0, 1.0, c[1])), dy))


def _no_relu_derivative(layer):
    """The activation's derivative left out: dy reaches the dense/conv rule unmasked."""
    return layer._replace(backward=lambda c, dy: layer.backward((c[0], jnp.ones_like(c[1])), dy))


N = {"dense": 4, "conv2d": 3, "max-pool": 3, "layer norm": 3, "attention": 3}
# layer -> (parameter key the factor/transposed/zeros/non-finite/axis bugs go to, or None for dx)
TARGET = {"dense": "W", "conv2d": "W", "max-pool": None, "layer norm": "g", "attention": ("proj", "W")}
BIAS = {"dense": "b", "conv2d": "b", "layer norm": "b", "attention": ("proj", "b")}
AXES = {"dense": (1,), "conv2d": (0, 1, 3), "layer norm": (0, 2), "attention": (0, 2)}


def _on(name, fn):
    """Apply fn to the layer's target gradient (a parameter, or dx for max-pool)."""
    key = TARGET[name]
    return (lambda p, dx: (p, fn(dx))) if key is None else (lambda p, dx: (_map(p, key, fn), dx))


def _transpose(g):
    return jnp.swapaxes(g, 2, 3) if g.ndim == 4 else jnp.swapaxes(g, -1, -2) if g.ndim == 3 else g.T


def _plants(name):
    """bug class -> (bad layer, x or None for the case's x). Classes a layer cannot have
    (no activation, no bias, no kink) are left out."""
    layer, x, params = CASES[name]()
    n = N[name]
    out = {
        "transposed": _post(layer, (lambda p, dx: (p, jnp.swapaxes(dx, 1, 2))) if name in ("max-pool", "layer norm")
                            else _on(name, _transpose)),
        "a missing or extra 1/N": _post(layer, _on(name, lambda g: g * n)),
        # a halved layer gradient: a constant factor (a layer check has no loss to blame a ½ on)
        "constant factor": _post(layer, _on(name, lambda g: g / 2)),
        "sign flipped": _post(layer, _on(name, lambda g: -g)),
        "non-finite": _post(layer, _on(name, lambda g: g.reshape(-1).at[3].set(jnp.nan).reshape(g.shape))),
        "all zeros": _post(layer, _on(name, jnp.zeros_like)),
        "shape mismatch": _post(layer, lambda p, dx: (p, dx.reshape(-1))),
    }
    out = {k: (v, None) for k, v in out.items()}
    if params:
        first = next(iter(params))
        out["structure mismatch"] = (_post(layer, lambda p, dx: (_drop(p, first), dx)), None)
    if name in BIAS:
        out["wrong axis"] = (_wrong_axis_layer(name, layer), None)
    if name in ("dense", "conv2d"):
        out["only at kinks"] = (_kink_relu(layer), None)
        out["missing activation derivative"] = (_no_relu_derivative(layer), None)
    if name == "max-pool":
        out["only at kinks"] = (_last_max_pool(layer), _pool_ties())
    return layer, x, params, out


def _wrong_axis_layer(name, layer):
    """The bias gradient is Σ dy over the axes AXES[name] instead of every axis but the last
    (the shapes are chosen so both give the bias's shape). dense and conv2d sum the ReLU's
    output cotangent, as their rule does."""
    def backward(cache, dy):
        p, dx = layer.backward(cache, dy)
        da = L.relu_backward(cache[1], dy) if name in ("dense", "conv2d") else dy
        return _map(p, BIAS[name], lambda g: jnp.sum(da, axis=AXES[name])), dx
    return layer._replace(backward=backward)


with jax.enable_x64(True):
    PLANTED = [(name, bug) for name in CASES for bug in _plants(name)[3]]


def _first_line(name, bug):
    layer, x, params, plants = _plants(name)
    bad, x_bug = plants[bug]
    try:
        gradcheck.check_layer(bad, x if x_bug is None else x_bug, params)
    except GradientCheckError as e:
        return str(e).splitlines()[0]
    return "PASSED (no error)"


@pytest.mark.parametrize("name,bug", PLANTED)
def test_planted_bug_is_named(x64, name, bug):
    line = _first_line(name, bug)
    assert bug in line, line
    others = [d for d in gradcheck.DIAGNOSES if d != bug and d in line]
    assert not others, f"{line!r} also names {others}"


@pytest.mark.parametrize("name", list(CASES))
def test_correct_rule_passes_and_gets_no_diagnosis(x64, name):
    layer, x, params = CASES[name]()
    report = gradcheck.check_layer(layer, x, params)
    assert max(report.autodiff.values()) < 1e-10 and max(report.numeric.values()) < 1e-6, report
    assert set(report.autodiff) == set(report.numeric) and "dx" in report.autodiff
    assert "vs jax.vjp" in str(report)
    if name in ("dense", "conv2d"):   # the zero rows put ReLU inputs at the kink: accepted there
        assert report.kinks, report


# ============================================================================ the three breakages

# (which side, value): a NaN or ±Inf on either side fails, naming the parameter and the index
NONFINITE = [("hand", np.nan), ("hand", np.inf), ("other", np.nan), ("other", -np.inf)]


@pytest.mark.parametrize("side,value", NONFINITE)
def test_compare_fails_on_nonfinite(x64, side, value):
    g = [{"W": _normal(0, (3, 2)), "b": _normal(1, (2,))}]
    bad = [{"W": g[0]["W"].at[2, 1].set(value), "b": g[0]["b"]}]
    hand, other = (bad, g) if side == "hand" else (g, bad)
    with pytest.raises(GradientCheckError, match=r"params\[0\]\['W'\] non-finite") as e:
        gradcheck.compare(hand, other)
    assert "[2, 1]" in str(e.value)


# activation, the first gradient the message names non-finite: ReLU's rule passes dy where x > 0,
# which is False at a NaN pre-activation, so the first layer's hand gradient is 0 there
NAN_EVERYWHERE = [("tanh", "params[0]['W'] non-finite"), ("relu", "params[1]['W'] non-finite")]


@pytest.mark.parametrize("act,named", NAN_EVERYWHERE)
def test_check_model_fails_when_the_loss_is_nan_everywhere(x64, act, named):
    net = models.mlp([3, 4, 2], act, "softmax_cross_entropy")
    params = jax.tree.map(lambda v: jnp.full_like(v, jnp.nan), net.init(jax.random.key(0), F64))
    with pytest.raises(GradientCheckError, match="non-finite loss") as e:
        gradcheck.check_model(net, params, _normal(1, (5, 3)), jnp.arange(5) % 2)
    assert named in str(e.value)


def test_check_model_says_default_not_given(x64):
    net = models.mlp([3, 2], "identity", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), F64)

    def backprop(p, x, y, l2=0.0, mask=None, key=None):
        loss, g = net.backprop(p, x, y, l2, mask, key)
        return loss, [{"W": -g[0]["W"], "b": g[0]["b"]}]
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_model(net._replace(backprop=backprop), params, _normal(1, (4, 3)), jnp.arange(4) % 2)
    msg = str(e.value)
    assert "float64 default" in msg and "given" not in msg and "sign flipped" in msg.splitlines()[0]


def test_cnn2_hand_equals_autodiff_on_real_fashion_mnist(x64):
    """doc 003's 2-layer CNN at its default init, float64, 8 real Fashion-MNIST images: zero
    biases and zero pixels put many ReLU inputs exactly at 0, where the hand rule's ReLU′(0) = 0
    must be the forward's convention too."""
    raw = data.load("fashion_mnist")
    x = jnp.asarray(raw.x_train[:8, :, :, None], F64) / 255.0
    y = jnp.asarray(raw.y_train[:8])
    net = cnn.cnn2()
    params = net.init(jax.random.key(0), F64)
    _, hand = net.backprop(params, x, y)
    _, auto = net.grad_autodiff(params, x, y)
    errors = gradcheck.compare(hand, auto, batch_size=8, f=lambda p: net.loss(p, x, y), params=params)
    assert max(errors.values()) < 1e-10


# ============================================================================ compare / check_model

def test_compare_failure_names_param_index_and_sides(x64):
    net = models.mlp([3, 2], "identity", "mse")
    params = net.init(jax.random.key(0), F64)
    _, g = net.backprop(params, jnp.ones((2, 3), F64), jnp.zeros((2, 2), F64))
    bad = [{"W": g[0]["W"].at[1, 0].add(1.0), "b": g[0]["b"]}]
    with pytest.raises(GradientCheckError, match=r"\[0\]\['W'\]\[1, 0\].*hand=.*jax.grad="):
        gradcheck.compare(bad, g)


# dtype, default element-wise and norm-wise tolerances compare must pick (and name)
DEFAULT_TOL_CASES = [("float64", 1e-10, 1e-10), ("float32", 1e-2, 1e-5)]


@pytest.mark.parametrize("dtype,tol,norm", DEFAULT_TOL_CASES)
def test_compare_default_tolerance_follows_the_dtype(dtype, tol, norm):
    with jax.enable_x64(dtype == "float64"):
        g = {"W": jnp.asarray([[1.0, 2e-3], [0.5, -1.0]], dtype)}
        near = {"W": g["W"] * (1 + norm / 4)}        # rel. error norm/8: within both defaults
        far = {"W": g["W"].at[0, 0].multiply(1 + 8 * tol)}   # rel. error ≈ 4·tol: beyond it
        scaled = {"W": g["W"] * (1 + 8 * norm)}     # the whole leaf: norm-wise ≈ 4·norm
        res = gradcheck.compare(g, near)
        assert res.tol == tol and res.tol_source == f"{dtype} default"
        assert 0 < res["['W']"] <= tol and f"{dtype} default" in repr(res)
        with pytest.raises(GradientCheckError, match=f"tolerance {tol:g}, {dtype} default"):
            gradcheck.compare(g, far)
        with pytest.raises(GradientCheckError, match=f"norm-wise relative error .* > {norm:g}"):
            gradcheck.compare(g, scaled)
        assert gradcheck.compare(g, far, tol=1.0).tol_source == "given"


def test_compare_structure_mismatch(x64):
    g = {"W": _normal(0, (2, 2)), "b": _normal(1, (2,))}
    with pytest.raises(GradientCheckError, match="structure mismatch.*"):
        gradcheck.compare({"W": g["W"]}, g)


def test_compare_names_the_batch_size(x64):
    g = {"W": _normal(0, (3, 4))}
    with pytest.raises(GradientCheckError, match="a missing or extra 1/N, the batch size N = 16"):
        gradcheck.compare({"W": g["W"] / 16}, g, batch_size=16)


def _normal_init(k, s, d):
    """A dense(4) init: W standard normal, b = 0 (so a zero input row sits at the ReLU kink)."""
    return (4,), {"W": jax.random.normal(k, (s[0], 4), d), "b": jnp.zeros(4, d)}


def test_compare_finds_a_convention_mismatch_at_kinks(x64):
    """A forward written with jnp.maximum (autodiff: ½ at a tie) and the hand rule's ReLU′(0) = 0:
    on inputs with zero rows they differ only at kinks, and compare says so given the loss."""
    relu_dense = L.dense(4, "relu")

    def forward(p, x, key=None):    # the library's rule and cache, the output through jnp.maximum
        _, cache = relu_dense.forward(p, x)
        return jnp.maximum(cache[1], 0.0), cache
    hidden = relu_dense._replace(forward=forward, init=_normal_init)
    net = models.sequential(L.serial(hidden, L.dense(2)), "softmax_cross_entropy", (3,))
    params = net.init(jax.random.key(0), F64)
    x, y = _normal(1, (5, 3)).at[0].set(0.0), jnp.arange(5) % 2
    _, hand = net.backprop(params, x, y)
    _, auto = net.grad_autodiff(params, x, y)
    with pytest.raises(GradientCheckError, match=r"params\[0\]\['b'\] only at kinks"):
        gradcheck.compare(hand, auto, f=lambda p: net.loss(p, x, y), params=params)
    with pytest.raises(GradientCheckError, match="no known pattern"):   # without f it cannot tell
        gradcheck.compare(hand, auto)


def test_check_model_accepts_kinks_and_skips_unsampled_entries(x64):
    """A ReLU input exactly at 0 (zero row, zero bias): central differences average the two
    sides there; the hand value (one side) is accepted and counted."""
    hidden = L.dense(4, "relu")._replace(init=_normal_init)
    net = models.sequential(L.serial(hidden, L.dense(2)), "softmax_cross_entropy", (3,))
    params = net.init(jax.random.key(0), F64)
    x = _normal(1, (5, 3)).at[0].set(0.0)
    y = jnp.arange(5) % 2
    report = gradcheck.check_model(net, params, x, y)
    assert report["kinks"], report
    assert report["tolerance_source"] == {"autodiff": "float64 default", "numeric": "float64 default"}
    sampled = gradcheck.check_model(net, params, x, y, n_samples=2, key=jax.random.key(3))
    assert set(sampled["numeric"]) == set(report["numeric"])


def test_numerical_grad_masks_unsampled_entries(x64):
    g = gradcheck.numerical_grad(lambda p: jnp.sum(p["W"] ** 2), {"W": _normal(0, (3, 3))},
                                 eps=1e-5, n_samples=4, key=jax.random.key(0))
    w = g["W"]
    assert isinstance(w, np.ma.MaskedArray) and int(w.count()) == 4
    assert np.all(np.isnan(np.ma.getdata(w)[np.ma.getmaskarray(w)]))


# leaf layouts a caller may hand over: C order, a transposed (Fortran-ordered) NumPy view, a jax array
LEAF_LAYOUTS = [("c_order", lambda a: np.ascontiguousarray(a)), ("transposed_view", lambda a: np.asfortranarray(a)),
                ("jax_array", lambda a: jnp.asarray(a))]


@pytest.mark.parametrize("layout,make", LEAF_LAYOUTS, ids=[n for n, _ in LEAF_LAYOUTS])
def test_numerical_grad_of_every_leaf_layout(x64, layout, make):
    """Central differences shift the entry they name whatever the leaf's memory layout: a
    Fortran-ordered leaf (doc 004's W = W1.T) once gave an all-zero numeric gradient (float64,
    eps 1e-5, rtol 1e-8)."""
    w = np.asarray(_normal(2, (3, 4)), np.float64)
    g = gradcheck.numerical_grad(lambda p: jnp.sum(jnp.sin(p["W"]) * jnp.arange(12.0).reshape(3, 4)),
                                 {"W": make(w)}, eps=1e-5)
    np.testing.assert_allclose(g["W"], np.cos(w) * np.arange(12.0).reshape(3, 4), rtol=1e-8, atol=1e-9)


# ============================================================================ check_layer

def test_check_layer_inits_params_and_traces_the_forward_a_bounded_number_of_times():
    """The central differences reuse one compiled function: the forward's Python body runs a
    fixed number of times whatever the number of entries (forward, jax.vjp, jit trace), once per
    set of params checked (init's, then with the zero bias moved off 0)."""
    layer = L.dense(6, "tanh")
    fwd = chex.assert_max_traces(layer.forward, n=6)
    report = gradcheck.check_layer(layer._replace(forward=fwd), np.ones((4, 5), np.float32) * 0.3)
    assert set(report.autodiff) == {"params['W']", "params['b']", "dx"}


def test_check_layer_holds_a_stochastic_layers_mask_fixed_with_fkey():
    """Dropout: with ``fkey`` the forward draws one mask, reused by every reference; the layer's
    rule scales by 1/(1 − p), which a dropped scale would miss by that constant factor."""
    x = jax.random.normal(jax.random.key(0), (4, 6))
    report = gradcheck.check_layer(L.dropout(0.25), x, fkey=jax.random.key(1))
    assert report.autodiff["dx"] < 1e-10 and report.numeric["dx"] < 1e-6
    unscaled = L.dropout(0.25)._replace(backward=lambda c, dy: ({}, jnp.where(c[0], dy, 0.0)))
    with pytest.raises(GradientCheckError, match=r"dx constant factor\n.*\n.*0\.75"):
        gradcheck.check_layer(unscaled, x, fkey=jax.random.key(1))


def test_check_layer_token_ids_get_no_dx(x64):
    layer = A.embedding(5, 4, 3)
    params = {"tok": _normal(0, (5, 3)), "pos": _normal(1, (4, 3))}
    report = gradcheck.check_layer(layer, jnp.asarray([[0, 4, 2], [1, 1, 3]]), params)
    assert set(report.autodiff) == {"params['pos']", "params['tok']"}


def test_check_layer_fails_on_a_nonfinite_forward():
    layer = _layer(lambda p, x, key=None: (jnp.log(x), x), lambda c, dy: ({}, dy / c))
    with pytest.raises(GradientCheckError, match=r"forward output non-finite: y\[0, 1\]"):
        gradcheck.check_layer(layer, jnp.asarray([[1.0, -1.0]]), {})


ACTS = ["identity", "sigmoid", "tanh", "relu"]


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["dense", "conv2d", "layer norm"]), act=st.sampled_from(ACTS),
       n=st.integers(1, 4), width=st.integers(1, 5), seed=st.integers(0, 2**16))
# layer norm over 2 features: x̂ = ±1, so dx ≈ 1e-7..1e-6 is the remainder of a cancellation and
# both references carry round-off of that order; a relative measure without a floor failed these
@example(kind="layer norm", act="identity", n=1, width=1, seed=82)
@example(kind="layer norm", act="identity", n=1, width=1, seed=473)
def test_random_correct_layers_pass(kind, act, n, width, seed):
    """Random correct layers on continuous inputs: never a failure, so never a diagnosis."""
    key = jax.random.key(seed)
    if kind == "dense":
        layer, x = L.dense(width, act), jax.random.normal(key, (n, 3))
    elif kind == "conv2d":
        layer, x = conv.conv2d(width, 2, 1, "same", act), jax.random.normal(key, (n, 4, 3, 2))
    else:
        x = jax.random.normal(key, (n, 2, width + 1))
        layer = A.layer_norm()._replace(init=lambda k, s, d: (s, {"g": 1 + 0.1 * jax.random.normal(k, s[-1:], d),
                                                          "b": jax.random.normal(k, s[-1:], d)}))
    gradcheck.check_layer(layer, x, key=jax.random.key(seed + 1))


# ============================================================================ hard cases
# Each found by an adversarial audit (2026-12-07) on the checker before these fixes: a correct
# rule that failed, or a wrong one that passed.

def _centering():
    """y = z − mean(z), z = x + c: y does not depend on the scalar c, so dc is exactly 0, while
    jax.vjp's dc is a sum of round-off (~1e-17)."""
    def forward(p, x, key=None):
        z = x + p["c"]
        return z - z.mean(-1, keepdims=True), None
    return _layer(forward, lambda _, dy: ({"c": jnp.zeros(1, F64)}, dy - dy.mean(-1, keepdims=True)))


def _near_kink_dense(gap):
    """dense ReLU with one pre-activation ``gap`` above 0 (inside the eps = 1e-5 step)."""
    x, W = _normal(0, (4, 5)), _normal(1, (5, 3))
    return L.dense(3, "relu"), x, {"W": W, "b": jnp.zeros(3, F64).at[0].set(-(x @ W)[0, 0] + gap)}


def _near_tie_pool():
    x = _normal(4, (3, 4, 4, 2))
    return conv.maxpool2d(2), x.at[0, 0, 1, 0].set(x[0, 0, 0, 0] + 3e-6), {}


# name → (layer, x, params): correct rules the checker must pass
CORRECT_HARD = {
    # 14 zero rows: 280 dx entries at the kink (more than the checker used to classify, 256)
    "ReLU, 280 kink entries": lambda: (L.dense(4, "relu"), _normal(0, (24, 20)).at[:14].set(0.0),
                                       {"W": _normal(1, (20, 4)), "b": jnp.zeros(4, F64)}),
    "ReLU input 3e-6 from 0": lambda: _near_kink_dense(3e-6),
    "ReLU input 5e-7 from 0": lambda: _near_kink_dense(5e-7),
    "ReLU input 5e-8 from 0": lambda: _near_kink_dense(5e-8),
    "max-pool near-tie 3e-6": _near_tie_pool,
    "exactly zero gradient": lambda: (_centering(), _normal(0, (4, 5)), {"c": jnp.asarray([0.3], F64)}),
}


@pytest.mark.parametrize("name", list(CORRECT_HARD))
def test_correct_rule_passes_on_hard_inputs(x64, name):
    layer, x, params = CORRECT_HARD[name]()
    report = gradcheck.check_layer(layer, x, params)
    if name.startswith("ReLU, 280"):
        assert report.kinks["dx"] >= 280, report


def test_correct_conv_passes_on_real_digits_with_many_zero_pixels(x64):
    """Real MNIST digits (about 80 % exact zeros) through conv2d + ReLU at its default init
    (b = 0): hundreds of kink entries, all accepted, none failing."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
        mp.delenv("JAXNETS_DATA", raising=False)
        x = np.asarray(data.load("mnist").x_train[:2], np.float64).reshape(2, 28, 28, 1) / 255.0
    assert np.mean(x == 0) > 0.7
    report = gradcheck.check_layer(conv.conv2d(4, 3, 1, "same", "relu"), jnp.asarray(x), key=jax.random.key(0))
    assert sum(report.kinks.values()) > 256, report


def test_check_model_passes_an_exactly_zero_gradient(x64):
    """A scalar added to every logit: softmax cross-entropy does not depend on it (dc = 0 exactly
    by hand; jax.grad gives round-off)."""
    shift = _layer(lambda p, x, key=None: (x + p["c"], None), lambda _, dy: ({"c": jnp.zeros((), F64)}, dy))
    shift = shift._replace(init=lambda k, s, d: (s, {"c": jnp.asarray(0.3, d)}))
    net = models.sequential(L.serial(L.dense(5, "tanh"), shift), "softmax_cross_entropy", (4,))
    params = net.init(jax.random.key(0), F64)
    gradcheck.check_model(net, params, _normal(1, (8, 4)), jnp.arange(8) % 5)


def _scaled_backward(layer, **factors):
    """layer with some of its hand gradients multiplied by a factor (a planted scale bug)."""
    def backward(cache, dy):
        g, dx = layer.backward(cache, dy)
        g = {k: factors.get(k, 1.0) * v for k, v in g.items()}
        return g, factors.get("dx", 1.0) * dx
    return layer._replace(backward=backward)


def test_a_small_leaf_is_checked_on_its_own_scale(x64):
    """A leaf of gradients ~1e-12 next to O(1) ones, 2 % wrong; and a dense layer on inputs ~1e12
    (dW ~1e12) whose db and dx are 1 % wrong: each used to pass (the round-off floor took its
    scale from the largest leaf)."""
    def forward(p, x, key=None):
        return x @ p["W"] + 1e-12 * p["c"], (x, p["W"])
    params = {"W": _normal(1, (4, 3)), "c": _normal(2, (3,))}
    wrong = _layer(forward, lambda c, dy: ({"W": c[0].T @ dy, "c": 1.02e-12 * dy.sum(0)}, dy @ c[1].T))
    with pytest.raises(GradientCheckError, match=r"params\['c'\] constant factor"):
        gradcheck.check_layer(wrong, _normal(0, (5, 4)), params)
    with pytest.raises(GradientCheckError, match=r"params\['b'\] constant factor; dx constant factor"):
        gradcheck.check_layer(_scaled_backward(L.dense(3), b=1.01, dx=1.01), _normal(0, (5, 4), 1e12),
                              {"W": _normal(1, (4, 3)), "b": _normal(2, (3,))})


def _w0_scaled(net, c):
    """The net with its first layer's dW multiplied by c."""
    def backprop(p, xx, yy, l2=0.0, mask=None, key=None):
        loss, g = net.backprop(p, xx, yy, l2, mask, key)
        return loss, [dict(g[0], W=c * g[0]["W"]), *g[1:]]
    return net._replace(backprop=backprop)


_TANH_NET = models.mlp([20, 16, 5], "tanh", "softmax_cross_entropy")


@pytest.mark.parametrize("check,factor", [
    ("check_model", 1.02), ("check_model", 1.001),   # check_model's floor also counts measured round-off
    ("compare", 1.02), ("compare", 1.0001),          # README: a whole float32 leaf off by 1e-4 fails compare
])
def test_float32_check_fails_a_whole_leaf_a_little_off(check, factor):
    """float32: the element-wise 1e-2 alone passed dW × 1.02 (each entry's error ≈ 1 %); the
    norm-wise 1e-5 fails it, and compare's (no measured round-off in its floor) 1e-4 too. The
    correct rule's norm-wise error on the same data is ~1e-7 and passes both."""
    params = _TANH_NET.init(jax.random.key(0))
    x, y = jax.random.normal(jax.random.key(1), (32, 20)), jnp.arange(32) % 5
    assert x.dtype == jnp.float32
    bad = _w0_scaled(_TANH_NET, factor)
    if check == "check_model":
        gradcheck.check_model(_TANH_NET, params, x, y)
        run = lambda: gradcheck.check_model(bad, params, x, y)   # noqa: E731
    else:
        auto = _TANH_NET.grad_autodiff(params, x, y)[1]
        gradcheck.compare(_TANH_NET.backprop(params, x, y)[1], auto)
        run = lambda: gradcheck.compare(bad.backprop(params, x, y)[1], auto)   # noqa: E731
    with pytest.raises(GradientCheckError, match=r"(?s)params\[0\]\['W'\] constant factor.*norm-wise"):
        run()


@pytest.mark.parametrize("dtype,l2,caught", [
    ("float32", 3e-6, False),     # README's blind spot: under float32's tolerances
    ("float32", 1e-4, True),
    ("float64", 3e-6, True),      # ... which float64 catches
])
def test_a_forgotten_l2_gradient_on_real_data(dtype, l2, caught):
    """An MNIST MLP whose backprop drops the L2 term (16 real images, exact zeros included)."""
    net = models.mlp([784, 64, 10], "relu", "softmax_cross_entropy")
    bad = net._replace(backprop=lambda p, x, y, l2=0.0, mask=None, key=None: net.backprop(p, x, y, 0.0, mask, key))
    sp = data.get_split("mnist_5k", flatten_images=True)
    with jax.enable_x64(dtype == "float64"):
        p = net.init(jax.random.key(1), dtype=jnp.dtype(dtype))
        x, y = jnp.asarray(sp.x_train[:16], dtype), sp.y_train[:16]
        run = lambda: gradcheck.check_model(bad, p, x, y, l2=l2, n_samples=8, key=jax.random.key(2))  # noqa: E731
        if caught:
            with pytest.raises(GradientCheckError, match="disagrees with jax.grad"):
                run()
        else:
            run()


def test_compare_takes_the_tolerance_of_the_less_precise_side(x64):
    """float64 hand vs a correct float32 jax.grad passes at float32's tolerances (it failed at
    float64's); a 1.5 % error cast to float32 against float64 fails (it passed)."""
    net = models.mlp([20, 16, 5], "tanh", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), F64)
    x, y = _normal(1, (32, 20)), jnp.arange(32) % 5
    to32 = lambda t: jax.tree.map(lambda v: v.astype(jnp.float32), t)   # noqa: E731
    _, hand = net.backprop(params, x, y)
    _, auto = net.grad_autodiff(params, x, y)
    _, auto32 = net.grad_autodiff(to32(params), x.astype(jnp.float32), y)
    assert gradcheck.compare(hand, auto32).tol_source == "float32 default"
    with pytest.raises(GradientCheckError, match="float32 default"):
        gradcheck.compare(to32(jax.tree.map(lambda v: 1.015 * v, hand)), auto)


def _mlp_case(dims, seed, x_seed, zero_row=False):
    net = models.mlp(dims, "relu", "softmax_cross_entropy")
    x = jax.random.normal(jax.random.key(x_seed), (16, dims[0]))
    return net, x.at[0].set(0.0) if zero_row else x, jnp.arange(16) % dims[-1], seed


# float32 correct models the checker used to fail (a second audit): central differences with a
# float32 step of 1e-2 crossed ReLU kinks (seeds 1–5: 37 of 40 seeds failed), exact kinks went
# undetected in float32, and a leaf whose true gradient is 0 failed the norm-wise check
F32_CORRECT = {f"ReLU MLP seed {s}": (lambda s=s: _mlp_case([10, 32, 5], s, 1000 + s)) for s in range(1, 6)}
F32_CORRECT["ReLU MLP, a zero input row (exact kinks)"] = lambda: _mlp_case([4, 8, 3], 0, 1, zero_row=True)


@pytest.mark.parametrize("name", list(F32_CORRECT))
def test_float32_check_model_passes_correct_relu_models(name):
    net, x, y, seed = F32_CORRECT[name]()
    report = gradcheck.check_model(net, net.init(jax.random.key(seed)), x, y)
    assert "central differences in float64" in report["tolerance_source"]["numeric"], report


@pytest.mark.parametrize("seed", range(3))
def test_float32_round_off_leaf_of_a_zero_gradient_passes(seed):
    """dc = Σ dy is 0 in theory (softmax cross-entropy ignores a shift of every logit); in float32
    both sides are round-off of ~1e-8."""
    shift = _layer(lambda p, x, key=None: (x + p["c"], None), lambda _, dy: ({"c": jnp.sum(dy)}, dy))
    shift = shift._replace(init=lambda k, s, d=jnp.float32: (s, {"c": jnp.asarray(0.3, d)}))
    net = models.sequential(L.serial(L.dense(10, "tanh"), shift), "softmax_cross_entropy", (4,))
    gradcheck.check_model(net, net.init(jax.random.key(seed)), jax.random.normal(jax.random.key(100 + seed), (64, 4)),
                          jnp.arange(64) % 10)


@pytest.mark.parametrize("factor", [1.0, 1.2, 1.5])
def test_bfloat16_check_model_fails_a_gradient_twenty_percent_off(factor):
    """bfloat16 (ε = 7.8e-3, tolerance 0.1): the round-off floors used to allow 0.78 of a leaf's
    largest entry everywhere, so × 1.5 passed; the correct rule's norm-wise error is ~6e-3."""
    net = models.mlp([8, 16, 4], "relu", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), jnp.bfloat16)
    x = jax.random.normal(jax.random.key(1), (16, 8)).astype(jnp.bfloat16)
    y = jax.random.randint(jax.random.key(2), (16,), 0, 4)

    def backprop(*a):
        loss, g = net.backprop(*a)
        return loss, jax.tree.map(lambda t: t * jnp.asarray(factor, t.dtype), g)
    wrong = net._replace(backprop=backprop)
    if factor == 1.0:
        gradcheck.check_model(wrong, params, x, y)
    else:
        with pytest.raises(GradientCheckError, match="constant factor"):
            gradcheck.check_model(wrong, params, x, y)


# what a check that would check nothing is told (input → error)
VACUOUS = {
    "empty batch": (lambda: (jnp.zeros((0, 5), F64), None), "x has no examples"),
    "all-zero dy": (lambda: (_normal(0, (4, 5)), jnp.zeros((4, 5), F64)), "dy is all zeros"),
}


@pytest.mark.parametrize("name", list(VACUOUS))
def test_check_layer_refuses_a_check_of_nothing(x64, name):
    make, msg = VACUOUS[name]
    x, dy = make()
    wrong = _scaled_backward(L.dense(5, "tanh"), W=5.0, b=5.0, dx=5.0)
    with pytest.raises(ValueError, match=msg):
        gradcheck.check_layer(wrong, x, {"W": _normal(1, (5, 5)), "b": _normal(2, (5,))}, dy=dy)


def test_check_model_refuses_an_empty_batch(x64):
    net = models.mlp([3, 2], "tanh", "mse")
    with pytest.raises(ValueError, match="x has no examples"):
        gradcheck.check_model(net, net.init(jax.random.key(0), F64), jnp.zeros((0, 3), F64), jnp.zeros((0, 2), F64))


def test_check_layer_names_a_missing_dx(x64):
    layer = L.dense(3)
    none_dx = layer._replace(backward=lambda c, dy: (layer.backward(c, dy)[0], None))
    with pytest.raises(GradientCheckError, match="dx structure mismatch(?s:.*)dx = None"):
        gradcheck.check_layer(none_dx, _normal(0, (4, 5)), {"W": _normal(1, (5, 3)), "b": _normal(2, (3,))})


def test_compare_of_python_floats_and_numerical_grad_of_an_integer_leaf():
    assert gradcheck.compare({"a": 1.0}, {"a": 1.0}) == {"['a']": 0.0}
    with pytest.raises(ValueError, match=r"leaf params\['a'\] has dtype int"):
        gradcheck.numerical_grad(lambda q: jnp.sum(q["a"] * 1.0), {"a": jnp.ones(3, int)})


# ============================================================================ doc 003 §3.1.5

def test_gradient_checker_keeps_the_documents_entry_and_adds_a_live_one(x64):
    """doc 003's W1(0, 0) multiplies the corner pixel; with that pixel 0 both sides are 0."""
    net = models.mlp([6, 5, 3], "relu", "softmax_cross_entropy", init="normal", std=0.5)
    params = net.init(jax.random.key(0), F64)
    x = _normal(1, (1, 6)).at[0, 0].set(0.0)
    rows = gradcheck.gradient_checker(net, params, x, jnp.asarray([2]))
    w1 = rows[0]
    assert w1["index"] == (0, 0) and w1["backprop"] == 0.0 and w1["degenerate"] and "0 with 0" in w1["why"]
    assert abs(w1["alt_backprop"]) > 1e-3 and w1["alt_rel_error"] < 1e-6
    assert [r["param"] for r in rows] == ["[0]['W']", "[0]['b']", "[1]['W']", "[1]['b']"]


def test_magnitude_checker_compares_l1_norms_of_the_decayed_weight(x64):
    net = models.mlp([4, 3, 2], "tanh", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), F64)
    x, y = _normal(1, (60, 4)), jnp.arange(60) % 2
    # a model whose decay marks only the second layer's weight: the checker follows decay
    decay = lambda p: [{"W": False, "b": False}, {"W": True, "b": False}]
    model = types.SimpleNamespace(backprop=net.backprop, decay=decay)
    mag = gradcheck.magnitude_checker(model, params, x, y, small=10, large=50)
    g10 = np.asarray(net.backprop(params, x[:10], y[:10])[1][1]["W"])
    assert mag["param"] == "[1]['W']" and mag["batch_small"] == 10 and mag["batch_large"] == 50
    assert mag["l1_small"] == pytest.approx(np.abs(g10).sum(), rel=1e-12)
    assert mag["l1_small"] != pytest.approx(abs(mag["sum_small"]), rel=1e-3)   # signs cancel in a sum


def planted_table() -> str:
    """The planted-bug table as markdown: layer × bug class → the first line of the message."""
    rows = ["| layer | planted bug | first line of the GradientCheckError |", "|---|---|---|"]
    with jax.enable_x64(True):
        for name, bug in PLANTED:
            rows.append(f"| {name} | {bug} | `{_first_line(name, bug)}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(planted_table())


def test_a_sampled_entry_whose_difference_is_not_finite_fails(x64):
    """log w at w = 1e-7 with eps 1e-5: w − eps < 0, so every sampled central difference is NaN.
    A sampled leaf masks the unchecked entries only; the NaN of a checked one must fail compare
    (it once was masked too, and the hand gradient 1/w passed unchecked)."""
    w = jnp.asarray([1e-7, 2e-7, 3e-7, 4e-7, 5e-7], F64)
    num = gradcheck.numerical_grad(lambda p: jnp.sum(jnp.log(p["w"])), {"w": w}, eps=1e-5, n_samples=2,
                                   key=jax.random.key(0))
    assert int(np.ma.count(num["w"])) == 2                       # the two checked entries stay visible
    with pytest.raises(GradientCheckError, match="non-finite"):
        gradcheck.compare({"w": 1.0 / w}, num, "central differences")


def _toy_layer(backward, forward=None, init=None):
    """A parameter-free y = 2x layer whose parts a test replaces (a learner's slips)."""
    return L.Layer(init or (lambda key, s, dtype=jnp.float32: (s, {})),
                   forward or (lambda p, x, key=None: (2.0 * x, x)), backward)


@pytest.mark.parametrize("layer,error,says", [
    (_toy_layer(lambda c, dy: ({}, dy[:, :2])), GradientCheckError,
     r"dx: shape mismatch: shape \(4, 2\), the reference's is \(4, 3\): dx has the shape of the layer's input x"),
    # a factor 2 in a layer is not "½ in the loss": a layer check has no loss
    (_toy_layer(lambda c, dy: ({}, dy)), GradientCheckError, r"dx: constant factor: off by a constant factor 0\.5"),
    (_toy_layer(lambda c, dy: ({}, 2 * dy), forward=lambda p, x, key=None: 2.0 * x), ValueError,
     r"check_layer: forward must return \(y, cache\), got ArrayImpl"),
    (_toy_layer(lambda c, dy: ({}, 2 * dy), init=lambda k, s, dtype=jnp.float32: ((7,), {})), ValueError,
     r"forward gave y of shape \(4, 3\), but init declared the per-example output shape \(7,\)"),
    (L.Layer(lambda k, s, dtype=jnp.float32: (s, {"k": jnp.int32(2)}), lambda p, x, key=None: (x * 2.0, x),
             lambda c, dy: ({"k": jnp.zeros((), jnp.int32)}, 2 * dy)), ValueError,
     r"params\['k'\] has dtype int32: a parameter must be a float array"),
], ids=["dx shape", "factor 2 in a layer", "forward not (y, cache)", "init's out_shape", "int parameter"])
def test_a_learners_slips_get_a_message_that_names_them(x64, layer, error, says):
    x = _normal(0, (4, 3))
    with pytest.raises(error, match=says) as e:
        gradcheck.check_layer(layer, x)
    assert "½ in the loss" not in str(e.value)


def test_swapped_leaves_are_named(x64):
    """A learner's scale-and-shift y = x·g + b whose rule returns the two gradients under each
    other's names: "swapped leaves", naming both (it was "no known pattern")."""
    def forward(p, x, key=None):
        return x * p["g"] + p["b"], x

    def backward(x, dy):
        return {"g": jnp.sum(dy, 0), "b": jnp.sum(dy * x, 0)}, dy   # swapped: dg is Σ dy·x
    layer = L.Layer(lambda k, s, dtype=jnp.float32: (s, {"g": jnp.ones(s, dtype), "b": jnp.zeros(s, dtype)}),
                    forward, backward)
    params = {"g": 1.0 + _normal(1, (3,)), "b": _normal(2, (3,))}
    with pytest.raises(GradientCheckError, match=r"params\['b'\] swapped leaves; params\['g'\] swapped leaves") as e:
        gradcheck.check_layer(layer, _normal(0, (5, 3)), params)
    assert "equals params['g']'s reference" in str(e.value)


def _sin_layer():
    return L.Layer(lambda k, s, d=jnp.float32: (tuple(s), {}), lambda p, x, key=None: (jnp.sin(x), x),
                   lambda x, dy: ({}, 2 * dy * jnp.cos(x)))      # a wrong rule: the factor 2


_SETTINGS_CALLS = {
    "compare": lambda **kw: gradcheck.compare({"a": jnp.ones(2)}, {"a": 2 * jnp.ones(2)}, **kw),
    "check_layer": lambda **kw: gradcheck.check_layer(_sin_layer(), jnp.linspace(0.1, 1.0, 6).reshape(2, 3), **kw),
    "check_model": lambda **kw: gradcheck.check_model(_TANH_NET, _TANH_NET.init(jax.random.key(0)),
                                                      jnp.ones((4, 20)), jnp.arange(4) % 5, **kw),
    "numerical_grad": lambda **kw: gradcheck.numerical_grad(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.ones(3)}, **kw),
}
_BAD_SETTINGS = [("tol", np.nan), ("tol", 0.0), ("tol", -1.0), ("tol", np.inf), ("tol", "1e-3"),
                 ("autodiff_tol", np.nan), ("numeric_tol", 0), ("eps", 0.0), ("eps", np.nan), ("eps", -1e-5),
                 ("n_samples", 0), ("n_samples", 2.5), ("n_samples", -3), ("n_samples", True)]


_ACCEPTS = {"compare": {"tol"}, "numerical_grad": {"eps", "n_samples"},
            "check_layer": {"autodiff_tol", "numeric_tol", "eps", "n_samples"},
            "check_model": {"autodiff_tol", "numeric_tol", "eps", "n_samples"}}


@pytest.mark.parametrize("fn,name,value", [(fn, name, value) for fn in _SETTINGS_CALLS
                                           for name, value in _BAD_SETTINGS if name in _ACCEPTS[fn]])
def test_a_bad_tolerance_step_or_sample_count_is_refused_naming_it(fn, name, value):
    """tol=NaN passed a gradient off by 2 (every comparison with NaN is False); 0 divided by zero;
    n_samples=0 checked nothing against central differences. Each is a ValueError naming it."""
    with pytest.raises(ValueError, match=rf"^{fn}: {name} must be"):
        _SETTINGS_CALLS[fn](**{name: value})


@pytest.mark.parametrize("scaled,kind", [(("a", "b"), "½ in the loss"), (("a",), "constant factor")])
def test_a_half_in_the_loss_is_named_only_when_every_leaf_is_off_by_2(x64, scaled, kind):
    """A ½ in the loss scales every gradient; one leaf off by 2 beside one that agrees is its own rule's."""
    ref = {"a": _normal(0, (3, 4)), "b": _normal(1, (4,))}
    hand = {k: 2 * v if k in scaled else v for k, v in ref.items()}
    with pytest.raises(GradientCheckError) as e:
        gradcheck.compare(hand, ref)
    assert {label: d.kind for (_, label), d in e.value.diagnoses.items()} == {f"params['{k}']": kind for k in scaled}
    assert ("on this gradient only" in str(e.value)) == (kind == "constant factor")
