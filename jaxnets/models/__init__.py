"""Models: compositions of :mod:`jaxnets.nn` layers behind one contract (:class:`Model`), all built
by :func:`sequential`.

The zoo, reachable after ``import jaxnets``: :func:`mlp` (any depth), doc 003's OOD models
:func:`mlp2_ood`, :func:`cnn2`, :func:`cnn3` (:mod:`~jaxnets.models.cnn`), the mini CNN
(:mod:`~jaxnets.models.minicnn`: ``minicnn.model()`` and the document's closed forms), the tiny
transformer (:mod:`~jaxnets.models.transformer`: ``transformer.transformer(cfg)`` with
:class:`TransformerConfig`, ``transformer.generate``), and the perceptrons
(:mod:`~jaxnets.models.perceptron`, plain functions: mistake-driven algorithms, not Models).
"""
from jaxnets.models import base, cnn, minicnn, perceptron, transformer
from jaxnets.models.base import Model, count_params, microbatched, mlp, sequential
from jaxnets.models.cnn import cnn2, cnn3, mlp2_ood
from jaxnets.models.transformer import TransformerConfig

__all__ = ["Model", "TransformerConfig", "cnn", "cnn2", "cnn3", "count_params", "microbatched",
           "minicnn", "mlp", "mlp2_ood", "perceptron", "sequential", "transformer"]
