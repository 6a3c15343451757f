"""doc 003 Problem 2 mini CNN: closed-form gradients vs jax.grad and finite differences (including
inputs where a ReLU is inactive), equivalence with conv1d + ReLU + dense, and the SGD algorithm."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn import conv
from jaxnets import gradcheck
from jaxnets.models import minicnn
from jaxnets.nn import layers as L

AUTODIFF_TOL = 1e-10
FD_TOL = 1e-6


def _p(w, v):
    return {"w": jnp.asarray(w, jnp.float64), "v": jnp.asarray(v, jnp.float64)}


def _fd(f, params, eps=1e-6):
    out = {}
    for k in ("w", "v"):
        g = []
        for j in range(2):
            e = jnp.zeros(2, jnp.float64).at[j].set(eps)
            g.append((f({**params, k: params[k] + e}) - f({**params, k: params[k] - e})) / (2 * eps))
        out[k] = jnp.stack(g)
    return out


def _doc_closed_form(params, x, y):
    """doc 003's expressions for one example, written out scalar by scalar."""
    (w1, w2), (v1, v2) = [float(t) for t in params["w"]], [float(t) for t in params["v"]]
    x1, x2, x3 = [float(t) for t in x]
    a1, a2 = x1 * w1 + x2 * w2, x2 * w1 + x3 * w2
    o1, o2 = max(a1, 0.0), max(a2, 0.0)
    yhat = o1 * v1 + o2 * v2
    s = 1.0 / (1.0 + np.exp(y * yhat))                    # σ(−y ŷ)
    r1, r2 = float(a1 > 0), float(a2 > 0)
    return {"w": [-y * s * (v1 * r1 * x1 + v2 * r2 * x2), -y * s * (v1 * r1 * x2 + v2 * r2 * x3)],
            "v": [-y * s * o1, -y * s * o2]}


# (params, x, y, which ReLUs are active)
CASES = [
    (([0.3, -0.2], [0.7, -1.1]), [1.0, 0.5, -2.0], 1.0, (True, True)),
    (([0.3, -0.2], [0.7, -1.1]), [-1.0, 0.5, -2.0], -1.0, (False, True)),   # a1 < 0
    (([0.5, 0.4], [1.2, 0.3]), [1.0, 2.0, -3.0], 1.0, (True, False)),       # a2 < 0
    (([0.5, 0.4], [1.2, 0.3]), [-1.0, -2.0, -0.5], -1.0, (False, False)),   # both inactive
]


