"""doc 003 Problem 1: multiclass perceptron loss F_i and its 4-case gradient, Algorithm 1, and the
kernel perceptron (Algorithm 2) with linear / polynomial / RBF kernels."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import gradcheck
from jaxnets.models import perceptron as P


# ----------------------------------------------------------------------------- F_i and its gradient

# W rows are w_c; (W, x, y, expected F, expected gradient coefficients per class (× x))
LOSS_CASES = [
    # case 1: the true class wins with a margin: F = 0, gradient 0
    ([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], [1.0, 0.5], 0, 0.0, [0, 0, 0]),
    # cases 2–4: class 1 (true) loses to class 0: F = 2 − 0.5; ∇w_1 = −x, ∇w_0 = +x, ∇w_2 = 0
    ([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], [1.0, 0.5], 1, 1.5, [1, -1, 0]),
    # the best *wrong* class is the argmax over y ≠ y_i (class 2 here, not class 0)
    ([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]], [1.0, 1.0], 0, 3.0, [-1, 0, 1]),
]


@pytest.mark.parametrize("W,x,y,F,coef", LOSS_CASES)
def test_loss_and_four_case_gradient(x64, W, x, y, F, coef):
    W, x = jnp.asarray(W, jnp.float64), jnp.asarray(x, jnp.float64)
    assert float(P.perceptron_loss(W, x, y)) == pytest.approx(F)
    g = P.perceptron_loss_grad(W, x, y)
    np.testing.assert_array_equal(g, np.asarray(coef, float)[:, None] * np.asarray(x)[None, :])
    gradcheck.compare(g, jax.grad(P.perceptron_loss)(W, x, y), "jax.grad", 1e-12)


def test_loss_gradient_batch_vs_autodiff(x64):
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.standard_normal((4, 6)), jnp.float64)
    X = jnp.asarray(rng.standard_normal((30, 6)), jnp.float64)
    y = jnp.asarray(rng.integers(0, 4, 30))
    g = P.perceptron_loss_grad(W, X, y)
    gradcheck.compare(g, jax.grad(P.perceptron_loss)(W, X, y), "jax.grad", 1e-12)
    # F = 0 at the kink (true class tied with the best other): the zero subgradient is used
    Wt = jnp.asarray([[1.0, 0.0], [1.0, 0.0]], jnp.float64)
    assert float(jnp.max(jnp.abs(P.perceptron_loss_grad(Wt, jnp.asarray([1.0, 2.0], jnp.float64), 0)))) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_gradient_vs_central_differences(x64, seed):
    """SPEC §1.4's third check for the perceptron too: the 4-case rule against central differences
    (float64, step 1e-5, relative tolerance 1e-6), on random W, x away from the kinks (every
    example's margin |w_y·x − max_{c≠y} w_c·x − 1| and every runner-up gap ≥ 1e-2, so no step of
    1e-5 changes which case an example is in)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((4, 6))
    X, y = rng.standard_normal((30, 6)), rng.integers(0, 4, 30)
    s = X @ W.T
    other = np.where(np.arange(4)[None, :] == y[:, None], -np.inf, s)
    top2 = np.sort(other, axis=1)[:, -2:]
    keep = (np.abs(s[np.arange(30), y] - top2[:, 1] - 1) >= 1e-2) & (top2[:, 1] - top2[:, 0] >= 1e-2)
    X, y = jnp.asarray(X[keep]), jnp.asarray(y[keep])
    assert len(y) >= 10 and float(P.perceptron_loss(jnp.asarray(W), X, y)) > 0   # some examples in each case
    g = np.asarray(P.perceptron_loss_grad(jnp.asarray(W), X, y))
    num = np.asarray(gradcheck.numerical_grad(lambda w: P.perceptron_loss(w, X, y), jnp.asarray(W), eps=1e-5))
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- Algorithm 1 ≡ linear Algorithm 2

@pytest.mark.parametrize("cache_gram", [True, False])
def test_linear_kernel_matches_algorithm_1(x64, cache_gram):
    """Same example sequence ⇒ identical predictions and mistakes at every step. Integer-valued
    features keep all arithmetic exact, so even argmax ties resolve identically."""
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.integers(-3, 4, (80, 5)), jnp.float64)
    y = jnp.asarray(rng.integers(0, 4, 80))
    key = jax.random.key(7)
    W, t1 = P.train_perceptron(X, y, 4, key, num_steps=400)
    model, t2 = P.kernel_perceptron(X, y, 4, "linear", key, num_steps=400, cache_gram=cache_gram)
    np.testing.assert_array_equal(t1.index, t2.index)
    np.testing.assert_array_equal(t1.pred, t2.pred)
    np.testing.assert_array_equal(t1.mistake, t2.mistake)
    assert 0 < int(t1.mistake.sum()) < 400
    np.testing.assert_array_equal(P.linear_weights(model), W)           # W = α X
    X_new = jnp.asarray(rng.integers(-3, 4, (50, 5)), jnp.float64)
    np.testing.assert_array_equal(P.predict(W, X_new), P.kernel_predict(model, X_new))
    assert (model.gram is not None) == cache_gram


