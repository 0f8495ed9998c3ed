"""Refunds end to end over the Bot API emulator and the gateway simulators (issue 15, point
6): a paid, a tipped and an underpaid-then-failed payment, each refunded in full or in part;
the customer's address through the deep link; the manager records each refund made; the
ledger, /close with its chart and /report's CSV and XLSX parsed back and summed to the cent;
refusals (too much, nothing paid, strangers, customers, bad input, forged buttons) answered
and nothing changed."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.domain.ledger import LedgerKind
from bot.domain.models import Invoice, InvoiceStatus
from bot.domain.refunds import Refund, RefundState
from bot.services.exports import COLUMNS
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import Harness
from tests.test_access import forge, share_token
from tests.test_e2e_books import cents, csv_rows, ledger_of, report, xlsx_rows
from tests.test_e2e_gateways import Gateways, sim_key, sims

__all__ = ["sims"]  # the fixture, imported for pytest

REFUND_LINK = re.compile(r"\?start=rf_([A-Za-z0-9_-]{16})")


@pytest.fixture
async def bot(harness: Harness, sims: Gateways) -> Harness:
    await harness.start(**sims.settings())
    return harness


async def refunds_of(h: Harness, invoice: Invoice) -> list[Refund]:
    return await h.services.repo.refunds_of_invoice(invoice.id)


async def paid(h: Harness, sims: Gateways, text: str, *, tip: int = 0) -> Invoice:
    """An invoice made by Maria and paid in full at Mion (a tip within it, if given)."""
    reply, invoice = await h.invoice(h.merchant, text)
    if tip:
        invoice = await h.services.repo.update_payment(
            invoice.id, {**invoice.payment, "tip_minor": tip}, datetime.now(UTC)
        )
    sims.mion.pay(sim_key(sims.mion, invoice))
    await h.emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    await ledger_of(h, invoice, lambda e: len(e) == 1)
    return invoice


async def say(h: Harness, user: EmuUser, text: str, needle: str) -> MessageRecord:
    """Send `text`; the bot's first new message containing `needle` (payment notices may
    arrive in between)."""
    before = len(h.emu.bot_messages(user))
    await h.emu.send_message(user, text)
    return await h.emu.wait_for(
        lambda: next((m for m in h.emu.bot_messages(user)[before:] if needle in m.content), None),
        timeout=8,
    )


def last_from_bot(h: Harness, user: EmuUser, needle: str) -> MessageRecord | None:
    return next((m for m in reversed(h.emu.bot_messages(user)) if needle in m.content), None)


async def test_refunds_of_a_paid_a_tipped_and_an_underpaid_payment_in_the_books(
    bot: Harness, sims: Gateways
) -> None:
    h, emu, repo = bot, bot.emu, bot.services.repo
    maria, chris = h.merchant, h.customer

    # A paid invoice the customer opened in their chat.
    reply, lamp = await h.invoice(maria, "/invoice 20 Lamp")
    await h.command(chris, f"/start {share_token(reply)}")
    sims.mion.pay(sim_key(sims.mion, lamp))
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    await ledger_of(h, lamp, lambda e: len(e) == 1)
    tipped = await paid(h, sims, "/invoice 12.50 Coffee", tip=250)
    # MixPay: half arrives, then the session fails: money came for an unpaid invoice.
    reply, chair = await h.invoice(maria, "/invoice mixpay 10 Chair")
    key = sim_key(sims.mixpay, chair)
    sims.mixpay.underpay(key)
    [part] = await ledger_of(h, chair, lambda e: len(e) == 1)
    sims.mixpay.expire(key)
    for _ in range(100):
        stored = await repo.get_invoice(chair.id)
        if stored is not None and stored.status is not InvoiceStatus.PENDING:
            break
        await asyncio.sleep(0.1)
    assert stored is not None and stored.status is not InvoiceStatus.PAID
    assert 0 < part.fiat_minor < 1000

    # More than was paid: refused, nothing stored.
    refused = await say(h, maria, f"/refund {lamp.number} 20.01 Broken", "At most")
    assert "At most €20.00 of this invoice can still be refunded." in refused.content
    assert await refunds_of(h, lamp) == []

    # A part: marked; the customer who opened the invoice is asked for an address.
    before = len(emu.bot_messages(chris))
    marked = await say(h, maria, f"/refund {lamp.number} 5 Broken shade", "↩️")
    assert marked.content.startswith("↩️ Refund ")
    assert f"€5.00 of invoice #{lamp.number}" in marked.content
    assert "1 customer who opened the invoice was asked" in marked.content
    [first] = await refunds_of(h, lamp)
    assert (first.amount_minor, first.state, first.reason) == (500, RefundState.DUE, "Broken shade")
    assert REFUND_LINK.search(marked.content).group(1) == first.token  # type: ignore[union-attr]
    question = await emu.wait_for(
        lambda: next(
            (m for m in emu.bot_messages(chris)[before:] if "Where should the money go" in m.content),
            None,
        )
    )
    assert "Refund of €5.00" in question.content and "Broken shade" in question.content
    # The rest (no amount: all that is left), then nothing more.
    rest = await say(h, maria, f"/refund {lamp.number} Customer unhappy", "↩️")
    assert "€15.00 of invoice" in rest.content
    nothing = await say(h, maria, f"/refund {lamp.number} 0.01 Again", "already")
    assert "already refunded or marked for refund" in nothing.content
    assert len(await refunds_of(h, lamp)) == 2

    # The customer: a word that is no address is refused; a reply with one is stored.
    bad = await say(h, chris, "my wallet please", "address")
    assert "does not look like an address" in bad.content
    assert (await repo.refund_get(first.id)).state is RefundState.DUE  # type: ignore[union-attr]
    # The second question came later: reply to the first one to answer it.
    saved_reply = await emu.send_message(chris, "bc1qrefundaddress0001", reply_to=question)
    assert saved_reply is not None
    await emu.wait_for(lambda: last_from_bot(h, chris, "The refund goes to"), timeout=5)
    told = await emu.wait_for(lambda: last_from_bot(h, maria, "📬 Refund"), timeout=5)
    assert "bc1qrefundaddress0001" in told.content
    got = await repo.refund_get(first.id)
    assert got is not None and got.state is RefundState.ADDRESS_GIVEN
    assert (got.address, got.customer_id) == ("bc1qrefundaddress0001", chris.id)

    # The manager records it made: a negative ledger entry; the customer is told.
    done = await say(h, maria, f"/refund done {first.id} txid-9f8e7d", "✅")
    assert done.content.startswith(f"✅ Refund {first.id} recorded: €5.00")
    await emu.wait_for(lambda: last_from_bot(h, chris, "Your refund of €5.00 was sent"), timeout=5)
    entries = await ledger_of(h, lamp, lambda e: len(e) == 2)
    assert entries[1].kind is LedgerKind.REFUND and entries[1].fiat_minor == -500
    again = await say(h, maria, f"/refund done {first.id} txid-other", "no longer open")
    assert f"Refund {first.id} is no longer open: refunded." in again.content
    assert len(await repo.ledger_for_invoice(lamp.id)) == 2

    # The second one is cancelled from /refunds (its amount is refundable again) ...
    listing = await say(h, maria, "/refunds", "open refund")
    assert "1 open refund" in listing.content and "Customer unhappy" in listing.content
    second = next(r for r in await refunds_of(h, lamp) if r.id != first.id)
    query = await emu.press_button(maria, listing, f"✖️ Cancel refund {second.id}")
    answered = await emu.wait_for_callback_answer(query.id)
    assert answered.get("text") == f"✖️ Refund {second.id} cancelled."
    assert (await repo.refund_get(second.id)).state is RefundState.CANCELLED  # type: ignore[union-attr]
    # ... and 4.00 of it marked again, left open for the close.
    await say(h, maria, f"/refund {lamp.number} 4 Scratch", "↩️")

    # The tip back, and what arrived of the failed MixPay payment, both recorded made.
    tip = await say(h, maria, f"/refund {tipped.number} 2,50 EUR Tip returned", "↩️")
    [tip_refund] = await refunds_of(h, tipped)
    assert tip_refund.amount_minor == 250, tip.content
    await say(h, maria, f"/refund done {tip_refund.id} cash at the counter", "✅")
    await say(h, maria, f"/refund {chair.number} Payment incomplete", "↩️")
    [chair_refund] = await refunds_of(h, chair)
    assert chair_refund.amount_minor == part.fiat_minor and chair_refund.currency == "USD"
    await say(h, maria, f"/refund done {chair_refund.id} 0xabc123", "✅")

    # The ledger: each invoice's entries sum to what was paid less what was refunded.
    for invoice, expected in ((lamp, 1500), (tipped, 1000), (chair, 0)):
        held = await repo.ledger_for_invoice(invoice.id)
        assert sum(e.fiat_minor for e in held) == expected, (invoice.number, held)
        assert [e.seq for e in held] == list(range(len(held)))

    # /close: the takings, the refunds made and open, the net, and the chart.
    before = len(emu.bot_messages(maria))
    await emu.send_message(maria, "/close")
    photo = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(maria)[before:] if m.photo), None), timeout=20
    )
    close = emu.bot_messages(maria)[before].content
    assert "Mion: 2 payments · €32.50" in close, close
    assert "Refunded: 2 refunds · €7.50" in close
    assert f"Refunded: 1 refund · {_usd(part.fiat_minor)}" in close
    assert "Net after refunds: €25.00" in close
    assert "Net after refunds: $0.00" in close
    assert "Refunds open: 1 · €4.00" in close
    assert photo.caption is not None and photo.caption.startswith("📈 Sales")

    # /report: CSV and XLSX, one row per entry, refund rows negative with reason and ref.
    files = await report(h, maria, "/report today")
    stamp = f"{datetime.now(UTC):%Y%m%d}"
    rows_csv = csv_rows(files[f"tillbot-ledger-today-{stamp}.csv"])
    rows_xlsx = xlsx_rows(files[f"tillbot-ledger-today-{stamp}.xlsx"])
    assert list(rows_csv[0]) == list(COLUMNS) == list(rows_xlsx[0])
    assert len(rows_csv) == len(rows_xlsx) == 6  # 3 payments (one underpaid), 3 refunds made
    sums: dict[str, dict[str, Decimal]] = {"csv": defaultdict(Decimal), "xlsx": defaultdict(Decimal)}
    for name, rows in (("csv", rows_csv), ("xlsx", rows_xlsx)):
        for row in rows:
            sums[name][str(row["currency"])] += cents(row["amount"])
    net = {"EUR": Decimal("25.00"), "USD": Decimal("0.00")}
    assert dict(sums["csv"]) == dict(sums["xlsx"]) == net
    refunds = [r for r in rows_csv if r["kind"] == "refund"]
    assert sorted(r["amount"] for r in refunds) == sorted(
        ["-5.00", "-2.50", f"-{Decimal(part.fiat_minor) / 100:.2f}"]
    )
    by_reason = {r["refund_reason"]: r["refund_tx"] for r in refunds}
    assert by_reason == {
        "Broken shade": "txid-9f8e7d",
        "Tip returned": "cash at the counter",
        "Payment incomplete": "0xabc123",
    }


def _usd(minor: int) -> str:
    return f"${Decimal(minor) / 100:,.2f}"


async def test_the_customer_answers_through_the_link_and_sees_the_state(
    bot: Harness, sims: Gateways
) -> None:
    h, repo = bot, bot.services.repo
    maria, chris = h.merchant, h.customer
    invoice = await paid(h, sims, "/invoice 8 Tea")  # nobody opened it: no customer known
    marked = await h.command(maria, f"/refund #{invoice.number} 8,00 Cold tea")
    assert "No customer opened this invoice in the bot" in marked.content
    token = REFUND_LINK.search(marked.content).group(1)  # type: ignore[union-attr]
    opened = await h.command(chris, f"/start rf_{token}")
    assert "Refund of €8.00" in opened.content and "waiting for the customer's address" in opened.content
    # Their next message (no reply needed) within the hour is the address.
    saved = await h.command(chris, "chris@walletofsatoshi.com")
    assert "The refund goes to chris@walletofsatoshi.com" in saved.content
    [refund] = await refunds_of(h, invoice)
    assert refund.state is RefundState.ADDRESS_GIVEN
    # Cancelled: the customer is told; the link then shows the state and asks nothing.
    cancelled = await say(h, maria, f"/refund cancel {refund.id}", "✖️")
    assert cancelled.content == f"✖️ Refund {refund.id} cancelled."
    await h.emu.wait_for(lambda: last_from_bot(h, chris, "was cancelled by the seller"))
    shown = await h.command(chris, f"/start rf_{token}")
    assert "State: cancelled" in shown.content and "Where should" not in shown.content
    # A message now is no address any more: the usual help.
    after = await h.command(chris, "another address")
    assert "The refund goes to" not in after.content
    assert (await repo.refund_get(refund.id)).address == "chris@walletofsatoshi.com"  # type: ignore[union-attr]
    unknown = await h.command(h.stranger, "/start rf_AAAAAAAAAAAAAAAA")
    assert "This refund link is not valid" in unknown.content


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/refund", "Write <code>/refund 12 Broken cup</code>"),
        ("/refund abc Broken", "Write <code>/refund 12 Broken cup</code>"),
        ("/refund {n} 3.50", "Please give a reason"),
        ("/refund {n} -3 Broken", "must be greater than zero"),
        ("/refund {n} 3.555 Broken", "at most 2 decimals"),
        ("/refund {n} $3 Broken", "This invoice is in EUR"),
        ("/refund {n} 3 USD Broken", "This invoice is in EUR"),
        ("/refund {n} 3 " + "x" * 201, "at most 200 characters"),
        ("/refund {p} Broken", "Nothing was paid for invoice"),
        ("/refund 999 Broken", "Your shop has no invoice #999."),
        ("/refund done 99999 tx", "Your shop has no refund 99999."),
        ("/refund done 1", "Write <code>/refund done 7"),
        ("/refund cancel x", "Your shop has no refund x."),
        ("/refund cancel", "Write <code>/refund cancel 7</code>"),
    ],
)
async def test_bad_refund_input_gets_a_reply_and_changes_nothing(
    bot: Harness, sims: Gateways, text: str, expected: str
) -> None:
    h, repo = bot, bot.services.repo
    invoice = await paid(h, sims, "/invoice 10 Cup")
    _, pending = await h.invoice(h.merchant, "/invoice 3 Saucer")
    reply = await h.command(h.merchant, text.format(n=invoice.number, p=pending.number))
    content = (reply.html or "") if "<code>" in expected else reply.content
    assert expected in content, content
    assert await refunds_of(h, invoice) == [] and await refunds_of(h, pending) == []
    assert len(await repo.ledger_for_invoice(invoice.id)) == 1


async def test_strangers_customers_and_other_shops_cannot_refund(
    bot: Harness, sims: Gateways
) -> None:
    h, repo = bot, bot.services.repo
    invoice = await paid(h, sims, "/invoice 10 Cup")
    for user in (h.stranger, h.customer):
        refused = await h.command(user, f"/refund {invoice.number} Broken")
        assert "Sorry, /refund is for merchants only." in refused.content
        listing = await h.command(user, "/refunds")
        assert "Sorry, /refunds is for merchants only." in listing.content
    # Another shop: its own numbers, so Maria's invoice is not theirs.
    other = await h.command(h.merchant2, f"/refund {invoice.number} Kaputt")
    assert f"Dein Laden hat keine Rechnung #{invoice.number}." in other.content
    await h.command(h.merchant, f"/refund {invoice.number} 1 Chip")
    [refund] = await refunds_of(h, invoice)
    steal = await h.command(h.merchant2, f"/refund done {refund.id} tx")
    assert f"Dein Laden hat keine Erstattung {refund.id}." in steal.content
    # Forged buttons: a stranger's, another shop's, malformed ones: nothing happens.
    answer = await forge(h, h.stranger, f"rfd:cancel:{refund.id}")
    assert answer.get("text") == "Only the shop's managers and owner can change its refunds."
    answer = await forge(h, h.merchant2, f"rfd:cancel:{refund.id}")
    assert "Erstattung" in str(answer.get("text"))
    for data in ("rfd:cancel:abc", "rfd:cancel:", "rfd:nuke:1", "rfd:cancel:1:2", "rfd:cancel:²"):
        answer = await forge(h, h.merchant, data)
        assert answer.get("text") in (None, "")
    stored = await repo.refund_get(refund.id)
    assert stored is not None and stored.state is RefundState.DUE
    assert len(await repo.ledger_for_invoice(invoice.id)) == 1


async def test_refunds_stay_out_of_groups(bot: Harness, sims: Gateways) -> None:
    h = bot
    invoice = await paid(h, sims, "/invoice 10 Cup")
    group = h.emu.add_group(-4242, "Shop floor")
    for text in (f"/refund {invoice.number} Broken", "/refunds"):
        before = len(h.emu.bot_messages(group))
        await h.emu.send_message(h.merchant, text, group)
        said = await h.emu.wait_for(
            lambda b=before: h.emu.bot_messages(group)[b:] or None  # type: ignore[misc]
        )
        assert "private chat" in said[0].content
    assert await refunds_of(h, invoice) == []
