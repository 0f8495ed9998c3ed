"""Issue 11, MixPay: no payment missed or misbooked at the gateway's edge.

The real bot (over the Bot API emulator) and the MixPay adapter against the MixPay simulator,
which follows MixPay's newest developer docs (`gateway-docs/mixpay/`), not the adapter:
orders still confirming past their countdown, underpayments (`with=payment`,
`isFullyPaid: false`), overpayments (`surplusAmount`), failures in which money arrived, the
fail-closed success check, quote decimals, the on-chain `clientId`, memos and tags, and
HTTPS-only callback URLs.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image

from bot.config import Settings, SettingsError, load_settings
from bot.domain.models import Invoice, InvoiceKind, InvoiceStatus
from bot.gateways.base import (
    GatewayAuthError,
    GatewayError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
    PaymentState,
    SessionRequest,
)
from bot.gateways.mixpay import MixPayGateway
from testkit.mixpay import (
    BTC,
    DEFAULT_PAYEE_ID,
    EOS,
    USDT_ERC20,
    XLM,
    XRP,
    MixPaySimulator,
)
from tests.conftest import TOKEN, Harness

PAYEE = DEFAULT_PAYEE_ID


class Shift:
    """A clock shared by the bot and the simulator that tests can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def shift() -> Shift:
    return Shift()


@pytest.fixture
async def mixpay(shift: Shift) -> AsyncIterator[MixPaySimulator]:
    # Quotes live 18 s: an on-chain invoice is refreshed ~3 s after creation (renew 15 s
    # before the end), so a refresh can be watched.
    async with MixPaySimulator(
        payee_id=PAYEE, clock=shift.now, quote_ttl=timedelta(seconds=18)
    ) as sim:
        yield sim


def mixpay_settings(sim: MixPaySimulator, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "mixpay_api_url": sim.url,
        "mixpay_payee_id": PAYEE,
        "mixpay_settlement_asset_id": USDT_ERC20,
        "mixpay_payment_asset_id": BTC,
        "mixpay_expiry_seconds": 60,
        "default_gateway": "mixpay",
    }
    values.update(over)
    return values


@pytest.fixture
async def bot(harness: Harness, mixpay: MixPaySimulator, shift: Shift) -> Harness:
    harness.clock = shift.now
    await harness.start(**mixpay_settings(mixpay))
    return harness


def status_polls(sim: MixPaySimulator) -> int:
    return sum(1 for r in sim.requests if r.path == "/v1/payments_result")


async def latest(h: Harness) -> Invoice:
    return (await h.services.repo.list_invoices(h.merchant.id, limit=1))[0]


async def stored(h: Harness, invoice: Invoice) -> Invoice:
    found = await h.services.repo.get_invoice(invoice.id)
    assert found is not None
    return found


def texts(h: Harness, user: Any, needle: str) -> list[str]:
    return [m.content for m in h.emu.bot_messages(user) if needle in m.content]


