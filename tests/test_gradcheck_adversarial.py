"""The gradient checker against a learner's slips (an adversarial audit of ``check_layer``,
``check_model`` and ``compare``): a wrong rule must never pass silently, a correct one must pass,
and the diagnosis must name the likely cause, not a misleading one.

Every check runs in float64 (``x64`` fixture; ``check_layer`` casts to float64 itself) with the
checker's float64 defaults (1e-10 against autodiff, 1e-6 against central differences, eps 1e-5).
The learner layers are small and parameter-light, so each test takes well under a second.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import data, gradcheck, models
from jaxnets.errors import GradientCheckError
from jaxnets.models import base
from jaxnets.nn import attention as A
from jaxnets.nn import layers as L

F64 = jnp.float64


def _normal(seed, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, F64)


def _same(key, in_shape, dtype=jnp.float32):
    """A parameter-free layer's init: the output has the input's shape."""
    return tuple(in_shape), {}


def _learner(forward, backward, init=_same, stochastic=False):
    return L.Layer(init, forward, backward, stochastic)


def _check(layer, x, passes, **kw):
    """check_layer passes (a correct rule: the report) or raises GradientCheckError (a wrong one)."""
    if passes:
        return gradcheck.check_layer(layer, x, **kw)
    with pytest.raises(GradientCheckError):
        gradcheck.check_layer(layer, x, **kw)


def _kinds(err) -> dict:
    """{gradient label: diagnosis kind} over both references."""
    return {label: d.kind for (_, label), d in err.diagnoses.items()}


_relu_forward = lambda p, x, key=None: (jax.nn.relu(x), x)   # noqa: E731


def _relu_backward(x, dy):
    return {}, dy * (x > 0).astype(dy.dtype)     # strict dtype promotion: bool × float fails


# ============================================================================ 1. integer x

def _leaky_forward(p, x, key=None):
    """A learner's leaky ReLU that accepts any x (it casts to float first)."""
    xf = x.astype(F64)
    return jnp.where(xf > 0, xf, 0.01 * xf), xf


_INTS = [[-2, -1, 0, 1, 2], [3, -4, 5, -6, 7]]
# name -> (backward, x): every backward returns a dx, so x must be float for dx to be checked
INT_X = {
    "wrong dx = -7·dy, int64 x": (lambda c, dy: ({}, -7.0 * dy), lambda: jnp.asarray(_INTS, jnp.int64)),
    "wrong dx = -7·dy, int32 x": (lambda c, dy: ({}, -7.0 * dy), lambda: jnp.asarray(_INTS, jnp.int32)),
    "wrong dx = -7·dy, NumPy int8 x": (lambda c, dy: ({}, -7.0 * dy), lambda: np.asarray(_INTS, np.int8)),
    "correct dx, int64 x": (lambda c, dy: ({}, jnp.where(c > 0, dy, 0.01 * dy)), lambda: jnp.asarray(_INTS)),
}


@pytest.mark.parametrize("name", list(INT_X))
def test_integer_x_with_a_dx_is_refused(x64, name):
    """A learner passed integer-valued x as an int array: the checker took it for token ids and
    never checked dx, so dx = −7·dy passed silently. A ValueError must say x is integer and
    that a float x is needed."""
    backward, make_x = INT_X[name]
    with pytest.raises(ValueError, match="integer") as e:
        gradcheck.check_layer(_learner(_leaky_forward, backward), make_x())
    assert "float" in str(e.value), str(e.value)


def test_integer_token_ids_without_dx_still_pass(x64):
    """The library's embedding (dx None for token ids) is still checked on integer ids."""
    params = {"tok": _normal(0, (5, 3)), "pos": _normal(1, (4, 3))}
    report = gradcheck.check_layer(A.embedding(5, 4, 3), jnp.asarray([[0, 4, 2], [1, 1, 3]]), params)
    assert set(report.autodiff) == {"params['pos']", "params['tok']"}


# ============================================================================ 2. degenerate init

