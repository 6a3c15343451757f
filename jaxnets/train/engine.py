"""Training engine: one ``jax.jit``-compiled ``lax.scan`` per epoch, optax updates, early stopping,
atomic checkpoints with bit-for-bit resume, a divergence guard, and vmapped sweeps.

Data sources:
- arrays ``(X, Y)``, visited in one of three batch orders: ``"fixed"`` (data order, doc 001
  Algorithm 1), ``"shuffle"`` (a fresh permutation every epoch, doc 003), ``"replacement"`` (every
  batch drawn uniformly with replacement, doc 002's scalar loop, doc 004). A ragged last batch
  (N not a multiple of the batch size) is padded to full size with a 0/1 mask, so its update is
  the mean gradient of its real examples, exactly the per-example algorithm's;
- a :class:`Sampler`, whose batches are drawn inside the compiled epoch from explicit keys (token
  windows of a corpus, doc 003's transformer notebook).

Optimizer: any optax ``GradientTransformation`` (``optimizer=optax.adamw(1e-3)``), or the
shorthand ``lr``/``momentum``/``lr_decay`` for doc 003's SGD with momentum ``v ← αv + g,
w ← w − ηv`` (α = 0 is plain SGD, bit for bit), as ``optax.chain(optax.trace(α),
optax.scale_by_learning_rate(η_e))`` with ``η_e = lr · lr_decay^epoch`` decayed once per epoch
(doc 004). The shorthand's hyperparameters are traced arrays, so :func:`sweep` can ``jax.vmap``
the very same epoch over many configurations.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxnets.train import checkpoint as ckpt
from jaxnets.train import inputs

ORDERS = inputs.ORDERS
GRADS = inputs.GRADS


class Sampler(NamedTuple):
    """A data source that draws its batches inside the compiled epoch.

    ``sample(key, batch_size, *data) -> (xb, yb)``: a pure, jittable function, xb: (B, *in_shape)
    (int tokens for a token model), yb: the matching targets. ``steps_per_epoch``: updates per epoch.
    ``data``: arrays ``sample`` reads (e.g. the corpus); they are passed to the compiled epoch as
    arguments instead of being baked into it as constants (leave empty when ``sample`` closes over
    nothing large).
    """
    sample: Callable[..., Any]
    steps_per_epoch: int
    data: tuple = ()


class Hyper(NamedTuple):
    """Traced hyperparameters (scalars, or arrays with a leading config axis in a sweep)."""
    lr: Any
    momentum: Any
    l2: Any
    lr_decay: Any


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    diverged: Any   # bool scalar: a non-finite loss/gradient/update was met; params frozen since
    bad_step: Any   # int32 scalar: global update index of the first non-finite step, -1 if none
    updates: Any    # int32 scalar: gradient updates applied so far


class Divergence(NamedTuple):
    epoch: int
    step: int
    lr: float
    message: str


class FitResult(NamedTuple):
    """``params``: best-epoch params when early stopping is on (doc 003), else the last ones."""
    params: Any
    final_params: Any
    best_epoch: int
    history: dict
    compile_time: float
    stopped_early: bool
    divergence: Divergence | None
    opt_state: Any


# ----------------------------------------------------------------------------- update rules

def _epoch_lr(hp: Hyper, epoch):
    return hp.lr * hp.lr_decay ** jnp.asarray(epoch, jnp.result_type(hp.lr_decay))


def _sgd(hp: Hyper, epoch):
    return optax.chain(optax.trace(decay=hp.momentum), optax.scale_by_learning_rate(_epoch_lr(hp, epoch)))


def _with_standard_promotion(fn):
    # Third-party optimizers are not written for strict dtype promotion (optax's bias correction
    # raises a Python float to an int32 count); the engine's own code stays strict.
    def wrapped(*args):
        with jax.numpy_dtype_promotion("standard"):
            return fn(*args)
    return wrapped


def init_state(params, optimizer: optax.GradientTransformation | None = None) -> TrainState:
    """Fresh state: ``optimizer.init(params)``, or the SGD shorthand's (velocity) state."""
    if optimizer is None:
        opt_state = _sgd(Hyper(1.0, 0.0, 0.0, 1.0), 0).init(params)
    else:
        opt_state = _with_standard_promotion(optimizer.init)(params)
    return TrainState(params, opt_state, jnp.zeros((), bool), -jnp.ones((), jnp.int32),
                      jnp.zeros((), jnp.int32))


def _update_fn(optimizer, hp: Hyper, epoch, use_momentum: bool):
    """``update(grads, opt_state, params) -> (updates, opt_state)`` of this epoch."""
    if optimizer is not None:
        return _with_standard_promotion(optimizer.update)
    if use_momentum:
        return _sgd(hp, epoch).update

    def plain(g, opt_state, params):  # scale_by_learning_rate alone; the (unused) velocity is kept
        upd, _ = optax.scale_by_learning_rate(_epoch_lr(hp, epoch)).update(g, optax.EmptyState())
        return upd, opt_state
    return plain


