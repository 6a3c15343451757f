"""Data augmentation for the out-of-distribution remedy of doc 003 §3.5 (SPEC §1.8, E4).

Design choice — **a fixed augmented training set**, not per-batch augmentation:
the fused training epoch of :func:`jaxnets.train.fit` is one jitted ``lax.scan`` over index
batches of a fixed array, with no hook for transforming a batch inside the scan, and each ``fit``
call compiles its epoch afresh and restarts the optimizer state (momentum). Chaining ``fit`` one
epoch at a time with a freshly augmented copy would therefore pay a compile per epoch (seconds for
the CNNs on CPU) and reset the momentum trace at every epoch boundary, changing the algorithm.
So :func:`augmented_copies` draws the random transforms **once** (seeded ``jax.random`` key) and
returns the original images plus ``copies`` transformed copies of the whole training set; ``fit``
then shuffles that larger set every epoch as usual. Every training image is seen upright and in
``copies`` random variants; the cost is a ``(1 + copies)``-times longer epoch.

All transforms are pure JAX (``jaxnets.data.transforms``), vectorised over the batch with one
random parameter per image, and run under ``jax.jit``.

Conventions follow :mod:`jaxnets.data.transforms`: ``translate(x, dx, dy)`` moves the content
``dx`` px right and ``dy`` px down (zero fill); ``rot90(x, k)`` rotates ``k × 90°`` counter-clockwise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data import transforms as T

KINDS = ("shift", "rot90")


def random_shifts(key, images, max_shift: int = 5):
    """Shift every image by its own ``(dx, dy)``, each uniform on the integers ``[-max_shift, max_shift]``.

    images: ``(N, H, W)`` or ``(N, H, W, C)``. Returns ``(shifted images, dx (N,), dy (N,))``.
    """
    images = jnp.asarray(images)
    n = images.shape[0]
    kx, ky = jax.random.split(key)
    dx = jax.random.randint(kx, (n,), -max_shift, max_shift + 1)
    dy = jax.random.randint(ky, (n,), -max_shift, max_shift + 1)
    return T.translate(images, dx, dy), dx, dy


def _rot90_each(images, k):
    """Rotate image i by ``k[i] × 90°`` counter-clockwise (square images)."""
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"random 90° rotations need square images, got {images.shape}")
    rots = jnp.stack([jnp.rot90(images, j, axes=(1, 2)) for j in range(4)])  # (4, N, H, W[, C])
    return rots[k % 4, jnp.arange(images.shape[0])]


def random_rot90(key, images):
    """Rotate every image by its own ``k × 90°``, ``k`` uniform on {0, 1, 2, 3}.

    Returns ``(rotated images, k (N,))``.
    """
    images = jnp.asarray(images)
    k = jax.random.randint(key, (images.shape[0],), 0, 4)
    return _rot90_each(images, k), k


def augmented_copies(key, x, y, kind: str, copies: int = 1, max_shift: int = 5):
    """The training set plus ``copies`` randomly transformed copies of it.

    Args:
        key: ``jax.random.key``; copy ``c`` uses ``fold_in(key, c)``.
        x: ``(N, H, W)`` or ``(N, H, W, C)`` images; y: ``(N,)`` labels.
        kind: ``"shift"`` (random integer shifts in ``[-max_shift, max_shift]`` px on both axes,
            zero fill) or ``"rot90"`` (random multiples of 90°).
        copies: number of transformed copies (0 returns the data unchanged).

    Returns:
        ``(x_aug, y_aug, info)`` with ``(1 + copies) · N`` rows (originals first; ``fit`` shuffles)
        as NumPy arrays of the input dtypes, and ``info`` describing the draw (for the record).
    """
    if kind not in KINDS:
        raise ValueError(f"augmented_copies: kind must be one of {KINDS}, got {kind!r}")
    if copies < 0:
        raise ValueError(f"augmented_copies: copies must be >= 0, got {copies}")
    x = np.asarray(x)
    y = np.asarray(y)
    xs, ys = [x], [y]
    for c in range(copies):
        k = jax.random.fold_in(key, c)
        if kind == "shift":
            xa = random_shifts(k, x, max_shift)[0]
        else:
            xa = random_rot90(k, x)[0]
        xs.append(np.asarray(xa, x.dtype))
        ys.append(y)
    info = {"kind": kind, "copies": copies, "n_original": len(x), "n_total": len(x) * (1 + copies),
            "max_shift": max_shift if kind == "shift" else None,
            "scheme": "fixed augmented set: originals + copies drawn once with a seeded key"}
    return np.concatenate(xs), np.concatenate(ys), info
