"""jaxnets: functional JAX neural networks with hand-written backprop rules, checked against
``jax.grad`` and finite differences, and the experiments of four classic homework documents.

Modules:
    layers        forward/backward pairs: dense, activations, ``serial``
    losses        softmax cross-entropy, half SSE, MSE, logistic; L2 penalty
    initializers  the documents' init schemes by name
    models        ``mlp``, ``sequential``: init / apply / loss / backprop / grad_autodiff
    gradcheck     rel_error, central differences, doc 003's gradient and magnitude checkers
"""
from jaxnets import gradcheck, initializers, layers, losses, models
from jaxnets.gradcheck import rel_error
from jaxnets.models import Model, count_params, mlp, sequential

__all__ = ["gradcheck", "initializers", "layers", "losses", "models",
           "Model", "count_params", "mlp", "sequential", "rel_error"]
__version__ = "0.1.0"
