"""The reference oracles (doc 002's network as scalar Python, NumPy per example, NumPy batched)
agree with the JAX model ``models.mlp([d, h, K], activation="sigmoid")``."""
import math

import jax
import numpy as np
import pytest

from jaxnets import models
from experiments._lib import oracles as ref

D, H, K, N = 5, 4, 3, 7


@pytest.fixture
def problem():
    rng = np.random.default_rng(3)
    params = ref.init_params(D, H, K, seed=1)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, K, N)
    return params, X, y


@pytest.fixture(scope="module")
def net():
    return models.mlp([D, H, K], activation="sigmoid", loss="softmax_cross_entropy")


def _close(a, b, tol=1e-12):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=tol, atol=tol)


def _library_epoch(net, params, X, y, lr, batch_size):
    step = jax.jit(net.backprop)
    p = params
    for s in range(0, X.shape[0], batch_size):
        _, g = step(p, X[s:s + batch_size], y[s:s + batch_size])
        p = jax.tree.map(lambda w, gw: w - lr * gw, p, g)
    return jax.tree.map(np.asarray, p)


def test_loss_and_grads_agree_with_jax_model(x64, problem, net):
    params, X, y = problem
    loss_j, grads_j = jax.jit(net.backprop)(params, X, y)
    loss_s, grads_s = ref.scalar_loss_and_grads(ref.to_lists(params), X, y)
    loss_e, grads_e = ref.example_loss_and_grads(params, X, y)
    loss_b, grads_b = ref.batched_loss_and_grads(params, X, y)
    for loss, grads in ((loss_s, ref.from_lists(grads_s)), (loss_e, grads_e), (loss_b, grads_b)):
        assert abs(float(loss) - float(loss_j)) < 1e-12
        _close(grads, grads_j)
    assert abs(ref.batched_loss(params, X, y) - float(loss_j)) < 1e-12
    assert abs(np.mean([ref.scalar_loss(ref.to_lists(params), x, int(t)) for x, t in zip(X.tolist(), y)])
               - float(loss_j)) < 1e-12


def test_forward_agrees(x64, problem, net):
    params, X, _ = problem
    p_j = np.asarray(jax.nn.softmax(net.apply(params, X), axis=-1))
    _, p_b = ref.batched_forward(params, X)
    _, p_e = ref.example_forward(params, X[0])
    _, p_s = ref.scalar_forward(ref.to_lists(params), X[0].tolist())
    np.testing.assert_allclose(p_b, p_j, atol=1e-14)
    np.testing.assert_allclose(p_e, p_j[0], atol=1e-14)
    np.testing.assert_allclose(p_s, p_j[0], atol=1e-14)


def test_one_sgd_epoch_gives_the_same_params(x64, problem, net):
    params, X, y = problem
    lr = 0.3
    # minibatches of 3 over 7 examples: a ragged last batch of 1, averaged over its own example
    lib = _library_epoch(net, params, X, y, lr, 3)
    _, p_b = ref.batched_sgd_epoch(params, X, y, lr, 3)
    _, p_e = ref.example_sgd_epoch(params, X, y, lr, 3)
    _close(p_b, lib)
    _close(p_e, lib)
    # per-example SGD (batch 1), scalar Python
    lib1 = _library_epoch(net, params, X, y, lr, 1)
    _, p_s = ref.scalar_sgd_epoch(ref.to_lists(params), X, y, lr)
    _close(ref.from_lists(p_s), lib1)
    _, p_b1 = ref.batched_sgd_epoch(params, X, y, lr, 1)
    _close(p_b1, lib1)
    # the input params are not modified
    _close(params, ref.init_params(D, H, K, seed=1), tol=0)


def test_batched_keeps_float32(problem):
    params, X, y = problem
    p32 = ref.to_numpy(params, np.float32)
    X32 = X.astype(np.float32)
    loss, p_new = ref.batched_sgd_epoch(p32, X32, y, 0.1, 2)
    assert all(v.dtype == np.float32 for v in jax.tree.leaves(p_new))
    _, p64 = ref.batched_sgd_epoch(params, X, y, 0.1, 2)
    _close(p_new, p64, tol=1e-5)
    with pytest.raises(ValueError, match="dtype"):
        ref.batched_sgd_epoch(p32, X, y, 0.1, 2)


def test_scalar_train_samples_with_replacement_and_learns():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    p0 = ref.to_lists(ref.init_params(2, 3, 2, seed=0))
    p1, hist = ref.scalar_train(p0, X, y, lr=0.5, epochs=15, seed=7)
    p2, hist2 = ref.scalar_train(p0, X, y, lr=0.5, epochs=15, seed=7)
    assert hist == hist2 and p1 == p2                 # deterministic given the seed
    assert len(hist) == 15 and hist[-1] < 0.5 * hist[0]
    _, hist3 = ref.scalar_train(p0, X, y, lr=0.5, epochs=15, seed=8)
    assert hist3 != hist                             # the sampler really depends on the seed


def test_stability_and_errors():
    assert ref.scalar_sigmoid(-1000.0) == 0.0 and ref.scalar_sigmoid(1000.0) == 1.0
    params = ref.to_lists([{"W": np.full((2, 2), 500.0), "b": np.zeros(2)},
                           {"W": np.array([[400.0, -400.0], [400.0, -400.0]]), "b": np.zeros(2)}])
    loss = ref.scalar_loss(params, [1.0, 1.0], 1)
    assert math.isfinite(loss) and abs(loss - 1600.0) < 1e-9
    with pytest.raises(ValueError, match="label"):
        ref.scalar_backward(params, [1.0, 1.0], 2)
    p = ref.init_params(2, 2, 2)
    with pytest.raises(ValueError, match="labels"):
        ref.batched_loss_and_grads(p, np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="features"):
        ref.scalar_forward(ref.to_lists(p), [1.0, 2.0, 3.0])
