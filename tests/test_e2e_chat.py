"""End to end over the Bot API emulator, in English and German: the chat at a busy counter
(issue 16, points 3, 7, 8, 9 and 11).

Amounts as people write them, a bare amount made an invoice in one tap, one reply per
mistake; sharing an invoice; no setting names or English for merchants; the menu of what
works; refusals that name the command and stay out of groups; merchants told when an admin
adds or removes them, also by @username.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.domain.models import InvoiceKind, InvoiceStatus
from testkit.mion import MionSimulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import Harness

MION_KEY = "mion-test-key-0123456789"


@pytest.fixture
async def mion_bot(harness: Harness) -> AsyncIterator[Harness]:
    """The bot with Mion (EUR only) as its default gateway, and the sandbox."""
    async with MionSimulator(api_key=MION_KEY) as sim:
        await harness.start(mion_api_url=sim.url, mion_api_key=MION_KEY, default_gateway="mion")
        yield harness


async def replies_after(
    harness: Harness, user: EmuUser, text: str, settle: float = 0.3
) -> list[MessageRecord]:
    """Send `text`; every new message of the bot in that chat once it has answered and a
    short quiet time passed (to count the replies)."""
    import asyncio

    before = len(harness.emu.bot_messages(user))
    await harness.emu.send_message(user, text)
    await harness.emu.wait_for(lambda: len(harness.emu.bot_messages(user)) > before)
    await asyncio.sleep(settle)
    return harness.emu.bot_messages(user)[before:]


# -- 3. amounts as people write them --------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "minor", "currency"),
    [
        ("/invoice €3.50 Tea", 350, "EUR"),
        ("/invoice 3.50€ Tea", 350, "EUR"),
        ("/invoice 3,50 € Tea", 350, "EUR"),
        ("/invoice 12,50€", 1250, "EUR"),
        ("/invoice 1,234.50 Lamp", 123450, "EUR"),
        ("/invoice 1.234,50 Lamp", 123450, "EUR"),
        ("/invoice 1,234 Lamp", 123400, "EUR"),
        ("/invoice $5 Tea", 500, "USD"),
        ("/invoice £2.20", 220, "GBP"),
    ],
)
async def test_amounts_as_english_merchants_write_them(
    tillbot: Harness, text: str, minor: int, currency: str
) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, text)
    assert (invoice.amount_minor, invoice.currency) == (minor, currency), reply.content
    assert "Tea" not in text or invoice.description == "Tea"


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("/invoice 1.234 Lampe", 123400),  # a German thousands group
        ("/invoice 1.234,50 € Lampe", 123450),
        ("/invoice €3,50 Kaffee", 350),
        ("/invoice 12,50€ Kaffee", 1250),
    ],
)
async def test_amounts_as_german_merchants_write_them(
    tillbot: Harness, text: str, minor: int
) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant2, text)
    assert (invoice.amount_minor, invoice.currency) == (minor, "EUR"), reply.content
    assert invoice.description in ("Lampe", "Kaffee")
    assert "€" in reply.content and "," in reply.content  # shown the German way


async def test_a_currency_the_gateway_cannot_take_is_refused_by_name(tillbot: Harness) -> None:
    [reply] = await replies_after(tillbot, tillbot.merchant, "/invoice 12 BTC Lamp")
    assert reply.content == (
        "Sandbox cannot take BTC; it takes currencies such as EUR, USD or GBP."
    )
    [reply] = await replies_after(tillbot, tillbot.merchant2, "/invoice 12 BTC Lampe")
    assert reply.content == (
        "Sandbox kann BTC nicht annehmen; es nimmt Währungen wie EUR, USD oder GBP."
    )
    assert await tillbot.services.repo.list_invoices(tillbot.merchant.id, limit=5) == []


async def test_mion_names_the_currency_it_takes(mion_bot: Harness) -> None:
    [reply] = await replies_after(mion_bot, mion_bot.merchant, "/invoice 12 USD Lamp")
    assert reply.content == "Mion cannot take USD; it takes EUR."
    [reply] = await replies_after(mion_bot, mion_bot.merchant2, "/invoice 12 BTC Lampe")
    assert reply.content == "Mion kann kein BTC annehmen, nur EUR."


async def test_one_reply_per_mistake_in_both_languages(tillbot: Harness) -> None:
    [reply] = await replies_after(tillbot, tillbot.merchant, "/invoice 1,23,4 Tea")
    assert reply.content.startswith("“1,23,4” is not an amount I understand.\nWrite it like")
    [reply] = await replies_after(tillbot, tillbot.merchant, "/invoice €5 USD Tea")
    assert reply.content.startswith("Two currencies, EUR and USD: please write one.\n")
    [reply] = await replies_after(tillbot, tillbot.merchant2, "/invoice 1,234 Lampe")
    assert reply.content.startswith(
        "Ein Betrag darf höchstens 2 Nachkommastellen haben.\nSchreib es so"
    )
    assert await tillbot.services.repo.list_invoices(tillbot.merchant.id, limit=5) == []


async def test_a_bare_amount_offers_an_invoice_or_a_counter_qr(tillbot: Harness) -> None:
    emu, maria = tillbot.emu, tillbot.merchant
    [offer] = await replies_after(tillbot, maria, "3.50")
    assert offer.content == "€3.50: what shall I make of it?"
    assert [b["text"] for b in offer.buttons] == ["🧾 Invoice link", "⚡ Counter QR"]
    before = len(emu.bot_messages(maria))
    await emu.press_button(maria, offer, "⚡ Counter QR")
    shown = await emu.wait_for(
        lambda: len(emu.bot_messages(maria)) > before and emu.bot_messages(maria)[before]
    )
    assert shown.photo is not None and "€3.50" in shown.content
    await emu.wait_for(lambda: not offer.buttons)  # one tap: the offer is used up
    [invoice] = await tillbot.services.repo.list_invoices(maria.id, limit=5)
    assert (invoice.kind, invoice.amount_minor) == (InvoiceKind.LIGHTNING, 350)

    [offer] = await replies_after(tillbot, tillbot.merchant2, "12,50 €")
    assert offer.content == "12,50 €: was soll ich daraus machen?"
    await emu.press_button(tillbot.merchant2, offer, "🧾 Rechnungslink")
    link = await emu.wait_for_message(
        tillbot.merchant2,
        lambda m: "Rechnung" in m.content and "12,50 €" in m.content and m is not offer,
    )
    assert link.photo is None
    [made] = await tillbot.services.repo.list_invoices(tillbot.merchant2.id, limit=5)
    assert (made.kind, made.amount_minor, made.status) == (
        InvoiceKind.CHECKOUT,
        1250,
        InvoiceStatus.PENDING,
    )


async def test_a_bare_amount_too_large_or_from_a_customer(tillbot: Harness) -> None:
    [reply] = await replies_after(tillbot, tillbot.merchant, "99999999")
    assert reply.content.startswith("The amount can be at most") and not reply.buttons
    [reply] = await replies_after(tillbot, tillbot.customer, "3.50")
    assert "Commands" in reply.content and not reply.buttons  # customers get the help


async def test_a_forged_amount_button_makes_nothing_for_a_stranger(tillbot: Harness) -> None:
    emu = tillbot.emu
    [offer] = await replies_after(tillbot, tillbot.merchant, "5")
    data: Any = offer.buttons[0]["callback_data"]
    query = await emu.press_button(tillbot.stranger, offer, data)
    refusal = await emu.wait_for_callback_answer(query.id)
    assert refusal["text"].startswith("Sorry, /invoice is for merchants only.")
    assert await tillbot.services.repo.list_invoices(tillbot.stranger.id, limit=5) == []
    assert offer.buttons  # still there for Maria
