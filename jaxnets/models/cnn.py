"""The out-of-distribution models of doc 003 §3.5, as named constructors.

All three take Fashion-MNIST-sized inputs ``x: (N, 28, 28, 1)`` (NHWC, one channel), produce
10 class scores and are trained with softmax cross-entropy (mean over the batch). Convolutions are
stride 1 with 'valid' padding and a ReLU; max-pooling is 2×2 with stride 2 ('valid'). These are the
choices that reproduce the document's parameter counts exactly (worked out in each docstring).

params are lists with one entry per layer of the ``layers.serial`` stack (``{}`` for parameter-free
layers), so the hand-written ``model.backprop`` and ``model.grad_autodiff`` return the same structure.
``model.layer`` is the bare layer stack of a model (its caches expose every intermediate); L2
reaches the conv kernels and the dense weights, never a bias.
"""
from __future__ import annotations

from jaxnets.nn import conv
from jaxnets.nn import layers as L
from jaxnets.models.base import Model, sequential

IN_SHAPE = (28, 28, 1)


def _mlp2_ood_stack(init="default", **init_kwargs) -> L.Layer:
    """2-layer MLP 784-128-10 (ReLU hidden layer): **101,770** parameters.

    Shapes per example: (28, 28, 1) → flatten (784,) → dense+ReLU (128,) → dense (10,).
    Params: 784·128 + 128 = 100,480; 128·10 + 10 = 1,290; total 101,770.
    """
    return L.serial(conv.flatten(),
                    L.dense(128, "relu", init, **init_kwargs),
                    L.dense(10, "identity", init, **init_kwargs))


def _cnn2_stack(init="default", **init_kwargs) -> L.Layer:
    """2-layer CNN: 64 kernels 7×7 + 2×2 max-pool + dense 10: **80,650** parameters.

    Shapes per example: (28, 28, 1) → conv 7×7, 64, stride 1, 'valid', ReLU (22, 22, 64)
    → maxpool 2×2 stride 2 (11, 11, 64) → flatten (7,744,) → dense (10,).
    Params: 7·7·1·64 + 64 = 3,200; 7,744·10 + 10 = 77,450; total 80,650.
    ('same' padding would give 14·14·64 = 12,544 features and 128,650 parameters.)
    """
    return L.serial(conv.conv2d(64, 7, 1, "valid", "relu", init, **init_kwargs),
                    conv.maxpool2d(2, 2),
                    conv.flatten(),
                    L.dense(10, "identity", init, **init_kwargs))


def _cnn3_stack(init="default", **init_kwargs) -> L.Layer:
    """3-layer CNN: :func:`_cnn2_stack` with a 64→128 2×2 conv + 2×2 max-pool inserted: **68,106** parameters.

    Shapes per example: (28, 28, 1) → conv 7×7, 64, 'valid', ReLU (22, 22, 64) → maxpool 2×2
    (11, 11, 64) → conv 2×2, 128, stride 1, 'valid', ReLU (10, 10, 128) → maxpool 2×2 (5, 5, 128)
    → flatten (3,200,) → dense (10,).
    Params: 3,200 + (2·2·64·128 + 128 = 32,896) + (3,200·10 + 10 = 32,010) = 68,106.
    """
    return L.serial(conv.conv2d(64, 7, 1, "valid", "relu", init, **init_kwargs),
                    conv.maxpool2d(2, 2),
                    conv.conv2d(128, 2, 1, "valid", "relu", init, **init_kwargs),
                    conv.maxpool2d(2, 2),
                    conv.flatten(),
                    L.dense(10, "identity", init, **init_kwargs))


def _model(stack: L.Layer, name: str) -> Model:
    return sequential(stack, "softmax_cross_entropy", IN_SHAPE, name=name)


def mlp2_ood(init="default", **init_kwargs) -> Model:
    """:func:`_mlp2_ood_stack` with softmax cross-entropy (101,770 parameters)."""
    return _model(_mlp2_ood_stack(init, **init_kwargs), "mlp2_ood")


def cnn2(init="default", **init_kwargs) -> Model:
    """:func:`_cnn2_stack` with softmax cross-entropy (80,650 parameters)."""
    return _model(_cnn2_stack(init, **init_kwargs), "cnn2")


def cnn3(init="default", **init_kwargs) -> Model:
    """:func:`_cnn3_stack` with softmax cross-entropy (68,106 parameters)."""
    return _model(_cnn3_stack(init, **init_kwargs), "cnn3")


MODELS = {"mlp2_ood": mlp2_ood, "cnn2": cnn2, "cnn3": cnn3}
PARAM_COUNTS = {"mlp2_ood": 101_770, "cnn2": 80_650, "cnn3": 68_106}
