"""The inbox's storage contract (storage/inbox_sql.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.domain.models import Instance
from storage.base import Repository
from tests.storage_fixtures import backend, repo
from tests.test_storage_contract import T0, new_invoice

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

LEASE = timedelta(seconds=30)


async def register(repo: Repository, *names: str) -> None:
    for name in names:
        await repo.register_instance(Instance(name, name, T0, T0))


async def accept(repo: Repository, update_id: int, owner: str, at: timedelta = timedelta()) -> bool:
    now = T0 + at
    return await repo.inbox_accept(
        update_id,
        f'{{"update_id": {update_id}}}',
        command_key=f"1:1:/invoice {update_id}",
        owner=owner,
        now=now,
        lease_until=now + LEASE,
    )


async def test_an_update_is_stored_once_and_a_redelivery_is_recognised(repo: Repository) -> None:
    assert await accept(repo, 7, "a") is True
    assert await accept(repo, 7, "b") is False  # under way at "a"
    await repo.inbox_done(7, T0)
    assert await accept(repo, 7, "b", at=LEASE * 2) is False  # done: never again
    [entry] = await repo.inbox_entries()
    assert entry.update_id == 7 and entry.done_at is not None and entry.attempts == 1


async def test_an_abandoned_update_is_claimed_once_by_one_instance(repo: Repository) -> None:
    await register(repo, "dead", "b", "c", "d")
    assert await accept(repo, 1, "dead")
    assert await accept(repo, 2, "dead")
    await repo.inbox_done(2, T0)
    now = T0 + timedelta(seconds=5)
    assert await repo.inbox_claim(owner="b", now=now, lease_until=now + LEASE, limit=9) == []
    later = T0 + LEASE * 2
    claims = await asyncio.gather(
        *(
            repo.inbox_claim(owner=owner, now=later, lease_until=later + LEASE, limit=9)
            for owner in ("b", "c", "d")
        )
    )
    taken = [e for c in claims for e in c]
    assert [e.update_id for e in taken] == [1] and taken[0].attempts == 2
    # A redelivery of it meanwhile is not handled a second time.
    assert await accept(repo, 1, "e", at=LEASE * 2) is False


async def test_an_update_of_an_instance_no_longer_registered_is_taken_over_at_once(
    repo: Repository,
) -> None:
    """Liveness (bot/liveness.py) forgets an instance whose heartbeat went stale: its
    updates are claimable at once, long before their lease lapses."""
    await register(repo, "alive", "gone", "me")
    assert await accept(repo, 1, "alive")
    assert await accept(repo, 2, "gone")
    await repo.take_over(now=T0, stale_before=T0 + timedelta(seconds=1), alive="alive")
    await register(repo, "me")
    soon = T0 + timedelta(seconds=1)
    claimed = await repo.inbox_claim(owner="me", now=soon, lease_until=soon + LEASE, limit=9)
    assert [e.update_id for e in claimed] == [2]


async def test_release_makes_an_owners_updates_claimable_at_once(repo: Repository) -> None:
    await register(repo, "me", "other")
    assert await accept(repo, 1, "me")
    assert await accept(repo, 2, "other")
    assert await repo.inbox_release(owner="me") == 1
    claimed = await repo.inbox_claim(owner="me", now=T0, lease_until=T0 + LEASE, limit=9)
    assert [e.update_id for e in claimed] == [1]
    assert await repo.inbox_release() == 2


async def test_a_command_creates_one_invoice_per_update(repo: Repository) -> None:
    assert await accept(repo, 5, "a")
    first, created = await repo.inbox_create_invoice(5, new_invoice("tok-5a"))
    again, created_again = await repo.inbox_create_invoice(5, new_invoice("tok-5b"))
    assert created and not created_again and again.id == first.id
    assert (await repo.inbox_get(5)).invoice_id == first.id  # type: ignore[union-attr]
    assert await repo.count_invoices(1) == 1


async def test_a_resend_finds_the_command_under_way(repo: Repository) -> None:
    for update_id in (10, 11):
        now = T0
        await repo.inbox_accept(
            update_id,
            "{}",
            command_key="1:1:/invoice 3",
            owner="a",
            now=now,
            lease_until=now + LEASE,
        )
    await repo.inbox_set_reply(10, 1, 99)
    second = await repo.inbox_get(11)
    assert second is not None
    earlier = await repo.inbox_earlier_underway(second)
    assert earlier is not None and earlier.update_id == 10 and earlier.reply_message_id == 99
    first = await repo.inbox_get(10)
    assert first is not None and await repo.inbox_earlier_underway(first) is None
    await repo.inbox_done(10, T0)
    assert await repo.inbox_earlier_underway(second) is None


async def test_done_updates_are_purged_after_a_day(repo: Repository) -> None:
    assert await accept(repo, 1, "a")
    assert await accept(repo, 2, "a")
    await repo.inbox_done(1, T0)
    assert await repo.inbox_purge(done_before=T0 + timedelta(days=1)) == 1
    assert [e.update_id for e in await repo.inbox_entries()] == [2]
