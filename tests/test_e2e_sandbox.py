"""End to end over HTTP on the sandbox gateway: invoice, pay, edit, notify (issue 2)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import SettingsError, load_settings
from bot.domain.models import InvoiceStatus
from testkit.telegram.models import MessageRecord
from tests.conftest import TOKEN, Harness
from tests.test_e2e_gateways import decode_qr


def pay_button(message: MessageRecord) -> dict[str, str]:
    buttons = [b for b in message.buttons if "url" in b]
    assert buttons, f"no Pay button on {message.content!r}"
    return buttons[0]


def share_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if "?start=" in w)
    assert link.startswith("https://t.me/tillbot_test_bot?start=")
    return link.split("?start=", 1)[1]


async def test_invoice_reply_has_pay_button_and_share_link(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 12.50 Coffee")
    assert "€12.50" in reply.content and "Coffee" in reply.content
    assert "waiting for payment" in reply.content
    assert pay_button(reply)["url"].startswith("https://")
    assert share_token(reply) == invoice.public_token
    assert invoice.amount_minor == 1250 and invoice.currency == "EUR"
    assert invoice.status is InvoiceStatus.PENDING
    assert tillbot.sandbox().create_count == 1
    assert any(b.get("callback_data", "").startswith("sim:") for b in reply.buttons)


@pytest.mark.parametrize("text", ["/invoice 12,50 Tea", "/invoice 12 Tea", "/invoice 12.5 Tea"])
async def test_accepted_amount_forms(tillbot: Harness, text: str) -> None:
    _, invoice = await tillbot.invoice(tillbot.merchant, text)
    assert invoice.amount_minor in (1250, 1200)
    assert invoice.description == "Tea"


BAD_AMOUNTS = [
    ("/invoice", "amount"),
    ("/invoice abc", "not an amount"),
    ("/invoice 12.505", "at most 2 decimals"),
    ("/invoice 0", "greater than zero"),
    ("/invoice -5", "greater than zero"),
    ("/invoice 1e3", "not an amount"),
    ("/invoice NaN", "not an amount"),
    ("/invoice inf", "not an amount"),
    ("/invoice Infinity", "not an amount"),
    ("/invoice 1000000.01", "at most 1,000,000"),
    ("/invoice 12.50.1", "not an amount"),
    ("/invoice 0x10", "not an amount"),
    ("/invoice ١٢", "not an amount"),
    ("/invoice 12 " + "x" * 300, "at most 200 characters"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_AMOUNTS)
async def test_bad_input_gets_a_reply_and_creates_nothing(
    tillbot: Harness, text: str, expected: str
) -> None:
    reply = await tillbot.command(tillbot.merchant, text)
    assert expected in reply.content
    await asyncio.sleep(0.1)
    assert tillbot.sandbox().create_count == 0
    assert await tillbot.services.repo.count_invoices(tillbot.merchant.id) == 0


async def test_non_merchant_is_refused_and_nothing_reaches_a_gateway(tillbot: Harness) -> None:
    reply = await tillbot.command(tillbot.stranger, "/invoice 12.50 Coffee")
    assert "for merchants only" in reply.content
    assert tillbot.sandbox().create_count == 0
    assert await tillbot.services.repo.count_invoices(tillbot.stranger.id) == 0
    reply = await tillbot.command(tillbot.stranger, "/pos 5")
    assert "for merchants only" in reply.content
    assert tillbot.sandbox().create_count == 0


async def test_customer_link_payment_edits_both_and_notifies_once(tillbot: Harness) -> None:
    emu = tillbot.emu
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 12.50 Coffee")
    shown = await tillbot.command(tillbot.customer, f"/start {share_token(reply)}")
    assert "€12.50" in shown.content and pay_button(shown)
    for _ in range(50):  # the row is stored right after Telegram accepts the message
        messages = await tillbot.services.repo.messages_for(invoice.id)
        if len(messages) == 2:
            break
        await asyncio.sleep(0.02)
    assert {m.role.value for m in messages} == {"merchant", "customer"}

    await emu.press_button(tillbot.customer, shown, "🧪 Simulate payment")
    await emu.wait_for(lambda: "PAID" in reply.content and "PAID" in shown.content, timeout=5)
    assert [b["text"] for b in reply.buttons] == ["🧾 Resend receipt"] and not shown.buttons
    receipt = await emu.wait_for_message(tillbot.customer, lambda m: "Receipt" in m.content)
    assert "€12.50" in receipt.content and "Coffee" in receipt.content
    await emu.wait_for_message(tillbot.admin, lambda m: "paid" in m.content)
    await asyncio.sleep(1.5)  # several more watcher ticks: nothing may repeat
    assert len([m for m in emu.bot_messages(tillbot.admin) if "paid" in m.content]) == 1
    assert len([m for m in emu.bot_messages(tillbot.customer) if "Receipt" in m.content]) == 1
    stored = await tillbot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PAID and stored.paid_at


async def test_paid_at_the_gateway_is_seen_by_polling_within_two_intervals(
    tillbot: Harness,
) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 7 Cake")
    interval = tillbot.settings().poll_interval_seconds
    started = time.monotonic()
    assert invoice.gateway_session_id is not None
    await tillbot.sandbox().pay(invoice.gateway_session_id)  # at the gateway: no hint to the bot
    repo = tillbot.services.repo
    while (await repo.get_invoice(invoice.id)).status is not InvoiceStatus.PAID:  # type: ignore[union-attr]
        assert time.monotonic() - started <= 2 * interval + 0.3, "not seen within two polls"
        await asyncio.sleep(0.02)
    # The edit then follows at the chat's pace.
    await tillbot.emu.wait_for(lambda: "PAID" in reply.content, timeout=5)
    await tillbot.emu.wait_for_message(tillbot.admin, lambda m: "Invoice #" in m.content)


async def test_expired_session_is_edited_to_expired(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 3 Cookie")
    assert invoice.gateway_session_id is not None
    await tillbot.sandbox().expire(invoice.gateway_session_id)
    await tillbot.emu.wait_for(lambda: "expired" in reply.content, timeout=5)
    assert not reply.buttons
    await asyncio.sleep(0.6)
    assert not [m for m in tillbot.emu.bot_messages(tillbot.admin)]


async def test_unknown_link_is_answered_kindly(tillbot: Harness) -> None:
    reply = await tillbot.command(tillbot.customer, "/start not-a-real-token")
    assert "cannot find that invoice" in reply.content


async def test_merchant_cancels_from_the_message(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 4 Juice")
    query = await tillbot.emu.press_button(tillbot.merchant, reply, "🚫 Cancel invoice")
    await tillbot.emu.wait_for_callback_answer(query.id)
    await tillbot.emu.wait_for(lambda: reply.find_button("Yes, cancel") is not None, timeout=5)
    query = await tillbot.emu.press_button(tillbot.merchant, reply, "Yes, cancel")
    await tillbot.emu.wait_for_callback_answer(query.id)
    await tillbot.emu.wait_for(lambda: "cancelled" in reply.content, timeout=5)
    stored = await tillbot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.CANCELLED


async def test_someone_else_cannot_cancel(tillbot: Harness) -> None:
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 4 Juice")
    shown = await tillbot.command(tillbot.customer, f"/start {share_token(reply)}")
    # The customer's copy has no Cancel button; a forged press on the merchant's message too:
    assert not any("cancel" in b.get("callback_data", "") for b in shown.buttons)
    query = await tillbot.emu.press_button(tillbot.stranger, reply, f"cancel:{invoice.id}",
                                           chat=tillbot.merchant.id)
    answer = await tillbot.emu.wait_for_callback_answer(query.id)
    assert "not your invoice" in str(answer)
    stored = await tillbot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING


async def test_pos_lightning_attempt_is_renewed_in_place_and_paid(harness: Harness) -> None:
    """/pos on the sandbox: a Lightning QR whose attempt (two minutes at the sandbox) is
    renewed in place before it expires, then paid. The bot's clock runs 40 times faster, so
    the renewal comes about 2.6 s after the photo."""
    started, origin = time.monotonic(), datetime.now(UTC)
    harness.clock = lambda: origin + timedelta(seconds=(time.monotonic() - started) * 40)
    bot = await harness.start()
    photo = await harness.command(harness.merchant, "/pos 5 Espresso")
    assert photo.photo is not None and "Lightning" in photo.content, photo.content
    invoice = (await bot.repo.list_invoices(harness.merchant.id, limit=1))[0]
    first = invoice.payment["ln_invoice"]
    assert decode_qr(photo.photo) == f"LIGHTNING:{first.upper()}"

    await harness.emu.wait_for(lambda: photo.edits >= 1, timeout=10)
    renewed = await bot.repo.get_invoice(invoice.id)
    assert renewed is not None and renewed.payment["ln_invoice"] != first
    session = await harness.sandbox().session(invoice.gateway_session_id or "")
    assert session is not None and session.attempts >= 2
    await harness.emu.wait_for(
        lambda: decode_qr(photo.photo or b"") != f"LIGHTNING:{first.upper()}", timeout=3
    )
    assert harness.emu.calls("editMessageMedia"), "the QR must be replaced in place"

    await harness.sandbox().pay(invoice.gateway_session_id or "")
    await harness.emu.wait_for(lambda: "PAID" in photo.content, timeout=5)


async def test_sandbox_auto_pay_setting_pays_new_invoices_by_themselves(harness: Harness) -> None:
    """SANDBOX_AUTO_PAY_SECONDS (demos): a new sandbox invoice is paid that long after it was
    created, seen by polling like any payment; a value that is not positive is refused."""
    await harness.start(sandbox_auto_pay_seconds=1)
    reply, invoice = await harness.invoice(harness.merchant, "/invoice 3 Demo")
    assert "waiting for payment" in reply.content
    await harness.emu.wait_for(lambda: "PAID" in reply.content, timeout=5)
    stored = await harness.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.paid_at is not None
    # Mion's paidAt has whole seconds: one second after the creation, give or take that.
    assert timedelta(0) < stored.paid_at - invoice.created_at < timedelta(seconds=2)
    with pytest.raises(SettingsError) as info:
        load_settings(telegram_bot_token=TOKEN, sandbox_auto_pay_seconds=0, _env_file=None)
    assert "SANDBOX_AUTO_PAY_SECONDS" in str(info.value)
