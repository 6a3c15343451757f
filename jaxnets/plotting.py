"""Standard figures with matplotlib's Agg backend (files only; library code never shows a window)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def curves(series: dict, path, *, xlabel="epoch", ylabel="", title="", logy=False, x=None,
           marks: dict | None = None, bands: dict | None = None):
    """One figure of several curves with a legend.

    series: {label: (T,) values}; x: common x values (default 1..T); marks: {label: x} vertical
    markers (e.g. the early-stopping point); bands: {label: ((T,) low, (T,) high)} shaded spreads.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, ys in series.items():
        ys = np.asarray(ys, float)
        xs = np.arange(1, len(ys) + 1) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, ys, label=label, lw=1.4)
    for label, (lo, hi) in (bands or {}).items():
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        xs = np.arange(1, len(lo) + 1) if x is None else np.asarray(x)[: len(lo)]
        ax.fill_between(xs, lo, hi, alpha=0.25, label=label)
    for label, xv in (marks or {}).items():
        ax.axvline(xv, color="k", ls="--", lw=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def save(fig, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
