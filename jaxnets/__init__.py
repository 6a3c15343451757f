"""jaxnets: functional JAX neural networks with hand-written backprop rules, checked against
``jax.grad`` and finite differences.

Subpackages:
    nn        the Layer contract and its layers: dense, activations, dropout, conv1d/conv2d,
              max-pool, embeddings, layer norm, attention, feed-forward, serial, residual; losses, inits
    models    Models (a Layer + a loss head, one contract, built by ``sequential``):
              MLPs, doc 003's CNNs, the mini CNN, the tiny transformer; the perceptrons
              (mistake-driven algorithms, plain functions)
    train     the training engine (``fit``, ``sweep``, ``evaluate``) and checkpoints
    data      readers, the registry of data sets, splits, OOD transforms, augmentation, text
    gradcheck relative error, central differences, doc 003's gradient checkers

The experiments that reproduce the documents live outside the library, in ``experiments/``.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version

from jaxnets import gradcheck, models, nn, train
from jaxnets.gradcheck import rel_error
from jaxnets.models import Model, count_params, mlp, sequential
from jaxnets.train import FitResult, evaluate, fit, sweep

try:
    __version__ = _version("jaxnets")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"


def __getattr__(name):
    # The data layer pulls in PIL and tarfile handling: load it on first use.
    if name == "data":
        return import_module("jaxnets.data")
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")


__all__ = ["data", "gradcheck", "models", "nn", "train", "Model", "FitResult", "count_params",
           "evaluate", "fit", "mlp", "rel_error", "sequential", "sweep"]
