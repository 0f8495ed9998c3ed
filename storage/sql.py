"""The SQL repository: every query written once, for SQLite and PostgreSQL alike.

Queries use `?` placeholders; what differs between the databases (connections, locking,
claiming, placeholders) is the dialect's part (storage/dialect.py). Status changes are
compare-and-set in SQL (`UPDATE ... WHERE id = ? AND status IN (...)`, checking what was
changed), with their outbox rows in the same transaction. Claims and their owners are in
storage/claims_sql.py, the sandbox's sessions in storage/sandbox_sql.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import EllipsisType
from typing import Any

from bot.domain.models import (
    FINAL_STATUSES,
    Invoice,
    InvoiceMessage,
    InvoiceStatus,
    Merchant,
    NewOutbox,
    OutboxItem,
    Transition,
    UserPrefs,
    allowed_sources,
)
from storage.base import Repository, StorageError
from storage.budget_sql import BudgetSql
from storage.claims_sql import ClaimsSql
from storage.counter_sql import CounterSql
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.inbox_sql import InboxSql
from storage.ledger_sql import LedgerSql
from storage.links_sql import LinksSql
from storage.migrations.columns import (
    INVOICE_COLUMNS,
    MERCHANT_COLUMNS,
    MESSAGE_COLUMNS,
    OUTBOX_COLUMNS,
    OUTBOX_INSERT_COLUMNS,
    PREFS_COLUMNS,
    dump_json,
    invoice_from_row,
    merchant_from_row,
    message_from_row,
    outbox_from_row,
    prefs_from_row,
)
from storage.numbers_sql import NumbersSql
from storage.sandbox_sql import SandboxSql
from storage.staff_sql import StaffSql
from storage.times import to_ms
from storage.users_sql import UsersSql


class SqlRepository(
    BudgetSql[Conn],
    ClaimsSql[Conn],
    CounterSql[Conn],
    InboxSql[Conn],
    LedgerSql[Conn],
    LinksSql[Conn],
    NumbersSql[Conn],
    SandboxSql[Conn],
    StaffSql[Conn],
    UsersSql[Conn],
    SqlDialect[Conn],
    Repository,
):
    """The repository on a SQL database; its subclasses are the dialects."""

    # -- health -------------------------------------------------------------------------
    async def check_write(self, owner: str, now: datetime) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "INSERT INTO health_checks (owner, checked_at) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET checked_at = excluded.checked_at",
                (owner[:200], ms(now)),
            )

    # -- invoices -------------------------------------------------------------------------
    async def _update_invoice(self, sql: str, params: Sequence[Any], invoice_id: int) -> Invoice:
        async with self._write() as db:
            row = await self._one(db, f"{sql} RETURNING {INVOICE_COLUMNS}", params)
        if row is None:
            raise LookupError(f"no invoice {invoice_id}")
        return invoice_from_row(row)

    async def attach_session(
        self,
        invoice_id: int,
        *,
        gateway_session_id: str,
        checkout_url: str | None,
        payment: Mapping[str, Any],
        expires_at: datetime | None,
        next_poll_at: datetime,
        now: datetime,
    ) -> Invoice:
        return await self._update_invoice(
            "UPDATE invoices SET gateway_session_id = ?, checkout_url = ?, payment = ?,"
            " expires_at = COALESCE(?, expires_at), next_poll_at = ?, updated_at = ?"
            " WHERE id = ?",
            (
                gateway_session_id,
                checkout_url,
                dump_json(payment),
                to_ms(expires_at),
                ms(next_poll_at),
                ms(now),
                invoice_id,
            ),
            invoice_id,
        )

    async def update_payment(
        self, invoice_id: int, payment: Mapping[str, Any], now: datetime
    ) -> Invoice:
        return await self._update_invoice(
            "UPDATE invoices SET payment = ?, updated_at = ? WHERE id = ?",
            (dump_json(payment), ms(now), invoice_id),
            invoice_id,
        )

    async def record_observation(
        self,
        invoice_id: int,
        *,
        raw_status: str | None,
        now: datetime,
        underpaid: bool | None = None,
    ) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE invoices SET raw_status = COALESCE(?, raw_status),"
                " underpaid = COALESCE(?, underpaid), updated_at = ? WHERE id = ?",
                (raw_status, underpaid, ms(now), invoice_id),
            )

    async def record_not_found(
        self, invoice_id: int, *, count: int, since: datetime | None
    ) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE invoices SET not_found_count = ?, not_found_since = ? WHERE id = ?",
                (count, to_ms(since), invoice_id),
            )

    async def _invoices(self, sql: str, params: Sequence[Any]) -> list[Invoice]:
        async with self._read() as db:
            rows = await self._all(db, sql, params)
        return [invoice_from_row(row) for row in rows]

    async def _invoice_where(self, where: str, params: Sequence[Any]) -> Invoice | None:
        found = await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE {where}", params
        )
        return found[0] if found else None

    async def get_invoice(self, invoice_id: int) -> Invoice | None:
        return await self._invoice_where("id = ?", (invoice_id,))

    async def get_invoice_by_token(self, public_token: str) -> Invoice | None:
        return await self._invoice_where("public_token = ?", (public_token,))

    async def get_invoice_by_session(self, gateway: str, session_id: str) -> Invoice | None:
        return await self._invoice_where(
            "gateway = ? AND gateway_session_id = ? ORDER BY id DESC LIMIT 1",
            (gateway, session_id),
        )

    async def list_invoices(
        self, merchant_id: int, *, limit: int, offset: int = 0, created_by: int | None = None
    ) -> list[Invoice]:
        mine, params = _creator(created_by)
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = ?{mine}"
            " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (merchant_id, *params, max(limit, 0), max(offset, 0)),
        )

    async def count_invoices(self, merchant_id: int, *, created_by: int | None = None) -> int:
        mine, params = _creator(created_by)
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT COUNT(*) FROM invoices WHERE merchant_id = ?{mine}",
                (merchant_id, *params),
            )
        return int(row[0]) if row is not None else 0

    async def invoices_created_between(
        self, merchant_id: int | None, start: datetime, end: datetime
    ) -> list[Invoice]:
        mine, params = ("", ()) if merchant_id is None else (" AND merchant_id = ?", (merchant_id,))
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE created_at >= ? AND created_at < ?"
            f"{mine} ORDER BY created_at, id",
            (ms(start), ms(end), *params),
        )

    async def count_by_status(self) -> dict[InvoiceStatus, int]:
        async with self._read() as db:
            rows = await self._all(db, "SELECT status, COUNT(*) FROM invoices GROUP BY status")
        counts = dict.fromkeys(InvoiceStatus, 0)
        for row in rows:
            counts[InvoiceStatus(row[0])] = int(row[1])
        return counts

    async def pending_invoices(self, *, limit: int, after_id: int = 0) -> list[Invoice]:
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE status = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (InvoiceStatus.PENDING.value, after_id, max(limit, 0)),
        )

    # -- status ---------------------------------------------------------------------------
    async def transition(self, change: Transition) -> Invoice | None:
        sources = sorted(s.value for s in change.expected & allowed_sources(change.new_status))
        if not sources:
            return None
        paid_at = change.paid_at
        if paid_at is None and change.new_status is InvoiceStatus.PAID:
            paid_at = change.at
        at = ms(change.at)
        async with self._transaction() as db:
            row = await self._one(
                db,
                "UPDATE invoices SET status = ?, updated_at = ?,"
                " raw_status = COALESCE(?, raw_status), paid_at = COALESCE(?, paid_at),"
                " failure_reason = COALESCE(?, failure_reason), late = ?,"
                " lease_owner = NULL, lease_until = NULL,"
                " next_poll_at = CASE WHEN ? THEN NULL ELSE next_poll_at END"
                f" WHERE id = ? AND status IN ({marks(len(sources))})"
                f" RETURNING {INVOICE_COLUMNS}",
                (
                    change.new_status.value,
                    at,
                    change.raw_status,
                    to_ms(paid_at),
                    change.failure_reason,
                    change.late,
                    change.new_status in FINAL_STATUSES,
                    change.invoice_id,
                    *sources,
                ),
            )
            if row is None:
                return None
            await self._insert_outbox(db, change.outbox, at, default_invoice=change.invoice_id)
            if change.ledger is not None:
                await self._insert_ledger(db, change.ledger)
        return invoice_from_row(row)

    # -- messages -------------------------------------------------------------------------
    async def add_message(self, message: InvoiceMessage) -> InvoiceMessage:
        async with self._write() as db:
            row = await self._one(
                db,
                "INSERT INTO invoice_messages (invoice_id, role, chat_id, message_id,"
                f" inline_message_id, user_id, is_photo, language) VALUES ({marks(8)})"
                f" ON CONFLICT DO NOTHING RETURNING {MESSAGE_COLUMNS}",
                (
                    message.invoice_id,
                    message.role.value,
                    message.chat_id,
                    message.message_id,
                    message.inline_message_id,
                    message.user_id,
                    message.is_photo,
                    message.language,
                ),
            )
            if row is None and message.chat_id is not None and message.message_id is not None:
                row = await self._one(
                    db,
                    f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages"
                    " WHERE chat_id = ? AND message_id = ?",
                    (message.chat_id, message.message_id),
                )
            if row is None and message.inline_message_id is not None:
                row = await self._one(
                    db,
                    f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE inline_message_id = ?",
                    (message.inline_message_id,),
                )
        if row is None:
            raise StorageError(f"{self.label}: message row vanished")
        return message_from_row(row)

    async def _messages(self, where: str, params: Sequence[Any]) -> list[InvoiceMessage]:
        async with self._read() as db:
            rows = await self._all(
                db, f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE {where}", params
            )
        return [message_from_row(row) for row in rows]

    async def messages_for(self, invoice_id: int) -> list[InvoiceMessage]:
        return await self._messages("invoice_id = ? ORDER BY id", (invoice_id,))

    async def get_message(self, message_row_id: int) -> InvoiceMessage | None:
        found = await self._messages("id = ?", (message_row_id,))
        return found[0] if found else None

    async def replace_message(self, message_row_id: int, *, chat_id: int, message_id: int) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE invoice_messages SET chat_id = ?, message_id = ? WHERE id = ?",
                (chat_id, message_id, message_row_id),
            )

    # -- outbox ---------------------------------------------------------------------------
    async def _insert_outbox(
        self, db: Conn, items: Iterable[NewOutbox], at: int, *, default_invoice: int | None = None
    ) -> int:
        added = 0
        for item in items:
            added += await self._changes(
                db,
                f"INSERT INTO outbox ({OUTBOX_INSERT_COLUMNS}) VALUES ({marks(9)})"
                " ON CONFLICT DO NOTHING",
                (
                    item.kind.value,
                    item.event.value,
                    item.invoice_id if item.invoice_id is not None else default_invoice,
                    item.chat_id,
                    item.message_row_id,
                    dump_json(item.payload),
                    at,
                    at,
                    item.dedupe_key,
                ),
            )
        return added

    async def enqueue(self, items: Sequence[NewOutbox], now: datetime) -> int:
        if not items:
            return 0
        async with self._transaction() as db:
            return await self._insert_outbox(db, items, ms(now))

    async def outbox_items(self, invoice_id: int | None = None) -> list[OutboxItem]:
        mine, params = ("", ()) if invoice_id is None else (" WHERE invoice_id = ?", (invoice_id,))
        async with self._read() as db:
            rows = await self._all(
                db, f"SELECT {OUTBOX_COLUMNS} FROM outbox{mine} ORDER BY id", params
            )
        return [outbox_from_row(row) for row in rows]

    # -- merchants and preferences ---------------------------------------------------------
    async def add_merchant(
        self, user_id: int, *, added_by: int | None, now: datetime, name: str | None = None
    ) -> bool:
        async with self._transaction() as db:
            added = await self._changes(
                db,
                f"INSERT INTO merchants ({MERCHANT_COLUMNS}) VALUES ({marks(4)})"
                " ON CONFLICT DO NOTHING",
                (user_id, added_by, ms(now), name),
            )
            # A merchant owns a shop: its id is theirs (storage/staff_sql.py).
            await self._changes(
                db,
                "INSERT INTO shop_members (shop_id, user_id, role, added_by, added_at)"
                " VALUES (?, ?, 'owner', ?, ?) ON CONFLICT (user_id) DO NOTHING",
                (user_id, user_id, added_by, ms(now)),
            )
        return added > 0

    async def remove_merchant(self, user_id: int) -> bool:
        async with self._transaction() as db:
            removed = await self._changes(db, "DELETE FROM merchants WHERE user_id = ?", (user_id,))
            # The shop closes: its staff lose their seats, its open invites lapse.
            await self._changes(db, "DELETE FROM shop_members WHERE shop_id = ?", (user_id,))
            await self._changes(
                db,
                "DELETE FROM staff_invites WHERE shop_id = ? AND used_by IS NULL",
                (user_id,),
            )
        return removed > 0

    async def list_merchants(self) -> list[Merchant]:
        async with self._read() as db:
            rows = await self._all(
                db, f"SELECT {MERCHANT_COLUMNS} FROM merchants ORDER BY added_at, user_id"
            )
        return [merchant_from_row(row) for row in rows]

    async def is_merchant(self, user_id: int) -> bool:
        async with self._read() as db:
            row = await self._one(db, "SELECT 1 FROM merchants WHERE user_id = ?", (user_id,))
        return row is not None

    async def get_prefs(self, user_id: int) -> UserPrefs:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {PREFS_COLUMNS} FROM user_prefs WHERE user_id = ?", (user_id,)
            )
        return UserPrefs(user_id=user_id) if row is None else prefs_from_row(row)

    async def set_prefs(
        self,
        user_id: int,
        *,
        language: str | EllipsisType | None = ...,
        gateway: str | EllipsisType | None = ...,
        telegram_language: str | EllipsisType | None = ...,
        name: str | EllipsisType | None = ...,
    ) -> UserPrefs:
        given = {
            "language": language,
            "gateway": gateway,
            "telegram_language": telegram_language,
            "name": name,
        }
        fields = {key: value for key, value in given.items() if not isinstance(value, EllipsisType)}
        if not fields:
            return await self.get_prefs(user_id)
        names = ", ".join(fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        async with self._write() as db:
            row = await self._one(
                db,
                f"INSERT INTO user_prefs (user_id, {names}) VALUES (?, {marks(len(fields))})"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates} RETURNING {PREFS_COLUMNS}",
                (user_id, *fields.values()),
            )
        assert row is not None
        return prefs_from_row(row)


def _creator(created_by: int | None) -> tuple[str, tuple[int, ...]]:
    """The condition that keeps one seller's invoices (none: the whole shop's)."""
    return ("", ()) if created_by is None else (" AND created_by = ?", (created_by,))


__all__ = ["SqlRepository"]
