"""The training engine (``fit``, ``sweep``, ``evaluate``) and atomic, resumable checkpoints."""
from jaxnets.train import checkpoint
from jaxnets.train.checkpoint import CheckpointError
from jaxnets.train.engine import (Divergence, FitResult, Hyper, Sampler, TrainState, evaluate, fit,
                                  init_state, make_epoch, make_evaluate, make_sampled_evaluate,
                                  n_batches, sweep, with_replay)

__all__ = ["checkpoint", "CheckpointError", "Divergence", "FitResult", "Hyper", "Sampler",
           "TrainState", "evaluate", "fit", "init_state", "make_epoch", "make_evaluate",
           "make_sampled_evaluate", "n_batches", "sweep", "with_replay"]
