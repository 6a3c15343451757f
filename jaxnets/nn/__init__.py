"""Forward/backward pairs: every layer and loss is ``forward(params, x) -> (y, cache)`` with a
hand-written ``backward(cache, dy) -> (dparams, dx)`` beside it."""
from jaxnets.nn import attention, conv, initializers, layers, losses

__all__ = ["attention", "conv", "initializers", "layers", "losses"]
