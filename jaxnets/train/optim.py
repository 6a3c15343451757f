"""doc 003's SGD with momentum as an optax transformation, ``optax.adamw`` marked for the engine,
and the engine's access to the hyperparameters an optimizer exposes.

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


def _scale(lr, lr_decay, epoch):
    return optax.scale_by_learning_rate(epoch_lr(lr, lr_decay, jnp.asarray(epoch, jnp.result_type(lr_decay))))


def _sgd(lr, lr_decay, epoch, momentum=None):
    scale = _scale(lr, lr_decay, epoch)
    return scale if momentum is None else optax.chain(optax.trace(decay=momentum), scale)


class _DocSGD(optax.GradientTransformationExtraArgs):
    """:func:`sgd`'s transformation (a plain optax one): marked so that the engine can run its
    momentum update as :func:`kept_momentum_step`."""
    __slots__ = ()


def sgd(lr, momentum=None, lr_decay=1.0) -> optax.GradientTransformation:
    """doc 003's SGD: ``optax.inject_hyperparams`` of trace(momentum) ∘ scale(−lr·lr_decay^epoch).

    ``lr`` >= 0, ``lr_decay`` > 0 and 0 <= ``momentum`` < 1 are scalars. ``momentum=None`` keeps no
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
        if name == "momentum" and f >= 1:
            raise ValueError(f"sgd: momentum must be < 1 (the velocity would never decay), got {f!r}")
    # epoch: a strong int32, so setting it never retraces
    return _DocSGD(*optax.inject_hyperparams(_sgd)(**values, epoch=np.zeros((), np.int32)))


def kept_momentum_step(optimizer, update, grads, opt_state, params, keep):
    """(new params, new opt_state) of one :func:`sgd`-with-momentum step whose result passes
    through ``keep(new, old)`` (the engine's select of the old state on a skipped step), or None
    for any other optimizer. The same values as ``update`` + ``optax.apply_updates`` + ``keep`` on
    both, bit for bit; but the weights' update reads the kept velocity (one materialised array)
    instead of recomputing ``αv + g`` from the old velocity. XLA:CPU emits the velocity and the
    weights as two loops; when each read the other's old buffer, written in place, it copied both
    (two extra passes over every weight per step at small batches)."""
    if not isinstance(optimizer, _DocSGD) or "momentum" not in hyperparams(opt_state):
        return None
    _, new = update(grads, opt_state, params)
    new = jax.tree.map(keep, new, opt_state)
    trace_state, *rest = new.inner_state
    velocity = jax.lax.optimization_barrier(trace_state.trace)   # computed once, then read
    new = new._replace(inner_state=(trace_state._replace(trace=velocity), *rest))
    hp = new.hyperparams
    upd, _ = _scale(hp["lr"], hp["lr_decay"], hp["epoch"]).update(velocity, optax.EmptyState())
    return jax.tree.map(keep, optax.apply_updates(params, upd), params), new


class _AdamW(optax.GradientTransformationExtraArgs):
    """:func:`adamw`'s transformation: ``optax.adamw``'s own, carrying its hyperparameters
    (``hp``) so that the engine can run its update as :func:`kept_adamw_step`."""


def adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4) -> optax.GradientTransformation:
    """``optax.adamw(lr, b1, b2, eps, weight_decay=weight_decay)`` (its defaults; decay on every
    parameter), which the engine runs with fewer per-step copies (:func:`kept_adamw_step`; no
    speed difference measured: README Performance). Scalars:
    ``lr`` >= 0, 0 <= ``b1``, ``b2`` < 1, ``eps`` > 0, ``weight_decay`` >= 0. The same formula as
    ``optax.adamw``; the same bits where tested (fit's epoch in float32 and float64,
    tests/test_train.py; E7's record), see :func:`kept_adamw_step` for where they can differ."""
    values = dict(lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    for name, v in values.items():
        if isinstance(v, (bool, np.bool_)) or np.ndim(v) != 0 or not np.issubdtype(np.asarray(v).dtype, np.number):
            raise ValueError(f"adamw: {name} must be a real scalar, got {v!r}")
        f = float(v)
        bad = not np.isfinite(f) or f < 0 or (name in ("b1", "b2") and f >= 1) or (name == "eps" and f == 0)
        if bad:
            rule = "in [0, 1)" if name in ("b1", "b2") else "> 0" if name == "eps" else ">= 0"
            raise ValueError(f"adamw: {name} must be finite and {rule}, got {f!r}")
    opt = _AdamW(*optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    opt.hp = {k: float(v) for k, v in values.items()}
    return opt


def kept_adamw_step(optimizer, update, grads, opt_state, params, keep):
    """(new params, new opt_state) of one :func:`adamw` step whose result passes through
    ``keep(new, old)``, or None for any other optimizer. The step is optax's ``scale_by_adam`` (its
    formula, written out below), ``add_decayed_weights`` and ``scale_by_learning_rate``, but the
    weights' update reads the kept moments instead of recomputing them from the old ones.
    XLA:CPU computes each moment and the weights in separate loops; when the weights' loop read
    the old moments, which the moments' own loops overwrite in place, it copied both moments of
    every parameter each step (the bench's timed E7 transformer program: 436 copy instructions
    with ``optax.adamw``, 319 with this; no speed difference measured).

    Bits: equal to ``update`` + ``optax.apply_updates`` + ``keep`` in fit's epoch (float32 and
    float64, tests/test_train.py) and in E7's three seeds trained together (all six runs, 300 steps,
    compared field by field).
    Not in every program: in a one-configuration vmapped epoch the generic path's recomputed
    moments rounded differently from the stored ones, and the two paths' weights differed by
    round-off; this path uses the stored moments."""
    if not isinstance(optimizer, _AdamW):
        return None
    _, new = update(grads, opt_state, params)
    new = jax.tree.map(keep, new, opt_state)
    adam, hp = new[0], optimizer.hp                       # ScaleByAdamState(count, mu, nu)
    mu_hat = optax.tree.bias_correction(adam.mu, hp["b1"], adam.count)
    nu_hat = optax.tree.bias_correction(adam.nu, hp["b2"], adam.count)
    eps_root = 0.0                                        # optax.adamw's default, kept in the formula
    u = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + hp["eps"]), mu_hat, nu_hat)
    u, _ = optax.add_decayed_weights(hp["weight_decay"]).update(u, optax.EmptyState(), params)
    u, _ = optax.scale_by_learning_rate(hp["lr"]).update(u, optax.EmptyState())
    return jax.tree.map(keep, optax.apply_updates(params, u), params), new


def kept_step(optimizer, update, grads, opt_state, params, keep):
    """:func:`kept_momentum_step` or :func:`kept_adamw_step`, whichever applies; else None."""
    for step in (kept_momentum_step, kept_adamw_step):
        out = step(optimizer, update, grads, opt_state, params, keep)
        if out is not None:
            return out
    return None


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
