"""First-layer weights as pictures (doc 004 §1.8, CS231n's ``visualize_grid`` / ``show_net_weights``).

A fully-connected net on flattened images ``x = image.reshape(-1)`` (row-major ``(H, W, C)``)
has, for every hidden unit ``j``, a weight vector ``W1[:, j]`` of the same length as an image:
reshaped back to ``(H, W, C)`` it is a template the unit responds to. :func:`visualize_grid`
tiles such images in a square grid, each one min-max normalised *on its own* to ``[0, ubound]``
(exactly CS231n's helper), so faint and strong units are both visible.

Layout: the library stores ``W1`` as ``(fan_in, fan_out)`` = ``(3072, 50)`` for CIFAR-10;
doc 004's ``TwoLayerNet`` stores ``(hidden, input)`` — pass ``layout="hidden_input"`` for that.
"""
from __future__ import annotations

import math
import os

import numpy as np


def first_layer_images(W, image_shape=(32, 32, 3), layout: str = "input_hidden") -> np.ndarray:
    """``W1`` → ``(hidden, *image_shape)`` images, one per hidden unit.

    W: ``(D, H)`` with ``layout="input_hidden"`` (this library) or ``(H, D)`` with
    ``layout="hidden_input"`` (doc 004); D must equal ``prod(image_shape)``.
    """
    W = np.asarray(W, np.float64)
    if W.ndim != 2:
        raise ValueError(f"first_layer_images: W must be 2-D, got shape {W.shape}")
    if layout == "hidden_input":
        W = W.T
    elif layout != "input_hidden":
        raise ValueError(f"layout must be 'input_hidden' or 'hidden_input', got {layout!r}")
    d = int(np.prod(image_shape))
    if W.shape[0] != d:
        raise ValueError(f"first_layer_images: W has {W.shape[0]} inputs per unit, images of shape "
                         f"{tuple(image_shape)} have {d} pixels")
    return W.T.reshape(W.shape[1], *image_shape)


def visualize_grid(Xs, ubound: float = 255.0, padding: int = 1) -> np.ndarray:
    """Tile ``Xs`` ``(N, H, W, C)`` in a ``ceil(√N) × ceil(√N)`` grid (row-major, unit ``n`` at
    row ``n // G``, column ``n % G``), each tile min-max scaled to ``[0, ubound]``.

    Returns ``(G·H + (G−1)·padding, G·W + (G−1)·padding, C)`` float64; padding and unused cells
    are 0. A constant tile (max = min) becomes 0 instead of dividing by zero.
    """
    Xs = np.asarray(Xs, np.float64)
    if Xs.ndim != 4:
        raise ValueError(f"visualize_grid: expected (N, H, W, C) images, got shape {Xs.shape}")
    n, h, w, c = Xs.shape
    g = max(1, math.ceil(math.sqrt(n)))
    grid = np.zeros((h * g + padding * (g - 1), w * g + padding * (g - 1), c))
    for i, img in enumerate(Xs):
        r, col = divmod(i, g)
        lo, hi = img.min(), img.max()
        tile = ubound * (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        y0, x0 = r * (h + padding), col * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = tile
    return grid


def plot_first_layer(W, path, *, title: str = "", image_shape=(32, 32, 3),
                     layout: str = "input_hidden") -> str:
    """Save the grid of first-layer weights (CS231n ``show_net_weights``) as a PNG; returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxnets import plotting

    grid = visualize_grid(first_layer_images(W, image_shape, layout))
    fig, ax = plt.subplots(figsize=(5.2, 5.4))
    ax.imshow(grid.astype(np.uint8).squeeze() if grid.shape[-1] in (1, 3) else grid[..., 0].astype(np.uint8),
              cmap="gray" if grid.shape[-1] == 1 else None)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    return plotting.save(fig, path)
