"""Training engine: one ``jax.jit``-compiled ``lax.scan`` per epoch, optax updates, early stopping,
atomic checkpoints with bit-for-bit resume, a divergence guard, and vmapped sweeps.

Batch orders (SPEC §1.3):
- ``"fixed"``: examples in data order, no shuffling (doc 001 Algorithm 1, deterministic grading);
- ``"shuffle"``: a fresh permutation every epoch (doc 003);
- ``"replacement"``: every batch drawn uniformly with replacement (doc 002's scalar loop, doc 004).

A ragged last batch (N not a multiple of the batch size) is padded to full size with a 0/1 mask;
the loss is the mean over its real examples, so the update is exactly the per-example algorithm's
and every batch has one shape (the epoch compiles once).

Optimizer: ``optax.chain(optax.trace(momentum), optax.scale_by_learning_rate(lr_e))`` — doc 003's
momentum ``v ← αv + g, w ← w − ηv`` (α = 0 is plain SGD, bit for bit), with the learning rate
``lr_e = lr · lr_decay^epoch`` decayed once per epoch (doc 004). The hyperparameters are traced
arrays, so :func:`sweep` can ``jax.vmap`` the very same epoch over many configurations.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxnets.train import checkpoint as ckpt
from jaxnets.nn import losses as losses_mod

ORDERS = ("fixed", "shuffle", "replacement")
GRADS = ("hand", "autodiff")


class Hyper(NamedTuple):
    """Traced hyperparameters (scalars, or arrays with a leading config axis in a sweep)."""
    lr: Any
    momentum: Any
    l2: Any
    lr_decay: Any


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    diverged: Any   # bool scalar: a non-finite loss/gradient was met; params frozen since
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


def _epoch_lr(hp: Hyper, epoch):
    return hp.lr * hp.lr_decay ** jnp.asarray(epoch, jnp.result_type(hp.lr_decay))


def _optimizer(hp: Hyper, epoch):
    return optax.chain(optax.trace(decay=hp.momentum), optax.scale_by_learning_rate(_epoch_lr(hp, epoch)))


def init_state(params) -> TrainState:
    opt_state = _optimizer(Hyper(1.0, 0.0, 0.0, 1.0), 0).init(params)
    return TrainState(params, opt_state, jnp.zeros((), bool), -jnp.ones((), jnp.int32),
                      jnp.zeros((), jnp.int32))


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


def _finite(loss, grads):
    """False if the loss or any gradient entry is NaN/±Inf.

    One sum per leaf instead of ``all(isfinite(g))``: NaN and ±Inf propagate through a sum, and
    XLA:CPU runs a float sum faster than an isfinite-and-reduce over the same leaf. The
    sum also overflows (→ flagged) when the gradient's entries add up past the float range, which
    is a divergence in any case.
    """
    return jnp.isfinite(loss + sum(jnp.sum(g) for g in jax.tree.leaves(grads)))


def make_epoch(model, n: int, batch_size: int, order: str = "shuffle", grad: str = "hand",
               max_updates: int | None = None, mesh=None, inspect_sharding=None, *,
               use_momentum: bool = True, use_l2: bool = True, check_grads: bool = True):
    """The pure epoch function ``epoch(state, hp, epoch, key, X, Y) -> (state, step_losses)``.

    X: (n, *in_shape); Y: (n,) labels or (n, K) targets; step_losses: (n_batches,). Steps past
    ``max_updates`` (global count) and steps after a divergence leave the state unchanged.
    With a ``mesh`` the batch axis of every minibatch is sharded over its "data" axis (params and
    optimizer state stay replicated; XLA inserts the gradient all-reduce).
    ``inspect_sharding(sharding)`` is called at compile time with the minibatch's sharding.

    ``use_momentum=False`` / ``use_l2=False`` compile the epoch for ``hp.momentum == 0`` /
    ``hp.l2 == 0`` (the values in ``hp`` are then ignored): at small batches a step is bound by
    passes over the weights, and the velocity update and the penalty's reduction are two of them
    (``python -m experiments.bench`` measures it). With ``use_momentum=False`` the velocity in
    ``state.opt_state`` is neither read nor written, so the state keeps one structure.

    ``check_grads``: every step tests its loss for finiteness (free: the loss is computed anyway)
    and, with ``check_grads=True``, also its gradient, one sum per leaf, before applying it — an
    exact guard, but the sum is an extra read of the gradient that XLA:CPU runs as a slow fused
    reduction, a large share of a small-batch step (``python -m experiments.bench``, row "all
    checks+options on"). ``check_grads=False`` drops it; a non-finite gradient under a finite
    loss then goes into the weights, where it stays non-finite (NaN/Inf survive every later SGD,
    momentum or weight-decay update), so the epoch's output shows it:
    :func:`fit` and :func:`sweep` run ``check_grads=False`` and replay an epoch with
    ``check_grads=True`` from its input state (order and draws are deterministic) only when its
    output state is not finite — same result as checking every step, without the per-step cost.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if grad not in GRADS:
        raise ValueError(f"grad must be one of {GRADS}, got {grad!r}")
    grad_fn = model.backprop if grad == "hand" else model.grad_autodiff
    limit = jnp.iinfo(jnp.int32).max if max_updates is None else int(max_updates)
    batch_sharding = None if mesh is None else NamedSharding(mesh, P("data"))

    def epoch_fn(state: TrainState, hp: Hyper, epoch, key, X, Y):
        opt = _optimizer(hp, epoch)
        l2 = hp.l2 if use_l2 else 0.0   # a Python 0 lets the model skip the penalty statically
        idx, mask = batch_indices(order, key, n, batch_size)

        def step(state, batch):
            i, m = batch
            xb, yb = X[i], Y[i]
            if batch_sharding is not None:
                xb = jax.lax.with_sharding_constraint(xb, batch_sharding)
                yb = jax.lax.with_sharding_constraint(yb, batch_sharding)
            if inspect_sharding is not None:
                jax.debug.inspect_array_sharding(xb, callback=inspect_sharding)
            loss, g = grad_fn(state.params, xb, yb, l2, m.astype(xb.dtype))
            if use_momentum:
                upd, new_opt = opt.update(g, state.opt_state, state.params)
            else:  # the scale_by_learning_rate stage alone; the (unused) velocity is left as is
                upd, _ = optax.scale_by_learning_rate(_epoch_lr(hp, epoch)).update(g, optax.EmptyState())
                new_opt = state.opt_state
            new_params = optax.apply_updates(state.params, upd)
            active = state.updates < limit
            finite = _finite(loss, g) if check_grads else jnp.isfinite(loss)
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

        return jax.lax.scan(step, state, (idx, mask))

    return epoch_fn


@jax.jit
def _weights_finite(state: TrainState):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in
                              jax.tree.leaves((state.params, state.opt_state))]))


