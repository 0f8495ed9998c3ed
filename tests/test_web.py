"""The watcher in production (issue 4) over real HTTP: webhook mode and its secret header,
gateway callbacks (forged, duplicated, out of order), Telegram 429s, idempotent edits,
health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.domain.drafts import reference_for
from bot.domain.models import InvoiceStatus, NewOutbox, OutboxEvent, OutboxKind
from testkit.mion import MionSimulator
from testkit.mixpay import DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from testkit.tls import TlsFront, client_context
from tests.conftest import Harness, free_port

MION_KEY = "mion-web-MARKER-key-91ce"


@pytest.fixture
async def mion() -> AsyncIterator[MionSimulator]:
    async with MionSimulator(api_key=MION_KEY) as sim:
        yield sim


@pytest.fixture
async def mixpay() -> AsyncIterator[MixPaySimulator]:
    async with MixPaySimulator(payee_id=DEFAULT_PAYEE_ID) as sim:
        yield sim


@pytest.fixture
async def webbot(
    harness: Harness, mion: MionSimulator, mixpay: MixPaySimulator
) -> AsyncIterator[Harness]:
    """The bot in webhook mode with Mion and MixPay, polling slowly so callbacks show; its
    PUBLIC_URL is an HTTPS front on 127.0.0.1 (TLS ends there, as at a load balancer)."""
    port = free_port()
    front = TlsFront(port)
    await front.start()
    await harness.start(
        http_port=port,
        public_url=front.url,
        mion_api_url=mion.url,
        mion_api_key=MION_KEY,
        mixpay_api_url=mixpay.url,
        mixpay_payee_id=DEFAULT_PAYEE_ID,
        mixpay_settlement_asset_id=USDT_ERC20,
        default_gateway="mion",
        poll_interval_seconds=30,
        callback_poll_interval_seconds=60,
    )
    yield harness
    await harness.stop()
    await front.stop()


def base(h: Harness) -> str:
    return str(h.settings().public_url)


async def test_webhook_mode_serves_updates_with_the_secret(webbot: Harness) -> None:
    emu = webbot.emu
    assert emu.webhook_url == f"{base(webbot)}/telegram"
    assert emu.webhook_secret == webbot.settings().webhook_secret
    reply = await webbot.command(webbot.merchant, "/help")
    assert "/invoice" in reply.content


@pytest.mark.parametrize("header", [None, "wrong-secret"])
async def test_telegram_webhook_without_the_secret_is_403(
    webbot: Harness, header: str | None
) -> None:
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "text": "/invoice 5",
                                          "chat": {"id": webbot.merchant.id, "type": "private"},
                                          "from": {"id": webbot.merchant.id, "is_bot": False,
                                                   "first_name": "M"},
                                          "entities": [{"type": "bot_command", "offset": 0,
                                                        "length": 8}]}}
    headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header else {}
    async with httpx.AsyncClient(verify=client_context()) as client:
        response = await client.post(f"{base(webbot)}/telegram", json=update, headers=headers)
    assert response.status_code == 403
    await asyncio.sleep(0.3)
    assert not webbot.emu.bot_messages(webbot.merchant)
    assert await webbot.services.repo.count_invoices(webbot.merchant.id) == 0


async def test_mion_webhook_registered_and_callback_edits_at_once(
    webbot: Harness, mion: MionSimulator
) -> None:
    reply, invoice = await webbot.invoice(webbot.merchant, "/invoice 12.50 Coffee")
    session = mion.sessions[invoice.gateway_session_id or ""]
    registrations = [r for r in mion.requests if r.path.endswith("/webhooks")]
    assert registrations and registrations[0].parsed == {"url": f"{base(webbot)}/webhooks/mion"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    mion.pay(session.id)
    await webbot.emu.wait_for(lambda: "PAID" in reply.content, timeout=3)
    assert loop.time() - started < 2.0  # the next poll is 30 s away: this was the callback
    assert mion.callbacks_sent


async def test_forged_malformed_duplicate_and_out_of_order_callbacks(
    webbot: Harness, mion: MionSimulator
) -> None:
    reply, invoice = await webbot.invoice(webbot.merchant, "/invoice 3 Tea")
    url = f"{base(webbot)}/webhooks/mion"
    status_object = mion.status_object(mion.sessions[invoice.gateway_session_id or ""])
    async with httpx.AsyncClient(verify=client_context()) as client:
        unknown = await client.post(url, json={**status_object, "paymentSessionId": "nope"})
        assert unknown.status_code == 404
        malformed = await client.post(url, content=b"{not json", headers={
            "content-type": "application/json"})
        assert malformed.status_code == 400
        # A forged "paid" body for a real, unpaid session: re-read from the API, nothing moves.
        forged = {**status_object, "status": "funded", "paidAt": "2026-01-01T00:00:00Z"}
        assert (await client.post(url, json=forged)).status_code == 200
        stored = await webbot.services.repo.get_invoice(invoice.id)
        assert stored is not None and stored.status is InvoiceStatus.PENDING
        mion.pay(invoice.gateway_session_id or "")
        await webbot.emu.wait_for(lambda: "PAID" in reply.content, timeout=3)
        # Repeats and a stale "created" delivered after the payment change nothing.
        for body in (forged, status_object, forged):
            assert (await client.post(url, json=body)).status_code == 200
        unknown_gateway = await client.post(f"{base(webbot)}/webhooks/nowhere", json={})
        assert unknown_gateway.status_code == 404
    await asyncio.sleep(0.3)
    admin_notices = [m for m in webbot.emu.bot_messages(webbot.admin) if "paid" in m.content]
    assert len(admin_notices) == 1
    assert len(await webbot.services.repo.messages_for(invoice.id)) == 1


async def test_mixpay_callback_is_answered_success_and_rechecked(
    webbot: Harness, mixpay: MixPaySimulator
) -> None:
    reply, invoice = await webbot.invoice(webbot.merchant, "/invoice mixpay 10 Lamp")
    create = next(r for r in mixpay.requests if r.path.endswith("/one_time_payment"))
    assert create.parsed["callbackUrl"] == f"{base(webbot)}/webhooks/mixpay"
    url = f"{base(webbot)}/webhooks/mixpay"
    session = mixpay.session(reference_for(invoice))
    body = {"orderId": reference_for(invoice), "traceId": session.id, "payeeId": DEFAULT_PAYEE_ID}
    async with httpx.AsyncClient(verify=client_context()) as client:
        wrong_payee = await client.post(url, json={**body, "payeeId": "someone-else"})
        assert wrong_payee.status_code == 404
        mixpay.callbacks_enabled = False  # deliver by hand: exactly one, then a repeat
        mixpay.pay(session.id)
        first = await client.post(url, json=body)
        assert first.status_code == 200 and first.json() == {"code": "SUCCESS"}
        await webbot.emu.wait_for(lambda: "PAID" in reply.content, timeout=3)
        again = await client.post(url, json=body)
        assert again.json() == {"code": "SUCCESS"}


async def test_healthz_and_metrics(webbot: Harness) -> None:
    await webbot.invoice(webbot.merchant, "/invoice 5 Tea")
    async with httpx.AsyncClient(verify=client_context()) as client:
        health = await client.get(f"{base(webbot)}/healthz")
        metrics = await client.get(f"{base(webbot)}/metrics")
    assert health.status_code == 200 and health.json()["ok"] is True, health.json()
    text = metrics.text
    assert 'tillbot_invoices{status="pending"} 1' in text
    assert 'tillbot_gateway_requests_total{gateway="mion",operation="create",outcome="ok"} 1' in text
    assert "tillbot_notification_delay_seconds_bucket" in text
    assert "tillbot_telegram_429_total" in text


async def test_telegram_429_delays_the_next_request_by_retry_after(tillbot: Harness) -> None:
    emu = tillbot.emu
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 2 Water")
    emu.fail_next(1, status=429, retry_after=2, method="editMessageText")
    await tillbot.sandbox().pay(invoice.gateway_session_id or "")
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    sends = [r for r in emu.requests if r.method in ("editMessageText", "sendMessage")]
    refused = next(i for i, r in enumerate(sends) if r.status == 429)
    assert sends[refused + 1].ts - sends[refused].ts >= 2.0
    assert tillbot.services.metrics.telegram_429 == 1


async def test_message_is_not_modified_counts_as_done(tillbot: Harness) -> None:
    _reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 2 Water")
    repo = tillbot.services.repo
    [message] = await repo.messages_for(invoice.id)
    now = tillbot.services.clock()
    await repo.enqueue([NewOutbox(kind=OutboxKind.EDIT, event=OutboxEvent.RENEWED,
                                  invoice_id=invoice.id, chat_id=message.chat_id,
                                  message_row_id=message.id, dedupe_key="same")], now)
    assert tillbot.services.notifier is not None
    tillbot.services.notifier.kick()

    async def delivered() -> bool:
        items = await repo.outbox_items(invoice.id)
        return bool(items) and all(i.sent_at is not None for i in items)

    for _ in range(100):
        if await delivered():
            break
        await asyncio.sleep(0.05)
    items = await repo.outbox_items(invoice.id)
    assert items[0].sent_at is not None and items[0].attempts == 0
    failed = [r for r in tillbot.emu.calls("editMessageText") if r.status == 400]
    assert failed and "not modified" in (failed[0].description or "")


async def test_message_that_cannot_be_edited_gets_a_new_message(tillbot: Harness) -> None:
    emu = tillbot.emu
    reply, invoice = await tillbot.invoice(tillbot.merchant, "/invoice 2 Water")
    runner = tillbot.runner
    assert runner is not None
    await runner.app.bot.delete_message(tillbot.merchant.id, reply.message_id)
    await tillbot.sandbox().pay(invoice.gateway_session_id or "")
    fresh = await emu.wait_for_message(tillbot.merchant, lambda m: "PAID" in m.content
                                       and m.message_id != reply.message_id, timeout=5)
    for _ in range(50):  # the row is repointed right after the new message is accepted
        [row] = await tillbot.services.repo.messages_for(invoice.id)
        if row.message_id == fresh.message_id:
            break
        await asyncio.sleep(0.02)
    assert row.message_id == fresh.message_id



async def test_webhook_update_is_stored_before_the_200_and_a_redelivery_is_not_handled_twice(
    webbot: Harness, mion: MionSimulator
) -> None:
    """Issue 12: the update is in the inbox when Telegram gets its 200; Telegram delivering
    it again (after a lost answer, say) while it is under way or after it is done changes
    nothing: one invoice, one session, one answer."""
    merchant = webbot.merchant
    update = {"update_id": 777001, "message": {
        "message_id": 9001, "date": 0, "text": "/invoice 5 Tea",
        "chat": {"id": merchant.id, "type": "private"},
        "from": {"id": merchant.id, "is_bot": False, "first_name": "M"},
        "entities": [{"type": "bot_command", "offset": 0, "length": 8}]}}
    headers = {"X-Telegram-Bot-Api-Secret-Token": webbot.settings().webhook_secret}
    mion.hang_next(1, seconds=1.0)  # the first delivery is still under way at the second
    async with httpx.AsyncClient(verify=client_context()) as client:
        first = await client.post(f"{base(webbot)}/telegram", json=update, headers=headers)
        assert first.status_code == 200
        assert await webbot.services.repo.inbox_get(777001) is not None  # before the 200
        again = await client.post(f"{base(webbot)}/telegram", json=update, headers=headers)
        assert again.status_code == 200
        await webbot.emu.wait_for_message(merchant, lambda m: "Invoice #" in m.content, 10)
        entry = await webbot.services.repo.inbox_get(777001)
        for _ in range(50):
            entry = await webbot.services.repo.inbox_get(777001)
            if entry is not None and entry.done_at is not None:
                break
            await asyncio.sleep(0.1)
        late = await client.post(f"{base(webbot)}/telegram", json=update, headers=headers)
        assert late.status_code == 200
    await asyncio.sleep(1.0)
    assert entry is not None and entry.done_at is not None and entry.attempts == 1
    assert await webbot.services.repo.count_invoices(merchant.id) == 1
    assert mion.create_count == 1
    assert len(webbot.emu.bot_messages(merchant)) == 1  # the placeholder, now the invoice