def _grad_fn(model, grad: str):
    """``g(params, x, y, l2, mask, key) -> (loss, grads)``; the key reaches stochastic models only."""
    fn = model.backprop if grad == "hand" else model.grad_autodiff
    if inputs.stochastic(model):
        return lambda p, x, y, l2, m, k: fn(p, x, y, l2, m, key=k)
    return lambda p, x, y, l2, m, k: fn(p, x, y, l2, m)


# ----------------------------------------------------------------------------- finiteness

def _finite(loss, grads):
    """False if the loss or any gradient entry is NaN/±Inf.

    One sum per leaf instead of ``all(isfinite(g))``: NaN and ±Inf propagate through a sum, and
    XLA:CPU runs a float sum faster than an isfinite-and-reduce over the same leaf. The
    sum also overflows (→ flagged) when the gradient's entries add up past the float range, which
    is a divergence in any case.
    """
    return jnp.isfinite(loss + sum(jnp.sum(g) for g in jax.tree.leaves(grads)))


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(tree)
                              if jnp.issubdtype(v.dtype, jnp.inexact)] or [jnp.bool_(True)]))


# ----------------------------------------------------------------------------- batches

def batch_indices(order: str, key, n: int, batch_size: int):
    """Index and mask arrays of one epoch, both (n_batches, batch_size), n_batches = ceil(n/B).

    Padding rows (ragged last batch) point at example 0 with mask 0.
    """
    nb = -(-n // batch_size)
    if order == "replacement":
        idx = jax.random.randint(key, (nb, batch_size), 0, n)
        return idx, jnp.ones((nb, batch_size), jnp.float32)
    perm = jnp.arange(n) if order == "fixed" else jax.random.permutation(key, n)
    pad = nb * batch_size - n
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(nb, batch_size)
    mask = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
    return idx, mask.reshape(nb, batch_size)


def _step_fn(model, grad, update, l2, *, check_grads, limit, shard):
    """``step(state, xb, yb, mask, key) -> (state, loss)``.

    Steps past ``limit`` updates, steps after a divergence, and a step whose loss (``check_grads``:
    also gradient and updated params) is not finite leave the state unchanged; the first such step
    is recorded in ``bad_step``. (The select that keeps the old state costs nothing measurable: XLA
    fuses it into the update's pass over the weights.)
    """
    grad_fn = _grad_fn(model, grad)

    def step(state, xb, yb, mask, key):
        xb, yb = shard(xb), shard(yb)
        loss, g = grad_fn(state.params, xb, yb, l2, mask, key)
        upd, new_opt = update(g, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, upd)
        active = state.updates < limit
        finite = (_finite(loss, g) & _all_finite(new_params)) if check_grads else jnp.isfinite(loss)
        do = active & finite & ~state.diverged
        newly_bad = active & ~finite & ~state.diverged
        keep = lambda new, old: jnp.where(do, new, old)  # noqa: E731
        return TrainState(
            jax.tree.map(keep, new_params, state.params),
            jax.tree.map(keep, new_opt, state.opt_state),
            state.diverged | newly_bad,
            jnp.where(newly_bad, state.updates, state.bad_step),
            state.updates + do.astype(jnp.int32),
        ), jnp.where(active, loss, jnp.nan)

    return step


def _scan_arrays(step, order, n, batch_size, key, model_key, X, Y, state, dtype):
    """Run one epoch of ``step`` over the arrays' batches (a ragged last batch padded and masked)."""
    idx, mask = batch_indices(order, key, n, batch_size)
    keys = None if model_key is None else jax.random.split(model_key, idx.shape[0])

    def body(s, b):
        i, m, k = b
        return step(s, X[i], Y[i], m.astype(dtype), k)
    return jax.lax.scan(body, state, (idx, mask, keys))


def _scan_sampler(step, sampler: Sampler, batch_size, key, stochastic, state, data):
    def body(s, k):
        kb, km = jax.random.split(k) if stochastic else (k, None)
        xb, yb = sampler.sample(kb, batch_size, *data)
        return step(s, xb, yb, None, km)
    return jax.lax.scan(body, state, jax.random.split(key, sampler.steps_per_epoch))


def make_epoch(model, n, batch_size: int, order: str = "shuffle", grad: str = "hand",
               max_updates: int | None = None, mesh=None, inspect_sharding=None, *,
               use_momentum: bool = True, use_l2: bool = True, check_grads: bool = True,
               optimizer: optax.GradientTransformation | None = None):
    """The pure epoch function ``epoch(state, hp, epoch, key, *data) -> (state, step_losses)``.

    ``n``: the number of training examples (then ``data = (X, Y)``, X: (n, *in_shape), Y: (n,)
    labels or (n, K) targets), or a :class:`Sampler` (then ``data = sampler.data``).
    step_losses: (n_batches,). With a ``mesh`` the batch axis of every minibatch is sharded over
    its "data" axis (params and optimizer state stay replicated; XLA inserts the gradient
    all-reduce); ``inspect_sharding(sharding)`` is called at compile time with the minibatch's.
    ``optimizer``: an optax transformation (``hp.lr``/``momentum``/``lr_decay`` are then unused).

    ``use_momentum=False`` / ``use_l2=False`` compile the epoch for ``hp.momentum == 0`` /
    ``hp.l2 == 0`` (the values in ``hp`` are then ignored): at small batches a step is bound by
    passes over the weights, and the velocity update and the penalty's reduction are two of them.

    Steps past ``max_updates`` (global count), steps after a divergence and a non-finite step
    leave the state unchanged. "Non-finite" is the loss alone with ``check_grads=False`` (free:
    the loss is computed anyway), and also the gradient (one sum per leaf, an extra read of it)
    and the updated params with ``check_grads=True``. :func:`fit` and :func:`sweep` run
    ``check_grads=False`` and replay an epoch with ``check_grads=True`` from its input state
    (order and draws are deterministic) only when its losses or output state are not finite —
    the same result as checking every step, without the per-step cost.
    """
    inputs.check_choice("order", order, ORDERS)
    inputs.check_choice("grad", grad, GRADS)
    sampler = n if isinstance(n, Sampler) else None
    limit = jnp.iinfo(jnp.int32).max if max_updates is None else int(max_updates)
    stochastic = inputs.stochastic(model)
    shard = _sharder(mesh, inspect_sharding)

    def epoch_fn(state: TrainState, hp: Hyper, epoch, key, *data):
        update = _update_fn(optimizer, hp, epoch, use_momentum)
        l2 = hp.l2 if use_l2 else 0.0   # a Python 0 lets the model skip the penalty statically
        step = _step_fn(model, grad, update, l2, check_grads=check_grads,
                        limit=limit, shard=shard)
        if sampler is not None:
            new, losses = _scan_sampler(step, sampler, batch_size, key, stochastic, state, data)
        else:
            k_order, k_model = jax.random.split(key) if stochastic else (key, None)
            dtype = jax.tree.leaves(state.params)[0].dtype
            new, losses = _scan_arrays(step, order, n, batch_size, k_order, k_model, *data, state, dtype)
        return new, losses

    return epoch_fn


def _sharder(mesh, inspect_sharding):
    sharding = None if mesh is None else NamedSharding(mesh, P("data"))

    def shard(x):
        if sharding is not None:
            x = jax.lax.with_sharding_constraint(x, sharding)
        if inspect_sharding is not None:
            jax.debug.inspect_array_sharding(x, callback=inspect_sharding)
        return x
    return shard


@jax.jit
def _state_finite(state: TrainState):
    return _all_finite((state.params, state.opt_state))


def with_replay(fast_epoch, exact_epoch):
    """``run(state, *args)``: the fast (``check_grads=False``) epoch; replayed from the same input
    state with the guarded one (``exact_epoch``, compiled on first need) when its output weights or
    optimizer state are not finite. (A non-finite loss froze the fast epoch's state already; a
    non-finite gradient or update under a finite loss put NaN/Inf into the weights, which stays.)"""
    def run(state, *args):
        new, losses = fast_epoch(state, *args)
        if not bool(_state_finite(new)):
            new, losses = exact_epoch(state, *args)
        return new, losses
    return run


# ----------------------------------------------------------------------------- evaluation

def make_evaluate(model, n: int, batch_size: int = 1000):
    """``evaluate(params, X, Y) -> (mean data loss, accuracy)`` over n examples in fixed chunks
    (one compiled shape per data set size; padded rows masked out). No L2 term in the loss; the
    accuracy compares ``model.predict`` with the labels (argmax of (n, K) targets), averaged over
    a token model's positions."""
    batch_size = max(1, min(batch_size, n))
    idx, mask = batch_indices("fixed", None, n, batch_size)

    def evaluate(params, X, Y):
        dtype = jax.tree.leaves(params)[0].dtype

        def chunk(acc, batch):
            i, m = batch
            m = m.astype(dtype)
            value = model.loss(params, X[i], Y[i], 0.0, m)
            pred, y = model.predict(params, X[i]), Y[i]
            if y.ndim > pred.ndim:
                y = jnp.argmax(y, axis=-1).astype(jnp.int32)
            correct = (pred.astype(y.dtype) == y).astype(dtype)
            correct = jnp.mean(correct.reshape(correct.shape[0], -1), axis=1)
            n_real = jnp.sum(m)
            return (acc[0] + value * n_real, acc[1] + jnp.sum(correct * m)), None

        z = jnp.zeros((), dtype)
        (loss_sum, correct), _ = jax.lax.scan(chunk, (z, z), (idx, mask))
        return loss_sum / n, correct / n

    return evaluate


def make_sampled_evaluate(model, sampler: Sampler, batch_size: int, n_batches: int):
    """``evaluate(params, key, *sampler.data) -> (mean loss, nan)``: the loss averaged over
    ``n_batches`` sampled batches (doc 003's transformer notebook's ``estimate_loss``), in
    evaluation mode (no dropout key); loss only, a sampled batch has no accuracy."""
    def evaluate(params, key, *data):
        def one(k):
            return model.loss(params, *sampler.sample(k, batch_size, *data))
        loss = jnp.mean(jax.lax.map(one, jax.random.split(key, n_batches)))
        return loss, jnp.full((), jnp.nan, loss.dtype)
    return evaluate


def _evaluators(model, sources: dict, key, eval_batch_size: int, eval_batches: int, batch_size: int,
                vmapped: bool = False, keys=None):
    """{name: fn(params) -> (loss, acc)} for every evaluation set, compiled once each; a sampled
    set is scored on the same batches (fixed keys) every epoch — drawn from ``key`` as
    :func:`fit` draws them, or (vmapped, ``keys`` given) from each configuration's own key."""
    out = {}
    k_eval = jax.random.split(key)[1] if keys is None else jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    for j, (name, src) in enumerate(sources.items()):
        key_axis = None
        if isinstance(src, Sampler):
            fn = make_sampled_evaluate(model, src, batch_size, eval_batches)
            if keys is None:
                args = (jax.random.fold_in(k_eval, j), *src.data)
            else:
                args, key_axis = (jax.vmap(jax.random.fold_in, in_axes=(0, None))(k_eval, j), *src.data), 0
        else:
            fn, args = make_evaluate(model, len(src[0]), eval_batch_size), tuple(src)
        in_axes = (0,) + ((key_axis,) + (None,) * (len(args) - 1) if args else ())
        fn = jax.jit(jax.vmap(fn, in_axes=in_axes) if vmapped else fn)
        out[name] = (lambda f, a: lambda params: f(params, *a))(fn, args)
    return out


# ----------------------------------------------------------------------------- compile and replay

def _data_args(train) -> tuple:
    return tuple(train.data) if isinstance(train, Sampler) else tuple(train)


def _compile_epoch(model, state, hp, key, train, batch_size, *, order, grad, max_updates, mesh,
                   optimizer, use_momentum, use_l2, vmapped=False, key_per_config=False):
    """The epoch :func:`fit` and :func:`sweep` run: ``(run(state, hp, epoch, key), compile time)``.
    The fast epoch is compiled now; the guarded one it replays with on a non-finite epoch, on
    first need. ``key_per_config``: (vmapped) ``key`` has a leading config axis."""
    source = train if isinstance(train, Sampler) else len(train[0])
    data = _data_args(train)

    def build(check):
        ep = make_epoch(model, source, batch_size, order, grad, max_updates, mesh,
                        use_momentum=use_momentum, use_l2=use_l2, check_grads=check,
                        optimizer=optimizer)
        if vmapped:
            ep = jax.vmap(ep, in_axes=(0, 0, None, 0 if key_per_config else None) + (None,) * len(data))
        return jax.jit(ep)

    t0 = time.perf_counter()
    fast = build(False).lower(state, hp, jnp.int32(0), key, *data).compile()
    compile_time = time.perf_counter() - t0
    run = with_replay(fast, build(True))
    return (lambda st, hp_, e, k: run(st, hp_, jnp.int32(e), k, *data)), compile_time


# ----------------------------------------------------------------------------- fit

class _Run(NamedTuple):
    """Everything a fit run fixes before its first epoch."""
    model: Any
    train: Any
    evals: dict           # {"train"/"val"/"test": (X, Y) or Sampler}
    hp: Hyper
    optimizer: Any
    key: Any
    state: TrainState
    batch_size: int
    fingerprint: dict | None   # what a resumed run must match (None without checkpoints)


def _hyper(where, optimizer, lr, momentum, lr_decay, l2, dtype) -> Hyper:
    """The SGD shorthand's (or, with an optax ``optimizer``, only l2's) traced hyperparameters."""
    if optimizer is not None:
        given = [k for k, v, d in (("lr", lr, None), ("momentum", momentum, 0.0),
                                   ("lr_decay", lr_decay, 1.0)) if v is not d and v != d]
        if given:
            raise ValueError(f"{where}: give either optimizer= or the SGD shorthand "
                             f"{'/'.join(given)}=, not both (optimizer and {', '.join(given)})")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise ValueError(f"{where}: optimizer must be an optax GradientTransformation, "
                             f"got {type(optimizer).__name__}")
        lr = 0.0
    elif lr is None:
        raise ValueError(f"{where}: give lr= (doc 003's SGD) or optimizer= (an optax "
                         f"GradientTransformation)")
    inputs.check_hyper(where, lr=lr, momentum=momentum, lr_decay=lr_decay, l2=l2)
    return Hyper(*(jnp.asarray(v, dtype) for v in (lr, momentum, l2, lr_decay)))


def _sources(model, where, train, val, test, eval_train, batch_size, key, dtype):
    """Validated training data and evaluation sets; checks batch_size against the data."""
    def one(name, d):
        if isinstance(d, Sampler):
            return inputs.sampler(model, f"{where}: {name}", d, batch_size, key)
        return inputs.arrays(model, f"{where}: {name}", d, dtype)
    inputs.check_int(where, "batch_size", batch_size)
    tr = one("train", train)
    if not isinstance(tr, Sampler):
        inputs.check_int(where, "batch_size", batch_size, 1, len(tr[0]))
    evals = {"train": tr} if eval_train else {}
    evals.update({name: one(name, d) for name, d in (("val", val), ("test", test)) if d is not None})
    return tr, evals


def _setup(model, params, train, *, epochs, batch_size, optimizer, lr, momentum, lr_decay, l2,
           order, grad, key, val, test, patience, max_updates, eval_train, checkpoint_every,
           mesh, eval_batches, eval_batch_size, checkpointing) -> _Run:
    """Validate every argument (nothing is compiled before all of them passed). The run's
    fingerprint (a CRC-32 of the training data among others) is computed for checkpoints only."""
    where = f"fit({getattr(model, 'name', 'model')})"
    inputs.check_choice("order", order, ORDERS)
    inputs.check_choice("grad", grad, GRADS)
    inputs.check_int(where, "epochs", epochs)
    inputs.check_int(where, "checkpoint_every", checkpoint_every)
    inputs.check_int(where, "eval_batches", eval_batches)
    inputs.check_int(where, "eval_batch_size", eval_batch_size)
    for name, v in (("patience", patience), ("max_updates", max_updates)):
        if v is not None:
            inputs.check_int(where, name, v)
    if patience is not None and val is None:
        raise ValueError(f"{where}: early stopping (patience) needs val=(X, Y)")
    dtype = jax.tree.leaves(params)[0].dtype
    hp = _hyper(where, optimizer, lr, momentum, lr_decay, l2, dtype)
    key = jax.random.key(0) if key is None else key
    tr, evals = _sources(model, where, train, val, test, eval_train, batch_size, key, dtype)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"{where}: batch_size {batch_size} must be a multiple of the {mesh.size} devices")
    state = init_state(params, optimizer)
    if mesh is not None:
        rep = NamedSharding(mesh, P())
        if isinstance(tr, Sampler):
            state, data = jax.device_put((state, tr.data), rep)
            tr = tr._replace(data=tuple(data))
        else:
            state, tr = jax.device_put((state, tr), rep)
        evals = {k: tr if k == "train" else v for k, v in evals.items()}
    fp = None if not checkpointing else {
        "train": inputs.fingerprint(tr), "batch_size": batch_size, "order": order, "grad": grad,
        "optimizer": inputs.fingerprint(optimizer) if optimizer is not None else "sgd",
        "hyper": [float(v) for v in (lr or 0.0, momentum, lr_decay, l2)], "max_updates": max_updates}
    return _Run(model, tr, evals, hp, optimizer, key, state, batch_size, fp)