def decode_qr(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert results, "the photo holds no readable QR code"
    return str(results[0].text)


# -- 2. not expired while MixPay is still confirming -----------------------------------------
async def test_order_past_its_countdown_still_pending_is_not_expired_and_turns_paid(
    bot: Harness, mixpay: MixPaySimulator, shift: Shift
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    sid = invoice.gateway_session_id or ""
    mixpay.set_status(sid, "pending")  # the customer paid; MixPay waits for confirmations
    shift.advance(minutes=5)  # far past MixPay's countdown and our expiry (+ grace)
    mixpay.clear_requests()
    await bot.emu.wait_for(lambda: status_polls(mixpay) >= 2, timeout=10)
    mixpay.set_status(sid, "auditing")
    polls = status_polls(mixpay)
    await bot.emu.wait_for(lambda: status_polls(mixpay) >= polls + 1, timeout=10)
    assert (await stored(bot, invoice)).status is InvoiceStatus.PENDING
    assert "expired" not in reply.content

    mixpay.pay(sid)
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    paid = await stored(bot, invoice)
    assert paid.status is InvoiceStatus.PAID and not paid.late
    await bot.emu.wait_for(lambda: texts(bot, bot.admin, f"#{invoice.id} paid"), timeout=5)
    assert len(texts(bot, bot.admin, f"#{invoice.id}")) == 1


async def test_unpaid_past_the_deadline_expires_when_mixpay_fails_it(
    bot: Harness, mixpay: MixPaySimulator, shift: Shift
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    shift.advance(minutes=5)  # MixPay fails the unpaid order itself: 40000 Payment overtime
    await bot.emu.wait_for(lambda: "expired" in reply.content, timeout=10)
    assert (await stored(bot, invoice)).status is InvoiceStatus.EXPIRED
    assert mixpay.sessions[invoice.gateway_session_id or ""].failure_code == "40000"


# -- 3. underpayment and overpayment ----------------------------------------------------------
async def test_underpayment_tells_customer_and_merchant_what_arrived(
    bot: Harness, mixpay: MixPaySimulator
) -> None:
    photo = await bot.command(bot.merchant, "/onchain 10 Lamp")
    invoice = await latest(bot)
    customer_view = await bot.command(bot.customer, f"/start {invoice.public_token}")
    sid = invoice.gateway_session_id or ""
    mixpay.underpay(sid)  # half of it: pending with payment.isFullyPaid false
    session = mixpay.sessions[sid]
    received = f"{session.payment_amount} BTC"
    due = f"{mixpay.payable_amount(session)} BTC"
    assert received == "0.00008333 BTC" and due == "0.00016667 BTC"

    await bot.emu.wait_for_message(
        bot.merchant, lambda m: "underpaid" in m.content and received in m.content, timeout=10
    )
    notice = await bot.emu.wait_for_message(
        bot.customer, lambda m: received in m.content and "rest" in m.content, timeout=5
    )
    assert f"#{invoice.id}" in notice.content
    await bot.emu.wait_for(lambda: f"{received} of {due}" in customer_view.content, timeout=5)
    assert f"{received} of {due}" in photo.content
    underpaid = await stored(bot, invoice)
    assert underpaid.status is InvoiceStatus.PENDING and underpaid.underpaid
    query = [r.query for r in mixpay.requests if r.path == "/v1/payments_result"][-1]
    assert query["with"] == "payment"
    # The on-chain quote is refreshed every few seconds here: what arrived stays shown.
    refreshes = sum(1 for r in mixpay.requests if r.path == "/v1/payments/refresh")
    await bot.emu.wait_for(
        lambda: sum(1 for r in mixpay.requests if r.path == "/v1/payments/refresh") > refreshes,
        timeout=10,
    )
    await bot.emu.wait_for(lambda: photo.edits >= 2, timeout=5)
    kept = await stored(bot, invoice)
    assert kept.payment["received"] == received and f"{received} of {due}" in photo.content

    mixpay.pay(sid)  # the rest arrives
    await bot.emu.wait_for(lambda: "PAID" in photo.content, timeout=10)


async def test_overpayment_is_told_to_the_merchant(
    bot: Harness, mixpay: MixPaySimulator
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    mixpay.pay(invoice.gateway_session_id or "", amount=Decimal("12"))  # 10 USDT due
    await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    notice = await bot.emu.wait_for_message(
        bot.merchant, lambda m: "overpaid" in m.content, timeout=5
    )
    assert "2 USDT" in notice.content and "not yet sent" in notice.content
    assert f"#{invoice.id}" in notice.content


# -- 4. failures in which money arrived -------------------------------------------------------
async def test_failure_after_money_arrived_reports_the_amount_and_a_refund_due(
    bot: Harness, mixpay: MixPaySimulator
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    # Payment overtime, but 4 USDT had arrived: not an expiry, a refund.
    mixpay.fail(invoice.gateway_session_id or "", code="40000", paid=Decimal("4"))
    await bot.emu.wait_for(lambda: "failed" in reply.content, timeout=10)
    assert "expired" not in reply.content
    assert (await stored(bot, invoice)).status is InvoiceStatus.FAILED
    merchant = await bot.emu.wait_for_message(
        bot.merchant, lambda m: "refunded" in m.content, timeout=5
    )
    assert "4 USDT arrived" in merchant.content and f"#{invoice.id}" in merchant.content
    admin = await bot.emu.wait_for_message(bot.admin, lambda m: "refund" in m.content, timeout=5)
    assert "4 USDT arrived" in admin.content


async def test_unpaid_overtime_stays_a_plain_expiry(bot: Harness, mixpay: MixPaySimulator) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    mixpay.expire(invoice.gateway_session_id or "")
    await bot.emu.wait_for(lambda: "expired" in reply.content, timeout=10)
    assert not texts(bot, bot.merchant, "refund") and not texts(bot, bot.admin, "refund")


# -- 8. the success check fails closed --------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quote_amount", "1"),  # quoteAmount
        ("quote_asset_id", "eur"),  # quoteAssetId
        ("payee_id", "another-payee"),  # payeeId
        ("drop", "payeeId"),  # payeeId absent
        ("drop", "quoteAmount"),  # quoteAmount absent
        ("drop", "quoteAssetId"),  # quoteAssetId absent
    ],
)
async def test_success_that_does_not_match_never_pays_and_alerts_admins_once(
    bot: Harness, mixpay: MixPaySimulator, field: str, value: str
) -> None:
    reply, invoice = await bot.invoice(bot.merchant, "/invoice 10 Lamp")
    sid = invoice.gateway_session_id or ""
    mixpay.pay(sid)
    session = mixpay.sessions[sid]
    if field == "drop":
        data = mixpay.result_object(session, {"payment"})
        del data[value]
        body = {"code": 0, "success": True, "message": "", "data": data, "timestampMs": 0}
        mixpay.fail_next(1000, 200, body=body, path_contains="payments_result")
    else:
        setattr(session, field, value)
    await bot.emu.wait_for(lambda: texts(bot, bot.admin, "NOT booked"), timeout=10)
    polls = status_polls(mixpay)
    await bot.emu.wait_for(lambda: status_polls(mixpay) >= polls + 2, timeout=10)
    assert (await stored(bot, invoice)).status is InvoiceStatus.PENDING
    assert "PAID" not in reply.content
    assert len(texts(bot, bot.admin, "NOT booked")) == 1  # once, however often it is polled
    assert not texts(bot, bot.customer, "Receipt")


# -- 5. callbackUrl only over HTTPS ------------------------------------------------------------
async def test_callback_url_is_sent_only_when_https() -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url
        )
        for n, url in enumerate(("http://bot.example/webhooks/mixpay",
                                 "https://bot.example/webhooks/mixpay")):
            await gateway.create_session(request(f"tb-{n}-0a0b0c0d", 1000, "USD", callback=url))
        sent = [r.parsed.get("callbackUrl") for r in sim.requests if r.method == "POST"]
        assert sent == [None, "https://bot.example/webhooks/mixpay"]


@pytest.mark.parametrize("public_url", ["http://bot.example", "http://127.0.0.1:8443"])
def test_webhook_mode_refuses_a_public_url_that_is_not_https(public_url: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            telegram_bot_token=TOKEN, http_port=8080, public_url=public_url, _env_file=None
        )
    line = str(info.value)
    assert "\n" not in line and "PUBLIC_URL" in line and "https://" in line
    # Without HTTP_PORT there is no webhook mode, and https is accepted.
    assert load_settings(telegram_bot_token=TOKEN, public_url=public_url, _env_file=None)
    assert load_settings(
        telegram_bot_token=TOKEN, http_port=8080, public_url="https://bot.example",
        _env_file=None,
    )


# -- 6. the on-chain refresh sends back the clientId -----------------------------------------
async def test_onchain_refresh_sends_back_the_original_client_id(
    bot: Harness, mixpay: MixPaySimulator
) -> None:
    photo = await bot.command(bot.merchant, "/onchain 10 Lamp")
    invoice = await latest(bot)
    session = mixpay.sessions[invoice.gateway_session_id or ""]
    [client_id] = session.client_ids
    assert invoice.payment["client_id"] == client_id

    def refreshes() -> list[Any]:
        return [r.parsed for r in mixpay.requests if r.path == "/v1/payments/refresh"]

    await bot.emu.wait_for(lambda: len(refreshes()) >= 1, timeout=10)
    assert refreshes()[0] == {"traceId": session.id, "clientId": client_id}
    assert session.client_ids == [client_id]  # no second client was made up
    assert photo.photo is not None


async def test_adapter_refresh_sends_the_client_id_of_the_payment() -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url,
            payment_asset_id=BTC,
        )
        session = await gateway.create_session(
            request("tb-7-0a0b0c0d", 1000, "USD", kind=InvoiceKind.ONCHAIN)
        )
        renewed = await gateway.renew_payment(session.session_id, session.payment)
        body = [r.parsed for r in sim.requests if r.path == "/v1/payments/refresh"][-1]
        assert body == {"traceId": session.session_id, "clientId": session.payment["client_id"]}
        assert renewed.payment["client_id"] == session.payment["client_id"]


# -- 9. quote decimals --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quote", "minor", "text"),
    [("jpy", 1250, "1250"), ("kwd", 1250, "1.25"), ("usd", 1250, "12.5"), ("eur", 5, "0.05")],
)
async def test_quote_amounts_use_the_quote_assets_own_decimals(
    quote: str, minor: int, text: str
) -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url,
            quote_asset_id=quote,
        )
        assert gateway.currencies == (quote.upper(),)
        reference = "tb-9-0a0b0c0d"
        session = await gateway.create_session(request(reference, minor, quote.upper()))
        assert sim.sessions[session.session_id].quote_amount == text
        sim.pay(session.session_id)
        status = await gateway.get_status(session.session_id, reference)
        assert status.state is PaymentState.PAID
        assert status.amount_minor == minor and status.currency == quote.upper()


