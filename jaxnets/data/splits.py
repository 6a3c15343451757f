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

**Sizes** (``n_train``, ``n_val``, ``n_test`` of every function here and of :func:`get_split`)
must be positive integers (Python or NumPy; ``None`` where a signature allows it, meaning the
default): ``0``, negative numbers, floats (``2.5``, ``3.0``) and booleans are a ``ValueError``
naming the argument and the value, never an empty or silently truncated part. A size larger than
the data is a ``ValueError`` giving the count available, for every data set, except on an
**embedded sample** (``variant == "sample"``, also MNIST-5k), where the requested sizes are capped to
what the sample holds and ``Split.notes`` says so (the experiments' quick modes ask for more than
the samples hold): validation at most a fifth of the sample's training part, training the rest
(e.g. the Fashion-MNIST sample's 6,000 training images give 4,800 / 1,200 by default, and any
quick size up to 4,800 exactly).

"Stratified" means every class gets the same share of each part (exact here, the sources are
balanced); within each part the order is shuffled with the same generator, so fixed-order batch
training does not see one class after another. Validation/test parts are drawn before the
training part, so ``n_train`` (quick modes) changes only the training set: a smaller ``n_train``
trains on a subset of the images of a larger one and validates/tests on the same images.
"""

from __future__ import annotations

import math
import numbers
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
        variant: ``"full"``, ``"sample"``, ``"jpeg-copy"`` or ``"unverified"`` (from :class:`RawData`).
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
# Size arguments
# ---------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    """A Python or NumPy integer, not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _size(where: str, arg: str, value, *, none_ok: bool = True) -> int | None:
    """``value`` as an ``int`` when it is a positive integer; ``None`` passes when ``none_ok``.
    Anything else (0, negative, a float even if whole, a bool, a string) is a ValueError naming
    ``where``, the argument and the value."""
    if value is None and none_ok:
        return None
    if not _is_int(value) or value < 1:
        also = " or None" if none_ok else ""
        raise ValueError(f"{where}: {arg} must be a positive integer{also}, got {value!r}")
    return int(value)