def _new_history(evals) -> dict:
    h = {k: [] for k in ("epoch", "time", "updates", "lr", "step_loss")}
    for name in evals:
        h[f"{name}_loss"], h[f"{name}_acc"] = [], []
    return h


def _record(run: _Run, history, e, state, step_losses, seconds, evaluators):
    history["time"].append(seconds)
    history["epoch"].append(e + 1)
    history["updates"].append(int(state.updates))
    history["lr"].append(float(run.hp.lr * run.hp.lr_decay ** e) if run.optimizer is None else None)
    history["step_loss"].append([float(v) for v in np.asarray(step_losses) if not np.isnan(v)])
    for name, ev in evaluators.items():
        loss_v, acc_v = ev(state.params)
        history[f"{name}_loss"].append(float(loss_v))
        history[f"{name}_acc"].append(None if np.isnan(acc_v) else float(acc_v))


def _divergence(run: _Run, history, e, state) -> Divergence:
    step = int(state.bad_step)
    rate = (f"lr {float(run.hp.lr):g}, this epoch's lr {history['lr'][-1]:g}" if run.optimizer is None
            else "optax optimizer")
    msg = (f"{run.model.name}: training diverged in epoch {e + 1} at update {step} ({rate}): "
           f"non-finite loss, gradient or update; kept the last finite params")
    return Divergence(e + 1, step, float(run.hp.lr) if run.optimizer is None else math.nan, msg)