async def test_a_jpy_invoice_is_paid_end_to_end(
    harness: Harness, mixpay: MixPaySimulator
) -> None:
    await harness.start(**mixpay_settings(mixpay, mixpay_quote_asset_id="jpy"))
    reply, invoice = await harness.invoice(harness.merchant, "/invoice 1250 Tea")
    assert invoice.currency == "JPY" and invoice.amount_minor == 1250
    session = mixpay.sessions[invoice.gateway_session_id or ""]
    assert session.quote_amount == "1250"
    mixpay.pay(session.id)
    await harness.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)


@pytest.mark.parametrize("quote", [USDT_ERC20, "xyz", "btc"])
def test_a_quote_asset_with_unknown_decimals_is_refused_at_start(quote: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            telegram_bot_token=TOKEN, mixpay_payee_id=PAYEE,
            mixpay_settlement_asset_id=USDT_ERC20, mixpay_quote_asset_id=quote, _env_file=None,
        )
    assert "MIXPAY_QUOTE_ASSET_ID" in str(info.value) and "decimals" in str(info.value)
    assert "\n" not in str(info.value)


# -- 10. memo and tag ---------------------------------------------------------------------------
@pytest.mark.parametrize(("asset", "symbol"), [(XRP, "XRP"), (XLM, "XLM")])
async def test_memo_or_tag_is_shown_and_carried_in_the_qr(
    harness: Harness, mixpay: MixPaySimulator, asset: str, symbol: str
) -> None:
    await harness.start(**mixpay_settings(mixpay, mixpay_payment_asset_id=asset))
    photo = await harness.command(harness.merchant, "/onchain 10 Lamp")
    invoice = await latest(harness)
    session = mixpay.sessions[invoice.gateway_session_id or ""]
    address, memo = session.destination, session.deposit_memo
    amount = invoice.payment["crypto_amount"]
    assert memo and photo.photo is not None
    assert address in photo.content and memo in photo.content
    assert invoice.payment["crypto_symbol"] == symbol
    if symbol == "XRP":
        assert "destination tag" in photo.content and invoice.payment["tag"] == memo
        assert decode_qr(photo.photo) == f"ripple:{address}?amount={amount}&dt={memo}"
    else:
        assert "memo" in photo.content and invoice.payment["memo"] == memo
        assert decode_qr(photo.photo) == (
            f"web+stellar:pay?destination={address}&memo={memo}&memo_type=MEMO_TEXT"
            f"&amount={amount}"
        )


