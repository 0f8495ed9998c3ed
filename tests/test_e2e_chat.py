"""End to end over the Bot API emulator, in English and German: the chat at a busy counter
(issue 16, points 3, 7, 8, 9 and 11).

Amounts as people write them, a bare amount made an invoice in one tap, one reply per
mistake; sharing an invoice; no setting names or English for merchants; the menu of what
works; refusals that name the command and stay out of groups; merchants told when an admin
adds or removes them, also by @username.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.domain.drafts import looks_like_amount, parse_invoice_args
from bot.domain.models import InvoiceKind, InvoiceStatus
from bot.domain.money import currency_in, normalize_amount, split_currency
from bot.i18n import group_separator
from testkit.mion import MionSimulator
from testkit.mixpay import DEFAULT_PAYEE_ID, MixPaySimulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.chat_screenshots import make_screenshots
from tests.conftest import Harness
from tests.test_e2e_product import (
    help_commands,
    menu_names,
    menus_ready,
    mixpay_session,
    mixpay_settings,
)

MION_KEY = "mion-test-key-0123456789"


@pytest.fixture
async def mixpay() -> AsyncIterator[MixPaySimulator]:
    async with MixPaySimulator(payee_id=DEFAULT_PAYEE_ID) as sim:
        yield sim


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
    # "⏳ Creating invoice…" becomes the answer in place: wait until it has.
    await harness.emu.wait_for(
        lambda: not any(
            m.content.startswith("⏳") and not m.deleted
            for m in harness.emu.bot_messages(user)[before:]
        )
    )
    await asyncio.sleep(settle)
    return [m for m in harness.emu.bot_messages(user)[before:] if not m.deleted]


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
    # "Creating invoice…" first, then the QR photo in its place.
    shown = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(maria)[before:] if m.photo is not None), None)
    )
    assert "€3.50" in shown.content
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


# -- 8. no jargon and no English leaks ----------------------------------------------------------
SETTING_NAME = re.compile(r"\b[A-Z]+_[A-Z_]+\b")  # MION_API_KEY, MERCHANT_IDS, ...


async def test_a_missing_gateway_is_told_in_plain_words_and_to_admins_by_setting(
    tillbot: Harness,
) -> None:
    [reply] = await replies_after(tillbot, tillbot.merchant, "/onchain 10 Lamp")
    assert reply.content == (
        "On-chain payments are not set up here yet. Your admin can turn them on."
    )
    [reply] = await replies_after(tillbot, tillbot.merchant2, "/onchain 10 Lampe")
    assert reply.content == (
        "On-Chain-Zahlungen sind hier noch nicht eingerichtet. Dein Admin kann sie einschalten."
    )
    [reply] = await replies_after(tillbot, tillbot.admin, "/onchain 10 Lamp")
    assert reply.content.startswith("On-chain payments are not set up here yet.")
    assert "For admins: MIXPAY_PAYEE_ID" in reply.content and "MIXPAY_PAYMENT_ASSET_ID" in (
        reply.content
    )


async def test_a_rejected_api_key_is_no_jargon_for_merchants(harness: Harness) -> None:
    adele = harness.emu.add_user(9010, "Adele", language_code="de")
    async with MionSimulator(api_key="the-real-key-0123456789") as sim:
        await harness.start(
            mion_api_url=sim.url,
            mion_api_key="a-wrong-key-0123456789",
            default_gateway="mion",
            admin_ids=[9009, 9010],
        )
        await replies_after(harness, adele, "/start")  # her first contact: German from now on
        [reply] = await replies_after(harness, harness.merchant, "/invoice 5 Tea")
        assert reply.content == (
            "⚠️ Mion is not set up correctly right now, so no invoice was made. "
            "Your admin has been told."
        )
        [reply] = await replies_after(harness, harness.merchant2, "/invoice 5 Tee")
        assert reply.content.startswith("⚠️ Mion ist gerade nicht richtig eingerichtet")
        assert not SETTING_NAME.search(reply.content)
        [reply] = await replies_after(harness, harness.admin, "/invoice 5 Tea")
        assert "For admins:" in reply.content and "MION_API_KEY" in reply.content
        # The admins are told once, each in their own language, with the setting to fix.
        alert = await harness.emu.wait_for_message(adele, lambda m: "🔑" in m.content)
        assert alert.content.startswith("🔑 Mion lehnt Tillbots Zugangsdaten ab: prüfe MION_API_KEY\n")
        assert "rejected" not in alert.content  # no English inside the German


async def test_a_gateways_failure_reason_is_read_in_our_words(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    await bot.start(callback_poll_interval_seconds=0.2, **mixpay_settings(mixpay))
    reply_en, failed_en = await bot.invoice(bot.merchant, "/invoice mixpay 20 Chair")
    reply_de, failed_de = await bot.invoice(bot.merchant2, "/invoice mixpay 20 Stuhl")
    mixpay.fail(mixpay_session(mixpay, failed_en), code=40020)  # "Wrong asset paid"
    mixpay.fail(mixpay_session(mixpay, failed_de), code=40020)
    await bot.emu.wait_for(lambda: "Reason:" in reply_en.content, timeout=8)
    assert "Reason: a different coin was paid than asked for" in reply_en.content
    await bot.emu.wait_for(lambda: "Grund:" in reply_de.content, timeout=8)
    assert "es wurde eine andere Währung bezahlt als verlangt" in reply_de.content
    told = await bot.emu.wait_for_message(
        bot.merchant2, lambda m: "fehlgeschlagen" in m.content and m is not reply_de, timeout=8
    )
    assert "Wrong asset" not in told.content and "andere Währung" in told.content
    admin = await bot.emu.wait_for_message(
        bot.admin, lambda m: f"#{failed_en.id} failed" in m.content, timeout=8
    )
    assert "a different coin was paid" in admin.content
    assert "the gateway said: Wrong asset paid" in admin.content  # the detail, for admins


# -- 9. the menu matches what works; refusals name the command, never in a group ----------------
async def test_the_menu_offers_onchain_only_with_a_gateway_for_it(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    await bot.start(
        **{**mixpay_settings(mixpay), "sandbox_enabled": False, "default_gateway": "mixpay"}
    )
    await menus_ready(bot)
    merchant_menu = [
        "invoice", "counter", "onchain", "link", "invoices", "report", "close", "staff",
        "settings", "help", "start",
    ]
    assert menu_names(bot, bot.merchant) == merchant_menu  # no /pos: no Lightning gateway
    assert menu_names(bot, bot.merchant2) == merchant_menu
    assert menu_names(bot, bot.admin) == [*merchant_menu, "merchants"]
    shown = await bot.command(bot.merchant2, "/help")
    assert help_commands(shown.content) == merchant_menu


async def test_the_menu_without_onchain_gateway_in_both_languages(tillbot: Harness) -> None:
    await menus_ready(tillbot)
    assert "onchain" not in menu_names(tillbot, tillbot.merchant)
    assert "pos" in menu_names(tillbot, tillbot.merchant2)  # the sandbox serves Lightning
    chat = {"type": "chat", "chat_id": tillbot.merchant2.id}
    german = await tillbot.emu.wait_for(lambda: tillbot.emu.commands_for(chat, "de"))
    assert [c["command"] for c in german] == menu_names(tillbot, tillbot.merchant)
    shown = await tillbot.command(tillbot.merchant2, "/help")
    assert "onchain" not in help_commands(shown.content)


async def test_a_strangers_refusal_names_what_they_tried(tillbot: Harness) -> None:
    sam = tillbot.stranger
    reply = await tillbot.command(sam, "/report")
    assert reply.content == (
        "Sorry, /report is for merchants only. If you sell with this bot, ask its admin to add you."
    )
    assert (await tillbot.command(sam, "/invoices")).content.startswith(
        "Sorry, /invoices is for merchants only."
    )
    assert (await tillbot.command(tillbot.merchant, "/merchants")).content == (
        "Sorry, /merchants is for admins only."
    )
    klara = tillbot.emu.add_user(2003, "Klara", language_code="de")
    assert (await tillbot.command(klara, "/report")).content.startswith(
        "Entschuldigung, /report ist nur für Händler."
    )
    assert (await tillbot.command(tillbot.merchant2, "/merchants")).content == (
        "Entschuldigung, /merchants ist nur für Admins."
    )


async def test_in_a_group_a_refusal_goes_privately_or_nowhere(tillbot: Harness) -> None:
    emu = tillbot.emu
    group = emu.add_group(-100777, "Café Team")
    klara = emu.add_user(2003, "Klara", language_code="de")
    shy = emu.add_user(2004, "Shy", language_code="en", started=False)
    await emu.send_message(tillbot.stranger, "/report", chat=group)
    private = await emu.wait_for_message(tillbot.stranger, lambda m: "/report" in m.content)
    assert private.content.startswith("Sorry, /report is for merchants only.")
    await emu.send_message(klara, "/invoice 5 Kuchen", chat=group)
    privat = await emu.wait_for_message(klara, lambda m: "/invoice" in m.content)
    assert privat.content.startswith("Entschuldigung, /invoice ist nur für Händler.")
    await emu.send_message(shy, "/merchants", chat=group)  # never opened the bot
    await emu.send_message(tillbot.merchant, "/invoices", chat=group)
    await emu.wait_for_message(group.id, lambda m: "Invoices" in m.content or "#" in m.content
                               or "no invoices" in m.content.lower())
    assert not [m for m in emu.bot_messages(group.id) if "Sorry" in m.content
                or "Entschuldigung" in m.content]
    assert not emu.bot_messages(shy)


# -- 11. people are told --------------------------------------------------------------------
async def test_a_merchant_added_and_removed_is_told_in_their_language(tillbot: Harness) -> None:
    emu = tillbot.emu
    klara = emu.add_user(2003, "Klara", username="Klara_Kuchen", language_code="de")
    await tillbot.command(klara, "/start")  # the bot has seen her: by id, name and @username
    reply = await tillbot.command(tillbot.admin, "/merchants add @klara_kuchen")
    assert reply.content == "✅ 2003 is now a merchant.\nI have told them."
    told = await emu.wait_for_message(klara, lambda m: "verkaufen" in m.content)
    assert told.content.startswith("🎉 Du kannst jetzt mit diesem Bot verkaufen.")
    assert "/invoice 12,50 Kaffee" in told.content
    _, invoice = await tillbot.invoice(klara, "/invoice 4,20 Kuchen")
    assert (invoice.merchant_id, invoice.amount_minor) == (2003, 420)

    reply = await tillbot.command(tillbot.admin, "/merchants remove @Klara_Kuchen")
    assert reply.content == "🗑 2003 is no longer a merchant.\nI have told them."
    gone = await emu.wait_for_message(klara, lambda m: "keine Rechnungen mehr" in m.content)
    assert gone.content.startswith("Du kannst mit diesem Bot keine Rechnungen mehr erstellen.")

    sam = tillbot.stranger
    await tillbot.command(sam, "/help")
    reply = await tillbot.command(tillbot.admin, f"/merchants add {sam.id}")
    assert reply.content.endswith("I have told them.")
    told = await emu.wait_for_message(sam, lambda m: "sell" in m.content)
    assert told.content.startswith("🎉 You can now sell with this bot.")


async def test_an_unknown_username_or_someone_who_never_wrote(tillbot: Harness) -> None:
    reply = await tillbot.command(tillbot.admin, "/merchants add @nobody_here")
    assert reply.content.startswith("I have not met @nobody_here yet.")
    assert await tillbot.services.repo.list_merchants() == []
    tillbot.emu.add_user(2005, "Quiet", username="quiet", started=False)
    reply = await tillbot.command(tillbot.admin, "/merchants add 2005")
    assert reply.content == (
        "✅ 2005 is now a merchant.\nI could not tell them: they have not opened this bot yet."
    )
    adele = tillbot.emu.add_user(9010, "Adele", language_code="de")
    await tillbot.restart(admin_ids=[9009, 9010])
    reply = await tillbot.command(adele, "/merchants add @niemand")
    assert reply.content.startswith("@niemand kenne ich noch nicht.")


async def test_a_username_follows_whoever_has_it_now(tillbot: Harness) -> None:
    emu, repo = tillbot.emu, tillbot.services.repo
    first = emu.add_user(2006, "First", username="corner_shop")
    await tillbot.command(first, "/start")
    assert await repo.user_by_username("@Corner_Shop") == 2006
    second = emu.add_user(2007, "Second", username="corner_shop")
    await tillbot.command(second, "/start")
    assert await repo.user_by_username("corner_shop") == 2007


# -- 7. sharing ---------------------------------------------------------------------------------
def decode_qr(png: bytes) -> str:
    import io

    import zxingcpp
    from PIL import Image

    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "the photo holds no readable QR code"
    return str(results[0].text)


async def test_share_button_next_to_pay_and_a_qr_of_the_link(tillbot: Harness) -> None:
    emu, maria = tillbot.emu, tillbot.merchant
    reply, invoice = await tillbot.invoice(maria, "/invoice 4.20 Cappuccino")
    link = f"https://t.me/tillbot_test_bot?start={invoice.public_token}"
    first_row = reply.reply_markup["inline_keyboard"][0] if reply.reply_markup else []
    assert [b["text"] for b in first_row] == ["💳 Pay €4.20", "📤 Share"]
    share = parse_qs(urlsplit(first_row[1]["url"]).query)
    assert first_row[1]["url"].startswith("https://t.me/share/url?")
    assert share == {"url": [link], "text": ["Invoice of €4.20 Cappuccino"]}
    before = len(emu.bot_messages(maria))
    await emu.press_button(maria, reply, "🔳 QR code of the link")
    photo = await emu.wait_for(
        lambda: len(emu.bot_messages(maria)) > before and emu.bot_messages(maria)[before]
    )
    assert photo.photo is not None and decode_qr(photo.photo) == link
    assert photo.content.startswith(f"🔳 Invoice #{invoice.shown_number} (€4.20): the customer scans")

    max_ = tillbot.merchant2
    reply, invoice = await tillbot.invoice(max_, "/invoice 3,50 Kuchen")
    assert [b["text"] for b in reply.buttons][:2] == ["💳 3,50 € bezahlen", "📤 Teilen"]
    url = next(b["url"] for b in reply.buttons if b["text"] == "📤 Teilen")
    assert parse_qs(urlsplit(url).query)["text"] == ["Rechnung über 3,50 € Kuchen"]
    await emu.press_button(max_, reply, "🔳 QR-Code des Links")
    photo = await emu.wait_for_message(max_, lambda m: m.photo is not None)
    assert photo.content.startswith(f"🔳 Rechnung Nr. {invoice.shown_number} (3,50 €)")
    # Someone else's press of the button sends nothing.
    query = await emu.press_button(tillbot.customer, reply, f"lqr:{invoice.id}")
    assert (await emu.wait_for_callback_answer(query.id)).get("show_alert")
    assert not [m for m in emu.bot_messages(tillbot.customer) if m.photo is not None]


async def test_a_customer_opening_the_link_again_gets_one_message(tillbot: Harness) -> None:
    emu, chris = tillbot.emu, tillbot.customer
    _, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 5 Tea")
    first = await tillbot.command(chris, f"/start {invoice.public_token}")
    assert "€5.00" in first.content
    second = await tillbot.command(chris, f"/start {invoice.public_token}")
    assert second is not first and "€5.00" in second.content and second.buttons
    await emu.wait_for(lambda: first.content == f"⬇️ Invoice #{invoice.shown_number} is shown again below.")
    assert not first.buttons
    stored = [m for m in await tillbot.services.repo.messages_for(invoice.id)
              if m.chat_id == chris.id]
    assert [m.message_id for m in stored] == [second.message_id]
    await tillbot.sandbox().pay(invoice.gateway_session_id or "")
    await emu.wait_for(lambda: "paid" in second.content.lower(), timeout=8)
    assert first.content.startswith("⬇️")  # the old one is not brought back to life

    klara = emu.add_user(2003, "Klara", language_code="de")
    _, other = await tillbot.invoice(tillbot.merchant, "/invoice 6 Cake")
    first = await tillbot.command(klara, f"/start {other.public_token}")
    await tillbot.command(klara, f"/start {other.public_token}")
    await emu.wait_for(
        lambda: first.content == f"⬇️ Rechnung Nr. {other.shown_number} wird unten noch einmal angezeigt."
    )
    assert len(emu.bot_messages(klara)) == 2


async def test_tapping_an_invoice_twice_in_the_list_moves_it(tillbot: Harness) -> None:
    emu, max_ = tillbot.emu, tillbot.merchant2
    _, invoice = await tillbot.invoice(max_, "/invoice 7 Brot")
    listing = await tillbot.command(max_, "/invoices")
    button = next(b["text"] for b in listing.buttons if f"#{invoice.id}" in b["text"])
    await emu.press_button(max_, listing, button)
    shown = await emu.wait_for_message(max_, lambda m: m is not listing and "7,00 €" in m.content
                                       and m.message_id > listing.message_id)
    await emu.press_button(max_, listing, button)
    again = await emu.wait_for_message(max_, lambda m: m.message_id > shown.message_id
                                       and "7,00 €" in m.content)
    await emu.wait_for(lambda: shown.content.startswith("⬇️ Rechnung Nr."))
    mine = [m for m in await tillbot.services.repo.messages_for(invoice.id)
            if m.chat_id == max_.id]
    # The message of /invoice and the one moved from the first tap to the second.
    assert sorted(m.message_id for m in mine)[-1] == again.message_id
    assert shown.message_id not in [m.message_id for m in mine]


# -- the README's screenshots, rendered from the emulator's messages ---------------------------
async def test_chat_screenshots_render_what_the_bot_said(tmp_path: Path) -> None:
    made = await make_screenshots(tmp_path)
    assert [p.name for p in made] == [
        "chat-merchant-en.png",
        "chat-merchant-de.png",
        "chat-admin-en.png",
        "chat-new-merchant-de.png",
        "chat-stranger-en.png",
    ]
    # The counter QR in the German screenshot is still a QR a wallet reads.
    assert decode_qr((tmp_path / "chat-merchant-de.png").read_bytes()).startswith("LIGHTNING:")


# -- the domain's reading of amounts (no bot needed) --------------------------------------------
@pytest.mark.parametrize(
    ("text", "en", "de"),
    [
        ("3.50", "3.50", "3.50"),
        ("3,50", "3.50", "3.50"),
        ("1,234.50", "1234.50", "1234.50"),
        ("1.234,50", "1234.50", "1234.50"),
        ("1,234", "1234", "1.234"),  # the language's thousands group, else a decimal mark
        ("1.234", "1.234", "1234"),
        ("1,234,567", "1234567", "1234567"),
        ("0,001", "0.001", "0.001"),  # a leading 0 is never a thousands group
        ("1,23,4", "1,23,4", "1,23,4"),  # not a number: refused by parse_amount
        ("1.234.5", "1.234.5", "1.234.5"),
        ("١٢", "١٢", "١٢"),
    ],
)
def test_amounts_are_read_with_the_writers_separators(text: str, en: str, de: str) -> None:
    assert normalize_amount(text, group_separator("en")) == en
    assert normalize_amount(text, group_separator("de")) == de
    assert normalize_amount(text, group_separator("es")) == de


def test_signs_and_codes_name_the_currency() -> None:
    assert split_currency("€3.50") == ("3.50", "EUR")
    assert split_currency("12,50€") == ("12,50", "EUR")
    assert split_currency("$5") == ("5", "USD")
    assert split_currency("12usd") == ("12", "USD")
    assert split_currency("abc12") == ("abc12", None)
    assert currency_in("BTC") == "BTC" and currency_in("CUP") == "CUP"
    assert currency_in("cup") is None and currency_in("Tea") is None  # words stay words
    draft = parse_invoice_args(["12", "cup", "of", "tea"])
    assert (draft.currency, draft.description) == (None, "cup of tea")
    draft = parse_invoice_args(["3,50", "€", "Kaffee"], group=".")
    assert (draft.amount_text, draft.currency, draft.description) == ("3.50", "EUR", "Kaffee")
    assert looks_like_amount("12,50 €") and looks_like_amount("5 USD")
    assert not looks_like_amount("3.50 Coffee") and not looks_like_amount("١٢")


async def test_an_underpayment_is_written_in_the_readers_numbers(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    await bot.start(callback_poll_interval_seconds=0.2, **mixpay_settings(mixpay))
    reply_de, short_de = await bot.invoice(bot.merchant2, "/invoice mixpay 11 Lampe")
    reply_en, short_en = await bot.invoice(bot.merchant, "/invoice mixpay 11 Lamp")
    mixpay.underpay(mixpay_session(mixpay, short_de))  # half: 5.5 USDT of 11 USDT
    mixpay.underpay(mixpay_session(mixpay, short_en))
    await bot.emu.wait_for(lambda: "zu wenig bezahlt" in reply_de.content, timeout=8)
    assert "zu wenig bezahlt: 5,5 USDT von 11 USDT angekommen" in reply_de.content
    await bot.emu.wait_for(lambda: "underpaid" in reply_en.content, timeout=8)
    assert "underpaid: 5.5 USDT of 11 USDT arrived" in reply_en.content
    told = await bot.emu.wait_for_message(
        bot.merchant2, lambda m: "wurde zu wenig bezahlt" in m.content, timeout=8
    )
    assert "5,5 USDT" in told.content and "5.5" not in told.content