def _with_replay(fast_epoch, exact_epoch):
    """``run(state, *args)``: the ``check_grads=False`` epoch; replayed from the same input state
    with the per-step gradient check (``exact_epoch``, compiled on first need) when its output
    weights or optimizer state are not finite."""
    def run(state, *args):
        new, losses = fast_epoch(state, *args)
        if not bool(_weights_finite(new)):
            new, losses = exact_epoch(state, *args)
        return new, losses
    return run


def make_evaluate(model, n: int, batch_size: int = 1000):
    """``evaluate(params, X, Y) -> (mean data loss, accuracy)`` over n examples in fixed chunks
    (one compiled shape per data set size; padded rows masked out). No L2 term in the loss."""
    batch_size = max(1, min(batch_size, n))
    idx, mask = batch_indices("fixed", None, n, batch_size)
    logistic = model.head is losses_mod.LOSSES["logistic"]

    def evaluate(params, X, Y):
        def chunk(acc, batch):
            i, m = batch
            s = model.apply(params, X[i])
            value, _ = model.head.forward(s, Y[i], m.astype(s.dtype))
            if logistic:
                correct = (jnp.where(s.reshape(-1) >= 0, 1, -1).astype(Y.dtype) == Y[i]).astype(s.dtype)
            else:
                y = Y[i] if Y.ndim == 1 else jnp.argmax(Y[i], axis=-1).astype(jnp.int32)
                correct = (jnp.argmax(s, axis=-1).astype(y.dtype) == y).astype(s.dtype)
            n_real = jnp.sum(m).astype(s.dtype)
            return (acc[0] + value * n_real, acc[1] + jnp.sum(correct * m.astype(s.dtype))), None

        z = jnp.zeros((), jax.tree.leaves(params)[0].dtype)
        (loss_sum, correct), _ = jax.lax.scan(chunk, (z, z), (idx, mask))
        return loss_sum / n, correct / n

    return evaluate


