"""Figures of the experiments, drawn with matplotlib's Agg backend (files only, nothing is shown):
curves, image grids (originals next to transformed copies), first-layer weights as pictures
(doc 004 §1.8). Every figure is written by :func:`save`."""
from __future__ import annotations

import contextlib
import math
import os
import textwrap
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from experiments._lib import cli  # noqa: E402
from jaxnets._io import atomic_write  # noqa: E402


class _PlainLog(matplotlib.ticker.LogFormatter):
    """Log-axis labels as plain numbers ("0.6", "30"), with LogFormatter's choice of which."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _plain_y(ax, logy: bool) -> None:
    """Plain y tick values: "30", "0.50003", never "3×10¹" or an offset ("1e-5 + 5e-1") a reader
    has to add up."""
    if logy:
        ax.set_yscale("log")
        # plain numbers; matplotlib thins the minor labels by itself when the range is wide
        ax.yaxis.set_major_formatter(_PlainLog())
        ax.yaxis.set_minor_formatter(_PlainLog(minor_thresholds=(2, 0.5)))
    else:
        ax.ticklabel_format(axis="y", useOffset=False)


def _epoch_axis(ax, xlabel, n_points=None):
    # epochs, passes and iterations are counts: never label 2.5
    if xlabel.split()[0] in ("epoch", "epochs", "pass", "passes", "iteration", "step"):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if n_points == 1:
            ax.set_xlim(0.5, 1.5)


def curves(series: dict, path, *, xlabel="epoch", ylabel="", title="", logy=False, x=None,
           marks: dict | None = None, bands: dict | None = None, styles: dict | None = None,
           legend_title: str | None = None):
    """One figure of several curves with a legend.

    series: {label: (T,) values}; x: common x values (default 1..T); marks: {label: x} vertical
    markers (e.g. the early-stopping point), each in its own colour and dash; bands: {label: ((T,)
    low, (T,) high)} shaded spreads; styles: {label: matplotlib line kwargs} (colour, dashes).
    Long titles are wrapped, count axes (epochs, iterations) get integer ticks.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, ys in series.items():
        ys = np.asarray(ys, float)
        xs = np.arange(1, len(ys) + 1) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, ys, **({"label": label, "lw": 1.4, "marker": "o" if len(ys) < 3 else None}
                           | (styles or {}).get(label, {})))
    for label, (lo, hi) in (bands or {}).items():
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        xs = np.arange(1, len(lo) + 1) if x is None else np.asarray(x)[: len(lo)]
        ax.fill_between(xs, lo, hi, alpha=0.25, label=label)
    for i, (label, xv) in enumerate((marks or {}).items()):
        ax.axvline(xv, color=("k", "tab:red", "tab:purple", "tab:brown")[i % 4],
                   ls=("--", ":", "-.", (0, (5, 1, 1, 1)))[i % 4], lw=1.2, label=label)
    _plain_y(ax, logy)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(wrap(title), fontsize=10)
    _epoch_axis(ax, xlabel, max((len(v) for v in series.values()), default=0) if x is None else None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=legend_title, title_fontsize=8)
    return save(fig, path)


def train_test_curves(runs: dict, path, *, kinds=("train", "test"), xlabel="epoch", ylabel="",
                      title="", logy=False):
    """Per configuration one colour: its ``kinds[0]`` curve solid, ``kinds[1]`` dashed.

    runs: {configuration label: {kind: (T,) values}}; the legend names every configuration once
    (its colour) and says which line style is which kind."""
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(8.6, 4.4))
    dashes = ("-", "--", ":")
    handles, n = [], 0
    for i, (label, r) in enumerate(runs.items()):
        for kind, ls in zip(kinds, dashes):
            ys = np.asarray(r[kind], float)
            n = max(n, len(ys))
            ax.plot(np.arange(1, len(ys) + 1), ys, color=f"C{i % 10}", ls=ls, lw=1.4,
                    marker="o" if len(ys) < 3 else None)
        handles.append(Line2D([], [], color=f"C{i % 10}", lw=2, label=label))
    handles += [Line2D([], [], color="k", ls=ls, lw=1.4, label=kind) for kind, ls in zip(kinds, dashes)]
    _plain_y(ax, logy)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(wrap(title, 80), fontsize=10)
    _epoch_axis(ax, xlabel, n)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def xy_curves(series: dict, path, *, xlabel="", ylabel="", title="", logx=False, logy=False):
    """Curves with their own x values and point markers: series {label: (xs, ys)} (a label may
    have fewer points than others, e.g. a variant measured at one batch size only)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for label, (xs, ys) in series.items():
        ax.plot(np.asarray(xs, float), np.asarray(ys, float), marker="o", ms=4, lw=1.4, label=label)
    ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear",
           xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:  # label the measured x values themselves, not decades
        ticks = sorted({float(v) for xs, _ in series.values() for v in xs})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.title.set_fontsize(9)
    return save(fig, path, bbox_inches="tight")  # the legend sits outside the axes


_MODE = {"mode": "full"}


@contextlib.contextmanager
def run_mode(mode: str):
    """Figures saved inside say ``quick run`` / ``tiny run`` in their title unless ``mode`` is
    ``"full"`` (so a quick figure is never mistaken for a full-run one)."""
    old = _MODE["mode"]
    _MODE["mode"] = mode
    try:
        yield
    finally:
        _MODE["mode"] = old


def wrap(title: str, width: int = 64) -> str:
    """``title`` broken into lines of at most ``width`` characters (so it is never clipped)."""
    return "\n".join(textwrap.fill(line, width) for line in str(title).split("\n"))


def _label_mode(fig) -> None:
    mode = _MODE["mode"]
    if mode == "full":
        return
    tag = f"[{mode} run] "
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    titled = [ax for ax in fig.axes if ax.get_title()]
    if sup:
        fig._suptitle.set_text(wrap(tag + sup.replace("\n", " ")))
    elif len(titled) == 1:
        ax = titled[0]
        width = max(40, int(ax.get_position().width * fig.get_figwidth() * 11))  # ~11 chars per inch
        ax.set_title(wrap(tag + ax.get_title().replace("\n", " "), width))
    else:
        fig.suptitle(f"{tag.strip()}: not the documents' scale", fontsize=9, color="tab:red")


def _write(fig, path, **savefig_kwargs) -> str:
    """Save ``fig`` to ``path`` atomically (format from the suffix); records it for the run."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)
    cli.wrote(path)
    return path


