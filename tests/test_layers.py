"""The Layer contract, for every building block of jaxnets.nn: ``init`` gives the out_shape the
forward produces, ``backward`` equals ``jax.vjp`` of ``forward`` for params and x (float64,
tolerance 1e-10), dparams has params' structure, ``decay`` gives a mask of Python bools with
params' structure that marks exactly the weight matrices, ``stochastic`` says whether forward draws
from its key, and ``serial``/``residual`` compose all of it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import gradcheck, nn

TOL = 1e-10          # float64
N = 3


def _x(in_shape, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "int":
        return jnp.asarray(rng.integers(0, 7, (N,) + in_shape), jnp.int32)
    return jnp.asarray(rng.standard_normal((N,) + in_shape))


# name, layer, in_shape, input kind, stochastic, decayed leaf names (the weights)
CASES = [
    ("sigmoid", nn.activation("sigmoid"), (5,), "float", False, []),
    ("relu", nn.activation("relu"), (5,), "float", False, []),
    ("tanh", nn.activation("tanh"), (2, 3), "float", False, []),
    ("identity", nn.activation("identity"), (5,), "float", False, []),
    ("dropout", nn.dropout(0.3), (4, 2), "float", True, []),
    ("dense", nn.dense(4, "tanh"), (5,), "float", False, ["W"]),
    ("dense_leading_axes", nn.dense(4, "sigmoid"), (3, 2, 5), "float", False, ["W"]),
    ("dense_no_bias", nn.dense(4, bias=False), (5,), "float", False, ["W"]),
    ("reshape", nn.reshape((2, 3)), (6,), "float", False, []),
    ("flatten", nn.flatten(), (2, 3, 2), "float", False, []),
    ("conv1d", nn.conv1d(3, 2, activation="relu"), (6, 2), "float", False, ["W"]),
    ("conv2d", nn.conv2d(3, 3, 1, "same", "tanh"), (5, 5, 2), "float", False, ["W"]),
    ("maxpool2d", nn.maxpool2d(2), (4, 6, 2), "float", False, []),
    ("embedding", nn.embedding(7, 6, 4), (5,), "int", False, []),
    ("layer_norm", nn.layer_norm(), (5, 4), "float", False, []),
    ("attention_head", nn.attention_head(2, 0.2), (5, 4), "float", True, ["Wk", "Wq", "Wv"]),
    ("multi_head_attention", nn.multi_head_attention(2), (5, 4), "float", False, ["Wk", "Wq", "Wv", "W"]),
    ("multi_head_attention+dropout", nn.multi_head_attention(2, 0.2), (5, 4), "float", True,
     ["Wk", "Wq", "Wv", "W"]),
    ("feed_forward", nn.feed_forward(0.1), (5, 4), "float", True, ["W", "W"]),
    ("residual", nn.residual(nn.dense(5, "tanh")), (5,), "float", False, ["W"]),
    ("serial", nn.serial(nn.dense(4, "relu"), nn.dropout(0.2), nn.dense(2, bias=False)), (5,), "float",
     True, ["W", "W"]),
]


def _leaf_names(tree):
    return [str(p[-1].key) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("name,layer,in_shape,kind,stochastic,weights", CASES, ids=[c[0] for c in CASES])
def test_layer_contract(x64, name, layer, in_shape, kind, stochastic, weights):
    assert isinstance(layer, nn.Layer) and layer.stochastic == stochastic
    out_shape, params = layer.init(jax.random.key(0), in_shape, jnp.float64)
    assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(params))
    mask = layer.decay(params)
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    assert all(isinstance(m, bool) for m in jax.tree.leaves(mask))
    assert [n for n, m in zip(_leaf_names(params), jax.tree.leaves(mask)) if m] == weights
    x = _x(in_shape, kind, 1)
    key = jax.random.key(2) if stochastic else None
    y, cache = layer.forward(params, x, key)
    assert y.shape == (N,) + tuple(out_shape)
    if stochastic:       # the key is used: another key, another output
        assert not np.allclose(layer.forward(params, x, jax.random.key(3))[0], y)
    dy = _x(tuple(out_shape), "float", 4)

    @jax.jit
    def both(params, x, dy):
        _, cache = layer.forward(params, x, key)
        if kind == "int":      # token ids have no gradient: vjp in params only
            return layer.backward(cache, dy), (jax.vjp(lambda p: layer.forward(p, x, key)[0], params)[1](dy)[0], None)
        return layer.backward(cache, dy), jax.vjp(lambda p, x: layer.forward(p, x, key)[0], params, x)[1](dy)

    (dp, dx), (ap, ax) = both(params, x, dy)
    assert jax.tree.structure(dp) == jax.tree.structure(params)
    if jax.tree.leaves(params):
        gradcheck.compare(dp, ap, "jax.vjp", TOL)
    if kind == "int":
        assert dx is None
    else:
        assert dx.shape == x.shape and gradcheck.rel_error(dx, ax) < TOL
    # A cache crosses a jit boundary: forward and backward compiled apart (a learner's natural
    # split) give the same gradients, so a cache holds arrays and static facts, never Python ints
    # that jit would turn into tracers.
    _, jcache = jax.jit(layer.forward)(params, x, key)
    jdp, jdx = jax.jit(layer.backward)(jcache, dy)
    if jax.tree.leaves(params):
        gradcheck.compare(jdp, dp, "backward of a jitted forward's cache", TOL)
    assert (jdx is None) if kind == "int" else gradcheck.rel_error(jdx, dx) < TOL


def test_a_layer_without_a_decay_mask_decays_nothing():
    """A Layer built from the first three parts only (a learner's) decays none of its leaves."""
    layer = nn.Layer(lambda k, s, d=jnp.float32: (s, {"a": jnp.ones(s, d)}),
                     lambda p, x, key=None: (x * p["a"], (x, p["a"])),
                     lambda c, dy: ({"a": jnp.sum(dy * c[0], 0)}, dy * c[1]))
    assert not layer.stochastic and layer.decay({"a": jnp.ones(3)}) == {"a": False}
    combo = nn.serial(layer, nn.dense(2))
    assert combo.decay([{"a": 0}, {"W": 0, "b": 0}]) == [{"a": False}, {"W": True, "b": False}]


# layer, in_shape, message
INIT_ERRORS = [
    (nn.residual(nn.dense(3)), (5,), "residual: the inner layer maps"),
    (nn.reshape((4, 2)), (6,), "cannot reshape"),
    (nn.embedding(7, 4, 2), (5,), "T <= block_size=4"),
    (nn.multi_head_attention(3), (5, 4), "divisible by n_head=3"),
    (nn.attention_head(2), (4,), r"expected an input shape \(T, d\)"),
]


@pytest.mark.parametrize("layer,in_shape,match", INIT_ERRORS, ids=[e[2] for e in INIT_ERRORS])
def test_init_refuses_shapes_it_cannot_take(layer, in_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.init(jax.random.key(0), in_shape)


def test_dense_checks_features_and_dtype():
    _, p = nn.dense(3).init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"dense: expected x with 4 features"):
        nn.dense(3).forward(p, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="floating-point"):
        nn.dense(3).forward(p, jnp.ones((2, 4), jnp.int32))


def test_import_jaxnets_reaches_the_whole_zoo():
    """In a fresh interpreter, ``import jaxnets`` alone reaches every model constructor and layer
    (no submodule import by hand), and still leaves the data layer unloaded until first use."""
    import subprocess
    import sys
    code = ("import sys, jaxnets\n"
            "m = jaxnets.models\n"
            "zoo = [m.mlp, m.mlp2_ood, m.cnn2, m.cnn3, m.minicnn.model, m.transformer.transformer,\n"
            "       m.transformer.generate, m.TransformerConfig, m.perceptron.train_perceptron, m.sequential,\n"
            "       jaxnets.nn.serial, jaxnets.nn.residual, jaxnets.nn.conv2d, jaxnets.nn.multi_head_attention]\n"
            "assert all(callable(f) for f in zoo)\n"
            "assert 'jaxnets.data' not in sys.modules\n"
            "print(type(jaxnets.data).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module"


def _twice(backward, forward=None):
    L = nn.layers
    return L.Layer(lambda key, s, dtype=jnp.float32: (s, {}), forward or (lambda p, x, key=None: (2.0 * x, x)),
                   backward)


def test_serial_names_the_layers_around_a_dx_of_the_wrong_shape():
    """A learner's layer returns dx of the wrong shape: the layer below fails on it; serial names
    both layers and the shape instead of leaving the next layer's reshape error alone."""
    L = nn.layers
    stack = L.serial(L.dense(3), _twice(lambda c, dy: ({}, dy[:, :2])), L.dense(2))
    params = stack.init(jax.random.key(0), (5,))[1]
    _, cache = stack.forward(params, jnp.ones((4, 5)))
    with pytest.raises(TypeError, match=r"serial: layer 0 \(of 3\)'s backward failed on the dy that layer 1's "
                                        r"backward returned as its dx \(shape \(4, 2\)"):
        stack.backward(cache, jnp.ones((4, 2)))


def test_serial_refuses_a_forward_that_is_not_y_and_cache():
    L = nn.layers
    stack = L.serial(L.dense(3), _twice(lambda c, dy: ({}, 2 * dy), forward=lambda p, x, key=None: 2.0 * x))
    params = stack.init(jax.random.key(0), (5,))[1]
    with pytest.raises(TypeError, match=r"serial: layer 1 \(of 2\)'s forward must return \(y, cache\), got ArrayImpl"):
        stack.forward(params, jnp.ones((4, 5)))
