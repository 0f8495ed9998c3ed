"""End to end over the Bot API emulator, in English and German: the chat at a busy counter
(issue 16, points 1, 2, 4, 6, 10 and 12).

1. A payment pings the merchant with a short new message, once, with a button and a reply
   that lead to the invoice.
2. A paid counter QR is replaced by a paid picture; a cancelled one by a picture saying so.
   Both are decoded: no QR is left in them.
4. Whole sats (≈ 6,333 sats) and the rate used (1 BTC = €66,320).
6. Cancel asks first; the customer then reads one plain sentence.
10. The sandbox is off beside a real gateway unless SANDBOX_ENABLED=true; a sandbox invoice
    says so in every state and on its picture; sandbox tests never count in /report.
12. Invoice numbers per merchant: a merchant's first invoice is #1.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from bot.config import load_settings
from bot.domain.drafts import InvoiceDraft
from bot.domain.models import Invoice, InvoiceStatus
from testkit.mion import MionSimulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import TOKEN, Harness

MION_KEY = "mion-counter-MARKER-key-9f3e"
CUSTOMER_DE_ID = 2013

# What each language says (English merchant Maria, German merchant Max).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "/invoice 4.20 Cappuccino",
        "ping": "✅ €4.20 received: Cappuccino",
        "show": "🧾 Show invoice #{n}",
        "title": "Invoice #{n}",
        "paid": "PAID",
        "cancel": "🚫 Cancel invoice",
        "question": "Cancel invoice #{n} of €4.20?",
        "yes": "Yes, cancel",
        "no": "No, keep it",
        "kept": "Not cancelled.",
        "customer_cancelled": (
            "🚫 Invoice #{n} of €4.20 was cancelled by the seller; there is nothing to pay."
        ),
        "sandbox": "🧪 Sandbox test: no real money moved.",
        "sandbox_ping": "🧪 €4.20 received in the sandbox: Cappuccino (a test, no real money)",
        "not_counted": "🧪 1 sandbox test not counted",
        "simulate": "🧪 Simulate payment",
    },
    "de": {
        "invoice": "/invoice 4,20 Cappuccino",
        "ping": "✅ 4,20 € erhalten: Cappuccino",
        "show": "🧾 Rechnung Nr. {n} zeigen",
        "title": "Rechnung Nr. {n}",
        "paid": "BEZAHLT",
        "cancel": "🚫 Rechnung stornieren",
        "question": "Rechnung Nr. {n} über 4,20 € stornieren?",
        "yes": "Ja, stornieren",
        "no": "Nein, behalten",
        "kept": "Nicht storniert.",
        "customer_cancelled": (
            "🚫 Die Rechnung Nr. {n} über 4,20 € wurde vom Verkäufer storniert;"
            " es ist nichts zu bezahlen."
        ),
        "sandbox": "🧪 Sandbox-Test: Es wurde kein echtes Geld bewegt.",
        "sandbox_ping": (
            "🧪 4,20 € in der Sandbox erhalten: Cappuccino (ein Test, kein echtes Geld)"
        ),
        "not_counted": "🧪 1 Sandbox-Test nicht mitgezählt",
        "simulate": "🧪 Zahlung simulieren",
    },
}
LANGUAGES = ["en", "de"]

GREEN, GREY, AMBER = (22, 163, 74), (100, 116, 139), (180, 83, 9)


# -- helpers ----------------------------------------------------------------------------------
def merchant_of(bot: Harness, lang: str) -> EmuUser:
    return bot.merchant if lang == "en" else bot.merchant2


def customer_of(bot: Harness, lang: str) -> EmuUser:
    if lang == "en":
        return bot.customer
    return bot.emu.users.get(CUSTOMER_DE_ID) or bot.emu.add_user(
        CUSTOMER_DE_ID, "Klara", language_code="de"
    )


def share_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if "?start=" in w)
    return link.split("?start=", 1)[1]


def qr_codes(png: bytes) -> list[str]:
    """Every barcode a decoder finds in the picture."""
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def pixel(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    value = Image.open(io.BytesIO(png)).convert("RGB").getpixel((x, y))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def bottom_left(png: bytes) -> tuple[int, int, int]:
    width, height = Image.open(io.BytesIO(png)).size
    return pixel(png, 4, height - 4) if width else (0, 0, 0)


def grouped(value: int, lang: str) -> str:
    text = f"{value:,}"
    return text if lang == "en" else text.replace(",", ".")


async def press(bot: Harness, user: EmuUser, message: MessageRecord, label: str) -> str:
    query = await bot.emu.press_button(user, message, label)
    answer = await bot.emu.wait_for_callback_answer(query.id)
    return str(answer.get("text") or "")


async def latest_invoice(bot: Harness, user: EmuUser) -> Invoice:
    return (await bot.services.repo.list_invoices(user.id, limit=1))[0]


async def outbox_drained(bot: Harness, invoice_id: int) -> None:
    """Wait until every outbox row of the invoice has been sent."""
    for _ in range(250):
        rows = await bot.services.repo.outbox_items(invoice_id)
        if rows and all(row.sent_at is not None for row in rows):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"invoice {invoice_id}: outbox not drained")


def pings(bot: Harness, user: EmuUser, prefix: str) -> list[MessageRecord]:
    return [m for m in bot.emu.bot_messages(user) if m.content.startswith(prefix)]


@pytest.fixture
async def mion() -> AsyncIterator[MionSimulator]:
    sim = MionSimulator(api_key=MION_KEY)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def mion_settings(sim: MionSimulator) -> dict[str, Any]:
    return {"mion_api_url": sim.url, "mion_api_key": MION_KEY}


# -- 1. the payment ping (and 12: the merchant's own numbers) -----------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_payment_pings_the_merchant_once_with_a_way_to_the_invoice(
    harness: Harness, mion: MionSimulator, lang: str
) -> None:
    bot, texts = harness, TEXTS[lang]
    await bot.start(**mion_settings(mion))
    merchant = merchant_of(bot, lang)
    other = bot.merchant2 if lang == "en" else bot.merchant
    for amount in ("1", "2", "3"):  # another shop's invoices: not in this merchant's numbers
        await bot.services.payments.create_invoice(other.id, InvoiceDraft(amount, "Tea"))
    reply, invoice = await bot.invoice(merchant, texts["invoice"])
    assert invoice.gateway == "mion" and invoice.number == 1 and invoice.id == 4
    assert texts["title"].format(n=1) in reply.content

    mion.pay(invoice.gateway_session_id or "")
    ping = await bot.emu.wait_for_message(merchant, lambda m: m.content.startswith("✅"), timeout=8)
    assert ping.content == texts["ping"]
    assert ping.reply_to_message_id == reply.message_id  # quotes (links to) the invoice
    assert [b["text"] for b in ping.buttons] == [texts["show"].format(n=1)]
    await bot.emu.wait_for(lambda: texts["paid"] in reply.content, timeout=5)
    assert "Sandbox" not in reply.content

    # Exactly once: a later poll, a catch-up or a restart sends no second ping.
    await outbox_drained(bot, invoice.id)
    await bot.restart()
    await asyncio.sleep(1.0)
    assert len(pings(bot, merchant, "✅")) == 1

    # The button shows the invoice in a message of its own.
    before = len(bot.emu.bot_messages(merchant))
    await press(bot, merchant, ping, texts["show"].format(n=1))
    shown = await bot.emu.wait_for(
        lambda: (
            bot.emu.bot_messages(merchant)[before]
            if len(bot.emu.bot_messages(merchant)) > before
            else None
        )
    )
    assert texts["title"].format(n=1) in shown.content and texts["paid"] in shown.content


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_invoice_numbers_count_per_merchant(tillbot: Harness, lang: str) -> None:
    merchant = merchant_of(tillbot, lang)
    other = tillbot.merchant2 if lang == "en" else tillbot.merchant
    await tillbot.invoice(other, "/invoice 9 Other")
    first_reply, first = await tillbot.invoice(merchant, "/invoice 1 One")
    second_reply, second = await tillbot.invoice(merchant, "/invoice 2 Two")
    assert (first.number, second.number) == (1, 2) and second.id == 3
    assert TEXTS[lang]["title"].format(n=1) in first_reply.content
    assert TEXTS[lang]["title"].format(n=2) in second_reply.content
    listing = await tillbot.command(merchant, "/invoices")
    labels = [b["text"] for b in listing.buttons if b.get("callback_data", "").startswith("show")]
    assert [label.split(" ")[0] for label in labels] == ["#2", "#1"]
    others = await tillbot.services.repo.list_invoices(other.id, limit=5)
    assert [inv.number for inv in others] == [1]  # the other shop: its own #1


# -- 2. the counter QR is replaced once the invoice is over --------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
async def test_paid_counter_qr_becomes_a_paid_picture_without_a_qr(
    tillbot: Harness, lang: str
) -> None:
    merchant = merchant_of(tillbot, lang)
    photo = await tillbot.command(merchant, "/pos 5 Espresso")
    assert photo.photo is not None and qr_codes(photo.photo), "the counter shows a QR first"
    assert bottom_left(photo.photo) == AMBER  # the sandbox QR says it is a test
    invoice = await latest_invoice(tillbot, merchant)
    await tillbot.sandbox().pay(invoice.gateway_session_id or "")
    await tillbot.emu.wait_for(lambda: TEXTS[lang]["paid"] in photo.content, timeout=5)
    await tillbot.emu.wait_for(lambda: not qr_codes(photo.photo or b""), timeout=3)
    png = photo.photo or b""
    assert qr_codes(png) == []  # decoded: no QR is left to pay
    assert pixel(png, 256, 110) == GREEN  # the big check mark's disc
    assert pixel(png, 10, 500) == AMBER  # the sandbox says so on the picture, too
    assert TEXTS[lang]["sandbox"] in photo.content  # ... and in the caption, paid included
    assert tillbot.emu.calls("editMessageMedia")


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_cancelled_counter_qr_becomes_a_cancelled_picture(
    tillbot: Harness, lang: str
) -> None:
    texts, merchant = TEXTS[lang], merchant_of(tillbot, lang)
    photo = await tillbot.command(merchant, "/pos 5 Espresso")
    assert photo.photo is not None and qr_codes(photo.photo)
    await press(tillbot, merchant, photo, texts["cancel"])
    await tillbot.emu.wait_for(lambda: photo.find_button(texts["yes"]) is not None)
    await press(tillbot, merchant, photo, texts["yes"])
    await tillbot.emu.wait_for(lambda: not qr_codes(photo.photo or b""), timeout=5)
    png = photo.photo or b""
    assert qr_codes(png) == [] and pixel(png, 256, 110) == GREY
    invoice = await latest_invoice(tillbot, merchant)
    assert invoice.status is InvoiceStatus.CANCELLED and not photo.buttons


@pytest.mark.parametrize(("lang", "word"), [("en", "expired"), ("de", "abgelaufen")])
async def test_expired_counter_qr_becomes_an_expired_picture(
    tillbot: Harness, lang: str, word: str
) -> None:
    merchant = merchant_of(tillbot, lang)
    photo = await tillbot.command(merchant, "/pos 5 Espresso")
    assert photo.photo is not None and qr_codes(photo.photo)
    invoice = await latest_invoice(tillbot, merchant)
    await tillbot.sandbox().expire(invoice.gateway_session_id or "")
    await tillbot.emu.wait_for(lambda: not qr_codes(photo.photo or b""), timeout=8)
    png = photo.photo or b""
    assert qr_codes(png) == [] and pixel(png, 256, 110) == GREY
    assert word in photo.content and TEXTS[lang]["sandbox"] in photo.content


async def test_a_real_gateways_paid_picture_has_no_sandbox_banner(
    harness: Harness, mion: MionSimulator
) -> None:
    await harness.start(**mion_settings(mion))
    photo = await harness.command(harness.merchant2, "/pos 5 Espresso")
    assert photo.photo is not None and qr_codes(photo.photo)
    assert bottom_left(photo.photo) != AMBER  # a real gateway's QR: no sandbox band
    invoice = await latest_invoice(harness, harness.merchant2)
    mion.pay(invoice.gateway_session_id or "")
    await harness.emu.wait_for(lambda: not qr_codes(photo.photo or b""), timeout=8)
    png = photo.photo or b""
    assert pixel(png, 256, 110) == GREEN and pixel(png, 10, 500) != AMBER
    assert "BEZAHLT" in photo.content and "Sandbox" not in photo.content


# -- 4. whole sats and the rate -----------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
async def test_lightning_shows_whole_sats_and_the_rate(tillbot: Harness, lang: str) -> None:
    merchant = merchant_of(tillbot, lang)
    photo = await tillbot.command(merchant, "/pos 5 Espresso")
    invoice = await latest_invoice(tillbot, merchant)
    msat = int(invoice.payment["amount_msat"])
    sats = int((Decimal(msat) / 1000).quantize(Decimal(1), ROUND_HALF_UP))
    rate = int((Decimal(5) * 10**11 / msat).quantize(Decimal(1), ROUND_HALF_UP))
    assert f"≈ {grouped(sats, lang)} sats" in photo.content
    shown_rate = f"€{grouped(rate, lang)}" if lang == "en" else f"{grouped(rate, lang)} €"
    assert f"1 BTC = {shown_rate}" in photo.content
    assert "." not in grouped(sats, "en")  # whole: never a fraction of a sat


# -- 6. cancel asks first -----------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
async def test_cancel_asks_first_and_the_customer_reads_one_sentence(
    tillbot: Harness, lang: str
) -> None:
    texts, merchant = TEXTS[lang], merchant_of(tillbot, lang)
    customer = customer_of(tillbot, lang)
    reply, invoice = await tillbot.invoice(merchant, texts["invoice"])
    shown = await tillbot.command(customer, f"/start {share_token(reply)}")

    await press(tillbot, merchant, reply, texts["cancel"])
    await tillbot.emu.wait_for(lambda: reply.find_button(texts["no"]) is not None)
    labels = [b["text"] for b in reply.buttons]
    assert labels == [texts["question"].format(n=1), texts["yes"], texts["no"]]
    assert await press(tillbot, merchant, reply, texts["no"]) == texts["kept"]
    await tillbot.emu.wait_for(lambda: reply.find_button(texts["cancel"]) is not None)
    stored = await tillbot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING

    await press(tillbot, merchant, reply, texts["cancel"])
    await tillbot.emu.wait_for(lambda: reply.find_button(texts["yes"]) is not None)
    await press(tillbot, merchant, reply, texts["yes"])
    await tillbot.emu.wait_for(
        lambda: shown.content.startswith(texts["customer_cancelled"].format(n=1)), timeout=5
    )
    assert shown.content == texts["customer_cancelled"].format(n=1) + "\n" + texts["sandbox"]
    assert "Sandbox" not in shown.content.split("\n")[0]  # no gateway internals
    assert not shown.buttons


async def test_someone_else_cannot_confirm_a_cancel(tillbot: Harness) -> None:
    emu = tillbot.emu
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 4 Juice")
    await press(tillbot, tillbot.merchant, reply, "🚫 Cancel invoice")
    await emu.wait_for(lambda: reply.find_button("Yes, cancel") is not None)
    refusals = {}
    for user in (tillbot.merchant2, tillbot.customer):
        query = await emu.press_button(user, reply, "Yes, cancel", chat=tillbot.merchant.id)
        refusals[user.id] = (await emu.wait_for_callback_answer(query.id)).get("text")
    assert refusals == {
        tillbot.merchant2.id: "Das ist nicht deine Rechnung.",
        tillbot.customer.id: "That is not your invoice.",
    }
    stored = await tillbot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    assert reply.find_button("Yes, cancel") is not None  # the question still stands


# -- 10. the sandbox cannot be mistaken for money ----------------------------------------------
def test_a_real_gateway_turns_the_sandbox_off_unless_set_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = {
        "telegram_bot_token": TOKEN,
        "mion_api_url": "http://127.0.0.1:9",
        "mion_api_key": MION_KEY,
        "_env_file": None,
    }
    monkeypatch.delenv("SANDBOX_ENABLED", raising=False)
    unset = load_settings(**base)
    assert unset.available_gateways() == ["mion"] and unset.default_gateway == "mion"
    monkeypatch.setenv("SANDBOX_ENABLED", "true")
    assert load_settings(**base).available_gateways() == ["sandbox", "mion"]
    monkeypatch.setenv("SANDBOX_ENABLED", "false")
    assert load_settings(**base).available_gateways() == ["mion"]
    monkeypatch.delenv("SANDBOX_ENABLED")
    alone = load_settings(telegram_bot_token=TOKEN, _env_file=None)
    assert alone.available_gateways() == ["sandbox"]  # no real gateway: the sandbox is on


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_beside_a_real_gateway_the_bot_offers_no_sandbox(
    harness: Harness, mion: MionSimulator, lang: str
) -> None:
    await harness.start(**mion_settings(mion))
    assert list(harness.services.gateways) == ["mion"]
    menu = await harness.command(merchant_of(harness, lang), "/settings")
    assert not [b for b in menu.buttons if b.get("callback_data") == "set:gw:sandbox"]
    assert "Sandbox" not in menu.content


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_sandbox_invoice_says_so_in_every_state_and_never_counts(
    harness: Harness, mion: MionSimulator, lang: str
) -> None:
    texts = TEXTS[lang]
    await harness.start(**mion_settings(mion), sandbox_enabled=True)
    merchant = merchant_of(harness, lang)
    await harness.command(merchant, "/settings")
    menu = harness.emu.bot_messages(merchant)[-1]
    await press(harness, merchant, menu, "set:gw:sandbox")
    reply, test = await harness.invoice(merchant, texts["invoice"])
    assert test.is_sandbox and texts["simulate"] in [b["text"] for b in reply.buttons]
    customer = customer_of(harness, lang)
    await harness.command(customer, f"/start {share_token(reply)}")
    for _ in range(250):  # the customer's copy is remembered: the receipt goes there
        if len(await harness.services.repo.messages_for(test.id)) >= 2:
            break
        await asyncio.sleep(0.02)
    await press(harness, merchant, reply, texts["simulate"])
    await harness.emu.wait_for(lambda: texts["paid"] in reply.content, timeout=5)
    assert texts["sandbox"] in reply.content  # paid, and still a test
    word = "🧾 Receipt" if lang == "en" else "🧾 Quittung"
    receipt = await harness.emu.wait_for_message(customer, lambda m: m.content.startswith(word))
    assert receipt.content.endswith("\n" + texts["sandbox"])  # so is the receipt
    ping = await harness.emu.wait_for_message(merchant, lambda m: m.content.startswith("🧪"))
    assert ping.content == texts["sandbox_ping"]

    await press(harness, merchant, menu, "set:gw:mion")
    real_reply, real = await harness.invoice(merchant, texts["invoice"])
    assert real.gateway == "mion" and real.number == 2
    mion.pay(real.gateway_session_id or "")
    await harness.emu.wait_for(lambda: texts["paid"] in real_reply.content, timeout=8)
    # Its ping comes first: the next message in the chat is then the report's.
    await harness.emu.wait_for_message(merchant, lambda m: m.content.startswith("✅"))

    document = await harness.command(merchant, "/report")
    rows = list(csv.reader(io.StringIO((document.document or b"").decode("utf-8"))))
    assert [row[0] for row in rows[1:]] == ["2"] and rows[1][4] == "mion"  # the test is not in
    summary = await harness.emu.wait_for_message(merchant, lambda m: m.content.startswith("📊"))
    assert summary.content.count("4,20 €" if lang == "de" else "€4.20") == 1
    assert summary.content.endswith(texts["not_counted"])
