"""PostgreSQL dialect on asyncpg (a connection pool).

Concurrency (READ COMMITTED):
- Status changes are compare-and-set in one statement (storage/sql.py),
  `UPDATE invoices ... WHERE id = $n AND status IN (...) RETURNING ...`: concurrent
  updates of one row queue on its row lock and re-check the condition against the
  committed row, so exactly one wins; its outbox rows are inserted in the same transaction.
- Claims lock the due rows with `FOR UPDATE SKIP LOCKED` and lease them in the same
  statement, so concurrent claimers (in this process or others) get disjoint rows.
- Migrations run under a transaction-scoped advisory lock (per schema).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from storage.base import StorageError
from storage.dialect import INVOICE_QUEUE, OUTBOX_QUEUE, Queue, Record
from storage.migrations import DUE_INVOICES_WHERE, DUE_OUTBOX_WHERE
from storage.migrations.columns import INVOICE_COLUMNS, OUTBOX_COLUMNS
from storage.sql import SqlRepository

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
# Parameters: now, limit, owner, lease_until. A row claimed by another owner is skipped even
# when its lease lapsed: a dead owner's claims are freed by `take_over` (storage/claims_sql.py).
CLAIM_INVOICES_SQL = (
    "WITH due AS ("
    f" SELECT id AS due_id, next_poll_at AS due_at FROM invoices WHERE {DUE_INVOICES_WHERE}"
    " AND next_poll_at <= $1"
    " AND (lease_owner IS NULL OR (lease_owner = $3 AND lease_until <= $1))"
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
    " AND next_attempt_at <= $1"
    " AND (lease_owner IS NULL OR (lease_owner = $3 AND lease_until <= $1))"
    " ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE outbox SET lease_owner = $3, lease_until = $4, next_attempt_at = $4"
    f" FROM due WHERE outbox.id = due.due_id RETURNING {OUTBOX_COLUMNS}, due.due_at"
)
CLAIM_SQL = {INVOICE_QUEUE: CLAIM_INVOICES_SQL, OUTBOX_QUEUE: CLAIM_OUTBOX_SQL}

_MARK = re.compile(r"\?")


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """The statement with asyncpg's placeholders: the n-th `?` becomes `$n`."""
    counter = iter(range(1, sql.count("?") + 1))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


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


class PostgresRepository(SqlRepository[Any]):
    """A repository on a PostgreSQL database. `await PostgresRepository.open(dsn)`.

    `server_settings` are sent on every pooled connection (e.g. {"search_path": "t_1"}).
    """

    dialect = "postgres"
    SCHEMA_VERSION_EXISTS_SQL = "SELECT to_regclass('schema_version')"
    NEXT_DUE_SQL = NEXT_DUE_SQL

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

    @property
    def location(self) -> str:
        return self.safe_dsn

    # -- connection -----------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StorageError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            detail = f"connection refused ({detail})"
        elif isinstance(exc, TimeoutError):
            detail = f"timed out ({detail})"
        return StorageError(scrub(f"{self.label}: {detail}", self._secrets))

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
            raise StorageError(f"{self.label}: not connected (closed)")
        try:
            async with pool.acquire() as con:
                yield con
        except DRIVER_ERRORS as exc:
            self._fail(exc)

    # Reads and single-statement writes run in autocommit: one round trip, and concurrent
    # compare-and-set updates of a row still queue on its row lock.
    def _read(self) -> AbstractAsyncContextManager[Any]:
        return self._conn()

    def _write(self) -> AbstractAsyncContextManager[Any]:
        return self._conn()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with self._conn() as con, con.transaction():
            yield con

    @asynccontextmanager
    async def _migrating(self) -> AsyncIterator[Any]:
        """A transaction holding this schema's migration lock (across every process)."""
        async with self._transaction() as con:
            await con.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
                MIGRATION_LOCK_KEY,
            )
            yield con

    async def _all(self, db: Any, sql: str, params: Sequence[Any] = ()) -> list[Record]:
        return list(await db.fetch(numbered(sql), *params))

    async def _changes(self, db: Any, sql: str, params: Sequence[Any] = ()) -> int:
        status = str(await db.execute(numbered(sql), *params))  # e.g. "UPDATE 3"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def _claim(
        self, queue: Queue, *, now: int, until: int, owner: str, limit: int
    ) -> list[Record]:
        async with self._conn() as con:
            rows = await con.fetch(CLAIM_SQL[queue], now, limit, owner, until)
        return sorted(rows, key=lambda row: (row["due_at"], row["id"]))


__all__ = ["PostgresRepository", "redact_dsn"]