def _ln_gain_forgotten():
    """layer_norm whose dx leaves out the gain (dx̂ = dy, not dy·g): invisible at g = 1."""
    ln = A.layer_norm()
    return ln._replace(backward=lambda c, dy: ln.backward((c[0], c[1], jnp.ones_like(c[2])), dy))


def _gated_init(key, s, dtype=jnp.float32):
    """ReZero-style gate a = 0 at init (a common choice)."""
    return tuple(s), {"W": jax.random.normal(key, (s[-1], s[-1]), dtype) / s[-1] ** 0.5, "a": jnp.zeros((), dtype)}


def _gated_forward(p, x, key=None):
    h = jnp.tanh(x @ p["W"])
    return x + p["a"] * h, (x, h, p["W"], p["a"])


def _gated(sign):
    """y = x + a·tanh(x W); tanh′ = 1 + sign·h² (sign −1 is right, +1 the learner's slip)."""
    def backward(c, dy):
        x, h, W, a = c
        dh = a * dy * (1 + sign * h * h)
        return {"W": x.T @ dh, "a": jnp.sum(dy * h)}, dy + dh @ W.T
    return _learner(_gated_forward, backward, _gated_init)


def _bias_only():
    init = lambda k, s, dtype=jnp.float32: (tuple(s), {"b": jnp.zeros(s[-1:], dtype)})   # noqa: E731
    return _learner(lambda p, x, key=None: (x + p["b"], None), lambda c, dy: ({"b": jnp.sum(dy, 0)}, dy), init)


# name -> (layer, passes): the wrong rules, then correct layers that must still pass
AT_INIT = {"layer_norm, gain left out of dx (g = 1 at init)": (_ln_gain_forgotten, False),
           "gated residual, tanh′ = 1 + h² (a = 0 at init)": (lambda: _gated(+1.0), False),
           "dense": (lambda: L.dense(4), True), "dense + ReLU": (lambda: L.dense(4, "relu"), True),
           "layer_norm": (A.layer_norm, True), "bias only (b = 0)": (_bias_only, True),
           "gated residual, correct (a = 0)": (lambda: _gated(-1.0), True)}


@pytest.mark.parametrize("name", list(AT_INIT))
def test_init_params_do_not_hide_a_bug(x64, name):
    """params=None checked at init's params, where g = 1 or a = 0 multiplies the bug away: the
    wrong rule passed. The checker must move an all-equal leaf off its single value, and correct
    layers (the library's and a learner's) still pass with params=None."""
    make, passes = AT_INIT[name]
    _check(make(), _normal(0, (4, 6)), passes, key=jax.random.key(1))


# ============================================================================ 3. stochastic layers

class _LearnerDropout:
    """A learner's inverted dropout (a plain class with ``stochastic = True``); ``scaled=False``
    forgets the 1/(1 − p) in backward."""
    stochastic = True

    def __init__(self, rate, scaled):
        self.rate, self.scaled = rate, scaled

    init = staticmethod(_same)

    def forward(self, params, x, key=None):
        if key is None:
            return x, None
        keep = jax.random.bernoulli(key, 1 - self.rate, x.shape)
        return jnp.where(keep, x / (1 - self.rate), 0.0), keep

    def backward(self, keep, dy):
        if keep is None:
            return {}, dy
        return {}, jnp.where(keep, dy / (1 - self.rate) if self.scaled else dy, 0.0)


def _library_dropout_unscaled():
    lib = L.dropout(0.5)
    return lib._replace(backward=lambda c, dy: ({}, dy if c is None else jnp.where(c[0], dy, 0.0)))


# name -> (layer, passes)
STOCHASTIC = {
    "learner dropout, 1/(1−p) forgotten": (lambda: _LearnerDropout(0.5, False), False),
    "library dropout, 1/(1−p) forgotten": (_library_dropout_unscaled, False),
    "learner dropout, correct": (lambda: _LearnerDropout(0.5, True), True),
    "library dropout": (lambda: L.dropout(0.25), True),
}


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_a_stochastic_layer_without_fkey_is_checked_in_training_mode(x64, name):
    """Without fkey a stochastic layer ran with key=None (evaluation mode: the identity), so a
    train-mode backward that forgets the 1/(1 − p) scale passed. The checker must draw a mask."""
    make, passes = STOCHASTIC[name]
    _check(make(), _normal(0, (4, 6)), passes)


