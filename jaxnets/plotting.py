"""Standard figures with matplotlib's Agg backend (files only; library code never shows a window)."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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


def save(fig, path, **savefig_kwargs) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, **savefig_kwargs)
    plt.close(fig)
    return path