def _val_score(history):
    """Higher is better: the validation accuracy, or minus the loss for a sampled set."""
    acc = history["val_acc"][-1]
    return acc if acc is not None else -history["val_loss"][-1]


def _update_best(best, history, e, state):
    score = _val_score(history)
    if score > best["score"]:
        return {"params": state.params, "epoch": e + 1, "score": score, "wait": 0}
    return dict(best, wait=best["wait"] + 1)


_FP_NAMES = {"train": "training data (shape and CRC-32)", "batch_size": "batch_size", "order": "order",
             "grad": "grad", "optimizer": "optimizer", "max_updates": "max_updates",
             "hyper": "lr/momentum/lr_decay/l2"}


def _resume(run: _Run, path, resume, history, best):
    """``(state, key, history, start epoch, best)`` from the checkpoint at ``path``.

    ``resume=True`` needs the file (a missing one is refused: a typo in the path must not restart
    a long run from scratch silently); ``resume="if_exists"`` starts fresh when it is missing.
    A checkpoint of a different run (data, batch size, order, optimizer or hyperparameters) is
    refused, naming what differs."""
    import os
    if not os.path.exists(path):
        if resume == "if_exists":
            return run.state, run.key, history, 0, best
        raise ckpt.CheckpointError(f"checkpoint {path}: resume=True but the file does not exist "
                                   f"(resume='if_exists' starts fresh when it is missing)")
    stored = ckpt.read_meta(path).get("fingerprint", {})
    for k, label in _FP_NAMES.items():
        if stored.get(k) != ckpt.jsonable(run.fingerprint[k]):
            raise ckpt.CheckpointError(f"checkpoint {path}: written by a run with different {label}; "
                                       f"refusing to resume (delete it or use another checkpoint_path)")
    tree, meta = ckpt.load(path, {"state": run.state, "best": run.state.params, "key": run.key})
    best = {"params": tree["best"], "epoch": meta["best_epoch"], "score": meta["best_score"],
            "wait": meta["wait"]}
    return tree["state"], tree["key"], meta["history"], meta["epoch"], best


