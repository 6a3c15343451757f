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

Optimizer: an optax ``GradientTransformation`` — :func:`~jaxnets.train.optim.sgd` for doc 003's
SGD with momentum and doc 004's per-epoch decay, ``optax.adamw(1e-3)``, … — the one update path.
One that takes extra arguments gets the minibatch loss as ``value=`` (``optax.polyak_sgd``);
one that needs more (``optax.lbfgs``: a loss function to re-evaluate) is refused before training.
An optimizer built with ``optax.inject_hyperparams`` keeps its hyperparameters in its state, so
:func:`sweep` sets one value per configuration there and ``jax.vmap`` s the very same epoch.
"""
from __future__ import annotations

import inspect
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxnets import _io
from jaxnets.errors import CheckpointError
from jaxnets.models import base as model_base
from jaxnets.train import checkpoint as ckpt
from jaxnets.train import inputs, optim

ORDERS = inputs.ORDERS
GRADS = inputs.GRADS


class Sampler(NamedTuple):
    """A data source that draws its batches inside the compiled epoch.

    ``sample(key, batch_size, *data) -> (xb, yb)``: a pure, jittable function of a PRNG key, the
    batch size B and the arrays of ``data``; xb: (B, *in_shape) (int tokens for a token model),
    yb: (B, ...) the matching targets. ``steps_per_epoch``: updates per epoch. ``data``: a
    **tuple** of the arrays ``sample`` reads (e.g. ``(corpus,)``); they are passed to the compiled
    epoch as arguments instead of being baked into it as constants (leave it ``()`` when
    ``sample`` closes over nothing large). fit/sweep check the tuple and ``sample``'s signature.
    """
    sample: Callable[..., Any]
    steps_per_epoch: int
    data: tuple = ()


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


class EarlyStopping(NamedTuple):
    """Stop after ``patience`` epochs without a better validation accuracy (or loss, for a
    sampled set) and return the best epoch's params (doc 003). Needs ``val``."""
    patience: int


class Checkpointing(NamedTuple):
    """Atomic checkpoints at ``path`` (a file whose folder exists or can be made; checked before
    training) every ``every`` epochs (and after the last). ``resume``: False (start fresh and
    overwrite a file already there), True (continue from the file, which must exist and hold at
    most ``epochs`` epochs) or "if_exists" (continue when it exists, else start fresh)."""
    path: Any
    every: int = 1
    resume: bool | str = False


class Evaluation(NamedTuple):
    """What is scored after every epoch besides ``val``: the training set (``train``), a
    ``test`` set ((X, Y) or a Sampler), in chunks of ``batch_size``; a sampled set is scored on
    ``sampled_batches`` batches, the same ones every epoch, or with ``fresh=True`` batches drawn
    anew for each evaluation (doc 003's notebook's ``estimate_loss``; the draws still follow from
    the run's key and the epoch, so a rerun or a resumed run scores the same ones). ``initial``:
    also score the starting params into ``history["initial_<set>_loss"/"_acc"]``."""
    test: Any = None
    train: bool = True
    batch_size: int = 1000
    sampled_batches: int = 200
    initial: bool = False
    fresh: bool = False


class FitResult(NamedTuple):
    """``params``: best-epoch params when early stopping is on (doc 003), else the last ones.

    ``history`` maps names to per-epoch lists: ``epoch``, ``time``, ``updates`` (cumulative),
    ``lr`` (the epoch's rate for :func:`~jaxnets.train.optim.sgd`, else None), ``step_loss``
    (the epoch's per-update losses) and ``<set>_loss``/``<set>_acc`` for train/val/test.
    A :func:`sweep` returns one FitResult for all C configurations (``n_configs`` = C): params
    and opt_state with a leading config axis, each history entry a (C,) array (``step_loss``:
    (C, steps), NaN past ``max_updates``), ``divergence`` a tuple of C entries;
    :meth:`config` gives configuration c as :func:`fit` would return it.
    """
    params: Any
    final_params: Any
    best_epoch: int
    history: dict
    compile_time: float
    stopped_early: bool
    divergence: Any
    opt_state: Any
    n_configs: int | None = None

    def config(self, c: int) -> "FitResult":
        """Configuration ``c`` of a sweep's result, in :func:`fit`'s form (floats, lists)."""
        if self.n_configs is None:
            raise ValueError("FitResult.config: this result is one fit run, not a sweep")
        inputs.check_int("FitResult.config", "c", c, 0, self.n_configs - 1)
        pick = lambda t: jax.tree.map(lambda v: v[c], t)  # noqa: E731

        def entry(k, v):
            if isinstance(v, list):
                return [entry(k, x) for x in v]
            v = np.asarray(v)[c]
            if k == "step_loss":
                return [float(x) for x in v if not np.isnan(x)]
            if k.endswith("_acc") and np.isnan(v):
                return None
            return v.item()
        history = {k: entry(k, v) if k not in ("epoch", "time") else list(v) for k, v in self.history.items()}
        return FitResult(pick(self.params), pick(self.final_params), self.best_epoch, history,
                         self.compile_time, False, self.divergence[c], pick(self.opt_state))


def _with_standard_promotion(fn):
    # Third-party optimizers are not written for strict dtype promotion (optax's bias correction
    # raises a Python float to an int32 count); the engine's own code stays strict.
    def wrapped(*args):
        with jax.numpy_dtype_promotion("standard"):
            return fn(*args)
    return wrapped


def _takes_value(update) -> bool:
    """Whether ``update`` accepts ``value=`` (a ``value`` parameter or ``**extra_args``; optax asks the
    latter of every extra-args transformation, but one written without it trained before)."""
    try:
        params = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):   # no signature to read: optax's contract says it does
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == "value" for p in params)


def _loss_update(optimizer):
    """``update(grads, opt_state, params, loss)``: an optax transformation that takes extra
    arguments (``GradientTransformationExtraArgs``, e.g. ``optax.polyak_sgd``, which reads the
    loss) gets the minibatch loss as ``value=``; the others ignore it (optax's chain drops the
    extra arguments of the transformations that take none)."""
    extra = isinstance(optimizer, optax.GradientTransformationExtraArgs) and _takes_value(optimizer.update)
    update = _with_standard_promotion(lambda g, s, p, v: optimizer.update(g, s, p, value=v) if extra
                                      else optimizer.update(g, s, p))
    return update


def _check_update(where, optimizer, state: "TrainState"):
    """Refuse, before anything compiles, an optimizer whose update needs more than the step has
    (optax.lbfgs and the line searches also want ``value_fn``: a loss function to re-evaluate)."""
    loss = jnp.zeros((), jax.tree.leaves(state.params)[0].dtype)
    try:
        jax.eval_shape(_loss_update(optimizer), state.params, state.opt_state, state.params, loss)
    except TypeError as e:
        raise ValueError(f"{where}: the optimizer's update cannot run on (gradients, state, params, "
                         f"value=the minibatch loss), all a training step passes: {e}") from None


def init_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    """Fresh state: ``optimizer.init(params)``, no divergence, no updates yet."""
    opt_state = _with_standard_promotion(optimizer.init)(params)
    return TrainState(params, opt_state, jnp.zeros((), bool), -jnp.ones((), jnp.int32),
                      jnp.zeros((), jnp.int32))


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

def permutation(key, n: int):
    """``jax.random.permutation(key, n)`` bit for bit, int (n,); on XLA:CPU 3.8× faster at
    n = 1,000 and 10,000, 2.6× at 60,000, where 30 % of the rounds' keys tie (the mean over 8
    keys, ``tools/shuffle_speed.py``). JAX shuffles in ⌈3·ln n / ln(2³² − 1)⌉ rounds, each a stable
    sort of the values by fresh 32-bit keys. XLA:CPU sorts key-value pairs through a comparator
    call per comparison but one uint32 array on a fast path, so each round here sorts the keys
    alone and puts each value at its key's rank (a binary search in the sorted keys). A round whose
    keys tie (a chance of about n²/2³³: one in 90 at n = 10,000, one in 3 at 60,000) is the pair
    sort itself, whose stability orders the ties, after the one-array sort that found them. Under
    vmap every round is the pair sort (a batched cond would run both branches)."""
    x = jnp.arange(n)
    for _ in range(shuffle_rounds(n)):
        key, sub = jax.random.split(key)
        x = _shuffle_round(jax.random.bits(sub, (n,), jnp.uint32), x)
    return x


