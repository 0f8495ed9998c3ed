"""The counter's storage (storage/counter_sql.py) on SQLite and PostgreSQL, and the tip
arithmetic of bot/domain/tips.py: exact minor units, the merchant's day by their offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice, Transition
from bot.domain.tips import (
    CounterSale,
    DaySales,
    Tip,
    TipError,
    TipKind,
    choose_tip,
    parse_percents,
    percent_tip,
    round_up_tip,
)
from bot.services.counter import day_start
from storage.base import Repository
from tests.storage_fixtures import backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

T0 = datetime(2030, 1, 2, 22, 30, tzinfo=UTC)


async def paid_sale(
    repo: Repository, token: str, amount: int, tip: int, *, merchant: int = 1, at: datetime = T0
) -> int:
    invoice = await repo.create_invoice(
        NewInvoice(token, merchant, amount + tip, "EUR", "", "sandbox", InvoiceKind.LIGHTNING, T0)
    )
    await repo.counter_add_sale(
        CounterSale(invoice.id, merchant, amount, tip, TipKind.PERCENT if tip else TipKind.NONE, "EUR"),
        T0,
    )
    moved = await repo.transition(
        Transition(
            invoice.id, frozenset({InvoiceStatus.PENDING}), InvoiceStatus.PAID, at, paid_at=at
        )
    )
    assert moved is not None
    return invoice.id


async def test_a_sale_keeps_its_split_once(repo: Repository) -> None:
    invoice_id = await paid_sale(repo, "tok-a", 1250, 125)
    sale = await repo.counter_sale(invoice_id)
    assert sale == CounterSale(invoice_id, 1, 1250, 125, TipKind.PERCENT, "EUR")
    await repo.counter_add_sale(CounterSale(invoice_id, 1, 1, 1, TipKind.NONE, "EUR"), T0)
    assert await repo.counter_sale(invoice_id) == sale  # written once
    assert await repo.counter_sale(invoice_id + 1000) is None


async def test_the_day_counts_paid_invoices_with_their_tips(repo: Repository) -> None:
    await paid_sale(repo, "tok-1", 1000, 100)
    await paid_sale(repo, "tok-2", 500, 0, at=T0 + timedelta(minutes=10))
    await paid_sale(repo, "tok-3", 700, 70, at=T0 - timedelta(days=1))  # yesterday
    await paid_sale(repo, "tok-4", 900, 90, merchant=2)  # another merchant
    # An invoice made by command (no counter row) counts with no tip; a pending one not.
    plain = await repo.create_invoice(
        NewInvoice("tok-5", 1, 300, "EUR", "", "sandbox", InvoiceKind.CHECKOUT, T0)
    )
    await repo.transition(
        Transition(plain.id, frozenset({InvoiceStatus.PENDING}), InvoiceStatus.PAID, T0, paid_at=T0)
    )
    await repo.create_invoice(NewInvoice("tok-6", 1, 999, "EUR", "", "sandbox", InvoiceKind.CHECKOUT, T0))
    start = T0.replace(hour=0, minute=0)
    assert await repo.counter_day(1, start, start + timedelta(days=1)) == [
        DaySales("EUR", count=3, total_minor=1100 + 500 + 300, tips_minor=100)
    ]
    assert await repo.counter_day(3, start, start + timedelta(days=1)) == []


async def test_tip_percentages_default_and_change(repo: Repository) -> None:
    assert await repo.tip_percents(7) == (5, 10, 15)
    await repo.set_tip_percents(7, (3, 6, 9))
    await repo.set_tip_percents(7, (4, 8, 12))
    assert await repo.tip_percents(7) == (4, 8, 12)
    assert await repo.tip_percents(8) == (5, 10, 15)


# -- the arithmetic ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "percent", "tip"),
    [(1250, 5, 63), (1250, 10, 125), (1250, 15, 188), (1, 10, 0), (5, 10, 1), (99_999_999, 15, 15_000_000)],
)
def test_percent_tips_round_half_up_to_the_minor_unit(amount: int, percent: int, tip: int) -> None:
    assert percent_tip(amount, percent) == tip


def test_round_up_goes_to_the_next_whole_unit() -> None:
    assert round_up_tip(1250, "EUR") == 50
    assert round_up_tip(1300, "EUR") == 100  # already whole: one more
    assert round_up_tip(1234, "JPY") == 66  # no decimals: the next hundred
    assert round_up_tip(1234, "KWD") == 766  # three decimals: the next whole dinar


def test_a_tip_must_be_one_the_merchant_offers() -> None:
    assert choose_tip(1000, "EUR", "none", None, (5, 10, 15)) == Tip(TipKind.NONE, 0)
    assert choose_tip(1000, "EUR", "percent", 10, (5, 10, 15)) == Tip(TipKind.PERCENT, 100, 10)
    for kind, percent in (("percent", 12), ("percent", "10"), ("percent", True), ("gift", 5)):
        with pytest.raises(TipError):
            choose_tip(1000, "EUR", kind, percent, (5, 10, 15))


def test_percentages_from_the_settings_command() -> None:
    assert parse_percents(["5", "10%", "15"]) == (5, 10, 15)
    for words in (["5", "10"], ["0", "1", "2"], ["5", "10", "101"], ["5", "x", "1"], ["٥", "1", "2"], ["1.5", "2", "3"]):
        with pytest.raises(TipError):
            parse_percents(words)


def test_the_local_day_starts_at_local_midnight() -> None:
    now = datetime(2030, 1, 2, 23, 30, tzinfo=UTC)
    assert day_start(now, timedelta(0)) == datetime(2030, 1, 2, tzinfo=UTC)
    # 00:30 on the 3rd in Berlin (UTC+1): the day began at 23:00 UTC on the 2nd.
    assert day_start(now, timedelta(hours=1)) == datetime(2030, 1, 2, 23, tzinfo=UTC)
    # 18:30 on the 2nd in New York (UTC-5).
    assert day_start(now, timedelta(hours=-5)) == datetime(2030, 1, 2, 5, tzinfo=UTC)
