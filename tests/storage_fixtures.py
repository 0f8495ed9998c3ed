"""Fixtures for the storage tests: one fresh database per test, on each backend.

Import the fixtures into a test module (`from tests.storage_fixtures import backend, repo`).

- "sqlite": a new file in tmp_path.
- "postgres": a new schema `t_<hex>` in the database of TEST_DATABASE_URL (default
  postgresql://postgres@127.0.0.1:5432/test), used through `search_path` in the pool's
  server_settings and dropped at teardown. Skipped when no server answers, except with
  CI=true, where an unreachable server fails the test instead.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import postgres as pg_backend
from storage import sqlite as sqlite_backend
from storage.base import Repository
from storage.postgres import PostgresRepository
from storage.sqlite import SqliteRepository
from storage.times import to_ms

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

INVOICE_INSERT_COLUMNS = (
    "public_token",
    "merchant_id",
    "amount_minor",
    "currency",
    "description",
    "gateway",
    "kind",
    "status",
    "created_at",
    "updated_at",
    "next_poll_at",
)


def postgres_test_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


_postgres_problem: list[str] = []  # filled once per session when the server is unreachable


async def require_postgres() -> str:
    """The DSN of a reachable server; else skip (locally) or fail (CI=true)."""
    dsn = postgres_test_url()
    if not _postgres_problem:
        try:
            con = await asyncpg.connect(dsn, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _postgres_problem.append(
                f"PostgreSQL at {pg_backend.redact_dsn(dsn)} is not reachable: {exc!r}"
            )
        else:
            await con.close()
            _postgres_problem.append("")
    problem = _postgres_problem[0]
    if problem:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: the postgres tests must run)")
        pytest.skip(problem)
    return dsn


def invoice_row(
    token: str, *, status: str = "pending", next_poll_at: datetime | None, at: datetime
) -> tuple[Any, ...]:
    """A row of INVOICE_INSERT_COLUMNS for bulk inserts."""
    ms = to_ms(at)
    return (
        token,
        1,
        100,
        "EUR",
        "bulk",
        "sandbox",
        "checkout",
        status,
        ms,
        ms,
        to_ms(next_poll_at),
    )


class Backend(ABC):
    """One fresh database; `open()` gives a new repository object (another "process") on it."""

    name: str

    def __init__(self) -> None:
        self.opened: list[Repository] = []

    @abstractmethod
    async def _new(self, *, read_only: bool) -> Repository: ...

    async def open(self, *, migrate: bool = True, read_only: bool = False) -> Repository:
        repo = await self._new(read_only=read_only)
        self.opened.append(repo)
        if migrate:
            await repo.migrate()
        return repo

    @abstractmethod
    async def fetchval(self, sql: str) -> Any:
        """One value of a query run on a separate connection (no parameters)."""

    @abstractmethod
    async def bulk_insert_invoices(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    async def due_query_plans(self, now: datetime) -> dict[str, str]:
        """The query plans of the due-work queries (claim invoices, next due, claim outbox)."""

    async def aclose(self) -> None:
        for repo in self.opened:
            await repo.close()
        self.opened.clear()


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def _new(self, *, read_only: bool) -> Repository:
        return await SqliteRepository.open(self.path, uri_query="mode=ro" if read_only else "")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        con.execute("PRAGMA foreign_keys = ON")
        return con

    async def fetchval(self, sql: str) -> Any:
        con = self._connect()
        try:
            row = con.execute(sql).fetchone()
        finally:
            con.close()
        return None if row is None else row[0]

    async def bulk_insert_invoices(self, rows: Sequence[tuple[Any, ...]]) -> None:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                f"INSERT INTO invoices ({', '.join(INVOICE_INSERT_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(INVOICE_INSERT_COLUMNS))})",
                rows,
            )
            con.execute("COMMIT")
            con.execute("ANALYZE")
        finally:
            con.close()

    async def due_query_plans(self, now: datetime) -> dict[str, str]:
        ms = to_ms(now)
        queries: dict[str, tuple[str, tuple[Any, ...]]] = {
            "claim_invoices": (sqlite_backend.CLAIM_INVOICES_SELECT, (ms, "explain", ms, 100)),
            "next_due": (sqlite_backend.NEXT_DUE_SQL, ()),
            "claim_outbox": (sqlite_backend.CLAIM_OUTBOX_SELECT, (ms, "explain", ms, 100)),
        }
        con = self._connect()
        try:
            return {
                name: "\n".join(
                    str(row[-1]) for row in con.execute(f"EXPLAIN QUERY PLAN {sql}", args)
                )
                for name, (sql, args) in queries.items()
            }
        finally:
            con.close()


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = schema

    @property
    def settings(self) -> dict[str, str]:
        return {"search_path": self.schema}

    async def _new(self, *, read_only: bool) -> Repository:
        settings = self.settings
        if read_only:  # what a hot standby or a read-only role does to every write
            settings["default_transaction_read_only"] = "on"
        return await PostgresRepository.open(
            self.dsn, min_size=1, max_size=10, server_settings=settings
        )

    async def _connect(self) -> Any:
        return await asyncpg.connect(self.dsn, server_settings=self.settings, timeout=5)

    async def fetchval(self, sql: str) -> Any:
        con = await self._connect()
        try:
            return await con.fetchval(sql)
        finally:
            await con.close()

    async def bulk_insert_invoices(self, rows: Sequence[tuple[Any, ...]]) -> None:
        con = await self._connect()
        try:
            await con.copy_records_to_table(
                "invoices",
                records=rows,
                columns=INVOICE_INSERT_COLUMNS,
                schema_name=self.schema,
            )
            await con.execute("ANALYZE invoices")
        finally:
            await con.close()

    async def due_query_plans(self, now: datetime) -> dict[str, str]:
        ms = to_ms(now)
        queries: dict[str, tuple[str, tuple[Any, ...]]] = {
            "claim_invoices": (pg_backend.CLAIM_INVOICES_SQL, (ms, 100, "explain", ms)),
            "next_due": (pg_backend.NEXT_DUE_SQL, ()),
            "claim_outbox": (pg_backend.CLAIM_OUTBOX_SQL, (ms, 100, "explain", ms)),
        }
        con = await self._connect()
        try:
            plans: dict[str, str] = {}
            for name, (sql, args) in queries.items():
                rows = await con.fetch(f"EXPLAIN {sql}", *args)
                plans[name] = "\n".join(str(row[0]) for row in rows)
            return plans
        finally:
            await con.close()


async def _postgres_backend() -> PostgresBackend:
    dsn = await require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    con = await asyncpg.connect(dsn, timeout=5)
    try:
        await con.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await con.close()
    return PostgresBackend(dsn, schema)


async def _drop_schema(backend: PostgresBackend) -> None:
    con = await asyncpg.connect(backend.dsn, timeout=5)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{backend.schema}" CASCADE')
    finally:
        await con.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty database (not yet migrated) on the parametrised backend."""
    if request.param == "sqlite":
        sqlite = SqliteBackend(tmp_path / "tillbot.db")
        try:
            yield sqlite
        finally:
            await sqlite.aclose()
        return
    postgres = await _postgres_backend()
    try:
        yield postgres
    finally:
        try:
            await postgres.aclose()
        finally:
            await _drop_schema(postgres)


@pytest.fixture
async def repo(backend: Backend) -> Repository:
    """A migrated repository on the fresh database of `backend`."""
    return await backend.open()