def shuffle_rounds(n: int) -> int:
    """How many sort rounds ``jax.random.permutation`` shuffles ``n`` items in (its ⌈3·ln n / ln(2³² − 1)⌉)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def _pair_sort(k, x):
    return jax.lax.sort_key_val(k, x)[1]


@jax.custom_batching.custom_vmap
def _shuffle_round(k, x):
    """``x`` stably sorted by the uint32 keys ``k``: both (n,)."""
    s = jnp.sort(k)

    def by_rank(k, x):
        return jnp.zeros_like(x).at[jnp.searchsorted(s, k)].set(x, unique_indices=True)
    return jax.lax.cond(jnp.any(s[1:] == s[:-1]), _pair_sort, by_rank, k, x)


@_shuffle_round.def_vmap
def _shuffle_rounds(axis_size, in_batched, k, x):
    # in_axes, not a broadcast copy: a broadcast carries no sharding, and vmap refuses keys
    # sharded on an explicit mesh beside it
    return jax.vmap(_pair_sort, in_axes=tuple(0 if b else None for b in in_batched))(k, x), True


def batch_indices(order: str, key, n: int, batch_size: int):
    """Index and mask arrays of one epoch, both (n_batches, batch_size), n_batches = ceil(n/B).

    Padding rows (ragged last batch) point at example 0 with mask 0.
    """
    nb = -(-n // batch_size)
    if order == "replacement":
        idx = jax.random.randint(key, (nb, batch_size), 0, n)
        return idx, jnp.ones((nb, batch_size), jnp.float32)
    perm = jnp.arange(n) if order == "fixed" else permutation(key, n)
    pad = nb * batch_size - n
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(nb, batch_size)
    mask = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
    return idx, mask.reshape(nb, batch_size)


def _step_fn(model, grad, update, l2, *, check_grads, limit, shard, optimizer=None):
    """``step(state, xb, yb, mask, key) -> (state, loss)``.

    Steps past ``limit`` updates, steps after a divergence, and a step whose loss (``check_grads``:
    also gradient and updated params) is not finite leave the state unchanged; the first such step
    is recorded in ``bad_step``. (The select that keeps the old state costs nothing measurable: XLA
    fuses it into the update's pass over the weights.) ``optimizer`` :func:`~jaxnets.train.sgd` with
    momentum and :func:`~jaxnets.train.adamw` run as :func:`optim.kept_step` (fewer per-step copies
    of the weights and the moments; the same bits where tested, which each function states).
    """
    grad_fn = _grad_fn(model, grad)

    def step(state, xb, yb, mask, key):
        xb, yb = shard(xb), shard(yb)
        loss, g = grad_fn(state.params, xb, yb, l2, mask, key)
        upd, new_opt = update(g, state.opt_state, state.params, loss)
        new_params = optax.apply_updates(state.params, upd)
        active = state.updates < limit
        finite = (_finite(loss, g) & _all_finite(new_params)) if check_grads else jnp.isfinite(loss)
        do = active & finite & ~state.diverged
        newly_bad = active & ~finite & ~state.diverged
        keep = lambda new, old: jnp.where(do, new, old)  # noqa: E731
        kept = None if optimizer is None else _with_standard_promotion(optim.kept_step)(
            optimizer, lambda *a: update(*a, loss), g, state.opt_state, state.params, keep)
        kept_params, kept_opt = kept or (jax.tree.map(keep, new_params, state.params),
                                         jax.tree.map(keep, new_opt, state.opt_state))
        return TrainState(
            kept_params, kept_opt,
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


#: ``microbatch="auto"``: the most bytes of forward caches (the activations a backward reads) one
#: chunk of a training step may hold. On the README's 2-core CPU (32 MiB L3) doc 003's CNNs at batch
#: 128 (274 and 419 KiB per example) trained 1.4–1.9× faster in chunks of 32 (2-layer) and 16
#: (3-layer) than whole, while the 2-layer CNN at batch 32 (8.6 MiB) was slower in chunks of 16.
MICROBATCH_BYTES = 12 * 2 ** 20
#: the smallest chunk "auto" picks (else the batch stays whole): thinner chunks' products cost
#: more than the cache saves (``tools/microbatch_sizes.py``: the 3-layer CNN at batch 128 in chunks
#: of 8 1.32× the whole batch's speed against 1.40× in chunks of 16; E7's transformer at batch 16
#: in chunks of 8 0.82–0.99×)
MICROBATCH_MIN = 16


def check_microbatch(where: str, microbatch, mesh=None) -> None:
    """ValueError unless ``microbatch`` is "auto", None or a positive int (an int needs no mesh)."""
    if microbatch is None or (isinstance(microbatch, str) and microbatch == "auto"):
        return
    if isinstance(microbatch, (bool, np.bool_)) or not isinstance(microbatch, (int, np.integer)) or microbatch < 1:
        raise ValueError(f'{where}: microbatch must be "auto", None or a positive int, got {microbatch!r}')
    if mesh is not None:
        raise ValueError(f"{where}: microbatch={microbatch} cannot chunk a batch sharded over a mesh; "
                         'pass microbatch=None (or "auto", which leaves a sharded batch whole)')


def cache_bytes_per_example(model, params) -> int:
    """Bytes of ``model.layer``'s forward cache per example (its size at batch 2 less batch 1:
    the params a cache holds cancel), from shapes alone."""
    p = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), params)
    dtype = jnp.int32 if model.input_dtype == "int" else jax.tree.leaves(params)[0].dtype

    def size(n):
        spec = jax.ShapeDtypeStruct((n, *model.in_shape), dtype)
        cache = jax.eval_shape(lambda q, x: model.layer.forward(q, x)[1], p, spec)
        return sum(math.prod(c.shape) * c.dtype.itemsize for c in jax.tree.leaves(cache))
    return size(2) - size(1)


def microbatch_size(model, params, batch_size: int, microbatch="auto", mesh=None) -> int | None:
    """The most examples per chunk a training step of ``batch_size`` runs (None: the whole batch).

    "auto": on a CPU, for a deterministic :class:`~jaxnets.models.Model` and no mesh, ``MICROBATCH_BYTES`` ÷
    :func:`cache_bytes_per_example` (at least ``MICROBATCH_MIN``), None where the chunks that
    gives (``models.base.chunking``) would hold fewer than ``MICROBATCH_MIN`` examples, and None
    elsewhere (a GPU wants the whole batch; a stochastic model keeps the whole batch's dropout
    draws). An int is taken as given; a chunk as large as the batch is None.
    """
    check_microbatch("microbatch_size", microbatch, mesh)
    if microbatch is not None and not isinstance(model, model_base.Model):
        if isinstance(microbatch, str):
            return None          # a model of its own kind: nothing to measure its caches by
        raise ValueError(f"microbatch={microbatch} needs a models.Model (built by models.sequential), "
                         f"got {type(model).__name__}; pass microbatch=None")
    if isinstance(microbatch, str):
        if mesh is not None or inputs.stochastic(model) or jax.default_backend() != "cpu":
            return None
        per = cache_bytes_per_example(model, params)
        microbatch = max(MICROBATCH_MIN, MICROBATCH_BYTES // per) if per > 0 else batch_size
        if microbatch < batch_size and model_base.chunking(batch_size, microbatch)[1] < MICROBATCH_MIN:
            return None
    return None if microbatch is None or microbatch >= batch_size else int(microbatch)


def chunk_size(model, params, batch_size: int, microbatch="auto", mesh=None) -> int | None:
    """The examples per chunk a training step of ``batch_size`` runs (:func:`microbatch_size`'s
    cap through ``models.base.chunking``), or None: the whole batch."""
    cap = microbatch_size(model, params, batch_size, microbatch, mesh)
    return cap and model_base.chunking(batch_size, cap)[1]


def make_epoch(model, n, batch_size: int, order: str = "shuffle", grad: str = "hand",
               max_updates: int | None = None, mesh=None, inspect_sharding=None, *,
               optimizer: optax.GradientTransformation, use_l2: bool = True,
               check_grads: bool = True, microbatch="auto"):
    """The pure epoch function ``epoch(state, l2, epoch, key, *data) -> (state, step_losses)``
    that :func:`fit` compiles — public for benchmarks and custom loops (``init_state`` makes its
    first state).

    ``n``: the number of training examples (then ``data = (X, Y)``, X: (n, *in_shape), Y: (n,)
    labels or (n, K) targets), or a :class:`Sampler` (then ``data = sampler.data``).
    ``l2``: the penalty's traced scalar; ``epoch``: int32, set as the optimizer's ``epoch``
    hyperparameter when it has one (:func:`~jaxnets.train.optim.sgd`'s decay).
    step_losses: (n_batches,). With a ``mesh`` the batch axis of every minibatch is sharded over
    its "data" axis (params and optimizer state stay replicated; XLA inserts the gradient
    all-reduce); ``inspect_sharding(sharding)`` is called at compile time with the minibatch's.

    ``microbatch``: each step's gradient in chunks of at most that many examples
    (:func:`jaxnets.models.microbatched`); "auto" (default): :func:`microbatch_size`'s choice
    for the batch; None: the whole batch at once.

    ``use_l2=False`` compiles the epoch for ``l2 == 0`` (the ``l2`` argument is then ignored): at
    small batches a step is bound by passes over the weights, and the penalty's reduction is one.

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
    update = _loss_update(optimizer)
    check_microbatch("make_epoch", microbatch, mesh)

    def epoch_fn(state: TrainState, l2, epoch, key, *data):
        state = state._replace(opt_state=optim.set_epoch(state.opt_state, epoch))
        l2 = l2 if use_l2 else 0.0   # a Python 0 lets the model skip the penalty statically
        size = microbatch_size(model, state.params, batch_size, microbatch, mesh)
        step = _step_fn(model if size is None else model_base.microbatched(model, size), grad, update, l2,
                        check_grads=check_grads, limit=limit, shard=shard, optimizer=optimizer)
        if sampler is not None:
            return _scan_sampler(step, sampler, batch_size, key, stochastic, state, data)
        k_order, k_model = jax.random.split(key) if stochastic else (key, None)
        dtype = jax.tree.leaves(state.params)[0].dtype
        return _scan_arrays(step, order, n, batch_size, k_order, k_model, *data, state, dtype)

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


def _with_replay(fast_epoch, exact_epoch):
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

def _metric_dtype(dtype):
    """Sums and counts are kept in float32 or wider: float16 stops at 65504 (a 70,000-example
    count) and bfloat16 counts exactly only to 256."""
    return jnp.dtype(dtype) if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def make_evaluate(model, n: int, batch_size: int = 1000):
    """``evaluate(params, X, Y) -> (mean data loss, accuracy)`` over n examples in fixed chunks
    (one compiled shape per data set size; padded rows masked out). No L2 term in the loss; the
    accuracy compares ``model.predict`` with the labels (argmax of (n, K) targets), averaged over
    a token model's positions. Sums and counts are accumulated in float32 or wider whatever the
    params' dtype; the results have that dtype."""
    batch_size = max(1, min(batch_size, n))
    idx, mask = batch_indices("fixed", None, n, batch_size)

    def evaluate(params, X, Y):
        dtype = jax.tree.leaves(params)[0].dtype
        acc_t = _metric_dtype(dtype)

        def chunk(acc, batch):
            i, m = batch
            value = model.loss(params, X[i], Y[i], 0.0, m.astype(dtype)).astype(acc_t)
            pred, y = model.predict(params, X[i]), Y[i]
            if y.ndim > pred.ndim:
                y = jnp.argmax(y, axis=-1).astype(jnp.int32)
            correct = (pred.astype(y.dtype) == y).astype(acc_t)
            correct = jnp.mean(correct.reshape(correct.shape[0], -1), axis=1)
            m = m.astype(acc_t)
            return (acc[0] + value * jnp.sum(m), acc[1] + jnp.sum(correct * m)), None

        z = jnp.zeros((), acc_t)
        (loss_sum, correct), _ = jax.lax.scan(chunk, (z, z), (idx, mask))
        return loss_sum / n, correct / n

    return evaluate


def _make_sampled_evaluate(model, sampler: Sampler, batch_size: int, n_batches: int):
    """``evaluate(params, key, *sampler.data) -> (mean loss, nan)``: the loss averaged over
    ``n_batches`` sampled batches (doc 003's transformer notebook's ``estimate_loss``), in
    evaluation mode (no dropout key); loss only, a sampled batch has no accuracy."""
    def evaluate(params, key, *data):
        def one(k):
            return model.loss(params, *sampler.sample(k, batch_size, *data))
        losses = jax.lax.map(one, jax.random.split(key, n_batches))
        loss = jnp.mean(losses.astype(_metric_dtype(losses.dtype)))
        return loss, jnp.full((), jnp.nan, loss.dtype)
    return evaluate


def _evaluators(model, sources: dict, ev: Evaluation, batch_size: int, vmapped: bool = False,
                key_axis: bool = False):
    """{name: fn(params, key, epoch) -> (loss, acc)} for every evaluation set, compiled once each;
    a sampled set is scored on the same batches every epoch, drawn from ``key`` as :func:`fit`
    draws them, or (``ev.fresh``) on batches drawn from ``key`` and ``epoch`` (0: the starting
    params) (``key_axis``: vmapped with one key per configuration)."""
    out = {}
    split = lambda k: jax.random.split(k)[1]  # noqa: E731
    for j, (name, src) in enumerate(sources.items()):
        if isinstance(src, Sampler):
            fn = _make_sampled_evaluate(model, src, batch_size, ev.sampled_batches)
            if vmapped:
                fn = jax.vmap(fn, in_axes=(0, 0 if key_axis else None) + (None,) * len(src.data))
            fn = jax.jit(fn)
            fold = jax.vmap(jax.random.fold_in, in_axes=(0, None)) if key_axis else jax.random.fold_in
            sk = jax.vmap(split) if key_axis else split
            out[name] = (lambda f, j, d, fold, sk, fresh: lambda params, key, epoch=0: f(
                params, fold(sk(fold(key, epoch) if fresh else key), j), *d))(
                fn, j, tuple(src.data), fold, sk, bool(ev.fresh))
        else:
            fn = make_evaluate(model, len(src[0]), ev.batch_size)
            fn = jax.jit(jax.vmap(fn, in_axes=(0, None, None)) if vmapped else fn)
            out[name] = (lambda f, a: lambda params, key, epoch=0: f(params, *a))(fn, tuple(src))
    return out


# ----------------------------------------------------------------------------- compile and replay

def _data_args(train) -> tuple:
    return tuple(train.data) if isinstance(train, Sampler) else tuple(train)


def _compile_epoch(run, state, l2, key, *, order, grad, max_updates, mesh, optimizer, use_l2,
                   microbatch="auto", vmapped=False, key_per_config=False):
    """The epoch :func:`fit` and :func:`sweep` run: ``(run(state, l2, epoch, key), compile time)``.
    The fast epoch is compiled now; the guarded one it replays with on a non-finite epoch, on
    first need. ``key_per_config``: (vmapped) ``key`` has a leading config axis."""
    train = run.train
    source = train if isinstance(train, Sampler) else len(train[0])
    data = _data_args(train)

    def build(check):
        ep = make_epoch(run.model, source, run.batch_size, order, grad, max_updates, mesh,
                        optimizer=optimizer, use_l2=use_l2, check_grads=check, microbatch=microbatch)
        if vmapped:
            ep = jax.vmap(ep, in_axes=(0, 0, None, 0 if key_per_config else None) + (None,) * len(data))
        return jax.jit(ep)

    t0 = time.perf_counter()
    fast = build(False).lower(state, l2, jnp.int32(0), key, *data).compile()
    compile_time = time.perf_counter() - t0
    replay = _with_replay(fast, build(True))
    return (lambda st, l2_, e, k: replay(st, l2_, jnp.int32(e), k, *data)), compile_time


# ----------------------------------------------------------------------------- setup

class _Run(NamedTuple):
    """Everything a run fixes before its first epoch."""
    model: Any
    where: str
    train: Any
    evals: dict           # {"train"/"val"/"test": (X, Y) or Sampler}
    key: Any              # the run's key, or (C,) keys of a sweep with per-config keys
    state: TrainState
    l2: Any               # traced scalar, or (C,) in a sweep
    batch_size: int
    fingerprint: dict | None   # what a resumed run must match (None without checkpoints)
    sweep: bool = False   # record (C,) arrays, go on past a diverged configuration
    microbatch: Any = None   # the chunk size of fit's steps (resolved), or sweep's request

    def epoch_key(self, e):
        if self.key.ndim:
            return jax.vmap(jax.random.fold_in, in_axes=(0, None))(self.key, e)
        return jax.random.fold_in(self.key, e)


def _check_common(where, model, params, *, epochs, batch_size, optimizer, order, grad,
                  max_updates, evaluation, stacked):
    """Checks shared by fit and sweep; returns the config-axis size of ``params`` (or None)."""
    inputs.check_choice("order", order, ORDERS)
    inputs.check_choice("grad", grad, GRADS)
    inputs.check_int(where, "epochs", epochs)
    inputs.check_int(where, "batch_size", batch_size)
    if max_updates is not None:
        inputs.check_int(where, "max_updates", max_updates)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"{where}: optimizer must be an optax GradientTransformation such as "
                         f"train.sgd(0.1) or optax.adamw(1e-3), got {type(optimizer).__name__}")
    if not isinstance(evaluation, Evaluation):
        raise ValueError(f"{where}: evaluation must be a train.Evaluation(...), got {type(evaluation).__name__}")
    inputs.check_int(where, "evaluation.batch_size", evaluation.batch_size)
    inputs.check_int(where, "evaluation.sampled_batches", evaluation.sampled_batches)
    inputs.check_precision(where, params)
    return inputs.check_params(model, where, params, stacked)


