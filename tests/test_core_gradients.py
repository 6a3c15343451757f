"""Hand-written backward rules vs jax.grad (float64, rel. error < 1e-10) and central differences
(float64, < 1e-6) for every activation, loss, dense layer and MLPs of depth 1–4."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxnets import gradcheck
from jaxnets.nn import layers, losses
from jaxnets import models

AUTODIFF_TOL = 1e-10   # float64
NUMERIC_TOL = 1e-6     # float64, eps = 1e-6


def _off_kink(x, margin=0.05):
    """Push values away from 0 so ReLU's kink never sits inside a finite-difference step."""
    return jnp.where(jnp.abs(x) < margin, jnp.sign(x + 1e-12) * margin + x, x)


ACTIVATION_CASES = ["sigmoid", "relu", "tanh", "identity"]


@pytest.mark.parametrize("name", ACTIVATION_CASES)
def test_activation_backward(x64, name):
    layer = layers.activation(name)
    x = _off_kink(jax.random.normal(jax.random.key(1), (4, 5), jnp.float64) * 2)
    dy = jax.random.normal(jax.random.key(2), (4, 5), jnp.float64)
    y, cache = layer.forward({}, x)
    dp, hand = layer.backward(cache, dy)
    assert dp == {} and layer.init(None, (5,))[0] == (5,)
    auto = jax.vjp(lambda z: layer.forward({}, z)[0], x)[1](dy)[0]
    assert gradcheck.rel_error(hand, auto) < AUTODIFF_TOL
    num = gradcheck.numerical_grad(lambda z: jnp.sum(layer.forward({}, z)[0] * dy), x, eps=1e-6)
    assert gradcheck.rel_error(hand, num) < NUMERIC_TOL


