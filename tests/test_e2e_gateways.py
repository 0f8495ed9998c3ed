"""End to end over the Bot API emulator with every real gateway's simulator (issue 3):
/invoice for each gateway and /pos for Mion, from the reply to the paid edit; the Lightning
photo renewed before its attempt expires; the QR decodes to the attempt's invoice."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from bot.domain.drafts import reference_for
from bot.domain.models import Invoice, InvoiceStatus
from bot.telegram.views import sats_text
from testkit.gateway_base import GatewaySimulator
from testkit.mion import MionSimulator
from testkit.miraclepay import MiraclePaySimulator
from testkit.mixpay import BTC, DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from tests.conftest import Harness

MION_KEY = "mion-e2e-MARKER-key-4b1c"
MIRACLE_ID, MIRACLE_KEY = "mp-e2e-client", "mp-e2e-MARKER-key-77aa"


class Gateways:
    def __init__(self) -> None:
        self.mion = MionSimulator(api_key=MION_KEY, attempt_ttl=timedelta(seconds=4))
        self.mixpay = MixPaySimulator(payee_id=DEFAULT_PAYEE_ID)
        self.miraclepay = MiraclePaySimulator(client_id=MIRACLE_ID, api_key=MIRACLE_KEY)

    @property
    def all(self) -> dict[str, GatewaySimulator[Any]]:
        return {"mion": self.mion, "mixpay": self.mixpay, "miraclepay": self.miraclepay}

    def settings(self) -> dict[str, Any]:
        return {
            "mion_api_url": self.mion.url,
            "mion_api_key": MION_KEY,
            "mixpay_api_url": self.mixpay.url,
            "mixpay_payee_id": DEFAULT_PAYEE_ID,
            "mixpay_settlement_asset_id": USDT_ERC20,
            "mixpay_payment_asset_id": BTC,
            "mixpay_quote_asset_id": "usd",
            "miraclepay_api_url": self.miraclepay.url,
            "miraclepay_client_id": MIRACLE_ID,
            "miraclepay_api_key": MIRACLE_KEY,
            "default_gateway": "mion",
            "mion_attempt_renew_before_seconds": 2,
        }


@pytest.fixture
async def sims() -> AsyncIterator[Gateways]:
    gateways = Gateways()
    for sim in gateways.all.values():
        await sim.start()
    try:
        yield gateways
    finally:
        for sim in gateways.all.values():
            await sim.stop()


@pytest.fixture
async def bot(harness: Harness, sims: Gateways) -> Harness:
    await harness.start(**sims.settings())
    return harness


def sim_key(sim: GatewaySimulator[Any], invoice: Invoice) -> str:
    """The simulator's id of the invoice's session (found by our reference if need be)."""
    if invoice.gateway_session_id in sim.sessions:
        return invoice.gateway_session_id
    reference = reference_for(invoice)
    for key, session in sim.sessions.items():
        fields = (getattr(session, n, None) for n in ("reference", "order_id", "note"))
        if reference in fields:
            return key
    raise LookupError(f"no simulator session for {reference}")


def decode_qr(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "the photo holds no readable QR code"
    return results[0].text


@pytest.mark.parametrize(
    ("gateway", "command", "amount_minor", "currency", "url_prefix"),
    [
        ("mion", "/invoice 12.50 Coffee", 1250, "EUR", "https://app.mion.group/checkout/"),
        ("mixpay", "/invoice mixpay 10 Lamp", 1000, "USD", "https://mixpay.me/code/"),
        ("miraclepay", "/invoice miraclepay 20.50 USD Chair", 2050, "USD", "https://"),
    ],
)
async def test_invoice_for_each_gateway_from_reply_to_paid_edit(
    bot: Harness,
    sims: Gateways,
    gateway: str,
    command: str,
    amount_minor: int,
    currency: str,
    url_prefix: str,
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, command)
    assert invoice.gateway == gateway and invoice.amount_minor == amount_minor
    assert invoice.currency == currency
    pay = [b for b in reply.buttons if "url" in b]
    assert pay and pay[0]["url"].startswith(url_prefix), reply.buttons
    sim = sims.all[gateway]
    assert sim.create_count == 1
    sim.pay(sim_key(sim, invoice))
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    await bot.emu.wait_for_message(bot.admin, lambda m: f"#{invoice.id}" in m.content, timeout=5)
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PAID


async def test_currency_the_gateway_cannot_take_gets_a_clear_reply(
    bot: Harness, sims: Gateways
) -> None:
    reply = await bot.command(bot.merchant, "/invoice 12 USD Lamp")
    assert "Mion cannot take USD" in reply.content and "EUR" in reply.content
    assert sims.mion.create_count == 0
    assert await bot.services.repo.count_invoices(bot.merchant.id) == 0


async def test_merchant_picks_the_gateway_in_settings(bot: Harness, sims: Gateways) -> None:
    menu = await bot.command(bot.merchant, "/settings")
    query = await bot.emu.press_button(bot.merchant, menu, "set:gw:miraclepay")
    await bot.emu.wait_for_callback_answer(query.id)
    _, invoice = await bot.invoice(bot.merchant, "/invoice 5 Tea")
    assert invoice.gateway == "miraclepay" and invoice.currency == "USD"
    assert sims.miraclepay.create_count == 1


async def test_pos_photo_qr_renewal_and_paid(bot: Harness, sims: Gateways) -> None:
    emu = bot.emu
    photo = await bot.command(bot.merchant, "/pos 5 Espresso")
    assert photo.photo is not None, photo.content
    invoice = (await bot.services.repo.list_invoices(bot.merchant.id, limit=1))[0]
    session = sims.mion.sessions[invoice.gateway_session_id or ""]
    first = session.attempts[-1]
    assert decode_qr(photo.photo) == f"LIGHTNING:{first.ln_invoice.upper()}"
    caption = photo.content
    assert "€5.00" in caption and f"{sats_text(first.amount_msat, 'en')} sats" in caption
    assert sats_text(8_333_334, "en") == "8,333.334" and sats_text(25_000_000, "en") == "25,000"
    assert "valid until" in caption

    # The attempt lives 4 s; a new one is requested 2 s before it ends, and the photo is
    # replaced in place (editMessageMedia) with the new invoice's QR.
    await emu.wait_for(lambda: len(session.attempts) >= 2 and photo.edits >= 1, timeout=6)
    await emu.wait_for(lambda: decode_qr(photo.photo or b"") != decode_qr_safe(first), timeout=3)
    latest = session.attempts[-1]
    assert decode_qr(photo.photo or b"") == f"LIGHTNING:{latest.ln_invoice.upper()}"
    assert emu.calls("editMessageMedia"), "the QR must be replaced in place"

    sims.mion.pay(session.id)
    await emu.wait_for(lambda: "PAID" in photo.content, timeout=4)
    assert [b["text"] for b in photo.buttons] == ["🧾 Resend receipt"]  # Cancel is gone


def decode_qr_safe(attempt: Any) -> str:
    return f"LIGHTNING:{attempt.ln_invoice.upper()}"


async def test_pos_polls_about_once_a_second(bot: Harness, sims: Gateways) -> None:
    await bot.command(bot.merchant, "/pos 3")
    invoice = (await bot.services.repo.list_invoices(bot.merchant.id, limit=1))[0]
    sims.mion.clear_requests()
    await asyncio.sleep(2.2)
    polls = [r for r in sims.mion.requests if r.method == "GET" and r.path.endswith("/status")]
    assert 3 <= len(polls) <= 7, len(polls)  # POS_POLL_INTERVAL_SECONDS=0.5 in the harness
    assert invoice.kind.value == "lightning"


async def test_message_shows_underpaid_and_merchant_is_told(bot: Harness, sims: Gateways) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice mixpay 10 Lamp")
    sims.mixpay.underpay(sim_key(sims.mixpay, invoice))
    await bot.emu.wait_for(lambda: "underpaid" in reply.content, timeout=8)
    await bot.emu.wait_for_message(bot.admin, lambda m: "underpaid" in m.content, timeout=5)


async def test_onchain_shows_address_and_exact_amount_as_a_qr(bot: Harness, sims: Gateways) -> None:
    photo = await bot.command(bot.merchant, "/onchain 10 USD Lamp")
    assert photo.photo is not None, photo.content
    invoice = (await bot.services.repo.list_invoices(bot.merchant.id, limit=1))[0]
    assert invoice.gateway == "mixpay" and invoice.kind.value == "onchain"
    address, amount = invoice.payment["address"], invoice.payment["crypto_amount"]
    assert address in photo.content and amount in photo.content
    assert decode_qr(photo.photo) == f"bitcoin:{address}?amount={amount}"
    sims.mixpay.pay(sim_key(sims.mixpay, invoice))
    await bot.emu.wait_for(lambda: "PAID" in photo.content, timeout=8)


async def test_onchain_without_a_gateway_for_it_is_refused(harness: Harness) -> None:
    await harness.start()
    reply = await harness.command(harness.merchant, "/onchain 10 Lamp")
    assert "No gateway for on-chain payments" in reply.content
    assert await harness.services.repo.count_invoices(harness.merchant.id) == 0


# -- issue 11: a transient "not found" never ends watching -------------------------------------
STATUS_PATH = {"mion": "/status", "miraclepay": "/external/payments/prompt/"}


def status_polls(sim: GatewaySimulator[Any]) -> int:
    return sum(1 for r in sim.requests if r.method == "GET")


def admin_notices(bot: Harness, invoice: Invoice) -> list[Any]:
    return [m for m in bot.emu.bot_messages(bot.admin) if f"#{invoice.id}" in m.content]


@pytest.mark.parametrize("gateway", ["mion", "miraclepay"])
async def test_session_answering_404_twice_then_paid_is_edited_to_paid(
    bot: Harness, sims: Gateways, gateway: str
) -> None:
    """After several polls the gateway answers "no such session" twice in a row (a glitch
    at the gateway), then the customer pays: the invoice is edited to PAID and each admin is
    told once (before issue 11 the first 404 after 3 polls failed the invoice for good)."""
    reply, invoice = await bot.invoice(bot.merchant, f"/invoice {gateway} 12 USD Lamp"
                                       if gateway == "miraclepay" else "/invoice 12 Lamp")
    sim = sims.all[gateway]
    await bot.emu.wait_for(lambda: status_polls(sim) >= 4, timeout=10)
    sim.fail_next(2, 404, path_contains=STATUS_PATH[gateway])
    await bot.emu.wait_for(lambda: not sim.faults, timeout=10)
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    sim.pay(sim_key(sim, invoice))
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    await bot.emu.wait_for(lambda: admin_notices(bot, invoice), timeout=5)
    await asyncio.sleep(1.0)  # more ticks and outbox passes: nothing may repeat
    assert len(admin_notices(bot, invoice)) == 1, admin_notices(bot, invoice)
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PAID and not stored.late
    assert stored.not_found_count == 0


@pytest.mark.parametrize("gateway", ["mion", "miraclepay"])
async def test_session_given_up_after_consecutive_404s_is_still_watched(
    harness: Harness, sims: Gateways, gateway: str
) -> None:
    """Only several consecutive 404s spread over NOT_FOUND_GIVE_UP_SECONDS give a session up
    (failed); the failed invoice is still watched, and a payment that lands later edits it
    to PAID (late) and tells each admin once."""
    bot = harness
    await bot.start(
        **sims.settings(), not_found_give_up_answers=3, not_found_give_up_seconds=3,
        # The late-payment watch polls every max(5 x POLL_MAX_INTERVAL, CALLBACK_POLL_INTERVAL).
        poll_max_interval_seconds=0.5, callback_poll_interval_seconds=1,
    )
    reply, invoice = await bot.invoice(bot.merchant, f"/invoice {gateway} 12 USD Lamp"
                                       if gateway == "miraclepay" else "/invoice 12 Lamp")
    sim = sims.all[gateway]
    sim.fail_next(1000, 404, path_contains=STATUS_PATH[gateway])
    started = asyncio.get_running_loop().time()

    async def status() -> InvoiceStatus:
        stored = await bot.services.repo.get_invoice(invoice.id)
        assert stored is not None
        return stored.status

    while await status() is InvoiceStatus.PENDING:
        assert asyncio.get_running_loop().time() - started < 15, "never given up"
        await asyncio.sleep(0.1)
    assert asyncio.get_running_loop().time() - started >= 3, "given up before the span"
    assert await status() is InvoiceStatus.FAILED
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.not_found_count >= 3 and stored.next_poll_at
    sim.clear_faults()
    sim.pay(sim_key(sim, invoice), force=True)
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    def late_notices() -> list[Any]:
        return [m for m in admin_notices(bot, invoice) if "late" in m.content.lower()]

    await bot.emu.wait_for(late_notices, timeout=5)
    assert await status() is InvoiceStatus.PAID
    await asyncio.sleep(1.0)  # more ticks and outbox passes: nothing may repeat
    assert len(late_notices()) == 1, late_notices()


async def test_pos_renewal_blocked_by_compliance_is_not_retried_and_merchant_told_once(
    bot: Harness, sims: Gateways
) -> None:
    """Mion blocks the next payment attempt for compliance: the bot stops asking for new
    attempts (not every tick), the merchant reads once which customer details are missing,
    and the photo's caption says the payment is blocked (issue 11 point 12)."""
    photo = await bot.command(bot.merchant, "/pos 5 Espresso")
    invoice = (await bot.services.repo.list_invoices(bot.merchant.id, limit=1))[0]
    session = sims.mion.sessions[invoice.gateway_session_id or ""]
    sims.mion.compliance(session.id, ["firstName", "dateOfBirth"])

    def attempt_requests() -> int:
        return sum(1 for r in sims.mion.requests if r.path.endswith("/payment-attempts"))

    def told() -> list[Any]:
        return [
            m for m in bot.emu.bot_messages(bot.merchant)
            if m.photo is None and "compliance" in m.content
        ]

    await bot.emu.wait_for(told, timeout=8)
    notice = told()[0]
    assert f"#{invoice.id}" in notice.content and "firstName, dateOfBirth" in notice.content
    await bot.emu.wait_for(lambda: "blocked for compliance" in photo.content, timeout=5)
    asked = attempt_requests()
    await asyncio.sleep(3.0)  # six POS polls at 0.5 s
    assert attempt_requests() == asked, "a blocked renewal must not be retried every tick"
    assert len(told()) == 1
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    assert stored.payment["missing_fields"] == ["firstName", "dateOfBirth"]