def _sources(model, where, train, val, evaluation, batch_size, key, params):
    """Validated training data and evaluation sets; checks batch_size against the data."""
    dtype = jax.tree.leaves(params)[0].dtype

    def one(name, d):
        if isinstance(d, Sampler):
            return inputs.sampler(model, f"{where}: {name}", d, batch_size, key)
        x, y = inputs.arrays(model, f"{where}: {name}", d, dtype)
        inputs.token_ids(model, f"{where}: {name} x", np.asarray(d[0]), params)
        return x, y
    tr = one("train", train)
    if not isinstance(tr, Sampler):
        inputs.check_int(where, "batch_size", batch_size, 1, len(tr[0]))
    evals = {"train": tr} if evaluation.train else {}
    evals.update({name: one(name, d) for name, d in (("val", val), ("test", evaluation.test))
                  if d is not None})
    return tr, evals


def _run_fingerprint(model, params, tr, evals, **settings) -> dict:
    """What a resumed run must match: the model (name and a digest of its loss), the data
    (training, validation and test sets) and the settings that shape the trajectory."""
    if isinstance(tr, Sampler):
        x_spec, y_spec = jax.eval_shape(lambda k, *d: tr.sample(k, 2, *d), jax.random.key(0), *tr.data)
    else:
        x_spec, y_spec = (jax.ShapeDtypeStruct((2,) + a.shape[1:], a.dtype) for a in tr)
    return {"model": inputs.model_digest(model, params, x_spec, y_spec),
            "train": inputs.fingerprint(tr),
            "evaluation": {k: inputs.fingerprint(v) for k, v in evals.items() if k != "train"},
            **settings}