def test_a_payment_asset_whose_memo_no_qr_can_carry_is_refused_at_start() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            telegram_bot_token=TOKEN, mixpay_payee_id=PAYEE,
            mixpay_settlement_asset_id=USDT_ERC20, mixpay_payment_asset_id=EOS, _env_file=None,
        )
    assert "MIXPAY_PAYMENT_ASSET_ID" in str(info.value) and "memo" in str(info.value)
    for usable in (BTC, XRP, XLM):
        settings = load_settings(
            telegram_bot_token=TOKEN, mixpay_payee_id=PAYEE,
            mixpay_settlement_asset_id=USDT_ERC20, mixpay_payment_asset_id=usable,
            _env_file=None,
        )
        assert isinstance(settings, Settings)


def request(
    reference: str,
    amount_minor: int,
    currency: str,
    *,
    kind: InvoiceKind = InvoiceKind.CHECKOUT,
    callback: str | None = None,
) -> SessionRequest:
    return SessionRequest(
        reference=reference, amount_minor=amount_minor, currency=currency,
        description="Tea", kind=kind, expires_in=timedelta(hours=1), callback_url=callback,
    )



# -- the documented error codes, failure codes and request fields (docs/GATEWAYS.md) ---------
BASIC_CODES: dict[int, type[GatewayError]] = {
    -1: GatewayUnavailable,  # Server error, please try again later.
    2000: GatewayAuthError,  # Insufficient permissions.
    404: GatewayNotFound,  # The payment link you visited does not exist.
    1017: GatewayRejected,  # Parameter error.
    1429: GatewayRateLimited,  # Your request frequency is too high.
    10000: GatewayAuthError,  # Mixin authorization expired.
    10001: GatewayAuthError,  # User does not exist.
    10002: GatewayRejected,  # The currency does not exist or does not support exchanging.
    10003: GatewayRejected,  # Does not support this quote asset.
    10004: GatewayRejected,  # The price is too low.
    10005: GatewayRejected,  # The price is too high.
    10006: GatewayRejected,  # The transfer amount exceeds 1000 USDT.
    10007: GatewayRejected,  # We can not provide service to you.
    10008: GatewayUnavailable,  # Payments are suspended (maintenance).
    10009: GatewayRejected,  # Withdrawals are suspended (not used by Tillbot).
    10010: GatewayRejected,  # Insufficient balance of assets.
    10011: GatewayRejected,  # Parameter error
    10033: GatewayRejected,  # The same user can be added only 3 times in 24 hours.
    10034: GatewayUnavailable,  # Price exception, please try again later.
    10035: GatewayRejected,  # The multisigId does not belong to the token.
    10036: GatewayRejected,  # The robot does not exist.
    10037: GatewayRejected,  # This is not a robot.
    10039: GatewayRejected,  # This is not your robot and cannot be bound.
    10040: GatewayRejected,  # The robot is already bound.
    10041: GatewayRejected,  # The threshold cannot exceed the number of payees.
    10042: GatewayRejected,  # More than 20 multi-signature group bindings.
    10043: GatewayRejected,  # More than 20 robot bindings.
    10044: GatewayRejected,  # Please set the name of this multi-signature group first.
}