def _save(run: _Run, path, e, state, key, history, best):
    ckpt.save(path, {"state": state, "best": best["params"], "key": key},
              {"epoch": e + 1, "history": history, "best_epoch": best["epoch"],
               "best_score": float(best["score"]), "wait": best["wait"],
               "fingerprint": run.fingerprint})


def _progress(enabled):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm


def _loop(run: _Run, run_epoch, evaluators, state, key, history, best, start, *, epochs, patience,
          checkpoint_path, checkpoint_every, progress, callback):
    """The epoch loop; returns ``(state, history, best, divergence, stopped_early)``."""
    bar = _progress(progress)
    it = range(start, epochs)
    it = bar(it, desc=run.model.name, unit="epoch", initial=start, total=epochs) if bar else it
    divergence, stopped = None, False
    for e in it:
        t = time.perf_counter()
        state, step_losses = run_epoch(state, run.hp, e, jax.random.fold_in(key, e))
        jax.block_until_ready(state)
        _record(run, history, e, state, step_losses, time.perf_counter() - t, evaluators)
        if bar:
            it.set_postfix({k: f"{history[k][-1]:.4f}" for k in ("train_loss", "val_acc")
                            if history.get(k) and history[k][-1] is not None})
        if bool(state.diverged):
            divergence = _divergence(run, history, e, state)
            history["diverged"] = divergence._asdict()
            print(divergence.message, file=sys.stderr)
            break
        if "val" in run.evals:
            best = _update_best(best, history, e, state)
        if callback is not None:
            callback(e + 1, state, history)
        if checkpoint_path is not None and ((e + 1) % checkpoint_every == 0 or e + 1 == epochs):
            _save(run, checkpoint_path, e, state, key, history, best)
        if patience is not None and best["wait"] >= patience:
            stopped = True
            break
    if bar:
        it.close()
    return state, history, best, divergence, stopped


