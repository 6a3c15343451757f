"""doc 003's own training recipe: the course's ``fashion_mnist.ipynb`` (TensorFlow/Keras) for
§3.3–3.5, recovered from public copies of the notebook (the document itself leaves it out).

- Split of the 60,000 Fashion-MNIST training images, class balanced: per class the **first**
  1,000 indices → train (10,000), the **last** 200 → validation (2,000); each part then shuffled
  with ``np.random.seed(42)``. The test set is the full 10,000. Pixels ``/255``.
- Keras defaults: kernels Glorot-uniform (Dense and Conv2D), biases zero; ``optimizer='sgd'`` is
  SGD at learning rate 0.01 without momentum; loss = mean sparse softmax cross-entropy of the
  batch; the training set is reshuffled every epoch.
- Base model: batch 5, at most 50 epochs, ``EarlyStopping(monitor='val_accuracy', patience=3)``
  **without** ``restore_best_weights``: the model keeps the weights of the epoch it stopped at.
  :func:`jaxnets.train.fit` stops by the same rule (``patience`` epochs in a row without a
  strictly better validation accuracy) and returns those weights as ``final_params``;
  :func:`fit_through` trains on to the epoch cap and keeps the weights of that stopping epoch too
  (the stopping rule never changes the trajectory: epoch e's batch order is ``fold_in(key, e)``).
"""
from __future__ import annotations

import numpy as np

from jaxnets import data, train

TRAIN_PER_CLASS = 1000
VAL_PER_CLASS = 200
SHUFFLE_SEED = 42
#: the recipe in one dict (recorded with every result)
RECIPE = {"init": "glorot (Keras default: Glorot-uniform kernels, zero biases)", "optimizer": "SGD",
          "lr": 0.01, "momentum": 0.0, "batch_size": 5, "max_epochs": 50, "patience": 3,
          "monitor": "val_accuracy", "restore_best_weights": False, "order": "shuffle",
          "split": "per class first 1,000 → train, last 200 → val, shuffled with seed 42"}
LABEL = "document (doc 003's notebook: SGD 0.01, batch 5, ≤ 50 epochs, patience 3, last weights kept)"


def split_indices(y, train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS,
                  seed: int = SHUFFLE_SEED):
    """(train_idx, val_idx) into ``y`` (N,) as the notebook makes them: per class (in label order)
    the first ``train_per_class`` indices and the last ``val_per_class`` ones, each part shuffled by
    a legacy NumPy generator seeded ``seed`` (``np.random.seed(42); np.random.permutation``)."""
    y = np.asarray(y)
    tr, va = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < train_per_class + val_per_class:
            raise data.DataError(f"notebook split: class {int(c)} has {len(idx)} training images, needs "
                                 f"{train_per_class} + {val_per_class}")
        tr.append(idx[:train_per_class])
        va.append(idx[len(idx) - val_per_class:])
    rs = np.random.RandomState(seed)
    return rs.permutation(np.concatenate(tr)), rs.permutation(np.concatenate(va))


def load(train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS, *,
         nhwc: bool = True, raw: data.RawData | None = None, path=None, download: bool = False) -> data.Split:
    """Fashion-MNIST with the notebook's split (float32 in [0, 1]; NHWC ``(N, 28, 28, 1)`` or
    flattened ``(N, 784)``): ``10·train_per_class`` / ``10·val_per_class`` / all test images.

    ``path``/``download`` go to :func:`jaxnets.data.load` (which falls back to the embedded
    sample); on a copy with fewer than ``train_per_class + val_per_class`` images of some class
    (the 6,000-image sample) both parts shrink in the notebook's 5 : 1 ratio to fit, and
    ``notes`` says so."""
    raw = data.load("fashion_mnist", path, download) if raw is None else raw
    n_min = int(np.bincount(raw.y_train).min())
    scaled = ""
    if n_min < train_per_class + val_per_class and getattr(raw, "variant", "full") != "full":
        need = train_per_class + val_per_class
        train_per_class, val_per_class = n_min * train_per_class // need, n_min * val_per_class // need
        scaled = f" (scaled down to fit the {raw.variant}'s {n_min} images per class)"
    tr, va = split_indices(raw.y_train, train_per_class, val_per_class)
    f = (lambda x: data.to_nhwc(data.to_float(x))) if nhwc else (lambda x: data.flatten(data.to_float(x)))
    notes = (f"{raw.source}: doc 003 notebook split, per class first {train_per_class} → train "
             f"({len(tr)}), last {val_per_class} → val ({len(va)}){scaled}, shuffled with seed "
             f"{SHUFFLE_SEED}; {len(raw.y_test)} test")
    return data.Split(f(raw.x_train[tr]), raw.y_train[tr].astype(np.int32), f(raw.x_train[va]),
                      raw.y_train[va].astype(np.int32), f(raw.x_test), raw.y_test.astype(np.int32),
                      raw.classes, raw.source, notes, variant=getattr(raw, "variant", "full"))


def early_stop_point(val_acc, patience: int = RECIPE["patience"]):
    """``(best, stop)``: the best epoch and the epoch at which Keras's
    ``EarlyStopping(monitor='val_accuracy', patience)`` (the rule of :func:`jaxnets.train.fit`
    too) ends a run with these per-epoch validation accuracies: ``patience`` epochs without a
    strictly better one. 1-based; ``stop`` is None when the history ends first."""
    best, best_acc, wait = 0, -np.inf, 0
    for e, a in enumerate(np.asarray(val_acc, float), 1):
        if a > best_acc:
            best, best_acc, wait = e, a, 0
        else:
            wait += 1
            if wait >= patience:
                return best, e
    return best, None


def fit_through(model, params, train_data, val, *, key, epochs: int = RECIPE["max_epochs"],
                patience: int = RECIPE["patience"], test=None, progress: bool | None = False):
    """One run of the notebook's recipe for all ``epochs`` epochs that also keeps the weights of
    the epoch where early stopping (``patience``) would have ended it: ``(params at the stop,
    stop epoch, params after the last epoch, FitResult)``. The first are exactly what
    :func:`fit` with ``patience`` returns; the stop epoch is the last one if the rule never fires."""
    kept = {}

    def at_epoch(e, state, history):
        if "stop" not in kept and early_stop_point(history["val_acc"], patience)[1] == e:
            kept["stop"], kept["params"] = e, state.params

    _, res = fit(model, params, train_data, val, key=key, epochs=epochs, patience=None, test=test,
                 progress=progress, callback=at_epoch)
    stop = kept.get("stop", len(res.history["epoch"]))
    return kept.get("params", res.final_params), stop, res.final_params, res


def fit(model, params, train_data, val, *, key, epochs: int = RECIPE["max_epochs"],
        batch_size: int = RECIPE["batch_size"], patience: int | None = RECIPE["patience"],
        momentum: float = 0.0, test=None, eval_train: bool = False, progress: bool | None = False,
        callback=None):
    """Train with the notebook's recipe; returns ``(params kept, FitResult)`` where the params
    kept are the **last** epoch's (Keras without ``restore_best_weights``), not the best one's.
    ``callback``: :func:`jaxnets.train.fit`'s."""
    res = train.fit(model, params, train_data, val=val, epochs=epochs,
                    batch_size=min(batch_size, len(train_data[0])),
                    optimizer=train.sgd(RECIPE["lr"], momentum=momentum or None), order="shuffle", key=key,
                    early_stopping=None if patience is None else train.EarlyStopping(patience),
                    evaluation=train.Evaluation(test=test, train=eval_train), progress=progress,
                    callback=callback)
    return res.final_params, res