# ============================================================================ 4. jax.vjp is NaN

def _elu_forward(p, x, key=None):
    y = jnp.where(x > 0, x, jnp.exp(x) - 1)     # exp(1e3) = inf in the branch where() discards
    return y, (x, y)


def _sqrt_forward(p, x, key=None):     # sqrt(x < 0) = NaN in the discarded branch
    return jnp.where(x > 0, jnp.sqrt(x), 0.0), x


_half_rsqrt = lambda x: 0.5 / jnp.sqrt(jnp.where(x > 0, x, 1.0))   # noqa: E731


def _sqrt_x():
    x = _normal(1, (3, 4))
    return jnp.where(jnp.abs(x) < 1e-3, 0.5, x)     # no entry within a step of the kink at 0


# name -> (forward, backward, passes)
NAN_VJP = {
    "ELU, correct": (_elu_forward, lambda c, dy: ({}, dy * jnp.where(c[0] > 0, 1.0, c[1] + 1)), True),
    "ELU, +1 forgotten for x < 0": (_elu_forward, lambda c, dy: ({}, dy * jnp.where(c[0] > 0, 1.0, c[1])), False),
    "ELU, slope 2 for x > 0 (where jax.vjp is NaN)":
        (_elu_forward, lambda c, dy: ({}, dy * jnp.where(c[0] > 0, 2.0, c[1] + 1)), False),
    "safe sqrt, correct": (_sqrt_forward, lambda x, dy: ({}, jnp.where(x > 0, dy * _half_rsqrt(x), 0.0)), True),
    "safe sqrt, ½ forgotten":
        (_sqrt_forward, lambda x, dy: ({}, jnp.where(x > 0, 2 * dy * _half_rsqrt(x), 0.0)), False),
    "safe sqrt, dx = dy for x < 0 (where jax.vjp is NaN)":
        (_sqrt_forward, lambda x, dy: ({}, jnp.where(x > 0, dy * _half_rsqrt(x), dy)), False),
}


@pytest.mark.parametrize("name", list(NAN_VJP))
def test_entries_where_jax_vjp_is_nan_are_judged_by_central_differences(x64, name):
    """A correct rule failed as "non-finite" because jax.vjp of a finite forward is NaN
    (jnp.where's discarded branch overflows); such entries must be judged by central
    differences, and a wrong rule there (or elsewhere) must still fail."""
    forward, backward, passes = NAN_VJP[name]
    x = 1e3 * _normal(0, (3, 4)) if name.startswith("ELU") else _sqrt_x()
    report = _check(_learner(forward, backward), x, passes)
    assert not passes or isinstance(report, gradcheck.LayerReport)


@pytest.mark.parametrize("name,passes", [("ELU, correct", True), ("ELU, +1 forgotten for x < 0", False)])
def test_check_model_judges_entries_where_jax_grad_is_nan_by_central_differences(x64, name, passes):
    """check_model in float64, the same: a dense layer into the ELU at pre-activations ~1e4, where
    jax.grad of W and b is NaN (exp overflows in the discarded branch); the report lists them."""
    forward, backward, _ = NAN_VJP[name]
    model = base.sequential(L.serial(L.dense(4), _learner(forward, backward)), "mse", (3,))
    params = model.init(jax.random.key(0), F64)
    x, y = 1e4 * _normal(1, (6, 3)), _normal(2, (6, 4))
    assert not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(model.grad_autodiff(params, x, y)[1]))
    if not passes:
        with pytest.raises(GradientCheckError, match="non-finite"):
            gradcheck.check_model(model, params, x, y)
        return
    report = gradcheck.check_model(model, params, x, y)
    assert report["nonfinite"] and set(report["nonfinite"]) <= {"[0]['W']", "[0]['b']"}


