"""SQLite dialect on aiosqlite: one connection per repository, WAL, FULL sync.

Concurrency:
- Inside one process, all coroutines share one connection; an asyncio.Lock serialises every
  use of it, so no coroutine ever runs a statement inside another coroutine's transaction
  (nor reads its uncommitted writes).
- Across processes (several repositories on one file), every write runs under
  `BEGIN IMMEDIATE`, which takes SQLite's single write lock up front (waiting up to
  busy_timeout), and status changes are compare-and-set in SQL (storage/sql.py).
- Group commit: one-statement writes (`_write`) that arrive while others wait share one
  transaction and its fsync, in arrival order. A failing statement is undone alone (SQLite
  undoes a failed statement, not its transaction), and no caller returns before the commit
  that makes its write durable; when that commit fails, every writer in it gets the error.
  Several-statement transactions (`_transaction`) keep a transaction of their own.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from storage.base import StorageError
from storage.dialect import INVOICE_QUEUE, OUTBOX_QUEUE, Queue, Record, marks
from storage.migrations import DUE_INVOICES_WHERE, DUE_OUTBOX_WHERE
from storage.sql import SqlRepository

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000
# After a write waited out the whole busy timeout (another process holds the write lock),
# the writes of the next seconds wait this long only: a command that needs several writes
# is then refused in about one busy timeout, not one per write. The first write that gets
# the lock ends it.
LOCKED_BUSY_TIMEOUT_MS = 250
LOCKED_FAST_FAIL_SECONDS = 15.0
# The most writes one commit takes: the rest wait for the next, so a stream of writes never
# keeps readers (who wait for the connection) out for long.
MAX_BATCH = 64

# The due-work queries, as module constants so that tests can EXPLAIN them.
# Parameters: now, owner, now, limit. A row claimed by another owner is skipped even when its
# lease lapsed: a dead owner's claims are freed by `take_over` (storage/claims_sql.py).
# INDEXED BY: without statistics SQLite prefers the status index and sorts every pending
# row (2 ms a tick at 10,000 pending); the partial due index answers in microseconds.
CLAIM_INVOICES_SELECT = (
    f"SELECT id FROM invoices INDEXED BY ix_invoices_due WHERE {DUE_INVOICES_WHERE}"
    " AND next_poll_at <= ?"
    " AND (lease_owner IS NULL OR (lease_owner = ? AND lease_until <= ?))"
    " ORDER BY next_poll_at, id LIMIT ?"
)
NEXT_DUE_SQL = (
    f"SELECT next_poll_at FROM invoices INDEXED BY ix_invoices_due WHERE {DUE_INVOICES_WHERE}"
    " ORDER BY next_poll_at, id LIMIT 1"
)
CLAIM_OUTBOX_SELECT = (
    f"SELECT id FROM outbox INDEXED BY ix_outbox_due WHERE {DUE_OUTBOX_WHERE}"
    " AND next_attempt_at <= ?"
    " AND (lease_owner IS NULL OR (lease_owner = ? AND lease_until <= ?))"
    " ORDER BY next_attempt_at, id LIMIT ?"
)
CLAIM_SELECT = {INVOICE_QUEUE: CLAIM_INVOICES_SELECT, OUTBOX_QUEUE: CLAIM_OUTBOX_SELECT}


class _Batch:
    """Writes sharing one transaction: those still waiting for their turn, and the commit."""

    def __init__(self) -> None:
        self.writers: list[asyncio.Future[asyncio.Future[None]]] = []
        self.waiting: deque[asyncio.Future[asyncio.Future[None]]] = deque()
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved here, so that a failure every writer left behind is not logged as lost.
        self.committed.add_done_callback(lambda f: f.cancelled() or f.exception())

    def fail(self, error: StorageError) -> None:
        """The commit failed: every writer, waiting for its turn or for the commit, hears it."""
        for turn in self.waiting:
            if not turn.done():
                turn.set_exception(StorageError(*error.args))
                turn.exception()
        if not self.committed.done():
            self.committed.set_exception(error)


class SqliteRepository(SqlRepository[aiosqlite.Connection]):
    """A repository on one SQLite file. `await SqliteRepository.open(path)` or `connect()`.

    `uri_query` is passed to SQLite as URI parameters (e.g. "mode=ro" opens the file
    read-only: every write then fails with StorageError).
    """

    dialect = "sqlite"
    SCHEMA_VERSION_EXISTS_SQL = (
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )
    NEXT_DUE_SQL = NEXT_DUE_SQL
    NOW_US_SQL = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    GREATEST = "max"

    async def _holds_nothing(self, db: aiosqlite.Connection) -> bool:
        row = await self._one(db, "SELECT COUNT(*) FROM sqlite_master")
        return row is None or int(row[0]) == 0

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
        self._batch: _Batch | None = None  # the group commit still taking writes
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._committers: set[asyncio.Task[None]] = set()
        self._locked_at: float | None = None  # monotonic time a write last found it locked
        self._busy_ms = busy_timeout_ms  # the busy timeout the connection has now

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

    @property
    def location(self) -> str:
        return str(self.path)

    # -- connection -----------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StorageError:
        return StorageError(f"{self.label}: {exc}")

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

    async def close(self) -> None:
        if self._committers:  # writes under way finish (or fail) first
            await asyncio.gather(*self._committers, return_exceptions=True)
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                with suppress(sqlite3.Error):
                    await db.close()

    async def _begin(self, db: aiosqlite.Connection) -> None:
        """BEGIN IMMEDIATE: take the write lock, waiting the busy timeout (shortened while
        another process was lately seen holding it)."""
        locked = self._locked_at is not None and (
            time.monotonic() - self._locked_at < LOCKED_FAST_FAIL_SECONDS
        )
        wanted = min(LOCKED_BUSY_TIMEOUT_MS, self.busy_timeout_ms) if locked else self.busy_timeout_ms
        if wanted != self._busy_ms:
            await db.execute(f"PRAGMA busy_timeout = {int(wanted)}")
            self._busy_ms = wanted
        try:
            await db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                self._locked_at = time.monotonic()
            raise
        self._locked_at = None

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError(f"{self.label}: not connected (closed)")
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
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A `BEGIN IMMEDIATE` transaction: committed on exit, rolled back on any error."""
        async with self._lock:
            db = self._conn()
            try:
                await self._begin(db)
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

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write statement (and reads), in the group commit that is taking writes."""
        batch = self._batch
        if batch is None or len(batch.writers) >= MAX_BATCH:
            batch = self._batch = _Batch()
            committer = asyncio.create_task(self._commit(batch))
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        turn: asyncio.Future[asyncio.Future[None]] = asyncio.get_running_loop().create_future()
        batch.writers.append(turn)
        batch.waiting.append(turn)
        try:
            done = await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                turn.result().set_result(None)  # handed the connection, but gone: hand it back
            turn.cancel()
            raise
        try:
            yield self._conn()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            if not done.done():
                done.set_result(None)
        try:
            await asyncio.shield(batch.committed)
        except StorageError as exc:
            raise StorageError(*exc.args) from exc

    async def _commit(self, batch: _Batch) -> None:
        """Run a group commit: BEGIN IMMEDIATE, each writer's turn in order, COMMIT."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                db = self._conn()
                await self._begin(db)
                while batch.waiting:
                    turn = batch.waiting.popleft()
                    if turn.done():  # cancelled while waiting
                        continue
                    done: asyncio.Future[None] = loop.create_future()
                    turn.set_result(done)
                    await done
                    if not db.in_transaction:  # SQLite rolled it all back (disk full, I/O)
                        raise sqlite3.OperationalError("the transaction was rolled back")
                if self._batch is batch:
                    self._batch = None  # from here on, writes wait for the next commit
                await db.execute("COMMIT")
            except BaseException as exc:
                if self._batch is batch:
                    self._batch = None
                if self._db is not None:
                    with suppress(Exception):
                        await asyncio.shield(self._db.rollback())
                if isinstance(exc, StorageError):
                    error = exc
                elif isinstance(exc, sqlite3.Error):
                    error = self._error(exc)
                else:  # cancelled (the loop is closing) or a bug: nothing was committed
                    error = StorageError(f"{self.label}: not committed ({exc!r})")
                batch.fail(error)
                if not isinstance(exc, Exception):
                    raise
                return
        batch.committed.set_result(None)

    # Migrations take the write lock up front (BEGIN IMMEDIATE), like every write.
    def _migrating(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return self._transaction()

    async def _all(
        self, db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
    ) -> list[Record]:
        return list(await db.execute_fetchall(sql, params))

    async def _changes(self, db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        async with db.execute(sql, params) as cursor:
            return max(int(cursor.rowcount), 0)

    async def _claim(
        self, queue: Queue, *, now: int, until: int, owner: str, limit: int
    ) -> list[Record]:
        select = CLAIM_SELECT[queue]
        params = (now, owner, now, limit)
        # Nothing due (the common tick): one index range scan, no write lock taken.
        async with self._read() as db:
            if not await self._all(db, select, params):
                return []
        async with self._transaction() as db:
            # Under the write lock the selection is authoritative: no other process can
            # claim or change these rows before this transaction commits.
            ids = [int(row[0]) for row in await self._all(db, select, params)]
            if not ids:
                return []
            rows = await self._all(
                db,
                f"UPDATE {queue.table} SET lease_owner = ?, lease_until = ?, {queue.due_column} = ?"
                f" WHERE id IN ({marks(len(ids))}) RETURNING {queue.columns}",
                (owner, until, until, *ids),
            )
        by_id = {int(row["id"]): row for row in rows}
        return [by_id[i] for i in ids if i in by_id]


__all__ = ["SqliteRepository"]
