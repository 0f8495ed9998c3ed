"""The ledger (issue 15): storage on SQLite and PostgreSQL (append-only, compare-and-set per
invoice, the shops' settings, the migration's backfill of paid invoices), the gateways'
settlement fields, the periods of /report, and a property: for any history of gateway
reports (underpaid, paid, repeated, at the same time), the ledger's sums - and its CSV and
XLSX exports - equal the sum of what was paid, to the cent."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from bot.domain.ledger import (
    Booking,
    LedgerKind,
    NewLedgerEntry,
    Settlement,
    booking_for,
    implied_rate,
    invoice_totals,
    next_entry,
    sum_entries,
)
from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice, Transition
from bot.domain.money import to_decimal
from bot.domain.shop import PeriodError, ShopSettings, close_due, parse_period
from bot.gateways.base import PaymentState, SessionStatus
from bot.gateways.settlement import miraclepay_settlement, mixpay_settlement
from bot.services.exports import ledger_csv, ledger_xlsx
from bot.services.ledger import LedgerBook
from storage.base import Repository
from storage.migrations import MIGRATIONS
from storage.sql import SqlRepository
from tests.reliability_stats import examples, on_loop, soak_enabled
from tests.storage_fixtures import Backend, backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
_tokens = itertools.count(1)


async def new_invoice(
    repo: Repository, amount: int = 1250, merchant: int = 7, currency: str = "EUR"
) -> Any:
    return await repo.create_invoice(
        NewInvoice(
            public_token=f"tok{next(_tokens)}",
            merchant_id=merchant,
            amount_minor=amount,
            currency=currency,
            description="Coffee",
            gateway="mion",
            kind=InvoiceKind.CHECKOUT,
            created_at=T0,
        )
    )


def entry(invoice_id: int, seq: int, fiat: int, *, at: datetime = T0, merchant: int = 7) -> Any:
    return NewLedgerEntry(
        invoice_id=invoice_id,
        merchant_id=merchant,
        cashier_id=merchant,
        seq=seq,
        kind=LedgerKind.PAYMENT if seq == 0 else LedgerKind.CORRECTION,
        gateway="mion",
        currency="EUR",
        fiat_minor=fiat,
        occurred_at=at,
        recorded_at=at,
        crypto_amount=Decimal("0.000123456789"),
        crypto_asset="BTC",
        rate=implied_rate(fiat, "EUR", Decimal("0.000123456789")),
    )


# -- storage ------------------------------------------------------------------------------------
async def test_ledger_is_append_only_and_one_writer_wins_each_seq(repo: Repository) -> None:
    invoice = await new_invoice(repo)
    assert await repo.ledger_append(entry(invoice.id, 0, 600))
    assert not await repo.ledger_append(entry(invoice.id, 0, 999))  # the same seq: refused
    assert await repo.ledger_append(entry(invoice.id, 1, 650))
    stored = await repo.ledger_for_invoice(invoice.id)
    assert [(e.seq, e.fiat_minor, e.kind) for e in stored] == [
        (0, 600, LedgerKind.PAYMENT),
        (1, 650, LedgerKind.CORRECTION),
    ]
    assert stored[0].crypto_amount == Decimal("0.000123456789")  # exact, as text
    assert stored[0].rate == implied_rate(600, "EUR", Decimal("0.000123456789"))
    assert stored[0].description == "Coffee" and stored[0].occurred_at == T0


async def test_ledger_between_one_shop_and_a_window(repo: Repository) -> None:
    mine, other = await new_invoice(repo), await new_invoice(repo, merchant=8)
    await repo.ledger_append(entry(mine.id, 0, 100, at=T0))
    await repo.ledger_append(entry(mine.id, 1, 5, at=T0 + timedelta(days=1)))
    await repo.ledger_append(entry(other.id, 0, 300, merchant=8))
    day = await repo.ledger_between(7, T0, T0 + timedelta(hours=1))
    assert [e.fiat_minor for e in day] == [100]
    assert [e.fiat_minor for e in await repo.ledger_between(7, None, T0 + timedelta(days=2))] == [
        100,
        5,
    ]
    assert len(await repo.ledger_between(None, None, T0 + timedelta(days=2))) == 3


async def test_paid_transition_books_its_entry_in_the_same_transaction(repo: Repository) -> None:
    invoice = await new_invoice(repo)
    change = Transition(
        invoice_id=invoice.id,
        expected=frozenset({InvoiceStatus.PENDING}),
        new_status=InvoiceStatus.PAID,
        at=T0,
        ledger=entry(invoice.id, 0, 1250),
    )
    assert await repo.transition(change) is not None
    assert await repo.transition(change) is None  # already paid: nothing more booked
    assert [e.fiat_minor for e in await repo.ledger_for_invoice(invoice.id)] == [1250]


async def test_shop_settings_and_each_close_once(repo: Repository) -> None:
    assert await repo.get_shop_settings(5) == ShopSettings(merchant_id=5)
    saved = await repo.set_shop_settings(5, timezone="Europe/Berlin")
    assert saved == ShopSettings(5, "Europe/Berlin", None, None)
    saved = await repo.set_shop_settings(5, closing_hour=22)
    assert saved == ShopSettings(5, "Europe/Berlin", 22, None)
    assert await repo.mark_closed(5, date(2030, 1, 2))
    assert not await repo.mark_closed(5, date(2030, 1, 2))  # another instance: no second one
    assert not await repo.mark_closed(5, date(2030, 1, 1))
    assert await repo.mark_closed(5, date(2030, 1, 3))
    assert [s.merchant_id for s in await repo.list_shop_settings()] == [5]
    assert (await repo.set_shop_settings(5, timezone=None)).timezone is None


async def test_migration_14_backfills_the_invoices_paid_before_it(
    backend: Backend, repo: Repository
) -> None:
    paid = await new_invoice(repo, amount=1999)
    await repo.transition(
        Transition(paid.id, frozenset({InvoiceStatus.PENDING}), InvoiceStatus.PAID, at=T0)
    )
    await new_invoice(repo, amount=500)  # pending: nothing to book
    sql = cast(SqlRepository[Any], repo)
    # The database as it was before migration 14 (its tables and its record gone).
    async with sql._transaction() as db:
        await sql._changes(db, "DROP TABLE ledger_entries")
        await sql._changes(db, "DROP TABLE shop_settings")
        await sql._changes(db, "DELETE FROM schema_version WHERE version = 14")
    assert 14 in {m.version for m in MIGRATIONS}
    await repo.migrate()
    [booked] = await repo.ledger_between(None, None, T0 + timedelta(days=1))
    assert (booked.invoice_id, booked.fiat_minor, booked.note) == (paid.id, 1999, "backfill")
    assert booked.occurred_at == T0 and booked.kind is LedgerKind.PAYMENT
    assert await backend.fetchval("SELECT COUNT(*) FROM invoices") == 2  # none lost


# -- the gateways' fields -------------------------------------------------------------------------
def test_mixpay_settlement_is_read_exactly_from_the_documented_fields() -> None:
    data = {
        "status": "success",
        "quoteAmount": "10.00",
        "paymentAmount": "0.000105123456789012",
        "paymentSymbol": "ETH",
        "payableAmount": "0.000105123456789012",
        "settleStatus": "success",
        "settleAmount": "9.95",
        "settleSymbol": "USDT",
    }
    s = mixpay_settlement(data, "USD")
    assert s == Settlement(
        fiat_minor=1000,
        crypto_amount=Decimal("0.000105123456789012"),
        crypto_asset="ETH",
        net_amount=Decimal("9.95"),
        net_asset="USDT",
    )
    short = mixpay_settlement(
        {**data, "status": "paid_less", "paymentAmount": "0.000035041152263004"}, "USD"
    )
    assert short.fiat_minor == 333  # a third of 10.00, rounded down to the cent
    pending = mixpay_settlement({**data, "settleStatus": "pending", "paymentAmount": 1.5}, "USD")
    assert pending.net_amount is None and pending.crypto_amount is None  # never a float
    assert miraclepay_settlement({"blockchainId": "eth", "status": "successful"}).crypto_asset == (
        "eth"
    )


def test_booking_of_each_gateway() -> None:
    mion = booking_for(500, "EUR", {"amount_msat": 25_000_000}, None, paid_in_full=True)
    assert mion == Booking(500, crypto_amount=Decimal("0.00025"), crypto_asset="BTC")
    miracle = booking_for(
        2050,
        "USD",
        {"checkout_amount_minor": 2112, "commission_minor": 62},
        Settlement(crypto_asset="btc"),
        paid_in_full=True,
    )
    assert miracle == Booking(
        2050, crypto_asset="btc", fee_minor=62, net_amount=Decimal("20.50"), net_asset="USD",
        charged_minor=2112,
    )  # fmt: skip
    assert booking_for(1000, "EUR", {}, Settlement(fiat_minor=0), paid_in_full=False) is None
    tipped = booking_for(1000, "EUR", {"tip_minor": 150}, None, paid_in_full=True)
    assert tipped is not None and tipped.tip_minor == 150


# -- periods and the close --------------------------------------------------------------------------
def test_periods_are_local_days() -> None:
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 on Dec 1 in Berlin
    today = parse_period([], now, BERLIN)
    assert today.first == date(2026, 12, 1)
    assert today.start == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert parse_period(["today"], now, UTC).first == date(2026, 11, 30)
    week = parse_period(["week"], now, BERLIN)
    assert (week.first, week.last) == (date(2026, 11, 25), date(2026, 12, 1))
    spring = parse_period(["2026-03-29"], now, BERLIN)  # the day clocks go forward: 23 hours
    assert spring.start is not None and spring.end - spring.start == timedelta(hours=23)
    assert parse_period(["all"], now, BERLIN).start is None
    for words, code in (
        (["2026-02-30"], "bad_date"),
        (["2026-12-02", "2026-12-01"], "reversed"),
        (["1999-01-01"], "bad_date"),
        (["2000-01-01", "2030-12-31"], "too_long"),
        (["week", "2026-12-01"], "unknown"),
        (["1", "2", "3"], "unknown"),
        (["２０２６-１１-３０"], "unknown"),
    ):
        with pytest.raises(PeriodError) as caught:
            parse_period(words, now, BERLIN)
        assert caught.value.code == code


def test_close_is_due_once_after_the_closing_hour() -> None:
    shop = ShopSettings(1, "Europe/Berlin", 22)
    before = datetime(2026, 12, 1, 20, 59, tzinfo=UTC)  # 21:59 in Berlin
    after = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    assert close_due(shop, before, BERLIN) is None
    assert close_due(shop, after, BERLIN) == date(2026, 12, 1)
    sent = ShopSettings(1, "Europe/Berlin", 22, date(2026, 12, 1))
    assert close_due(sent, after, BERLIN) is None
    assert close_due(ShopSettings(1), after, BERLIN) is None
    midnight = ShopSettings(1, "Europe/Berlin", 0)  # closes the day that just ended
    assert close_due(midnight, datetime(2026, 11, 30, 23, 5, tzinfo=UTC), BERLIN) == date(
        2026, 11, 30
    )


# -- the property --------------------------------------------------------------------------------
step = st.one_of(
    st.tuples(st.just("under"), st.integers(1, 999), st.booleans()),
    st.tuples(st.just("paid"), st.integers(0, 300), st.booleans()),
)
histories = st.lists(
    st.tuples(
        st.integers(1, 10**7),  # the amount, minor units
        st.sampled_from(["EUR", "USD", "JPY", "KWD"]),
        st.lists(step, max_size=5),
    ),
    min_size=1,
    max_size=6,
)
_merchants = itertools.count(1000)


async def play(repo: Repository, history: list[Any]) -> tuple[int, dict[str, int], dict[str, int]]:
    """Feed the reports to the ledger as the status sync does: an underpayment appended on
    its own, a payment with its transition; a `True` flag plays the report twice at once."""
    merchant = next(_merchants)
    book = LedgerBook(repo)
    paid_total: dict[str, int] = {}
    tips: dict[str, int] = {}
    for amount, currency, steps in history:
        invoice = await new_invoice(repo, amount=amount, merchant=merchant, currency=currency)
        expected = 0
        tip = 0
        for kind, value, twice in steps:
            copies = 2 if twice else 1
            if kind == "under":
                fiat = max(1, amount * value // 1000)
                status = SessionStatus(PaymentState.UNDERPAID, "paid_less", paid_amount_minor=fiat)
                await asyncio.gather(
                    *(book.book_underpayment(invoice, status, T0) for _ in range(copies))
                )
                expected = fiat
                continue
            tip = min(value, amount)
            invoice = await repo.update_payment(invoice.id, {"tip_minor": tip}, T0)
            status = SessionStatus(PaymentState.PAID, "success", paid_at=T0)

            async def pay(invoice: Any = invoice, status: SessionStatus = status) -> None:
                booked = await book.entry_for(invoice, status, paid_in_full=True, now=T0)
                await repo.transition(
                    Transition(
                        invoice.id,
                        frozenset({InvoiceStatus.PENDING}),
                        InvoiceStatus.PAID,
                        at=T0,
                        ledger=booked,
                    )
                )

            await asyncio.gather(*(pay() for _ in range(copies)))
            expected = amount
            break  # nothing leaves paid: later reports are not applied (StatusSync)
        if expected:
            paid_total[currency] = paid_total.get(currency, 0) + expected
            if expected == amount and tip:
                tips[currency] = tips.get(currency, 0) + tip
    return merchant, paid_total, tips


async def test_ledger_sums_equal_the_payments_for_any_history(
    repo: Repository, request: pytest.FixtureRequest
) -> None:
    loop = asyncio.get_running_loop()
    seen = {"examples": 0}

    @settings(
        max_examples=examples(request.config, 40, 1_000),
        derandomize=not soak_enabled(request.config),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(histories)
    def check(history: list[Any]) -> None:
        merchant, paid, tips = on_loop(loop, play(repo, history))
        entries = on_loop(loop, repo.ledger_between(merchant, None, T0 + timedelta(days=1)))
        totals = sum_entries(entries)
        assert {c: t.fiat_minor for c, t in totals.items() if t.fiat_minor} == paid
        assert {c: t.tip_minor for c, t in totals.items() if t.tip_minor} == tips
        # Each invoice's entries: consecutive seq, one payment first, corrections after.
        by_invoice: dict[int, list[Any]] = {}
        for e in entries:
            by_invoice.setdefault(e.invoice_id, []).append(e)
        for group in by_invoice.values():
            group.sort(key=lambda e: e.seq)
            assert [e.seq for e in group] == list(range(len(group)))
            assert [e.kind for e in group][:1] == [LedgerKind.PAYMENT]
            assert invoice_totals(group) is not None
        # The exports carry the same money, to the cent (CSV text, XLSX numbers).
        rows = list(csv.DictReader(io.StringIO(ledger_csv(entries, BERLIN))))
        sheet = load_workbook(io.BytesIO(ledger_xlsx(entries, BERLIN)), read_only=True).active
        assert sheet is not None
        cells = list(sheet.iter_rows(values_only=True))
        header = [str(v) for v in cells[0]]
        for source in (rows, [dict(zip(header, r, strict=True)) for r in cells[1:]]):
            sums: dict[str, Decimal] = {}
            for row in source:
                sums[str(row["currency"])] = sums.get(str(row["currency"]), Decimal(0)) + Decimal(
                    str(row["amount"])
                )
            assert {c: v for c, v in sums.items() if v} == {
                c: to_decimal(m, c) for c, m in paid.items()
            }
        seen["examples"] += 1

    await asyncio.to_thread(check)
    assert seen["examples"] >= 20


def test_next_entry_books_nothing_twice() -> None:
    target = Booking(1000, tip_minor=100, crypto_amount=Decimal("0.1"), crypto_asset="BTC")
    kw: dict[str, Any] = {
        "invoice_id": 1, "merchant_id": 1, "cashier_id": 1, "gateway": "mion",
        "currency": "EUR", "occurred_at": T0, "recorded_at": T0,
    }  # fmt: skip
    first = next_entry([], target, **kw)
    assert first is not None and first.kind is LedgerKind.PAYMENT
    assert first.rate == Decimal(100)  # 10.00 EUR for 0.1 BTC
    assert next_entry([first], target, **kw) is None
    more = next_entry([first], Booking(1200, 100, Decimal("0.12"), "BTC"), **kw)
    assert more is not None and (more.seq, more.fiat_minor, more.tip_minor) == (1, 200, 0)
    assert more.crypto_amount == Decimal("0.02") and more.kind is LedgerKind.CORRECTION
