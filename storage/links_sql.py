"""Payment links and receipt tokens in SQL, written once for both dialects.

A link's sales are the paid invoices opened from it (`link_invoices`), counted and summed
in the same query that reads the link.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.domain.links import NewLink, PaymentLink
from bot.domain.models import InvoiceStatus
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.times import from_ms

_LINK_SELECT = (
    "SELECT l.token, l.merchant_id, l.amount_minor, l.currency, l.description, l.gateway,"
    " l.created_at, l.disabled_at, COUNT(i.id) AS sales_count,"
    " COALESCE(SUM(i.amount_minor), 0) AS sales_total"
    " FROM payment_links l"
    " LEFT JOIN link_invoices li ON li.link_token = l.token"
    " LEFT JOIN invoices i ON i.id = li.invoice_id AND i.status = ?"
)
_LINK_GROUP = (
    " GROUP BY l.token, l.merchant_id, l.amount_minor, l.currency, l.description, l.gateway,"
    " l.created_at, l.disabled_at"
)


def _link_from_row(row: Any) -> PaymentLink:
    created = from_ms(row["created_at"])
    assert created is not None
    amount = row["amount_minor"]
    return PaymentLink(
        token=str(row["token"]),
        merchant_id=int(row["merchant_id"]),
        amount_minor=None if amount is None else int(amount),
        currency=str(row["currency"]),
        description=str(row["description"]),
        gateway=str(row["gateway"]),
        created_at=created,
        disabled_at=from_ms(row["disabled_at"]),
        sales_count=int(row["sales_count"]),
        sales_total_minor=int(row["sales_total"]),
    )


class LinksSql(SqlDialect[Conn]):
    """The `link_*` and `receipt_*` repository methods (storage/base.py) on a SQL dialect."""

    async def link_create(self, new: NewLink) -> PaymentLink:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO payment_links (token, merchant_id, amount_minor, currency,"
                f" description, gateway, created_at) VALUES ({marks(7)})",
                (
                    new.token,
                    new.merchant_id,
                    new.amount_minor,
                    new.currency,
                    new.description,
                    new.gateway,
                    ms(new.created_at),
                ),
            )
        return PaymentLink(
            token=new.token,
            merchant_id=new.merchant_id,
            amount_minor=new.amount_minor,
            currency=new.currency,
            description=new.description,
            gateway=new.gateway,
            created_at=new.created_at,
        )

    async def link_get(self, token: str) -> PaymentLink | None:
        async with self._read() as db:
            row = await self._one(
                db,
                f"{_LINK_SELECT} WHERE l.token = ?{_LINK_GROUP}",
                (InvoiceStatus.PAID.value, token),
            )
        return None if row is None else _link_from_row(row)

    async def links_of(self, merchant_id: int, limit: int) -> Sequence[PaymentLink]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"{_LINK_SELECT} WHERE l.merchant_id = ?{_LINK_GROUP}"
                " ORDER BY l.created_at DESC, l.token LIMIT ?",
                (InvoiceStatus.PAID.value, merchant_id, limit),
            )
        return [_link_from_row(row) for row in rows]

    async def link_disable(self, token: str, merchant_id: int, now: datetime) -> bool:
        async with self._write() as db:
            changed = await self._changes(
                db,
                "UPDATE payment_links SET disabled_at = ?"
                " WHERE token = ? AND merchant_id = ? AND disabled_at IS NULL",
                (ms(now), token, merchant_id),
            )
        return changed > 0

    async def link_add_invoice(self, token: str, invoice_id: int) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO link_invoices (invoice_id, link_token) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                (invoice_id, token),
            )

    async def receipt_token(self, invoice_id: int, token: str, now: datetime) -> str:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO receipts (token, invoice_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (token, invoice_id, ms(now)),
            )
            row = await self._one(
                db, "SELECT token FROM receipts WHERE invoice_id = ?", (invoice_id,)
            )
        assert row is not None, "inserted or already there"
        return str(row["token"])

    async def receipt_invoice(self, token: str) -> int | None:
        async with self._read() as db:
            row = await self._one(db, "SELECT invoice_id FROM receipts WHERE token = ?", (token,))
        return None if row is None else int(row["invoice_id"])