def fit(model, params, train, *, epochs: int, batch_size: int,
        optimizer: optax.GradientTransformation | None = None, lr: float | None = None,
        momentum: float = 0.0, lr_decay: float = 1.0, l2: float = 0.0, order: str = "shuffle",
        grad: str = "hand", key=None, val=None, test=None, patience: int | None = None,
        max_updates: int | None = None, eval_train: bool = True, eval_batch_size: int = 1000,
        eval_batches: int = 200, checkpoint_path=None, checkpoint_every: int = 1,
        resume: bool | str = False, progress: bool | None = None, mesh=None,
        callback=None) -> FitResult:
    """Train ``model`` from ``params`` on ``train`` for ``epochs`` epochs of ``batch_size``.

    ``train``: ``(X, Y)`` — X: (N, *model.in_shape), float (token ids for an "int"-input model);
    Y: (N,) int labels in [0, K) (±1 for a logistic head) or (N, K) float targets — or a
    :class:`Sampler` (``steps_per_epoch`` updates on batches drawn inside the compiled epoch).
    ``optimizer``: any optax ``GradientTransformation``; or ``lr``/``momentum``/``lr_decay``, the
    shorthand for doc 003's SGD (one of the two). ``l2``: the model's penalty l2·Σ‖W‖².
    ``val``/``test``: (X, Y) pairs or Samplers evaluated after every epoch (a Sampler: the mean
    loss of ``eval_batches`` sampled batches, the same batches each epoch; no accuracy).
    ``patience``: stop after that many epochs without a better validation accuracy (or loss, for a
    sampled set) and return the best epoch's params. ``key`` drives shuffling/sampling (and the
    dropout of a stochastic model); epoch e uses ``fold_in(key, e)``, so a resumed run draws
    exactly what an uninterrupted one would. Checkpoints (``checkpoint_path``) hold params,
    optimizer state, epoch, key, best params, history and the run's fingerprint; ``resume=True``
    continues from one bit for bit (see :func:`_resume` for what is refused). A non-finite loss,
    gradient or update stops the run, keeps the last finite params and records a
    :class:`Divergence`. ``history`` maps names to per-epoch lists (``step_loss`` the per-update
    losses, ``updates`` the cumulative number of updates, ``lr`` the SGD shorthand's rate).
    """
    run = _setup(model, params, train, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                 lr=lr, momentum=momentum, lr_decay=lr_decay, l2=l2, order=order, grad=grad,
                 key=key, val=val, test=test, patience=patience, max_updates=max_updates,
                 eval_train=eval_train, checkpoint_every=checkpoint_every, mesh=mesh,
                 eval_batches=eval_batches, eval_batch_size=eval_batch_size,
                 checkpointing=checkpoint_path is not None)
    run_epoch, compile_time = _compile_epoch(
        model, run.state, run.hp, run.key, run.train, batch_size, order=order, grad=grad,
        max_updates=max_updates, mesh=mesh, optimizer=optimizer,
        use_momentum=optimizer is None and momentum != 0, use_l2=l2 != 0)
    evaluators = _evaluators(model, run.evals, run.key, eval_batch_size, eval_batches, batch_size)
    history = _new_history(run.evals)
    best = {"params": params, "epoch": -1, "score": -np.inf, "wait": 0}
    state, key, start = run.state, run.key, 0
    if resume and checkpoint_path is not None:
        state, key, history, start, best = _resume(run, checkpoint_path, resume, history, best)
    state, history, best, divergence, stopped = _loop(
        run, run_epoch, evaluators, state, key, history, best, start, epochs=epochs,
        patience=patience, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
        progress=progress, callback=callback)
    use_best = patience is not None and best["epoch"] > 0
    return FitResult(best["params"] if use_best else state.params, state.params,
                     best["epoch"] if val is not None else len(history["epoch"]), history,
                     compile_time, stopped, divergence, state.opt_state)


