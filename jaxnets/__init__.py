"""jaxnets: functional JAX neural networks with hand-written backprop rules, checked against
``jax.grad`` and finite differences, and the experiments of four classic homework documents.

Modules:
    layers        forward/backward pairs: dense, activations, ``serial``
    losses        softmax cross-entropy, half SSE, MSE, logistic; L2 penalty
    initializers  the documents' init schemes by name
    models        ``mlp``, ``sequential``: init / apply / loss / backprop / grad_autodiff
    conv          conv1d, conv2d, maxpool2d, flatten (hand-written backward rules)
    cnn_models    doc 003 §3.5's 2-layer MLP, 2-layer CNN and 3-layer CNN
    minicnn       doc 003 Problem 2's mini CNN and its SGD algorithm
    perceptron    multiclass and kernel perceptrons (doc 003 Problem 1)
    transformer   tiny decoder-only character transformer (doc 003 Problem 4)
    gradcheck     rel_error, central differences, doc 003's gradient and magnitude checkers
    train         ``fit`` (scan-fused jitted epochs, optax), ``sweep`` (vmapped configs)
    data          loaders, splits, OOD transforms
    reference     pure-Python and NumPy oracles of doc 002's network (not used by the library)
    worked        the documents' worked examples (SPEC §2)
"""
from importlib import import_module

from jaxnets import checkpoint, gradcheck, initializers, layers, losses, models, train
from jaxnets.gradcheck import rel_error
from jaxnets.models import Model, count_params, mlp, sequential
from jaxnets.train import FitResult, evaluate, fit, sweep

_LAZY = ("data", "conv", "cnn_models", "minicnn", "perceptron", "transformer", "reference",
         "worked", "bench", "plotting", "results", "studies")


def __getattr__(name):
    # Heavier or optional modules load on first use, so `import jaxnets` stays quick.
    if name in _LAZY:
        return import_module(f"jaxnets.{name}")
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")


__all__ = ["checkpoint", "gradcheck", "initializers", "layers", "losses", "models", "train",
           "Model", "FitResult", "count_params", "evaluate", "fit", "mlp", "rel_error",
           "sequential", "sweep", *_LAZY]
__version__ = "0.1.0"