def test_algorithm_1_is_sgd_on_F_when_no_ties(x64):
    """Without score ties an Algorithm 1 step equals an SGD step (lr 1) on F_i."""
    rng = np.random.default_rng(2)
    X = jnp.asarray(rng.standard_normal((20, 3)), jnp.float64)
    y = jnp.asarray(rng.integers(0, 3, 20))
    W0 = jnp.asarray(rng.standard_normal((3, 3)), jnp.float64)
    idx = jnp.arange(20)
    W, _ = P.train_perceptron(X, y, 3, W=W0, indices=idx)
    Wm = W0
    for i in range(20):
        Wm = Wm - P.perceptron_loss_grad(Wm, X[i], y[i])
    np.testing.assert_allclose(W, Wm, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- learning

def _separable(n=300, d=5, K=3, seed=3):
    rng = np.random.default_rng(seed)
    Wt = rng.standard_normal((K, d))
    X = rng.standard_normal((4 * n, d))
    s = X @ Wt.T
    top2 = np.sort(s, axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) > 0.3                             # margin
    X, y = X[keep][:n], np.argmax(s[keep], axis=1)[:n]
    return jnp.asarray(X, jnp.float32), jnp.asarray(y)


def test_perceptron_reaches_zero_training_errors_on_separable_data():
    X, y = _separable()
    W, key = None, jax.random.key(0)
    for epoch in range(100):
        key, k = jax.random.split(key)
        W, trace = P.train_perceptron(X, y, 3, k, W=W)
        if not bool(trace.mistake.any()):
            break
    assert float(P.accuracy(P.predict(W, X), y)) == 1.0
    assert epoch < 99


def _rings(n_per=100, seed=4):
    rng = np.random.default_rng(seed)
    r = np.concatenate([rng.uniform(0.0, 1.0, n_per), rng.uniform(1.5, 2.5, n_per), rng.uniform(3.0, 4.0, n_per)])
    t = rng.uniform(0, 2 * np.pi, 3 * n_per)
    X = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    y = np.repeat(np.arange(3), n_per)
    return jnp.asarray(X, jnp.float32), jnp.asarray(y)


def test_rbf_beats_linear_on_rings():
    X, y = _rings()
    X_te, y_te = _rings(seed=5)
    acc = {}
    for kernel, kw in [("linear", {}), ("rbf", {"gamma": 1.0}), ("poly", {"degree": 2, "gamma": 0.5})]:
        model = P.kernel_perceptron_init(X, 3, kernel, **kw)
        key = jax.random.key(0)
        for _ in range(10):
            key, k = jax.random.split(key)
            model, _ = P.train_kernel_perceptron(model, y, k)
        acc[kernel] = float(P.accuracy(P.kernel_predict(model, X_te), y_te))
    assert acc["rbf"] > 0.95 and acc["linear"] < 0.6, acc
    assert acc["poly"] > acc["linear"] + 0.2, acc
    assert P.num_support(model) < X.shape[0]


# ----------------------------------------------------------------------------- Gram matrix and jit

def test_gram_matrix_memory_and_refusal():
    X = jnp.zeros((100, 4), jnp.float32)
    assert P.gram_bytes(100, jnp.float32) == 40_000
    with pytest.raises(MemoryError, match=r"N=100 .*39\.1 KiB.*max_gram_bytes=1000 B.*cache_gram=False"):
        P.kernel_perceptron_init(X, 3, "rbf", cache_gram=True, max_gram_bytes=1000)
    m = P.kernel_perceptron_init(X, 3, "rbf", cache_gram="auto", max_gram_bytes=1000)
    assert m.gram is None and m.gram_bytes == 0                        # fell back to on-the-fly
    m = P.kernel_perceptron_init(X, 3, "rbf", cache_gram="auto")
    assert m.gram.shape == (100, 100) and m.gram_bytes == 40_000


def test_kernels_values(x64):
    A = jnp.asarray([[1.0, 2.0], [0.0, -1.0]], jnp.float64)
    B = jnp.asarray([[3.0, 1.0]], jnp.float64)
    np.testing.assert_allclose(P.linear_kernel()(A, B), [[5.0], [-1.0]])
    np.testing.assert_allclose(P.polynomial_kernel(2, 0.5, 1.0)(A, B), [[3.5 ** 2], [0.5 ** 2]])
    np.testing.assert_allclose(P.rbf_kernel(0.1)(A, B), np.exp(-0.1 * np.array([[5.0], [13.0]])))
    assert P.get_kernel("rbf", gamma=0.1) == P.rbf_kernel(0.1)                 # hashable, by value
    with pytest.raises(ValueError, match="unknown kernel"):
        P.get_kernel("sigmoid")


def test_training_scans_trace_once_per_shape(monkeypatch):
    X, y = _separable(n=64)
    for name, static in (("_alg1_scan", ()), ("_alg2_scan_gram", ()), ("_alg2_scan_onthefly", ("kernel",))):
        fn = getattr(P, name).__wrapped__           # the library's scan, traced at most once below
        monkeypatch.setattr(P, name, jax.jit(chex.assert_max_traces(fn, n=1), static_argnames=static))
    W = None
    for s in range(3):
        W, _ = P.train_perceptron(X, y, 3, jax.random.key(s), W=W)
    m = P.kernel_perceptron_init(X, 3, "rbf", gamma=0.5)
    m2 = P.kernel_perceptron_init(X, 3, "rbf", gamma=0.5, cache_gram=False)
    for s in range(3):
        m, _ = P.train_kernel_perceptron(m, y, jax.random.key(s))
        m2, _ = P.train_kernel_perceptron(m2, y, jax.random.key(s))
    np.testing.assert_array_equal(m.alpha, m2.alpha)          # cached and on-the-fly agree


def test_input_validation():
    X = jnp.zeros((5, 2), jnp.float32)
    with pytest.raises(ValueError, match="labels must lie"):
        P.train_perceptron(X, jnp.asarray([0, 1, 2, 3, 4]), 3, jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        P.train_perceptron(X, jnp.asarray([0, 1, 2, 0, 1]), 3)
