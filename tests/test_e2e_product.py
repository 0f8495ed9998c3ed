"""End to end over the Bot API emulator: the product for merchants, customers, admins and
strangers, in English and German (issue 5).

/invoices (paged, tap to show), Cancel (at the gateway or locally), /report (CSV and
summary), /settings, inline mode, customer receipts, /merchants (by id, by forward, by
button), admin and merchant notices (also after a restart), the daily summary, the
commands menu per scope and language and /help matching it, and roles checked on every
command and button press from the update's user.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.drafts import InvoiceDraft, reference_for
from bot.domain.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    MessageRole,
    NewInvoice,
    OutboxEvent,
    Transition,
)
from bot.telegram.context import TillbotContext
from bot.telegram.handlers import admin
from testkit.mixpay import BTC, DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import ADMIN_ID, MERCHANT_ID, Harness

CUSTOMER_DE_ID, ADMIN_DE_ID = 2003, 9010
DEFAULT = {"type": "default"}


# -- helpers ----------------------------------------------------------------------------------
def share_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if "?start=" in w)
    return link.split("?start=", 1)[1]


def callback_buttons(message: MessageRecord, prefix: str) -> list[dict[str, Any]]:
    return [b for b in message.buttons if str(b.get("callback_data", "")).startswith(prefix)]


def help_commands(text: str) -> list[str]:
    """The commands /help lists, one per line as `/name – description`."""
    return [m.group(1) for m in re.finditer(r"^/(\w+) – ", text, flags=re.MULTILINE)]


def menu_seen_by(harness: Harness, user: EmuUser) -> list[dict[str, Any]]:
    """The menu Telegram shows the user in their private chat (its scope resolution order)."""
    chat = {"type": "chat", "chat_id": user.id}
    code = user.language_code or ""
    for scope, language in ((chat, code), (chat, ""), (DEFAULT, code), (DEFAULT, "")):
        found = harness.emu.commands_for(scope, language)
        if found:
            return found
    return []


def menu_names(harness: Harness, user: EmuUser) -> list[str]:
    return [c["command"] for c in menu_seen_by(harness, user)]


async def menus_ready(harness: Harness) -> None:
    """Wait for the job that sets each admin's and merchant's own menu after the start."""
    settings = harness.services.settings
    chats = [
        {"type": "chat", "chat_id": uid} for uid in (*settings.admin_ids, *settings.merchant_ids)
    ]
    await harness.emu.wait_for(lambda: all(harness.emu.commands_for(c, "") for c in chats))


async def answer_of(harness: Harness, user: EmuUser, message: MessageRecord, button: str) -> str:
    """Press a button (or forge a press by callback data) and return the answer's text."""
    query = await harness.emu.press_button(user, message, button)
    answer = await harness.emu.wait_for_callback_answer(query.id)
    return str(answer.get("text") or "")


async def stored(harness: Harness, invoice_id: int) -> Invoice:
    invoice = await harness.services.repo.get_invoice(invoice_id)
    assert invoice is not None
    return invoice


async def messages_stored(harness: Harness, invoice_id: int, count: int) -> None:
    """Wait until the bot has remembered `count` messages of the invoice (stored right
    after Telegram accepted each)."""
    for _ in range(250):
        if len(await harness.services.repo.messages_for(invoice_id)) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"invoice {invoice_id}: fewer than {count} messages stored")


def add_german_customer(harness: Harness) -> EmuUser:
    return harness.emu.add_user(CUSTOMER_DE_ID, "Klara", language_code="de")


def add_german_admin(harness: Harness) -> EmuUser:
    return harness.emu.add_user(ADMIN_DE_ID, "Adele", language_code="de")


@pytest.fixture
async def two_admins(harness: Harness) -> Harness:
    """The bot with an English admin (Ada) and a German one (Adele)."""
    add_german_admin(harness)
    await harness.start(admin_ids=[ADMIN_ID, ADMIN_DE_ID])
    return harness


# -- 6. the commands menu and /help ------------------------------------------------------------
MERCHANT_MENU = [
    "invoice", "pos", "counter", "link", "invoices", "report", "close", "staff", "settings",
    "help", "start",
]
ADMIN_MENU = [*MERCHANT_MENU, "merchants"]
CUSTOMER_MENU = ["start", "help", "settings"]


async def test_menu_is_registered_at_start_per_scope_and_language(tillbot: Harness) -> None:
    emu = tillbot.emu
    await menus_ready(tillbot)
    english = {c["command"]: c["description"] for c in emu.commands_for(DEFAULT, "")}
    german = {c["command"]: c["description"] for c in emu.commands_for(DEFAULT, "de")}
    assert list(english) == list(german) == CUSTOMER_MENU
    assert english["help"] == "Help" and german["help"] == "Hilfe"
    merchant_chat = {"type": "chat", "chat_id": MERCHANT_ID}
    assert [c["command"] for c in emu.commands_for(merchant_chat, "")] == MERCHANT_MENU
    de = {c["command"]: c["description"] for c in emu.commands_for(merchant_chat, "de")}
    assert de["invoices"] == "Deine letzten Rechnungen"
    admin_chat = {"type": "chat", "chat_id": ADMIN_ID}
    assert [c["command"] for c in emu.commands_for(admin_chat, "")] == ADMIN_MENU
    # A stranger and a customer have no menu of their own: they see the default one.
    assert menu_names(tillbot, tillbot.stranger) == CUSTOMER_MENU
    assert menu_names(tillbot, tillbot.customer) == CUSTOMER_MENU


@pytest.mark.parametrize(
    ("who", "expected", "heading"),
    [
        ("merchant", MERCHANT_MENU, "Commands"),
        ("merchant2", MERCHANT_MENU, "Befehle"),
        ("admin", ADMIN_MENU, "Commands"),
        ("admin_de", ADMIN_MENU, "Befehle"),
        ("customer", CUSTOMER_MENU, "Commands"),
        ("customer_de", CUSTOMER_MENU, "Befehle"),
        ("stranger", CUSTOMER_MENU, "Commands"),
    ],
)
async def test_help_lists_exactly_the_menu_of_the_users_scope(
    two_admins: Harness, who: str, expected: list[str], heading: str
) -> None:
    bot = two_admins
    users = {
        "merchant": bot.merchant,
        "merchant2": bot.merchant2,
        "admin": bot.admin,
        "admin_de": bot.emu.users[ADMIN_DE_ID],
        "customer": bot.customer,
        "customer_de": add_german_customer(bot),
        "stranger": bot.stranger,
    }
    user = users[who]
    await menus_ready(bot)
    reply = await bot.command(user, "/help")
    menu = menu_seen_by(bot, user)
    assert [c["command"] for c in menu] == expected
    assert help_commands(reply.content) == expected
    assert heading in reply.content
    for command in menu:  # the same descriptions, in the same language
        assert f"/{command['command']} – {command['description']}" in reply.content


