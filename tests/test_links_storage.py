"""Payment links and receipt tokens in storage (storage/links_sql.py), on SQLite and
PostgreSQL alike (see storage_fixtures): sales count only paid invoices of the link, a link
is disabled once and only by its merchant, one receipt token per invoice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.domain.links import NewLink, new_token
from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice, Transition
from storage.base import Repository
from tests.storage_fixtures import backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def new_link(merchant: int = 1, amount: int | None = 350, at: datetime = NOW) -> NewLink:
    return NewLink(
        token=new_token(),
        merchant_id=merchant,
        amount_minor=amount,
        currency="EUR",
        description="Coffee",
        gateway="sandbox",
        created_at=at,
    )


async def invoice_of(repo: Repository, token: str, amount: int, paid: bool) -> int:
    invoice = await repo.create_invoice(
        NewInvoice(
            public_token=new_token() + "xxxxxx",
            merchant_id=1,
            amount_minor=amount,
            currency="EUR",
            description="Coffee",
            gateway="sandbox",
            kind=InvoiceKind.CHECKOUT,
            created_at=NOW,
        )
    )
    await repo.link_add_invoice(token, invoice.id)
    if paid:
        moved = await repo.transition(
            Transition(
                invoice_id=invoice.id,
                expected=frozenset({InvoiceStatus.PENDING}),
                new_status=InvoiceStatus.PAID,
                at=NOW,
                paid_at=NOW,
            )
        )
        assert moved is not None
    return invoice.id


async def test_a_link_counts_only_its_paid_invoices(repo: Repository) -> None:
    link = await repo.link_create(new_link())
    other = await repo.link_create(new_link(amount=None, at=NOW + timedelta(seconds=1)))
    await invoice_of(repo, link.token, 350, paid=True)
    await invoice_of(repo, link.token, 350, paid=True)
    await invoice_of(repo, link.token, 350, paid=False)
    await invoice_of(repo, other.token, 1234, paid=True)
    stored = await repo.link_get(link.token)
    assert stored is not None and stored.enabled and stored.amount_minor == 350
    assert (stored.sales_count, stored.sales_total_minor) == (2, 700)
    listed = await repo.links_of(1, 10)
    assert [x.token for x in listed] == [other.token, link.token]  # newest first
    assert listed[0].open_amount and (listed[0].sales_count, listed[0].sales_total_minor) == (
        1,
        1234,
    )
    assert await repo.links_of(2, 10) == []
    assert await repo.link_get("nope") is None


async def test_only_its_merchant_disables_a_link_and_only_once(repo: Repository) -> None:
    link = await repo.link_create(new_link())
    assert not await repo.link_disable(link.token, 2, NOW)
    assert await repo.link_disable(link.token, 1, NOW)
    assert not await repo.link_disable(link.token, 1, NOW + timedelta(minutes=1))
    stored = await repo.link_get(link.token)
    assert stored is not None and not stored.enabled and stored.disabled_at == NOW


async def test_one_receipt_token_per_invoice_whoever_asks_first(repo: Repository) -> None:
    link = await repo.link_create(new_link())
    invoice_id = await invoice_of(repo, link.token, 350, paid=True)
    tokens = await asyncio.gather(
        *(repo.receipt_token(invoice_id, new_token(), NOW) for _ in range(5))
    )
    assert len(set(tokens)) == 1
    assert await repo.receipt_invoice(tokens[0]) == invoice_id
    assert await repo.receipt_invoice(new_token()) is None
