"""The counter Mini App's API over real HTTP against the running bot, the Bot API emulator
and the sandbox gateway (issue 14): who may do what with which initData, tips booked apart
from the amount, the live status, today's sales, /counter, the menu button and Open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.domain.models import InvoiceStatus
from bot.domain.tips import TipKind
from tests.conftest import MERCHANT_ID, TOKEN, Harness
from tests.counter_kit import CounterBot, auth, counter_bot, init_data


@pytest.fixture
async def counterbot(harness: Harness) -> AsyncIterator[CounterBot]:
    async with counter_bot(harness) as bot:
        yield bot

API = "/app/api"


async def sale(bot: CounterBot, body: dict[str, object]) -> httpx.Response:
    return await bot.client.post(f"{API}/sales", json=body, headers=auth(bot.harness.merchant))


async def test_me_answers_who_the_caller_is(counterbot: CounterBot) -> None:
    h = counterbot.harness
    r = await counterbot.client.get(f"{API}/me", headers=auth(h.merchant))
    assert r.status_code == 200
    me = r.json()
    assert (me["user_id"], me["role"], me["language"]) == (MERCHANT_ID, "merchant", "en")
    assert me["texts"]["paid"] == "Paid"
    r = await counterbot.client.get(f"{API}/me", headers=auth(h.customer))
    assert (r.json()["user_id"], r.json()["role"]) == (h.customer.id, "customer")
    r = await counterbot.client.get(f"{API}/me", headers=auth(h.merchant2))  # German
    assert r.json()["texts"]["new_sale"] == "Neuer Verkauf"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


async def test_missing_forged_or_stale_init_data_gets_401_and_changes_nothing(
    counterbot: CounterBot,
) -> None:
    h = counterbot.harness
    body = {"amount": "5", "tip": {"kind": "none"}}
    refused = [
        {},
        {"Authorization": "Bearer x"},
        {"Authorization": f"tma {init_data(h.merchant, token='987654:forged-token')}"},
        {"Authorization": f"tma {init_data(h.merchant, age=25 * 3600)}"},
        {"Authorization": "tma " + init_data(h.customer).replace(str(h.customer.id), str(MERCHANT_ID))},
    ]
    for headers in refused:
        for method, path in (("GET", "me"), ("GET", "setup"), ("POST", "sales"), ("GET", "today")):
            r = await counterbot.client.request(method, f"{API}/{path}", json=body, headers=headers)
            assert r.status_code == 401, (headers, path)
            assert r.json() == {"error": "unauthorized"}
    assert await h.services.repo.count_invoices(MERCHANT_ID) == 0


async def test_a_sale_books_the_tip_apart_and_only_merchants_create(counterbot: CounterBot) -> None:
    h = counterbot.harness
    setup = (await counterbot.client.get(f"{API}/setup", headers=auth(h.merchant))).json()
    assert setup["currency"] == "EUR" and setup["decimals"] == 2
    assert setup["tip_percents"] == [5, 10, 15]
    keys = [o["key"] for o in setup["options"]]
    assert keys[0] == "sandbox:lightning" and "sandbox:checkout" in keys
    # A customer may neither see the keypad nor create.
    customer = auth(h.customer)
    assert (await counterbot.client.get(f"{API}/setup", headers=customer)).status_code == 403
    r = await counterbot.client.post(f"{API}/sales", json={"amount": "5"}, headers=customer)
    assert r.status_code == 403
    # 12.50 with 10 %: 1.25 of tip (half up), 13.75 charged.
    r = await sale(counterbot, {"amount": "12.50", "note": "Coffee", "tip": {"kind": "percent", "percent": 10}})
    assert r.status_code == 201, r.text
    view = r.json()
    assert (view["total"], view["amount"], view["tip"], view["tip_minor"]) == ("€13.75", "€12.50", "€1.25", 125)
    assert view["status"] == "pending" and view["kind"] == "lightning"
    assert view["pay_uri"].startswith("lightning:") and view["qr"].startswith("data:image/png;base64,")
    assert view["sats"] and view["attempt_expires_at"] > view["server_now"]
    invoice = await h.services.repo.get_invoice_by_token(view["token"])
    assert invoice is not None and invoice.amount_minor == 1375 and invoice.description == "Coffee"
    split = await h.services.repo.counter_sale(invoice.id)
    assert split is not None and (split.amount_minor, split.tip_minor, split.tip_kind) == (1250, 125, TipKind.PERCENT)
    # Round-up: 12.50 -> 13.00; a percentage not offered is refused, nothing stored.
    r = await sale(counterbot, {"amount": "12,50", "tip": {"kind": "roundup"}, "option": "sandbox:checkout"})
    assert r.status_code == 201 and r.json()["tip_minor"] == 50 and r.json()["kind"] == "checkout"
    assert r.json()["pay_uri"].startswith("https://t.me/")
    before = await h.services.repo.count_invoices(MERCHANT_ID)
    for bad in (
        {"amount": "5", "tip": {"kind": "percent", "percent": 12}},
        {"amount": "5", "tip": {"kind": "percent", "percent": "10"}},
        {"amount": "-5"},
        {"amount": "5.001"},
        {"amount": "5", "option": "mion:lightning"},
        {"amount": 5},
    ):
        r = await sale(counterbot, bad)
        assert r.status_code == 400, bad
    r = await sale(counterbot, {"amount": "abc"})
    assert r.json()["error"] == "amount_not_a_number" and "abc" in r.json()["message"]
    assert await h.services.repo.count_invoices(MERCHANT_ID) == before
    bad_json = await counterbot.client.post(
        f"{API}/sales", content=b"{nope", headers=auth(h.merchant)
    )
    assert bad_json.status_code == 400


async def test_a_customer_sees_only_the_invoice_whose_token_they_hold(counterbot: CounterBot) -> None:
    h = counterbot.harness
    view = (await sale(counterbot, {"amount": "3", "tip": {"kind": "none"}})).json()
    r = await counterbot.client.get(f"{API}/invoices/{view['token']}", headers=auth(h.customer))
    assert r.status_code == 200 and r.json()["total"] == "€3.00" and r.json()["mine"] is False
    for token in ("nope", view["token"][:-1] + "x", "x" * 100):
        r = await counterbot.client.get(f"{API}/invoices/{token}", headers=auth(h.customer))
        assert r.status_code == 404
    # Only its merchant cancels it.
    r = await counterbot.client.post(f"{API}/invoices/{view['token']}/cancel", headers=auth(h.customer))
    assert r.status_code == 403
    r = await counterbot.client.post(f"{API}/invoices/{view['token']}/cancel", headers=auth(h.merchant))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # No secret reaches the page.
    for path in ("me", "setup", f"invoices/{view['token']}"):
        body = (await counterbot.client.get(f"{API}/{path}", headers=auth(h.merchant))).text
        assert TOKEN not in body and TOKEN.split(":")[1] not in body


async def read_events(response: httpx.Response, out: list[tuple[float, dict[str, object]]]) -> None:
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
            if data:
                out.append((time.monotonic(), json.loads(data)))


async def test_the_live_status_streams_the_invoice_until_it_is_paid(
    counterbot: CounterBot,
) -> None:
    h = counterbot.harness
    view = (await sale(counterbot, {"amount": "4.20", "tip": {"kind": "percent", "percent": 5}})).json()
    invoice = await h.services.repo.get_invoice_by_token(view["token"])
    assert invoice is not None and invoice.gateway_session_id
    events: list[tuple[float, dict[str, object]]] = []
    url = f"{API}/invoices/{view['token']}/events"
    async with counterbot.client.stream("GET", url, headers=auth(h.customer)) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        reader = asyncio.create_task(read_events(response, events))
        await h.emu.wait_for(lambda: len(events) >= 1, timeout=5)
        assert events[0][1]["status"] == "pending"
        await h.sandbox().pay(invoice.gateway_session_id)
        await asyncio.wait_for(reader, timeout=10)  # the stream ends once paid
    # How soon it is shown: `python -m bench.counter` measures it.
    assert [event["status"] for _, event in events] == ["pending", "paid"]
    stored = await h.services.repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PAID
    today = await counterbot.client.get(f"{API}/today?tz=60", headers=auth(h.merchant))
    assert today.json()["count"] == 1
    (day,) = today.json()["sales"]
    assert (day["total_minor"], day["tips_minor"], day["tips"]) == (441, 21, "€0.21")
    assert (await counterbot.client.get(f"{API}/today", headers=auth(h.customer))).status_code == 403


async def test_the_page_is_served_with_a_strict_policy(counterbot: CounterBot) -> None:
    r = await counterbot.client.get("/app/")
    assert r.status_code == 200 and "telegram-web-app.js" in r.text
    policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self' https://telegram.org" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for name in ("app.js", "app.css"):
        r = await counterbot.client.get(f"/app/{name}")
        assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
    assert (await counterbot.client.get("/app/../bot/config.py")).status_code == 404
    assert (await counterbot.client.get("/app/auth.py")).status_code == 404
    r = await counterbot.client.get("/app?i=abc", follow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/app/?i=abc"


async def test_counter_command_menu_button_tips_and_open_button(counterbot: CounterBot) -> None:
    h = counterbot.harness
    reply = await h.command(h.merchant, "/counter")
    (button,) = reply.buttons
    app_url = h.services.view.app_url
    assert app_url is not None and button["web_app"]["url"] == app_url
    assert app_url.startswith("https://") and app_url.endswith("/app/")
    await h.emu.wait_for(lambda: MERCHANT_ID in h.emu.menu_buttons, timeout=5)
    menu = h.emu.menu_buttons[MERCHANT_ID]
    assert menu["type"] == "web_app" and menu["web_app"]["url"] == app_url
    reply = await h.command(h.customer, "/counter")
    assert not reply.buttons
    # A merchant added by an admin gets the counter as their menu button; removed, the default.
    await h.command(h.stranger, "/start")
    await h.command(h.admin, f"/merchants add {h.stranger.id}")
    await h.emu.wait_for(
        lambda: h.emu.menu_buttons.get(h.stranger.id, {}).get("type") == "web_app", timeout=5
    )
    await h.command(h.admin, f"/merchants remove {h.stranger.id}")
    await h.emu.wait_for(
        lambda: h.emu.menu_buttons.get(h.stranger.id, {}).get("type") == "default", timeout=5
    )
    # Tips in /settings.
    reply = await h.command(h.merchant, "/settings tips 4 8 12%")
    assert "4 % · 8 % · 12 %" in reply.content
    reply = await h.command(h.merchant, "/settings tips 4 0 500")
    assert "three whole percentages" in reply.content
    assert await h.services.repo.tip_percents(MERCHANT_ID) == (4, 8, 12)
    reply = await h.command(h.merchant, "/settings")
    assert "4 % · 8 % · 12 %" in reply.content
    # The invoice a customer opens has an Open button for the Mini App.
    _, invoice = await h.invoice(h.merchant, "/invoice 5 Tea")
    opened = await h.command(h.customer, f"/start {invoice.public_token}")
    webapp = [b for b in opened.buttons if "web_app" in b]
    assert webapp and webapp[0]["web_app"]["url"] == f"{app_url}?i={invoice.public_token}"


async def test_without_public_url_the_counter_says_it_is_not_set_up(harness: Harness) -> None:
    await harness.start()
    reply = await harness.command(harness.merchant, "/counter")
    assert "not set up" in reply.content and "PUBLIC_URL" not in reply.content
    reply = await harness.command(harness.admin, "/counter")
    assert "PUBLIC_URL" in reply.content and "HTTP_PORT" in reply.content
    _, invoice = await harness.invoice(harness.merchant, "/invoice 5 Tea")
    opened = await harness.command(harness.customer, f"/start {invoice.public_token}")
    assert not [b for b in opened.buttons if "web_app" in b]


async def test_a_renewed_attempt_reaches_the_page_without_a_reload(harness: Harness) -> None:
    """Each Lightning attempt lives about two minutes; renewing one shortly before it
    expires (here: at once, every poll) sends the new QR down the same stream."""
    async with counter_bot(harness, mion_attempt_renew_before_seconds=600) as bot:
        view = (await sale(bot, {"amount": "2", "tip": {"kind": "none"}})).json()
        url = f"{API}/invoices/{view['token']}/events"
        events: list[tuple[float, dict[str, object]]] = []
        async with bot.client.stream("GET", url, headers=auth(harness.merchant)) as response:
            reader = asyncio.create_task(read_events(response, events))
            try:
                await harness.emu.wait_for(
                    lambda: len({e["pay_uri"] for _, e in events}) >= 2, timeout=10
                )
            finally:
                reader.cancel()
        first, second = events[0][1], events[-1][1]
        assert first["status"] == second["status"] == "pending"
        assert first["pay_uri"] != second["pay_uri"] and first["qr"] != second["qr"]
        assert str(second["pay_uri"]).startswith("lightning:")


async def test_a_paid_sale_books_its_tip_in_the_ledger(counterbot: CounterBot) -> None:
    h = counterbot.harness
    body = {"amount": "12.50", "note": "Coffee", "tip": {"kind": "percent", "percent": 10}}
    r = await sale(counterbot, body)
    assert r.status_code == 201, r.text
    invoice = await h.services.repo.get_invoice_by_token(r.json()["token"])
    assert invoice is not None
    await h.sandbox().pay(invoice.gateway_session_id or "")
    for _ in range(100):
        entries = await h.services.repo.ledger_for_invoice(invoice.id)
        if entries:
            break
        await asyncio.sleep(0.1)
    [entry] = entries
    assert (entry.fiat_minor, entry.tip_minor, entry.cashier_id) == (1375, 125, MERCHANT_ID)


def test_open_is_a_web_app_button_in_private_chats_and_a_link_elsewhere() -> None:
    from datetime import UTC, datetime

    from bot.domain.models import Invoice, InvoiceKind, MessageRole
    from bot.telegram.views import ViewContext, invoice_keyboard

    at = datetime(2030, 1, 1, tzinfo=UTC)
    invoice = Invoice(
        7, "tokTOKtok123", 1, 500, "EUR", "Tea", "sandbox", InvoiceKind.CHECKOUT,
        InvoiceStatus.PENDING, at, at, checkout_url="https://pay.example/7",
    )
    ctx = ViewContext(bot_username="tillbot_test_bot", app_url="https://shop.example/app/")

    def first(role: MessageRole, private: bool) -> dict[str, object]:
        markup = invoice_keyboard(invoice, "en", role, ctx, private=private)
        assert markup is not None
        return markup.inline_keyboard[0][0].to_dict()

    assert first(MessageRole.CUSTOMER, True)["web_app"] == {
        "url": "https://shop.example/app/?i=tokTOKtok123"
    }
    for role, private in ((MessageRole.INLINE, True), (MessageRole.CUSTOMER, False)):
        assert first(role, private)["url"] == "https://t.me/tillbot_test_bot?start=tokTOKtok123"
    without = ViewContext(bot_username="tillbot_test_bot")
    markup = invoice_keyboard(invoice, "en", MessageRole.CUSTOMER, without, private=True)
    assert markup is not None and all(
        "web_app" not in b.to_dict() for row in markup.inline_keyboard for b in row
    )