async def test_anything_else_in_a_private_chat_gets_the_help(tillbot: Harness) -> None:
    await menus_ready(tillbot)
    for user in (tillbot.stranger, tillbot.merchant2):
        for text in ("hello", "/nonsense"):
            reply = await tillbot.command(user, text)
            assert help_commands(reply.content) == menu_names(tillbot, user)


async def test_language_chosen_in_settings_changes_menu_and_help(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant
    await menus_ready(tillbot)
    settings = await tillbot.command(merchant, "/settings")
    assert "Settings" in settings.content and "automatic" in settings.content
    assert await answer_of(tillbot, merchant, settings, "Deutsch") == "Gespeichert."
    await emu.wait_for(lambda: "Einstellungen" in settings.content)
    chat = {"type": "chat", "chat_id": merchant.id}
    await emu.wait_for(lambda: not emu.commands_for(chat, "de"))  # one menu: the chosen one
    assert emu.commands_for(chat, "")[0]["description"].startswith("Rechnung erstellen")
    reply = await tillbot.command(merchant, "/help")
    assert "Befehle" in reply.content and help_commands(reply.content) == MERCHANT_MENU

    # "automatic": Telegram's language again (English for Maria), menus per language again.
    assert await answer_of(tillbot, merchant, settings, "set:lang:auto") == "Saved."
    await emu.wait_for(lambda: emu.commands_for(chat, "de"))
    assert emu.commands_for(chat, "")[0]["description"].startswith("Create an invoice")
    reply = await tillbot.command(merchant, "/help")
    assert "Commands" in reply.content


# -- 1. merchants: /invoices, showing one, cancelling -----------------------------------------
async def create_invoices(harness: Harness, merchant_id: int, count: int) -> list[Invoice]:
    """Invoices made through the payment service (the command path is tested elsewhere)."""
    payments = harness.services.payments
    return [
        await payments.create_invoice(merchant_id, InvoiceDraft(f"{i + 1}", f"Item {i + 1}"))
        for i in range(count)
    ]


async def test_invoices_are_paged_and_tapping_one_shows_it(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant
    made = await create_invoices(tillbot, merchant.id, 9)
    await create_invoices(tillbot, tillbot.merchant2.id, 1)  # someone else's: never listed
    listing = await tillbot.command(merchant, "/invoices")
    assert "Your invoices" in listing.content and "1–8 of 9" in listing.content
    shown = callback_buttons(listing, "show:")
    assert [b["callback_data"] for b in shown] == [f"show:{i.id}" for i in reversed(made[1:])]
    assert "€9.00" in shown[0]["text"] and "waiting for payment" in shown[0]["text"]
    assert [b["text"] for b in callback_buttons(listing, "page:")] == ["Older ▶"]

    await answer_of(tillbot, merchant, listing, "Older ▶")
    await emu.wait_for(lambda: "9–9 of 9" in listing.content)
    assert [b["callback_data"] for b in callback_buttons(listing, "show:")] == [
        f"show:{made[0].id}"
    ]
    assert [b["text"] for b in callback_buttons(listing, "page:")] == ["◀ Newer"]

    before = len(emu.bot_messages(merchant))
    await answer_of(tillbot, merchant, listing, f"show:{made[0].id}")
    opened = await emu.wait_for(lambda: emu.bot_messages(merchant)[before:])
    assert f"Invoice #{made[0].id}" in opened[0].content and "€1.00" in opened[0].content
    assert callback_buttons(opened[0], "cancel:")  # the merchant's own view
    await messages_stored(tillbot, made[0].id, 1)  # it is kept up to date like any other
    rows = await tillbot.services.repo.messages_for(made[0].id)
    assert [m.role for m in rows] == [MessageRole.MERCHANT]


async def test_invoices_in_german_and_when_there_are_none(tillbot: Harness) -> None:
    empty = await tillbot.command(tillbot.merchant2, "/invoices")
    assert "noch keine Rechnungen" in empty.content
    await create_invoices(tillbot, tillbot.merchant2.id, 1)
    listing = await tillbot.command(tillbot.merchant2, "/invoices")
    assert "Deine Rechnungen" in listing.content
    assert (
        "1,00 €" in listing.buttons[0]["text"]
        and "wartet auf Zahlung" in listing.buttons[0]["text"]
    )


async def test_only_merchants_list_invoices(tillbot: Harness) -> None:
    for user in (tillbot.stranger, tillbot.customer):
        reply = await tillbot.command(user, "/invoices")
        assert reply.content.startswith("Sorry, /invoices is for merchants only.")


async def test_someone_elses_show_and_page_buttons_do_nothing(tillbot: Harness) -> None:
    emu = tillbot.emu
    made = await create_invoices(tillbot, tillbot.merchant.id, 9)
    listing = await tillbot.command(tillbot.merchant, "/invoices")
    before = {u.id: len(emu.bot_messages(u)) for u in (tillbot.merchant, tillbot.merchant2)}
    # Forged presses on Maria's list, by another merchant and by a stranger:
    answer = await answer_of(tillbot, tillbot.merchant2, listing, f"show:{made[-1].id}")
    assert answer == "Das ist nicht deine Rechnung."
    answer = await answer_of(tillbot, tillbot.stranger, listing, f"show:{made[-1].id}")
    assert answer == "That is not your invoice."
    await answer_of(tillbot, tillbot.stranger, listing, "Older ▶")
    assert "1–8 of 9" in listing.content and listing.edits == 0
    assert {u.id: len(emu.bot_messages(u)) for u in (tillbot.merchant, tillbot.merchant2)} == before
    assert emu.bot_messages(tillbot.stranger) == []


async def test_cancel_where_the_gateway_cannot_says_it_is_cancelled_here_only(
    tillbot: Harness,
) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 4 Juice")
    assert await answer_of(tillbot, tillbot.merchant, reply, "🚫 Cancel invoice") == ""
    await tillbot.emu.wait_for(lambda: reply.find_button("Yes, cancel") is not None)
    answer = await answer_of(tillbot, tillbot.merchant, reply, "Yes, cancel")
    assert answer == "Cancelled here; Sandbox cannot cancel sessions, so it just expires there."
    await tillbot.emu.wait_for(lambda: "cancelled" in reply.content)
    assert "Sandbox cannot cancel sessions" in reply.content and not reply.buttons
    assert (await stored(tillbot, invoice.id)).status is InvoiceStatus.CANCELLED
    # A client that still shows the old keyboard: the press says why, in the user's words.
    stale = {"text": "stale", "callback_data": f"cancel:{invoice.id}"}
    reply.reply_markup = {"inline_keyboard": [[stale]]}
    answer = await answer_of(tillbot, tillbot.merchant, reply, "stale")
    assert answer == "This invoice is no longer open (🚫 cancelled)."


async def test_cancel_at_a_gateway_that_can_in_german(
    tillbot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = tillbot.services.gateways["sandbox"]
    sandbox = tillbot.sandbox()
    cancelled: list[str] = []

    async def cancel(session_id: str) -> bool:
        await sandbox.cancel(session_id)
        cancelled.append(session_id)
        return True

    monkeypatch.setattr(gateway, "supports_cancel", True)
    monkeypatch.setattr(gateway, "cancel", cancel)
    reply, invoice = await tillbot.invoice(tillbot.merchant2, "/invoice 4,50 Saft")
    assert "4,50 €" in reply.content
    await answer_of(tillbot, tillbot.merchant2, reply, "🚫 Rechnung stornieren")
    await tillbot.emu.wait_for(lambda: reply.find_button("Ja, stornieren") is not None)
    answer = await answer_of(tillbot, tillbot.merchant2, reply, "Ja, stornieren")
    assert answer == "Auch bei Sandbox storniert."
    await tillbot.emu.wait_for(lambda: "storniert" in reply.content)
    assert "Auch bei Sandbox storniert." in reply.content
    assert cancelled == [invoice.gateway_session_id]


async def test_a_cancel_button_pressed_by_someone_else_does_nothing(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 4 Juice")
    shown_edits = reply.edits  # the placeholder edited into the invoice
    answer = await answer_of(tillbot, tillbot.merchant2, reply, f"cancel:{invoice.id}")
    assert answer == "Das ist nicht deine Rechnung."
    answer = await answer_of(tillbot, tillbot.customer, reply, f"cancel:{invoice.id}")
    assert answer == "That is not your invoice."
    assert (await stored(tillbot, invoice.id)).status is InvoiceStatus.PENDING
    assert reply.edits == shown_edits and tillbot.emu.bot_messages(tillbot.customer) == []
    # An admin may cancel any invoice (asked first, like the merchant).
    await answer_of(tillbot, tillbot.admin, reply, f"cancel:{invoice.id}")
    await tillbot.emu.wait_for(lambda: reply.find_button("Yes, cancel") is not None)
    await answer_of(tillbot, tillbot.admin, reply, "Yes, cancel")
    await tillbot.emu.wait_for(lambda: "cancelled" in reply.content)


# -- 1. merchants: /report ----------------------------------------------------------------------
async def test_report_sends_a_csv_and_a_one_line_summary(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant
    now = datetime.now(UTC) - timedelta(minutes=1)
    paid, pending = InvoiceStatus.PAID, InvoiceStatus.PENDING
    coffee = await store_invoice(tillbot, merchant.id, "12.50", "EUR", paid, now, description="Coffee")
    formula = await store_invoice(
        tillbot, merchant.id, "3", "EUR", pending, now, description="=HYPERLINK(1)"
    )
    lamp = await store_invoice(tillbot, merchant.id, "10", "USD", pending, now, description="Lamp")
    test = await create_invoices(tillbot, merchant.id, 1)  # a sandbox test: never counted
    await tillbot.services.payments.simulate_payment(test[0])
    await create_invoices(tillbot, tillbot.merchant2.id, 1)  # not in Maria's report

    document = await tillbot.command(merchant, "/report")
    assert document.document is not None and document.document_filename is not None
    assert re.fullmatch(r"tillbot-month-\d{8}\.csv", document.document_filename)
    assert document.content == "3 invoices, the last 30 days"
    rows = list(csv.reader(io.StringIO(document.document.decode("utf-8"))))
    assert rows[0] == [
        "number", "created", "amount", "currency", "gateway", "status", "paid_at", "description",
        "cashier",
    ]  # fmt: skip
    by_number = {int(row[0]): row for row in rows[1:]}  # the merchant's own numbers
    assert set(by_number) == {coffee.number, formula.number, lamp.number} == {1, 2, 3}
    assert by_number[coffee.number][2:6] == ["12.50", "EUR", "mixpay", "paid"]
    assert by_number[coffee.number][6] and by_number[coffee.number][7] == "Coffee"
    assert datetime.fromisoformat(by_number[coffee.number][1]).tzinfo is not None
    assert by_number[lamp.number][2:7] == ["10.00", "USD", "mixpay", "pending", ""]
    assert by_number[formula.number][7] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet

    summary = await emu.wait_for_message(merchant, lambda m: m.content.startswith("📊"))
    assert summary.content == (
        "📊 the last 30 days: EUR ✅ PAID: 1 · €12.50"
        " | EUR ⏳ waiting for payment: 1 · €3.00"
        " | USD ⏳ waiting for payment: 1 · $10.00"
        "\n🧪 1 sandbox test not counted"
    )


async def test_report_in_german_and_for_a_period(tillbot: Harness) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    await store_invoice(
        tillbot, tillbot.merchant2.id, "12.50", "EUR", InvoiceStatus.PAID, now, description="Kaffee"
    )
    document = await tillbot.command(tillbot.merchant2, "/report today")
    assert document.content == "1 Rechnung, heute"  # the singular (issue 13: plural forms)
    summary = await tillbot.emu.wait_for_message(
        tillbot.merchant2, lambda m: m.content.startswith("📊")
    )
    assert summary.content == "📊 heute: EUR ✅ BEZAHLT: 1 · 12,50 €"


async def test_report_bad_period_empty_period_and_strangers(tillbot: Harness) -> None:
    reply = await tillbot.command(tillbot.merchant, "/report yesterday")
    assert "/report today" in reply.content and reply.document is None
    reply = await tillbot.command(tillbot.merchant, "/report week")
    assert reply.content == "No invoices in that period (the last 7 days)."
    reply = await tillbot.command(tillbot.merchant2, "/report gestern")
    assert "Schreib" in reply.content
    for user in (tillbot.stranger, tillbot.customer):
        reply = await tillbot.command(user, "/report")
        assert "/report is for merchants only" in reply.content and reply.document is None


# -- 1. merchants: /settings --------------------------------------------------------------------
@pytest.fixture
async def mixpay() -> AsyncIterator[MixPaySimulator]:
    sim = MixPaySimulator(payee_id=DEFAULT_PAYEE_ID)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def mixpay_settings(sim: MixPaySimulator) -> dict[str, Any]:
    return {
        "mixpay_api_url": sim.url,
        "mixpay_payee_id": DEFAULT_PAYEE_ID,
        "mixpay_settlement_asset_id": USDT_ERC20,
        "mixpay_payment_asset_id": BTC,
        "mixpay_quote_asset_id": "usd",
        "sandbox_enabled": True,  # beside a real gateway, only when set explicitly
    }


async def test_settings_default_gateway_for_merchants_only(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    await bot.start(**mixpay_settings(mixpay))
    emu = bot.emu
    menu = await bot.command(bot.merchant, "/settings")
    assert "Default gateway: Sandbox" in menu.content
    assert [b["text"] for b in callback_buttons(menu, "set:gw:")] == ["• Sandbox", "MixPay"]
    assert await answer_of(bot, bot.merchant, menu, "MixPay") == "Saved."
    await emu.wait_for(lambda: "Default gateway: MixPay" in menu.content)
    assert [b["text"] for b in callback_buttons(menu, "set:gw:")] == ["Sandbox", "• MixPay"]
    _, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    assert invoice.gateway == "mixpay" and invoice.currency == "USD"
    assert mixpay.create_count == 1

    # A customer's /settings has the language only; a forged gateway press changes nothing.
    mine = await bot.command(bot.customer, "/settings")
    assert "Default gateway" not in mine.content and not callback_buttons(mine, "set:gw:")
    await answer_of(bot, bot.customer, menu, "set:gw:sandbox")
    assert (await bot.services.repo.get_prefs(bot.customer.id)).gateway is None
    assert (await bot.services.repo.get_prefs(bot.merchant.id)).gateway == "mixpay"


async def test_settings_language_for_a_customer(tillbot: Harness) -> None:
    emu, customer = tillbot.emu, tillbot.customer
    menu = await tillbot.command(customer, "/settings")
    assert menu.content == "⚙️ Settings\nLanguage: automatic"
    assert await answer_of(tillbot, customer, menu, "Deutsch") == "Gespeichert."
    await emu.wait_for(lambda: menu.content == "⚙️ Einstellungen\nSprache: Deutsch")
    # Their own menu now, in the chosen language (customers otherwise share the default).
    await emu.wait_for(lambda: menu_seen_by(tillbot, customer)[1]["description"] == "Hilfe")
    reply = await tillbot.command(customer, "/help")
    assert "So bezahlst du" in reply.content
    assert help_commands(reply.content) == menu_names(tillbot, customer) == CUSTOMER_MENU
    await answer_of(tillbot, customer, menu, "set:lang:auto")
    chat = {"type": "chat", "chat_id": customer.id}
    await emu.wait_for(lambda: not emu.commands_for(chat, ""))
    assert menu_seen_by(tillbot, customer) == emu.commands_for(DEFAULT, "")


# -- 2. inline mode -----------------------------------------------------------------------------
async def inline_results(harness: Harness, user: EmuUser, text: str) -> tuple[str, dict[str, Any]]:
    query_id = await harness.emu.inline_query(user, text)
    return query_id, await harness.emu.wait_for_inline_answer(query_id)


async def test_inline_card_becomes_the_invoice_and_is_edited_to_paid(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant
    group = emu.add_group(-100777, "Café regulars")
    query_id, answer = await inline_results(tillbot, merchant, "12.50 Coffee")
    [card_result] = answer["results"]
    assert card_result["title"] == "Invoice €12.50"
    assert answer.get("is_personal") is True and answer.get("cache_time") == 0
    assert await tillbot.services.repo.count_invoices(merchant.id) == 0  # not yet: only offered

    card = await emu.choose_inline_result(merchant, query_id, card_result["id"], chat=group)
    await emu.wait_for(lambda: "Invoice #" in card.content)
    [invoice] = await tillbot.services.repo.list_invoices(merchant.id, limit=5)
    assert invoice.amount_minor == 1250 and invoice.description == "Coffee"
    assert "€12.50" in card.content and "Coffee" in card.content
    assert [b for b in card.buttons if "url" in b], card.buttons  # Pay
    assert not callback_buttons(card, "cancel:")  # the chat sees no merchant controls
    [row] = await tillbot.services.repo.messages_for(invoice.id)
    assert row.role is MessageRole.INLINE and row.inline_message_id == card.inline_message_id

    assert invoice.gateway_session_id is not None
    await tillbot.sandbox().pay(invoice.gateway_session_id)  # paid at the gateway: polling sees it
    await emu.wait_for(lambda: "PAID" in card.content)
    assert not card.buttons
    assert (
        emu.calls("editMessageText")[-1].params.get("inline_message_id") == card.inline_message_id
    )
    await emu.wait_for_message(tillbot.admin, lambda m: f"#{invoice.id} paid" in m.content)


async def test_inline_in_german_and_paid_from_the_card(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant2
    query_id, answer = await inline_results(tillbot, merchant, "12,50 Kaffee")
    [result] = answer["results"]
    assert result["title"] == "Rechnung über 12,50 €"
    card = await emu.choose_inline_result(merchant, query_id, result["id"])
    await emu.wait_for(lambda: "Rechnung Nr." in card.content)
    assert "12,50 €" in card.content and "wartet auf Zahlung" in card.content
    # Anyone in the chat may pay (here: the sandbox's Simulate button on the card).
    await answer_of(tillbot, tillbot.customer, card, "🧪 Zahlung simulieren")
    await emu.wait_for(lambda: "BEZAHLT" in card.content)


async def test_inline_offers_nothing_to_non_merchants(tillbot: Harness) -> None:
    for user in (tillbot.stranger, tillbot.customer):
        _, answer = await inline_results(tillbot, user, "12.50 Coffee")
        assert answer["results"] == []
    assert await tillbot.services.repo.count_invoices(tillbot.stranger.id) == 0


async def test_inline_bad_amount_and_empty_query(tillbot: Harness) -> None:
    emu, merchant = tillbot.emu, tillbot.merchant
    query_id, answer = await inline_results(tillbot, merchant, "abc Coffee")
    [result] = answer["results"]
    assert result["id"] == "error" and result["title"] == "Cannot create that invoice"
    assert "not an amount" in result["description"]
    card = await emu.choose_inline_result(merchant, query_id, "error")
    assert "not an amount" in card.content and not card.buttons
    _, answer = await inline_results(tillbot, merchant, "")
    assert answer["results"] == []
    assert answer["button"] == {
        "text": "Type an amount, e.g. 12.50 Coffee",
        "start_parameter": "help",
    }
    reply = await tillbot.command(merchant, "/start help")
    assert help_commands(reply.content) == MERCHANT_MENU
    assert await tillbot.services.repo.count_invoices(merchant.id) == 0


async def test_inline_card_of_a_removed_merchant_says_so(tillbot: Harness) -> None:
    emu = tillbot.emu
    assert await tillbot.command(tillbot.admin, f"/merchants add {tillbot.stranger.id}")
    query_id, answer = await inline_results(tillbot, tillbot.stranger, "5 Tea")
    [result] = answer["results"]
    await tillbot.command(tillbot.admin, f"/merchants remove {tillbot.stranger.id}")
    card = await emu.choose_inline_result(tillbot.stranger, query_id, result["id"])
    await emu.wait_for(lambda: "only merchants" in card.content)  # the inline card: no command
    assert not card.buttons
    assert await tillbot.services.repo.count_invoices(tillbot.stranger.id) == 0


# -- 3. customers -------------------------------------------------------------------------------
async def test_customer_pays_and_gets_a_receipt_naming_the_merchant(tillbot: Harness) -> None:
    emu = tillbot.emu
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 12.50 Coffee")
    shown = await tillbot.command(tillbot.customer, f"/start {share_token(reply)}")
    assert "€12.50" in shown.content and "Coffee" in shown.content
    assert [b["text"] for b in shown.buttons if "url" in b] == ["💳 Pay €12.50"]
    assert not callback_buttons(shown, "cancel:")
    await messages_stored(tillbot, invoice.id, 2)
    await answer_of(tillbot, tillbot.customer, shown, "🧪 Simulate payment")
    receipt = await emu.wait_for_message(tillbot.customer, lambda m: "Receipt" in m.content)
    paid = await stored(tillbot, invoice.id)
    assert paid.paid_at is not None
    assert receipt.content == (
        "🧾 Receipt\n€12.50 paid to Maria\n“Coffee”\n"
        f"Paid: {paid.paid_at:%Y-%m-%d %H:%M} UTC\n"
        f"Gateway: Sandbox · Reference: {invoice.gateway_session_id}\n"
        f"Invoice #{invoice.id}\n"
        "🧪 Sandbox test: no real money moved."  # a sandbox receipt says it is a test
    )
    notice = await emu.wait_for_message(tillbot.admin, lambda m: f"#{invoice.id}" in m.content)
    assert "merchant Maria (1001)" in notice.content


async def test_german_merchant_amounts_everywhere_in_each_readers_language(
    tillbot: Harness,
) -> None:
    emu = tillbot.emu
    klara = add_german_customer(tillbot)
    reply, invoice = await tillbot.invoice(tillbot.merchant2, "/invoice 12,50 Kaffee")
    assert invoice.amount_minor == 1250 and invoice.currency == "EUR"
    assert "Betrag: 12,50 €" in reply.content and "wartet auf Zahlung" in reply.content
    token = share_token(reply)
    german = await tillbot.command(klara, f"/start {token}")
    english = await tillbot.command(tillbot.customer, f"/start {token}")
    assert "Betrag: 12,50 €" in german.content
    assert [b["text"] for b in german.buttons if "url" in b] == ["💳 12,50 € bezahlen"]
    assert "Amount: €12.50" in english.content
    await messages_stored(tillbot, invoice.id, 3)

    assert invoice.gateway_session_id is not None
    await tillbot.sandbox().pay(invoice.gateway_session_id)
    await emu.wait_for(
        lambda: (
            "BEZAHLT" in reply.content and "BEZAHLT" in german.content and "PAID" in english.content
        )
    )
    assert (
        "12,50 €" in reply.content and "12,50 €" in german.content and "€12.50" in english.content
    )
    receipt_de = await emu.wait_for_message(klara, lambda m: "Quittung" in m.content)
    assert receipt_de.content.startswith("🧾 Quittung\n12,50 € bezahlt an Max\n„Kaffee“")
    receipt_en = await emu.wait_for_message(tillbot.customer, lambda m: "Receipt" in m.content)
    assert receipt_en.content.startswith("🧾 Receipt\n€12.50 paid to Max\n“Kaffee”")


async def test_customer_opens_a_counter_invoice_and_sees_the_lightning_qr(
    tillbot: Harness,
) -> None:
    photo = await tillbot.command(tillbot.merchant, "/pos 5 Espresso")
    assert photo.photo is not None and "Lightning" in photo.content
    shown = await tillbot.command(tillbot.customer, f"/start {share_token(photo)}")
    assert shown.photo is not None and "⚡ Lightning" in shown.content and "€5.00" in shown.content
    assert not callback_buttons(shown, "cancel:")


async def test_customers_cannot_use_merchant_or_admin_commands(tillbot: Harness) -> None:
    customer = tillbot.customer
    assert "/invoice is for merchants only" in (
        await tillbot.command(customer, "/invoice 5 Tea")
    ).content
    assert "/pos is for merchants only" in (await tillbot.command(customer, "/pos 5")).content
    assert "/merchants is for admins only" in (
        await tillbot.command(customer, "/merchants")
    ).content
    welcome = await tillbot.command(customer, "/start")
    assert welcome.content.startswith("👋 Hi Chris!") and "invoice link" in welcome.content
    unknown = await tillbot.command(customer, "/start no-such-invoice")
    assert "cannot find that invoice" in unknown.content
    assert tillbot.sandbox().create_count == 0


# -- 4. admins: /merchants ----------------------------------------------------------------------
async def test_admin_adds_and_removes_a_merchant_by_id(tillbot: Harness) -> None:
    emu, admin_user, sam = tillbot.emu, tillbot.admin, tillbot.stranger
    await menus_ready(tillbot)
    await tillbot.command(tillbot.merchant, "/help")  # who writes, the bot knows by name
    refused = await tillbot.command(sam, "/invoice 5 Tea")
    assert "/invoice is for merchants only" in refused.content
    reply = await tillbot.command(admin_user, f"/merchants add {sam.id}")
    assert reply.content == f"✅ {sam.id} is now a merchant.\nI have told them."
    assert await tillbot.services.repo.is_merchant(sam.id)
    sam_chat = {"type": "chat", "chat_id": sam.id}
    await emu.wait_for(lambda: emu.commands_for(sam_chat, ""))
    assert menu_names(tillbot, sam) == MERCHANT_MENU
    _, invoice = await tillbot.invoice(sam, "/invoice 5 Tea")
    assert invoice.merchant_id == sam.id

    listing = await tillbot.command(admin_user, "/merchants")
    assert listing.content.startswith(
        f"👥 Merchants\n• {sam.id} Sam · 1 person\n• {MERCHANT_ID} Maria (MERCHANT_IDS) · 1 person\n"
        f"• {tillbot.merchant2.id} (MERCHANT_IDS) · 1 person\n\n"
    )
    assert [b["text"] for b in listing.buttons] == [f"🗑 Remove {sam.id}"]
    again = await tillbot.command(admin_user, f"/merchants add {sam.id}")
    assert again.content == f"{sam.id} is already a merchant."

    reply = await tillbot.command(admin_user, f"/merchants remove {sam.id}")
    assert reply.content == f"🗑 {sam.id} is no longer a merchant.\nI have told them."
    await emu.wait_for(lambda: not emu.commands_for(sam_chat, ""))
    assert menu_names(tillbot, sam) == CUSTOMER_MENU
    assert "for merchants only" in (await tillbot.command(sam, "/invoice 5 Tea")).content
    reply = await tillbot.command(admin_user, f"/merchants remove {sam.id}")
    assert reply.content == f"{sam.id} is not a merchant in the database."
    reply = await tillbot.command(admin_user, f"/merchants remove {MERCHANT_ID}")
    assert reply.content == f"{MERCHANT_ID} is set in MERCHANT_IDS; remove it there."


async def test_admin_adds_a_merchant_by_forwarding_their_message(two_admins: Harness) -> None:
    bot = two_admins
    emu, adele, sam = bot.emu, bot.emu.users[ADMIN_DE_ID], bot.stranger
    await emu.forward_message(adele, sam, "Hallo, ich verkaufe Kuchen")
    prompt = await emu.wait_for_message(adele, lambda m: "als Händler hinzufügen" in m.content)
    assert prompt.content == f"Sam ({sam.id}) als Händler hinzufügen?"
    assert await answer_of(bot, adele, prompt, "➕ Als Händler hinzufügen") == (
        f"✅ {sam.id} ist jetzt Händler."
    )
    await emu.wait_for(lambda: not prompt.buttons and "ist jetzt Händler" in prompt.content)
    assert await bot.services.repo.is_merchant(sam.id)
    [stored_merchant] = await bot.services.repo.list_merchants()
    assert stored_merchant.added_by == ADMIN_DE_ID

    await emu.forward_message(bot.admin, "Hidden Person")
    hidden = await emu.wait_for_message(bot.admin, lambda m: "hides their account" in m.content)
    assert hidden.content.startswith("That person hides")


async def test_admin_removes_a_merchant_with_the_list_button(tillbot: Harness) -> None:
    emu, admin_user = tillbot.emu, tillbot.admin
    await tillbot.command(admin_user, "/merchants add 4242")
    listing = await tillbot.command(admin_user, "/merchants")
    assert "4242" in listing.content
    assert await answer_of(tillbot, admin_user, listing, "🗑 Remove 4242") == (
        "🗑 4242 is no longer a merchant."
    )
    await emu.wait_for(lambda: "4242" not in listing.content)
    assert not listing.buttons and not await tillbot.services.repo.is_merchant(4242)


@pytest.mark.parametrize(
    "text",
    [
        "/merchants add",
        "/merchants add abc",
        "/merchants add -100123",
        "/merchants add 0",
        "/merchants add 99999999999999999999999",
        "/merchants delete 4242",
        "/merchants add 4242 4243",
        "/merchants 4242",
    ],
)
async def test_merchants_bad_input_gets_the_usage_and_changes_nothing(
    tillbot: Harness, text: str
) -> None:
    reply = await tillbot.command(tillbot.admin, text)
    assert reply.content.startswith("Write /merchants add 12345")
    assert await tillbot.services.repo.list_merchants() == []


async def test_only_admins_manage_merchants_on_every_command_and_press(tillbot: Harness) -> None:
    emu = tillbot.emu
    await tillbot.command(tillbot.admin, "/merchants add 4242")
    listing = await tillbot.command(tillbot.admin, "/merchants")
    for user in (tillbot.merchant, tillbot.stranger, tillbot.customer):
        reply = await tillbot.command(user, "/merchants add 5555")
        assert reply.content == "Sorry, /merchants is for admins only."
        # A forged press of the admin's Remove button, from the user's own account:
        assert await answer_of(tillbot, user, listing, "merch:rm:4242") == (
            "Sorry, only admins can do that."
        )
    reply = await tillbot.command(tillbot.merchant2, "/merchants")
    assert reply.content == "Entschuldigung, /merchants ist nur für Admins."
    assert [m.user_id for m in await tillbot.services.repo.list_merchants()] == [4242]
    assert listing.edits == 0
    # A non-admin forwarding a message gets the help, no offer to add anyone.
    await emu.forward_message(tillbot.merchant, tillbot.stranger, "hi")
    reply = await emu.wait_for_message(tillbot.merchant, lambda m: "Commands" in m.content)
    assert help_commands(reply.content) == MERCHANT_MENU
    assert not any("as a merchant" in m.content for m in emu.bot_messages(tillbot.merchant))


# -- 4. admins: notices of paid, late, underpaid and failed payments ----------------------------
def mixpay_session(sim: MixPaySimulator, invoice: Invoice) -> str:
    if invoice.gateway_session_id in sim.sessions:
        return invoice.gateway_session_id
    reference = reference_for(invoice)
    return next(key for key, s in sim.sessions.items() if reference in (s.order_id, s.reference))


async def test_admins_and_merchant_are_told_in_their_own_language(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    adele = add_german_admin(bot)
    await bot.start(
        admin_ids=[ADMIN_ID, ADMIN_DE_ID],
        poll_max_interval_seconds=0.2,  # late payments are looked for every second
        callback_poll_interval_seconds=0.2,
        telegram_chat_interval_seconds=0.05,  # ten messages to Max's chat need not take 10 s
        **mixpay_settings(mixpay),
    )
    emu, max_ = bot.emu, bot.merchant2
    await bot.command(adele, "/help")  # Adele has written: her Telegram language is known

    def notice(user: EmuUser, text: str) -> Any:
        return emu.wait_for_message(user, lambda m: text in m.content, timeout=8)

    _, paid = await bot.invoice(max_, "/invoice 12,50 Kaffee")
    late_reply, late = await bot.invoice(max_, "/invoice 3 Kuchen")
    _, short = await bot.invoice(max_, "/invoice mixpay 10 Lampe")
    _, failed = await bot.invoice(max_, "/invoice mixpay 20 Stuhl")
    await bot.sandbox().pay(paid.gateway_session_id or "")
    await bot.sandbox().expire(late.gateway_session_id or "")
    mixpay.underpay(mixpay_session(mixpay, short))
    mixpay.fail(mixpay_session(mixpay, failed))
    await emu.wait_for(lambda: "abgelaufen" in late_reply.content, timeout=5)
    await bot.sandbox().pay(late.gateway_session_id or "", force=True)  # after it expired

    en = await notice(bot.admin, f"Invoice #{paid.id} paid")
    assert (
        en.content
        == f"💰 Invoice #{paid.id} paid: €12.50 (Sandbox) · merchant Max (1002)\n“Kaffee”"
    )
    de = await notice(adele, f"Rechnung Nr. {paid.id} bezahlt")
    assert de.content == (
        f"💰 Rechnung Nr. {paid.id} bezahlt: 12,50 € (Sandbox) · Händler Max (1002)\n„Kaffee“"
    )
    assert "was expired but got paid" in (await notice(bot.admin, "Late payment")).content
    await notice(adele, f"Verspätete Zahlung: Rechnung Nr. {late.id}")
    told = await notice(max_, "wurde verspätet bezahlt")
    assert told.content == (
        f"💰 Rechnung Nr. {late.id} (3,00 €) wurde verspätet bezahlt, sie war abgelaufen."
    )
    await emu.wait_for(lambda: "verspätet" in late_reply.content)

    assert "underpaid" in (await notice(bot.admin, f"Invoice #{short.id} underpaid")).content
    await notice(adele, f"Rechnung Nr. {short.id} zu wenig bezahlt")
    told = await notice(max_, "wurde zu wenig bezahlt")
    assert told.content.startswith(f"⚠️ Rechnung Nr. {short.id} (10,00 $) wurde zu wenig bezahlt")

    await notice(bot.admin, f"Invoice #{failed.id} failed at MixPay")
    await notice(adele, f"Rechnung Nr. {failed.id} fehlgeschlagen bei MixPay")
    await notice(max_, f"Rechnung Nr. {failed.id} (20,00 $) ist bei MixPay fehlgeschlagen")
    # Each admin was told once of each of the four; the merchant of none that was paid on time.
    for user in (bot.admin, adele):
        for invoice in (paid, late, short, failed):
            named = re.compile(rf"(#|Nr\. ){invoice.id}\b")
            mentions = [m for m in emu.bot_messages(user) if named.search(m.content)]
            assert len(mentions) == 1, (user.id, invoice.id, [m.content for m in mentions])
    assert not [m for m in emu.bot_messages(max_) if m.content.startswith("💰 Rechnung Nr. 1 ")]


async def test_notices_follow_the_telegram_language_across_a_restart(
    mixpay: MixPaySimulator, harness: Harness
) -> None:
    bot = harness
    adele, klara = add_german_admin(bot), add_german_customer(bot)
    await bot.start(admin_ids=[ADMIN_ID, ADMIN_DE_ID], **mixpay_settings(mixpay))
    emu, max_ = bot.emu, bot.merchant2
    await bot.command(adele, "/help")
    reply, lamp = await bot.invoice(max_, "/invoice mixpay 10 Lampe")
    await bot.command(klara, f"/start {share_token(reply)}")
    await messages_stored(bot, lamp.id, 2)

    await bot.restart()  # nothing of the last process's memory is left
    assert bot.services.seen_language == {}
    mixpay.pay(mixpay_session(mixpay, lamp))
    receipt = await emu.wait_for_message(klara, lambda m: "Quittung" in m.content, timeout=8)
    assert receipt.content.startswith("🧾 Quittung\n10,00 $ bezahlt an Max")
    await emu.wait_for_message(adele, lambda m: f"Rechnung Nr. {lamp.id} bezahlt" in m.content)
    await emu.wait_for_message(bot.admin, lambda m: f"Invoice #{lamp.id} paid" in m.content)


# -- 4. admins: the daily summary ---------------------------------------------------------------
async def store_yesterdays(
    harness: Harness,
    merchant_id: int,
    amount: str,
    currency: str,
    status: InvoiceStatus,
    gateway: str = "mixpay",
) -> Invoice:
    """An invoice created yesterday at noon (UTC), moved to `status`, straight in storage."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return await store_invoice(
        harness, merchant_id, amount, currency, status, noon - timedelta(days=1), gateway=gateway
    )


async def store_invoice(
    harness: Harness,
    merchant_id: int,
    amount: str,
    currency: str,
    status: InvoiceStatus,
    created: datetime,
    *,
    gateway: str = "mixpay",
    description: str = "",
) -> Invoice:
    """An invoice of `gateway` created at `created`, moved to `status`, straight in storage
    (a real gateway's by default: sandbox tests never count in reports)."""
    repo = harness.services.repo
    invoice = await repo.create_invoice(
        NewInvoice(
            public_token=f"stored-{amount}-{currency}-{status}-{merchant_id}-{gateway}-{description}",
            merchant_id=merchant_id,
            amount_minor=int(Decimal(amount) * 100),
            currency=currency,
            description=description,
            gateway=gateway,
            kind=InvoiceKind.CHECKOUT,
            created_at=created,
        )
    )
    if status is not InvoiceStatus.PENDING:
        moved = await repo.transition(
            Transition(
                invoice_id=invoice.id,
                expected=frozenset({InvoiceStatus.PENDING}),
                new_status=status,
                at=created + timedelta(seconds=5),
                paid_at=created + timedelta(seconds=5) if status is InvoiceStatus.PAID else None,
            )
        )
        assert moved is not None
        invoice = moved
    return invoice


async def test_daily_summary_reaches_each_admin_once_in_their_language(
    two_admins: Harness,
) -> None:
    bot = two_admins
    emu, services, adele = bot.emu, bot.services, bot.emu.users[ADMIN_DE_ID]
    assert bot.runner is not None
    app = bot.runner.app
    assert app.job_queue is not None
    assert [job.name for job in app.job_queue.get_jobs_by_name("daily-summary")] == [
        "daily-summary"
    ]
    await bot.command(adele, "/help")
    await store_yesterdays(bot, MERCHANT_ID, "12.50", "EUR", InvoiceStatus.PAID)
    await store_yesterdays(bot, MERCHANT_ID, "10", "USD", InvoiceStatus.PAID)
    await store_yesterdays(bot, bot.merchant2.id, "5", "EUR", InvoiceStatus.PAID)
    await store_yesterdays(bot, MERCHANT_ID, "3", "EUR", InvoiceStatus.CANCELLED)
    await store_yesterdays(bot, MERCHANT_ID, "4", "EUR", InvoiceStatus.EXPIRED)
    await store_yesterdays(bot, MERCHANT_ID, "7", "EUR", InvoiceStatus.PAID, gateway="sandbox")
    await services.payments.create_invoice(MERCHANT_ID, InvoiceDraft("99", "today's"))
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    app.job_queue.run_once(admin.daily_summary, 0)  # as the daily job runs it
    english = await emu.wait_for_message(bot.admin, lambda m: "Daily summary" in m.content)
    assert english.content == (
        f"📊 Daily summary for {day}:\n🚫 cancelled: 1 · €3.00\n⌛ expired: 1 · €4.00\n"
        "✅ PAID: 3 · €17.50, $10.00\n🧪 1 sandbox test not counted"
    )
    german = await emu.wait_for_message(adele, lambda m: "Tageszusammenfassung" in m.content)
    assert german.content == (
        f"📊 Tageszusammenfassung für {day}:\n🚫 storniert: 1 · 3,00 €\n⌛ abgelaufen: 1 · 4,00 €\n"
        "✅ BEZAHLT: 3 · 17,50 €, 10,00 $\n🧪 1 Sandbox-Test nicht mitgezählt"
    )

    await admin.daily_summary(TillbotContext(app))  # again, the same day: nothing new
    rows = [r for r in await services.repo.outbox_items() if r.event is OutboxEvent.DAILY_SUMMARY]
    assert sorted(r.chat_id or 0 for r in rows) == [ADMIN_ID, ADMIN_DE_ID]
    assert all(r.sent_at is not None for r in rows)
    for user, word in ((bot.admin, "Daily summary"), (adele, "Tageszusammenfassung")):
        assert len([m for m in emu.bot_messages(user) if word in m.content]) == 1
    assert not [m for m in emu.bot_messages(bot.merchant) if "summary" in m.content]


async def test_daily_summary_of_a_day_without_invoices(tillbot: Harness) -> None:
    assert tillbot.runner is not None
    await admin.daily_summary(TillbotContext(tillbot.runner.app))
    summary = await tillbot.emu.wait_for_message(tillbot.admin, lambda m: "Daily" in m.content)
    assert summary.content.endswith(":\nNo invoices.")
    assert not [m for m in tillbot.emu.bot_messages(tillbot.merchant) if "Daily" in m.content]


# -- strangers, in both languages ---------------------------------------------------------------
async def test_a_german_stranger_is_refused_kindly_and_changes_nothing(tillbot: Harness) -> None:
    emu = tillbot.emu
    fremd = emu.add_user(3004, "Frieda", language_code="de")
    welcome = await tillbot.command(fremd, "/start")
    assert welcome.content.startswith("👋 Hallo Frieda!")
    for text, expected in [
        ("/invoice 12,50 Kaffee", "/invoice ist nur für Händler"),
        ("/pos 5", "/pos ist nur für Händler"),
        ("/invoices", "/invoices ist nur für Händler"),
        ("/report", "/report ist nur für Händler"),
        ("/merchants add 3004", "/merchants ist nur für Admins"),
    ]:
        reply = await tillbot.command(fremd, text)
        assert expected in reply.content, (text, reply.content)
    settings = await tillbot.command(fremd, "/settings")
    assert settings.content == "⚙️ Einstellungen\nSprache: automatisch"
    _, answer = await inline_results(tillbot, fremd, "12,50 Kaffee")
    assert answer["results"] == []
    assert tillbot.sandbox().create_count == 0
    assert await tillbot.services.repo.list_merchants() == []


async def test_settings_and_merchant_list_in_german(two_admins: Harness) -> None:
    bot = two_admins
    menu = await bot.command(bot.merchant2, "/settings")
    assert menu.content == (
        "⚙️ Einstellungen\nStandard-Gateway: Sandbox\nSprache: automatisch\n"
        "Trinkgeld an der Kasse: 5 % · 10 % · 15 % (ändern: /settings tips 5 10 15)\n"
        "Zeitzone: UTC\n"
        "Täglicher Kassenabschluss: aus\nÄndern mit /settings timezone Europe/Berlin und"
        " /settings closing 22 (oder off)."
    )
    listing = await bot.command(bot.emu.users[ADMIN_DE_ID], "/merchants")
    assert listing.content.startswith("👥 Händler\n• 1001 (MERCHANT_IDS)")
    assert "Schreib /merchants add 12345" in listing.content
