"""Deterministic train/validation/test splits and preprocessing (docs 001–004's protocols).

All randomness comes from ``numpy.random.default_rng(seed)`` created inside each call (no global
RNG), so a split is a pure function of the data and the seed. The default seed is
:data:`SPLIT_SEED` (0) for every data set.

=================  ================================================================  ==========
data set           split (train / validation / test)                                 function
=================  ================================================================  ==========
``mnist_5k``       3,000 / 1,000 / 1,000 stratified from the 5,000 (300/100/100 per   :func:`split_mnist_5k`
                   class; the file is sorted by class, so a positional cut would be
                   meaningless)
``mnist`` doc001   3,000 stratified from the 60,000 training images / none / 1,000   :func:`split_mnist`
                   stratified from the 10,000 test images (doc 001's 4,000 subset)
``mnist`` doc002   55,000 / 5,000 stratified from the training set / all 10,000     :func:`split_mnist`
``fashion_mnist``  10,000 / 2,000 stratified from the 60,000 (1,000/200 per class) /  :func:`split_fashion_mnist`
                   all 10,000 test images (doc 003)
``cifar10``        49,000 / 1,000 / 1,000, see :func:`split_cifar10`; mean image of   :func:`split_cifar10`
                   the training split subtracted (doc 004)
=================  ================================================================  ==========

On an **embedded sample** (``variant == "sample"``) the requested sizes are capped to what the
sample holds, and ``Split.notes`` says so: validation at most a fifth of the sample's training
part, training the rest (e.g. the Fashion-MNIST sample's 6,000 training images give 4,800 / 1,200
by default, and any quick size up to 4,800 exactly). On full data a size larger than the data is a
``ValueError``.

"Stratified" means every class gets the same share of each part (exact here, the sources are
balanced); within each part the order is shuffled with the same generator, so fixed-order batch
training does not see one class after another. Validation/test parts are drawn before the
training part, so ``n_train`` (quick modes) changes only the training set: a smaller ``n_train``
trains on a subset of the images of a larger one and validates/tests on the same images.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence

import numpy as np

from jaxnets.data.registry import DATASETS, RawData, load

__all__ = [
    "SPLIT_SEED",
    "Split",
    "stratified_indices",
    "stratified_subset",
    "split_mnist_5k",
    "split_mnist",
    "split_fashion_mnist",
    "split_cifar10",
    "to_float",
    "flatten",
    "to_nhwc",
    "preprocess",
    "get_split",
]

#: Default seed of every split.
SPLIT_SEED = 0


class Split(NamedTuple):
    """Train/validation/test arrays ready for an experiment.

    ``x_*`` keep the layout of the source (``(N, 28, 28)`` or ``(N, 32, 32, 3)``) and are
    ``uint8`` unless preprocessing made them ``float32``; ``y_*`` are ``int32 (N,)``. A part that
    a protocol does not have (doc 001's validation set) has 0 rows.

    Attributes:
        classes: class names, index = label.
        source: data-set description for reports, e.g. ``"CIFAR-10 (JPEG copy)"``.
        notes: one line describing how the split was made (sizes, seed, caps, fallbacks).
        mean: the mean training image that was subtracted (``float32``, one image), else None.
        variant: ``"full"``, ``"sample"`` or ``"jpeg-copy"`` (from :class:`RawData`).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str
    notes: str
    mean: np.ndarray | None = None
    variant: str = "full"


# ---------------------------------------------------------------------------------------------
# Index helpers
# ---------------------------------------------------------------------------------------------


def _allocate(total: int, available: np.ndarray) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``available`` (largest remainder, ties to the
    lower class index). Never exceeds ``available`` when ``total <= available.sum()``."""
    avail = available.astype(np.int64)
    n = int(avail.sum())
    if total > n:
        raise ValueError(f"cannot take {total} items from {n}")
    if n == 0:
        return np.zeros_like(avail)
    exact = total * avail / n
    quota = np.floor(exact).astype(np.int64)
    short = total - int(quota.sum())
    order = np.lexsort((np.arange(len(avail)), -(exact - quota)))
    quota[order[:short]] += 1
    return quota


def stratified_indices(labels: np.ndarray, sizes: Sequence[int], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Disjoint stratified index sets of the given sizes.

    Each class's indices are permuted once; part ``p`` takes the next ``quota[p, c]`` of class
    ``c``, with quotas proportional to what is left of each class (so they never run out).
    Each part is then shuffled.

    Args:
        labels: ``int (N,)``.
        sizes: part sizes, ``sum(sizes) <= N``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        One ``int64`` index array per part.
    """
    labels = np.asarray(labels)
    if sum(sizes) > labels.shape[0]:
        raise ValueError(f"split sizes {list(sizes)} exceed the {labels.shape[0]} available items")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    taken = np.zeros(len(classes), np.int64)
    parts = []
    for size in sizes:
        remaining = np.array([len(p) for p in pools]) - taken
        quota = _allocate(int(size), remaining)
        idx = np.concatenate([p[t:t + q] for p, t, q in zip(pools, taken, quota)]) if len(pools) else np.zeros(0, np.int64)
        taken += quota
        parts.append(rng.permutation(idx).astype(np.int64))
    return parts


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int = SPLIT_SEED):
    """``(x, y)`` reduced to a stratified, shuffled subset of ``n`` items (``None``/``>= N``: unchanged)."""
    if n is None or n >= y.shape[0]:
        return x, y
    (idx,) = stratified_indices(y, [n], seed)
    return x[idx], y[idx]


