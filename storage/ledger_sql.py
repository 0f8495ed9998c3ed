"""The ledger and the shops' settings in SQL, written once for both dialects.

Ledger rows are only ever inserted (bot/domain/ledger.py): `(invoice_id, seq)` is unique,
so of two writers that computed the same next entry of an invoice, one wins and the other
re-reads and decides again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from types import EllipsisType
from typing import Any

from bot.domain.ledger import LedgerEntry, LedgerKind, NewLedgerEntry
from bot.domain.shop import ShopSettings
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.migrations.columns import Row
from storage.times import from_ms

LEDGER_INSERT_COLUMNS = (
    "invoice_id, seq, merchant_id, cashier_id, kind, gateway, currency, fiat_minor, tip_minor,"
    " crypto_amount, crypto_asset, rate, fee_minor, charged_minor, net_amount, net_asset,"
    " occurred_at, recorded_at, note"
)
LEDGER_COLUMNS = ", ".join(f"l.{c.strip()}" for c in f"id, {LEDGER_INSERT_COLUMNS}".split(","))
SHOP_COLUMNS = "merchant_id, timezone, closing_hour, last_closed_on"


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _undec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def ledger_values(e: NewLedgerEntry) -> tuple[Any, ...]:
    return (
        e.invoice_id, e.seq, e.merchant_id, e.cashier_id, e.kind.value, e.gateway, e.currency,
        e.fiat_minor, e.tip_minor, _dec(e.crypto_amount), e.crypto_asset, _dec(e.rate),
        e.fee_minor, e.charged_minor, _dec(e.net_amount), e.net_asset, ms(e.occurred_at),
        ms(e.recorded_at), e.note,
    )  # fmt: skip


def ledger_from_row(row: Row) -> LedgerEntry:
    occurred = from_ms(row["occurred_at"])
    recorded = from_ms(row["recorded_at"])
    assert occurred is not None and recorded is not None
    return LedgerEntry(
        id=int(row["id"]),
        invoice_id=int(row["invoice_id"]),
        seq=int(row["seq"]),
        merchant_id=int(row["merchant_id"]),
        cashier_id=int(row["cashier_id"]),
        kind=LedgerKind(row["kind"]),
        gateway=row["gateway"],
        currency=row["currency"],
        fiat_minor=int(row["fiat_minor"]),
        tip_minor=int(row["tip_minor"]),
        crypto_amount=_undec(row["crypto_amount"]),
        crypto_asset=row["crypto_asset"],
        rate=_undec(row["rate"]),
        fee_minor=_opt(row["fee_minor"]),
        charged_minor=_opt(row["charged_minor"]),
        net_amount=_undec(row["net_amount"]),
        net_asset=row["net_asset"],
        occurred_at=occurred,
        recorded_at=recorded,
        note=row["note"] or "",
        description=row["description"] or "",
    )


def shop_from_row(merchant_id: int, row: Row | None) -> ShopSettings:
    if row is None:
        return ShopSettings(merchant_id=merchant_id)
    closed = row["last_closed_on"]
    return ShopSettings(
        merchant_id=merchant_id,
        timezone=row["timezone"],
        closing_hour=_opt(row["closing_hour"]),
        last_closed_on=date.fromisoformat(closed) if closed else None,
    )


class LedgerSql(SqlDialect[Conn]):
    """The `ledger_*` and shop settings repository methods (storage/base.py)."""

    async def _insert_ledger(self, db: Conn, entry: NewLedgerEntry) -> bool:
        added = await self._changes(
            db,
            f"INSERT INTO ledger_entries ({LEDGER_INSERT_COLUMNS}) VALUES ({marks(19)})"
            " ON CONFLICT (invoice_id, seq) DO NOTHING",
            ledger_values(entry),
        )
        return added > 0

    async def ledger_append(self, entry: NewLedgerEntry) -> bool:
        async with self._transaction() as db:
            return await self._insert_ledger(db, entry)

    async def _ledger(
        self, where: str, params: Sequence[Any], order: str = "l.occurred_at, l.id"
    ) -> list[LedgerEntry]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {LEDGER_COLUMNS}, i.description FROM ledger_entries l"
                f" JOIN invoices i ON i.id = l.invoice_id WHERE {where} ORDER BY {order}",
                params,
            )
        return [ledger_from_row(row) for row in rows]

    async def ledger_for_invoice(self, invoice_id: int) -> list[LedgerEntry]:
        return await self._ledger("l.invoice_id = ?", (invoice_id,), order="l.seq")

    async def ledger_between(
        self, merchant_id: int | None, start: datetime | None, end: datetime
    ) -> list[LedgerEntry]:
        where, params = ["l.occurred_at < ?"], [ms(end)]
        if start is not None:
            where.append("l.occurred_at >= ?")
            params.append(ms(start))
        if merchant_id is not None:
            where.append("l.merchant_id = ?")
            params.append(merchant_id)
        return await self._ledger(" AND ".join(where), params)

    # -- shops ------------------------------------------------------------------------------
    async def get_shop_settings(self, merchant_id: int) -> ShopSettings:
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT {SHOP_COLUMNS} FROM shop_settings WHERE merchant_id = ?",
                (merchant_id,),
            )
        return shop_from_row(merchant_id, row)

    async def set_shop_settings(
        self,
        merchant_id: int,
        *,
        timezone: str | EllipsisType | None = ...,
        closing_hour: int | EllipsisType | None = ...,
    ) -> ShopSettings:
        given = {"timezone": timezone, "closing_hour": closing_hour}
        fields = {k: v for k, v in given.items() if not isinstance(v, EllipsisType)}
        if not fields:
            return await self.get_shop_settings(merchant_id)
        names = ", ".join(fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        async with self._write() as db:
            row = await self._one(
                db,
                f"INSERT INTO shop_settings (merchant_id, {names})"
                f" VALUES (?, {marks(len(fields))})"
                f" ON CONFLICT (merchant_id) DO UPDATE SET {updates} RETURNING {SHOP_COLUMNS}",
                (merchant_id, *fields.values()),
            )
        return shop_from_row(merchant_id, row)

    async def list_shop_settings(self) -> list[ShopSettings]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {SHOP_COLUMNS} FROM shop_settings ORDER BY merchant_id",
            )
        return [shop_from_row(int(row["merchant_id"]), row) for row in rows]

    async def mark_closed(self, merchant_id: int, day: date) -> bool:
        """Compare-and-set: record that `day`'s close was sent; False when it already was
        (by another instance), so each close goes out once."""
        async with self._write() as db:
            changed = await self._changes(
                db,
                "UPDATE shop_settings SET last_closed_on = ? WHERE merchant_id = ?"
                " AND (last_closed_on IS NULL OR last_closed_on < ?)",
                (day.isoformat(), merchant_id, day.isoformat()),
            )
        return changed > 0


__all__ = ["LedgerSql"]
