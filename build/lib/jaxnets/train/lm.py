"""Training loop for the character transformer: AdamW (written out, strict-dtype safe), batches drawn inside the compiled program,
one ``jax.jit`` over a ``lax.scan`` of ``eval_every`` steps, train/val loss estimated between chunks.

``grad="hand"`` uses the model's hand-written ``backprop``; ``grad="autodiff"`` uses
``jax.value_and_grad`` of the same forward (for checks and the throughput benchmark).
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.text import get_batch


class LMConfig(NamedTuple):
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    min_lr_frac: float = 0.1     # cosine decay from lr to lr·min_lr_frac over `steps`
    eval_every: int = 200
    eval_batches: int = 20
    eval_tokens: int = 0         # > 0: evaluation batches hold ~eval_tokens/eval_batches tokens each,
                                 # so a short block size is not scored on a handful of characters
    grad_clip: float = 1.0


class AdamWState(NamedTuple):
    count: Any      # int32 scalar: steps taken
    mu: Any         # first moments, like params
    nu: Any         # second moments, like params


class Optimizer(NamedTuple):
    init: Any       # params -> state
    update: Any     # (grads, state, params) -> (updates, state); params + updates is the step


def lr_schedule(cfg: "LMConfig"):
    """Linear warm-up from 0 to ``lr`` over ``warmup`` steps, then cosine decay to
    ``lr·min_lr_frac`` at ``steps``. count: int32 scalar -> float32 scalar."""
    warm, total = max(cfg.warmup, 1), max(cfg.steps, cfg.warmup + 1)

    def sched(count):
        c = count.astype(jnp.float32)
        warm_lr = cfg.lr * c / warm
        frac = jnp.clip((c - warm) / (total - warm), 0.0, 1.0)
        cos_lr = cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + jnp.cos(jnp.pi * frac)))
        return jnp.where(c < warm, warm_lr, cos_lr)

    return sched


def make_optimizer(cfg: "LMConfig", b1: float = 0.9, b2: float = 0.99, eps: float = 1e-8):
    """AdamW (decoupled weight decay on matrices only, i.e. leaves with ndim >= 2 — never biases,
    layer-norm parameters are 1-D too) with global-norm gradient clipping and :func:`lr_schedule`.

    Written out here rather than taken from optax because optax's bias correction
    (``decay ** count`` with an int32 count) fails under ``jax_numpy_dtype_promotion="strict"``,
    which the test-suite enables; every cast below is explicit.
    """
    sched = lr_schedule(cfg)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamWState(jnp.zeros((), jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params):
        if cfg.grad_clip:
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32)))
                                for g in jax.tree.leaves(grads)))
            factor = jnp.minimum(1.0, cfg.grad_clip / (norm + 1e-12))
            grads = jax.tree.map(lambda g: g * factor.astype(g.dtype), grads)
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        lr = sched(state.count)

        def step(m, v, p):
            t = count.astype(p.dtype)
            m_hat = m / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            u = m_hat / (jnp.sqrt(v_hat) + eps)
            if p.ndim >= 2:
                u = u + cfg.weight_decay * p
            return -lr.astype(p.dtype) * u

        return jax.tree.map(step, mu, nu, params), AdamWState(count, mu, nu)

    return Optimizer(init, update)


def grad_fn(model, grad: str):
    if grad == "hand":
        return model.backprop
    if grad == "autodiff":
        return model.grad_autodiff
    raise ValueError(f"grad must be 'hand' or 'autodiff', got {grad!r}")


def make_chunk(model, optimizer, batch_size: int, n_steps: int, grad: str = "hand",
               compiler_options=None):
    """Compiled ``chunk(params, opt_state, key, train) -> (params, opt_state, losses (n_steps,))``:
    ``n_steps`` AdamW steps on random windows of ``train`` (n,) int32, dropout keys from ``key``."""
    vg = grad_fn(model, grad)
    T = model.block_size

    def step(carry, k):
        params, opt_state, train = carry
        kb, kd = jax.random.split(k)
        x, y = get_batch(kb, train, batch_size, T)
        loss, grads = vg(params, x, y, kd)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jax.tree.map(jnp.add, params, updates)
        return (params, opt_state, train), loss

    def chunk(params, opt_state, key, train):
        (params, opt_state, _), losses = jax.lax.scan(
            step, (params, opt_state, train), jax.random.split(key, n_steps))
        return params, opt_state, losses

    return jax.jit(chunk, compiler_options=compiler_options)


def make_evaluator(model, batch_size: int, n_batches: int, compiler_options=None):
    """Compiled ``evaluate(params, key, data, lo, hi) -> mean loss`` over n_batches random windows
    of ``data[lo:hi]`` (no dropout). data: (n,) int32; lo, hi: int32 scalars, so the training and
    validation parts of one concatenated corpus share a single compilation."""
    T = model.block_size

    def evaluate(params, key, data, lo, hi):
        def one(k):
            starts = jax.random.randint(k, (batch_size,), lo, hi - T)                # (B,)
            pos = starts[:, None] + jnp.arange(T, dtype=starts.dtype)[None, :]      # (B, T)
            return model.loss(params, data[pos], data[pos + 1])
        return jnp.mean(jax.lax.map(one, jax.random.split(key, n_batches)))

    return jax.jit(evaluate, compiler_options=compiler_options)


def train_lm(model, params, train, val, key, cfg: LMConfig = LMConfig(), grad: str = "hand",
             log=None, compiler_options=None) -> tuple[Any, dict]:
    """Train ``params`` of ``model`` on ``train`` (n,) int32, estimating the train/val loss at
    step 0, every ``cfg.eval_every`` steps and at the end (fixed evaluation keys, so the same
    windows are scored at every evaluation).

    Returns (params, history) with history = {"step", "train_loss", "val_loss", "time_s" (lists,
    one entry per evaluation), "step_loss" (every step's minibatch loss), "compile_s", "train_s"
    (wall time of the training chunks after compilation), "tokens_per_s"}. ``log`` (a callable
    taking a string) reports each evaluation; ``compiler_options`` go to ``jax.jit`` (the tests
    pass ``{"xla_backend_optimization_level": 0}`` to compile faster).
    """
    optimizer = make_optimizer(cfg)
    opt_state = optimizer.init(params)
    train = jnp.asarray(train, jnp.int32)
    val = jnp.asarray(val, jnp.int32)
    for nm, part in (("train", train), ("val", val)):
        if part.shape[0] <= model.block_size + 1:
            raise ValueError(f"train_lm: the {nm} split has {part.shape[0]} tokens; it needs more "
                             f"than block_size + 1 = {model.block_size + 1}")
    corpus = jnp.concatenate([train, val])       # evaluation windows never cross the boundary
    n_train, n_corpus = jnp.int32(train.shape[0]), jnp.int32(corpus.shape[0])
    eval_bs = cfg.batch_size
    if cfg.eval_tokens:
        eval_bs = max(1, -(-cfg.eval_tokens // (cfg.eval_batches * model.block_size)))
    evaluate = make_evaluator(model, eval_bs, cfg.eval_batches, compiler_options)
    k_train, k_eval = jax.random.split(key)
    k_eval_train, k_eval_val = jax.random.split(k_eval)
    chunks = {}

    hist = {"step": [], "train_loss": [], "val_loss": [], "time_s": [], "step_loss": [],
            "compile_s": 0.0, "train_s": 0.0,
            "eval_tokens": eval_bs * cfg.eval_batches * model.block_size}
    t_start = time.perf_counter()

    def record(step):
        tl = float(evaluate(params, k_eval_train, corpus, 0, n_train))
        vl = float(evaluate(params, k_eval_val, corpus, n_train, n_corpus))
        hist["step"].append(step)
        hist["train_loss"].append(tl)
        hist["val_loss"].append(vl)
        hist["time_s"].append(time.perf_counter() - t_start)
        if log:
            log(f"  step {step:5d}  train {tl:.4f}  val {vl:.4f}  ({hist['time_s'][-1]:.0f} s)")

    record(0)
    done = 0
    while done < cfg.steps:
        n = min(cfg.eval_every, cfg.steps - done)
        if n not in chunks:
            chunks[n] = make_chunk(model, optimizer, cfg.batch_size, n, grad, compiler_options)
            t0 = time.perf_counter()
            chunks[n] = chunks[n].lower(params, opt_state, k_train, train).compile()
            hist["compile_s"] += time.perf_counter() - t0
        k_train, k = jax.random.split(k_train)
        t0 = time.perf_counter()
        params, opt_state, losses = chunks[n](params, opt_state, k, train)
        losses = np.asarray(losses)
        hist["train_s"] += time.perf_counter() - t0
        hist["step_loss"].extend(losses.tolist())
        done += n
        record(done)
    hist["tokens_per_s"] = cfg.steps * cfg.batch_size * model.block_size / max(hist["train_s"], 1e-9)
    return params, hist