def test_a_nan_in_the_hand_gradient_always_fails(x64):
    """One NaN entry of a hand dx (jax.vjp finite there) fails check_layer, and check_model through it."""
    nan_at_3 = lambda x, dy: ({}, jnp.where(jnp.arange(x.size).reshape(x.shape) == 3, jnp.nan,   # noqa: E731
                                            dy * (1 - jnp.tanh(x) ** 2)))
    layer = _learner(lambda p, x, key=None: (jnp.tanh(x), x), nan_at_3)
    with pytest.raises(GradientCheckError, match="non-finite"):
        gradcheck.check_layer(layer, _normal(1, (3, 4)))
    model = base.sequential(L.serial(L.dense(4), layer), "mse", (3,))
    with pytest.raises(GradientCheckError, match="non-finite"):
        gradcheck.check_model(model, model.init(jax.random.key(0), F64), _normal(1, (6, 3)), _normal(2, (6, 4)))


# ============================================================================ 5. the step leaves the domain

def _probabilities():
    """Softmax probabilities of a wide spread: the smallest ~1e-8, below the step eps = 1e-5."""
    return jax.nn.softmax(4.5 * _normal(0, (4, 10)), axis=-1)


# name -> (forward, correct backward, wrong backward)
DOMAIN = {
    "log": (lambda p, x, key=None: (jnp.log(x), x), lambda x, dy: ({}, dy / x), lambda x, dy: ({}, dy / x**2)),
    "sqrt": (lambda p, x, key=None: (jnp.sqrt(x), jnp.sqrt(x)), lambda y, dy: ({}, 0.5 * dy / y),
             lambda y, dy: ({}, dy / y)),                                    # the ½ forgotten
    "1/x": (lambda p, x, key=None: (1.0 / x, x), lambda x, dy: ({}, -dy / x**2),
            lambda x, dy: ({}, dy / x**2)),                                  # the − forgotten
}


@pytest.mark.parametrize("rule", ["correct", "wrong"])
@pytest.mark.parametrize("name", list(DOMAIN))
def test_small_inputs_where_the_step_leaves_the_domain(x64, name, rule):
    """x = softmax probabilities down to ~1e-8: x − eps < 0, so every central difference of
    log/sqrt there was NaN (and that of 1/x meaningless), and a correct rule failed. It must
    pass; a wrong rule must still fail."""
    x = _probabilities()
    assert float(x.min()) < 1e-7
    forward, right, wrong = DOMAIN[name]
    _check(_learner(forward, right if rule == "correct" else wrong), x, rule == "correct")


# ============================================================================ 6-8. diagnoses

def _sigmoid_f32_cache():
    def forward(p, x, key=None):
        y = jax.nn.sigmoid(x)
        return y, y.astype(jnp.float32)          # the cache kept in float32 "to save memory"

    def backward(y32, dy):
        y = y32.astype(dy.dtype)
        return {}, dy * y * (1 - y)
    return _learner(forward, backward)


# name -> (correct rule that loses precision, whether the hand gradient itself is float32)
PRECISION = {
    "ReLU, dx returned in float32": (lambda: _learner(_relu_forward, lambda x, dy: (
        {}, _relu_backward(x, dy)[1].astype(jnp.float32))), True),
    "sigmoid, float32 cache": (_sigmoid_f32_cache, False),
}


@pytest.mark.parametrize("name", list(PRECISION))
def test_precision_loss_is_not_called_a_missing_activation_derivative(x64, name):
    """A correct rule that rounds through float32 (errors ~1e-8) fails at float64's 1e-10, but was
    named "missing activation derivative" (ReLU′ of a positive output is 1: a no-op that matched
    within 1e-6). A float32 hand gradient must be blamed on its precision."""
    make, f32_dx = PRECISION[name]
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_layer(make(), _normal(0, (4, 3)))
    kinds = _kinds(e.value)
    assert "missing activation derivative" not in kinds.values(), kinds
    if f32_dx:
        text = " ".join(d.text for d in e.value.diagnoses.values())
        assert "precision" in text or "float32" in text, text


