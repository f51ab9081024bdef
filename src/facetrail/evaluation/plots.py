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


def plot_accuracy_vs_eye(
    curves: dict[str, list[tuple[float, float]]], clean: dict[str, float], path: Path, title: str
) -> None:
    """Verification accuracy against the probe's inter-eye distance (one line per model; dashed: clean probes)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for i, (label, points) in enumerate(curves.items()):
        colour = f"C{i}"
        xs, ys = zip(*sorted(points), strict=True) if points else ((), ())
        ax.plot(xs, [100 * y for y in ys], marker="o", color=colour, label=label)
        if label in clean:
            ax.axhline(100 * clean[label], color=colour, linestyle="--", linewidth=0.8, alpha=0.7)
    ax.set_xlabel("probe inter-eye distance (px); dashed: clean probes")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_group_bars(values: dict[str, float], path: Path, title: str, ylabel: str) -> None:
    """One bar per group (FNIR or FMR), labelled with its value."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    names = list(values)
    bars = ax.bar(range(len(names)), [values[n] for n in names], color="C0")
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            f"{values[name]:.3g}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_group_matrix(groups: list[str], matrix: np.ndarray, path: Path, title: str) -> None:
    """Impostor FMR for every pair of groups (diagonal: within a group)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    for i in range(len(groups)):
        for j in range(len(groups)):
            value = matrix[i, j]
            text = "–" if np.isnan(value) else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=ax, label="false-match rate at the operational threshold")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
