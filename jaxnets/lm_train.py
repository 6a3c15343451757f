"""Training loop for the character transformer: AdamW, batches drawn inside the compiled program,
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
import optax

from jaxnets.text import get_batch


class LMConfig(NamedTuple):
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    min_lr_frac: float = 0.1     # cosine decay from lr to lr·min_lr_frac over `steps`
    eval_every: int = 200
    eval_batches: int = 20
    grad_clip: float = 1.0


def make_optimizer(cfg: LMConfig):
    """AdamW with linear warm-up and cosine decay; weight decay on matrices only (ndim >= 2),
    never on biases or layer-norm parameters; global-norm gradient clipping."""
    sched = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, max(cfg.warmup, 1), max(cfg.steps, cfg.warmup + 1), cfg.lr * cfg.min_lr_frac)
    decay_mask = lambda params: jax.tree.map(lambda v: v.ndim >= 2, params)  # noqa: E731
    chain = [optax.adamw(sched, b1=0.9, b2=0.99, weight_decay=cfg.weight_decay, mask=decay_mask)]
    if cfg.grad_clip:
        chain.insert(0, optax.clip_by_global_norm(cfg.grad_clip))
    return optax.chain(*chain)


def grad_fn(model, grad: str):
    if grad == "hand":
        return model.backprop
    if grad == "autodiff":
        return model.grad_autodiff
    raise ValueError(f"grad must be 'hand' or 'autodiff', got {grad!r}")


def make_chunk(model, optimizer, batch_size: int, n_steps: int, grad: str = "hand"):
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
        params = optax.apply_updates(params, updates)
        return (params, opt_state, train), loss

    def chunk(params, opt_state, key, train):
        (params, opt_state, _), losses = jax.lax.scan(
            step, (params, opt_state, train), jax.random.split(key, n_steps))
        return params, opt_state, losses

    return jax.jit(chunk)


def make_evaluator(model, batch_size: int, n_batches: int):
    """Compiled ``evaluate(params, key, data) -> mean loss`` over n_batches random windows
    (no dropout)."""
    T = model.block_size

    def evaluate(params, key, data):
        def one(k):
            x, y = get_batch(k, data, batch_size, T)
            return model.loss(params, x, y)
        return jnp.mean(jax.lax.map(one, jax.random.split(key, n_batches)))

    return jax.jit(evaluate)


def train_lm(model, params, train, val, key, cfg: LMConfig = LMConfig(), grad: str = "hand",
             log=None) -> tuple[Any, dict]:
    """Train ``params`` of ``model`` on ``train`` (n,) int32, estimating the train/val loss at
    step 0, every ``cfg.eval_every`` steps and at the end (fixed evaluation keys, so the same
    windows are scored at every evaluation).

    Returns (params, history) with history = {"step", "train_loss", "val_loss", "time_s" (lists,
    one entry per evaluation), "step_loss" (every step's minibatch loss), "compile_s", "train_s"
    (wall time of the training chunks after compilation), "tokens_per_s"}.
    """
    optimizer = make_optimizer(cfg)
    opt_state = optimizer.init(params)
    train = jnp.asarray(train, jnp.int32)
    val = jnp.asarray(val, jnp.int32)
    evaluate = make_evaluator(model, cfg.batch_size, cfg.eval_batches)
    k_train, k_eval = jax.random.split(key)
    k_eval_train, k_eval_val = jax.random.split(k_eval)
    chunks = {}

    hist = {"step": [], "train_loss": [], "val_loss": [], "time_s": [], "step_loss": [],
            "compile_s": 0.0, "train_s": 0.0}
    t_start = time.perf_counter()

    def record(step):
        tl = float(evaluate(params, k_eval_train, train))
        vl = float(evaluate(params, k_eval_val, val))
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
            chunks[n] = make_chunk(model, optimizer, cfg.batch_size, n, grad)
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