def test_a_gain_gradient_without_xhat_is_not_called_swapped(x64):
    """layer_norm with dg = Σ dy (x̂ forgotten) and a correct db: dg then equals db's reference,
    and the checker said "swapped leaves" though only dg is wrong."""
    ln = A.layer_norm()

    def backward(cache, dy):
        dp, dx = ln.backward(cache, dy)
        return {"g": jnp.sum(dy, axis=0), "b": dp["b"]}, dx
    params = {"g": 1 + _normal(1, (4,), 0.1), "b": _normal(2, (4,), 0.1)}
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_layer(ln._replace(backward=backward), _normal(0, (5, 4)), params)
    kinds = _kinds(e.value)
    assert "params['b']" not in kinds and kinds.get("params['g']") not in (None, "swapped leaves"), kinds


def _factor_two_compare():
    net = models.mlp([6, 5, 3], "relu", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), F64)
    _, g = net.grad_autodiff(params, _normal(1, (2, 6)), jnp.asarray([0, 2]))
    gradcheck.compare(jax.tree.map(lambda v: 2 * v, g), g, batch_size=2)   # a summed loss, N = 2


def _factor_two_layer():
    square = _learner(lambda p, x, key=None: (x * x, x), lambda x, dy: ({}, x * dy))   # the 2 of 2x forgotten
    gradcheck.check_layer(square, _normal(2, (2, 3)))


@pytest.mark.parametrize("check", [_factor_two_compare, _factor_two_layer], ids=["compare", "check_layer"])
def test_a_factor_two_with_two_examples_names_both_causes(x64, check):
    """With N = 2 a factor 2 is a missing 1/N or a ½ (of a squared loss, of d(x²) = 2x) alike;
    the checker named one cause only. The text must name both."""
    with pytest.raises(GradientCheckError) as e:
        check()
    assert "1/N" in str(e.value) and "½" in str(e.value), str(e.value)


# ============================================================================ 9. the Layer contract

def _dense_init(key, s, dtype=jnp.float32):
    return tuple(s[:-1]) + (2,), {"W": jax.random.normal(key, (s[-1], 2), dtype)}


