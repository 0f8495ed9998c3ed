"""The counter (Mini App) in SQL, written once for both dialects: each counter sale's split
of amount and tip, a merchant's tip percentages, and the paid sales of a day."""

from __future__ import annotations

from datetime import datetime

from bot.domain.tips import DEFAULT_TIP_PERCENTS, CounterSale, DaySales, TipKind
from storage.dialect import Conn, SqlDialect, marks, ms


class CounterSql(SqlDialect[Conn]):
    """The `counter_*` repository methods (storage/base.py) on a SQL dialect."""

    async def counter_add_sale(self, sale: CounterSale, now: datetime) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO counter_sales (invoice_id, merchant_id, amount_minor, tip_minor,"
                f" tip_kind, currency, created_at) VALUES ({marks(7)})"
                " ON CONFLICT (invoice_id) DO NOTHING",
                (
                    sale.invoice_id,
                    sale.merchant_id,
                    sale.amount_minor,
                    sale.tip_minor,
                    sale.tip_kind.value,
                    sale.currency,
                    ms(now),
                ),
            )

    async def counter_sale(self, invoice_id: int) -> CounterSale | None:
        async with self._read() as db:
            row = await self._one(
                db,
                "SELECT invoice_id, merchant_id, amount_minor, tip_minor, tip_kind, currency"
                " FROM counter_sales WHERE invoice_id = ?",
                (invoice_id,),
            )
        if row is None:
            return None
        return CounterSale(
            invoice_id=int(row[0]),
            merchant_id=int(row[1]),
            amount_minor=int(row[2]),
            tip_minor=int(row[3]),
            tip_kind=TipKind(row[4]),
            currency=str(row[5]),
        )

    async def counter_day(
        self, merchant_id: int, start: datetime, end: datetime, *, created_by: int | None = None
    ) -> list[DaySales]:
        """The shop's invoices paid in [start, end) by currency (only those `created_by`
        made, when given): count, total, tips."""
        mine, params = ("", ()) if created_by is None else (" AND i.created_by = ?", (created_by,))
        async with self._read() as db:
            rows = await self._all(
                db,
                "SELECT i.currency, COUNT(*), SUM(i.amount_minor), SUM(COALESCE(c.tip_minor, 0))"
                " FROM invoices i LEFT JOIN counter_sales c ON c.invoice_id = i.id"
                " WHERE i.merchant_id = ? AND i.status = 'paid'"
                f" AND i.paid_at >= ? AND i.paid_at < ?{mine}"
                " GROUP BY i.currency ORDER BY i.currency",
                (merchant_id, ms(start), ms(end), *params),
            )
        return [
            DaySales(
                currency=str(r[0]), count=int(r[1]), total_minor=int(r[2]), tips_minor=int(r[3])
            )
            for r in rows
        ]

    async def tip_percents(self, user_id: int) -> tuple[int, int, int]:
        async with self._read() as db:
            row = await self._one(
                db,
                "SELECT percent_1, percent_2, percent_3 FROM tip_settings WHERE user_id = ?",
                (user_id,),
            )
        if row is None:
            return DEFAULT_TIP_PERCENTS
        return int(row[0]), int(row[1]), int(row[2])

    async def set_tip_percents(self, user_id: int, percents: tuple[int, int, int]) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO tip_settings (user_id, percent_1, percent_2, percent_3)"
                f" VALUES ({marks(4)}) ON CONFLICT (user_id) DO UPDATE SET"
                " percent_1 = excluded.percent_1, percent_2 = excluded.percent_2,"
                " percent_3 = excluded.percent_3",
                (user_id, *percents),
            )
