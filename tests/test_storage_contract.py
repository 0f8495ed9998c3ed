"""The storage contract: every test runs on SQLite and on PostgreSQL (see storage_fixtures)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.domain.models import (
    Instance,
    Invoice,
    InvoiceKind,
    InvoiceMessage,
    InvoiceStatus,
    MessageRole,
    NewInvoice,
    NewOutbox,
    OutboxEvent,
    OutboxKind,
    Transition,
    UserPrefs,
)
from storage import StorageError, open_repository
from storage.base import Repository
from storage.migrations import LATEST_VERSION, MIGRATIONS, pending_migrations
from tests.storage_fixtures import (
    Backend,
    backend,
    invoice_row,
    repo,
    require_postgres,
)

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
LEASE = timedelta(seconds=30)
PENDING = frozenset({InvoiceStatus.PENDING})


def new_invoice(
    token: str,
    *,
    merchant_id: int = 1,
    created_at: datetime = T0,
    expires_at: datetime | None = None,
    gateway: str = "sandbox",
) -> NewInvoice:
    return NewInvoice(
        public_token=token,
        merchant_id=merchant_id,
        amount_minor=12_345,
        currency="EUR",
        description="Coffee ☕ for «two»",
        gateway=gateway,
        kind=InvoiceKind.CHECKOUT,
        created_at=created_at,
        expires_at=expires_at,
    )


async def polled_invoice(
    repo: Repository, token: str, *, next_poll_at: datetime, session: str | None = None
) -> Invoice:
    """A pending invoice at the gateway, due for a poll at `next_poll_at`."""
    invoice = await repo.create_invoice(new_invoice(token))
    return await repo.attach_session(
        invoice.id,
        gateway_session_id=session or f"sess-{token}",
        checkout_url=f"https://pay.example/{token}",
        payment={},
        expires_at=None,
        next_poll_at=next_poll_at,
        now=T0,
    )


def paid(invoice_id: int, *, at: datetime = T0, raw: str = "paid") -> Transition:
    return Transition(
        invoice_id=invoice_id,
        expected=PENDING,
        new_status=InvoiceStatus.PAID,
        at=at,
        raw_status=raw,
        outbox=(
            NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=1, payload={"raw": raw}),
            NewOutbox(OutboxKind.RECEIPT, OutboxEvent.PAID, chat_id=2),
        ),
    )


# -- lifecycle --------------------------------------------------------------------------------
async def test_migrate_twice_is_a_no_op(backend: Backend, repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("keep-me"))
    assert await repo.migrate() == LATEST_VERSION
    assert await repo.migrate() == LATEST_VERSION
    assert await backend.fetchval("SELECT COUNT(*) FROM schema_version") == len(MIGRATIONS)
    again = await backend.open()  # another process starting on a migrated database
    assert await again.get_invoice(invoice.id) == invoice


async def test_concurrent_first_migrations_apply_each_version_once(backend: Backend) -> None:
    repos = [await backend.open(migrate=False) for _ in range(4)]
    versions = await asyncio.gather(*(r.migrate() for r in repos))
    assert versions == [LATEST_VERSION] * 4
    assert await backend.fetchval("SELECT COUNT(*) FROM schema_version") == len(MIGRATIONS)
    assert await repos[0].ping()


async def test_ping_and_close(backend: Backend) -> None:
    repo = await backend.open()
    assert await repo.ping() is True
    await repo.close()
    assert await repo.ping() is False
    await repo.close()  # twice is fine
    with pytest.raises(StorageError, match="closed"):
        await repo.get_invoice(1)


# -- invoices ---------------------------------------------------------------------------------
async def test_create_get_by_token_and_session(repo: Repository) -> None:
    expires = T0 + timedelta(hours=1)
    invoice = await repo.create_invoice(new_invoice("tok-1", expires_at=expires))
    assert invoice.id > 0
    assert (invoice.status, invoice.kind) == (InvoiceStatus.PENDING, InvoiceKind.CHECKOUT)
    assert (invoice.merchant_id, invoice.amount_minor, invoice.currency) == (1, 12_345, "EUR")
    assert invoice.description == "Coffee ☕ for «two»"
    assert invoice.created_at == invoice.updated_at == T0
    assert invoice.expires_at == expires
    assert invoice.payment == {}
    assert invoice.next_poll_at is None and invoice.poll_count == 0
    assert invoice.lease_owner is None and invoice.lease_until is None
    assert not invoice.late and not invoice.underpaid and invoice.paid_at is None

    assert await repo.get_invoice(invoice.id) == invoice
    assert await repo.get_invoice_by_token("tok-1") == invoice
    assert await repo.get_invoice_by_token("nope") is None
    assert await repo.get_invoice(invoice.id + 1000) is None
    assert await repo.get_invoice_by_session("sandbox", "sess-1") is None

    with pytest.raises(StorageError):
        await repo.create_invoice(new_invoice("tok-1"))  # public_token is unique
    second = await repo.create_invoice(new_invoice("tok-2"))
    assert second.id > invoice.id


async def test_attach_session_update_payment_and_observations(repo: Repository) -> None:
    expires = T0 + timedelta(hours=1)
    invoice = await repo.create_invoice(new_invoice("tok", expires_at=expires))
    payment = {"address": "bc1qxyz", "amount": "0.00012345", "nested": {"a": [1, 2]}, "ü": "ß"}
    attached = await repo.attach_session(
        invoice.id,
        gateway_session_id="sess-1",
        checkout_url=None,
        payment=payment,
        expires_at=None,  # keeps the invoice's own expiry
        next_poll_at=T0 + timedelta(seconds=5),
        now=T0 + timedelta(seconds=1),
    )
    assert attached.gateway_session_id == "sess-1"
    assert attached.checkout_url is None
    assert attached.payment == payment
    assert attached.expires_at == expires
    assert attached.next_poll_at == T0 + timedelta(seconds=5)
    assert attached.updated_at == T0 + timedelta(seconds=1)
    assert attached.created_at == T0
    assert await repo.get_invoice_by_session("sandbox", "sess-1") == attached
    assert await repo.get_invoice_by_session("mion", "sess-1") is None

    later = T0 + timedelta(minutes=30)
    attached = await repo.attach_session(
        invoice.id,
        gateway_session_id="sess-2",
        checkout_url="https://pay.example/2",
        payment={},
        expires_at=later,
        next_poll_at=T0,
        now=T0,
    )
    assert (attached.expires_at, attached.checkout_url) == (later, "https://pay.example/2")

    renewed = await repo.update_payment(invoice.id, {"bolt11": "lnbc1..."}, T0 + timedelta(days=2))
    assert renewed.payment == {"bolt11": "lnbc1..."}
    assert renewed.updated_at == T0 + timedelta(days=2)

    await repo.record_observation(invoice.id, raw_status="PROCESSING", now=T0, underpaid=True)
    seen = await repo.get_invoice(invoice.id)
    assert seen is not None
    assert (seen.raw_status, seen.underpaid, seen.status) == (
        "PROCESSING",
        True,
        InvoiceStatus.PENDING,
    )
    await repo.record_observation(invoice.id, raw_status=None, now=T0)  # keeps both
    seen = await repo.get_invoice(invoice.id)
    assert seen is not None and (seen.raw_status, seen.underpaid) == ("PROCESSING", True)

    with pytest.raises(LookupError):
        await repo.attach_session(
            999_999,
            gateway_session_id="x",
            checkout_url=None,
            payment={},
            expires_at=None,
            next_poll_at=T0,
            now=T0,
        )
    with pytest.raises(LookupError):
        await repo.update_payment(999_999, {}, T0)


async def test_list_count_and_paging(repo: Repository) -> None:
    mine = [
        await repo.create_invoice(new_invoice(f"m1-{i}", created_at=T0 + timedelta(minutes=i)))
        for i in range(7)
    ]
    theirs = [
        await repo.create_invoice(
            new_invoice(f"m2-{i}", merchant_id=2, created_at=T0 + timedelta(minutes=i))
        )
        for i in range(2)
    ]
    assert await repo.count_invoices(1) == 7
    assert await repo.count_invoices(2) == 2
    assert await repo.count_invoices(3) == 0

    newest_first = [i.id for i in reversed(mine)]
    pages = [await repo.list_invoices(1, limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [i.id for p in pages for i in p] == newest_first
    assert await repo.list_invoices(3, limit=10) == []

    window = await repo.invoices_created_between(
        1, T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    )
    assert [i.id for i in window] == [i.id for i in mine[1:4]]  # [start, end), oldest first
    everyone = await repo.invoices_created_between(None, T0, T0 + timedelta(minutes=1))
    assert {i.id for i in everyone} == {mine[0].id, theirs[0].id}

    await repo.transition(paid(mine[0].id))
    counts = await repo.count_by_status()
    assert counts[InvoiceStatus.PENDING] == 8
    assert counts[InvoiceStatus.PAID] == 1
    assert counts[InvoiceStatus.CANCELLED] == 0
    assert set(counts) == set(InvoiceStatus)

    first = await repo.pending_invoices(limit=5)
    rest = await repo.pending_invoices(limit=5, after_id=first[-1].id)
    ids = [i.id for i in first + rest]
    assert ids == sorted(ids) and len(ids) == 8 and mine[0].id not in ids


# -- transitions ------------------------------------------------------------------------------
async def _race(repos: list[Repository], invoice_id: int) -> None:
    changes = [paid(invoice_id, raw=f"racer-{n}") for n in range(20)]
    results = await asyncio.gather(
        *(repos[n % len(repos)].transition(change) for n, change in enumerate(changes))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await repos[0].get_invoice(invoice_id)
    assert stored is not None and stored.status is InvoiceStatus.PAID
    assert stored.raw_status == winners[0].raw_status
    outbox = await repos[0].outbox_items(invoice_id)
    assert len(outbox) == 2  # exactly one set of outbox rows: the winner's
    assert {o.payload.get("raw") for o in outbox} == {winners[0].raw_status, None}


async def test_transition_race_in_one_repository(repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("race-1"))
    await _race([repo], invoice.id)


async def test_transition_race_across_two_repositories(backend: Backend) -> None:
    """Two repository objects on one database: two processes (SQLite) or two pools."""
    first, second = await backend.open(), await backend.open()
    invoice = await first.create_invoice(new_invoice("race-2"))
    await _race([first, second], invoice.id)


async def test_transition_sets_fields_and_clears_lease_and_poll(repo: Repository) -> None:
    invoice = await polled_invoice(repo, "t", next_poll_at=T0)
    [claimed] = await repo.claim_due_invoices(now=T0, owner="w", lease=LEASE, limit=5)
    assert claimed.lease_owner == "w"

    at = T0 + timedelta(seconds=3)
    expired = await repo.transition(
        Transition(invoice.id, PENDING, InvoiceStatus.EXPIRED, at, raw_status="EXPIRED")
    )
    assert expired is not None
    assert expired.status is InvoiceStatus.EXPIRED and expired.is_final
    assert (expired.lease_owner, expired.lease_until, expired.next_poll_at) == (None, None, None)
    assert expired.updated_at == at and expired.paid_at is None and not expired.late
    assert await repo.get_invoice(invoice.id) == expired

    # A late payment: expired -> paid.
    paid_at = T0 + timedelta(minutes=10)
    late = await repo.transition(
        Transition(
            invoice.id,
            frozenset({InvoiceStatus.EXPIRED}),
            InvoiceStatus.PAID,
            paid_at + timedelta(seconds=1),
            paid_at=paid_at,
            late=True,
            outbox=(NewOutbox(OutboxKind.ADMIN, OutboxEvent.LATE_PAID, chat_id=9),),
        )
    )
    assert late is not None and late.status is InvoiceStatus.PAID
    assert late.late and late.paid_at == paid_at
    assert late.raw_status == "EXPIRED"  # None in the change keeps the last raw status
    [row] = await repo.outbox_items(invoice.id)
    assert row.invoice_id == invoice.id  # filled in from the transition

    other = await repo.create_invoice(new_invoice("f"))
    failed = await repo.transition(
        Transition(other.id, PENDING, InvoiceStatus.FAILED, T0, failure_reason="declined")
    )
    assert failed is not None and failed.failure_reason == "declined"
    repaid = await repo.transition(
        Transition(other.id, frozenset({InvoiceStatus.FAILED}), InvoiceStatus.PAID, T0, late=True)
    )
    assert repaid is not None
    assert repaid.paid_at == T0  # defaults to the transition time
    assert repaid.failure_reason == "declined"


async def test_disallowed_or_stale_expected_writes_nothing(repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("d"))
    assert await repo.transition(paid(invoice.id)) is not None
    before = await repo.get_invoice(invoice.id)
    outbox_before = await repo.outbox_items()

    # Nothing leaves paid, even when asked to expect paid.
    everything = frozenset(InvoiceStatus)
    for target in InvoiceStatus:
        change = Transition(
            invoice.id,
            everything,
            target,
            T0 + timedelta(hours=1),
            raw_status="x",
            outbox=(NewOutbox(OutboxKind.ADMIN, OutboxEvent.EXPIRED, chat_id=1),),
        )
        assert await repo.transition(change) is None
    # Stale expectation and an empty expected set.
    assert await repo.transition(paid(invoice.id, at=T0 + timedelta(hours=2))) is None
    empty = Transition(invoice.id, frozenset(), InvoiceStatus.CANCELLED, T0)
    assert await repo.transition(empty) is None

    assert await repo.get_invoice(invoice.id) == before
    assert await repo.outbox_items() == outbox_before


async def test_transition_and_its_outbox_are_one_transaction(repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("atomic"))
    broken = Transition(
        invoice.id,
        PENDING,
        InvoiceStatus.PAID,
        T0,
        outbox=(
            NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=1),
            # A message row that does not exist: the foreign key fails the whole change.
            NewOutbox(OutboxKind.EDIT, OutboxEvent.PAID, message_row_id=987_654),
        ),
    )
    with pytest.raises(StorageError):
        await repo.transition(broken)
    stored = await repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    assert await repo.outbox_items() == []
    assert await repo.transition(paid(invoice.id)) is not None  # and the repository still works


async def test_outbox_rows_with_an_existing_dedupe_key_are_skipped(repo: Repository) -> None:
    first = await repo.create_invoice(new_invoice("a"))
    second = await repo.create_invoice(new_invoice("b"))
    auth = NewOutbox(OutboxKind.ADMIN, OutboxEvent.GATEWAY_AUTH, chat_id=1, dedupe_key="auth:mion")
    assert await repo.enqueue([auth], T0) == 1
    change = Transition(
        second.id,
        PENDING,
        InvoiceStatus.FAILED,
        T0,
        outbox=(auth, NewOutbox(OutboxKind.MERCHANT, OutboxEvent.FAILED, chat_id=5)),
    )
    assert await repo.transition(change) is not None
    assert [o.event for o in await repo.outbox_items()] == [
        OutboxEvent.GATEWAY_AUTH,
        OutboxEvent.FAILED,
    ]
    assert first.id != second.id


# -- polling ----------------------------------------------------------------------------------
def instance(instance_id: str, *, seen: datetime = T0, name: str = "host") -> Instance:
    return Instance(id=instance_id, name=name, started_at=T0, last_seen=seen, process=None)


async def test_instances_register_heartbeat_and_deregister(repo: Repository) -> None:
    assert await repo.list_instances() == []
    assert await repo.heartbeat("nobody", now=T0) is False  # not registered: nothing written
    await repo.register_instance(instance("one", name="bot-1"))
    await repo.register_instance(instance("two", seen=T0 + timedelta(seconds=1)))
    assert await repo.heartbeat("one", now=T0 + timedelta(seconds=2)) is True
    one, two = await repo.list_instances()
    assert (one.id, one.name, one.process, one.started_at) == ("one", "bot-1", None, T0)
    assert one.last_seen == T0 + timedelta(seconds=2) and two.id == "two"
    await repo.register_instance(instance("one", seen=T0 + timedelta(seconds=3)))  # again
    assert (await repo.list_instances())[0].last_seen == T0 + timedelta(seconds=3)

    now = T0 + timedelta(seconds=4)
    for n in range(2):
        await polled_invoice(repo, f"dereg-{n}", next_poll_at=T0)
    [mine] = await repo.claim_due_invoices(now=now, owner="one", lease=LEASE, limit=1)
    [theirs] = await repo.claim_due_invoices(now=now, owner="two", lease=LEASE, limit=1)
    await repo.enqueue([NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=7)], now)
    await repo.claim_outbox(now=now, owner="one", lease=LEASE, limit=5)
    # A clean shutdown hands back its own claims (due now) and nothing else.
    assert await repo.deregister_instance("one", now=now) == 2
    assert [i.id for i in await repo.list_instances()] == ["two"]
    freed = await repo.get_invoice(mine.id)
    assert freed is not None and (freed.lease_owner, freed.next_poll_at) == (None, now)
    kept = await repo.get_invoice(theirs.id)
    assert kept is not None and kept.lease_owner == "two"
    assert len(await repo.claim_outbox(now=now, owner="two", lease=LEASE, limit=5)) == 1
    assert await repo.heartbeat("one", now=now) is False


async def test_take_over_frees_the_claims_of_stale_and_gone_owners_only(
    repo: Repository,
) -> None:
    now = T0 + timedelta(minutes=1)
    stale_before = now - timedelta(seconds=6)
    await repo.register_instance(instance("live", seen=now - timedelta(seconds=1)))
    await repo.register_instance(instance("stale", seen=now - timedelta(seconds=7)))
    await repo.register_instance(instance("idle-dead", seen=now - timedelta(seconds=60)))
    for n in range(6):
        await polled_invoice(repo, f"to-{n}", next_poll_at=T0)
    claimed = {
        owner: await repo.claim_due_invoices(now=T0, owner=owner, lease=LEASE, limit=2)
        for owner in ("live", "stale", "gone")  # "gone": never registered (or forgotten)
    }
    outbox = [NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=c) for c in (1, 2, 3)]
    await repo.enqueue(outbox, T0)
    for owner in ("live", "stale", "gone"):
        await repo.claim_outbox(now=T0, owner=owner, lease=LEASE, limit=1)
    sent, *_ = await repo.claim_outbox(now=T0, owner="stale", lease=LEASE, limit=1) or [None]
    assert sent is None  # all three rows are claimed
    # One of the stale owner's invoices is no longer polled (a callback stopped it).
    await repo.reschedule(claimed["stale"][1].id, next_poll_at=None, owner="", now=T0)

    # Every lease has lapsed, yet the live instance's claims stay its own.
    assert await repo.take_over(now=now, stale_before=stale_before) == 6
    assert await repo.take_over(now=now, stale_before=stale_before) == 0  # once
    assert [i.id for i in await repo.list_instances()] == ["live"]
    by_id = {i.id: i for i in await all_of(repo)}
    for invoice in claimed["live"]:
        assert by_id[invoice.id].lease_owner == "live"
    for invoice in claimed["stale"] + claimed["gone"]:
        assert by_id[invoice.id].lease_owner is None and by_id[invoice.id].lease_until is None
    assert by_id[claimed["stale"][1].id].next_poll_at is None  # stays stopped
    freed = [claimed["stale"][0].id, *(i.id for i in claimed["gone"])]
    assert all(by_id[i].next_poll_at == now for i in freed)  # due at once
    # The live instance gets the freed ones, and its own whose lease lapsed.
    taken = await repo.claim_due_invoices(now=now, owner="live", lease=LEASE, limit=10)
    assert sorted(i.id for i in taken) == sorted([*freed, *(i.id for i in claimed["live"])])
    # Another instance gets the freed rows, never the live one's (its lease lapsed, too).
    rows = await repo.claim_outbox(now=now, owner="other", lease=LEASE, limit=10)
    assert sorted(r.chat_id or 0 for r in rows) == [2, 3]  # the stale and the gone owner's


async def test_retired_instances_are_taken_over_at_once(repo: Repository) -> None:
    await repo.register_instance(instance("old", seen=T0))
    await repo.register_instance(instance("new", seen=T0))
    await polled_invoice(repo, "retire", next_poll_at=T0)
    [claim] = await repo.claim_due_invoices(now=T0, owner="old", lease=LEASE, limit=1)
    assert await repo.take_over(now=T0, stale_before=T0 - timedelta(seconds=6)) == 0
    assert await repo.retire_instances(["old", "old", "unknown"]) == 1
    assert await repo.retire_instances([]) == 0
    assert await repo.take_over(now=T0, stale_before=T0 - timedelta(seconds=6)) == 1
    [again] = await repo.claim_due_invoices(now=T0, owner="new", lease=LEASE, limit=1)
    assert again.id == claim.id
    # The caller is alive, however late its own heartbeat: it never takes itself over.
    later = T0 + timedelta(minutes=5)
    assert await repo.take_over(now=later, stale_before=later, alive="new") == 0
    assert [i.id for i in await repo.list_instances()] == ["new"]


async def test_concurrent_take_overs_free_each_claim_once(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    now = T0 + timedelta(minutes=1)
    await first.register_instance(instance("live", seen=now))
    for name in ("dead-1", "dead-2"):
        await first.register_instance(instance(name, seen=T0))
    await backend.bulk_insert_invoices(
        [invoice_row(f"ct-{n}", next_poll_at=T0, at=T0) for n in range(30)]
    )
    for owner in ("dead-1", "dead-2", "live"):
        await first.claim_due_invoices(now=T0, owner=owner, lease=LEASE, limit=10)
    freed = await asyncio.gather(
        *(
            (first if n % 2 else second).take_over(now=now, stale_before=now - LEASE)
            for n in range(6)
        )
    )
    assert sum(freed) == 20
    assert await backend.fetchval("SELECT COUNT(*) FROM invoices WHERE lease_owner = 'live'") == 10
    assert await backend.fetchval("SELECT COUNT(*) FROM invoices WHERE lease_owner IS NULL") == 20


async def all_of(repo: Repository) -> list[Invoice]:
    return await repo.invoices_created_between(None, T0 - timedelta(days=1), T0 + timedelta(days=1))


async def test_claim_due_leases(repo: Repository) -> None:
    now = T0
    due = [
        await polled_invoice(repo, f"due-{n}", next_poll_at=now - timedelta(seconds=n))
        for n in (1, 3, 2)
    ]
    later = await polled_invoice(repo, "later", next_poll_at=now + timedelta(hours=1))
    await repo.create_invoice(new_invoice("not-at-gateway"))  # next_poll_at is NULL

    claimed = await repo.claim_due_invoices(now=now, owner="a", lease=LEASE, limit=10)
    assert [i.id for i in claimed] == [due[1].id, due[2].id, due[0].id]  # soonest due first
    assert all(i.lease_owner == "a" and i.lease_until == now + LEASE for i in claimed)
    assert all(i.next_poll_at == now + LEASE for i in claimed)  # due again when it lapses

    # In flight: nobody else gets them, nor the owner again, until the lease lapses.
    soon = now + timedelta(seconds=1)
    assert await repo.claim_due_invoices(now=soon, owner="b", lease=LEASE, limit=10) == []
    assert await repo.claim_due_invoices(now=soon, owner="a", lease=LEASE, limit=10) == []
    assert await repo.next_due_at() == now + LEASE

    # The owner releases one by rescheduling it.
    await repo.reschedule(due[0].id, next_poll_at=now + timedelta(seconds=5), owner="a", now=soon)
    released = await repo.get_invoice(due[0].id)
    assert released is not None
    assert (released.lease_owner, released.lease_until) == (None, None)
    assert released.next_poll_at == now + timedelta(seconds=5) and released.poll_count == 1
    assert await repo.next_due_at() == now + timedelta(seconds=5)

    # Limit; a lapsed lease is its owner's to claim again, never another owner's.
    at = now + timedelta(seconds=6)
    [only] = await repo.claim_due_invoices(now=at, owner="b", lease=LEASE, limit=1)
    assert only.id == due[0].id and only.lease_owner == "b"
    lapsed = now + LEASE + timedelta(milliseconds=1)
    assert await repo.claim_due_invoices(now=lapsed, owner="b", lease=LEASE, limit=10) == []
    again = await repo.claim_due_invoices(now=lapsed, owner="a", lease=LEASE, limit=10)
    assert {i.id for i in again} == {due[1].id, due[2].id}
    # "a" is not a registered instance: take_over frees its claims, then "b" takes them.
    assert await repo.take_over(now=lapsed, stale_before=lapsed) == 3  # "b"'s too
    taken = await repo.claim_due_invoices(now=lapsed, owner="b", lease=LEASE, limit=10)
    assert {i.id for i in taken} == {due[0].id, due[1].id, due[2].id}
    assert all(i.lease_owner == "b" for i in taken)

    # The stale owner's reschedule does not release the new owner's lease.
    await repo.reschedule(due[1].id, next_poll_at=lapsed, owner="a", now=lapsed)
    still = await repo.get_invoice(due[1].id)
    assert still is not None and still.lease_owner == "b"
    await repo.reschedule(due[1].id, next_poll_at=None, owner="b", now=lapsed)
    stopped = await repo.get_invoice(due[1].id)
    assert stopped is not None and stopped.lease_owner is None and stopped.next_poll_at is None
    assert stopped.poll_count == 2

    untouched = await repo.get_invoice(later.id)
    assert untouched == later


async def test_claims_watch_every_unpaid_final_status_but_not_paid(
    repo: Repository,
) -> None:
    invoices: dict[InvoiceStatus, Invoice] = {}
    for status in (
        InvoiceStatus.EXPIRED,
        InvoiceStatus.CANCELLED,
        InvoiceStatus.FAILED,
        InvoiceStatus.PAID,
    ):
        invoice = await polled_invoice(repo, f"final-{status}", next_poll_at=T0)
        moved = await repo.transition(Transition(invoice.id, PENDING, status, T0))
        assert moved is not None and moved.next_poll_at is None
        invoices[status] = moved
    assert await repo.claim_due_invoices(now=T0, owner="w", lease=LEASE, limit=10) == []
    assert await repo.next_due_at() is None

    # The service keeps watching for late payments by rescheduling (works on any status).
    for invoice in invoices.values():
        await repo.reschedule(invoice.id, next_poll_at=T0, owner="svc", now=T0)
    claimed = await repo.claim_due_invoices(now=T0, owner="w", lease=LEASE, limit=10)
    # Failed invoices too (issue 11): the customer may still pay a session we gave up on.
    assert {i.id for i in claimed} == {
        invoices[InvoiceStatus.EXPIRED].id,
        invoices[InvoiceStatus.CANCELLED].id,
        invoices[InvoiceStatus.FAILED].id,
    }


async def test_not_found_answers_are_kept_and_reset(repo: Repository) -> None:
    invoice = await polled_invoice(repo, "not-found", next_poll_at=T0)
    assert invoice.not_found_count == 0 and invoice.not_found_since is None
    await repo.record_not_found(invoice.id, count=2, since=T0)
    stored = await repo.get_invoice(invoice.id)
    assert stored is not None and stored.not_found_count == 2 and stored.not_found_since == T0
    await repo.record_not_found(invoice.id, count=0, since=None)
    stored = await repo.get_invoice(invoice.id)
    assert stored is not None and stored.not_found_count == 0 and stored.not_found_since is None


async def test_concurrent_claims_are_disjoint(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    due = T0 - timedelta(seconds=1)
    await backend.bulk_insert_invoices(
        [invoice_row(f"c-{n}", next_poll_at=due, at=T0) for n in range(60)]
    )
    results = await asyncio.gather(
        *(
            (first if n % 2 else second).claim_due_invoices(
                now=T0, owner=f"w{n}", lease=LEASE, limit=9
            )
            for n in range(8)
        )
    )
    ids = [i.id for batch in results for i in batch]
    assert len(ids) == len(set(ids)) == 60
    owners = {i.id: i.lease_owner for batch in results for i in batch}
    stored = [await first.get_invoice(i) for i in ids]
    assert all(s is not None and s.lease_owner == owners[s.id] for s in stored)


async def test_idle_tick_with_many_pending_costs_nothing(backend: Backend) -> None:
    repo = await backend.open()
    future = T0 + timedelta(minutes=5)
    rows = [
        invoice_row(f"p-{n}", next_poll_at=future + timedelta(seconds=n % 600), at=T0)
        for n in range(10_000)
    ]
    rows += [invoice_row(f"x-{n}", status="paid", next_poll_at=None, at=T0) for n in range(500)]
    await backend.bulk_insert_invoices(rows)

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        claimed = await repo.claim_due_invoices(now=T0, owner="w", lease=LEASE, limit=100)
        timings.append(time.perf_counter() - start)
        assert claimed == []
    assert sorted(timings)[2] < 0.1, timings  # the plans below are the real proof
    assert await repo.next_due_at() == future
    assert await repo.claim_outbox(now=T0, owner="w", lease=LEASE, limit=100) == []

    # The plans are index range scans: a tick costs what is due, not what is pending.
    plans = await backend.due_query_plans(T0)
    for name in ("claim_invoices", "next_due"):
        assert "ix_invoices_due" in plans[name], plans[name]
    for plan in plans.values():
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # no sorting
        assert "Seq Scan" not in plan, plan
        assert "SCAN invoices\n" not in plan + "\n" and "SCAN outbox\n" not in plan + "\n", plan


# -- outbox -----------------------------------------------------------------------------------
async def test_outbox_claim_complete_retry(repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("o"))
    items = [
        NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=1, payload={"n": 1}, dedupe_key="k"),
        NewOutbox(OutboxKind.ADMIN, OutboxEvent.PAID, chat_id=2, dedupe_key="k"),  # skipped
        NewOutbox(OutboxKind.RECEIPT, OutboxEvent.PAID, invoice_id=invoice.id, chat_id=3),
    ]
    assert await repo.enqueue(items, T0) == 2
    assert await repo.enqueue(items[:1], T0) == 0
    assert await repo.enqueue([], T0) == 0

    a = await repo.claim_outbox(now=T0, owner="a", lease=LEASE, limit=10)
    assert [(i.chat_id, i.attempts, i.payload) for i in a] == [(1, 0, {"n": 1}), (3, 0, {})]
    assert a[0].dedupe_key == "k" and a[1].invoice_id == invoice.id
    assert a[0].created_at == T0 and a[0].sent_at is None
    assert await repo.claim_outbox(now=T0, owner="b", lease=LEASE, limit=10) == []

    await repo.complete_outbox(a[0].id, now=T0 + timedelta(seconds=1))
    retry_at = T0 + timedelta(seconds=10)
    await repo.retry_outbox(a[1].id, next_attempt_at=retry_at, error="429 " * 2000, now=T0)
    rows = {o.id: o for o in await repo.outbox_items()}
    assert rows[a[0].id].sent_at == T0 + timedelta(seconds=1)
    retried = rows[a[1].id]
    assert retried.attempts == 1 and retried.next_attempt_at == retry_at
    assert retried.last_error is not None and retried.last_error.startswith("429 ")
    assert len(retried.last_error) <= 2000

    assert (
        await repo.claim_outbox(
            now=retry_at - timedelta(seconds=1), owner="b", lease=LEASE, limit=10
        )
        == []
    )
    [again] = await repo.claim_outbox(now=retry_at, owner="b", lease=LEASE, limit=10)
    assert again.id == a[1].id and again.attempts == 1
    # b crashes: its lease lapsing frees nothing for c; b being gone (never registered,
    # or stale) does, through take_over.
    assert await repo.claim_outbox(now=retry_at + LEASE, owner="c", lease=LEASE, limit=10) == []
    assert await repo.take_over(now=retry_at + LEASE, stale_before=retry_at) == 1
    [taken] = await repo.claim_outbox(now=retry_at + LEASE, owner="c", lease=LEASE, limit=10)
    assert taken.id == a[1].id
    await repo.complete_outbox(taken.id, now=retry_at + LEASE)
    await repo.complete_outbox(taken.id, now=retry_at + 2 * LEASE)  # twice: first one stands
    done = {o.id: o for o in await repo.outbox_items(invoice.id)}
    assert list(done) == [a[1].id] and done[a[1].id].sent_at == retry_at + LEASE
    assert (
        await repo.claim_outbox(now=T0 + timedelta(days=1), owner="d", lease=LEASE, limit=10) == []
    )


# -- messages ---------------------------------------------------------------------------------
async def test_messages_are_idempotent_and_replaceable(repo: Repository) -> None:
    invoice = await repo.create_invoice(new_invoice("msg"))
    merchant = InvoiceMessage(
        invoice.id,
        MessageRole.MERCHANT,
        chat_id=10,
        message_id=20,
        user_id=10,
        is_photo=True,
        language="de",
    )
    added = await repo.add_message(merchant)
    assert added.id is not None
    assert added == InvoiceMessage(
        invoice.id,
        MessageRole.MERCHANT,
        chat_id=10,
        message_id=20,
        user_id=10,
        is_photo=True,
        language="de",
        id=added.id,
    )
    assert await repo.add_message(merchant) == added

    inline = InvoiceMessage(invoice.id, MessageRole.INLINE, inline_message_id="AgAAAB")
    inline_row = await repo.add_message(inline)
    assert await repo.add_message(inline) == inline_row
    customer = await repo.add_message(
        InvoiceMessage(invoice.id, MessageRole.CUSTOMER, chat_id=11, message_id=20, user_id=11)
    )
    assert len({added.id, inline_row.id, customer.id}) == 3
    assert await repo.messages_for(invoice.id) == [added, inline_row, customer]
    assert await repo.messages_for(invoice.id + 1) == []

    assert added.id is not None
    await repo.replace_message(added.id, chat_id=10, message_id=21)
    moved = await repo.get_message(added.id)
    assert moved is not None and (moved.chat_id, moved.message_id) == (10, 21)
    assert moved.is_photo and moved.language == "de"
    assert await repo.get_message(987_654) is None
    fresh = await repo.add_message(merchant)  # (10, 20) is free again
    assert fresh.id not in {added.id, inline_row.id, customer.id}


# -- merchants and preferences ------------------------------------------------------------------
async def test_merchants(repo: Repository) -> None:
    assert await repo.list_merchants() == []
    assert await repo.add_merchant(5, added_by=1, now=T0, name="Café") is True
    assert await repo.add_merchant(5, added_by=2, now=T0 + timedelta(1)) is False
    assert await repo.add_merchant(4, added_by=None, now=T0 + timedelta(seconds=1)) is True
    assert await repo.is_merchant(5) and await repo.is_merchant(4)
    assert not await repo.is_merchant(6)
    merchants = await repo.list_merchants()
    assert [(m.user_id, m.added_by, m.added_at, m.name) for m in merchants] == [
        (5, 1, T0, "Café"),
        (4, None, T0 + timedelta(seconds=1), None),
    ]
    assert await repo.remove_merchant(5) is True
    assert await repo.remove_merchant(5) is False
    assert not await repo.is_merchant(5)
    big = 8_000_000_000  # Telegram ids exceed 32 bits
    assert await repo.add_merchant(big, added_by=big, now=T0)
    assert await repo.is_merchant(big)


async def test_prefs_set_and_reset(repo: Repository) -> None:
    assert await repo.get_prefs(7) == UserPrefs(7)
    assert await repo.set_prefs(7) == UserPrefs(7)  # nothing given: nothing written
    assert await repo.set_prefs(7, language="de") == UserPrefs(7, "de", None)
    assert await repo.set_prefs(7, gateway="mion") == UserPrefs(7, "de", "mion")
    assert await repo.set_prefs(7) == UserPrefs(7, "de", "mion")
    assert await repo.set_prefs(7, language=None) == UserPrefs(7, None, "mion")
    assert await repo.set_prefs(7, language="fr", gateway=None) == UserPrefs(7, "fr", None)
    assert await repo.get_prefs(7) == UserPrefs(7, "fr", None)
    assert await repo.get_prefs(8) == UserPrefs(8)
    assert await repo.set_prefs(8, gateway=None) == UserPrefs(8)


async def test_prefs_remember_what_telegram_said_apart_from_choices(repo: Repository) -> None:
    seen = await repo.set_prefs(7, telegram_language="de", name="Max Müller")
    assert seen == UserPrefs(7, None, None, telegram_language="de", name="Max Müller")
    assert await repo.set_prefs(7, language="en") == UserPrefs(7, "en", None, "de", "Max Müller")
    assert await repo.set_prefs(7, telegram_language=None) == UserPrefs(
        7, "en", None, None, "Max Müller"
    )
    assert await repo.get_prefs(7) == UserPrefs(7, "en", None, None, "Max Müller")


# -- times ------------------------------------------------------------------------------------
async def test_timestamps_round_trip_to_the_millisecond(repo: Repository) -> None:
    exact = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    finer = datetime(2031, 5, 6, 7, 8, 9, 123999, tzinfo=UTC)  # stored as .123
    elsewhere = datetime(2031, 5, 6, 9, 8, 9, 124000, tzinfo=timezone(timedelta(hours=2)))
    invoice = await repo.create_invoice(
        new_invoice("time", created_at=finer, expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    )
    assert invoice.created_at == exact and invoice.created_at.tzinfo is UTC
    assert invoice.expires_at == datetime(2100, 1, 1, tzinfo=UTC)
    attached = await repo.attach_session(
        invoice.id,
        gateway_session_id="s",
        checkout_url=None,
        payment={},
        expires_at=None,
        next_poll_at=elsewhere,
        now=exact + timedelta(milliseconds=1),
    )
    assert attached.next_poll_at == exact + timedelta(milliseconds=1)
    assert attached.updated_at == exact + timedelta(milliseconds=1)
    stored = await repo.get_invoice(invoice.id)
    assert stored == attached
    # Due at exactly next_poll_at, not one millisecond before.
    before = exact
    assert await repo.claim_due_invoices(now=before, owner="w", lease=LEASE, limit=1) == []
    [claimed] = await repo.claim_due_invoices(
        now=elsewhere, owner="w", lease=timedelta(milliseconds=1), limit=1
    )
    assert claimed.lease_until == exact + timedelta(milliseconds=2)


# -- errors -----------------------------------------------------------------------------------
async def test_writes_to_a_read_only_database_raise_storage_error(backend: Backend) -> None:
    """SQLite: the file opened with mode=ro; PostgreSQL: default_transaction_read_only (what a
    standby or a read-only role gives). Reads work, every write is a StorageError."""
    writer = await backend.open()
    invoice = await writer.create_invoice(new_invoice("ro"))
    reader = await backend.open(read_only=True)  # migrate() on an up-to-date schema: no write
    assert await reader.get_invoice(invoice.id) == invoice
    with pytest.raises(StorageError):
        await reader.create_invoice(new_invoice("ro-2"))
    with pytest.raises(StorageError):
        await reader.transition(paid(invoice.id))
    with pytest.raises(StorageError):
        await reader.set_prefs(1, language="en")
    stored = await writer.get_invoice(invoice.id)
    assert stored == invoice and await writer.outbox_items() == []


# -- open_repository --------------------------------------------------------------------------
async def test_open_repository_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await open_repository("sqlite:///data/rel.db")
    try:
        assert (tmp_path / "data" / "rel.db").exists()
        assert await relative.create_invoice(new_invoice("r"))
    finally:
        await relative.close()
    absolute = await open_repository(f"sqlite:///{tmp_path}/abs.db")
    try:
        assert (tmp_path / "abs.db").exists()
        assert await absolute.migrate() == LATEST_VERSION
    finally:
        await absolute.close()
    again = await open_repository(f"sqlite:///{tmp_path}/abs.db?mode=ro")
    try:
        assert await again.list_invoices(1, limit=5) == []
    finally:
        await again.close()


@pytest.mark.parametrize(
    "url", ["mysql://u:pw@h/db", "sqlite://host/x.db", "sqlite:///", "nonsense"]
)
async def test_open_repository_rejects_bad_urls(url: str) -> None:
    with pytest.raises(StorageError) as caught:
        await open_repository(url)
    assert "pw" not in str(caught.value)


async def test_unreachable_postgres_is_a_storage_error_without_password() -> None:
    with pytest.raises(StorageError) as caught:
        await open_repository("postgresql://tillbot:Sup3rS3cret@127.0.0.1:1/tillbot")
    message = str(caught.value)
    assert "Sup3rS3cret" not in message and "Sup3rS3cret" not in repr(caught.value)
    assert "refused" in message and "tillbot:***@127.0.0.1:1" in message
    cause = caught.value.__cause__
    assert cause is None or "Sup3rS3cret" not in repr(cause)


@pytest.mark.postgres
async def test_open_repository_postgres_urls() -> None:
    dsn = await require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        for scheme in ("postgresql", "postgres"):
            url = f"{scheme}://{dsn.split('://', 1)[1]}?search_path={schema}"
            opened = await open_repository(url)
            try:
                assert await opened.ping()
                assert await opened.migrate() == LATEST_VERSION
            finally:
                await opened.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()

    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    bad = urlunsplit(
        parts._replace(
            netloc=f"{user}:Pa55word@{parts.hostname}:{parts.port or 5432}",
            path="/no_such_database_here",
        )
    )
    with pytest.raises(StorageError) as caught:
        await open_repository(bad)
    message = str(caught.value)
    assert "Pa55word" not in message and "no_such_database_here" in message


# -- health (issue 17) ------------------------------------------------------------------------
async def test_check_write_commits_one_row_per_owner(backend: Backend, repo: Repository) -> None:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    await repo.check_write("instance-a", now)
    await repo.check_write("instance-a", now + timedelta(seconds=5))
    await repo.check_write("instance-b", now)
    assert await backend.fetchval("SELECT COUNT(*) FROM health_checks") == 2
    assert await backend.fetchval(
        "SELECT checked_at FROM health_checks WHERE owner = 'instance-a'"
    ) == int((now + timedelta(seconds=5)).timestamp() * 1000)


async def test_a_new_database_says_so_once(backend: Backend) -> None:
    first = await backend.open(migrate=False)
    await first.migrate()
    assert first.created_new
    again = await backend.open()
    assert not again.created_new


def test_migrations_missing_below_the_highest_applied_are_still_applied() -> None:
    """Version numbers may have gaps (branches reserve them): what is missing is applied,
    not only what is above the highest applied version."""
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions))
    newest = versions[-1]
    assert [m.version for m in pending_migrations({1, newest})] == versions[1:-1]
    assert pending_migrations(set(versions)) == []
    assert [m.version for m in pending_migrations(1)] == versions[1:]
