"""PostgreSQL backend on asyncpg (a connection pool).

Concurrency (READ COMMITTED):
- Status changes are compare-and-set in one statement,
  `UPDATE invoices ... WHERE id = $n AND status = ANY($m) RETURNING ...`: concurrent
  updates of one row queue on its row lock and re-check the condition against the
  committed row, so exactly one wins; its outbox rows are inserted in the same transaction.
- Claims lock the due rows with `FOR UPDATE SKIP LOCKED` and lease them in the same
  statement, so concurrent claimers (in this process or others) get disjoint rows.
- Migrations run under a transaction-scoped advisory lock (per schema).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from types import EllipsisType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

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

# pg_advisory_xact_lock(MIGRATION_LOCK_KEY, hashtext(current_schema())): one migrator per
# schema at a time, across every process.
MIGRATION_LOCK_KEY = 0x7111B07

# Driver failures that become StorageError (asyncpg's own errors, sockets, timeouts).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
# ... and, when connecting, a DSN asyncpg cannot parse.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, ValueError)

# The due-work statements, as module constants so that tests can EXPLAIN them.
# Parameters: now, limit, owner, lease_until.
CLAIM_INVOICES_SQL = (
    "WITH due AS ("
    f" SELECT id AS due_id, next_poll_at AS due_at FROM invoices WHERE {DUE_INVOICES_WHERE}"
    " AND next_poll_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    " ORDER BY next_poll_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE invoices SET lease_owner = $3, lease_until = $4, next_poll_at = $4"
    f" FROM due WHERE invoices.id = due.due_id RETURNING {INVOICE_COLUMNS}, due.due_at"
)
NEXT_DUE_SQL = (
    f"SELECT next_poll_at FROM invoices WHERE {DUE_INVOICES_WHERE}"
    " ORDER BY next_poll_at, id LIMIT 1"
)
CLAIM_OUTBOX_SQL = (
    "WITH due AS ("
    f" SELECT id AS due_id, next_attempt_at AS due_at FROM outbox WHERE {DUE_OUTBOX_WHERE}"
    " AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    " ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE outbox SET lease_owner = $3, lease_until = $4, next_attempt_at = $4"
    f" FROM due WHERE outbox.id = due.due_id RETURNING {OUTBOX_COLUMNS}, due.due_at"
)


def _ms(value: datetime) -> int:
    result = to_ms(value)
    assert result is not None
    return result


def _secrets(dsn: str) -> list[str]:
    """The password(s) in a DSN, raw and decoded, so that no message ever shows them."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in {"password", "passfile"} and value:
                found.append(value)
    except ValueError:
        pass
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (user, host, port and database are kept)."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, hostinfo = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostinfo}"
        query = urlencode(
            [
                (k, "***" if k.lower() == "password" else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ]
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "postgresql://***"


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class PostgresRepository(Repository):
    """A repository on a PostgreSQL database. `await PostgresRepository.open(dsn)`.

    `server_settings` are sent on every pooled connection (e.g. {"search_path": "t_1"}).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        server_settings: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float | None = 30.0,
    ) -> None:
        self._dsn = dsn
        self._secrets = _secrets(dsn)
        self.safe_dsn = redact_dsn(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._server_settings = dict(server_settings or {})
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: Any = None

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        server_settings: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
    ) -> PostgresRepository:
        repo = cls(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=server_settings,
            connect_timeout=connect_timeout,
        )
        await repo.connect()
        return repo

    def __repr__(self) -> str:
        return f"PostgresRepository({self.safe_dsn!r})"

    # -- connection -----------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StorageError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            detail = f"connection refused ({detail})"
        elif isinstance(exc, TimeoutError):
            detail = f"timed out ({detail})"
        return StorageError(scrub(f"postgres database {self.safe_dsn}: {detail}", self._secrets))

    def _fail(self, exc: BaseException) -> NoReturn:
        """Raise the StorageError for `exc`, chained to it unless it shows a secret."""
        error = self._error(exc)
        if any(secret in f"{exc!s}{exc!r}" for secret in self._secrets):
            raise error from None
        raise error from exc

    async def connect(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self._server_settings or None,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
            )
        except CONNECT_ERRORS as exc:
            self._fail(exc)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except DRIVER_ERRORS as exc:  # a connection still busy, or the server gone
                log.warning("%s: closing the pool: %r", self.safe_dsn, exc)
                pool.terminate()
            except asyncio.CancelledError:
                pool.terminate()
                raise

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        pool = self._pool
        if pool is None:
            raise StorageError(f"postgres database {self.safe_dsn}: not connected (closed)")
        try:
            async with pool.acquire() as con:
                yield con
        except DRIVER_ERRORS as exc:
            self._fail(exc)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        async with self._conn() as con, con.transaction():
            yield con

    # -- lifecycle ------------------------------------------------------------------------
    @staticmethod
    async def _applied(con: Any) -> set[int]:
        if await con.fetchval("SELECT to_regclass('schema_version')") is None:
            return set()
        return {int(r[0]) for r in await con.fetch("SELECT version FROM schema_version")}

    async def check_write(self, owner: str, now: datetime) -> None:
        async with self._conn() as con:
            await con.execute(
                "INSERT INTO health_checks (owner, checked_at) VALUES ($1, $2)"
                " ON CONFLICT (owner) DO UPDATE SET checked_at = EXCLUDED.checked_at",
                owner[:200],
                _ms(now),
            )

    async def migrate(self) -> int:
        async with self._conn() as con:
            applied = await self._applied(con)
            if not pending_migrations(applied):
                return max(applied)
            self.created_new = not applied
            async with con.transaction():
                await con.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
                    MIGRATION_LOCK_KEY,
                )
                await con.execute(render(SCHEMA_VERSION_DDL, "postgres"))
                applied = await self._applied(con)  # another process may have migrated
                self.created_new = self.created_new and not applied
                current = max(applied, default=0)
                for migration in pending_migrations(applied):
                    for statement in migration.render("postgres"):
                        await con.execute(statement)
                    await con.execute(
                        "INSERT INTO schema_version (version, name, applied_at)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        int(time.time() * 1000),
                    )
                    log.info(
                        "%s: applied migration %d (%s)",
                        self.safe_dsn,
                        migration.version,
                        migration.name,
                    )
                    current = max(current, migration.version)
        return current

    async def ping(self) -> bool:
        try:
            async with self._conn() as con:
                return bool(await con.fetchval("SELECT 1") == 1)
        except StorageError:
            return False

    # -- invoices -------------------------------------------------------------------------
    async def create_invoice(self, new: NewInvoice) -> Invoice:
        created = _ms(new.created_at)
        async with self._conn() as con:
            row = await con.fetchrow(
                "INSERT INTO invoices (public_token, merchant_id, amount_minor, currency,"
                " description, gateway, kind, status, created_at, updated_at, expires_at,"
                " next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)"
                f" RETURNING {INVOICE_COLUMNS}",
                new.public_token,
                new.merchant_id,
                new.amount_minor,
                new.currency,
                new.description,
                new.gateway,
                new.kind.value,
                InvoiceStatus.PENDING.value,
                created,
                to_ms(new.expires_at),
                to_ms(new.next_poll_at),
            )
        return invoice_from_row(row)

    async def _update_invoice(self, sql: str, args: Sequence[Any], invoice_id: int) -> Invoice:
        async with self._conn() as con:
            row = await con.fetchrow(f"{sql} RETURNING {INVOICE_COLUMNS}", *args)
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
            "UPDATE invoices SET gateway_session_id = $1, checkout_url = $2, payment = $3,"
            " expires_at = COALESCE($4, expires_at), next_poll_at = $5, updated_at = $6"
            " WHERE id = $7",
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
            "UPDATE invoices SET payment = $1, updated_at = $2 WHERE id = $3",
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
        async with self._conn() as con:
            await con.execute(
                "UPDATE invoices SET raw_status = COALESCE($1, raw_status),"
                " underpaid = COALESCE($2, underpaid), updated_at = $3 WHERE id = $4",
                raw_status,
                underpaid,
                _ms(now),
                invoice_id,
            )

    async def record_not_found(
        self, invoice_id: int, *, count: int, since: datetime | None
    ) -> None:
        async with self._conn() as con:
            await con.execute(
                "UPDATE invoices SET not_found_count = $1, not_found_since = $2 WHERE id = $3",
                count,
                to_ms(since),
                invoice_id,
            )

    async def _invoice_where(self, where: str, *args: Any) -> Invoice | None:
        async with self._conn() as con:
            row = await con.fetchrow(f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE {where}", *args)
        return None if row is None else invoice_from_row(row)

    async def _invoices(self, sql: str, *args: Any) -> list[Invoice]:
        async with self._conn() as con:
            rows = await con.fetch(sql, *args)
        return [invoice_from_row(row) for row in rows]

    async def get_invoice(self, invoice_id: int) -> Invoice | None:
        return await self._invoice_where("id = $1", invoice_id)

    async def get_invoice_by_token(self, public_token: str) -> Invoice | None:
        return await self._invoice_where("public_token = $1", public_token)

    async def get_invoice_by_session(self, gateway: str, session_id: str) -> Invoice | None:
        return await self._invoice_where(
            "gateway = $1 AND gateway_session_id = $2 ORDER BY id DESC LIMIT 1",
            gateway,
            session_id,
        )

    async def list_invoices(
        self, merchant_id: int, *, limit: int, offset: int = 0
    ) -> list[Invoice]:
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = $1"
            " ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            merchant_id,
            max(limit, 0),
            max(offset, 0),
        )

    async def count_invoices(self, merchant_id: int) -> int:
        async with self._conn() as con:
            count = await con.fetchval(
                "SELECT COUNT(*) FROM invoices WHERE merchant_id = $1", merchant_id
            )
        return int(count)

    async def invoices_created_between(
        self, merchant_id: int | None, start: datetime, end: datetime
    ) -> list[Invoice]:
        if merchant_id is None:
            return await self._invoices(
                f"SELECT {INVOICE_COLUMNS} FROM invoices"
                " WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at, id",
                _ms(start),
                _ms(end),
            )
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = $1"
            " AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id",
            merchant_id,
            _ms(start),
            _ms(end),
        )

    async def count_by_status(self) -> dict[InvoiceStatus, int]:
        async with self._conn() as con:
            rows = await con.fetch("SELECT status, COUNT(*) AS n FROM invoices GROUP BY status")
        counts = dict.fromkeys(InvoiceStatus, 0)
        for row in rows:
            counts[InvoiceStatus(row["status"])] = int(row["n"])
        return counts

    async def pending_invoices(self, *, limit: int, after_id: int = 0) -> list[Invoice]:
        return await self._invoices(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE status = $1 AND id > $2"
            " ORDER BY id LIMIT $3",
            InvoiceStatus.PENDING.value,
            after_id,
            max(limit, 0),
        )

    # -- polling --------------------------------------------------------------------------
    async def claim_due_invoices(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[Invoice]:
        if limit <= 0:
            return []
        async with self._conn() as con:
            rows = await con.fetch(CLAIM_INVOICES_SQL, _ms(now), limit, owner, _ms(now + lease))
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [invoice_from_row(row) for row in rows]

    async def reschedule(
        self, invoice_id: int, *, next_poll_at: datetime | None, owner: str, now: datetime
    ) -> None:
        async with self._conn() as con:
            await con.execute(
                "UPDATE invoices SET next_poll_at = $1, poll_count = poll_count + 1,"
                " lease_owner = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_owner END,"
                " lease_until = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_until END"
                " WHERE id = $3",
                to_ms(next_poll_at),
                owner,
                invoice_id,
            )

    async def release_leases(self, *, now: datetime, owner: str | None = None) -> int:
        mine = "" if owner is None else " AND lease_owner = $2"
        args: tuple[object, ...] = (_ms(now),) if owner is None else (_ms(now), owner)
        async with self._tx() as con:
            invoices = await con.execute(
                "UPDATE invoices SET lease_owner = NULL, lease_until = NULL, next_poll_at = $1"
                f" WHERE lease_owner IS NOT NULL{mine}",
                *args,
            )
            outbox = await con.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, next_attempt_at = $1"
                f" WHERE lease_owner IS NOT NULL AND sent_at IS NULL{mine}",
                *args,
            )
        return int(invoices.split()[-1]) + int(outbox.split()[-1])

    async def next_due_at(self) -> datetime | None:
        async with self._conn() as con:
            due = await con.fetchval(NEXT_DUE_SQL)
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
        async with self._tx() as con:
            row = await con.fetchrow(
                "UPDATE invoices SET status = $1, updated_at = $2,"
                " raw_status = COALESCE($3, raw_status), paid_at = COALESCE($4, paid_at),"
                " failure_reason = COALESCE($5, failure_reason), late = $6,"
                " lease_owner = NULL, lease_until = NULL,"
                " next_poll_at = CASE WHEN $7 THEN NULL ELSE next_poll_at END"
                " WHERE id = $8 AND status = ANY($9::text[])"
                f" RETURNING {INVOICE_COLUMNS}",
                change.new_status.value,
                at,
                change.raw_status,
                to_ms(paid_at),
                change.failure_reason,
                change.late,
                change.new_status in FINAL_STATUSES,
                change.invoice_id,
                sources,
            )
            if row is None:
                return None
            await self._insert_outbox(con, change.outbox, at, default_invoice=change.invoice_id)
        return invoice_from_row(row)

    # -- messages -------------------------------------------------------------------------
    async def add_message(self, message: InvoiceMessage) -> InvoiceMessage:
        async with self._conn() as con:
            row = await con.fetchrow(
                "INSERT INTO invoice_messages (invoice_id, role, chat_id, message_id,"
                " inline_message_id, user_id, is_photo, language)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                f" ON CONFLICT DO NOTHING RETURNING {MESSAGE_COLUMNS}",
                message.invoice_id,
                message.role.value,
                message.chat_id,
                message.message_id,
                message.inline_message_id,
                message.user_id,
                message.is_photo,
                message.language,
            )
            if row is None and message.chat_id is not None and message.message_id is not None:
                row = await con.fetchrow(
                    f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages"
                    " WHERE chat_id = $1 AND message_id = $2",
                    message.chat_id,
                    message.message_id,
                )
            if row is None and message.inline_message_id is not None:
                row = await con.fetchrow(
                    f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE inline_message_id = $1",
                    message.inline_message_id,
                )
        if row is None:
            raise StorageError(f"postgres database {self.safe_dsn}: message row vanished")
        return message_from_row(row)

    async def messages_for(self, invoice_id: int) -> list[InvoiceMessage]:
        async with self._conn() as con:
            rows = await con.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE invoice_id = $1 ORDER BY id",
                invoice_id,
            )
        return [message_from_row(row) for row in rows]

    async def get_message(self, message_row_id: int) -> InvoiceMessage | None:
        async with self._conn() as con:
            row = await con.fetchrow(
                f"SELECT {MESSAGE_COLUMNS} FROM invoice_messages WHERE id = $1", message_row_id
            )
        return None if row is None else message_from_row(row)

    async def replace_message(self, message_row_id: int, *, chat_id: int, message_id: int) -> None:
        async with self._conn() as con:
            await con.execute(
                "UPDATE invoice_messages SET chat_id = $1, message_id = $2 WHERE id = $3",
                chat_id,
                message_id,
                message_row_id,
            )

    # -- outbox ---------------------------------------------------------------------------
    @staticmethod
    async def _insert_outbox(
        con: Any, items: Iterable[NewOutbox], at: int, *, default_invoice: int | None = None
    ) -> int:
        added = 0
        for item in items:
            row_id = await con.fetchval(
                f"INSERT INTO outbox ({OUTBOX_INSERT_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)"
                " ON CONFLICT DO NOTHING RETURNING id",
                item.kind.value,
                item.event.value,
                item.invoice_id if item.invoice_id is not None else default_invoice,
                item.chat_id,
                item.message_row_id,
                dump_json(item.payload),
                at,
                item.dedupe_key,
            )
            added += row_id is not None
        return added

    async def enqueue(self, items: Sequence[NewOutbox], now: datetime) -> int:
        if not items:
            return 0
        async with self._tx() as con:
            return await self._insert_outbox(con, items, _ms(now))

    async def claim_outbox(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        if limit <= 0:
            return []
        async with self._conn() as con:
            rows = await con.fetch(CLAIM_OUTBOX_SQL, _ms(now), limit, owner, _ms(now + lease))
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [outbox_from_row(row) for row in rows]

    async def complete_outbox(self, item_id: int, *, now: datetime) -> None:
        async with self._conn() as con:
            await con.execute(
                "UPDATE outbox SET sent_at = $1, lease_owner = NULL, lease_until = NULL"
                " WHERE id = $2 AND sent_at IS NULL",
                _ms(now),
                item_id,
            )

    async def retry_outbox(
        self, item_id: int, *, next_attempt_at: datetime, error: str, now: datetime
    ) -> None:
        async with self._conn() as con:
            await con.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1,"
                " next_attempt_at = $2, lease_owner = NULL, lease_until = NULL"
                " WHERE id = $3 AND sent_at IS NULL",
                clip_error(error),
                _ms(next_attempt_at),
                item_id,
            )

    async def outbox_items(self, invoice_id: int | None = None) -> list[OutboxItem]:
        async with self._conn() as con:
            if invoice_id is None:
                rows = await con.fetch(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id")
            else:
                rows = await con.fetch(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE invoice_id = $1 ORDER BY id",
                    invoice_id,
                )
        return [outbox_from_row(row) for row in rows]

    # -- merchants and preferences ---------------------------------------------------------
    async def add_merchant(
        self, user_id: int, *, added_by: int | None, now: datetime, name: str | None = None
    ) -> bool:
        async with self._conn() as con:
            added = await con.fetchval(
                f"INSERT INTO merchants ({MERCHANT_COLUMNS}) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING RETURNING user_id",
                user_id,
                added_by,
                _ms(now),
                name,
            )
        return added is not None

    async def remove_merchant(self, user_id: int) -> bool:
        async with self._conn() as con:
            removed = await con.fetchval(
                "DELETE FROM merchants WHERE user_id = $1 RETURNING user_id", user_id
            )
        return removed is not None

    async def list_merchants(self) -> list[Merchant]:
        async with self._conn() as con:
            rows = await con.fetch(
                f"SELECT {MERCHANT_COLUMNS} FROM merchants ORDER BY added_at, user_id"
            )
        return [merchant_from_row(row) for row in rows]

    async def is_merchant(self, user_id: int) -> bool:
        async with self._conn() as con:
            found = await con.fetchval("SELECT 1 FROM merchants WHERE user_id = $1", user_id)
        return found is not None

    async def get_prefs(self, user_id: int) -> UserPrefs:
        async with self._conn() as con:
            row = await con.fetchrow(
                f"SELECT {PREFS_COLUMNS} FROM user_prefs WHERE user_id = $1", user_id
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
        marks = ", ".join(f"${i}" for i in range(2, len(fields) + 2))
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        async with self._conn() as con:
            row = await con.fetchrow(
                f"INSERT INTO user_prefs (user_id, {names}) VALUES ($1, {marks})"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates} RETURNING {PREFS_COLUMNS}",
                user_id,
                *fields.values(),
            )
        return prefs_from_row(row)


    # -- the sandbox gateway (SQL kept apart: one block, the same in both backends) ---------
    async def sandbox_insert(self, session: SandboxSession) -> bool:
        marks = ", ".join(f"${i}" for i in range(1, len(SANDBOX_CHANGED_COLUMNS) + 3))
        async with self._conn() as con:
            added = await con.fetchval(
                f"INSERT INTO sandbox_sessions ({SANDBOX_COLUMNS}) VALUES ({marks})"
                " ON CONFLICT DO NOTHING RETURNING id",
                *sandbox_values(session),
                session.version,
            )
        return added is not None

    async def _sandbox_where(self, where: str, value: str) -> SandboxSession | None:
        async with self._conn() as con:
            row = await con.fetchrow(
                f"SELECT {SANDBOX_COLUMNS} FROM sandbox_sessions WHERE {where} = $1", value
            )
        return None if row is None else sandbox_from_row(row)

    async def sandbox_get(self, session_id: str) -> SandboxSession | None:
        return await self._sandbox_where("id", session_id)

    async def sandbox_by_reference(self, reference: str) -> SandboxSession | None:
        return await self._sandbox_where("reference", reference)

    async def sandbox_update(self, current: SandboxSession, changed: SandboxSession) -> bool:
        count = len(SANDBOX_CHANGED_COLUMNS)
        assignments = ", ".join(
            f"{name} = ${i}" for i, name in enumerate(SANDBOX_CHANGED_COLUMNS, start=1)
        )
        async with self._conn() as con:
            updated = await con.fetchval(
                f"UPDATE sandbox_sessions SET {assignments}, version = ${count + 1}"
                f" WHERE id = ${count + 2} AND version = ${count + 3} RETURNING id",
                *sandbox_changed_values(changed),
                current.version + 1,
                current.session_id,
                current.version,
            )
        return updated is not None


__all__ = ["PostgresRepository", "redact_dsn"]
