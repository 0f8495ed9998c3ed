"""What a SQL dialect supplies to the repository (storage/sql.py), and the schema's life.

Queries are written once with `?` placeholders; a dialect (storage/sqlite.py,
storage/postgres.py) supplies only what differs between the databases:

- connections and how their errors become StorageError (`_read`, `_write`, `_transaction`),
- locking: SQLite takes its single write lock up front (`BEGIN IMMEDIATE`), PostgreSQL
  relies on row locks and an advisory lock for migrations (`_migrating`),
- claiming due work (`_claim`): SQLite selects then leases under the write lock,
  PostgreSQL leases with `FOR UPDATE SKIP LOCKED` in one statement,
- running a statement (`_all`, `_changes`): placeholders, rows, counts of changed rows.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from storage.base import StorageError
from storage.migrations import (
    SCHEMA_VERSION_DDL,
    Dialect,
    pending_migrations,
    render,
)
from storage.migrations.columns import INVOICE_COLUMNS, OUTBOX_COLUMNS
from storage.times import to_ms

log = logging.getLogger(__name__)

Conn = TypeVar("Conn")
# A result row: sqlite3.Row or asyncpg.Record, read by column name or position.
Record = Any


@dataclass(frozen=True)
class Queue:
    """A table of leased work: rows fall due at `due_column` and are claimed by lease."""

    table: str
    due_column: str
    columns: str


INVOICE_QUEUE = Queue("invoices", "next_poll_at", INVOICE_COLUMNS)
OUTBOX_QUEUE = Queue("outbox", "next_attempt_at", OUTBOX_COLUMNS)


def ms(value: datetime) -> int:
    """A timestamp as stored: integer milliseconds since the epoch."""
    result = to_ms(value)
    assert result is not None
    return result


def marks(count: int) -> str:
    return ", ".join("?" * count)


class SqlDialect(ABC, Generic[Conn]):
    """A database's connections, locks and claims, and its schema kept up to date."""

    dialect: ClassVar[Dialect]  # the name migrations render for: "sqlite" or "postgres"
    # One row, its first column NULL or absent when there is no schema_version table.
    SCHEMA_VERSION_EXISTS_SQL: ClassVar[str]
    NEXT_DUE_SQL: ClassVar[str]

    # -- the dialect's part ---------------------------------------------------------------
    @property
    @abstractmethod
    def location(self) -> str:
        """Where the database is (a file path, a DSN without its password)."""

    @property
    def label(self) -> str:
        """How messages name the database ("sqlite database x.db"), without secrets."""
        return f"{self.dialect} database {self.location}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for reads (autocommit); errors become StorageError."""

    @abstractmethod
    def _write(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for one write (its statements all or nothing where they need it)."""

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Conn]:
        """A transaction: committed on exit, rolled back on any error."""

    @abstractmethod
    def _migrating(self) -> AbstractAsyncContextManager[Conn]:
        """A transaction that holds the lock keeping other migrators out."""

    @abstractmethod
    async def _all(self, db: Conn, sql: str, params: Sequence[Any] = ()) -> list[Record]:
        """The rows of one statement written with `?` placeholders."""

    @abstractmethod
    async def _changes(self, db: Conn, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement written with `?` placeholders; how many rows it changed."""

    @abstractmethod
    async def _claim(
        self, queue: Queue, *, now: int, until: int, owner: str, limit: int
    ) -> list[Record]:
        """Lease up to `limit` due rows of `queue` until `until`, earliest due first."""

    # -- shared helpers -------------------------------------------------------------------
    async def _one(self, db: Conn, sql: str, params: Sequence[Any] = ()) -> Record | None:
        rows = await self._all(db, sql, params)
        return rows[0] if rows else None

    # -- lifecycle ------------------------------------------------------------------------
    async def _applied(self, db: Conn) -> set[int]:
        exists = await self._one(db, self.SCHEMA_VERSION_EXISTS_SQL)
        if exists is None or exists[0] is None:
            return set()
        return {int(row[0]) for row in await self._all(db, "SELECT version FROM schema_version")}

    async def _holds_nothing(self, db: Conn) -> bool:
        """True when the database has no tables at all (it was created just now)."""
        return True

    async def migrate(self) -> int:
        # Fast path without the migration lock (and possible on a read-only database).
        async with self._read() as db:
            applied = await self._applied(db)
            if not applied:
                self.created_new = await self._holds_nothing(db)
        if not pending_migrations(applied):
            return max(applied)
        async with self._migrating() as db:
            await self._changes(db, render(SCHEMA_VERSION_DDL, self.dialect))
            applied = await self._applied(db)  # another process may have migrated meanwhile
            self.created_new = self.created_new and not applied
            current = max(applied, default=0)
            for migration in pending_migrations(applied):
                for statement in migration.render(self.dialect):
                    await self._changes(db, statement)
                await self._changes(
                    db,
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, int(time.time() * 1000)),
                )
                log.info(
                    "%s: applied migration %d (%s)", self.label, migration.version, migration.name
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


__all__ = ["INVOICE_QUEUE", "OUTBOX_QUEUE", "Queue", "Record", "SqlDialect", "marks", "ms"]