def evaluate(model, params, data, batch_size: int = 1000):
    """(mean data loss, accuracy) of ``params`` on ``data = (X, Y)`` (validated, chunked)."""
    X, Y = inputs.arrays(model, "evaluate: data", data, jax.tree.leaves(params)[0].dtype)
    return tuple(float(v) for v in jax.jit(make_evaluate(model, len(X), batch_size))(params, X, Y))


# ----------------------------------------------------------------------------- sweep

def _sweep_hyper(configs, optimizer, dtype) -> Hyper:
    """(C,) traced hyperparameters from ``configs`` (missing → SGD defaults)."""
    configs = dict(configs or {})
    unknown = set(configs) - set(Hyper._fields)
    if unknown:
        raise ValueError(f"sweep: unknown configs keys {sorted(unknown)}; expected {Hyper._fields}")
    if optimizer is not None and set(configs) - {"l2"}:
        raise ValueError(f"sweep: give either optimizer= or SGD configs {sorted(set(configs) - {'l2'})}, "
                         f"not both (optimizer and configs)")
    if optimizer is None and "lr" not in configs:
        raise ValueError("sweep: configs needs 'lr' (doc 003's SGD), or give optimizer=")
    sizes = {k: len(np.atleast_1d(v)) for k, v in configs.items()}
    C = max(sizes.values(), default=1)
    if any(s not in (1, C) for s in sizes.values()):
        raise ValueError(f"sweep: configs lengths differ: {sizes}")
    defaults = {"lr": 0.0, "momentum": 0.0, "l2": 0.0, "lr_decay": 1.0}
    values = {k: np.broadcast_to(np.asarray(configs.get(k, defaults[k]), np.float64), (C,))
              for k in Hyper._fields}
    inputs.check_hyper("sweep", **{f"configs['{k}']": v for k, v in values.items()})
    return Hyper(*(jnp.asarray(values[k], dtype) for k in Hyper._fields))


def _stack(model, params, C, dtype):
    """``params`` with a leading config axis: as given if it has one (one init per seed, via
    ``jax.vmap(model.init)(keys)``), else broadcast from one shared start."""
    ref = jax.tree.leaves(jax.eval_shape(lambda k: model.init(k, dtype), jax.random.key(0)))
    leaves = jax.tree.leaves(params)
    if all(np.ndim(v) == r.ndim + 1 for v, r in zip(leaves, ref)):
        return params, len(leaves[0])
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (C,) + v.shape), params), C


