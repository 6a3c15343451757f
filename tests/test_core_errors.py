"""Bad input gets a ValueError that says what was expected — eagerly and at trace time."""
import jax
import jax.numpy as jnp
import pytest

from jaxnets.nn import initializers, layers, losses
from jaxnets import models

NET = models.mlp([4, 3, 2])
PARAMS = NET.init(jax.random.key(0))
X = jnp.ones((5, 4))
Y = jnp.array([0, 1, 1, 0, 1])


@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="softplus"), "unknown activation 'softplus'"),
    (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(output_activation="exp"), "unknown activation 'exp'"),
    (dict(init="orthogonal"), "unknown init scheme 'orthogonal'"),
])
def test_unknown_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mlp([4, 3, 2], **kwargs)


@pytest.mark.parametrize("x,match", [
    (jnp.ones((5, 3)), r"expected x of shape \(N, 4\)"),
    (jnp.ones((4,)), r"expected x of shape \(N, 4\)"),
    (jnp.ones((5, 4), jnp.int32), "floating-point"),
])
def test_bad_inputs_eager_and_traced(x, match):
    with pytest.raises(ValueError, match=match):
        NET.apply(PARAMS, x)
    with pytest.raises(ValueError, match=match):
        jax.jit(NET.apply)(PARAMS, x)


@pytest.mark.parametrize("y,match", [
    (jnp.array([0, 1, 2, 0, 1]), r"labels must lie in \[0, 2\); found \[2\]"),
    (jnp.array([0, -1, 1, 0, 1]), r"labels must lie in \[0, 2\)"),
    (jnp.array([0, 1, 1]), r"expected integer labels of shape \(5,\)"),
    (jnp.ones((5, 3)), r"expected targets of shape \(5, 2\)"),
])
def test_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        NET.loss(PARAMS, X, y)
    with pytest.raises(ValueError, match=match):
        NET.backprop(PARAMS, X, y)


def test_shape_errors_fire_at_trace_time_too():
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(5,\)"):
        jax.jit(NET.loss)(PARAMS, X, jnp.array([0, 1]))


def test_logistic_labels_must_be_pm1():
    with pytest.raises(ValueError, match=r"-1 or \+1"):
        losses.logistic_forward(jnp.zeros((3, 1)), jnp.array([1.0, 0.0, -1.0]))


def test_bad_sizes():
    with pytest.raises(ValueError, match="sizes"):
        models.mlp([4])


def test_params_are_plain_list_of_dicts_with_documented_shapes():
    net = models.mlp([784, 256, 10], activation="relu", loss="softmax_cross_entropy")
    params = net.init(jax.random.key(0))
    assert isinstance(params, list) and [sorted(p) for p in params] == [["W", "b"]] * 2
    assert params[0]["W"].shape == (784, 256) and params[1]["b"].shape == (10,)
    assert net.apply(params, jnp.zeros((3, 784))).shape == (3, 10)
    assert models.count_params(params) == 784 * 256 + 256 + 2570


@pytest.mark.parametrize("scheme,kw,check", [
    ("zeros", {}, lambda W, b: float(jnp.abs(W).max()) == 0 and float(jnp.abs(b).max()) == 0),
    ("normal", {"std": 0.1}, lambda W, b: 0.08 < float(W.std()) < 0.12 and float(jnp.abs(b).max()) > 0),
    ("scaled_normal", {"std": 1e-4}, lambda W, b: 0.8e-4 < float(W.std()) < 1.2e-4 and float(jnp.abs(b).max()) == 0),
    ("standard_normal", {}, lambda W, b: 0.9 < float(W.std()) < 1.1),
    ("he", {}, lambda W, b: abs(float(W.std()) - (2 / 300) ** 0.5) < 0.01),
])
def test_init_schemes(scheme, kw, check):
    W, b = initializers.get(scheme, **kw)(jax.random.key(0), (300, 200), (200,), 300, 200)
    assert check(W, b)
