"""A small PNG bar chart of a storyline's developments per day (matplotlib, Agg).

matplotlib is the optional ``charts`` extra (about 100 MB installed, see
docs/telegram.md): without it :func:`chart_png` returns None and the timeline
goes out as text, saying so. The figure is built with the object-oriented API
(``Figure``, no pyplot), so no global state is shared between calls and it is
safe to draw in a worker thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

INSTALL_HINT = "pip install 'storywatch[charts]'"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def chart_png(
    counts: Sequence[tuple[date, int]], title: str, *, short: str | None = None
) -> bytes | None:
    """The chart as PNG bytes; None when matplotlib is not installed. A title the
    bundled font cannot draw (Chinese: DejaVu Sans has no CJK glyphs) is replaced by
    ``short`` (the storyline's id); the caption sent with the chart names it in full."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    title = _clip(title)
    if short is not None and not _drawable(title):
        title = short
    fig = Figure(figsize=(6.4, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    days = [d for d, _ in counts]
    ax.bar(days, [n for _, n in counts], width=0.8, color="#2f6690")  # type: ignore[arg-type]
    # "$" would start mathtext in a title taken from a user's storyline.
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    ax.set_ylabel("developments per day")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.spines[["top", "right"]].set_visible(False)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _drawable(text: str) -> bool:
    """True if the default font has a glyph for every character of ``text``."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(findfont(FontProperties())).get_charmap()
    return all(ord(ch) in charmap or ch.isspace() for ch in text)


def _clip(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