def _scoring(evaluation: Evaluation) -> dict:
    """Evaluation's settings besides its test set (fingerprinted with the data): what a resumed
    run's history must keep scoring alike."""
    return {k: getattr(evaluation, k) for k in ("train", "batch_size", "sampled_batches", "initial", "fresh")}


def _place(mesh, state, tr, evals):
    """Replicate the state and the training data over ``mesh`` (data-parallel training)."""
    rep = NamedSharding(mesh, P())
    if isinstance(tr, Sampler):
        state, data = jax.device_put((state, tr.data), rep)
        tr = tr._replace(data=tuple(data))
    else:
        state, tr = jax.device_put((state, tr), rep)
    return state, tr, {k: tr if k == "train" else v for k, v in evals.items()}


def _setup(model, params, train, *, epochs, batch_size, optimizer, l2, order, grad, key, val,
           evaluation, early_stopping, checkpoint, max_updates, mesh, microbatch) -> _Run:
    """Validate every argument of :func:`fit` (nothing is compiled before all of them passed).
    The run's fingerprint is computed for checkpoints only."""
    where = f"fit({getattr(model, 'name', 'model')})"
    _check_common(where, model, params, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                  order=order, grad=grad, max_updates=max_updates, evaluation=evaluation, stacked=False)
    check_microbatch(where, microbatch, mesh)
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise ValueError(f"{where}: early_stopping must be train.EarlyStopping(patience), "
                             f"got {type(early_stopping).__name__}")
        inputs.check_int(where, "early_stopping.patience", early_stopping.patience)
        if val is None:
            raise ValueError(f"{where}: early_stopping needs val=(X, Y) (or a Sampler)")
    if checkpoint is not None:
        if not isinstance(checkpoint, Checkpointing):
            raise ValueError(f"{where}: checkpoint must be train.Checkpointing(path, every, resume), "
                             f"got {type(checkpoint).__name__}")
        inputs.check_int(where, "checkpoint.every", checkpoint.every)
        inputs.check_choice("checkpoint.resume", checkpoint.resume, (False, True, "if_exists"))
        _check_checkpoint_path(where, checkpoint.path)
    inputs.check_hyper(where, l2=l2)
    dtype = jax.tree.leaves(params)[0].dtype
    key = inputs.check_key(where, "key", key)
    tr, evals = _sources(model, where, train, val, evaluation, batch_size, key, params)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"{where}: batch_size {batch_size} must be a multiple of the {mesh.size} devices")
    state = init_state(params, optimizer)
    _check_update(where, optimizer, state)
    inputs.check_injected(where, optim.hyperparams(state.opt_state))
    if mesh is not None:
        state, tr, evals = _place(mesh, state, tr, evals)
    chunk = microbatch_size(model, params, batch_size, microbatch, mesh)
    fp = None if checkpoint is None else _run_fingerprint(
        model, params, tr, evals, batch_size=batch_size, order=order, grad=grad, l2=float(l2),
        optimizer=inputs.fingerprint(optimizer), max_updates=max_updates, key=inputs.key_fingerprint(key),
        microbatch=chunk_size(model, params, batch_size, chunk), scoring=_scoring(evaluation),
        early_stopping=None if early_stopping is None else int(early_stopping.patience))
    return _Run(model, where, tr, evals, key, state, jnp.asarray(l2, dtype), batch_size, fp, microbatch=chunk)


# ----------------------------------------------------------------------------- history

def _new_history(evals) -> dict:
    h = {k: [] for k in ("epoch", "time", "updates", "lr", "step_loss")}
    for name in evals:
        h[f"{name}_loss"], h[f"{name}_acc"] = [], []
    return h


def _initial(run: _Run, history, state, evaluators):
    for name, ev in evaluators.items():
        loss_v, acc_v = ev(state.params, run.key, 0)
        history[f"initial_{name}_loss"], history[f"initial_{name}_acc"] = _metric(run, loss_v, acc_v)


def _metric(run: _Run, loss_v, acc_v):
    if run.sweep:
        return np.asarray(loss_v), np.asarray(acc_v)
    return float(loss_v), None if np.isnan(acc_v) else float(acc_v)


def _record(run: _Run, history, e, state, step_losses, seconds, evaluators):
    history["time"].append(seconds)
    history["epoch"].append(e + 1)
    lr = optim.recorded_lr(state.opt_state, e)
    if run.sweep:
        history["updates"].append(np.asarray(state.updates))
        history["lr"].append(None if lr is None else np.asarray(lr))
        history["step_loss"].append(np.asarray(step_losses))
    else:
        history["updates"].append(int(state.updates))
        history["lr"].append(None if lr is None else float(lr))
        history["step_loss"].append([float(v) for v in np.asarray(step_losses) if not np.isnan(v)])
    for name, ev in evaluators.items():
        loss_v, acc_v = _metric(run, *ev(state.params, run.key, e + 1))
        history[f"{name}_loss"].append(loss_v)
        history[f"{name}_acc"].append(acc_v)