_dense_forward = lambda p, x, key=None: (x @ p["W"], (x, p["W"]))   # noqa: E731
# name -> (layer, x rows, what the message must name)
CONTRACT = {
    "backward returns dx only (N = 4)": (_learner(_relu_forward, lambda x, dy: _relu_backward(x, dy)[1]), 4,
                                         "(dparams, dx)"),
    "backward returns dx only (N = 2: it unpacks)": (_learner(_relu_forward, lambda x, dy: _relu_backward(x, dy)[1]),
                                                     2, "(dparams, dx)"),
    "ReLU backward returns (dx, {})": (_learner(_relu_forward, lambda x, dy: _relu_backward(x, dy)[::-1]), 4,
                                       "(dparams, dx)"),
    "dense backward returns (dx, dparams)": (_learner(_dense_forward, lambda c, dy: (dy @ c[1].T, {"W": c[0].T @ dy}),
                                                      _dense_init), 4, "(dparams, dx)"),
    "init returns (params, out_shape)": (_learner(_dense_forward, lambda c, dy: ({"W": c[0].T @ dy}, dy @ c[1].T),
                                                  lambda k, s, dtype=jnp.float32: _dense_init(k, s, dtype)[::-1]),
                                         4, "(out_shape, params)"),
    "forward written with NumPy": (_learner(lambda p, x, key=None: (np.maximum(x, 0.0), x), _relu_backward), 4,
                                   "jax.numpy"),
    "cache holds a bare shape (x.shape), not Static": (
        _learner(lambda p, x, key=None: (x.reshape(x.shape[0], -1), x.shape), lambda c, dy: ({}, dy.reshape(c))),
        4, "Static"),
    "cache holds a bare Python flag": (
        _learner(lambda p, x, key=None: (2 * x, (True,)), lambda c, dy: ({}, 2 * dy if c[0] else dy)), 4, "Static"),
    "backward written with NumPy (a cache of arrays)": (
        _learner(lambda p, x, key=None: (jnp.tanh(x), jnp.tanh(x)),
                 lambda y, dy: ({}, np.asarray(dy) * (1 - np.asarray(y) ** 2))), 4, "jax.numpy"),
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_a_broken_layer_contract_is_named(x64, name):
    """A learner's layer that breaks the Layer contract got an unpacking error, a "structure
    mismatch" of a leaf called params, an int-dtype parameter or a tracer error. The message
    must name the contract: backward -> (dparams, dx), init -> (out_shape, params), or that
    forward must use jax.numpy."""
    layer, n, says = CONTRACT[name]
    with pytest.raises((ValueError, TypeError, GradientCheckError)) as e:
        gradcheck.check_layer(layer, _normal(0, (n, 3)))
    assert says in str(e.value), f"{type(e.value).__name__}: {e.value}"
    if "backward" in name:
        assert isinstance(e.value, (ValueError, GradientCheckError)), type(e.value)


# ============================================================================ 10. kink convention

def _mnist_crop():
    """One real MNIST digit, cropped to 14×14 (bundled sample): about half its pixels exactly 0."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
        mp.delenv("JAXNETS_DATA", raising=False)
        x = np.asarray(data.load("mnist").x_train[:1, 7:21, 7:21], np.float64).reshape(1, 14, 14, 1) / 255.0
    assert 0.2 < np.mean(x == 0) < 0.9
    return jnp.asarray(x)


def test_a_jnp_maximum_relu_names_the_forwards_convention(x64):
    """ReLU forward jnp.maximum(x, 0.) (autodiff: ½ at x = 0) with the textbook rule dy·(x > 0) on
    real pixels: it fails at the zero pixels (the checker follows the forward's convention), and
    the text must explain that jnp.maximum's convention differs from jax.nn.relu's."""
    x = _mnist_crop()
    gradcheck.check_layer(_learner(_relu_forward, _relu_backward), x)      # jax.nn.relu: passes
    layer = _learner(lambda p, x, key=None: (jnp.maximum(x, 0.0), x), _relu_backward)
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_layer(layer, x)
    text = str(e.value)
    assert "jnp.maximum" in text and "jax.nn.relu" in text, text


# ============================================================================ regressions

# planted bug -> (the wrong rule on dense(4), x (5, 4) and a square W; the leaf; its diagnosis)
REGRESSIONS = {
    "dW sign flipped": (lambda dp, dx: ({**dp, "W": -dp["W"]}, dx), "params['W']", "sign flipped"),
    "dW transposed (square)": (lambda dp, dx: ({**dp, "W": dp["W"].T}, dx), "params['W']", "transposed"),
    "db averaged over N = 5": (lambda dp, dx: ({**dp, "b": dp["b"] / 5}, dx), "params['b']", "a missing or extra 1/N"),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_classic_slips_keep_their_diagnosis(x64, name):
    """Diagnoses that already work and must survive the fixes above."""
    fn, label, kind = REGRESSIONS[name]
    dense, params = L.dense(4), {"W": _normal(1, (4, 4)), "b": _normal(2, (4,), 0.1)}
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_layer(dense._replace(backward=lambda c, dy: fn(*dense.backward(c, dy))), _normal(0, (5, 4)),
                              params)
    assert _kinds(e.value)[label] == kind and kind in str(e.value).splitlines()[0], str(e.value)


# ============================================================================ 11. part of the entries

def _tanh_rule(fix):
    """tanh with its rule's dx passed through ``fix`` (a planted slip on some entries)."""
    return _learner(lambda p, x, key=None: (jnp.tanh(x), x),
                    lambda x, dy: ({}, fix(dy * (1 - jnp.tanh(x) ** 2))))


# name -> (layer, diagnosis kind, what the text must say)
PARTIAL = {
    "leaky ReLU slope forgotten on x < 0": (
        _learner(lambda p, x, key=None: (jnp.where(x > 0, x, 0.1 * x), x), lambda x, dy: ({}, dy)),
        "factor on part of the entries", "same factor 10"),
    "last example's dx never written": (_tanh_rule(lambda d: d.at[-1].set(0.0)),
                                        "factor on part of the entries", "index 3 of axis 0"),
    "one column doubled": (_tanh_rule(lambda d: d.at[:, 2].multiply(2.0)),
                           "factor on part of the entries", "index 2 of axis 1"),
    "dx shifted by one column": (_tanh_rule(lambda d: jnp.roll(d, 1, axis=1)), "no known pattern", "20 of 20"),
}


@pytest.mark.parametrize("name", list(PARTIAL))
def test_a_slip_on_part_of_the_entries_is_located(x64, name):
    """A rule right on most entries and off on some (a forgotten leaky slope, an unwritten row, one
    column scaled) was "no known pattern"; the checker now says which entries and by what factor
    (float64, the default tolerances, x (4, 5) standard normal)."""
    layer, kind, says = PARTIAL[name]
    with pytest.raises(GradientCheckError) as e:
        gradcheck.check_layer(layer, _normal(0, (4, 5)))
    d = e.value.diagnoses[("jax.vjp", "dx")]
    assert d.kind == kind and says in d.text, d


# A leaf can fail the norm-wise check with every entry inside the element-wise tolerance (a scale
# just off 1 in float32: element-wise 1e-2, norm-wise 1e-5). Its diagnosis must still name the
# factor, and a spread of small differences must not be called a factor nor "0 entries differ".
NEAR_ONE = {   # name: (dtype, hand from the reference r and a noise draw n, diagnosis kind, text)
    "float32 x 1.0001": (jnp.float32, lambda r, n: r * 1.0001, "constant factor", "constant factor 1.0001"),
    "float32 x 1.001": (jnp.float32, lambda r, n: r * 1.001, "constant factor", "constant factor 1.001"),
    "float64 x (1 + 1e-8)": (F64, lambda r, n: r * (1 + 1e-8), "constant factor", "constant factor 1 + 1e-08"),
    "float64 x (1 - 3e-9)": (F64, lambda r, n: r * (1 - 3e-9), "constant factor", "constant factor 1 − 3e-09"),
    "float32 relative noise 2e-4": (jnp.float32, lambda r, n: r * (1 + 2e-4 * n), "no known pattern",
                                    "no entry of 200 is off by more than the element-wise tolerance 0.01, but "
                                    "together they fail the norm-wise check"),
}


@pytest.mark.parametrize("name", list(NEAR_ONE))
def test_a_leaf_failing_only_the_norm_wise_check_is_diagnosed(x64, name):
    dtype, make, kind, text = NEAR_ONE[name]
    rng = np.random.default_rng(0)
    r = jnp.asarray(rng.normal(size=(20, 10)), dtype)
    hand = make(r, jnp.asarray(rng.normal(size=(20, 10)), dtype)).astype(dtype)
    with pytest.raises(GradientCheckError) as e:
        gradcheck.compare({"W": hand}, {"W": r})
    msg = str(e.value)
    assert f"params['W'] {kind}" in msg.splitlines()[0] and text in msg, msg
    assert "0 of 200 entries differ" not in msg


def test_one_differing_entry_is_not_called_a_factor_on_part_of_the_entries(x64):
    """One number is always some multiple of another: a single bad entry says nothing about a
    factor (it was called "the 1 are off by the same factor 0.976")."""
    r = _normal(0, (20, 10))
    hand = r.at[5, 2].set(r[5, 2] * 1.7)
    with pytest.raises(GradientCheckError) as e:
        gradcheck.compare({"W": hand}, {"W": r})
    assert "no known pattern: 1 of 200 entries differ" in str(e.value) and "same factor" not in str(e.value)