def _validate_data(model, name, data, dtype=None):
    """Check shapes/labels once (jitted steps then trust them); cast x to the params' dtype."""
    if data is None:
        return None
    x, y = data
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[1:] != model.in_shape:
        raise ValueError(f"fit: {name} x must have shape (N, {', '.join(map(str, model.in_shape))}),"
                         f" got {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"fit: {name} has {len(x)} inputs but {len(y)} labels")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"fit: {name} x must be floating point, got {x.dtype}")
    if np.issubdtype(y.dtype, np.integer) and model.head is not losses_mod.LOSSES["logistic"]:
        losses_mod.check_labels(y, model.out_shape[-1], f"fit: {name} labels")
    return jnp.asarray(x, dtype), jnp.asarray(y)


def _progress(enabled):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm


def fit(model, params, train, *, epochs: int, batch_size: int, lr: float, momentum: float = 0.0,
        lr_decay: float = 1.0, l2: float = 0.0, order: str = "shuffle", grad: str = "hand",
        key=None, val=None, test=None, patience: int | None = None, max_updates: int | None = None,
        eval_train: bool = True, eval_batch_size: int = 1000, checkpoint_path=None,
        checkpoint_every: int = 1, resume: bool = False, progress: bool | None = None,
        mesh=None, callback=None) -> FitResult:
    """Train ``model`` from ``params`` on ``train = (X, Y)``.

    X: (N, *model.in_shape) float; Y: (N,) int labels in [0, K) (or (N, K) targets, ±1 for a
    logistic head). ``val``/``test`` are optional (X, Y) pairs evaluated after every epoch.
    ``patience``: stop after that many epochs without a better validation accuracy and return the
    best epoch's params. ``key`` (a ``jax.random.key``) drives shuffling/sampling; epoch e uses
    ``fold_in(key, e)``, so a resumed run draws exactly what an uninterrupted one would.
    Checkpoints (``checkpoint_path``) hold params, optimizer state, epoch, key, best params and
    history; ``resume=True`` continues from one bit for bit. A non-finite loss or gradient stops the
    run, keeps the last finite params and records a :class:`Divergence`.
    Returns a :class:`FitResult`; ``history`` maps names to per-epoch lists (``step_loss`` is the
    per-update loss history, ``updates`` the cumulative number of gradient updates).
    """
    dtype = jax.tree.leaves(params)[0].dtype
    train = _validate_data(model, "train", train, dtype)
    val, test = _validate_data(model, "val", val, dtype), _validate_data(model, "test", test, dtype)
    if patience is not None and val is None:
        raise ValueError("fit: early stopping (patience) needs val=(X, Y)")
    n = len(train[0])
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"fit: batch_size must be in [1, {n}], got {batch_size}")
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"fit: batch_size {batch_size} must be a multiple of the {mesh.size} devices")
    key = jax.random.key(0) if key is None else key
    hp = Hyper(*(jnp.asarray(v, dtype) for v in (lr, momentum, l2, lr_decay)))
    state = init_state(params)
    if mesh is not None:
        rep = NamedSharding(mesh, P())
        state, train = jax.device_put((state, train), rep)

    epoch_of = lambda check: jax.jit(make_epoch(  # noqa: E731
        model, n, batch_size, order, grad, max_updates, mesh, use_momentum=momentum != 0,
        use_l2=l2 != 0, check_grads=check))
    t0 = time.perf_counter()
    epoch_c = epoch_of(False).lower(state, hp, jnp.int32(0), key, *train).compile()
    compile_time = time.perf_counter() - t0
    run_epoch = _with_replay(epoch_c, epoch_of(True))
    evals = {name: (jax.jit(make_evaluate(model, len(d[0]), eval_batch_size)), d)
             for name, d in (("train", train if eval_train else None), ("val", val), ("test", test))
             if d is not None}

    history = {k: [] for k in ("epoch", "time", "updates", "lr", "step_loss")}
    for name in evals:
        history[f"{name}_loss"], history[f"{name}_acc"] = [], []
    best = {"params": params, "epoch": -1, "acc": -np.inf, "wait": 0}
    start = 0
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        tree, meta = ckpt.load(checkpoint_path, {"state": state, "best": params, "key": key})
        state, key = tree["state"], tree["key"]
        history, start = meta["history"], meta["epoch"]
        best = {"params": tree["best"], "epoch": meta["best_epoch"], "acc": meta["best_acc"],
                "wait": meta["wait"]}

    bar = _progress(progress)
    it = range(start, epochs)
    it = bar(it, desc=model.name, unit="epoch", initial=start, total=epochs) if bar else it
    divergence, stopped_early = None, False
    for e in it:
        t = time.perf_counter()
        state, step_losses = run_epoch(state, hp, jnp.int32(e), jax.random.fold_in(key, e), *train)
        jax.block_until_ready(state)
        history["time"].append(time.perf_counter() - t)
        history["epoch"].append(e + 1)
        history["updates"].append(int(state.updates))
        history["lr"].append(float(hp.lr * hp.lr_decay ** e))
        history["step_loss"].append([float(v) for v in np.asarray(step_losses) if not np.isnan(v)])
        for name, (ev, (X, Y)) in evals.items():
            loss_v, acc_v = ev(state.params, X, Y)
            history[f"{name}_loss"].append(float(loss_v))
            history[f"{name}_acc"].append(float(acc_v))
        if bar:
            it.set_postfix({k: f"{history[k][-1]:.4f}" for k in ("train_loss", "val_acc") if k in history})
        if bool(state.diverged):
            step = int(state.bad_step)
            msg = (f"{model.name}: training diverged in epoch {e + 1} at update {step} "
                   f"(lr {float(hp.lr):g}, this epoch's lr {history['lr'][-1]:g}): non-finite loss or "
                   f"gradient; kept the last finite params")
            divergence = Divergence(e + 1, step, float(hp.lr), msg)
            history["diverged"] = divergence._asdict()
            print(msg, file=sys.stderr)
            break
        if val is not None:
            acc = history["val_acc"][-1]
            if acc > best["acc"]:
                best = {"params": state.params, "epoch": e + 1, "acc": acc, "wait": 0}
            else:
                best["wait"] += 1
        if callback is not None:
            callback(e + 1, state, history)
        if checkpoint_path is not None and ((e + 1) % checkpoint_every == 0 or e + 1 == epochs):
            ckpt.save(checkpoint_path, {"state": state, "best": best["params"], "key": key},
                      {"epoch": e + 1, "history": history, "best_epoch": best["epoch"],
                       "best_acc": float(best["acc"]), "wait": best["wait"]})
        if patience is not None and best["wait"] >= patience:
            stopped_early = True
            break
    if bar:
        it.close()
    use_best = patience is not None and best["epoch"] > 0
    return FitResult(best["params"] if use_best else state.params, state.params,
                     best["epoch"] if val is not None else len(history["epoch"]), history,
                     compile_time, stopped_early, divergence, state.opt_state)


