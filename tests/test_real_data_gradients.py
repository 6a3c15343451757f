"""Hand-written backprop vs jax.grad on real data, float64, for every model of the library.

Random inputs rarely sit on a kink; real ones do: about half of a Fashion-MNIST image is exactly
0, so with zero initial biases many convolution outputs are exactly 0 (a ReLU kink), and flat
regions make equal ReLU outputs inside one max-pool window (a tie). The forwards carry the
conventions of the hand rules (ReLU'(0) = 0 as doc 001 defines it; a tie's gradient goes to the
first maximum), so the two gradients agree to the float64 tolerance there too. Data: the embedded,
checksummed samples (Fashion-MNIST, MNIST-5k) and tiny Shakespeare, so every machine runs the same
images. Tolerance: ``gradcheck.compare``'s float64 default, 1e-10.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import data, gradcheck, models
from jaxnets.data import text
from jaxnets.models import cnn, minicnn
from jaxnets.models import transformer as tr

TOL = 1e-10          # float64


@pytest.fixture(scope="module")
def images():
    """Embedded samples only (no system or shared copies): the same images everywhere.
    {"fashion": uint8 (6000, 28, 28), "mnist": uint8 (5000, 28, 28), "mnist_y": int (5000,)}."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXNETS_NO_SYSTEM_DATA", "1")
        mp.delenv("JAXNETS_DATA", raising=False)
        fashion, mnist = data.load("fashion_mnist"), data.load("mnist")
    assert fashion.variant == mnist.variant == "sample"
    return {"fashion": fashion.x_train, "fashion_y": fashion.y_train, "mnist": mnist.x_train,
            "mnist_y": mnist.y_train}


def _x(imgs, idx, shape):
    return jnp.asarray(np.asarray(imgs[np.asarray(idx)], np.float64) / 255.0).reshape((len(idx),) + shape)


def _input_grads(model, params, x, y):
    """∂loss/∂x (N, *in_shape): the layers' hand-written dx and jax.grad's."""
    s, cache = model.layer.forward(params, x)
    _, dx = model.layer.backward(cache, model.head.backward(model.head.forward(s, y)[1]))
    return dx, jax.grad(lambda x: model.loss(params, x, y))(x)


def _check(model, params, x, y, l2=0.0):
    """Hand-written backprop vs jax.grad (one compiled program) for the parameters and, for
    float inputs, for x too (a tie split differently shows in dx even where the parameter
    gradients cannot tell: tied entries come from identical patches). Raises naming the entry."""
    both = jax.jit(lambda p: (model.backprop(p, x, y, l2), model.grad_autodiff(p, x, y, l2)))
    (lh, hand), (la, auto) = both(params)
    assert abs(float(lh) - float(la)) <= 1e-12 * abs(float(la))
    if model.input_dtype == "float":
        dx_hand, dx_auto = jax.jit(lambda p: _input_grads(model, p, x, y))(params)
        gradcheck.compare({"x": dx_hand}, {"x": dx_auto})
    return gradcheck.compare(hand, auto)


