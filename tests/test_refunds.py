"""Refunds (issue 15, point 6): the state machine and its checks; storage on SQLite and
PostgreSQL (no refund above what was paid, also when two are marked at once; each state
change a compare-and-set, the refund's ledger entry written with it); and a property: for
any history of payments and refunds, the ledger - and its CSV and XLSX exports - sum to the
payments less the refunds made, and no invoice's refunds ever add up to more than was paid."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from bot.domain.drafts import InputError
from bot.domain.ledger import Booking, LedgerKind, NewLedgerEntry, next_entry, sum_entries
from bot.domain.models import InvoiceKind, NewInvoice
from bot.domain.money import to_decimal
from bot.domain.refunds import (
    ALLOWED_MOVES,
    NewRefund,
    RefundState,
    check_amount,
    clean_address,
    clean_reason,
    clean_tx_ref,
    new_refund_token,
    refund_token_in,
    sources_of,
)
from bot.services.exports import ledger_csv, ledger_xlsx
from storage.base import Repository
from tests.reliability_stats import examples, on_loop, soak_enabled
from tests.storage_fixtures import backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
_tokens = itertools.count(1)
_shops = itertools.count(5000)


async def new_invoice(repo: Repository, shop: int, amount: int = 1000, currency: str = "EUR") -> Any:
    return await repo.create_invoice(
        NewInvoice(
            public_token=f"rfnd{next(_tokens)}",
            merchant_id=shop,
            amount_minor=amount,
            currency=currency,
            description="Lamp",
            gateway="mion",
            kind=InvoiceKind.CHECKOUT,
            created_at=T0,
        )
    )


def payment(invoice: Any, seq: int, fiat: int) -> NewLedgerEntry:
    return NewLedgerEntry(
        invoice_id=invoice.id,
        merchant_id=invoice.merchant_id,
        cashier_id=invoice.merchant_id,
        seq=seq,
        kind=LedgerKind.PAYMENT if seq == 0 else LedgerKind.CORRECTION,
        gateway="mion",
        currency=invoice.currency,
        fiat_minor=fiat,
        occurred_at=T0,
        recorded_at=T0,
    )


def marked(invoice: Any, amount: int, by: int | None = None) -> NewRefund:
    return NewRefund(
        invoice_id=invoice.id,
        shop_id=invoice.merchant_id,
        amount_minor=amount,
        currency=invoice.currency,
        reason="Broken",
        token=new_refund_token(),
        requested_by=by or invoice.merchant_id,
        created_at=T0,
    )


# -- the domain ----------------------------------------------------------------------------------
def test_the_state_machine_moves_only_forward() -> None:
    assert ALLOWED_MOVES[RefundState.REFUNDED] == ALLOWED_MOVES[RefundState.CANCELLED] == set()
    assert sources_of(RefundState.REFUNDED) == {RefundState.DUE, RefundState.ADDRESS_GIVEN}
    assert sources_of(RefundState.ADDRESS_GIVEN) == {RefundState.DUE, RefundState.ADDRESS_GIVEN}
    assert RefundState.DUE not in {t for targets in ALLOWED_MOVES.values() for t in targets}


def test_amounts_reasons_references_addresses_and_tokens_are_checked() -> None:
    check_amount(500, 500, "EUR")
    for amount, left, code in ((501, 500, "refund_too_much"), (0, 500, "amount_not_positive"),
                               (1, 0, "refund_nothing_left")):  # fmt: skip
        with pytest.raises(InputError) as caught:
            check_amount(amount, left, "EUR")
        assert caught.value.code == code
    assert clean_reason("  broken\n cup \x1b[31m") == "broken cup"
    for bad_reason in ("", " \n ", "x" * 201):
        with pytest.raises(InputError):
            clean_reason(bad_reason)
    assert clean_tx_ref(" 0xabc ") == "0xabc"
    with pytest.raises(InputError):
        clean_tx_ref("y" * 201)
    for address in ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "chris@getalby.com",
                    "0x52908400098527886E0F7030069857D2E4169EE7", "lnbc10u1p3xyz",
                    "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh?dt=12345"):  # fmt: skip
        assert clean_address(f" {address} ") == address
    for bad in ("ab", "two words", "<script>", "x" * 1001, "bc1q\u200bhidden", "адрес"):
        with pytest.raises(InputError):
            clean_address(bad)
    token = new_refund_token()
    assert refund_token_in(f"rf_{token}") == token
    assert refund_token_in("rf_short") is None and refund_token_in(f"r_{token}") is None


def test_a_later_gateway_report_never_books_a_refund_back() -> None:
    kw: dict[str, Any] = {
        "invoice_id": 1, "merchant_id": 1, "cashier_id": 1, "gateway": "mion",
        "currency": "EUR", "occurred_at": T0, "recorded_at": T0,
    }  # fmt: skip
    paid = next_entry([], Booking(1000), **kw)
    assert paid is not None
    refund = NewLedgerEntry(**{**kw, "seq": 1, "kind": LedgerKind.REFUND, "fiat_minor": -400})
    assert next_entry([paid, refund], Booking(1000), **kw) is None  # the same report again
    more = next_entry([paid, refund], Booking(1200), **kw)
    assert more is not None and (more.seq, more.fiat_minor, more.kind) == (
        2, 200, LedgerKind.CORRECTION,
    )  # fmt: skip


# -- storage -------------------------------------------------------------------------------------
async def test_no_refund_above_what_was_paid_also_when_two_come_at_once(repo: Repository) -> None:
    shop = next(_shops)
    invoice = await new_invoice(repo, shop)
    assert await repo.refund_create(marked(invoice, 1)) is None  # nothing paid yet
    assert await repo.ledger_append(payment(invoice, 0, 600))
    assert await repo.ledger_append(payment(invoice, 1, 400))  # made good: 1000 arrived
    first = await repo.refund_create(marked(invoice, 700))
    assert first is not None and first.state is RefundState.DUE
    assert first.invoice_number == invoice.number and first.gateway == "mion"
    assert await repo.refund_create(marked(invoice, 301)) is None
    # Two managers at once, each asking for the 300 left: exactly one gets it.
    results = await asyncio.gather(
        *(repo.refund_create(marked(invoice, 300, by=shop + n)) for n in range(4))
    )
    assert len([r for r in results if r is not None]) == 1
    assert sum(r.amount_minor for r in await repo.refunds_of_invoice(invoice.id)) == 1000
    # A cancelled refund gives its amount back.
    assert await repo.refund_cancel(first.id, shop, T0) is not None
    again = await repo.refund_create(marked(invoice, 700))
    assert again is not None
    assert await repo.invoice_by_number(shop, invoice.number) == invoice
    assert await repo.invoice_by_number(shop + 1, invoice.number) is None


async def test_state_changes_are_compare_and_set_with_the_ledger_entry(
    repo: Repository,
) -> None:
    shop = next(_shops)
    invoice = await new_invoice(repo, shop)
    assert await repo.ledger_append(payment(invoice, 0, 1000))
    refund = await repo.refund_create(marked(invoice, 250))
    assert refund is not None
    # The customer: awaited, then the address.
    later = T0 + timedelta(hours=1)
    waiting = await repo.refund_await_address(refund.id, 42, later, T0)
    assert waiting is not None and waiting.customer_id == 42
    assert (await repo.refund_awaiting(42, T0)) == waiting
    assert await repo.refund_awaiting(42, later) is None  # the hour is over
    assert await repo.refund_by_token(refund.token) == waiting
    given_ = await repo.refund_set_address(refund.id, "bc1qaddress", 42, T0)
    assert given_ is not None and given_.state is RefundState.ADDRESS_GIVEN
    assert given_.awaiting_until is None
    # Two managers record it at once: one wins, one ledger entry.
    done = await asyncio.gather(
        repo.refund_settle(refund.id, "tx-a", shop, "mion", T0),
        repo.refund_settle(refund.id, "tx-b", shop, "mion", T0),
        repo.refund_cancel(refund.id, shop, T0),
    )
    winners = [r for r in done if r is not None]
    assert len(winners) == 1
    entries = await repo.ledger_for_invoice(invoice.id)
    if winners[0].state is RefundState.REFUNDED:
        assert winners[0].ledger_seq == 1 and winners[0].tx_ref in ("tx-a", "tx-b")
        assert [(e.seq, e.kind, e.fiat_minor) for e in entries] == [
            (0, LedgerKind.PAYMENT, 1000),
            (1, LedgerKind.REFUND, -250),
        ]
        assert entries[1].note.startswith(f"refund {refund.id}: tx-")
    else:
        assert len(entries) == 1
    # Nothing moves a closed refund.
    assert await repo.refund_set_address(refund.id, "other", 42, T0) is None
    assert await repo.refund_cancel(refund.id, shop, T0) is None
    assert await repo.refund_settle(refund.id, "tx-c", shop, "mion", T0) is None
    assert await repo.refund_await_address(refund.id, 43, later, T0) is None
    assert len(await repo.ledger_for_invoice(invoice.id)) == len(entries)


# -- the property ------------------------------------------------------------------------------
refund_step = st.tuples(
    st.integers(1, 1200),  # per mille of what was paid (above 1000: more than was paid)
    st.sampled_from(["settle", "cancel", "open", "address"]),
    st.booleans(),  # twice at once
)
histories = st.lists(
    st.tuples(
        st.integers(1, 10**6),  # paid, minor units
        st.sampled_from(["EUR", "USD", "JPY", "KWD"]),
        st.integers(0, 500),  # a correction after the first payment (0: none)
        st.lists(refund_step, max_size=5),
    ),
    min_size=1,
    max_size=5,
)


async def play(repo: Repository, history: list[Any]) -> tuple[int, dict[str, int], dict[int, int]]:
    """Pay each invoice, then mark, settle and cancel refunds as managers would (some twice
    at once); returns the shop, payments less refunds made per currency, and what was paid
    per invoice."""
    shop = next(_shops)
    expected: dict[str, int] = {}
    paid_of: dict[int, int] = {}
    for first, currency, correction, steps in history:
        invoice = await new_invoice(repo, shop, amount=first + correction, currency=currency)
        assert await repo.ledger_append(payment(invoice, 0, first))
        if correction:
            assert await repo.ledger_append(payment(invoice, 1, correction))
        paid = first + correction
        paid_of[invoice.id] = paid
        refunded = 0
        for per_mille, action, twice in steps:
            amount = max(1, paid * per_mille // 1000)
            copies = 2 if twice else 1
            made = await asyncio.gather(
                *(repo.refund_create(marked(invoice, amount)) for _ in range(copies))
            )
            for refund in (r for r in made if r is not None):
                if action == "address":
                    await repo.refund_set_address(refund.id, "bc1qaddr", 9, T0)
                if action in ("settle", "address"):
                    settled = await asyncio.gather(
                        *(
                            repo.refund_settle(refund.id, f"tx{n}", shop, "mion", T0)
                            for n in range(copies)
                        )
                    )
                    assert len([s for s in settled if s is not None]) == 1
                    refunded += amount
                elif action == "cancel":
                    assert await repo.refund_cancel(refund.id, shop, T0) is not None
        expected[currency] = expected.get(currency, 0) + paid - refunded
    return shop, expected, paid_of


async def test_ledger_sums_are_payments_less_refunds_for_any_history(
    repo: Repository, request: pytest.FixtureRequest
) -> None:
    loop = asyncio.get_running_loop()
    seen = {"examples": 0}

    @settings(
        max_examples=examples(request.config, 30, 500),
        derandomize=not soak_enabled(request.config),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(histories)
    def check(history: list[Any]) -> None:
        shop, expected, paid_of = on_loop(loop, play(repo, history))
        entries = on_loop(loop, repo.ledger_between(shop, None, T0 + timedelta(days=1)))
        totals = sum_entries(entries)
        sums = {c: t.fiat_minor for c, t in totals.items()}
        assert {c: v for c, v in sums.items() if v} == {c: v for c, v in expected.items() if v}
        # No invoice's refunds, open or made, above what was paid; refund entries negative.
        for invoice_id, paid in paid_of.items():
            refunds = on_loop(loop, repo.refunds_of_invoice(invoice_id))
            held = sum(
                r.amount_minor for r in refunds if r.state is not RefundState.CANCELLED
            )
            assert 0 <= held <= paid
            made = [e for e in entries if e.invoice_id == invoice_id and e.kind is LedgerKind.REFUND]
            assert all(e.fiat_minor < 0 for e in made)
            assert -sum(e.fiat_minor for e in made) == sum(
                r.amount_minor for r in refunds if r.state is RefundState.REFUNDED
            )
        # The exports carry the same money, to the cent (CSV text, XLSX numbers).
        rows = list(csv.DictReader(io.StringIO(ledger_csv(entries, UTC))))
        sheet = load_workbook(io.BytesIO(ledger_xlsx(entries, UTC)), read_only=True).active
        assert sheet is not None
        cells = list(sheet.iter_rows(values_only=True))
        header = [str(v) for v in cells[0]]
        for source in (rows, [dict(zip(header, r, strict=True)) for r in cells[1:]]):
            by_currency: dict[str, Decimal] = {}
            for row in source:
                currency = str(row["currency"])
                by_currency[currency] = by_currency.get(currency, Decimal(0)) + Decimal(
                    str(row["amount"])
                )
            assert {c: v for c, v in by_currency.items() if v} == {
                c: to_decimal(m, c) for c, m in expected.items() if m
            }
        seen["examples"] += 1

    await asyncio.to_thread(check)
    assert seen["examples"] >= 15