def evaluate(model, params, data, batch_size: int = 1000):
    """(mean data loss, accuracy) of ``params`` on ``data = (X, Y)`` (validated, chunked)."""
    X, Y = _validate_data(model, "data", data, jax.tree.leaves(params)[0].dtype)
    return tuple(float(v) for v in jax.jit(make_evaluate(model, len(X), batch_size))(params, X, Y))


def sweep(model, params, train, *, configs: dict, epochs: int, batch_size: int,
          order: str = "shuffle", grad: str = "hand", key=None, val=None, test=None,
          max_updates: int | None = None, eval_batch_size: int = 1000, eval_train: bool = True):
    """Train C configurations at once: one ``jax.vmap`` of the fused epoch over hyperparameters.

    configs: {"lr": (C,), "momentum": (C,), "l2": (C,), "lr_decay": (C,)} (missing → SGD defaults
    0 momentum, 0 l2, no decay). ``params`` is one pytree (shared start) or a pytree with a leading
    config axis of size C (e.g. one init per seed, via ``jax.vmap(model.init)(keys)``).
    Returns ``(final params with a leading C axis, history)`` where history lists hold (C,) arrays.
    ``eval_train=False`` skips the per-epoch pass over the training set (large sets, grids).
    Identical, to float tolerance, to C separate :func:`fit` runs with the same key.
    """
    dtype = jax.tree.leaves(params)[0].dtype
    train = _validate_data(model, "train", train, dtype)
    evals_data = {k: _validate_data(model, k, d, dtype) for k, d in
                  (("train", train if eval_train else None), ("val", val), ("test", test))
                  if d is not None}
    C = len(np.atleast_1d(configs["lr"]))
    defaults = {"momentum": 0.0, "l2": 0.0, "lr_decay": 1.0}
    hp = Hyper(*(jnp.broadcast_to(jnp.asarray(configs.get(k, defaults.get(k)), dtype), (C,))
                 for k in Hyper._fields))
    stacked = all(np.ndim(v) == np.ndim(r) + 1 for v, r in
                  zip(jax.tree.leaves(params), jax.tree.leaves(model.init(jax.random.key(0), dtype))))
    if not stacked:
        params = jax.tree.map(lambda v: jnp.broadcast_to(v, (C,) + v.shape), params)
    state = jax.vmap(init_state)(params)
    key = jax.random.key(0) if key is None else key
    n = len(train[0])
    epoch_of = lambda check: jax.jit(jax.vmap(make_epoch(  # noqa: E731
        model, n, batch_size, order, grad, max_updates, check_grads=check,
        use_momentum=bool(np.any(np.asarray(hp.momentum) != 0)),
        use_l2=bool(np.any(np.asarray(hp.l2) != 0))), in_axes=(0, 0, None, None, None, None)))
    evals = {k: jax.jit(jax.vmap(make_evaluate(model, len(d[0]), eval_batch_size), in_axes=(0, None, None)))
             for k, d in evals_data.items()}
    history = {"epoch": [], "time": [], "step_loss": []}
    for k in evals:
        history[f"{k}_loss"], history[f"{k}_acc"] = [], []
    t0 = time.perf_counter()
    epoch_c = epoch_of(False).lower(state, hp, jnp.int32(0), key, *train).compile()
    history["compile_time"] = time.perf_counter() - t0
    run_epoch = _with_replay(epoch_c, epoch_of(True))
    for e in range(epochs):
        t = time.perf_counter()
        state, losses = run_epoch(state, hp, jnp.int32(e), jax.random.fold_in(key, e), *train)
        jax.block_until_ready(state)
        history["time"].append(time.perf_counter() - t)
        history["epoch"].append(e + 1)
        history["step_loss"].append(np.asarray(losses))
        for k, ev in evals.items():
            lv, av = ev(state.params, *evals_data[k])
            history[f"{k}_loss"].append(np.asarray(lv))
            history[f"{k}_acc"].append(np.asarray(av))
    history["diverged"] = np.asarray(state.diverged)
    return state.params, history


def n_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
