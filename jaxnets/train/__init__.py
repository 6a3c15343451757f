"""The training engine (``fit``, ``sweep``, ``evaluate``), doc 003's SGD as an optax
transformation (``sgd``), ``optax.adamw`` marked for the engine (``adamw``), and atomic,
resumable checkpoints.

``make_epoch``/``init_state`` expose the epoch that ``fit`` compiles (for benchmarks that time or
cost-analyse exactly that program, and for custom loops) and ``make_evaluate`` the jittable
chunked evaluator (for callers that vmap or compose it, e.g. over shifted test sets); everything
else a training run needs goes through ``fit``/``sweep``/``evaluate`` and their settings groups.
"""
from jaxnets.errors import CheckpointError
from jaxnets.train import checkpoint
from jaxnets.train.engine import (Checkpointing, Divergence, EarlyStopping, Evaluation, FitResult,
                                  MICROBATCH_BYTES, chunk_size, microbatch_size,
                                  Sampler, TrainState, evaluate, fit, init_state, make_epoch,
                                  make_evaluate, sweep)
from jaxnets.train.optim import adamw, sgd

__all__ = ["adamw", "checkpoint", "CheckpointError", "Checkpointing", "Divergence", "EarlyStopping",
           "Evaluation", "FitResult", "Sampler", "TrainState", "evaluate", "fit", "init_state",
           "make_epoch", "make_evaluate", "MICROBATCH_BYTES", "chunk_size", "microbatch_size", "sgd", "sweep"]