def _kinks_and_ties(model, params, x):
    """(exact zeros among the first conv's pre-activations, 2×2 pool windows whose positive
    maximum is attained more than once) of a CNN on x."""
    _, caches = model.layer.forward(params, x)
    a = caches[0][1]                                  # conv + ReLU: the ReLU's cache is its input
    h = jax.nn.relu(a)
    n, H, W, C = h.shape
    w = h[:, :H // 2 * 2, :W // 2 * 2].reshape(n, H // 2, 2, W // 2, 2, C).transpose(0, 1, 3, 5, 2, 4)
    w = w.reshape(n, -1, 4)
    top = jnp.max(w, axis=-1)
    ties = jnp.sum((jnp.sum(w == top[..., None], axis=-1) > 1) & (top > 0), axis=1)     # (n,)
    return int(jnp.sum(a == 0)), np.asarray(ties)


def test_doc003_cnn2_default_init_on_eight_fashion_images(x64, images):
    """doc 003's 2-layer CNN at its default init (zero biases), float64, the first 8 images: the
    ReLU inputs that are exactly 0 get derivative 0 from both sides (jnp.maximum(x, 0) under
    jax.grad gave 0.5 there, and params[0]['b'] disagreed)."""
    model = cnn.cnn2()
    params = model.init(jax.random.key(0), jnp.float64)
    x, y = _x(images["fashion"], range(8), (28, 28, 1)), jnp.asarray(images["fashion_y"][:8])
    zeros, _ = _kinks_and_ties(model, params, x)
    assert zeros > 1000                               # the batch really sits on the kink
    _check(model, params, x, y)


@pytest.mark.parametrize("name", ["cnn2", "cnn3"])
def test_cnns_on_images_with_pool_ties(x64, images, name):
    """The 8 images (of the first 600) with the most positive max-pool ties at default init:
    the tie's gradient goes to the first maximum in both the hand rule and jax.grad (visible in
    ∂loss/∂x; a jnp.maximum forward splits it there)."""
    model = cnn.MODELS[name]()
    params = model.init(jax.random.key(0), jnp.float64)
    pool = _x(images["fashion"], range(600), (28, 28, 1))
    # 100 images at a time: the eager forward keeps every layer's cache (600 images held 1.5 GB,
    # 100 at a time 0.8 GB); an image's tie count is its own, and equal to the one-batch count
    ties = np.concatenate([_kinks_and_ties(model, params, pool[i:i + 100])[1] for i in range(0, 600, 100)])
    idx = np.argsort(-ties, kind="stable")[:8]
    assert np.all(ties[idx] > 0), ties[idx]           # every chosen image has ties
    _check(model, params, pool[idx], jnp.asarray(images["fashion_y"][idx]), l2=1e-3)


def test_mlp2_ood_on_fashion(x64, images):
    model = cnn.mlp2_ood()
    params = model.init(jax.random.key(0), jnp.float64)
    _check(model, params, _x(images["fashion"], range(8), (28, 28, 1)),
           jnp.asarray(images["fashion_y"][:8]), l2=1e-3)


MLP_CASES = [(act, loss, [784, 32, 10]) for act, loss in itertools.product(
    ["sigmoid", "relu", "tanh", "identity"], ["softmax_cross_entropy", "half_sse", "mse"])] + \
    [(act, "logistic", [784, 16, 1]) for act in ["sigmoid", "relu", "tanh", "identity"]]


@pytest.mark.parametrize("act,loss,sizes", MLP_CASES, ids=[f"{a}-{l}" for a, l, _ in MLP_CASES])
def test_mlps_on_mnist(x64, images, act, loss, sizes):
    """MLPs of every activation and loss at their default init, 8 MNIST-5k digits, L2 on."""
    model = models.mlp(sizes, act, loss)
    params = model.init(jax.random.key(1), jnp.float64)
    labels = images["mnist_y"][:8]
    y = jnp.asarray(np.where(labels % 2 == 0, 1.0, -1.0)) if loss == "logistic" else jnp.asarray(labels)
    _check(model, params, _x(images["mnist"], range(8), (784,)), y, l2=1e-2)


def test_minicnn_on_pixel_rows(x64, images):
    """The mini CNN on 3-pixel windows of MNIST rows (many all-zero windows: both ReLU inputs
    exactly 0): the composition's hand rules, jax.grad of it, the document's closed forms and
    jax.grad of the closed-form forward all agree."""
    row = np.asarray(images["mnist"][:4, 8:20:3], np.float64) / 255.0        # (4, 4, 28)
    X = jnp.asarray(np.stack([row[..., j:j + 3] for j in range(26)], axis=2).reshape(-1, 3))
    Y = jnp.where(X[:, 1] > 0.3, 1.0, -1.0)
    model = minicnn.model()
    # |w|: a positive filter, so windows with ink activate the units and all-zero ones sit at 0
    params = jax.tree.map(jnp.abs, model.init(jax.random.key(2), jnp.float64))
    doc = minicnn.from_layer_params(params)
    a = jnp.stack([X[:, :2] @ doc["w"], X[:, 1:] @ doc["w"]], axis=1)
    assert int(jnp.sum(a == 0)) > 50 and int(jnp.sum(a > 0)) > 10          # kinks and active units
    _check(model, params, X, Y, l2=0.1)
    _, closed = minicnn.grads(doc, X, Y)
    gradcheck.compare(closed, minicnn.grad_autodiff(doc, X, Y)[1])
    gradcheck.compare(closed, minicnn.from_layer_params(model.backprop(params, X, Y)[1]), "closed form")


def test_transformer_on_shakespeare(x64):
    """The character transformer (PyTorch init) on real tiny Shakespeare windows."""
    corpus = text.shakespeare()
    cfg = tr.TransformerConfig(corpus.tokenizer.vocab_size, 16, 16, 2, 2)
    model = tr.transformer(cfg)
    params = model.init(jax.random.key(3), jnp.float64)
    x, y = text.get_batch(jax.random.key(4), jnp.asarray(corpus.train), 4, 16)
    _check(model, params, x, y, l2=1e-3)