def save(fig, path, **savefig_kwargs) -> str:
    """Lay out (``tight_layout``), write ``fig`` to ``path`` atomically and close it."""
    _label_mode(fig)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    savefig_kwargs.setdefault("dpi", 110)
    out = _write(fig, path, **savefig_kwargs)
    plt.close(fig)
    return out


# Image grids for data inspection (originals next to transformed copies).



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
        _label_mode(fig)
        _write(fig, path, dpi=120, bbox_inches="tight")
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


# First-layer weights as pictures (doc 004 §1.8; CS231n's visualize_grid / show_net_weights):
# W1[:, j] reshaped to (H, W, C) is the template hidden unit j responds to; each tile is
# min-max normalised on its own so faint and strong units are both visible.


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


def visualize_grid(Xs, ubound: float = 255.0, padding: int = 1, ncols: int | None = None,
                   fill: float = 0.0) -> np.ndarray:
    """Tile ``Xs`` ``(N, H, W, C)`` in a grid, each tile min-max scaled to ``[0, ubound]``: by
    default CS231n's ``visualize_grid``, ``G × G`` with ``G = ceil(√N)``; with ``ncols``, ``ncols``
    columns and ``ceil(N / ncols)`` rows. Unit ``n`` sits at row ``n // G``, column ``n % G``.

    Returns ``(R·H + (R−1)·padding, G·W + (G−1)·padding, C)`` float64; padding and unused cells
    are ``fill``. A constant tile (max = min) becomes 0 instead of dividing by zero.
    """
    Xs = np.asarray(Xs, np.float64)
    if Xs.ndim != 4:
        raise ValueError(f"visualize_grid: expected (N, H, W, C) images, got shape {Xs.shape}")
    n, h, w, c = Xs.shape
    g = ncols or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, -(-n // g)) if ncols else g   # CS231n's default grid is square
    grid = np.full((h * rows + padding * (rows - 1), w * g + padding * (g - 1), c), float(fill))
    for i, img in enumerate(Xs):
        r, col = divmod(i, g)
        lo, hi = img.min(), img.max()
        tile = ubound * (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        y0, x0 = r * (h + padding), col * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = tile
    return grid


def grid_columns(n: int, max_aspect: float = 2.5) -> int:
    """Columns for ``n`` tiles without empty cells when possible: the divisor of ``n`` closest to
    a ``max_aspect``-at-most wide layout (50 → 10 × 5); else ``ceil(√n)``."""
    best = max((d for d in range(1, n + 1) if n % d == 0 and d / (n // d) <= max_aspect), default=0)
    return best if best >= math.sqrt(n) else max(1, math.ceil(math.sqrt(n)))


def plot_first_layer(W, path, *, title: str = "", image_shape=(32, 32, 3),
                     layout: str = "input_hidden") -> str:
    """Save the grid of first-layer weights (CS231n ``show_net_weights``) as a PNG; returns path.

    One tile per hidden unit, laid out without empty cells where the unit count allows
    (:func:`grid_columns`), on a white background."""
    imgs = first_layer_images(W, image_shape, layout)
    g = grid_columns(len(imgs))
    grid = visualize_grid(imgs, padding=2, ncols=g, fill=255.0)
    rows = -(-len(imgs) // g)
    fig, ax = plt.subplots(figsize=(0.62 * g + 0.4, 0.62 * rows + 1.0))
    ax.imshow(grid.astype(np.uint8).squeeze() if grid.shape[-1] in (1, 3) else grid[..., 0].astype(np.uint8),
              cmap="gray" if grid.shape[-1] == 1 else None)
    ax.axis("off")
    if title:
        ax.set_title(wrap(title, int(9 * (0.62 * g + 0.4))), fontsize=9)
    return save(fig, path)