@pytest.mark.parametrize("code", sorted(BASIC_CODES))
async def test_every_documented_error_code_is_translated(code: int) -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url,
            max_retries=0,
        )
        body = {"code": code, "success": False, "message": f"message {code}", "data": []}
        sim.fail_next(1, 200, body=body)  # the body's code is what counts
        with pytest.raises(GatewayError) as info:
            await gateway.create_session(request("tb-3-0a0b0c0d", 1000, "USD"))
        assert isinstance(info.value, BASIC_CODES[code])
        assert info.value.retryable is issubclass(BASIC_CODES[code], GatewayUnavailable)
        if not info.value.retryable:
            assert info.value.code == str(code)
        assert PAYEE not in info.value.user_message


@pytest.mark.parametrize(
    ("code", "paid", "state"),
    [
        ("40000", None, PaymentState.EXPIRED),  # Payment overtime, nothing arrived
        ("40000", Decimal("3"), PaymentState.FAILED),  # overtime, but money arrived: refund
        ("40020", None, PaymentState.FAILED),  # Wrong asset paid (money arrived)
        ("40021", None, PaymentState.FAILED),  # Double payment (money arrived)
        ("40024", Decimal("3"), PaymentState.FAILED),  # Wrong Amount paid
        ("40025", None, PaymentState.FAILED),  # Too much market volatility.
        ("40032", None, PaymentState.CANCELLED),  # cancelled (older notes)
        ("40027", None, PaymentState.FAILED),  # any other code of the refund table
    ],
)
async def test_every_failure_code_is_mapped(
    code: str, paid: Decimal | None, state: PaymentState
) -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url
        )
        reference = "tb-4-0a0b0c0d"
        session = await gateway.create_session(request(reference, 1000, "USD"))
        sim.fail(session.session_id, code=code, paid=paid)
        status = await gateway.get_status(session.session_id, reference)
        assert status.state is state and status.detail == code
        assert status.failure_reason
        money = sim.sessions[session.session_id].payment_amount
        assert status.refund_due is bool(money)
        if money:
            amount, symbol = (status.received or "").split()
            assert Decimal(amount) == money and symbol == "USDT"


