"""Models: compositions of :mod:`jaxnets.nn` layers behind one contract (see :class:`Model`)."""
from jaxnets.models.base import Model, count_params, from_pair, mlp, sequential

__all__ = ["Model", "count_params", "from_pair", "mlp", "sequential"]