def _empty_like(x: np.ndarray, y: np.ndarray):
    return x[:0], y[:0]


# ---------------------------------------------------------------------------------------------
# Per-data-set splits
# ---------------------------------------------------------------------------------------------


def _cap(raw: RawData, available: int, n_val: int, n_train: int) -> tuple[int, int, str]:
    """``(n_val, n_train, note)`` fitting in ``available`` items: unchanged when they fit; capped
    on an embedded sample (validation at most a fifth); a ValueError on full data."""
    if n_val + n_train <= available:
        return n_val, n_train, ""
    if raw.variant != "sample":
        raise ValueError(f"{raw.source}: cannot take {n_train} training + {n_val} validation items "
                         f"from {available}")
    v = min(n_val, available // 5)
    t = min(n_train, available - v)
    return v, t, f", capped to the sample ({n_train} train / {n_val} val asked)"


def split_mnist_5k(raw: RawData, *, seed: int = SPLIT_SEED, n_train: int = 3000, n_val: int = 1000,
                   n_test: int = 1000) -> Split:
    """MNIST-5k → 3,000 train / 1,000 val / 1,000 test, stratified (300/100/100 per class).

    A larger ``n_train`` is capped at what is left after validation and test (noted).
    Returns ``uint8 (N, 28, 28)`` images; apply :func:`preprocess` for ``[0, 1]`` floats.
    """
    x, y = raw.x_train, raw.y_train
    left = len(y) - n_val - n_test
    capped = f", capped to the sample ({n_train} train asked)" if n_train > left else ""
    # Validation and test are drawn first so that they do not depend on n_train (quick modes
    # train on a prefix of the same per-class pools and evaluate on the same images).
    va, te, tr = stratified_indices(y, [n_val, n_test, min(n_train, left)], seed)
    notes = (f"{raw.source}: stratified {len(tr)}/{len(va)}/{len(te)} train/val/test from "
             f"{len(y)} images, seed {seed}{capped}")
    return Split(x[tr], y[tr], x[va], y[va], x[te], y[te], raw.classes, raw.source, notes, None, raw.variant)


def split_mnist(raw: RawData, *, protocol: str = "doc002", seed: int = SPLIT_SEED, n_val: int = 5000,
                n_train: int | None = None) -> Split:
    """Full MNIST (also works for Fashion-MNIST's layout).

    ``protocol="doc001"``: the first 3,000 training and the first 1,000 test images, no
    validation (doc 001's own 4,000-image course subset is not public; ``n_train`` overrides 3,000).
    ``protocol="doc002"``: training set split into ``60,000 - n_val`` train / ``n_val`` (5,000)
    validation, stratified; the full 10,000 test set.
    """
    if protocol == "doc001":
        tr, te = np.arange(n_train or 3000), np.arange(1000)
        xv, yv = _empty_like(raw.x_train, raw.y_train)
        notes = (f"{raw.source}: the first {len(tr)} training and first {len(te)} test images "
                 "(doc 001's course subset is not public)")
        return Split(raw.x_train[tr], raw.y_train[tr], xv, yv, raw.x_test[te], raw.y_test[te],
                     raw.classes, raw.source, notes, None, raw.variant)
    if protocol != "doc002":
        raise ValueError(f"protocol must be 'doc001' or 'doc002', got {protocol!r}")
    n = raw.y_train.shape[0]
    va, tr = stratified_indices(raw.y_train, [n_val, min(n_train or n, n - n_val)], seed)
    xt, yt = raw.x_train[tr], raw.y_train[tr]
    notes = (f"{raw.source}: doc 002 split, stratified {len(yt)} train / {len(va)} val from the "
             f"{n} training images, {len(raw.y_test)} test, seed {seed}")
    return Split(xt, yt, raw.x_train[va], raw.y_train[va], raw.x_test, raw.y_test, raw.classes,
                 raw.source, notes, None, raw.variant)


def split_fashion_mnist(raw: RawData, *, seed: int = SPLIT_SEED, n_train: int = 10000, n_val: int = 2000,
                        n_test: int | None = None) -> Split:
    """Fashion-MNIST → 10,000 train / 2,000 val stratified from the 60,000 training images
    (1,000/200 per class), all 10,000 test images (doc 003). ``n_test`` takes a stratified test
    subset for quick runs. On the embedded sample the sizes are capped (see the module doc)."""
    n_val, n_train, capped = _cap(raw, len(raw.y_train), n_val, n_train)
    va, tr = stratified_indices(raw.y_train, [n_val, n_train], seed)
    xte, yte = stratified_subset(raw.x_test, raw.y_test, n_test, seed)
    notes = (f"{raw.source}: stratified {len(tr)} train / {len(va)} val from {len(raw.y_train)} "
             f"training images, {len(yte)} test, seed {seed}{capped}")
    return Split(raw.x_train[tr], raw.y_train[tr], raw.x_train[va], raw.y_train[va], xte, yte,
                 raw.classes, raw.source, notes, None, raw.variant)


def _cifar_indices(raw: RawData, val: str, seed: int, n_val: int, n_test: int):
    n = raw.y_train.shape[0]
    if val == "last":
        tr, va = np.arange(n - n_val), np.arange(n - n_val, n)
        te = np.arange(min(n_test, raw.y_test.shape[0]))
        return tr, va, te, f"first {n - n_val} train / last {n_val} val / first {len(te)} test (CS231n order)"
    if val != "stratified":
        raise ValueError(f"val must be 'auto', 'last' or 'stratified', got {val!r}")
    capped = ""
    if raw.variant == "sample":
        v, t = min(n_val, n // 5), min(n_test, raw.y_test.shape[0])
        if (v, t) != (n_val, n_test):
            capped = f", capped to the sample ({n_val} val / {n_test} test asked)"
        n_val, n_test = v, t
    va, tr = stratified_indices(raw.y_train, [n_val, n - n_val], seed)
    (te,) = stratified_indices(raw.y_test, [n_test], seed)
    return tr, va, te, f"stratified {n - n_val} train / {n_val} val, {len(te)} test, seed {seed}{capped}"


def split_cifar10(raw: RawData, *, seed: int = SPLIT_SEED, n_train: int | None = None, n_val: int = 1000,
                  n_test: int = 1000, subtract_mean: bool = True, scale: bool = False,
                  val: str = "auto") -> Split:
    """CIFAR-10 → 49,000 train / 1,000 val / 1,000 test with the mean image subtracted (doc 004).

    Validation (``val``):

    * ``"last"`` (CS231n's recipe): train = the first ``50,000 - n_val`` training images, val =
      the last ``n_val``, test = the first ``n_test`` test images. Right for the original python
      batches, whose order is random.
    * ``"stratified"``: stratified, seeded selection for val and test (100 per class each).
      Needed for the JPEG image-folder copy and the embedded sample, which are sorted by class
      (the last 1,000 would be all trucks).
    * ``"auto"`` (default): ``"last"`` for the python batches (``variant == "full"``),
      ``"stratified"`` otherwise.

    The training part is shuffled (seeded) in the stratified case; ``n_train`` takes a stratified
    subset of it (a larger ``n_train`` keeps the whole part, noted). Images become ``float32 (N,
    32, 32, 3)`` on the 0–255 scale (``scale=True``: 0–1) and, with ``subtract_mean``, the mean
    image of the (final) training part is subtracted from every part and returned as ``Split.mean``.
    """
    if val == "auto":
        val = "last" if raw.variant == "full" else "stratified"
    tr, va, te, how = _cifar_indices(raw, val, seed, n_val, n_test)
    xtr, ytr = stratified_subset(raw.x_train[tr], raw.y_train[tr], n_train, seed)
    parts = [xtr, raw.x_train[va], raw.x_test[te]]
    parts = [p.astype(np.float32) / (255.0 if scale else 1.0) for p in parts]
    mean = None
    if subtract_mean:
        mean = parts[0].mean(axis=0, dtype=np.float64).astype(np.float32)
        parts = [p - mean for p in parts]
        how += ", training mean image subtracted"
    if n_train is not None and n_train < len(tr):
        how += f", training subset of {len(ytr)}"
    elif n_train is not None and n_train > len(tr):
        how += f", all {len(tr)} training images ({n_train} asked)"
    return Split(parts[0], ytr, parts[1], raw.y_train[va], parts[2], raw.y_test[te], raw.classes,
                 raw.source, f"{raw.source}: {how}", mean, raw.variant)


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


def to_float(x: np.ndarray) -> np.ndarray:
    """``uint8`` pixels 0–255 → ``float32`` in ``[0, 1]`` (other dtypes: just cast to float32)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32)


def flatten(x: np.ndarray) -> np.ndarray:
    """``(N, ...)`` → ``(N, prod(...))`` (row-major, i.e. the CSV/IDX pixel order)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: an empty split (N = 0) has no -1


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """Add a channel axis to grey images: ``(N, H, W)`` → ``(N, H, W, 1)``; NHWC stays as is."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4:
        return x
    raise ValueError(f"expected (N, H, W) or (N, H, W, C) images, got shape {x.shape}")


def preprocess(split: Split, *, scale: bool = True, flatten_images: bool = False, nhwc: bool = False) -> Split:
    """Apply the same preprocessing to every part of ``split``.

    Args:
        scale: ``uint8`` → ``float32`` in ``[0, 1]`` (:func:`to_float`).
        flatten_images: ``(N, ...)`` → ``(N, D)`` for fully-connected nets (784 or 3072).
        nhwc: add a channel axis to grey images for conv nets (``(N, 28, 28, 1)``).
    """

    def f(x):
        if scale:
            x = to_float(x)
        if nhwc:
            x = to_nhwc(x)
        if flatten_images:
            x = flatten(x)
        return x

    return split._replace(x_train=f(split.x_train), x_val=f(split.x_val), x_test=f(split.x_test))


def _scaled(sp: Split, scale: bool | None) -> Split:
    return preprocess(sp, scale=True if scale is None else scale)


# How each registered image layout is split (``RawData.dataset`` → function of
# ``(raw, seed, n_train, protocol, scale)`` returning a scaled split).
_SPLITTERS = {
    "mnist_5k": lambda raw, seed, n_train, protocol, scale: _scaled(
        split_mnist_5k(raw, seed=seed, n_train=n_train or 3000), scale),
    "mnist": lambda raw, seed, n_train, protocol, scale: _scaled(
        split_mnist(raw, protocol=protocol, seed=seed, n_train=n_train), scale),
    "fashion_mnist": lambda raw, seed, n_train, protocol, scale: _scaled(
        split_fashion_mnist(raw, seed=seed, n_train=n_train or 10000), scale),
    "cifar10": lambda raw, seed, n_train, protocol, scale: split_cifar10(
        raw, seed=seed, n_train=n_train, scale=bool(scale)),
}


def get_split(name: str, *, path: os.PathLike | str | None = None, download: bool = False,
              seed: int = SPLIT_SEED, n_train: int | None = None, scale: bool | None = None,
              flatten_images: bool = False, nhwc: bool = False, protocol: str = "doc002",
              fallback: bool = True, progress: bool | None = None) -> Split:
    """Load an image data set and return its experiment split (one call for the experiments).

    Args:
        name: ``"mnist_5k"``, ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        path, download, fallback, progress: passed to :func:`jaxnets.data.load` (``fallback``:
            use the embedded sample when the full data set is not found; ``mnist`` falls back to
            MNIST-5k and its 3,000/1,000/1,000 split; ``notes`` says so).
        seed: split seed (default :data:`SPLIT_SEED`).
        n_train: training-set size for quick modes (stratified subset); ``None`` = full.
        scale: ``float32`` in ``[0, 1]``; default ``True`` for the MNIST family and ``False`` for
            CIFAR-10 (doc 004 works on mean-subtracted 0–255 values).
        flatten_images, nhwc: see :func:`preprocess`.
        protocol: ``"doc001"`` or ``"doc002"`` for ``mnist`` (see :func:`split_mnist`).
    """
    raw = load(name, path, download, fallback=fallback, progress=progress)
    if not isinstance(raw, RawData):
        raise ValueError(f"{name!r} is a text corpus, not an image data set; use "
                         "jaxnets.data.text.shakespeare()")
    sp = _SPLITTERS[raw.dataset](raw, seed, n_train, protocol, scale)
    spec = DATASETS[name]
    if raw.variant == "sample" and not spec.bundled:
        sp = sp._replace(notes=sp.notes + f"; full {spec.title} not found, used the embedded sample")
    return preprocess(sp, scale=False, flatten_images=flatten_images, nhwc=nhwc)


def balanced_subset(y, n: int | None) -> np.ndarray:
    """Indices (sorted, int64) of a class-balanced subset of ``n`` items of labels ``y`` (N,):
    per class (in label order) its first ``n // K`` items, plus one more for the first ``n % K``
    classes, so a subset of a class-sorted set (the embedded Fashion-MNIST test sample) still
    holds every class (doc 003 §3.5 scores subsets of the test set). ``None`` or ``n >= N``: all.
    Deterministic, no randomness: the same ``(y, n)`` gives the same subset."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"balanced_subset: expected labels of shape (N,), got {y.shape}")
    if n is None or n >= y.shape[0]:
        return np.arange(y.shape[0], dtype=np.int64)
    if n < 0:
        raise ValueError(f"balanced_subset: n must be ≥ 0, got {n}")
    classes = np.unique(y)
    quota = np.full(len(classes), n // len(classes))
    quota[: n % len(classes)] += 1
    short = [(int(c), int(np.sum(y == c))) for c, q in zip(classes, quota) if np.sum(y == c) < q]
    if short:
        raise ValueError(f"balanced_subset: n = {n} needs {quota.max()} items per class, but classes "
                         f"(label, count) {short} have fewer")
    idx = np.concatenate([np.flatnonzero(y == c)[:q] for c, q in zip(classes, quota)])
    return np.sort(idx).astype(np.int64)