def _divergence(run: _Run, history, e, step, lr) -> Divergence:
    rate = "optax optimizer" if lr is None else f"lr {lr:g}, this epoch's lr {history['lr'][-1]:g}"
    msg = (f"{run.model.name}: training diverged in epoch {e + 1} at update {step} ({rate}): "
           f"non-finite loss, gradient or update (or gradient entries that add up past the float "
           f"range); kept the last finite params")
    return Divergence(e + 1, step, math.nan if lr is None else lr, msg)


def _val_score(history):
    """Higher is better: the validation accuracy, or minus the loss for a sampled set."""
    acc = history["val_acc"][-1]
    return acc if acc is not None else -history["val_loss"][-1]


def _update_best(best, history, e, state):
    score = _val_score(history)
    if score > best["score"]:
        return {"params": state.params, "epoch": e + 1, "score": score, "wait": 0}
    return dict(best, wait=best["wait"] + 1)


# ----------------------------------------------------------------------------- checkpoints

_FP_NAMES = {"model": "model (name, architecture, activations or loss head)",
             "train": "training data (shape and CRC-32)",
             "evaluation": "validation/test sets (shape and CRC-32)", "batch_size": "batch_size",
             "order": "order", "grad": "grad", "optimizer": "optimizer (or its hyperparameters)",
             "max_updates": "max_updates", "l2": "l2",
             "key": "key (PRNG implementation and a hash of its key data)",
             "microbatch": ("microbatch (examples per chunk of a step, None: the whole batch; a checkpoint "
                            "written before chunked steps existed resumes with microbatch=None)"),
             "scoring": "evaluation settings (Evaluation's train, batch_size, sampled_batches, initial or fresh)",
             "early_stopping": "early_stopping (its patience, or none)"}
#: fingerprint entries newer than some checkpoints: a checkpoint without one is not judged by it
_FP_LATER = ("key", "scoring", "early_stopping")


