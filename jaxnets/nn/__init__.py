"""Building blocks. Every one is a :class:`~jaxnets.nn.layers.Layer` (init, forward, its
hand-written backward, stochastic, decay: the contract is stated once, in :mod:`jaxnets.nn.layers`).

The Layers: :func:`activation`, :func:`dropout`, :func:`dense`, :func:`reshape`, :func:`flatten`,
:func:`conv1d`, :func:`conv2d`, :func:`maxpool2d`, :func:`embedding`, :func:`layer_norm`,
:func:`attention_head`, :func:`multi_head_attention`, :func:`feed_forward`; combinators
:func:`serial` and :func:`residual`. Losses (:mod:`~jaxnets.nn.losses`) are heads, not layers:
``forward(s, y, mask) -> (value, cache)``, ``backward(cache) -> ds``. Init schemes:
:mod:`~jaxnets.nn.initializers`.
"""
from jaxnets.nn import attention, conv, initializers, layers, losses
from jaxnets.nn.attention import attention_head, embedding, feed_forward, layer_norm, multi_head_attention
from jaxnets.nn.conv import conv1d, conv2d, flatten, maxpool2d
from jaxnets.nn.layers import Layer, activation, dense, dropout, reshape, residual, serial

__all__ = ["Layer", "activation", "attention", "attention_head", "conv", "conv1d", "conv2d", "dense",
           "dropout", "embedding", "feed_forward", "flatten", "initializers", "layer_norm", "layers",
           "losses", "maxpool2d", "multi_head_attention", "reshape", "residual", "serial"]
