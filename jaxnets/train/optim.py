"""doc 003's SGD with momentum as an optax transformation, and the engine's access to the
hyperparameters an optimizer exposes.

``sgd(lr, momentum, lr_decay)`` is ``v ← αv + g, w ← w − η_e v`` (doc 003 §3.4; no ``momentum``:
plain ``w ← w − η_e g``) with ``η_e = lr · lr_decay^e`` decayed once per epoch e (doc 004). It is
built with ``optax.inject_hyperparams``, so its hyperparameters live in the optimizer state as
arrays: :func:`~jaxnets.train.sweep` sets one value per configuration there and vmaps one compiled
epoch over them. The engine sets the hyperparameter ``epoch`` (0-based) at the start of every
epoch in any optimizer state that has one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def epoch_lr(lr, lr_decay, epoch):
    """η_e = lr · lr_decay^epoch, the learning rate of (0-based) epoch ``epoch`` (doc 004).

    The compiled step calls it with ``epoch`` a float array (XLA's pow); the recorded history
    with a Python int (an integer power). Both are the same formula; they may differ in the
    last bit."""
    return lr * lr_decay ** epoch


def _sgd(lr, lr_decay, epoch, momentum=None):
    rate = epoch_lr(lr, lr_decay, jnp.asarray(epoch, jnp.result_type(lr_decay)))
    scale = optax.scale_by_learning_rate(rate)
    return scale if momentum is None else optax.chain(optax.trace(decay=momentum), scale)


def sgd(lr, momentum=None, lr_decay=1.0) -> optax.GradientTransformation:
    """doc 003's SGD: ``optax.inject_hyperparams`` of trace(momentum) ∘ scale(−lr·lr_decay^epoch).

    ``lr`` > 0, ``lr_decay`` > 0 and ``momentum`` >= 0 are scalars. ``momentum=None`` keeps no
    velocity at all (plain SGD: one pass less over the weights per step); ``momentum=0.0`` keeps
    one, so a :func:`~jaxnets.train.sweep` can vary it. Hyperparameters (``lr``, ``lr_decay``,
    ``momentum`` when given) are stored in the params' dtype.
    """
    values = {"lr": lr, "lr_decay": lr_decay} | ({} if momentum is None else {"momentum": momentum})
    for name, v in values.items():
        if isinstance(v, (bool, np.bool_)) or np.ndim(v) != 0 or not np.issubdtype(np.asarray(v).dtype, np.number):
            raise ValueError(f"sgd: {name} must be a real scalar, got {v!r}")
        f = float(v)
        if not np.isfinite(f) or f < 0 or (f == 0 and name == "lr_decay"):
            raise ValueError(f"sgd: {name} must be finite and {'> 0' if name == 'lr_decay' else '>= 0'}, got {f!r}")
    return optax.inject_hyperparams(_sgd)(**values, epoch=np.zeros((), np.int32))  # a strong int32: no retrace


def _is_injected(node) -> bool:
    return hasattr(node, "inner_state") and isinstance(getattr(node, "hyperparams", None), dict)


def hyperparams(opt_state) -> dict:
    """{name: array} of the injected hyperparameters in ``opt_state`` (empty if none)."""
    out = {}
    for node in jax.tree.leaves(opt_state, is_leaf=_is_injected):
        if _is_injected(node):
            out.update(node.hyperparams)
    return out


def set_hyperparams(opt_state, **values):
    """``opt_state`` with the injected hyperparameters ``values`` replaced (cast to their dtype)."""
    def one(node):
        if not _is_injected(node):
            return node
        hp = {k: jnp.asarray(values[k], v.dtype) if k in values else v for k, v in node.hyperparams.items()}
        return node._replace(hyperparams=hp)
    return jax.tree.map(one, opt_state, is_leaf=_is_injected)


def set_epoch(opt_state, epoch):
    """``opt_state`` with its ``epoch`` hyperparameter set (a no-op when it has none)."""
    return set_hyperparams(opt_state, epoch=epoch) if "epoch" in hyperparams(opt_state) else opt_state


def recorded_lr(opt_state, e: int):
    """The learning rate of epoch ``e`` for an optimizer with ``lr``/``lr_decay`` hyperparameters
    (:func:`sgd`), else None; with a leading config axis in a sweep."""
    hp = hyperparams(opt_state)
    if "lr" not in hp or "lr_decay" not in hp:
        return None
    return epoch_lr(hp["lr"], hp["lr_decay"], e)