def _config_keys(keys, C: int):
    """``keys`` as a (C,) typed PRNG key array (None stays None); anything else is refused."""
    if keys is None:
        return None
    keys = jnp.asarray(keys)
    if keys.shape != (C,) or not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise ValueError(f"sweep: keys must be {C} typed PRNG keys (jax.random.split(key, {C})), "
                         f"got shape {keys.shape} and dtype {keys.dtype}")
    return keys


def sweep(model, params, train, *, configs: dict | None = None, epochs: int, batch_size: int,
          optimizer: optax.GradientTransformation | None = None, order: str = "shuffle",
          grad: str = "hand", key=None, val=None, test=None, max_updates: int | None = None,
          eval_batch_size: int = 1000, eval_train: bool = True, eval_batches: int = 200,
          progress: bool | None = None, keys=None, callback=None, eval_initial: bool = False):
    """Train C configurations at once: one ``jax.vmap`` of :func:`fit`'s epoch.

    configs: {"lr": (C,), "momentum": (C,), "l2": (C,), "lr_decay": (C,)} (missing → SGD defaults
    0 momentum, 0 l2, no decay); with an optax ``optimizer`` only "l2" may be given, and C may
    come from stacked ``params`` alone. ``params`` is one pytree (shared start) or a pytree with a
    leading config axis of size C. Returns ``(final params with a leading C axis, history)``
    where history lists hold (C,) arrays. ``eval_train=False`` skips the per-epoch pass over the
    training set. ``progress``: a bar over the epochs (None: when stderr is a terminal).
    ``keys``: (C,) keys, one per configuration, for its batch order / sampled batches, dropout
    and the evaluation batches of a sampled set — independent runs such as seeds (C may come
    from ``keys`` alone); by default every configuration draws from ``key``. ``callback(epoch,
    state, history)`` after every epoch (1-based; ``state.params`` with the config axis; also
    after an epoch in which some configuration diverged — sweep freezes that one and goes on).
    ``eval_initial``: also score the starting params on every evaluation set, with the same
    batches as every epoch, into ``history["initial_<name>_loss"]`` / ``["initial_<name>_acc"]``.
    Identical, to float tolerance, to C separate :func:`fit` runs with the same key (``keys[c]``).
    """
    inputs.check_choice("order", order, ORDERS)
    inputs.check_choice("grad", grad, GRADS)
    inputs.check_int("sweep", "epochs", epochs)
    dtype = jax.tree.leaves(params)[0].dtype
    hp = _sweep_hyper(configs, optimizer, dtype)
    n_keys = None if keys is None else int(np.shape(keys)[0]) if np.ndim(keys) else None
    params, C = _stack(model, params, n_keys if n_keys and len(hp.lr) == 1 else len(hp.lr), dtype)
    hp = Hyper(*(jnp.broadcast_to(v, (C,)) for v in hp))
    key = jax.random.key(0) if key is None else key
    tr, evals = _sources(model, "sweep", train, val, test, eval_train, batch_size, key, dtype)
    state = jax.vmap(lambda p: init_state(p, optimizer))(params)
    keys = _config_keys(keys, C)
    epoch_key = ((lambda e: jax.random.fold_in(key, e)) if keys is None else
                 (lambda e: jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, e)))
    run_epoch, compile_time = _compile_epoch(
        model, state, hp, key if keys is None else keys, tr, batch_size, order=order, grad=grad,
        max_updates=max_updates, mesh=None, optimizer=optimizer, vmapped=True, key_per_config=keys is not None,
        use_momentum=optimizer is None and bool(np.any(np.asarray(hp.momentum) != 0)),
        use_l2=bool(np.any(np.asarray(hp.l2) != 0)))
    evaluators = _evaluators(model, evals, key, eval_batch_size, eval_batches, batch_size, vmapped=True,
                             keys=keys)
    history = {"epoch": [], "time": [], "step_loss": [], "compile_time": compile_time}
    for k, ev in evaluators.items():
        history[f"{k}_loss"], history[f"{k}_acc"] = [], []
        if eval_initial:
            history[f"initial_{k}_loss"], history[f"initial_{k}_acc"] = (np.asarray(v) for v in ev(state.params))
    bar = _progress(progress)
    it = bar(range(epochs), desc=f"{model.name} × {C} configs", unit="epoch") if bar else range(epochs)
    for e in it:
        t = time.perf_counter()
        state, losses = run_epoch(state, hp, e, epoch_key(e))
        jax.block_until_ready(state)
        history["time"].append(time.perf_counter() - t)
        history["epoch"].append(e + 1)
        history["step_loss"].append(np.asarray(losses))
        for k, ev in evaluators.items():
            lv, av = ev(state.params)
            history[f"{k}_loss"].append(np.asarray(lv))
            history[f"{k}_acc"].append(np.asarray(av))
        if callback is not None:
            callback(e + 1, state, history)
    if bar:
        it.close()
    history["diverged"] = np.asarray(state.diverged)
    return state.params, history


def n_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
