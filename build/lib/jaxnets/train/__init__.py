"""The training engine (``fit``, ``sweep``, ``evaluate``) and atomic, resumable checkpoints."""
from jaxnets.train import checkpoint
from jaxnets.train.engine import (FitResult, Hyper, TrainState, evaluate, fit, init_state,
                                  make_epoch, make_evaluate, n_batches, sweep)

__all__ = ["checkpoint", "FitResult", "Hyper", "TrainState", "evaluate", "fit", "init_state",
           "make_epoch", "make_evaluate", "n_batches", "sweep"]
