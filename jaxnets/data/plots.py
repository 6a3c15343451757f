"""Figure helpers for data inspection: originals next to transformed copies, image grids.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas), never through
``pyplot``: nothing global is touched, nothing is shown, and it works on headless machines.
Callers save with ``fig.savefig(path)`` or pass ``path=`` to write a file.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

__all__ = ["image_grid", "show_transforms"]


def _to_display(img: np.ndarray) -> tuple[np.ndarray, dict]:
    """One image → array for imshow plus kwargs. Grey ``(H, W)``/``(H, W, 1)`` use a grey
    colormap; colour images are rescaled to [0, 1] (mean-subtracted CIFAR is not in 0–255)."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        # Fixed ranges keep a shifted (mostly black) digit from being contrast-stretched.
        if img.dtype == np.uint8:
            return img, {"cmap": "gray", "vmin": 0, "vmax": 255}
        if img.size and img.min() >= 0 and img.max() <= 1:
            return img, {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
        return img, {"cmap": "gray"}
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if lo >= 0 and hi <= 1:
        return img, {}
    if lo >= 0 and hi <= 255:
        return img / 255.0, {}
    return (img - lo) / max(hi - lo, 1e-12), {}


def _save(fig, path):
    if path is not None:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def image_grid(images, *, ncols: int = 10, titles: Sequence[str] | None = None, title: str | None = None,
               path: os.PathLike | str | None = None, cell_inches: float = 1.0):
    """Plot ``images`` (``(N, H, W)`` or ``(N, H, W, C)``) in a grid; returns the ``Figure``
    (also written to ``path`` if given). Also suits weight visualisations (e.g. doc 004's W1
    reshaped to ``(hidden, 32, 32, 3)``), which are rescaled per image to [0, 1]."""
    from matplotlib.figure import Figure

    images = np.asarray(images)
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(cell_inches * ncols, cell_inches * nrows + (0.4 if title else 0)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            img, kw = _to_display(images[i])
            ax.imshow(img, interpolation="nearest", **kw)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def show_transforms(originals, transformed: Mapping[str, object], *, n: int = 8,
                    labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                    path: os.PathLike | str | None = None, title: str | None = None):
    """Originals in the first row, each transformed version in a row below.

    Args:
        originals: ``(N, H, W)`` or ``(N, H, W, C)``.
        transformed: row name → array of the same shape (e.g. :func:`ood_test_sets` output).
        n: number of images (columns) shown.
        labels, class_names: optional column titles.
        path: write the figure there (PNG/PDF by suffix).

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    rows = [("original", np.asarray(originals))]
    rows += [(k, np.asarray(v)) for k, v in transformed.items() if k != "original"]
    n = min(n, rows[0][1].shape[0])
    fig = Figure(figsize=(1.1 * n + 1.2, 1.1 * len(rows) + (0.4 if title else 0)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            img, kw = _to_display(imgs[c])
            ax.imshow(img, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and labels is not None:
                lab = int(labels[c])
                ax.set_title(class_names[lab] if class_names is not None else str(lab), fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
