"""A shop's staff in storage (storage/staff_sql.py), on SQLite and PostgreSQL alike: an
invite is used once, before it expires, by someone in no shop; owners are never demoted or
removed; a merchant added in the bot owns a shop, removed it closes; migration 15 makes each
stored merchant the owner of a one-person shop and every invoice its creator's, losing none."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice, Transition
from bot.domain.staff import (
    INVITE_TTL,
    JoinResult,
    Role,
    StaffInvite,
    invite_hash,
    new_invite_token,
)
from storage.base import Repository
from storage.migrations import MIGRATIONS
from storage.sql import SqlRepository
from tests.storage_fixtures import Backend, backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OWNER, CASHIER, MANAGER, OTHER_OWNER = 10, 20, 30, 40


async def invite(repo: Repository, role: Role = Role.CASHIER, shop: int = OWNER) -> str:
    token = new_invite_token()
    await repo.staff_invite_add(
        StaffInvite(invite_hash(token), shop, role, shop, NOW, NOW + INVITE_TTL)
    )
    return token


async def test_an_invite_is_used_once_before_it_expires(repo: Repository) -> None:
    await repo.add_merchant(OWNER, added_by=1, now=NOW)
    token = await invite(repo)
    result, found = await repo.staff_join(invite_hash(token), CASHIER, NOW + timedelta(hours=1))
    assert result is JoinResult.JOINED and found is not None and found.shop_id == OWNER
    member = await repo.staff_member(CASHIER)
    assert member is not None and (member.shop_id, member.role) == (OWNER, Role.CASHIER)
    assert member.added_by == OWNER
    # used: nobody else joins with it, and nothing changes
    again, _ = await repo.staff_join(invite_hash(token), MANAGER, NOW + timedelta(hours=2))
    assert again is JoinResult.USED and await repo.staff_member(MANAGER) is None
    # expired: at the 24th hour and after
    late = await invite(repo, Role.MANAGER)
    expired, _ = await repo.staff_join(invite_hash(late), MANAGER, NOW + INVITE_TTL)
    assert expired is JoinResult.EXPIRED and await repo.staff_member(MANAGER) is None
    # unknown
    unknown, none = await repo.staff_join(invite_hash("nope"), MANAGER, NOW)
    assert (unknown, none) == (JoinResult.UNKNOWN, None)
    # someone in a shop (the cashier; the owner of another) cannot join: the invite stays
    await repo.add_merchant(OTHER_OWNER, added_by=1, now=NOW)
    fresh = await invite(repo, Role.MANAGER)
    for busy in (CASHIER, OTHER_OWNER, OWNER):
        outcome, _ = await repo.staff_join(invite_hash(fresh), busy, NOW)
        assert outcome is JoinResult.IN_A_SHOP, busy
    assert (await repo.staff_member(CASHIER)).role is Role.CASHIER  # type: ignore[union-attr]
    ok, _ = await repo.staff_join(invite_hash(fresh), MANAGER, NOW)
    assert ok is JoinResult.JOINED
    assert [(m.user_id, m.role) for m in await repo.staff_of(OWNER)] == [
        (OWNER, Role.OWNER),
        (MANAGER, Role.MANAGER),  # joined at NOW
        (CASHIER, Role.CASHIER),  # an hour later
    ]
    assert await repo.staff_counts() == {OWNER: 3, OTHER_OWNER: 1}


async def test_one_invite_opened_by_many_at_once_seats_one(repo: Repository) -> None:
    token = await invite(repo)
    results = await asyncio.gather(
        *(repo.staff_join(invite_hash(token), 100 + n, NOW) for n in range(8))
    )
    outcomes = sorted(r for r, _ in results)
    assert outcomes.count(JoinResult.JOINED) == 1
    assert outcomes.count(JoinResult.USED) == 7
    assert len(await repo.staff_of(OWNER)) == 1


async def test_roles_change_and_members_go_but_the_owner_stays(repo: Repository) -> None:
    await repo.add_merchant(OWNER, added_by=1, now=NOW)
    await repo.staff_join(invite_hash(await invite(repo)), CASHIER, NOW)
    assert await repo.staff_set_role(OWNER, CASHIER, Role.MANAGER)
    assert (await repo.staff_member(CASHIER)).role is Role.MANAGER  # type: ignore[union-attr]
    assert not await repo.staff_set_role(OWNER, OWNER, Role.CASHIER)  # never the owner
    assert not await repo.staff_set_role(OWNER, CASHIER, Role.OWNER)  # nobody becomes owner
    assert not await repo.staff_set_role(OTHER_OWNER, CASHIER, Role.CASHIER)  # another shop
    assert not await repo.staff_remove(OWNER, OWNER)
    assert not await repo.staff_remove(OTHER_OWNER, CASHIER)
    assert await repo.staff_remove(OWNER, CASHIER)
    assert await repo.staff_member(CASHIER) is None
    assert not await repo.staff_remove(OWNER, CASHIER)
    assert (await repo.staff_member(OWNER)).role is Role.OWNER  # type: ignore[union-attr]


async def test_a_removed_merchant_closes_the_shop(repo: Repository) -> None:
    await repo.add_merchant(OWNER, added_by=1, now=NOW)
    await repo.staff_join(invite_hash(await invite(repo)), CASHIER, NOW)
    open_invite = await invite(repo, Role.MANAGER)
    assert await repo.remove_merchant(OWNER)
    assert await repo.staff_of(OWNER) == []
    result, _ = await repo.staff_join(invite_hash(open_invite), MANAGER, NOW)
    assert result is JoinResult.UNKNOWN  # its open invites lapse with it


async def test_invoices_know_their_creator(repo: Repository) -> None:
    def new(token: str, created_by: int | None) -> NewInvoice:
        return NewInvoice(
            token, OWNER, 500, "EUR", "", "sandbox", InvoiceKind.CHECKOUT, NOW,
            created_by=created_by,
        )  # fmt: skip

    mine = await repo.create_invoice(new("tok-owner-000000000000", None))
    sold = await repo.create_invoice(new("tok-cashier-0000000000", CASHIER))
    assert (mine.created_by, mine.seller_id) == (OWNER, OWNER)
    assert (sold.created_by, sold.seller_id) == (CASHIER, CASHIER)
    assert await repo.count_invoices(OWNER) == 2
    assert await repo.count_invoices(OWNER, created_by=CASHIER) == 1
    listed = await repo.list_invoices(OWNER, limit=10, created_by=CASHIER)
    assert [i.id for i in listed] == [sold.id]


async def test_migration_15_makes_each_merchant_a_one_person_shop(
    backend: Backend, repo: Repository
) -> None:
    await repo.add_merchant(OWNER, added_by=1, now=NOW)
    await repo.add_merchant(OTHER_OWNER, added_by=1, now=NOW)
    invoices = [
        await repo.create_invoice(
            NewInvoice(
                f"tok-migrate-{n:010d}", merchant, 100 + n, "EUR", "", "sandbox",
                InvoiceKind.CHECKOUT, NOW,
            )
        )
        for n, merchant in enumerate((OWNER, OWNER, OTHER_OWNER))
    ]  # fmt: skip
    await repo.transition(
        Transition(invoices[0].id, frozenset({InvoiceStatus.PENDING}), InvoiceStatus.PAID, at=NOW)
    )
    sql = cast(SqlRepository[Any], repo)
    # The database as it was at version 14: no staff tables, no creator column.
    async with sql._transaction() as db:
        await sql._changes(db, "DROP TABLE shop_members")
        await sql._changes(db, "DROP TABLE staff_invites")
        await sql._changes(db, "DROP INDEX ix_invoices_creator")
        await sql._changes(db, "ALTER TABLE invoices DROP COLUMN created_by")
        await sql._changes(db, "DELETE FROM schema_version WHERE version = 15")
    assert 15 in {m.version for m in MIGRATIONS}
    await repo.migrate()
    assert await backend.fetchval("SELECT COUNT(*) FROM invoices") == 3  # none lost
    for before in invoices:
        after = await repo.get_invoice(before.id)
        assert after is not None and after.created_by == before.merchant_id
        assert after.amount_minor == before.amount_minor
    for owner in (OWNER, OTHER_OWNER):
        member = await repo.staff_member(owner)
        assert member is not None and (member.shop_id, member.role) == (owner, Role.OWNER)
    assert await repo.count_invoices(OWNER, created_by=OWNER) == 2