async def test_miraclepay_invoice_shows_what_the_customer_pays_at_checkout(
    bot: Harness, sims: Gateways
) -> None:
    """The invoice shows MiraclePay's checkout amount (commission included) next to its own
    amount, to the merchant and to the customer (issue 11 point 11)."""
    reply, invoice = await bot.invoice(bot.merchant, "/invoice miraclepay 100.50 USD Desk")
    line = "💳 At checkout: $103.52 (including $3.02 commission)"
    assert "$100.50" in reply.content and line in reply.content, reply.content
    link = next(w for w in reply.content.split() if "?start=" in w).split("?start=")[1]
    shown = await bot.command(bot.customer, f"/start {link}")
    assert line in shown.content
    sims.miraclepay.pay(sim_key(sims.miraclepay, invoice))
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    assert "At checkout" not in reply.content


async def test_miraclepay_blockchain_without_address_is_named_at_start(
    harness: Harness, sims: Gateways
) -> None:
    """At start the bot asks MiraclePay which blockchains have a payment address: the admin
    reads which of MIRACLEPAY_BLOCKCHAINS lacks one, and an invoice is refused naming it."""
    sims.miraclepay.active_blockchains = {"btc"}
    await harness.start(**sims.settings())
    alert = await harness.emu.wait_for_message(
        harness.admin, lambda m: "not fully set up" in m.content, timeout=8
    )
    assert "MiraclePay" in alert.content and "no payment address for eth" in alert.content
    reply = await harness.command(harness.merchant, "/invoice miraclepay 5 USD Tea")
    assert "no payment address for eth" in reply.content
    assert sims.miraclepay.create_count == 0


async def test_only_consecutive_404s_count(harness: Harness, sims: Gateways) -> None:
    """Any found answer resets the count: 2 + 2 not-found answers with a found one between
    never reach NOT_FOUND_GIVE_UP_ANSWERS=3, however long it takes."""
    bot = harness
    await bot.start(**sims.settings(), not_found_give_up_answers=3, not_found_give_up_seconds=0)
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 12 Lamp")
    sim = sims.mion

    def answered(status: int) -> int:
        return sum(1 for r in sim.requests if r.path.endswith("/status")
                   and r.response_status == status)

    def answered_again(before: int) -> Any:
        return lambda: answered(200) > before

    for _ in range(2):
        sim.fail_next(2, 404, path_contains="/status")
        await bot.emu.wait_for(lambda: not sim.faults, timeout=10)
        await bot.emu.wait_for(answered_again(answered(200)), timeout=10)
    assert answered(404) == 4
    stored = await bot.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    assert stored.not_found_count == 0
    sim.pay(sim_key(sim, invoice))
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
