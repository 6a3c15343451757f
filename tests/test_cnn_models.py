"""The OOD models of doc 003 §3.5: parameter counts, shapes, and end-to-end hand-written backprop
vs jax.grad and central differences (float64, small batch, inputs kept off ReLU kinks and max-pool
ties)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxnets.models import cnn
from jaxnets import gradcheck

AUTODIFF_TOL = 1e-10
FD_TOL = 1e-6
EPS = 1e-6        # finite-difference step
MARGIN = 2e-5     # required distance of every ReLU input from 0 and every max-pool winner from
                  # its runner-up: an EPS step moves them by at most a few EPS, so no kink is crossed

# name, expected count, param shapes per layer (None = parameter-free), relu layers, pool layers
MODELS = [
    ("mlp2_ood", 101_770, [None, (784, 128), (128, 10)], [1], []),
    ("cnn2", 80_650, [(7, 7, 1, 64), None, None, (7744, 10)], [0], [1]),
    ("cnn3", 68_106, [(7, 7, 1, 64), None, (2, 2, 64, 128), None, None, (3200, 10)], [0, 2], [1, 3]),
]


def _abstract_params(model, dtype=jnp.float32):
    return jax.eval_shape(lambda k: model.init(k, dtype), jax.random.key(0))


@pytest.mark.parametrize("name,count,shapes,relus,pools", MODELS, ids=[m[0] for m in MODELS])
def test_param_counts_and_shapes(name, count, shapes, relus, pools):
    model = cnn.MODELS[name]()
    params = _abstract_params(model)                      # shapes only, nothing computed
    assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params)) == count
    assert cnn.PARAM_COUNTS[name] == count
    assert len(params) == len(shapes)
    for p, shape in zip(params, shapes):
        if shape is None:
            assert p == {}
        else:
            assert p["W"].shape == shape and p["b"].shape == (shape[-1],)
    assert model.in_shape == (28, 28, 1) and model.out_shape == (10,)


def _margins(model, relus, pools):
    """Smallest |ReLU input| and smallest winner − runner-up gap over 2×2 max-pool windows whose
    winner is positive (windows of all zeros get no gradient through the ReLU anyway)."""
    def f(params, x):
        _, caches = model.layer.forward(params, x)
        relu_in = [caches[i][1] for i in relus]
        m_relu = jnp.min(jnp.stack([jnp.min(jnp.abs(a)) for a in relu_in]))
        m_pool = jnp.inf
        for i in pools:
            h = jnp.maximum(caches[i - 1][1], 0)          # the pool's input: relu of the conv before it
            N, H, W, C = h.shape
            h = h[:, : H // 2 * 2, : W // 2 * 2]
            w = h.reshape(N, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
            s = jnp.sort(w, axis=1)
            gap = jnp.where(s[:, 3] > 0, s[:, 3] - s[:, 2], jnp.inf)
            m_pool = jnp.minimum(m_pool, jnp.min(gap))
        return m_relu, m_pool
    return jax.jit(f)


def _sample_entries(params, n_per_leaf, seed):
    """``n_per_leaf`` random flat indices into every leaf of ``ravel_pytree(params)``, per leaf."""
    rng = np.random.default_rng(seed)
    sizes = [int(np.prod(v.shape)) for v in jax.tree.leaves(params)]
    offsets = np.cumsum([0] + sizes[:-1])
    return [off + rng.choice(n, min(n, n_per_leaf), replace=False) for off, n in zip(offsets, sizes)]


def _fd_at(loss, params, idx):
    """Central differences of ``loss`` at the flat entries ``idx`` (vmapped, traceable)."""
    flat, unravel = ravel_pytree(params)
    step = jax.vmap(lambda i: loss(unravel(flat.at[i].add(EPS))) - loss(unravel(flat.at[i].add(-EPS))))
    return step(jnp.asarray(idx)) / (2 * EPS)


@pytest.mark.parametrize("name,count,shapes,relus,pools", MODELS, ids=[m[0] for m in MODELS])
def test_end_to_end_hand_vs_autodiff_and_fd(x64, name, count, shapes, relus, pools):
    model = cnn.MODELS[name]("normal", std=0.1)
    params = model.init(jax.random.key(1), jnp.float64)
    # conv layers ×5: pre-activations spread over a wider range (fewer near the kink) while the
    # dense head keeps the softmax away from saturation
    params = [jax.tree.map(lambda v: 5 * v, p) if p and p["W"].ndim == 4 else p for p in params]
    y = jnp.array([3, 7])
    margins = _margins(model, relus, pools)
    for seed in range(40):                               # inputs kept off kinks and ties
        x = jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (2, 28, 28, 1)), jnp.float64)
        m_relu, m_pool = margins(params, x)
        if float(m_relu) > MARGIN and float(m_pool) > MARGIN:
            break
        print(f"seed {seed}: margins {float(m_relu):.2e}, {float(m_pool):.2e}; next seed")
    else:
        pytest.fail("no input without near-kinks/ties found")

    entries = _sample_entries(params, 16, 0)

    @jax.jit
    def run(params):
        hand = model.backprop(params, x, y, 1e-3)
        auto = model.grad_autodiff(params, x, y, 1e-3)
        fd = _fd_at(lambda p: model.loss(p, x, y, 1e-3), params, np.concatenate(entries))
        return hand, auto, fd

    (lh, hand), (la, auto), fd = run(params)
    assert abs(float(lh) - float(la)) <= 1e-12 * abs(float(la))
    gradcheck.compare(hand, auto, "jax.grad", AUTODIFF_TOL)
    # finite differences at 16 random entries per leaf: max |hand − fd| / max |fd| per leaf
    flat_hand = np.asarray(ravel_pytree(hand)[0])
    fd, start = np.asarray(fd), 0
    for idx in entries:
        hs, fs = flat_hand[idx], fd[start:start + len(idx)]
        assert np.max(np.abs(hs - fs)) <= FD_TOL * max(np.max(np.abs(fs)), 1e-8), (hs, fs)
        start += len(idx)


def test_float32_training_step_and_predict():
    model = cnn.cnn3()
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)), jnp.float32)
    y = jnp.array([0, 1, 2, 3])
    value, grads = jax.jit(model.backprop)(params, x, y)
    assert np.isfinite(float(value)) and value.dtype == jnp.float32
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    pred = jax.jit(model.predict)(params, x)
    assert pred.shape == (4,) and pred.dtype in (jnp.int32, jnp.int64)
    with pytest.raises(ValueError, match="expected x of shape"):
        model.apply(params, x.reshape(4, 784))


@pytest.mark.parametrize("model", ["cnn2", "cnn3"])
@pytest.mark.e2e(cpu=6)
def test_bench_conv_one_stack_variant_gives_the_same_gradients(tmp_path, monkeypatch, model):
    """experiments.bench_conv --one-stack traces the hand path with every im2col as one stack of
    window slices and fails unless its loss and gradients equal the default path's bit for bit
    (float32, batch 2); the run records both rows. PyTorch is left out (its import is slow)."""
    import json
    from experiments import bench_conv
    from experiments._lib import torch_peers
    monkeypatch.setenv(torch_peers.NO_PEERS_ENV, "1")
    out = tmp_path / "bc.json"
    assert bench_conv.main(["--model", model, "--batch", "2", "--repeats", "1", "--one-stack",
                            "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {"hand", "hand-1stack", "autodiff"} <= set(rows) and "torch" not in rows
    assert rows["hand"]["mbytes"] < rows["hand-1stack"]["mbytes"]   # XLA's bytes: fewer copies