def _fit(raw: RawData, arg: str, value: int, available: int, what: str, detail: str = "") -> tuple[int, str]:
    """``(value, note)`` when ``value <= available``; on an embedded sample ``(available, note
    saying so)``; on any other copy a ValueError naming the argument, the value and the count
    available (``what``: e.g. ``"training images"``; ``detail``: how that count comes about,
    e.g. ``"60,000 less n_val=2000 validation"``)."""
    if value <= available:
        return value, ""
    if raw.variant == "sample":
        return available, f", capped to the sample ({arg}={value} asked)"
    raise ValueError(f"{raw.source}: {arg}={value} is more than the {available:,} {what} available"
                     + (f" ({detail})" if detail else ""))


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
        sizes: part sizes, non-negative integers (not bools or floats), ``sum(sizes) <= N``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        One ``int64`` index array per part.
    """
    labels = np.asarray(labels)
    for i, size in enumerate(sizes):
        if not _is_int(size) or size < 0:
            raise ValueError(f"stratified_indices: sizes[{i}] must be a non-negative integer, got {size!r}")
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
    """``(x, y)`` reduced to a stratified, shuffled subset of ``n`` items (``None``/``>= N``:
    unchanged). ``n`` must be a positive integer or None (a ValueError otherwise)."""
    n = _size("stratified_subset", "n", n)
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
    on an embedded sample (validation at most a fifth); a ValueError on any other copy."""
    if n_val + n_train <= available:
        return n_val, n_train, ""
    if raw.variant != "sample":
        if n_val >= available:
            raise ValueError(f"{raw.source}: n_val={n_val} leaves no training images of the {available:,} "
                             "available")
        raise ValueError(f"{raw.source}: n_train={n_train} is more than the {available - n_val:,} training "
                         f"images available ({available:,} less n_val={n_val} validation)")
    v = min(n_val, available // 5)
    t = min(n_train, available - v)
    return v, t, f", capped to the sample ({n_train} train / {n_val} val asked)"


def split_mnist_5k(raw: RawData, *, seed: int = SPLIT_SEED, n_train: int = 3000, n_val: int = 1000,
                   n_test: int = 1000) -> Split:
    """MNIST-5k → 3,000 train / 1,000 val / 1,000 test, stratified (300/100/100 per class).

    Sizes must be positive integers (a ValueError otherwise). On the sample (``variant ==
    "sample"``) a larger ``n_train`` is capped at what is left after validation and test (noted);
    on an unverified copy it is a ValueError. ``n_val + n_test`` must leave training images.
    Returns ``uint8 (N, 28, 28)`` images; apply :func:`preprocess` for ``[0, 1]`` floats.
    """
    n_train, n_val, n_test = (_size("split_mnist_5k", a, v, none_ok=False)
                              for a, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
    x, y = raw.x_train, raw.y_train
    left = len(y) - n_val - n_test
    if left < 1:
        raise ValueError(f"{raw.source}: n_val={n_val} + n_test={n_test} leave no training images of the "
                         f"{len(y):,} available")
    n_train, capped = _fit(raw, "n_train", n_train, left, "training images",
                           f"{len(y):,} less n_val={n_val} validation and n_test={n_test} test")
    # Validation and test are drawn first so that they do not depend on n_train (quick modes
    # train on a prefix of the same per-class pools and evaluate on the same images).
    va, te, tr = stratified_indices(y, [n_val, n_test, n_train], seed)
    notes = (f"{raw.source}: stratified {len(tr)}/{len(va)}/{len(te)} train/val/test from "
             f"{len(y)} images, seed {seed}{capped}")
    return Split(x[tr], y[tr], x[va], y[va], x[te], y[te], raw.classes, raw.source, notes, None, raw.variant)


def split_mnist(raw: RawData, *, protocol: str = "doc002", seed: int = SPLIT_SEED, n_val: int = 5000,
                n_train: int | None = None) -> Split:
    """Full MNIST (also works for Fashion-MNIST's layout).

    ``protocol="doc001"``: the first 3,000 training and the first 1,000 test images, no
    validation (doc 001's own 4,000-image course subset is not public; ``n_train`` overrides 3,000).
    ``protocol="doc002"``: training set split into ``60,000 - n_val`` train / ``n_val`` (5,000)
    validation, stratified; the full 10,000 test set. ``n_train`` (None: all that is left) takes a
    stratified subset of the training part.

    Sizes must be positive integers; more than the data holds is a ValueError (capped on an
    embedded sample, noted).
    """
    n_train = _size("split_mnist", "n_train", n_train)
    n_val = _size("split_mnist", "n_val", n_val, none_ok=False)
    n = raw.y_train.shape[0]
    if protocol == "doc001":
        k, capped = _fit(raw, "n_train", n_train or 3000, n, "training images")
        t, capped_te = _fit(raw, "n_test (doc 001's fixed size)", 1000, raw.y_test.shape[0], "test images")
        tr, te = np.arange(k), np.arange(t)
        xv, yv = _empty_like(raw.x_train, raw.y_train)
        notes = (f"{raw.source}: the first {len(tr)} training and first {len(te)} test images "
                 f"(doc 001's course subset is not public){capped}{capped_te}")
        return Split(raw.x_train[tr], raw.y_train[tr], xv, yv, raw.x_test[te], raw.y_test[te],
                     raw.classes, raw.source, notes, None, raw.variant)
    if protocol != "doc002":
        raise ValueError(f"protocol must be 'doc001' or 'doc002', got {protocol!r}")
    if n_val >= n:
        raise ValueError(f"{raw.source}: n_val={n_val} leaves no training images of the {n:,} available")
    k, capped = _fit(raw, "n_train", n_train or n - n_val, n - n_val, "training images",
                     f"{n:,} less n_val={n_val} validation")
    va, tr = stratified_indices(raw.y_train, [n_val, k], seed)
    xt, yt = raw.x_train[tr], raw.y_train[tr]
    notes = (f"{raw.source}: doc 002 split, stratified {len(yt)} train / {len(va)} val from the "
             f"{n} training images, {len(raw.y_test)} test, seed {seed}{capped}")
    return Split(xt, yt, raw.x_train[va], raw.y_train[va], raw.x_test, raw.y_test, raw.classes,
                 raw.source, notes, None, raw.variant)


def split_fashion_mnist(raw: RawData, *, seed: int = SPLIT_SEED, n_train: int = 10000, n_val: int = 2000,
                        n_test: int | None = None) -> Split:
    """Fashion-MNIST → 10,000 train / 2,000 val stratified from the 60,000 training images
    (1,000/200 per class), all 10,000 test images (doc 003). ``n_test`` takes a stratified test
    subset for quick runs. Sizes must be positive integers; more than the data holds is a
    ValueError, except on the embedded sample, where the sizes are capped (see the module doc)."""
    n_train, n_val = (_size("split_fashion_mnist", a, v, none_ok=False) for a, v in (("n_train", n_train), ("n_val", n_val)))
    n_test = _size("split_fashion_mnist", "n_test", n_test)
    n_val, n_train, capped = _cap(raw, len(raw.y_train), n_val, n_train)
    if n_test is not None:
        n_test, capped_te = _fit(raw, "n_test", n_test, len(raw.y_test), "test images")
        capped += capped_te
    va, tr = stratified_indices(raw.y_train, [n_val, n_train], seed)
    xte, yte = stratified_subset(raw.x_test, raw.y_test, n_test, seed)
    notes = (f"{raw.source}: stratified {len(tr)} train / {len(va)} val from {len(raw.y_train)} "
             f"training images, {len(yte)} test, seed {seed}{capped}")
    return Split(raw.x_train[tr], raw.y_train[tr], raw.x_train[va], raw.y_train[va], xte, yte,
                 raw.classes, raw.source, notes, None, raw.variant)


def _cifar_indices(raw: RawData, val: str, seed: int, n_val: int, n_test: int):
    n = raw.y_train.shape[0]
    if val not in ("last", "stratified"):
        raise ValueError(f"val must be 'auto', 'last' or 'stratified', got {val!r}")
    if raw.variant != "sample" or val == "last":
        if n_val >= n:
            raise ValueError(f"{raw.source}: n_val={n_val} leaves no training images of the {n:,} available")
    if val == "last":
        n_test, capped = _fit(raw, "n_test", n_test, raw.y_test.shape[0], "test images")
        tr, va = np.arange(n - n_val), np.arange(n - n_val, n)
        te = np.arange(n_test)
        return tr, va, te, f"first {n - n_val} train / last {n_val} val / first {len(te)} test (CS231n order){capped}"
    capped = ""
    if raw.variant != "sample":
        n_test, capped = _fit(raw, "n_test", n_test, raw.y_test.shape[0], "test images")
    else:
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
    * ``"auto"`` (default): ``"last"`` for the python batches (``variant`` ``"full"``, or
      ``"unverified"``: a tarball read with ``verify=False``), ``"stratified"`` otherwise.

    The training part is shuffled (seeded) in the stratified case; ``n_train`` takes a stratified
    subset of it. Sizes must be positive integers (``n_train`` may be None: all); more than the
    data holds (``n_train`` over the training part, ``n_val`` leaving no training image, ``n_test``
    over the test images) is a ValueError giving the count available, except on the embedded
    sample, where they are capped (noted). Images become ``float32 (N,
    32, 32, 3)`` on the 0–255 scale (``scale=True``: 0–1) and, with ``subtract_mean``, the mean
    image of the (final) training part is subtracted from every part and returned as ``Split.mean``.
    """
    n_train = _size("split_cifar10", "n_train", n_train)
    n_val, n_test = (_size("split_cifar10", a, v, none_ok=False) for a, v in (("n_val", n_val), ("n_test", n_test)))
    if val == "auto":
        val = "last" if raw.variant in ("full", "unverified") else "stratified"
    tr, va, te, how = _cifar_indices(raw, val, seed, n_val, n_test)
    if n_train is not None and n_train > len(tr) and raw.variant != "sample":
        raise ValueError(f"{raw.source}: n_train={n_train} is more than the {len(tr):,} training images "
                         f"available ({raw.y_train.shape[0]:,} less n_val={n_val} validation)")
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
        n_train: training-set size for quick modes (stratified subset); ``None`` = full. A
            positive integer (Python or NumPy; not a bool or float): anything else is a ValueError
            naming it, and so is more than the data holds, except on an embedded sample (capped,
            noted; see the module docstring).
        scale: ``float32`` in ``[0, 1]``; default ``True`` for the MNIST family and ``False`` for
            CIFAR-10 (doc 004 works on mean-subtracted 0–255 values).
        flatten_images, nhwc: see :func:`preprocess`.
        protocol: ``"doc001"`` or ``"doc002"`` for ``mnist`` (see :func:`split_mnist`).
    """
    n_train = _size("get_split", "n_train", n_train)   # before loading: a bad size fails at once
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
    ``n`` must be a positive integer or None (0, negative, float, bool: a ValueError; an empty
    subset would score as NaN). Deterministic, no randomness: the same ``(y, n)`` gives the same
    subset."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"balanced_subset: expected labels of shape (N,), got {y.shape}")
    n = _size("balanced_subset", "n", n)
    if n is None or n >= y.shape[0]:
        return np.arange(y.shape[0], dtype=np.int64)
    classes = np.unique(y)
    quota = np.full(len(classes), n // len(classes))
    quota[: n % len(classes)] += 1
    short = [(int(c), int(np.sum(y == c))) for c, q in zip(classes, quota) if np.sum(y == c) < q]
    if short:
        raise ValueError(f"balanced_subset: n = {n} needs {quota.max()} items per class, but classes "
                         f"(label, count) {short} have fewer")
    idx = np.concatenate([np.flatnonzero(y == c)[:q] for c, q in zip(classes, quota)])
    return np.sort(idx).astype(np.int64)
