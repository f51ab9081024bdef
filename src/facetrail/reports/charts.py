"""Bar charts for the transparency report: PNG bytes from matplotlib's Agg backend (no display, no script)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure  # a bare Figure renders PNG with Agg; pyplot (and a display) never loads

BAR_COLOUR = "#34607f"
MAX_BARS = 25  # beyond this a chart is unreadable; the CSV has every row


def bar_chart(title: str, labels: list[str], values: list[int], value_label: str) -> bytes:
    """Horizontal bars, largest first as given, each labelled with its count. Figure, not pyplot: no global
    state, safe in a server thread."""
    labels, values = labels[:MAX_BARS], values[:MAX_BARS]
    height = 1.2 + 0.38 * max(len(labels), 1)
    fig = Figure(figsize=(7.5, height), dpi=110)
    ax = fig.add_subplot()
    positions = list(range(len(labels)))
    bars = ax.barh(positions, values, color=BAR_COLOUR)
    ax.set_yticks(positions, labels=[label[:40] for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel(value_label)
    ax.set_title(title, loc="left", fontsize=11)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, max([*values, 1]) * 1.15)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
