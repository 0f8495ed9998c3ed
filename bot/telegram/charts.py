"""The shift close's chart: sales per hour of the day and per day of the last 30, one PNG.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state), so it may run in a worker thread. Amounts come in as integer minor units and are
plotted in the currency's units; the labels are given in the reader's language.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from bot.domain.money import exponent


@dataclass(frozen=True, slots=True)
class ChartTexts:
    hourly_title: str
    daily_title: str
    hour_label: str
    amount_label: str


def close_chart(
    hourly_minor: Sequence[int],
    daily: Sequence[tuple[date, int]],
    currency: str,
    texts: ChartTexts,
) -> bytes:
    """A PNG with two bar charts: today per local hour, and the last days."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale = 10 ** exponent(currency)
    # Bar heights only (the exact sums are in the text beside the chart): floats are fine here.
    hours = [m / scale for m in hourly_minor]
    days = [m / scale for _, m in daily]
    figure = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1)
    top.bar(range(24), hours, color="#2e7d32")
    top.set_title(texts.hourly_title)
    top.set_xlabel(texts.hour_label)
    top.set_ylabel(f"{texts.amount_label} ({currency})")
    top.set_xticks(range(0, 24, 2))
    top.set_xlim(-0.5, 23.5)
    bottom.bar(range(len(days)), days, color="#1565c0")
    bottom.set_title(texts.daily_title)
    bottom.set_ylabel(f"{texts.amount_label} ({currency})")
    step = max(1, len(daily) // 6)
    ticks = list(range(0, len(daily), step))
    bottom.set_xticks(ticks, [daily[i][0].strftime("%m-%d") for i in ticks])
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


__all__ = ["ChartTexts", "close_chart"]
