"""The ledger as files an accountant opens: CSV and XLSX, one row per ledger entry (a
payment, a later correction of it, or a refund made: a negative amount with its reason and
transaction reference), every column of the entry, times in the shop's time zone. Amounts
are written exactly from integer minor units and Decimals, so the amount column sums to
the payments less the refunds, to the cent."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from bot.domain.ledger import LedgerEntry
from bot.domain.money import to_decimal
from bot.domain.refunds import Refund
from bot.text import strip_controls

COLUMNS = (
    "entry",
    "invoice",
    "kind",
    "time",
    "day",
    "gateway",
    "cashier",
    "cashier_name",
    "description",
    "currency",
    "amount",
    "tip",
    "crypto_amount",
    "crypto_asset",
    "rate",
    "fee",
    "charged",
    "net_amount",
    "net_asset",
    "note",
    "refund_reason",
    "refund_tx",
)


def _money(minor: int | None, currency: str) -> Decimal | None:
    return None if minor is None else to_decimal(minor, currency)


Refunds = Mapping[tuple[int, int], Refund]  # by (invoice id, ledger seq)


def rows(
    entries: Sequence[LedgerEntry],
    tz: tzinfo,
    refunds: Refunds | None = None,
    names: Mapping[int, str] | None = None,
) -> list[list[Any]]:
    """The cells of each entry, typed (int, Decimal, str, None); `names` are the cashiers'
    display names by user id (empty where unknown)."""
    out: list[list[Any]] = []
    for e in entries:
        local = e.occurred_at.astimezone(tz)
        refund = (refunds or {}).get((e.invoice_id, e.seq))
        out.append(
            [
                e.id,
                e.invoice_id,
                e.kind.value,
                local.isoformat(timespec="seconds"),
                local.date().isoformat(),
                e.gateway,
                e.cashier_id,
                _cell_text(strip_controls((names or {}).get(e.cashier_id, ""))),
                _cell_text(strip_controls(e.description)),
                e.currency,
                to_decimal(e.fiat_minor, e.currency),
                to_decimal(e.tip_minor, e.currency),
                e.crypto_amount,
                e.crypto_asset,
                e.rate,
                _money(e.fee_minor, e.currency),
                _money(e.charged_minor, e.currency),
                e.net_amount,
                e.net_asset,
                _cell_text(e.note),
                _cell_text(refund.reason) if refund else "",
                _cell_text(refund.tx_ref or "") if refund else "",
            ]
        )
    return out


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def ledger_csv(
    entries: Sequence[LedgerEntry],
    tz: tzinfo,
    refunds: Refunds | None = None,
    names: Mapping[int, str] | None = None,
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows(entries, tz, refunds, names):
        writer.writerow([_plain(v) for v in row])
    return buffer.getvalue()


def ledger_xlsx(
    entries: Sequence[LedgerEntry],
    tz: tzinfo,
    title: str = "Ledger",
    refunds: Refunds | None = None,
    names: Mapping[int, str] | None = None,
) -> bytes:
    """A workbook with one sheet: a header row, then one row per entry. Amounts are numbers
    (with as many decimals as they have), everything else text."""
    from openpyxl import Workbook  # imported when a report is asked for, not at start

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "Ledger")
    sheet.append(list(COLUMNS))
    for row in rows(entries, tz, refunds, names):
        sheet.append([_xlsx_cell(v) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xlsx_cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        # Written as the number's exact decimal text; beyond the 15 significant digits a
        # spreadsheet keeps (an 18-decimal token amount), as text so nothing is rounded.
        return value if len(value.normalize().as_tuple().digits) <= 15 else format(value, "f")
    return value


def _cell_text(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: make them plain text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


__all__ = ["COLUMNS", "ledger_csv", "ledger_xlsx", "rows"]
