"""Figures of the experiments, drawn with matplotlib's Agg backend (files only, nothing is shown):
curves, image grids (originals next to transformed copies), first-layer weights as pictures
(doc 004 §1.8). Every figure is written by :func:`save`."""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
import warnings
import re
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


#: first words of an x label that counts (integer ticks only)
COUNTS = ("epoch", "epochs", "pass", "passes", "iteration", "iterations", "step", "steps", "SGD",
          "configuration", "configurations")


def _epoch_axis(ax, xlabel, n_points=None):
    # epochs, passes and iterations are counts: never label 2.5
    if not xlabel or xlabel.split()[0] not in COUNTS:
        return
    if n_points == 1:
        ax.set_xlim(0.5, 1.5)
    lo, hi = ax.get_xlim()
    ints = np.arange(math.ceil(lo), math.floor(hi) + 1)
    if len(ints) <= 2:  # MaxNLocator would fall back to fractions
        ax.set_xticks(ints)
    else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


#: (marker, line style) combined with the 10 default colours so that every series of a figure has
#: its own (colour, marker, line style), however many there are
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
DASHES = ("-", "--", ":", "-.")


def series_style(i: int) -> dict:
    """The ``i``-th series' style: colour ``C{i % 10}``, marker ``MARKERS[i % 11]`` and a new dash
    each time the colours start over, so that two series of the same colour also differ in their
    line (a marker alone, ``o`` beside ``h``, is not told apart at plot size): no two of the first 40
    series share a colour and a dash."""
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)], "ls": DASHES[(i // 10) % len(DASHES)]}


def curves(series: dict, path, *, xlabel="epoch", ylabel="", title="", logy=False, x=None,
           marks: dict | None = None, bands: dict | None = None, styles: dict | None = None,
           legend_title: str | None = None, mode: str | None = None, legend_outside: bool = False):
    """One figure of several curves with a legend.

    series: {label: (T,) values}; x: common x values (default 1..T); marks: {label: x} vertical
    markers (e.g. the early-stopping point), each in its own colour and dash; bands: {label: ((T,)
    low, (T,) high)} shaded spreads; styles: {label: matplotlib line kwargs} (colour, dashes).
    Long titles are wrapped, count axes (epochs, iterations) get integer ticks; more than 10
    series get markers as well as colours (:func:`series_style`). ``mode``: see :func:`save`.
    ``legend_outside``: the legend right of the axes (curves that fill the whole box).
    """
    fig, ax = plt.subplots(figsize=(9.6 if legend_outside else 6.4, 4.2))   # outside: the axes keep their width
    many = len(series) > 10
    for i, (label, ys) in enumerate(series.items()):
        ys = np.asarray(ys, float)
        xs = np.arange(1, len(ys) + 1) if x is None else np.asarray(x)[: len(ys)]
        style = series_style(i) | {"ms": 3} if many else {"marker": "o" if len(ys) < 3 else None}
        ax.plot(xs, ys, **({"label": label, "lw": 1.4} | style | (styles or {}).get(label, {})))
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
    if legend_outside:
        ax.legend(fontsize=8, title=legend_title, title_fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        return save(fig, path, bbox_inches="tight", mode=mode)
    ax.legend(fontsize=8, title=legend_title, title_fontsize=8)
    return save(fig, path, mode=mode)


def train_test_curves(runs: dict, path, *, kinds=("train", "test"), xlabel="epoch", ylabel="",
                      title="", logy=False, mode: str | None = None):
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
    return save(fig, path, mode=mode)


def xy_curves(series: dict, path, *, xlabel="", ylabel="", title="", logx=False, logy=False,
              mode: str | None = None):
    """Curves with their own x values and point markers: series {label: (xs, ys)} (a label may
    have fewer points than others, e.g. a variant measured at one batch size only); each series
    its own (colour, marker, line style) (:func:`series_style`)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(np.asarray(xs, float), np.asarray(ys, float), ms=4, lw=1.4, label=label, **series_style(i))
    ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear",
           xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:  # label the measured x values themselves, not decades
        ticks = sorted({float(v) for xs, _ in series.values() for v in xs})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), handlelength=3.5)  # dashes show
    ax.title.set_fontsize(9)
    return save(fig, path, bbox_inches="tight", mode=mode)  # the legend sits outside the axes


# The run's mode is passed to every saver (``mode=``); inside ``with run_mode(mode):`` it defaults to
# that mode. A context variable, not a module global: it is restored on exit and not shared
# between threads or contexts.
_RUN_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("figure_run_mode", default="full")
MODES = ("full", "quick", "tiny")


@contextlib.contextmanager
def run_mode(mode: str):
    """Figures saved inside say ``quick run`` / ``tiny run`` in their title unless ``mode`` is
    ``"full"`` (so a quick figure is never mistaken for a full-run one)."""
    if mode not in MODES:
        raise ValueError(f"run_mode: mode must be one of {MODES}, got {mode!r}")
    token = _RUN_MODE.set(mode)
    try:
        yield mode
    finally:
        _RUN_MODE.reset(token)


def current_mode(mode: str | None = None) -> str:
    """``mode`` when given, else the one set by the enclosing :func:`run_mode` (``"full"``)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode or _RUN_MODE.get()


_NBSP = "\u00a0"
#: a parenthesis of at most this many characters is never broken across lines
_KEEP = 28


def wrap(title: str, width: int = 64) -> str:
    """``title`` broken into lines of at most ``width`` characters (so it is never clipped), at
    spaces only: never inside a word, a hyphenated word, a short parenthesis ("(zero fill)") or
    between a name and its number ("doc 002", "lr 0.01")."""
    def keep(m):
        return m.group(0).replace(" ", _NBSP) if len(m.group(0)) <= _KEEP else m.group(0)
    out = []
    for line in str(title).split("\n"):
        line = re.sub(r"\([^()]*\)", keep, line)
        # a name and its number stay together: "doc 002", "lr 0.01", "batch 64", "seed 0"
        line = re.sub(r"\b(doc|docs|lr|batch|seed|seeds|block|epoch|epochs|step|steps) (?=[\d§])", rf"\1{_NBSP}", line)
        out.append(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False))
    return "\n".join(out).replace(_NBSP, " ")


def experiment_of(path) -> str | None:
    """``"E5"`` for a figure file ``e5_*.png`` (else None): the name every title of it carries."""
    m = re.match(r"e(\d+)_", os.path.basename(os.fspath(path)))
    return f"E{m.group(1)}" if m else None


def _named(text: str, name: str | None) -> str:
    return text if not name or re.search(rf"\b{name}\b", text) else f"{name}: {text}"


def _label_mode(fig, mode: str, path=None) -> None:
    """Every figure's title names its experiment (from the file name) and, unless ``mode`` is
    ``"full"``, says ``[quick run]`` / ``[tiny run]``. A figure with several panel titles and no
    figure title gets one."""
    name = experiment_of(path) if path is not None else None
    tag = "" if mode == "full" else f"[{mode} run] "
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    titled = [ax for ax in fig.axes if ax.get_title()]
    if sup:
        fig._suptitle.set_text(tag + _named(sup, name))
    elif len(titled) == 1:
        titled[0].title.set_text(tag + _named(titled[0].get_title(), name))
    elif name or tag:
        what = "not the documents' scale" if tag else _words(path)
        fig.suptitle(f"{tag}{name + ': ' if name else ''}{what}", fontsize=10,
                     color="tab:red" if tag else "k")


def _words(path) -> str:
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return stem.split("_", 1)[-1].replace("_", " ")


def _label_log_axes(fig) -> None:
    """A log axis says so in its label, and its tick labels are plain numbers ("0.3", "500", not
    "3×10⁻¹"; matplotlib labels a subset of the minor ticks when the axis spans under 2 decades)."""
    for ax in fig.axes:
        for axis, get, set_ in (("x", ax.get_xlabel, ax.set_xlabel), ("y", ax.get_ylabel, ax.set_ylabel)):
            if getattr(ax, f"get_{axis}scale")() != "log":
                continue
            which = ax.xaxis if axis == "x" else ax.yaxis
            if isinstance(which.get_major_formatter(), matplotlib.ticker.LogFormatterSciNotation):
                which.set_major_formatter(_PlainLog())
                which.set_minor_formatter(_PlainLog(minor_thresholds=(2, 0.5)))
            label = get()
            if label and "log" not in label.lower():
                set_(f"{label[:-1]}, log scale)" if label.endswith(")") else f"{label} (log scale)")


def _renderer(fig):
    """An Agg renderer for ``fig`` (a bare ``Figure`` has a canvas that cannot measure text)."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _fit_titles(fig) -> None:
    """Re-wrap each panel title to its panel's width and the figure title to the figure's width
    (measured by the renderer), so that titles neither run into each other nor leave the canvas."""
    renderer = _renderer(fig)
    fig_w = fig.bbox.width
    boxes = [(ax.title, ax.get_window_extent(renderer).width) for ax in fig.axes if ax.get_title()]
    if fig._suptitle is not None and fig._suptitle.get_text():
        boxes.append((fig._suptitle, 0.96 * fig_w))
    for ax in fig.axes:  # axis labels: the y label within the panel's height, the x label its width
        box = ax.get_window_extent(renderer)
        boxes += [(ax.yaxis.label, box.height), (ax.xaxis.label, box.width)]
    for text, room in boxes:
        if not text.get_text():
            continue
        flat = text.get_text().replace("\n", " ")
        width = max(len(line) for line in text.get_text().split("\n"))
        along = (lambda b: b.height) if text.get_rotation() % 180 == 90 else (lambda b: b.width)
        while width > 12 and along(text.get_window_extent(renderer)) > room:
            width = int(width * 0.9)
            text.set_text(wrap(flat, width))


def _clear_suptitle(fig) -> None:
    """Lower the panels until the figure title sits above every panel's title and tick labels."""
    sup = fig._suptitle
    if sup is None or not sup.get_text() or not fig.axes:
        return
    r = _renderer(fig)
    for _ in range(20):
        gap = sup.get_window_extent(r).y0 - max(ax.get_tightbbox(r).y1 for ax in fig.axes)
        if gap >= 3:
            return
        fig.subplots_adjust(top=fig.subplotpars.top - (4 - gap) / fig.bbox.height)


def _lay_out(fig) -> None:
    from matplotlib.layout_engine import PlaceHolderLayoutEngine
    # tight_layout leaves a place-holder engine behind: a figure with one is still laid out by hand
    engine = fig.get_layout_engine()
    by_hand = engine is None or isinstance(engine, PlaceHolderLayoutEngine)
    if by_hand:
        fig.tight_layout()
    _fit_titles(fig)
    if by_hand:
        fig.tight_layout()
        _clear_suptitle(fig)
        _grow_to_fit(fig)


def _grow_to_fit(fig) -> None:
    """A figure whose titles still stick out above the canvas (panels of fixed aspect, e.g. an
    image grid, cannot shrink further) is made taller by the overhang."""
    r = _renderer(fig)
    for _ in range(3):
        fig.draw_without_rendering()  # titles are placed over fixed-aspect panels at draw time
        tops = [ax.title.get_window_extent(r).y1 for ax in fig.axes if ax.get_title()]
        if fig._suptitle is not None and fig._suptitle.get_text():
            tops.append(fig._suptitle.get_window_extent(r).y1)
        over = max(tops, default=0) - fig.bbox.y1
        if over <= 0:
            return
        fig.set_figheight(fig.get_figheight() + (over + 6) / fig.dpi)
        fig.tight_layout()
        _clear_suptitle(fig)


def _write(fig, path, **savefig_kwargs) -> str:
    """Save ``fig`` to ``path`` atomically (format from the suffix); records it for the run. A
    PNG carries the product's marker, :data:`cli.FIGURE_MARKER <experiments._lib.cli.FIGURE_MARKER>`,
    in a text chunk (so a later run can tell it from a file it did not write). Under
    :func:`cli.main <experiments._lib.cli.main>` the figure is put in place together with the
    run's record (:func:`cli.staged <experiments._lib.cli.staged>`)."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    if fmt == "png":
        key, value = cli.FIGURE_MARKER
        savefig_kwargs["metadata"] = {**(savefig_kwargs.get("metadata") or {}), key: value}
    with cli.staged(path) as dest, atomic_write(dest, "wb") as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)
    return path


class FigureLayoutWarning(UserWarning):
    """A saved figure has overlapping or clipped text, or legend entries sharing one style."""


def save(fig, path, *, mode: str | None = None, **savefig_kwargs) -> str:
    """Title the figure (its experiment's name; ``[quick run]``/``[tiny run]`` unless ``mode`` —
    default: :func:`current_mode` — is ``"full"``), mark log axes, lay out (``tight_layout``, titles
    re-wrapped to fit), write ``fig`` to ``path`` atomically and close it."""
    _label_mode(fig, current_mode(mode), path)
    _label_log_axes(fig)
    for ax in fig.axes:  # counts (epochs, passes, steps) get integer ticks unless already set
        if ax.get_xscale() == "linear" and type(ax.xaxis.get_major_locator()) is matplotlib.ticker.AutoLocator:
            _epoch_axis(ax, ax.get_xlabel())
    _lay_out(fig)
    # A figure that draws badly (overlapping or clipped text, two series in one style) is said,
    # not silently written: the new-user test runs every figure of a tiny run and reads stderr.
    for problem in layout_problems(fig, tight=savefig_kwargs.get("bbox_inches") == "tight"):
        warnings.warn(f"figure {os.path.basename(os.fspath(path))}: layout problem: {problem}",
                      FigureLayoutWarning, stacklevel=2)
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


def _save(fig, path, mode=None):
    if path is not None:
        _label_mode(fig, current_mode(mode), path)
        _fit_titles(fig)
        _write(fig, path, dpi=120, bbox_inches="tight")
    return fig


def image_grid(images, *, ncols: int = 10, titles: Sequence[str] | None = None, title: str | None = None,
               path: os.PathLike | str | None = None, cell_inches: float = 1.0, mode: str | None = None):
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
    return _save(fig, path, mode)


def show_transforms(originals, transformed: Mapping[str, object], *, n: int = 8,
                    labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                    path: os.PathLike | str | None = None, title: str | None = None, mode: str | None = None):
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
    return _save(fig, path, mode)


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
                     layout: str = "input_hidden", mode: str | None = None) -> str:
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
    return save(fig, path, mode=mode)


# Layout checks (used by the tests on every figure of a run).


def _texts(fig):
    """Every visible, non-empty text of ``fig`` with what it is (tick labels included)."""
    from matplotlib.text import Text
    out = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None:
            out.append(t)
    return out


def _legend_style(handle):
    """(colour, marker, line style) or face colour of a legend handle, as comparable tuples."""
    from matplotlib import colors
    if hasattr(handle, "get_marker"):
        return ("line", colors.to_hex(handle.get_color()), str(handle.get_marker()), str(handle.get_linestyle()))
    face = handle.get_facecolor()
    face = face[0] if np.ndim(face) == 2 and len(face) else face
    return ("patch", colors.to_hex(face, keep_alpha=False), str(getattr(handle, "get_hatch", lambda: "")()))


def _inside(box, canvas, slack: float = 1.0) -> bool:
    return (box.x0 >= canvas.x0 - slack and box.y0 >= canvas.y0 - slack and box.x1 <= canvas.x1 + slack
            and box.y1 <= canvas.y1 + slack)


def layout_problems(fig, *, tight: bool = False) -> list[str]:
    """What is wrong with ``fig``'s layout, in words (empty when nothing is): a title (figure or
    panel), legend or axis label that leaves the canvas (not checked when ``tight``: ``bbox_inches="tight"``
    grows the canvas to hold everything) or overlaps another text, and a legend whose entries
    share a (colour, marker, line style)."""
    renderer = _renderer(fig)
    fig.draw_without_rendering()  # positions as drawn (titles move with fixed-aspect panels)
    canvas = fig.bbox
    texts = _texts(fig)
    boxes = {id(t): t.get_window_extent(renderer) for t in texts}
    items = [(f"title {t.get_text()!r}", t, boxes[id(t)]) for t in texts
             if t is fig._suptitle or any(t is ax.title or t is ax._left_title or t is ax._right_title
                                          for ax in fig.axes)]
    legends = [lg for lg in [*(ax.get_legend() for ax in fig.axes), *fig.legends] if lg is not None]
    items += [(f"legend {[t.get_text() for t in lg.get_texts()][:3]}", lg, lg.get_window_extent(renderer))
              for lg in legends]
    labels = [(f"axis label {t.get_text()!r}", t, boxes[id(t)]) for t in texts
              if any(t is ax.xaxis.label or t is ax.yaxis.label for ax in fig.axes)]
    problems = [f"{what} leaves the canvas" for what, _, box in labels
                if not tight and not _inside(box, canvas)]
    for what, obj, box in items:
        if not tight and not _inside(box, canvas):
            problems.append(f"{what} leaves the canvas")
        own = set(map(id, obj.findobj())) if hasattr(obj, "findobj") else {id(obj)}
        for t in texts:
            if id(t) in own or t is obj:
                continue
            b = boxes[id(t)]
            if min(box.x1, b.x1) - max(box.x0, b.x0) > 1 and min(box.y1, b.y1) - max(box.y0, b.y0) > 1:
                problems.append(f"{what} overlaps the text {t.get_text()!r}")
    for lg in legends:
        styles = [_legend_style(h) for h in lg.legend_handles]
        labels = [t.get_text() for t in lg.get_texts()]
        for i, st in enumerate(styles):
            if st in styles[:i]:
                problems.append(f"legend entries {labels[styles.index(st)]!r} and {labels[i]!r} share the style {st}")
    return problems