def _check_checkpoint_path(where: str, path) -> None:
    """Before anything trains: a path that names a file whose folder exists or can be made (the
    atomic writer makes it, then renames a temporary file onto the path after the first epoch)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"{where}: checkpoint.path must name a file, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{where}: checkpoint.path {str(path)!r} is a folder; name a file in it")
    what = _io.not_a_regular_file(path)
    if what:
        raise ValueError(f"{where}: checkpoint.path {str(path)!r} exists and is not a regular file ({what}); "
                         "name a file")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        what = "is a file" if not os.path.isdir(parent) else "is not writable"
        raise ValueError(f"{where}: checkpoint.path {str(path)!r}: {parent!r} {what}")


def _resume(run: _Run, cp: Checkpointing, history, best, epochs: int):
    """``(state, key, history, start epoch, best)`` from the checkpoint at ``cp.path`` (the
    stored key continues the stored run's draws).

    ``resume=True`` needs the file (a missing one is refused: a typo in the path must not restart
    a long run from scratch silently); ``resume="if_exists"`` starts fresh when it is missing.
    A checkpoint of a different run (model, data, validation/test sets, batch size, order, grad,
    optimizer, l2, max_updates, key, microbatch, Evaluation's settings or early stopping) is
    refused, naming what differs. A checkpoint written before the key's
    fingerprint was recorded is judged by the key it stores (the run's key, which it has always
    held): the same key resumes, another is refused with the same message."""
    if not os.path.exists(cp.path):
        if cp.resume == "if_exists":
            return run.state, run.key, history, 0, best
        raise CheckpointError(f"checkpoint {cp.path}: resume=True but the file does not exist "
                              f"(resume='if_exists' starts fresh when it is missing)")
    stored = ckpt.read_meta(cp.path).get("fingerprint", {})

    def differs(k):
        return CheckpointError(f"checkpoint {cp.path}: written by a run with a different {_FP_NAMES[k]}; "
                               f"refusing to resume (delete it or use another checkpoint path)")
    for k in _FP_NAMES:
        if k in _FP_LATER and k not in stored:
            continue        # an older checkpoint (its stored key is compared below)
        if stored.get(k) != ckpt.jsonable(run.fingerprint[k]):   # older ones ran whole batches: None
            raise differs(k)
    tree, meta = ckpt.load(cp.path, {"state": run.state, "best": run.state.params, "key": run.key})
    if "key" not in stored and inputs.key_fingerprint(tree["key"]) != run.fingerprint["key"]:
        raise differs("key")
    if meta["epoch"] > epochs:
        raise CheckpointError(f"checkpoint {cp.path}: holds {meta['epoch']} epochs, more than epochs={epochs}; "
                              f"resume with epochs >= {meta['epoch']} (or use another checkpoint path)")
    best = {"params": tree["best"], "epoch": meta["best_epoch"], "score": meta["best_score"],
            "wait": meta["wait"]}
    return tree["state"], tree["key"], meta["history"], meta["epoch"], best


def _save(run: _Run, cp: Checkpointing, e, state, history, best):
    ckpt.save(cp.path, {"state": state, "best": best["params"], "key": run.key},
              {"epoch": e + 1, "history": history, "best_epoch": best["epoch"],
               "best_score": float(best["score"]), "wait": best["wait"],
               "fingerprint": run.fingerprint})


# ----------------------------------------------------------------------------- the epoch loop

def _progress(enabled):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm


class _Stop(NamedTuple):
    """When the loop ends early and what it saves: fit's early stopping and checkpoints."""
    patience: int | None = None
    checkpoint: Checkpointing | None = None


def _loop(run: _Run, run_epoch, evaluators, state, history, best, start, *, epochs, stop: _Stop,
          progress, callback, desc, time_evaluations: bool = False):
    """The epoch loop of :func:`fit` and :func:`sweep`; returns ``(state, history, best,
    divergence, stopped_early)``. A fit run stops at a divergence; a sweep freezes the diverged
    configurations and goes on (``divergence`` then holds each one's first diverged epoch).
    ``history["time"]``: the epoch's wall time, with its evaluations when ``time_evaluations``
    (a threaded sweep, whose evaluations and next epochs share the workers)."""
    if stop.patience is not None and best["wait"] >= stop.patience:
        # a checkpoint written at the epoch that ran out of patience (it is saved before the
        # check): the uninterrupted run ended there, so the resumed one trains nothing more
        return state, history, best, None, True
    bar = _progress(progress)
    it = range(start, epochs)
    it = bar(it, desc=desc, unit="epoch", initial=start, total=epochs) if bar else it
    divergence, stopped = (np.zeros(np.shape(state.diverged), int) if run.sweep else None), False
    for e in it:
        t = time.perf_counter()
        state, step_losses = run_epoch(state, run.l2, e, run.epoch_key(e))
        jax.block_until_ready(state)
        _record(run, history, e, state, step_losses, time.perf_counter() - t, evaluators)
        if time_evaluations:
            history["time"][-1] = time.perf_counter() - t
        if bar and not run.sweep:
            it.set_postfix({k: f"{history[k][-1]:.4f}" for k in ("train_loss", "val_acc")
                            if history.get(k) and history[k][-1] is not None})
        if run.sweep:
            divergence = np.where(np.asarray(state.diverged) & (divergence == 0), e + 1, divergence)
        elif bool(state.diverged):
            lr = optim.hyperparams(state.opt_state).get("lr")
            divergence = _divergence(run, history, e, int(state.bad_step), None if lr is None else float(lr))
            history["diverged"] = divergence._asdict()
            print(divergence.message, file=sys.stderr)
            break
        if "val" in run.evals and not run.sweep:
            best = _update_best(best, history, e, state)
        if callback is not None:
            callback(e + 1, state, history)
        cp = stop.checkpoint
        if cp is not None and ((e + 1) % cp.every == 0 or e + 1 == epochs):
            _save(run, cp, e, state, history, best)
        if stop.patience is not None and best["wait"] >= stop.patience:
            stopped = True
            break
    if bar:
        it.close()
    return state, history, best, divergence, stopped


# ----------------------------------------------------------------------------- fit

def fit(model, params, data, *, epochs: int, batch_size: int, optimizer: optax.GradientTransformation,
        l2: float = 0.0, order: str = "shuffle", key=None, val=None,
        evaluation: Evaluation = Evaluation(), early_stopping: EarlyStopping | None = None,
        checkpoint: Checkpointing | None = None, max_updates: int | None = None,
        grad: str = "hand", mesh=None, microbatch="auto", progress: bool | None = None,
        callback=None) -> FitResult:
    """Train ``model`` from ``params`` on ``data`` for ``epochs`` epochs of ``batch_size``.

    ``data``: ``(X, Y)`` — X: (N, *model.in_shape), float (token ids for an "int"-input model,
    which must lie in the model's vocabulary); Y: (N,) int labels in [0, K) (±1 for a logistic
    head) or (N, K) float targets (for a cross-entropy head probability rows: entries >= 0, each
    row summing to 1 within ``inputs.probability_tolerance``, 1e-5 in float32/float64; any finite
    value for a regression head) — or a :class:`Sampler` (``steps_per_epoch`` updates on batches
    drawn inside the compiled epoch). ``params``: the model's tree (as ``model.init`` makes it),
    float32 or float64. ``optimizer``: an optax ``GradientTransformation`` (see the module docstring);
    ``train.sgd(lr, momentum, lr_decay)`` is doc 003's SGD. ``l2``: the model's penalty
    l2·Σ‖W‖². ``order``: "shuffle", "fixed" or "replacement" (see the module docstring).
    ``val``: (X, Y) or a Sampler scored after every epoch (a Sampler: the mean loss of
    ``evaluation.sampled_batches`` sampled batches, the same batches each epoch; no accuracy);
    ``evaluation``: what else is scored (:class:`Evaluation`). ``early_stopping``: an
    :class:`EarlyStopping`; the best epoch's params are returned. ``key`` drives shuffling and
    sampling (and the dropout of a stochastic model); epoch e uses ``fold_in(key, e)``, so a
    resumed run draws exactly what an uninterrupted one would. ``checkpoint``: a
    :class:`Checkpointing`; a checkpoint holds params, optimizer state, epoch, key, best params,
    history and the run's fingerprint, and a resumed run continues bit for bit (one of another
    model, data, validation/test set, ``key`` or setting — every argument but ``epochs``,
    ``checkpoint``, ``mesh``, ``progress`` and ``callback`` — is refused; on another mesh it
    continues up to the gradient all-reduce's round-off). ``max_updates``: stop updating after that
    many steps. ``grad``: "hand" (the model's hand-written backward rules) or "autodiff".
    ``mesh``: data-parallel over its "data" axis. ``microbatch``: each step's gradient in chunks of
    at most that many examples ("auto", the default: :func:`microbatch_size`'s choice, on a CPU
    only; None: the whole batch) — the same step up to float round-off. ``progress``: a bar (None: when stderr is a
    terminal). ``callback(epoch, state, history)`` after every epoch (1-based). A non-finite
    loss, gradient or update stops the run, keeps the last finite params and records a
    :class:`Divergence`. Returns a :class:`FitResult`.
    """
    run = _setup(model, params, data, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                 l2=l2, order=order, grad=grad, key=key, val=val, evaluation=evaluation,
                 early_stopping=early_stopping, checkpoint=checkpoint, max_updates=max_updates,
                 mesh=mesh, microbatch=microbatch)
    run_epoch, compile_time = _compile_epoch(
        run, run.state, run.l2, run.key, order=order, grad=grad, max_updates=max_updates,
        mesh=mesh, optimizer=optimizer, use_l2=float(l2) != 0, microbatch=run.microbatch)
    evaluators = _evaluators(model, run.evals, evaluation, batch_size)
    history = _new_history(run.evals)
    best = {"params": params, "epoch": -1, "score": -np.inf, "wait": 0}
    state, start = run.state, 0
    if checkpoint is not None and checkpoint.resume:
        state, key, history, start, best = _resume(run, checkpoint, history, best, epochs)
        run = run._replace(key=key)
    if evaluation.initial and start == 0:
        _initial(run, history, state, evaluators)
    patience = None if early_stopping is None else early_stopping.patience
    state, history, best, divergence, stopped = _loop(
        run, run_epoch, evaluators, state, history, best, start, epochs=epochs,
        stop=_Stop(patience, checkpoint), progress=progress, callback=callback, desc=model.name)
    use_best = patience is not None and best["epoch"] > 0
    return FitResult(best["params"] if use_best else state.params, state.params,
                     best["epoch"] if val is not None else len(history["epoch"]), history,
                     compile_time, stopped, divergence, state.opt_state)


def evaluate(model, params, data, batch_size: int = 1000):
    """(mean data loss, accuracy) of ``params`` on ``data = (X, Y)`` (validated like fit's data,
    chunked). Low-precision params (float16/bfloat16) are accepted: the sums and counts are kept
    in float32."""
    inputs.check_params(model, "evaluate", params)
    inputs.check_int("evaluate", "batch_size", batch_size)
    X, Y = inputs.arrays(model, "evaluate: data", data, jax.tree.leaves(params)[0].dtype)
    inputs.token_ids(model, "evaluate: data x", np.asarray(data[0]), params)
    return tuple(float(v) for v in jax.jit(make_evaluate(model, len(X), batch_size))(params, X, Y))


# ----------------------------------------------------------------------------- sweep

def _sweep_values(where, configs, names) -> dict:
    """``configs`` as {name: 1-D float64 array}; names: the optimizer's injected hyperparameters."""
    if configs is None:
        return {}
    if not isinstance(configs, dict):
        raise ValueError(f"{where}: configs must be a dict {{name: values}}, got {type(configs).__name__}")
    out = {}
    for k, v in configs.items():
        if k not in names:
            raise ValueError(f"{where}: configs[{k!r}]: the optimizer has no hyperparameter {k!r} "
                             f"(it has {sorted(names) or 'none'}; build it with train.sgd(...) or "
                             f"optax.inject_hyperparams, and give train.sgd a momentum to sweep one)")
        a = np.asarray(v, np.float64) if not isinstance(v, (str, bytes)) else np.asarray(np.nan)
        if a.ndim > 1:
            raise ValueError(f"{where}: configs[{k!r}] must be a scalar or 1-D (one value per "
                             f"configuration), got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{where}: configs[{k!r}] is empty; give at least one value")
        inputs.check_hyper(where, **{f"configs[{k!r}]": a})
        out[k] = np.atleast_1d(a)
    return out


def _n_configs(where, values, n_stacked, keys) -> int:
    """C: the one size (other than 1) that configs, stacked params and keys agree on."""
    sizes = {f"configs[{k!r}]": len(v) for k, v in values.items()}
    if n_stacked is not None:
        sizes["params (stacked)"] = n_stacked
    if keys is not None:
        if np.ndim(keys) != 1 or not jax.dtypes.issubdtype(jnp.asarray(keys).dtype, jax.dtypes.prng_key):
            raise ValueError(f"{where}: keys must be a 1-D array of typed PRNG keys "
                             f"(jax.random.split(key, C)), got shape {np.shape(keys)}")
        sizes["keys"] = len(keys)
    many = {n: s for n, s in sizes.items() if s != 1}
    if len(set(many.values())) > 1:
        raise ValueError(f"{where}: the number of configurations disagrees: "
                         + ", ".join(f"{n} has {s}" for n, s in many.items())
                         + " (give one value per configuration, or a single value for all)")
    C = next(iter(many.values()), 1)
    if keys is not None and len(keys) != C:
        raise ValueError(f"{where}: keys has {len(keys)} keys for {C} configurations")
    return C


def _sweep_setup(model, params, data, *, epochs, batch_size, optimizer, configs, keys, l2, order,
                 grad, key, val, evaluation, max_updates, microbatch="auto"):
    """Validate :func:`sweep`'s arguments; returns ``(run, C)`` with the stacked state."""
    where = f"sweep({getattr(model, 'name', 'model')})"
    n_stacked = _check_common(where, model, params, epochs=epochs, batch_size=batch_size,
                              optimizer=optimizer, order=order, grad=grad, max_updates=max_updates,
                              evaluation=evaluation, stacked=True)
    check_microbatch(where, microbatch)
    one = params if n_stacked is None else jax.tree.map(lambda v: v[0], params)
    shapes = jax.eval_shape(lambda p: init_state(p, optimizer), one)
    _check_update(where, optimizer, shapes)
    names = set(optim.hyperparams(shapes.opt_state))
    cfg = dict(configs) if isinstance(configs, dict) else configs
    if not (np.ndim(l2) == 0 and l2 == 0):
        if isinstance(cfg, dict) and "l2" in cfg:
            raise ValueError(f"{where}: give l2 either as l2= or as configs['l2'], not both")
        cfg = dict(cfg or {}, l2=l2)
    values = _sweep_values(where, cfg, (names - {"epoch"}) | {"l2"})
    C = _n_configs(where, values, n_stacked, keys)
    dtype = jax.tree.leaves(params)[0].dtype
    values = {k: np.broadcast_to(v, (C,)) for k, v in values.items()}
    l2 = jnp.asarray(values.pop("l2", np.zeros(C)), dtype)
    key = inputs.check_key(where, "key", key)
    tr, evals = _sources(model, where, data, val, evaluation, batch_size, key, one)
    if n_stacked is None:
        params = jax.tree.map(lambda v: jnp.broadcast_to(v, (C,) + v.shape), params)
    state = jax.vmap(lambda p: init_state(p, optimizer))(params)
    state = state._replace(opt_state=optim.set_hyperparams(state.opt_state, **values))
    inputs.check_injected(where, optim.hyperparams(state.opt_state), lambda n: f"configs[{n!r}]" if n in values else n)
    run_key = key if keys is None else jnp.asarray(keys)
    return _Run(model, where, tr, evals, run_key, state, l2, batch_size, None, sweep=True, microbatch=microbatch), C


def sweep(model, params, data, *, epochs: int, batch_size: int, optimizer: optax.GradientTransformation,
          configs: dict | None = None, keys=None, l2=0.0, order: str = "shuffle", key=None, val=None,
          evaluation: Evaluation = Evaluation(), max_updates: int | None = None, grad: str = "hand",
          vmap: bool = True, workers: int = 1, overlap: bool = True, microbatch="auto",
          progress: bool | None = None,
          callback=None) -> FitResult:
    """Train C configurations with :func:`fit`'s epoch: at once (one ``jax.vmap`` of it), or,
    ``vmap=False``, through the same one compiled (un-vmapped) epoch, ``workers`` configurations
    at a time, each in its own thread (1: one after another).

    ``configs``: {name: (C,) values} for hyperparameters of ``optimizer`` (one built with
    ``optax.inject_hyperparams``, e.g. ``train.sgd(0.1, momentum=0.0)``: "lr", "momentum",
    "lr_decay") and "l2"; a single value is shared by all. ``params``: one pytree (a shared
    start) or a pytree with a leading config axis of size C (e.g. ``jax.vmap(model.init)(keys)``).
    ``keys``: (C,) keys, one per configuration, for its batch order / sampled batches, dropout
    and sampled evaluation batches (independent runs such as seeds); by default every
    configuration draws from ``key``. C comes from whichever of configs, stacked params and keys
    has more than one entry; they must agree. The other arguments are :func:`fit`'s (sweep has
    no early stopping and no checkpoints; a diverged configuration is frozen and the others go
    on). Both ways record the configurations in step: epoch e of every one, their evaluations,
    then ``callback(epoch, state, history)`` with the config axis. On threads, ``overlap``
    (default) queues a configuration's evaluations and its next epoch (at most one ahead of the
    loop) as soon as its own epoch ends, to run beside the others' training, and the history's
    per-epoch ``time`` is the wall time from the loop's start of epoch e until every
    configuration's epoch e and its evaluations have ended (the work run beside them included: the
    times add up to the loop's wall time less the callbacks'); ``overlap=False``: every evaluation
    and every next epoch wait for every epoch, and ``time`` is the epochs' alone, as :func:`fit`
    records it; the numbers are the same either way. Returns one
    :class:`FitResult` for all configurations (``.config(c)`` for one): the params stay one stacked
    pytree, ready to index or vmap. ``vmap=False`` gives the bits of C separate :func:`fit` runs
    with the same key (``keys[c]``) whatever ``workers`` is; the vmapped program may round
    differently (batched products). Which is faster depends on the machine and the model: on the
    2-core CPU of the README, small networks at small batches trained fastest with ``vmap=False,
    workers=2``. ``microbatch``: as in :func:`fit` (resolved for one configuration's step).
    """
    inputs.check_int("sweep", "workers", workers, 1, None)
    if not isinstance(overlap, (bool, np.bool_)):
        raise TypeError(f"sweep: overlap must be True or False, got {overlap!r}")
    if vmap and workers != 1:
        raise ValueError(f"sweep: workers={workers} needs vmap=False (the vmapped program is one "
                         "call; workers run un-vmapped configurations on threads)")
    run, C = _sweep_setup(model, params, data, epochs=epochs, batch_size=batch_size,
                          optimizer=optimizer, configs=configs, keys=keys, l2=l2, order=order,
                          grad=grad, key=key, val=val, evaluation=evaluation, max_updates=max_updates,
                          microbatch=microbatch)
    settings = dict(order=order, grad=grad, max_updates=max_updates, mesh=None, optimizer=optimizer,
                    microbatch=microbatch, use_l2=bool(np.any(np.asarray(run.l2) != 0)))
    at_once = min(workers, C)
    pool = None if vmap or at_once == 1 else ThreadPoolExecutor(at_once)
    stop = None
    try:
        if vmap:
            run_epoch, compile_time = _compile_epoch(run, run.state, run.l2, run.key, vmapped=True,
                                                     key_per_config=keys is not None, **settings)
            evaluators = _evaluators(model, run.evals, evaluation, batch_size, vmapped=True,
                                     key_axis=keys is not None)
        else:
            run_epoch, evaluators, compile_time, stop = _in_step(run, C, evaluation, settings, pool, overlap,
                                                                 epochs)
        history = _new_history(run.evals)
        if evaluation.initial:
            _initial(run, history, run.state, evaluators)
        state, history, _, first_bad, _ = _loop(run, run_epoch, evaluators, run.state, history, None, 0,
                                                epochs=epochs, stop=_Stop(), progress=progress,
                                                callback=callback, desc=f"{model.name} × {C} configs",
                                                time_evaluations=stop is not None and overlap)
    finally:
        if pool is not None:    # on Ctrl-C: the epochs in flight end, the queued ones never start
            if stop is not None:
                stop()
            pool.shutdown(wait=True, cancel_futures=True)
    return FitResult(state.params, state.params, len(history["epoch"]), history, compile_time,
                     False, _divergences(run, state, history, first_bad), state.opt_state, C)


def _in_step(run: _Run, C, evaluation, settings, pool, overlap=True, epochs=None):
    """The vmapped sweep's ``run_epoch`` and evaluators, computed per configuration by fit's own
    compiled (un-vmapped) epoch and evaluators, on ``pool``'s threads (XLA releases the GIL while a
    program runs: one small configuration cannot keep the cores busy) or, without a pool, in the
    calling thread; results stacked. The epochs' arguments are sliced and all results stacked in
    the calling thread; the workers run under the caller's JAX config options (``with
    jax.enable_x64():`` and the like hold per thread; other contexts, such as a mesh, are not
    carried).

    With a pool and ``overlap``, each configuration runs on by itself, at most one epoch ahead of
    the loop: as soon as its epoch e ends, its evaluations of epoch e and its epoch e + 1 (up to
    ``epochs``) are queued, behind the work already queued (first in, first out), so no core waits
    for the slowest configuration of an epoch (C = 3 seeds on 2 cores would otherwise leave a core
    idle for the third seed's epoch and for every third evaluation); an epoch e + 2 waits until the
    loop asks for epoch e + 1. The loop still takes the epochs in step (``run_epoch(state, l2, e,
    k)``, k being ``run.epoch_key(e)`` as the loop passes it, returns when every configuration's
    epoch e has ended) and gets the bits it would compute itself: an epoch is a pure function of
    the configuration's state, its l2 and the epoch key, and an evaluation of the params and the
    run's key. An epoch started ahead is used only when the loop passes back the very state and l2
    the last call returned and took (else it is dropped and the epoch recomputed from the state
    given). An exception in a worker (a KeyboardInterrupt raised there, in the tests) and the
    sweep's end (a Ctrl-C in the calling thread included) stop the queueing; the sweep then cancels
    what is queued. Either way every set's jobs for the same params are queued at once."""
    key_of = lambda k, c: _config_key(run, k, c)  # noqa: E731
    epoch, compile_time = _compile_epoch(run, _pick(run.state, 0), run.l2[0], key_of(run.key, 0), **settings)
    evaluators = _evaluators(run.model, run.evals, evaluation, run.batch_size)
    carried = None if pool is None else _thread_settings()
    if carried is None:
        return (lambda state, l2, e, k: _stack([epoch(_pick(state, c), l2[c], e, key_of(k, c)) for c in range(C)]),
                {name: (lambda ev: lambda params, k, epoch=0: _stack([ev(_pick(params, c), key_of(k, c), epoch)
                                                                      for c in range(C)]))(ev)
                 for name, ev in evaluators.items()}, compile_time, None)
    t = _Threaded(run, C, epoch, evaluators, pool, carried, overlap, epochs)
    return t.run_epoch, {name: t.evaluator(name) for name in evaluators}, compile_time, t.stop


def _pick(tree, c):
    return jax.tree.map(lambda v: v[c], tree)


def _stack(outs):
    return jax.tree.map(lambda *v: jnp.stack(v), *outs)


def _config_key(run: _Run, k, c):
    """Configuration c's key of ``k`` (one key per configuration, or one shared by all)."""
    return k[c] if run.key.ndim > 0 else k


class _Threaded:
    """The threaded sweep's scheduler (see :func:`_in_step`): fit's compiled ``epoch`` and
    ``evaluators`` of each of C configurations as jobs on ``pool``, under the ``carried`` JAX
    settings; ``overlap``: each configuration's evaluations and next epoch (up to ``epochs``, at
    most one ahead of the loop) queued when its epoch ends."""

    def __init__(self, run: _Run, C, epoch, evaluators, pool, carried, overlap, epochs):
        import threading
        self.run, self.C, self.epoch, self.evaluators = run, C, epoch, evaluators
        self.pool, self.carried = pool, carried
        self.overlap, self.epochs = overlap, epochs if overlap else None
        self.ahead = {}     # the last epoch's stacked state and params, its l2, per set one future per config
        self.started = {}   # (config, epoch) -> future of an epoch queued when the config's previous one ended
        self.parked = {}    # (config, epoch) -> its arguments, ended two ahead of the loop: started when asked
        self.lock, self.gen, self.stopping, self.at = threading.Lock(), 0, False, -1   # at: the loop's epoch

    def key_of(self, k, c):
        return _config_key(self.run, k, c)

    def submit(self, fn, *args):
        return self.pool.submit(_with_settings, self.carried, lambda: jax.block_until_ready(fn(*args)))

    def queue(self, params_c, c, epoch):
        """Every evaluation set's job for config c's params after ``epoch`` epochs (so all sets
        share the workers)."""
        return {name: self.submit(ev, params_c, self.key_of(self.run.key, c), epoch)
                for name, ev in self.evaluators.items()}

    def start(self, c, args, g):
        return self.pool.submit(_with_settings, self.carried, lambda: self.train_then_queue(c, g, *args))

    def train_then_queue(self, c, g, state_c, l2_c, e, k_c):
        try:
            out = jax.block_until_ready(self.epoch(state_c, l2_c, e, k_c))
            evs = self.queue(out[0].params, c, e + 1) if self.overlap else None
            if self.epochs is not None and e + 1 < self.epochs:
                args = (out[0], l2_c, e + 1, self.key_of(self.run.epoch_key(e + 1), c))
                with self.lock:
                    if not self.stopping and g == self.gen:
                        if e + 1 <= self.at + 1:
                            self.started[c, e + 1] = self.start(c, args, g)
                        else:
                            self.parked[c, e + 1] = args
            return out, evs
        except BaseException:
            if g == self.gen:
                self.stopping = True
            raise

    def run_epoch(self, state, l2, e, k):
        with self.lock:
            if self.ahead.get("state") is state and self.ahead.get("l2") is l2:
                queued = {c: self.started.pop((c, e), None) for c in range(self.C)}
            else:               # not the state (or l2) we returned: what ran ahead is of no use
                queued, self.gen = {}, self.gen + 1
                for f in self.started.values():
                    f.cancel()
                self.started.clear()
                self.parked.clear()
            self.at = e
            for (c, e2), args in list(self.parked.items()):   # now at most one ahead
                self.started[c, e2] = self.start(c, args, self.gen)
                del self.parked[c, e2]
            args = {c: (_pick(state, c), l2[c], e, self.key_of(k, c)) for c in range(self.C) if queued.get(c) is None}
            futs = [queued.get(c) or self.start(c, args[c], self.gen) for c in range(self.C)]
        done = [f.result() for f in futs]
        new = _stack([out for out, _ in done])
        self.ahead.update(state=new[0], l2=l2)
        if self.overlap:
            self.ahead.update(params=new[0].params, evs=[evs for _, evs in done])
        return new

    def evaluator(self, name):
        def call(params, k, epoch=0):
            if k is not self.run.key:
                ev = self.evaluators[name]
                return _stack([f.result() for f in [self.submit(ev, _pick(params, c), self.key_of(k, c), epoch)
                                                    for c in range(self.C)]])
            if self.ahead.get("params") is not params:    # else queued when each epoch ended
                self.ahead.update(params=params, evs=[self.queue(_pick(params, c), c, epoch) for c in range(self.C)])
            return _stack([evs[name].result() for evs in self.ahead["evs"]])
        return call

    def stop(self):
        with self.lock:
            self.stopping = True
            self.parked.clear()


def _thread_settings():
    """The JAX config options the calling thread holds in place of the global ones
    (``jax.enable_x64()``, ``jax.numpy_dtype_promotion(...)``, …), to set again in a worker thread;
    None (the workers are then not used) where this JAX version keeps them out of reach, or where
    the caller holds a thread guard (it forbids other threads)."""
    try:
        from jax._src import config as jc
        unset = jc.config_ext.unset
        held = [(h, v) for h in jc.config._value_holders.values()
                if isinstance(h, jc.State) and (v := h.get_local()) is not unset]
        if not all(hasattr(h, a) for h, _ in held for a in ("swap_local", "set_local", "_update_thread_local_hook")):
            return None
    except (ImportError, AttributeError):
        return None
    if any(h.name == "jax_thread_guard" and v for h, v in held):
        return None
    return held


def _with_settings(settings, fn):
    """``fn()`` with the thread-local JAX ``settings`` of :func:`_thread_settings` in force (as
    JAX's own context managers set them), then the thread's own back."""
    from jax._src import config as jc    # reachable: _thread_settings returned these settings
    done = []
    try:
        for state, value in settings:
            done.append((state, state.swap_local(value)))
            if state._update_thread_local_hook:
                state._update_thread_local_hook(value)
        return fn()
    finally:
        for state, prev in reversed(done):
            state.set_local(prev)
            if state._update_thread_local_hook:
                state._update_thread_local_hook(None if prev is jc.config_ext.unset else prev)


def _divergences(run: _Run, state, history, first_bad) -> tuple:
    """One :class:`Divergence` (or None) per configuration of a sweep."""
    lrs = optim.hyperparams(state.opt_state).get("lr")
    out = []
    for c, e in enumerate(np.asarray(first_bad).reshape(-1)):
        if e == 0:
            out.append(None)
            continue
        lr = None if lrs is None else float(np.asarray(lrs)[c])
        rate = "optax optimizer" if lr is None else f"lr {lr:g}"
        out.append(Divergence(int(e), int(np.asarray(state.bad_step)[c]), math.nan if lr is None else lr,
                              f"{run.model.name} config {c}: training diverged in epoch {e} at update "
                              f"{int(np.asarray(state.bad_step)[c])} ({rate}): non-finite loss, "
                              f"gradient or update; kept the last finite params"))
    return tuple(out)
