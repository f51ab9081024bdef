"""ROC, DET and CMC plots (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_axes(ax: Any, *, x: bool, y: bool) -> None:
    """Log axes that stay valid when no curve has points to draw (a perfectly separated toy set)."""
    empty = not any(len(line.get_xdata()) for line in ax.get_lines())
    if x:
        ax.set_xscale("log")
        if empty:
            ax.set_xlim(1e-4, 1)
    if y:
        ax.set_yscale("log")
        if empty:
            ax.set_ylim(1e-4, 1)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """TAR against FAR (log FAR axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, (far, tar) in curves.items():
        keep = far > 0
        if keep.any():
            ax.plot(far[keep], tar[keep], label=label)
        else:  # no impostor was ever accepted: nothing to draw on a log axis
            ax.plot([], [], label=f"{label} (no false accepts)")
    _log_axes(ax, x=True, y=False)
    ax.set_xlabel("false accept rate (different-person pairs accepted)")
    ax.set_ylabel("true accept rate")
    ax.set_title("LFW View 2 ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """False reject rate against false accept rate, both on log axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, (far, tar) in curves.items():
        frr = 1.0 - tar
        keep = (far > 0) & (frr > 0)
        if keep.any():
            ax.plot(far[keep], frr[keep], label=label)
        else:
            ax.plot([], [], label=f"{label} (no errors at any threshold)")
    _log_axes(ax, x=True, y=True)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("false reject rate")
    ax.set_title("LFW View 2 DET")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_cmc(rates: np.ndarray, label: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    ranks = np.arange(1, len(rates) + 1)
    ax.plot(ranks, rates, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (mate within rank)")
    ax.set_title("LFW 1:N closed-set CMC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
