"""Invoice creation with the merchant's own invoice number, written once for both dialects.

A merchant's first invoice is #1 (issue 16): the number comes from the merchant's row in
`invoice_numbers`, bumped by an upsert in the same transaction that inserts the invoice.
The upsert locks that row (PostgreSQL) or the database (SQLite's BEGIN IMMEDIATE), so two
instances creating invoices for one merchant at once get consecutive numbers, never one
twice; the unique index on (merchant_id, number) would refuse a duplicate anyway. A failed
creation gives its number back: on PostgreSQL both statements are one transaction; on
SQLite they run under a savepoint inside the group commit (storage/sqlite.py), so creating
invoices keeps sharing commits with other writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.domain.models import Invoice, InvoiceStatus, NewInvoice
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.migrations.columns import INVOICE_COLUMNS, invoice_from_row
from storage.times import to_ms

_NEXT_NUMBER = (
    "INSERT INTO invoice_numbers (merchant_id, last_number) VALUES (?, 1)"
    " ON CONFLICT (merchant_id) DO UPDATE SET last_number = invoice_numbers.last_number + 1"
    " RETURNING last_number"
)


class NumbersSql(SqlDialect[Conn]):
    """`create_invoice` (storage/base.py): the invoice and its per-merchant number at once."""

    @asynccontextmanager
    async def _all_or_nothing(self) -> AsyncIterator[Conn]:
        """Several statements that stand or fall together."""
        if self.dialect != "sqlite":
            async with self._transaction() as db:
                yield db
            return
        async with self._write() as db:
            await self._changes(db, "SAVEPOINT new_invoice")
            try:
                yield db
            except BaseException:
                await self._changes(db, "ROLLBACK TO new_invoice")
                await self._changes(db, "RELEASE new_invoice")
                raise
            await self._changes(db, "RELEASE new_invoice")

    async def create_invoice(self, new: NewInvoice) -> Invoice:
        async with self._all_or_nothing() as db:
            return await self._insert_numbered_invoice(db, new)

    async def _insert_numbered_invoice(self, db: Conn, new: NewInvoice) -> Invoice:
        """Insert the invoice with the merchant's next number, on `db` (whose transaction or
        savepoint makes the two statements stand or fall together)."""
        created = ms(new.created_at)
        counter = await self._one(db, _NEXT_NUMBER, (new.merchant_id,))
        assert counter is not None
        row = await self._one(
            db,
            "INSERT INTO invoices (public_token, merchant_id, amount_minor, currency,"
            " description, gateway, kind, status, created_at, updated_at, expires_at,"
            f" next_poll_at, number, created_by) VALUES ({marks(14)}) RETURNING {INVOICE_COLUMNS}",
            (
                new.public_token,
                new.merchant_id,
                new.amount_minor,
                new.currency,
                new.description,
                new.gateway,
                new.kind.value,
                InvoiceStatus.PENDING.value,
                created,
                created,
                to_ms(new.expires_at),
                to_ms(new.next_poll_at),
                int(counter[0]),
                new.merchant_id if new.created_by is None else new.created_by,
            ),
        )
        assert row is not None
        return invoice_from_row(row)
