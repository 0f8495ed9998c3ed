"""The books' costs, in this process: the ledger exported as CSV and XLSX (10,000 entries,
a busy month of a shop) and the shift close's chart (matplotlib, Agg)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any

from bot.domain.ledger import LedgerEntry, LedgerKind, implied_rate


def _entries(n: int) -> list[LedgerEntry]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[LedgerEntry] = []
    for i in range(n):
        fiat = 100 + (i * 37) % 9_900
        crypto = Decimal(fiat) / Decimal(9_000_000)
        out.append(
            LedgerEntry(
                id=i + 1, invoice_id=i + 1, merchant_id=1, cashier_id=1, seq=0,
                kind=LedgerKind.PAYMENT, gateway="mion", currency="EUR", fiat_minor=fiat,
                occurred_at=start + timedelta(minutes=4 * i), recorded_at=start,
                tip_minor=fiat // 10, crypto_amount=crypto, crypto_asset="BTC",
                rate=implied_rate(fiat, "EUR", crypto), note="funded", description="Espresso",
            )
        )  # fmt: skip
    return out


def _timed(rounds: int, work: Any) -> tuple[float, int]:
    times: list[float] = []
    size = 0
    for _ in range(rounds):
        began = time.perf_counter()
        size = len(work())
        times.append((time.perf_counter() - began) * 1000)
    return median(times), size


def books_render(entries: int, rounds: int) -> dict[str, Any]:
    from bot.services.exports import ledger_csv, ledger_xlsx
    from bot.telegram.charts import ChartTexts, close_chart

    ledger = _entries(entries)
    csv_ms, csv_bytes = _timed(rounds, lambda: ledger_csv(ledger, UTC).encode())
    xlsx_ms, xlsx_bytes = _timed(rounds, lambda: ledger_xlsx(ledger, UTC))
    texts = ChartTexts("Sales per hour", "Sales per day", "Hour", "Sales")
    daily = [(date(2026, 11, 1) + timedelta(days=d), 10_000 * d) for d in range(30)]
    hourly = [h * 1_000 for h in range(24)]
    close_chart(hourly, daily, "EUR", texts)  # warm-up: imports, fonts
    chart_ms, png_bytes = _timed(rounds, lambda: close_chart(hourly, daily, "EUR", texts))
    return {
        "entries": entries,
        "rounds": rounds,
        "csv_ms": csv_ms,
        "csv_bytes": csv_bytes,
        "xlsx_ms": xlsx_ms,
        "xlsx_bytes": xlsx_bytes,
        "chart_ms": chart_ms,
        "png_bytes": png_bytes,
    }


__all__ = ["books_render"]
