"""End to end over the Bot API emulator (issue 14, points 3 and 4), in English and German:
receipt images after a payment (their QR leads back to the receipt link, which shows them
again), the merchant's Resend receipt, reusable payment links with a fixed and an open
amount (each customer gets an invoice of their own), the list with sales, disabling one,
and the printable counter card (PNG and PDF)."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import zxingcpp
from PIL import Image
from pydantic import ValidationError

from bot.app import watcher_tick_seconds
from bot.config import Settings
from bot.domain.links import CryptoLeg, Receipt
from bot.domain.models import Invoice, InvoiceStatus
from bot.telegram.receipts import draw_receipt, receipt_rows
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import MERCHANT2_ID, MERCHANT_ID, Harness

BOT = "tillbot_test_bot"
RECEIPT_LINK = re.compile(rf"^https://t\.me/{BOT}\?start=r_([A-Za-z0-9_-]{{16}})$")
LINK_URL = re.compile(rf"https://t\.me/{BOT}\?start=l_([A-Za-z0-9_-]{{16}})")
CUSTOMER_DE_ID, CUSTOMER2_ID = 2003, 2004


def decode_qr(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "the image holds no readable QR code"
    return results[0].text


def share_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if "?start=" in w)
    return link.split("?start=", 1)[1]


async def pay_from(harness: Harness, user: EmuUser, shown: MessageRecord) -> None:
    data = next(
        str(b["callback_data"])
        for b in shown.buttons
        if str(b.get("callback_data", "")).startswith("sim:")
    )
    query = await harness.emu.press_button(user, shown, data)
    await harness.emu.wait_for_callback_answer(query.id)


async def stored(harness: Harness, invoice_id: int) -> Invoice:
    invoice = await harness.services.repo.get_invoice(invoice_id)
    assert invoice is not None
    return invoice


async def press(harness: Harness, user: EmuUser, message: MessageRecord, button: str) -> str:
    query = await harness.emu.press_button(user, message, button)
    answer = await harness.emu.wait_for_callback_answer(query.id)
    return str(answer.get("text") or "")


def receipts_of(harness: Harness, user: EmuUser, word: str) -> list[MessageRecord]:
    return [m for m in harness.emu.bot_messages(user) if m.photo and word in m.content]


# -- 3. receipts -----------------------------------------------------------------------------
async def test_counter_payment_sends_a_receipt_image_whose_qr_shows_it_again(
    tillbot: Harness,
) -> None:
    emu, customer = tillbot.emu, tillbot.customer
    photo = await tillbot.command(tillbot.merchant, "/pos 5 Espresso")
    invoices = await tillbot.services.repo.list_invoices(MERCHANT_ID, limit=1)
    invoice = invoices[0]
    shown = await tillbot.command(customer, f"/start {share_token(photo)}")
    await pay_from(tillbot, customer, shown)
    receipt = await emu.wait_for_message(
        customer, lambda m: bool(m.photo) and "Receipt" in m.content
    )
    paid = await stored(tillbot, invoice.id)
    assert paid.status is InvoiceStatus.PAID and paid.paid_at is not None
    assert receipt.content.startswith("🧾 Receipt\n€5.00 paid to Maria\n“Espresso”\n")
    assert f"Paid: {paid.paid_at:%Y-%m-%d %H:%M} UTC" in receipt.content
    assert receipt.photo is not None and receipt.photo.startswith(b"\x89PNG")
    link = decode_qr(receipt.photo)
    match = RECEIPT_LINK.match(link)
    assert match, link
    # What the image shows: the Lightning amount in sats and the rate it implies.
    model = await tillbot.services.payments.receipts.receipt_for(paid)
    assert model.token == match.group(1) and model.merchant == "Maria"
    assert model.crypto is not None and model.crypto.symbol == "sats"
    assert model.crypto.amount == "8333.334" and model.crypto.rate == Decimal("60000.00")
    assert model.reference == paid.gateway_session_id and model.tip_minor is None

    again = await tillbot.command(customer, f"/start r_{match.group(1)}")
    assert again.photo is not None and again.content == receipt.content
    assert decode_qr(again.photo) == link
    # Anyone holding the link sees it (it is what the customer shows); a made-up one: no.
    nothing = await tillbot.command(tillbot.stranger, "/start r_AAAAAAAAAAAAAAAA")
    assert nothing.photo is None and "does not exist" in nothing.content
    # Sent once through the outbox: more watcher ticks send nothing more.
    await asyncio.sleep(1.0)
    assert len(receipts_of(tillbot, customer, "Receipt")) == 2  # the receipt and /start r_


async def test_merchant_resends_the_receipt_and_strangers_cannot(tillbot: Harness) -> None:
    emu, customer = tillbot.emu, tillbot.customer
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 12.50 Coffee")
    shown = await tillbot.command(customer, f"/start {share_token(reply)}")
    await pay_from(tillbot, customer, shown)
    await emu.wait_for_message(customer, lambda m: bool(m.photo) and "Receipt" in m.content)
    await emu.wait_for(lambda: "PAID" in reply.content and bool(reply.buttons))
    assert [b["text"] for b in reply.buttons] == ["🧾 Resend receipt"]
    # Someone else pressing the merchant's button (forged data): nothing happens.
    await emu.send_message(tillbot.stranger, "/start")
    assert await press(tillbot, tillbot.stranger, reply, f"rcpt:{invoice.id}") == ""
    assert await press(tillbot, tillbot.merchant, reply, "🧾 Resend receipt") == (
        "Receipt sent again to 1 customer"
    )
    await emu.wait_for(lambda: len(receipts_of(tillbot, customer, "Receipt")) == 2)
    first, second = receipts_of(tillbot, customer, "Receipt")
    assert first.content == second.content
    assert decode_qr(first.photo or b"") == decode_qr(second.photo or b"")


async def test_german_receipt_in_the_shops_time_zone_and_resend_in_german(
    harness: Harness,
) -> None:
    await harness.start(timezone="Europe/Berlin")
    emu = harness.emu
    klara = emu.add_user(CUSTOMER_DE_ID, "Klara", language_code="de")
    reply, invoice = await harness.invoice(harness.merchant2, "/invoice 12,50 Kaffee")
    shown = await harness.command(klara, f"/start {share_token(reply)}")
    await pay_from(harness, klara, shown)
    receipt = await emu.wait_for_message(klara, lambda m: bool(m.photo) and "Quittung" in m.content)
    paid = await stored(harness, invoice.id)
    assert paid.paid_at is not None
    local = paid.paid_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert receipt.content.startswith("🧾 Quittung\n12,50 € bezahlt an Max\n„Kaffee“")
    assert f"{local:%Y-%m-%d %H:%M} Europe/Berlin" in receipt.content
    assert RECEIPT_LINK.match(decode_qr(receipt.photo or b""))
    await emu.wait_for(lambda: bool(reply.buttons))
    assert [b["text"] for b in reply.buttons] == ["🧾 Quittung erneut senden"]
    answer = await press(harness, harness.merchant2, reply, "🧾 Quittung erneut senden")
    assert answer == "Quittung erneut an 1 Kunden gesendet"
    await emu.wait_for(lambda: len(receipts_of(harness, klara, "Quittung")) == 2)


async def test_resend_of_an_unpaid_invoice_or_one_nobody_opened(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 3 Tea")
    assert invoice.gateway_session_id is not None
    await tillbot.sandbox().pay(invoice.gateway_session_id)
    await tillbot.emu.wait_for(lambda: "PAID" in reply.content and bool(reply.buttons))
    answer = await press(tillbot, tillbot.merchant, reply, "🧾 Resend receipt")
    assert answer.startswith("No customer has opened this invoice")


def test_the_receipt_model_takes_a_tip_and_the_image_holds_the_link() -> None:
    receipt = Receipt(
        invoice_id=7,
        token="abcdefghijklmnop",
        merchant="Café Übel",
        note="Flat white",
        amount_minor=450,
        currency="EUR",
        paid_at=datetime(2026, 12, 3, 23, 30, tzinfo=UTC),
        reference="sess-1",
        crypto=CryptoLeg(amount="0.00012", symbol="BTC", rate=Decimal("37500.00"), rate_unit="BTC"),
        tip_minor=50,
    )
    rows = dict(receipt_rows(receipt, "de", ZoneInfo("Europe/Berlin")))
    assert (
        rows["Betrag"] == "4,50 €" and rows["Trinkgeld"] == "0,50 €" and rows["Gesamt"] == "5,00 €"
    )
    assert rows["In Krypto bezahlt"] == "0,00012 BTC" and rows["Kurs"] == "1 BTC = 37.500,00 €"
    assert rows["Zeit"] == "2026-12-04 00:30 Europe/Berlin"
    without = dict(
        receipt_rows(Receipt(**{**_fields(receipt), "tip_minor": None}), "en", ZoneInfo("UTC"))
    )
    assert "Tip" not in without and "Total" not in without and without["Amount"] == "€4.50"
    png = draw_receipt(receipt, "es", ZoneInfo("UTC"), BOT)
    assert decode_qr(png) == f"https://t.me/{BOT}?start=r_abcdefghijklmnop"


def _fields(receipt: Receipt) -> dict[str, object]:
    return {name: getattr(receipt, name) for name in Receipt.__slots__}


# -- 4. payment links --------------------------------------------------------------------------
async def test_fixed_amount_link_gives_each_customer_an_invoice_and_counts_sales(
    tillbot: Harness,
) -> None:
    emu = tillbot.emu
    second = emu.add_user(CUSTOMER2_ID, "Cleo", language_code="en")
    created = await tillbot.command(tillbot.merchant, "/link 3.50 Coffee")
    assert "Payment link created" in created.content and "€3.50" in created.content
    match = LINK_URL.search(created.content)
    assert match, created.content
    token = match.group(1)
    first_shown = await tillbot.command(tillbot.customer, f"/start l_{token}")
    second_shown = await tillbot.command(second, f"/start l_{token}")
    invoices = await tillbot.services.repo.list_invoices(MERCHANT_ID, limit=5)
    assert len(invoices) == 2 and invoices[0].id != invoices[1].id
    assert {i.amount_minor for i in invoices} == {350}
    for invoice, owner in ((invoices[1], tillbot.customer), (invoices[0], second)):
        shown_to = {m.user_id for m in await tillbot.services.repo.messages_for(invoice.id)}
        assert shown_to == {owner.id}, (invoice.id, shown_to)
    assert "€3.50" in first_shown.content and "€3.50" in second_shown.content
    assert f"Invoice #{invoices[1].id}" in first_shown.content
    assert f"Invoice #{invoices[0].id}" in second_shown.content
    await pay_from(tillbot, tillbot.customer, first_shown)
    await emu.wait_for_message(tillbot.customer, lambda m: bool(m.photo) and "Receipt" in m.content)

    listing = await tillbot.command(tillbot.merchant, "/link")
    assert "Your payment links" in listing.content
    assert "Coffee" in listing.content and "1 sale, €3.50" in listing.content
    assert f"?start=l_{token}" in listing.content
    answer = await press(tillbot, tillbot.merchant, listing, "🚫 Disable")
    assert answer == "Link disabled"
    await emu.wait_for(lambda: "🚫 disabled" in listing.content)
    assert not listing.buttons
    refused = await tillbot.command(second, f"/start l_{token}")
    assert "has been disabled" in refused.content
    assert len(await tillbot.services.repo.list_invoices(MERCHANT_ID, limit=5)) == 2


async def test_open_amount_link_asks_the_customer_how_much(tillbot: Harness) -> None:
    emu, customer = tillbot.emu, tillbot.customer
    created = await tillbot.command(tillbot.merchant, "/link Donation")
    assert "amount chosen by the customer" in created.content
    match = LINK_URL.search(created.content)
    assert match
    question = await tillbot.command(customer, f"/start l_{match.group(1)}")
    assert "How much would you like to pay for Donation?" in question.content
    assert await tillbot.services.repo.count_invoices(MERCHANT_ID) == 0
    before = len(emu.bot_messages(customer))
    await emu.send_message(customer, "abc", reply_to=question)
    refusal = await emu.wait_for(
        lambda: (
            emu.bot_messages(customer)[before] if len(emu.bot_messages(customer)) > before else None
        )
    )
    assert "amount" in refusal.content.lower()
    assert await tillbot.services.repo.count_invoices(MERCHANT_ID) == 0
    before = len(emu.bot_messages(customer))
    await emu.send_message(customer, "4.20", reply_to=question)
    shown = await emu.wait_for(
        lambda: (
            emu.bot_messages(customer)[before] if len(emu.bot_messages(customer)) > before else None
        )
    )
    assert "€4.20" in shown.content and "Donation" in shown.content
    invoices = await tillbot.services.repo.list_invoices(MERCHANT_ID, limit=5)
    assert [i.amount_minor for i in invoices] == [420]
    # A reply to any other message of the bot is not an amount: the help, nothing created.
    await emu.send_message(customer, "9", reply_to=shown)
    await emu.wait_for_message(customer, lambda m: "/help" in m.content or "Help" in m.content)
    assert await tillbot.services.repo.count_invoices(MERCHANT_ID) == 1


async def test_links_in_german_open_amount_and_list(tillbot: Harness) -> None:
    emu = tillbot.emu
    klara = emu.add_user(CUSTOMER_DE_ID, "Klara", language_code="de")
    created = await tillbot.command(tillbot.merchant2, "/link Spende")
    assert (
        "Zahlungslink erstellt" in created.content and "Betrag wählt der Kunde" in created.content
    )
    match = LINK_URL.search(created.content)
    assert match
    question = await tillbot.command(klara, f"/start l_{match.group(1)}")
    assert "Wie viel möchtest du für Spende bezahlen?" in question.content
    before = len(emu.bot_messages(klara))
    await emu.send_message(klara, "2,50", reply_to=question)
    shown = await emu.wait_for(
        lambda: emu.bot_messages(klara)[before] if len(emu.bot_messages(klara)) > before else None
    )
    assert "2,50 €" in shown.content
    await pay_from(tillbot, klara, shown)
    await emu.wait_for_message(klara, lambda m: bool(m.photo) and "Quittung" in m.content)
    listing = await tillbot.command(tillbot.merchant2, "/link")
    assert "Deine Zahlungslinks" in listing.content and "1 Verkauf, 2,50 €" in listing.content
    empty = await tillbot.command(tillbot.merchant, "/link")
    assert "no payment links yet" in empty.content
    assert (await tillbot.services.repo.links_of(MERCHANT2_ID, 5))[0].sales_count == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("/link 0 Coffee", "greater than zero"), ("/link 3.50", "/link 3.50 Coffee")],
)
async def test_link_bad_input_is_refused_kindly(tillbot: Harness, text: str, expected: str) -> None:
    refusal = await tillbot.command(tillbot.merchant, text)
    assert expected in refusal.content
    assert await tillbot.services.repo.links_of(MERCHANT_ID, 5) == []


async def test_only_merchants_make_links_and_only_their_own_are_touched(tillbot: Harness) -> None:
    refused = await tillbot.command(tillbot.customer, "/link 3 Tea")
    assert "merchant" in refused.content.lower()
    created = await tillbot.command(tillbot.merchant, "/link 3 Tea")
    match = LINK_URL.search(created.content)
    assert match
    token = match.group(1)
    # Max (another merchant) forging Maria's buttons: nothing changes, nothing is sent.
    await tillbot.command(tillbot.merchant2, "/link")
    before = len(tillbot.emu.bot_messages(tillbot.merchant2))
    assert await press(tillbot, tillbot.merchant2, created, f"lnk:off:{token}") == ""
    assert await press(tillbot, tillbot.merchant2, created, f"lnk:card:{token}") == ""
    link = await tillbot.services.payments.links.link(token)
    assert link is not None and link.enabled
    assert len(tillbot.emu.bot_messages(tillbot.merchant2)) == before
    unknown = await tillbot.command(tillbot.customer, "/start l_AAAAAAAAAAAAAAAA")
    assert "does not exist" in unknown.content


async def test_counter_card_png_and_pdf(tillbot: Harness) -> None:
    emu = tillbot.emu
    created = await tillbot.command(tillbot.merchant, "/link 3.50 Coffee")
    match = LINK_URL.search(created.content)
    assert match
    before = len(emu.bot_messages(tillbot.merchant))
    await press(tillbot, tillbot.merchant, created, "🖨 Card: Coffee")
    await emu.wait_for(lambda: len(emu.bot_messages(tillbot.merchant)) >= before + 2)
    card, document = emu.bot_messages(tillbot.merchant)[before : before + 2]
    assert card.photo is not None and "counter card" in card.content
    assert decode_qr(card.photo) == match.group(0)
    assert document.document is not None and document.document.startswith(b"%PDF")
    assert (document.document_filename or "").endswith(".pdf")
    assert b"%%EOF" in document.document[-64:]


# -- settings -------------------------------------------------------------------------------
def test_timezone_and_counter_cadence_settings(harness: Harness) -> None:
    settings = harness.settings(timezone=" Europe/Berlin ", pos_poll_interval_seconds=0.5)
    assert settings.timezone == "Europe/Berlin"
    assert Settings(telegram_bot_token="1:a", _env_file=None).pos_poll_interval_seconds == 0.5
    assert watcher_tick_seconds(settings) == pytest.approx(0.1)
    assert watcher_tick_seconds(harness.settings(pos_poll_interval_seconds=2)) == 0.25
    for bad in ("Mars/Olympus", "../etc/passwd"):
        with pytest.raises(ValidationError, match="IANA time zone"):
            harness.settings(timezone=bad)


async def test_a_long_list_of_links_fits_one_message(tillbot: Harness) -> None:
    links = tillbot.services.payments.links
    for n in range(25):
        await links.create(MERCHANT_ID, [f"{n + 1}", "long " * 38 + f"item {n}"])
    listing = await tillbot.command(tillbot.merchant, "/link")
    assert "Your payment links" in listing.content and len(listing.content) <= 4096
    assert listing.content.count("?start=l_") == 20  # the newest 20
    assert listing.content.count("…") == 20  # descriptions cut short in the list
    assert len(listing.buttons) == 40
