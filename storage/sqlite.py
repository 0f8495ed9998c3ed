"""SQLite backend on aiosqlite: one connection per repository, WAL, FULL sync.

Concurrency:
- Inside one process, all coroutines share one connection; an asyncio.Lock serialises every
  use of it, so no coroutine ever runs a statement inside another coroutine's transaction
  (nor reads its uncommitted writes).
- Across processes (several repositories on one file), every write that reads before it
  writes runs under `BEGIN IMMEDIATE`, which takes SQLite's single write lock up front
  (waiting up to busy_timeout), and status changes are compare-and-set in SQL
  (`UPDATE ... WHERE id = ? AND status IN (...)`, checking what was changed).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from types import EllipsisType
from typing import Any
from urllib.parse import quote

import aiosqlite

from storage.base import Repository, StorageError
from storage.migrations import (
    DUE_INVOICES_WHERE,
    DUE_OUTBOX_WHERE,
    SCHEMA_VERSION_DDL,
    pending_migrations,
    render,
)
from storage.migrations.columns import (
    INVOICE_COLUMNS,
    MERCHANT_COLUMNS,
    MESSAGE_COLUMNS,
    OUTBOX_COLUMNS,
    OUTBOX_INSERT_COLUMNS,
    PREFS_COLUMNS,
    SANDBOX_CHANGED_COLUMNS,
    SANDBOX_COLUMNS,
    clip_error,
    dump_json,
    invoice_from_row,
    merchant_from_row,
    message_from_row,
    outbox_from_row,
    prefs_from_row,
    sandbox_changed_values,
    sandbox_from_row,
    sandbox_values,
)
from storage.models import (
    FINAL_STATUSES,
    Invoice,
    InvoiceMessage,
    InvoiceStatus,
    Merchant,
    NewInvoice,
    NewOutbox,
    OutboxItem,
    SandboxSession,
    Transition,
    UserPrefs,
    allowed_sources,
    from_ms,
    to_ms,
)

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000

# The due-work queries, as module constants so that tests can EXPLAIN them.
# Parameters: now, now, limit.
# INDEXED BY: without statistics SQLite prefers the status index and sorts every pending
# row (2 ms a tick at 10,000 pending); the partial due index answers in microseconds.
CLAIM_INVOICES_SELECT = (
    f"SELECT id FROM invoices INDEXED BY ix_invoices_due WHERE {DUE_INVOICES_WHERE}"
    " AND next_poll_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
    " ORDER BY next_poll_at, id LIMIT ?"
)
NEXT_DUE_SQL = (
    f"SELECT next_poll_at FROM invoices INDEXED BY ix_invoices_due WHERE {DUE_INVOICES_WHERE}"
    " ORDER BY next_poll_at, id LIMIT 1"
)
CLAIM_OUTBOX_SELECT = (
    f"SELECT id FROM outbox INDEXED BY ix_outbox_due WHERE {DUE_OUTBOX_WHERE}"
    " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
    " ORDER BY next_attempt_at, id LIMIT ?"
)


def _ms(value: datetime) -> int:
    result = to_ms(value)
    assert result is not None
    return result


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteRepository(Repository):
    """A repository on one SQLite file. `await SqliteRepository.open(path)` or `connect()`.

    `uri_query` is passed to SQLite as URI parameters (e.g. "mode=ro" opens the file
    read-only: every write then fails with StorageError).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        uri_query: str = "",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = Path(path)
        self.uri_query = uri_query
        self.busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        uri_query: str = "",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> SqliteRepository:
        repo = cls(path, uri_query=uri_query, busy_timeout_ms=busy_timeout_ms)
        await repo.connect()
        return repo

    def __repr__(self) -> str:
        return f"SqliteRepository({str(self.path)!r})"

    # -- connection -----------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StorageError:
        return StorageError(f"sqlite database {self.path}: {exc}")

    async def connect(self) -> None:
        if self._db is not None:
            return
        if self.uri_query:
            database = f"file:{quote(str(self.path))}?{self.uri_query}"
        else:
            database = str(self.path)
        try:
            db = await aiosqlite.connect(
                database,
                uri=bool(self.uri_query),
                isolation_level=None,  # autocommit: transactions are explicit BEGIN/COMMIT
                timeout=self.busy_timeout_ms / 1000,
            )
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc
        try:
            db.row_factory = sqlite3.Row
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            async with db.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
            mode = str(row[0]).lower() if row else "?"
            if mode != "wal":
                log.warning("%s: journal_mode is %s, not wal", self.path, mode)
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            with suppress(Exception):
                await db.close()
            raise self._error(exc) from exc
        self._db = db
        self._identity = self._file_identity()

    def _file_identity(self) -> tuple[int, int] | None:
        if str(self.path) == ":memory:":
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def file_problem(self) -> str | None:
        if self._identity is None:
            return None
        now = self._file_identity()
        if now is None:
            return "removed"
        return "replaced" if now != self._identity else None

    async def check_write(self, owner: str, now: datetime) -> None:
        async with self._write() as db:
            await db.execute(
                "INSERT INTO health_checks (owner, checked_at) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET checked_at = excluded.checked_at",
                (owner[:200], _ms(now)),
            )

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                with suppress(sqlite3.Error):
                    await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError(f"sqlite database {self.path}: not connected (closed)")
        return self._db

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for single-statement work (autocommit), nobody else inside."""
        async with self._lock:
            db = self._conn()
            try:
                yield db
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A `BEGIN IMMEDIATE` transaction: committed on exit, rolled back on any error."""
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                # Also when cancelled: a cancelled `await` does not stop the statement already
                # queued on the connection's thread (BEGIN may still run). The rollback is
                # queued right behind it, before anything the next holder of the lock sends,
                # and it is a no-op when no transaction is open.
                with suppress(Exception):
                    await asyncio.shield(db.rollback())
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from exc
                raise

    @staticmethod
    async def _all(
        db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
    ) -> list[sqlite3.Row]:
        return list(await db.execute_fetchall(sql, params))

    @staticmethod
    async def _one(
        db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
    ) -> sqlite3.Row | None:
        rows = list(await db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    @staticmethod
    async def _changes(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        async with db.execute(sql, params) as cursor:
            return int(cursor.rowcount)

    # -- lifecycle ------------------------------------------------------------------------
    @staticmethod
    async def _applied(db: aiosqlite.Connection) -> set[int]:
        exists = await SqliteRepository._one(
            db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
        if exists is None:
            return set()
        rows = await SqliteRepository._all(db, "SELECT version FROM schema_version")
        return {int(row[0]) for row in rows}

    async def migrate(self) -> int:
        # Fast path without the write lock (and possible on a read-only database).
        async with self._read() as db:
            applied = await self._applied(db)
            if not applied:
                tables = await self._one(db, "SELECT COUNT(*) FROM sqlite_master")
                self.created_new = tables is None or int(tables[0]) == 0
        if not pending_migrations(applied):
            return max(applied)
        async with self._write() as db:
            await db.execute(render(SCHEMA_VERSION_DDL, "sqlite"))
            applied = await self._applied(db)  # another process may have migrated meanwhile
            current = max(applied, default=0)
            for migration in pending_migrations(applied):
                for statement in migration.render("sqlite"):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
                log.info(
                    "%s: applied migration %d (%s)", self.path, migration.version, migration.name
                )
                current = max(current, migration.version)
        return current

    async def ping(self) -> bool:
        try:
            async with self._read() as db:
                row = await self._one(db, "SELECT 1")
        except StorageError:
            return False
        return row is not None

    # -- invoices -------------------------------------------------------------------------
    async def create_invoice(self, new: NewInvoice) -> Invoice:
        created = _ms(new.created_at)
        async with self._write() as db:
            row = await self._one(
                db,
                "INSERT INTO invoices (public_token, merchant_id, amount_minor, currency,"
                " description, gateway, kind, status, created_at, updated_at, expires_at,"
                f" next_poll_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {INVOICE_COLUMNS}",
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
                ),
            )
        assert row is not None
        return invoice_from_row(row)

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
                _ms(next_poll_at),
                _ms(now),
                invoice_id,
            ),
            invoice_id,
        )

    async def update_payment(
        self, invoice_id: int, payment: Mapping[str, Any], now: datetime
    ) -> Invoice:
        return await self._update_invoice(
            "UPDATE invoices SET payment = ?, updated_at = ? WHERE id = ?",
            (dump_json(payment), _ms(now), invoice_id),
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
            await db.execute(
                "UPDATE invoices SET raw_status = COALESCE(?, raw_status),"
                " underpaid = COALESCE(?, underpaid), updated_at = ? WHERE id = ?",
                (raw_status, underpaid, _ms(now), invoice_id),
            )

    async def record_not_found(
        self, invoice_id: int, *, count: int, since: datetime | None
    ) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE invoices SET not_found_count = ?, not_found_since = ? WHERE id = ?",
                (count, to_ms(since), invoice_id),
            )

    async def _invoice_where(self, where: str, params: Sequence[Any]) -> Invoice | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE {where}", params
            )
        return None if row is None else invoice_from_row(row)

    async def _invoices(self, sql: str, params: Sequence[Any]) -> list[Invoice]:
        async with self._read() as db:
            rows = await self._all(db, sql, params)
        return [invoice_from_row(row) for row in rows]

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
        self, merchant_id: int, *, limit: int, offset: int = 0
    ) -> list[Invoice]:
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (merchant_id, max(limit, 0), max(offset, 0)),
        )

    async def count_invoices(self, merchant_id: int) -> int:
        async with self._read() as db:
            row = await self._one(
                db, "SELECT COUNT(*) FROM invoices WHERE merchant_id = ?", (merchant_id,)
            )
        return int(row[0]) if row is not None else 0

    async def invoices_created_between(
        self, merchant_id: int | None, start: datetime, end: datetime
    ) -> list[Invoice]:
        if merchant_id is None:
            return await self._invoices(
                f"SELECT {INVOICE_COLUMNS} FROM invoices"
                " WHERE created_at >= ? AND created_at < ? ORDER BY created_at, id",
                (_ms(start), _ms(end)),
            )
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = ?"
            " AND created_at >= ? AND created_at < ? ORDER BY created_at, id",
            (merchant_id, _ms(start), _ms(end)),
        )

    async def count_by_status(self) -> dict[InvoiceStatus, int]:
        async with self._read() as db:
            rows = await self._all(db, "SELECT status, COUNT(*) FROM invoices GROUP BY status")
        counts = dict.fromkeys(InvoiceStatus, 0)
        for status, count in rows:
            counts[InvoiceStatus(status)] = int(count)
        return counts

    async def pending_invoices(self, *, limit: int, after_id: int = 0) -> list[Invoice]:
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE status = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (InvoiceStatus.PENDING.value, after_id, max(limit, 0)),
        )

    # -- polling --------------------------------------------------------------------------
    async def claim_due_invoices(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[Invoice]:
        if limit <= 0:
            return []
        now_ms = _ms(now)
        params = (now_ms, now_ms, limit)
        # Nothing due (the common tick): one index range scan, no write lock taken.
        async with self._read() as db:
            if not await self._all(db, CLAIM_INVOICES_SELECT, params):
                return []
        until = _ms(now + lease)
        async with self._write() as db:
            # Under the write lock the selection is authoritative: no other process can
            # claim or change these rows before this transaction commits.
            ids = [int(row[0]) for row in await self._all(db, CLAIM_INVOICES_SELECT, params)]
            if not ids:
                return []
            rows = await self._all(
                db,
                "UPDATE invoices SET lease_owner = ?, lease_until = ?, next_poll_at = ?"
                f" WHERE id IN ({_marks(len(ids))}) RETURNING {INVOICE_COLUMNS}",
                (owner, until, until, *ids),
            )
        by_id = {int(row["id"]): invoice_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def reschedule(
        self, invoice_id: int, *, next_poll_at: datetime | None, owner: str, now: datetime
    ) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE invoices SET next_poll_at = ?, poll_count = poll_count + 1,"
                " lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END,"
                " lease_until = CASE WHEN lease_owner = ? THEN NULL ELSE lease_until END"
                " WHERE id = ?",
                (to_ms(next_poll_at), owner, owner, invoice_id),
            )

    async def release_leases(self, *, now: datetime, owner: str | None = None) -> int:
        mine = "" if owner is None else " AND lease_owner = ?"
        extra: tuple[str, ...] = () if owner is None else (owner,)
        async with self._write() as db:
            invoices = await db.execute(
                "UPDATE invoices SET lease_owner = NULL, lease_until = NULL, next_poll_at = ?"
                f" WHERE lease_owner IS NOT NULL{mine}",
                (_ms(now), *extra),
            )
            outbox = await db.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, next_attempt_at = ?"
                f" WHERE lease_owner IS NOT NULL AND sent_at IS NULL{mine}",
                (_ms(now), *extra),
            )
            return int(invoices.rowcount) + int(outbox.rowcount)

    async def next_due_at(self) -> datetime | None:
        async with self._read() as db:
            row = await self._one(db, NEXT_DUE_SQL)
        if row is None:
            return None
        due = row[0]
        return from_ms(due)

    # -- status ---------------------------------------------------------------------------
    async def transition(self, change: Transition) -> Invoice | None:
        sources = sorted(s.value for s in change.expected & allowed_sources(change.new_status))
        if not sources:
            return None
        paid_at = change.paid_at
        if paid_at is None and change.new_status is InvoiceStatus.PAID:
            paid_at = change.at
        at = _ms(change.at)
        async with self._write() as db:
            row = await self._one(
                db,
                "UPDATE invoices SET status = ?, updated_at = ?,"
                " raw_status = COALESCE(?, raw_status), paid_at = COALESCE(?, paid_at),"
                " failure_reason = COALESCE(?, failure_reason), late = ?,"
                " lease_owner = NULL, lease_until = NULL,"
                " next_poll_at = CASE WHEN ? THEN NULL ELSE next_poll_at END"
                f" WHERE id = ? AND status IN ({_marks(len(sources))})"
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
        return invoice_from_row(row)

    # -- messages -------------------------------------------------------------------------
    async def add_message(self, message: InvoiceMessage) -> InvoiceMessage:
        async with self._write() as db:
            row = await self._one(
                db,
                "INSERT INTO invoice_messages (invoice_id, role, chat_id, message_id,"
                " inline_message_id, user_id, is_photo, language)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
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
            raise StorageError(f"sqlite database {self.path}: message row vanished")
        return message_from_row(row)

    async def messages_for(self, invoice_id: int) -> list[InvoiceMessage]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE invoice_id = ? ORDER BY id",
                (invoice_id,),
            )
        return [message_from_row(row) for row in rows]

    async def get_message(self, message_row_id: int) -> InvoiceMessage | None:
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE id = ?",
                (message_row_id,),
            )
        return None if row is None else message_from_row(row)

    async def replace_message(self, message_row_id: int, *, chat_id: int, message_id: int) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE invoice_messages SET chat_id = ?, message_id = ? WHERE id = ?",
                (chat_id, message_id, message_row_id),
            )

    # -- outbox ---------------------------------------------------------------------------
    async def _insert_outbox(
        self,
        db: aiosqlite.Connection,
        items: Iterable[NewOutbox],
        at: int,
        *,
        default_invoice: int | None = None,
    ) -> int:
        added = 0
        for item in items:
            added += await self._changes(
                db,
                f"INSERT INTO outbox ({OUTBOX_INSERT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        async with self._write() as db:
            return await self._insert_outbox(db, items, _ms(now))

    async def claim_outbox(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        if limit <= 0:
            return []
        now_ms = _ms(now)
        params = (now_ms, now_ms, limit)
        async with self._read() as db:
            if not await self._all(db, CLAIM_OUTBOX_SELECT, params):
                return []
        until = _ms(now + lease)
        async with self._write() as db:
            ids = [int(row[0]) for row in await self._all(db, CLAIM_OUTBOX_SELECT, params)]
            if not ids:
                return []
            rows = await self._all(
                db,
                "UPDATE outbox SET lease_owner = ?, lease_until = ?, next_attempt_at = ?"
                f" WHERE id IN ({_marks(len(ids))}) RETURNING {OUTBOX_COLUMNS}",
                (owner, until, until, *ids),
            )
        by_id = {int(row["id"]): outbox_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def complete_outbox(self, item_id: int, *, now: datetime) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE outbox SET sent_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND sent_at IS NULL",
                (_ms(now), item_id),
            )

    async def retry_outbox(
        self, item_id: int, *, next_attempt_at: datetime, error: str, now: datetime
    ) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND sent_at IS NULL",
                (clip_error(error), _ms(next_attempt_at), item_id),
            )

    async def outbox_items(self, invoice_id: int | None = None) -> list[OutboxItem]:
        async with self._read() as db:
            if invoice_id is None:
                rows = await self._all(db, f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id")
            else:
                rows = await self._all(
                    db,
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE invoice_id = ? ORDER BY id",
                    (invoice_id,),
                )
        return [outbox_from_row(row) for row in rows]

    # -- merchants and preferences ---------------------------------------------------------
    async def add_merchant(
        self, user_id: int, *, added_by: int | None, now: datetime, name: str | None = None
    ) -> bool:
        async with self._write() as db:
            added = await self._changes(
                db,
                f"INSERT INTO merchants ({MERCHANT_COLUMNS}) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (user_id, added_by, _ms(now), name),
            )
        return added > 0

    async def remove_merchant(self, user_id: int) -> bool:
        async with self._write() as db:
            removed = await self._changes(db, "DELETE FROM merchants WHERE user_id = ?", (user_id,))
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
        fields: dict[str, str | None] = {}
        if not isinstance(language, EllipsisType):
            fields["language"] = language
        if not isinstance(gateway, EllipsisType):
            fields["gateway"] = gateway
        if not isinstance(telegram_language, EllipsisType):
            fields["telegram_language"] = telegram_language
        if not isinstance(name, EllipsisType):
            fields["name"] = name
        if not fields:
            return await self.get_prefs(user_id)
        names = ", ".join(fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        async with self._write() as db:
            row = await self._one(
                db,
                f"INSERT INTO user_prefs (user_id, {names}) VALUES (?, {_marks(len(fields))})"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates} RETURNING {PREFS_COLUMNS}",
                (user_id, *fields.values()),
            )
        assert row is not None
        return prefs_from_row(row)

    # -- the sandbox gateway (SQL kept apart: one block, the same in both backends) ---------
    async def sandbox_insert(self, session: SandboxSession) -> bool:
        async with self._write() as db:
            added = await self._changes(
                db,
                f"INSERT INTO sandbox_sessions ({SANDBOX_COLUMNS})"
                f" VALUES ({_marks(len(SANDBOX_CHANGED_COLUMNS) + 2)}) ON CONFLICT DO NOTHING",
                (*sandbox_values(session), session.version),
            )
        return added > 0

    async def _sandbox_where(self, where: str, value: str) -> SandboxSession | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {SANDBOX_COLUMNS} FROM sandbox_sessions WHERE {where} = ?", (value,)
            )
        return None if row is None else sandbox_from_row(row)

    async def sandbox_get(self, session_id: str) -> SandboxSession | None:
        return await self._sandbox_where("id", session_id)

    async def sandbox_by_reference(self, reference: str) -> SandboxSession | None:
        return await self._sandbox_where("reference", reference)

    async def sandbox_update(self, current: SandboxSession, changed: SandboxSession) -> bool:
        assignments = ", ".join(f"{name} = ?" for name in SANDBOX_CHANGED_COLUMNS)
        async with self._write() as db:
            updated = await self._changes(
                db,
                f"UPDATE sandbox_sessions SET {assignments}, version = ?"
                " WHERE id = ? AND version = ?",
                (
                    *sandbox_changed_values(changed),
                    current.version + 1,
                    current.session_id,
                    current.version,
                ),
            )
        return updated > 0
