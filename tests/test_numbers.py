"""Invoice numbers per merchant (issue 16, point 12), on SQLite and PostgreSQL: a merchant's
first invoice is #1, numbers are allocated with the invoice (two instances at once never
hand out one number twice), and a failed creation gives its number back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import StorageError, open_repository
from storage.base import Repository
from storage.migrations import MIGRATIONS, SCHEMA_VERSION_DDL, render
from tests.storage_fixtures import Backend, backend, repo
from tests.test_storage_contract import new_invoice

__all__ = ["backend", "repo"]  # fixtures, imported for pytest


async def test_each_merchant_counts_from_one(repo: Repository) -> None:
    first = await repo.create_invoice(new_invoice("a1", merchant_id=1))
    other = await repo.create_invoice(new_invoice("b1", merchant_id=2))
    second = await repo.create_invoice(new_invoice("a2", merchant_id=1))
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert other.id > first.id and other.shown_number == 1  # the internal id stays inside
    stored = await repo.get_invoice(second.id)
    assert stored is not None and stored.number == 2 and stored.shown_number == 2


async def test_a_failed_creation_gives_its_number_back(repo: Repository) -> None:
    await repo.create_invoice(new_invoice("same", merchant_id=7))
    with pytest.raises(StorageError):
        await repo.create_invoice(new_invoice("same", merchant_id=7))  # token taken
    again = await repo.create_invoice(new_invoice("next", merchant_id=7))
    assert again.number == 2


async def test_two_instances_creating_at_once_never_share_a_number(backend: Backend) -> None:
    one, two = await backend.open(), await backend.open()
    made = await asyncio.gather(
        *(
            (one if i % 2 else two).create_invoice(new_invoice(f"t{i}", merchant_id=5))
            for i in range(40)
        )
    )
    assert sorted(invoice.number for invoice in made) == list(range(1, 41))
    later = await one.create_invoice(new_invoice("later", merchant_id=5))
    assert later.number == 41


async def test_migration_numbers_the_invoices_stored_before(tmp_path: Path) -> None:
    """Migration 10 on a database with invoices: each merchant's numbered in the order they
    were created, and the next one continues from there."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(render(SCHEMA_VERSION_DDL, "sqlite"))
    for migration in (m for m in MIGRATIONS if m.version < 10):
        for statement in migration.render("sqlite"):
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, 0)",
            (migration.version, migration.name),
        )
    for token, merchant in (("a", 1), ("b", 2), ("c", 1), ("d", 1)):
        db.execute(
            "INSERT INTO invoices (public_token, merchant_id, amount_minor, currency, description,"
            " gateway, kind, status, created_at, updated_at) VALUES (?, ?, 100, 'EUR', '',"
            " 'mion', 'checkout', 'pending', 0, 0)",
            (token, merchant),
        )
    db.commit()
    db.close()
    repo = await open_repository(f"sqlite:///{path}")
    try:
        await repo.migrate()
        numbers = {
            invoice.public_token: invoice.number
            for merchant in (1, 2)
            for invoice in await repo.list_invoices(merchant, limit=10)
        }
        assert numbers == {"a": 1, "c": 2, "d": 3, "b": 1}
        assert (await repo.create_invoice(new_invoice("e", merchant_id=1))).number == 4
        assert (await repo.create_invoice(new_invoice("f", merchant_id=3))).number == 1
    finally:
        await repo.close()