def test_relu_kink_derivative_is_zero(x64):
    """doc 001: ReLU'(0) = 0, in the hand rule and in jax.grad of the forward (jnp.maximum(x, 0)
    alone would give 0.5 there)."""
    x = jnp.array([[-1.0, 0.0, 1.0]])
    _, cache = layers.relu_forward(x)
    np.testing.assert_array_equal(layers.relu_backward(cache, jnp.ones_like(x)), [[0.0, 0.0, 1.0]])
    auto = jax.grad(lambda z: jnp.sum(layers.relu_forward(z)[0]))(x)
    np.testing.assert_array_equal(auto, [[0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(layers.relu_forward(x)[0], jnp.maximum(x, 0))   # same values


def _targets(loss, key, N, K):
    """(targets, score shape) of one loss head; token_cross_entropy scores 3 positions each."""
    if loss == "logistic":
        return jnp.where(jax.random.bernoulli(key, 0.5, (N,)), 1.0, -1.0), (N, 1)
    if loss in ("half_sse", "mse"):
        return jax.random.normal(key, (N, K), jnp.float64), (N, K)
    if loss == "token_cross_entropy":
        return jax.random.randint(key, (N, 3), 0, K), (N, 3, K)
    return jax.random.randint(key, (N,), 0, K), (N, K)


LOSS_CASES = [(loss, masked) for loss in losses.LOSSES for masked in (False, True)]


@pytest.mark.parametrize("loss,masked", LOSS_CASES)
def test_loss_backward(x64, loss, masked):
    head = losses.get(loss)
    k1, k2 = jax.random.split(jax.random.key(3))
    y, shape = _targets(loss, k1, 6, 4)
    # token CE averages 18 positions: unit-scale logits keep every gradient entry far above the
    # ~1e-10 round-off of a central difference (an entry of 2e-4 would read as a 1e-6 error)
    s = jax.random.normal(k2, shape, jnp.float64) * (1 if loss == "token_cross_entropy" else 3)
    mask = jnp.array([1, 1, 0, 1, 0, 1], jnp.float64) if masked else None
    value, cache = head.forward(s, y, mask)
    hand = head.backward(cache)
    auto = jax.grad(lambda z: head.forward(z, y, mask)[0])(s)
    assert gradcheck.rel_error(hand, auto) < AUTODIFF_TOL
    num = gradcheck.numerical_grad(lambda z: head.forward(z, y, mask)[0], s, eps=1e-6)
    assert gradcheck.rel_error(hand, num) < NUMERIC_TOL
    # the cache crosses a jit boundary (forward and backward compiled apart): the same gradient
    jcache = jax.jit(head.forward)(s, y, mask)[1]
    assert gradcheck.rel_error(jax.jit(head.backward)(jcache), hand) < AUTODIFF_TOL


# head name, scores, the classes its predict must return
PREDICT_CASES = [
    ("softmax_cross_entropy", [[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], [1, 0]),
    ("half_sse", [[0.1, 2.0, -1.0], [0.0, 0.0, 5.0]], [1, 2]),
    ("logistic", [[0.5], [-0.25], [0.0]], [1, -1, 1]),      # the sign, +1 at a score of 0
    ("token_cross_entropy", [[[0.0, 1.0], [2.0, -1.0]]], [[1, 0]]),
]


@pytest.mark.parametrize("loss,scores,expected", PREDICT_CASES)
def test_head_predict(loss, scores, expected):
    pred = losses.get(loss).predict(jnp.asarray(scores, jnp.float32))
    np.testing.assert_array_equal(pred, expected)


def test_masked_loss_equals_loss_on_real_rows(x64):
    s = jax.random.normal(jax.random.key(0), (5, 3), jnp.float64)
    y = jnp.array([0, 2, 1, 1, 0])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0])
    full, _ = losses.softmax_cross_entropy_forward(s[:3], y[:3])
    masked, _ = losses.softmax_cross_entropy_forward(s, y, mask)
    assert abs(float(full - masked)) < 1e-14


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    s = jnp.array([[1e4, 0.0, -1e4], [0.0, 1e30, 0.0]], jnp.float32)
    value, cache = losses.softmax_cross_entropy_forward(s, jnp.array([0, 0]))
    assert np.isfinite(float(value)) and abs(float(value) - 0.5e30) / 0.5e30 < 1e-6
    assert np.all(np.isfinite(np.asarray(losses.softmax_cross_entropy_backward(cache))))


def test_dense_backward(x64):
    layer = layers.dense(3, "tanh")
    _, p = layer.init(jax.random.key(0), (4,), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
    dy = jax.random.normal(jax.random.key(2), (5, 3), jnp.float64)
    y, cache = layer.forward(p, x)
    dp, dx = layer.backward(cache, dy)
    ap, ax = jax.vjp(lambda p_, x_: layer.forward(p_, x_)[0], p, x)[1](dy)
    gradcheck.compare(dp, ap, tol=AUTODIFF_TOL)
    assert gradcheck.rel_error(dx, ax) < AUTODIFF_TOL


MLP_CASES = [
    # (sizes, activation, loss, output_activation, l2)
    ([4, 3], "identity", "softmax_cross_entropy", "identity", 0.0),
    ([4, 5, 3], "sigmoid", "softmax_cross_entropy", "identity", 0.01),
    ([4, 5, 3], "relu", "half_sse", "identity", 0.05),
    ([4, 5, 6, 3], "tanh", "mse", "identity", 0.0),
    ([3, 2, 1], "sigmoid", "half_sse", "sigmoid", 0.0),
    ([5, 4, 4, 4, 2], "relu", "softmax_cross_entropy", "identity", 0.1),
    ([3, 4, 1], "relu", "logistic", "identity", 0.02),
] + [([4, 5, 3], a, l, "identity", 0.01) for a, l in itertools.product(
    ["sigmoid", "relu", "tanh", "identity"], ["softmax_cross_entropy", "half_sse", "mse"])]


def _mlp_batch(key, sizes, loss, N=6):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (N, sizes[0]), jnp.float64)
    y, _ = _targets(loss, ky, N, sizes[-1])
    return x, y


@pytest.mark.parametrize("sizes,act,loss,out_act,l2", MLP_CASES)
def test_mlp_hand_vs_autodiff_vs_numeric(x64, sizes, act, loss, out_act, l2):
    net = models.mlp(sizes, act, loss, out_act, init="normal", std=0.7)
    params = net.init(jax.random.key(7), jnp.float64)
    x, y = _mlp_batch(jax.random.key(8), sizes, loss)
    if act == "relu":  # keep every pre-activation off the kink
        for p in params[:-1]:
            p["b"] = p["b"] + 0.013
    report = gradcheck.check_model(net, params, x, y, l2=l2, autodiff_tol=AUTODIFF_TOL,
                                   numeric_tol=NUMERIC_TOL)
    assert set(report["autodiff"]) == set(report["numeric"])


@settings(deadline=None, max_examples=8)
@given(depth=st.integers(1, 4), width=st.sampled_from([3, 7]), n=st.sampled_from([2, 5]),
       act=st.sampled_from(["sigmoid", "tanh", "relu"]), seed=st.integers(0, 2**16))
def test_mlp_random_shapes_hand_equals_autodiff(depth, width, n, act, seed):
    with jax.enable_x64(True):
        sizes = [4] + [width] * (depth - 1) + [3]
        net = models.mlp(sizes, act, "softmax_cross_entropy", init="normal", std=0.5)
        params = net.init(jax.random.key(seed), jnp.float64)
        x, y = _mlp_batch(jax.random.key(seed + 1), sizes, "softmax_cross_entropy", n)
        _, hand = net.backprop(params, x, y, 0.03)
        _, auto = net.grad_autodiff(params, x, y, 0.03)
        gradcheck.compare(hand, auto, tol=AUTODIFF_TOL)


def _old_name_rule_penalty(params):
    """The penalty as the library computed it before decay masks: Σ‖v‖² over the leaves stored
    under a dict key starting with "W", in flatten order (the reference for bit-identity)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum((jnp.sum(v * v) for p, v in leaves
                if isinstance(p[-1], jax.tree_util.DictKey) and str(p[-1].key).startswith("W")), start=0.0)


def _decay_models():
    from jaxnets.models import cnn, transformer as tr
    return {"mlp": models.mlp([5, 4, 3]), "cnn3": cnn.cnn3(),
            "transformer": tr.transformer(tr.TransformerConfig(7, 4, 8, 2, 2))}


@pytest.mark.parametrize("name", ["mlp", "cnn3", "transformer"])
def test_decay_mask_gives_the_old_penalty_bit_for_bit(x64, name):
    """model.decay(params) has params' structure, marks exactly the weight matrices (every leaf
    under a "W…" key, nothing else), and the penalty it gives is bit-identical to the name rule's."""
    model = _decay_models()[name]
    params = model.init(jax.random.key(0), jnp.float64)
    mask = model.decay(params)
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [str(p[-1].key) if isinstance(p[-1], jax.tree_util.DictKey) else "" for p, _ in paths]
    assert jax.tree.leaves(mask) == [n.startswith("W") for n in names]
    assert float(losses.l2_penalty(params, mask)) == float(_old_name_rule_penalty(params))
    g = losses.l2_penalty_grad(params, mask)
    for (_, v), m, d in zip(paths, jax.tree.leaves(mask), jax.tree.leaves(g)):
        np.testing.assert_array_equal(d, 2 * v if m else jnp.zeros_like(v))


def test_l2_on_a_model_with_nothing_to_decay_is_an_error(x64):
    """A model whose layers mark no weight refuses l2 != 0 (eagerly and with a traced l2, as a
    sweep passes it), instead of silently adding nothing; l2 = 0 still works."""
    model = models.sequential(layers.serial(layers.activation("tanh"), layers.dropout(0.0)), "mse", (3,),
                              name="gains_only")
    x, y = jnp.ones((2, 3)), jnp.zeros((2, 3))
    for f in (model.loss, model.backprop, model.grad_autodiff):
        with pytest.raises(ValueError, match="gains_only: l2=0.5 .*no parameter of this model is marked"):
            f([{}, {}], x, y, 0.5)
        with pytest.raises(ValueError, match=r"gains_only: l2 != 0"):
            jax.jit(f)([{}, {}], x, y, jnp.asarray(0.5))
    assert float(model.loss([{}, {}], x, y, 0.0)) == float(model.loss([{}, {}], x, y))


def test_l2_never_touches_biases(x64):
    net = models.mlp([3, 4, 2], "sigmoid", "softmax_cross_entropy")
    params = net.init(jax.random.key(0), jnp.float64)
    x, y = jnp.ones((2, 3)), jnp.array([0, 1])
    _, g0 = net.backprop(params, x, y, 0.0)
    _, g1 = net.backprop(params, x, y, 0.5)
    for a, b, p in zip(g0, g1, params):
        np.testing.assert_allclose(b["b"], a["b"], rtol=0, atol=0)
        np.testing.assert_allclose(b["W"] - a["W"], 2 * 0.5 * p["W"], atol=1e-14)


def test_dropout_layer_composes_with_a_key(x64):
    """Dropout is a stochastic Layer: the model says so, a key turns it on (same mask in the
    hand-written and autodiff passes), key=None is the deterministic network."""
    drop = models.sequential(layers.serial(layers.dense(6, "tanh"), layers.dropout(0.4), layers.dense(3)),
                             "softmax_cross_entropy", (4,))
    plain = models.sequential(layers.serial(layers.dense(6, "tanh"), layers.activation("identity"),
                                            layers.dense(3)), "softmax_cross_entropy", (4,))
    assert drop.stochastic and not plain.stochastic
    params = drop.init(jax.random.key(0), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
    y = jnp.array([0, 1, 2, 1, 0])
    k = jax.random.key(2)
    (lh, gh), (la, ga) = drop.backprop(params, x, y, 0.1, None, k), drop.grad_autodiff(params, x, y, 0.1, None, k)
    assert abs(float(lh - la)) < 1e-14
    gradcheck.compare(gh, ga, tol=AUTODIFF_TOL)
    assert float(drop.loss(params, x, y, key=jax.random.key(3))) != float(lh)
    assert float(drop.loss(params, x, y)) == float(plain.loss(params, x, y))
    np.testing.assert_array_equal(drop.predict(params, x), plain.predict(params, x))
