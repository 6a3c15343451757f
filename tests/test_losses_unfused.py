"""doc 002 Q1's unfused softmax → NLL path (jaxnets.nn.losses): its local derivatives, chained,
equal the fused p − t rule (doc 002 Q2) and jax.grad. float64, tolerance 1e-12."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.nn import losses as Lo

TOL = 1e-12
CASES = [  # (N, K, score scale, mask)
    (1, 2, 1.0, None),
    (4, 3, 3.0, None),
    (5, 10, 10.0, [1, 1, 0, 1, 0]),
    (3, 4, 40.0, None),      # large scores: the max shift keeps y finite
]


def _data(N, K, scale, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(scale * rng.standard_normal((N, K))), jnp.asarray(rng.integers(0, K, N))


def _unfused(o, y, mask=None):
    p, c1 = Lo.softmax_forward(o)
    value, c2 = Lo.nll_forward(p, y, mask)
    return value, Lo.softmax_backward(c1, Lo.nll_backward(c2))


@pytest.mark.parametrize("N,K,scale,mask", CASES)
def test_unfused_equals_fused_and_autodiff(x64, N, K, scale, mask):
    o, y = _data(N, K, scale)
    m = None if mask is None else jnp.asarray(mask, jnp.float64)
    value, do = _unfused(o, y, m)
    fv, fc = Lo.softmax_cross_entropy_forward(o, y, m)
    np.testing.assert_allclose(value, fv, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(do, Lo.softmax_cross_entropy_backward(fc), rtol=1e-10, atol=TOL)
    auto = jax.grad(lambda o: Lo.nll_forward(Lo.softmax_forward(o)[0], y, m)[0])(o)
    np.testing.assert_allclose(do, auto, rtol=1e-10, atol=TOL)


@pytest.mark.parametrize("N,K,scale,mask", CASES[:3])
def test_local_derivatives_are_doc002_q1(x64, N, K, scale, mask):
    o, y = _data(N, K, scale, seed=1)
    p, _ = Lo.softmax_forward(o)
    J = Lo.softmax_jacobian(p)
    auto_J = jax.vmap(jax.jacobian(lambda v: Lo.softmax_forward(v[None])[0][0]))(o)
    np.testing.assert_allclose(J, auto_J, rtol=1e-10, atol=TOL)
    pn = np.asarray(p)
    for n in range(N):   # diagonal y_i(1 − y_i), off-diagonal −y_i y_j
        np.testing.assert_allclose(np.diag(J[n]), pn[n] * (1 - pn[n]), rtol=TOL, atol=TOL)
        off = ~np.eye(K, dtype=bool)
        np.testing.assert_allclose(np.asarray(J[n])[off], -np.outer(pn[n], pn[n])[off], rtol=TOL, atol=TOL)
    _, c = Lo.nll_forward(p, y)
    dy = np.asarray(Lo.nll_backward(c)) * N        # per example: −1/y_c in column c, 0 elsewhere
    expect = np.zeros((N, K))
    expect[np.arange(N), np.asarray(y)] = -1 / pn[np.arange(N), np.asarray(y)]
    np.testing.assert_allclose(dy, expect, rtol=TOL, atol=TOL)


def test_nll_rejects_bad_input(x64):
    with pytest.raises(ValueError, match="nll"):
        Lo.nll_forward(jnp.ones((3,)), jnp.array([0, 1, 0]))
    with pytest.raises(ValueError, match="labels must lie"):
        Lo.nll_forward(jnp.full((2, 2), 0.5), jnp.array([0, 2]))