@pytest.mark.parametrize("params,x,y,active", CASES)
def test_closed_form_equals_autodiff_and_fd(x64, params, x, y, active):
    params, x = _p(*params), jnp.asarray(x, jnp.float64)
    _, (_, a, _, _) = minicnn.forward(params, x)
    assert tuple(bool(t) for t in a[0] > 0) == active
    value, g = minicnn.grads(params, x, jnp.asarray([y], jnp.float64))
    doc = _doc_closed_form(params, x, y)
    np.testing.assert_allclose(g["w"], doc["w"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g["v"], doc["v"], rtol=1e-13, atol=1e-15)
    lval, auto = minicnn.grad_autodiff(params, x, jnp.asarray([y], jnp.float64))
    assert abs(float(value) - float(lval)) < 1e-14
    gradcheck.compare(g, auto, "jax.grad", AUTODIFF_TOL)
    fd = _fd(lambda p: minicnn.loss(p, x, jnp.asarray([y], jnp.float64)), params)
    for k in ("w", "v"):      # an inactive unit's gradient is exactly 0: compare absolutely there
        np.testing.assert_allclose(g[k], fd[k], rtol=FD_TOL, atol=1e-12)


def test_closed_form_on_random_batches(x64):
    rng = np.random.default_rng(0)
    for trial in range(5):
        params = _p(rng.standard_normal(2), rng.standard_normal(2))
        X = jnp.asarray(rng.standard_normal((16, 3)), jnp.float64)
        Y = jnp.asarray(rng.choice([-1.0, 1.0], 16), jnp.float64)
        _, (_, a, _, _) = minicnn.forward(params, X)
        assert float(jnp.min(jnp.abs(a))) > 1e-6 and bool(jnp.any(a <= 0))   # some ReLUs off
        _, g = minicnn.grads(params, X, Y)
        # the batch gradient is the mean of the document's per-example expressions
        per_ex = [_doc_closed_form(params, X[i], float(Y[i])) for i in range(16)]
        for k in ("w", "v"):
            np.testing.assert_allclose(g[k], np.mean([d[k] for d in per_ex], axis=0), rtol=1e-12)
        gradcheck.compare(g, minicnn.grad_autodiff(params, X, Y)[1], "jax.grad", AUTODIFF_TOL)


def test_relu_kink_derivative_is_zero(x64):
    params = _p([1.0, -1.0], [2.0, 3.0])
    x = jnp.asarray([1.0, 1.0, 0.5], jnp.float64)          # a1 = 0 exactly, a2 = 0.5
    _, g = minicnn.grads(params, x, jnp.asarray([1.0], jnp.float64))
    doc = _doc_closed_form(params, x, 1.0)                   # uses 1[a > 0]
    np.testing.assert_allclose(g["w"], doc["w"], rtol=1e-14)
    assert float(g["v"][0]) == 0.0
    # jax.grad of the forward takes the same derivative at the kink (ReLU'(0) = 0, doc 001)
    gradcheck.compare(g, minicnn.grad_autodiff(params, x, jnp.asarray([1.0], jnp.float64))[1],
                      "jax.grad", AUTODIFF_TOL)


def test_minicnn_is_conv1d_relu_dense(x64):
    """The mini CNN is conv1d (L=3, k=2, 1→1 channel, zero bias) + ReLU + bias-free dense."""
    rng = np.random.default_rng(1)
    params = _p(rng.standard_normal(2), rng.standard_normal(2))
    X = jnp.asarray(rng.standard_normal((8, 3)), jnp.float64)
    Y = jnp.asarray(rng.choice([-1.0, 1.0], 8), jnp.float64)
    layer = L.serial(conv.conv1d(1, 2, activation="relu"), conv.flatten(), L.dense(1))
    lp = [{"W": params["w"].reshape(2, 1, 1), "b": jnp.zeros(1, jnp.float64)}, {},
          {"W": params["v"].reshape(2, 1), "b": jnp.zeros(1, jnp.float64)}]
    s, cache = layer.forward(lp, X[:, :, None])
    np.testing.assert_allclose(s[:, 0], minicnn.apply(params, X), rtol=1e-14)
    # and the generic hand-written layer backward reproduces the closed forms
    from jaxnets.nn import losses
    value, lc = losses.logistic_forward(s, Y)
    g_layers, _ = layer.backward(cache, losses.logistic_backward(lc))
    _, g = minicnn.grads(params, X, Y)
    np.testing.assert_allclose(g_layers[0]["W"].reshape(2), g["w"], rtol=1e-12)
    np.testing.assert_allclose(g_layers[2]["W"].reshape(2), g["v"], rtol=1e-12)


def test_sgd_updates_all_parameters_from_old_values(x64):
    X, Y, _ = minicnn.synthetic_pattern_data(jax.random.key(0), 50, jnp.float64)
    params = _p([0.1, -0.2], [0.3, 0.05])
    new, hist = minicnn.sgd(params, X, Y, jax.random.key(1), num_steps=1, lr=0.5)
    i = int(hist.index[0])
    _, g = minicnn.grads(params, X[i], Y[i:i + 1])          # gradients at the old parameters
    np.testing.assert_allclose(new["w"], params["w"] - 0.5 * g["w"], rtol=1e-14)
    np.testing.assert_allclose(new["v"], params["v"] - 0.5 * g["v"], rtol=1e-14)


def test_sgd_learns_pattern_and_does_not_retrace():
    X, Y, teacher = minicnn.synthetic_pattern_data(jax.random.key(0), 400)
    assert 0.3 < float(jnp.mean(Y > 0)) < 0.7
    params = minicnn.init(jax.random.key(1))
    before = minicnn._sgd_scan_jit._cache_size()
    p1, h1 = minicnn.sgd(params, X, Y, jax.random.key(2), num_steps=3000, lr=0.2)
    p2, h2 = minicnn.sgd(p1, X, Y, jax.random.key(3), num_steps=3000, lr=0.2)
    assert minicnn._sgd_scan_jit._cache_size() - before <= 1     # second call reused the trace
    assert float(h2.train_loss[-1]) < 0.5 * float(minicnn.loss(params, X, Y))
    acc = float(jnp.mean(minicnn.predict(p2, X) == Y))
    assert acc > 0.9
    assert h1.index.shape == (3000,) and bool(jnp.all((h1.index >= 0) & (h1.index < 400)))


def test_shape_errors():
    with pytest.raises(ValueError, match="expected x of shape"):
        minicnn.forward(minicnn.init(jax.random.key(0)), jnp.zeros((4, 5)))


def test_model_contract(x64):
    """minicnn.model(): the same network as a composition of library layers behind the Model
    contract; its hand-written backprop (the layers' generic chain rule through the logistic head)
    equals the document's closed forms (the oracle) and jax.grad, with a mask and L2; predict is
    the sign; L2 reaches w and v (both weights: the penalty is λ(‖w‖² + ‖v‖²))."""
    from jaxnets import models
    m = minicnn.model()
    assert isinstance(m, models.Model) and m.in_shape == (3,) and m.out_shape == (1,)
    assert m.head.labels == "sign" and not m.stochastic and m.input_dtype == "float"
    X, Y, _ = minicnn.synthetic_pattern_data(jax.random.key(0), 12, jnp.float64)
    doc = minicnn.init(jax.random.key(1), jnp.float64)
    params = minicnn.to_layer_params(doc)
    assert jax.tree.structure(params) == jax.tree.structure(m.init(jax.random.key(1), jnp.float64))
    assert abs(float(m.loss(params, X, Y)) - float(minicnn.loss(doc, X, Y))) < 1e-14
    _, g_doc = minicnn.grads(doc, X, Y)
    gradcheck.compare(minicnn.from_layer_params(m.backprop(params, X, Y)[1]), g_doc, "closed form", 1e-12)
    mask = (jnp.arange(12) % 3 != 0).astype(jnp.float64)
    (lh, gh), (la, ga) = m.backprop(params, X, Y, 0.2, mask), m.grad_autodiff(params, X, Y, 0.2, mask)
    assert abs(float(lh - la)) < 1e-14
    gradcheck.compare(gh, ga, "jax.grad", AUTODIFF_TOL)
    l2_part = float(m.loss(params, X, Y, 0.2)) - float(m.loss(params, X, Y))
    assert abs(l2_part - 0.2 * float(jnp.sum(doc["w"] ** 2) + jnp.sum(doc["v"] ** 2))) < 1e-14
    np.testing.assert_array_equal(m.predict(params, X), minicnn.predict(doc, X))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        m.apply(params, jnp.zeros((2, 4)))


def test_fit_trains_the_model():
    """train.fit takes the mini CNN like any model (logistic head, ±1 labels, sign predictions)."""
    from jaxnets import train
    X, Y, _ = minicnn.synthetic_pattern_data(jax.random.key(0), 200)
    m = minicnn.model()
    params = m.init(jax.random.key(1))
    res = train.fit(m, params, (X, Y), epochs=5, batch_size=10, optimizer=train.sgd(0.5), key=jax.random.key(2),
                    progress=False)
    assert res.history["train_loss"][-1] < 0.7 * float(m.loss(params, X, Y))
    acc = float(np.mean(np.asarray(m.predict(res.params, X)) == np.asarray(Y)))
    assert abs(res.history["train_acc"][-1] - acc) < 1e-6 and acc > 0.9     # float32 mean of 200
