"""Small matplotlib helpers (Agg backend, PNGs kept well under 200 KB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["bar_plot", "line_plot"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_plot(
    path: Path,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    ymin: float | None = None,
) -> str:
    """One line per series of (x, y) points; returns the file name."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for label, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    if ymin is not None:
        ax.set_ylim(bottom=ymin)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name


def bar_plot(
    path: Path, bars: Mapping[str, float], *, title: str, ylabel: str, logy: bool = False
) -> str:
    """Horizontal bars, one per label; returns the file name."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(len(bars), 1)), dpi=90)
    labels = list(bars)
    ax.barh(labels, [bars[k] for k in labels])
    if logy:
        ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name
