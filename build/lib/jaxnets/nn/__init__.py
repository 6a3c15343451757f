"""Forward/backward pairs: every layer and loss is ``forward(params, x) -> (y, cache)`` with a
hand-written ``backward(cache, dy) -> (dparams, dx)`` beside it."""
from jaxnets.nn import conv, initializers, layers, losses

__all__ = ["conv", "initializers", "layers", "losses"]