async def test_create_sends_exactly_the_fields_tillbot_uses() -> None:
    """payeeId, quoteAmount, quoteAssetId, settlementAssetId, orderId, expiredTimestamp,
    remark, callbackUrl (HTTPS), and paymentAssetId + isChain on-chain; never traceId,
    strictMode, settlementMemo, returnTo, failedReturnTo, callbackEvent, paymentAmount or
    note."""
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url,
            payment_asset_id=BTC,
        )
        url = "https://bot.example/webhooks/mixpay"
        await gateway.create_session(request("tb-5-0a0b0c0d", 1000, "USD", callback=url))
        await gateway.create_session(
            request("tb-6-0a0b0c0d", 1000, "USD", kind=InvoiceKind.ONCHAIN, callback=url)
        )
        one_time, onchain = [r for r in sim.requests if r.method == "POST"]
        common = {"payeeId", "quoteAmount", "quoteAssetId", "settlementAssetId", "orderId",
                  "expiredTimestamp", "remark", "callbackUrl"}
        assert one_time.path == "/v1/one_time_payment" and set(one_time.parsed) == common
        assert onchain.path == "/v1/payments"
        assert set(onchain.parsed) == common | {"paymentAssetId", "isChain"}
        assert onchain.parsed["isChain"] is True and onchain.parsed["paymentAssetId"] == BTC


async def test_onchain_quote_lifetime_from_seconds_when_expire_is_absent() -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url,
            payment_asset_id=BTC,
        )
        data = {"traceId": "3f2b6c1e-0000-4000-8000-000000000001", "destination": "bc1qxyz",
                "paymentAmount": "0.00016667", "paymentAssetSymbol": "BTC", "seconds": 600,
                "clientId": "c-1", "memo": "", "tag": ""}
        sim.fail_next(1, 200, body={"code": 0, "success": True, "message": "", "data": data},
                      path_contains="/payments")
        before = datetime.now(UTC)
        session = await gateway.create_session(
            request("tb-8-0a0b0c0d", 1000, "USD", kind=InvoiceKind.ONCHAIN)
        )
        ends = datetime.fromisoformat(session.payment["attempt_expires_at"].replace("Z", "+00:00"))
        assert timedelta(seconds=595) < ends - before < timedelta(seconds=605)
        assert "memo" not in session.payment and "tag" not in session.payment  # empty: none


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("confirming", PaymentState.PENDING),  # older notes' status
        ("paid_less", PaymentState.UNDERPAID),  # older notes' status (now a callback event)
        ("refunding-new", PaymentState.PENDING),  # a status nobody documented yet
    ],
)
async def test_older_and_unknown_statuses_are_never_final(raw: str, state: PaymentState) -> None:
    async with MixPaySimulator(payee_id=PAYEE) as sim, httpx.AsyncClient() as client:
        gateway = MixPayGateway(
            client, payee_id=PAYEE, settlement_asset_id=USDT_ERC20, api_url=sim.url
        )
        reference = "tb-2-0a0b0c0d"
        session = await gateway.create_session(request(reference, 1000, "USD"))
        sim.underpay(session.session_id)
        data = sim.result_object(sim.sessions[session.session_id], {"payment"})
        data["status"] = raw
        sim.fail_next(1, 200, body={"code": 0, "success": True, "message": "", "data": data})
        status = await gateway.get_status(session.session_id, reference)
        assert status.state is state and status.raw_status == raw
        assert status.processing  # never expired locally while MixPay still works on it
