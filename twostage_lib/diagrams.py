"""Diagrams for the notebooks: rows of boxes joined by arrows, drawn with matplotlib.

One function, ``flow``: each row is a chain of boxes left to right; rows may end in a shared box
(``merge``), as two views end in one loss. Drawn off-screen (a ``Figure``) and shown as a PNG, so
a notebook holds a static image that reads the same on GitHub. ``png_of`` is the one place a
figure becomes PNG bytes (the panels of ``widgets`` use it too).
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

BOX_WIDTH = 1.7
BOX_HEIGHT = 0.7
STEP = 2.3  # from one box's left edge to the next one's


def png_of(fig, dpi=80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


class Diagram:
    """A drawn diagram: a notebook shows it as a PNG; ``figure`` is the matplotlib figure."""

    def __init__(self, figure, title):
        self.figure = figure
        self.title = title

    def _repr_png_(self):
        return png_of(self.figure, dpi=100)

    def __repr__(self):
        return f"Diagram({self.title!r})"


def flow(rows, merge=None, notes=None, title=None, colours=None) -> Diagram:
    """A figure of ``rows`` (lists of box labels, one chain per row) joined by arrows; ``merge``: a
    box the last box of every row points to; ``notes``: {(row, i): text} written under box ``i`` of
    ``row``; ``colours``: {label: colour} for the boxes' faces."""
    width = max(len(r) for r in rows) + (merge is not None)
    fig = Figure(figsize=(1.55 * width + 0.4, 1.2 * len(rows) + 0.5))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(-0.2, STEP * width - 0.4)
    ax.set_ylim(-0.8 - 1.3 * (len(rows) - 1), 0.6)
    centres = []
    for r, row in enumerate(rows):
        for i, label in enumerate(row):
            _box(ax, i * STEP, -1.3 * r, label, (colours or {}).get(label, "#e8eef7"), (notes or {}).get((r, i)))
            if i:
                _arrow(ax, (i - 1) * STEP + BOX_WIDTH, -1.3 * r, i * STEP, -1.3 * r)
        centres.append(-1.3 * r)
    if merge is not None:
        x = max(len(r) for r in rows) * STEP
        y = sum(centres) / len(centres)
        _box(ax, x, y, merge, (colours or {}).get(merge, "#f7e8e8"))
        for r, row in enumerate(rows):
            _arrow(ax, (len(row) - 1) * STEP + BOX_WIDTH, -1.3 * r, x, y)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return Diagram(fig, title or " -> ".join(rows[0]))


def _box(ax, x, y, label, colour, note=None):
    patch = FancyBboxPatch(
        (x, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#445"
    )
    ax.add_patch(patch)
    ax.text(x + BOX_WIDTH / 2, y, label, ha="center", va="center", fontsize=8)
    if note:
        ax.text(x + BOX_WIDTH / 2, y - BOX_HEIGHT / 2 - 0.1, note, ha="center", va="top", fontsize=7, style="italic")


def _arrow(ax, x0, y0, x1, y1):
    ax.annotate("", xy=(x1, y1), xytext=(x0 + 0.05, y0), arrowprops=dict(arrowstyle="->", color="#445"))
