"""SQLite-only facts: connection settings, lock waits, file permissions, cancellation."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.models import Invoice, InvoiceKind, NewInvoice
from storage import StorageError, open_repository
from storage.sqlite import SqliteRepository

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def new_invoice(token: str) -> NewInvoice:
    return NewInvoice(token, 1, 500, "EUR", "tea", "sandbox", InvoiceKind.CHECKOUT, T0)


async def pragmas(repo: SqliteRepository) -> dict[str, object]:
    """The settings in force on the repository's own connection."""
    values: dict[str, object] = {}
    async with repo._read() as db:
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            async with db.execute(f"PRAGMA {name}") as cursor:
                row = await cursor.fetchone()
            assert row is not None
            values[name] = row[0]
    return values


async def test_pragmas_are_in_force_on_every_connection(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    first = await open_repository(f"sqlite:///{path}")
    second = await SqliteRepository.open(path)  # a second connection to the same file
    try:
        for repo in (first, second):
            assert isinstance(repo, SqliteRepository)
            values = await pragmas(repo)
            assert values["journal_mode"] == "wal"
            assert values["synchronous"] == 2  # FULL
            assert values["foreign_keys"] == 1
            assert isinstance(values["busy_timeout"], int) and values["busy_timeout"] >= 1000
    finally:
        await first.close()
        await second.close()


async def test_a_held_write_lock_is_waited_for_then_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    repo = await SqliteRepository.open(path, busy_timeout_ms=200)
    await repo.migrate()
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection
    try:
        other.execute("BEGIN IMMEDIATE")
        # Reads are not blocked by a writer (WAL), nor is an idle poll tick.
        assert await repo.get_invoice(1) is None
        assert (
            await repo.claim_due_invoices(now=T0, owner="w", lease=timedelta(seconds=5), limit=10)
            == []
        )
        with pytest.raises(StorageError, match="locked"):
            await repo.create_invoice(new_invoice("blocked"))
        other.execute("ROLLBACK")
        created = await repo.create_invoice(new_invoice("after"))  # usable again
        assert created.public_token == "after"

        # A lock released within busy_timeout is simply waited for.
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, other.execute, "ROLLBACK")
        assert (await repo.create_invoice(new_invoice("waited"))).public_token == "waited"
    finally:
        other.close()
        await repo.close()


# The child runs as an unprivileged user (tests run as root here, and root ignores file
# permissions). It imports everything first: the interpreter may live in a directory that
# user cannot read.
_CHILD = """
import asyncio, json, os, sys
from datetime import UTC, datetime
from storage import StorageError
from bot.domain.models import Invoice, InvoiceKind, NewInvoice
from storage.sqlite import SqliteRepository
loop = asyncio.new_event_loop()
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)

async def main(path):
    stage = "open"
    try:
        repo = await SqliteRepository.open(path)
        await repo.migrate()
        stage = "write"
        try:
            await repo.create_invoice(NewInvoice(
                "ro", 1, 1, "EUR", "x", "sandbox", InvoiceKind.CHECKOUT, datetime.now(UTC)))
        finally:
            await repo.close()
    except StorageError as exc:
        return {"stage": stage, "error": str(exc)}
    return {"stage": "none", "error": None}

print(json.dumps(loop.run_until_complete(main(sys.argv[1]))))
"""


@pytest.fixture
def unwritable_database() -> Iterator[Path]:
    """A migrated database file, then chmod a-w on the file and on its directory."""
    directory = Path(tempfile.mkdtemp(prefix="tillbot-ro-"))
    directory.chmod(0o755)
    path = directory / "ro.db"

    async def create() -> None:
        repo = await open_repository(f"sqlite:///{path}")
        await repo.create_invoice(new_invoice("existing"))
        await repo.close()

    asyncio.run(create())
    path.chmod(0o444)
    directory.chmod(0o555)
    try:
        yield path
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory, ignore_errors=True)


def test_an_unwritable_database_file_is_a_storage_error(unwritable_database: Path) -> None:
    """chmod a-w on the file and its directory, as another user than root: a new repository
    on it fails with StorageError (SQLite reports the file read-only as soon as it needs the
    WAL index, i.e. at open; if it opened, the write would fail)."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(unwritable_database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["stage"] in {"open", "write"}, outcome
    assert "readonly" in outcome["error"] and str(unwritable_database) in outcome["error"]


async def test_cancelled_operations_leave_the_connection_usable(tmp_path: Path) -> None:
    """Cancelling callers at any point (waiting for the lock, inside BEGIN, at COMMIT) never
    leaves a transaction open on the shared connection."""
    repo = await SqliteRepository.open(tmp_path / "cancel.db")
    try:
        await repo.migrate()
        finished: list[Invoice] = []
        cancelled = 0
        for round_, delay in enumerate((0.0, 0.001, 0.003, 0.006)):
            tasks = [
                asyncio.create_task(repo.create_invoice(new_invoice(f"c-{round_}-{n}")))
                for n in range(30)
            ]
            await asyncio.sleep(delay)
            for task in tasks[::2]:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, asyncio.CancelledError):
                    cancelled += 1
                else:
                    assert isinstance(result, Invoice), result  # no StorageError at all
                    finished.append(result)
        assert cancelled > 0 and len(finished) >= 60
        created = await repo.create_invoice(new_invoice("after"))
        assert await repo.get_invoice(created.id) == created
        stored = {i.public_token for i in await repo.pending_invoices(limit=1000)}
        assert {i.public_token for i in finished} <= stored
    finally:
        await repo.close()


async def test_writes_that_arrive_together_share_one_commit(tmp_path: Path) -> None:
    """Group commit: concurrent writes share a transaction and its fsync, every caller
    returns only after the commit that holds its write, and a failing write fails alone."""
    repo = await SqliteRepository.open(tmp_path / "group.db")
    try:
        await repo.migrate()
        await repo.create_invoice(new_invoice("taken"))
        statements: list[str] = []
        async with repo._read() as db:
            await db.set_trace_callback(statements.append)
        tokens = [f"g-{n}" for n in range(40)]
        results = await asyncio.gather(
            *(repo.create_invoice(new_invoice(token)) for token in tokens),
            repo.create_invoice(new_invoice("taken")),  # unique token: this one fails
            *(repo.set_prefs(n, language="de") for n in range(1, 11)),
            return_exceptions=True,
        )
        commits = sum(1 for sql in statements if sql.strip().upper() == "COMMIT")
        assert 1 <= commits <= 10, commits  # 51 writes, not 51 fsyncs
        created, failed, prefs = results[:40], results[40], results[41:]
        assert isinstance(failed, StorageError) and "UNIQUE" in str(failed)
        assert [i.public_token for i in created if isinstance(i, Invoice)] == tokens
        # Durable for another connection (another process) once the callers returned.
        other = sqlite3.connect(tmp_path / "group.db")
        try:
            stored = {row[0] for row in other.execute("SELECT public_token FROM invoices")}
            languages = other.execute("SELECT COUNT(*) FROM user_prefs WHERE language = 'de'")
            assert set(tokens) | {"taken"} == stored
            assert languages.fetchone()[0] == len(prefs) == 10
        finally:
            other.close()
    finally:
        await repo.close()
