"""The counter Mini App in a real browser (issue 14): Debian's chromium, headless, driven by
playwright (launched with `executable_path`: no browser is downloaded), against the running
bot, the Bot API emulator and the sandbox gateway, with initData signed by the test's bot
token. keypad -> tip -> QR -> payment at the gateway -> paid screen; a forged initData -> 401.

Skipped where no chromium is installed, except under CI=true, where that is a failure.
The screenshots of the README (docs/img/counter-*.png) are written by these tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.domain.models import InvoiceStatus
from tests.conftest import MERCHANT_ID, Harness, in_ci
from tests.counter_kit import CounterBot, counter_bot, init_data

IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
VIEWPORT = {"width": 390, "height": 780}


def chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def need_browser() -> tuple[Any, str]:
    path = chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        async_playwright = None
    if path is None or async_playwright is None:
        why = "no chromium" if path is None else "no playwright"
        if in_ci():
            pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs chromium)")
        pytest.skip(f"{why}: the Mini App browser tests need Debian's chromium")
    return async_playwright, path


@pytest.fixture
async def counterbot(harness: Harness) -> AsyncIterator[CounterBot]:
    async with counter_bot(harness) as bot:
        yield bot


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async_playwright, path = need_browser()
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


def telegram_stub(init: str) -> str:
    """What telegram-web-app.js gives a page inside Telegram, reduced to what the counter uses."""
    stub = (
        "window.Telegram = {WebApp: {initData: INIT, initDataUnsafe: {}, ready() {}, expand() {},"
        " HapticFeedback: {notificationOccurred() {}}}};"
    )
    return stub.replace("INIT", json.dumps(init))


async def open_page(browser: Any, url: str, init: str | None) -> Any:
    """A phone-sized page; telegram-web-app.js is served as Telegram would (with `init`), or
    absent (the network has no telegram.org) when `init` is None."""
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = await context.new_page()
    if init is None:
        await page.route("https://telegram.org/**", lambda route: route.abort())
    else:
        body = telegram_stub(init)
        await page.route(
            "https://telegram.org/**",
            lambda route: route.fulfill(status=200, content_type="text/javascript", body=body),
        )
    await page.goto(url)
    return page


async def test_keypad_tip_qr_payment_and_paid_screen(counterbot: CounterBot, browser: Any) -> None:
    h = counterbot.harness
    page = await open_page(browser, counterbot.base, init_data(h.merchant))
    await page.wait_for_selector("#keypad.active")
    for key in "1250":
        await page.click(f'.keys button[data-key="{key}"]')
    assert await page.inner_text("#amount") == "12.50"
    await page.fill("#note", "2 flat whites")
    assert "Sales today: 0" in await page.inner_text("#today")
    IMG.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMG / "counter-keypad.png"))
    await page.click("#charge")
    await page.wait_for_selector("#tip.active")
    tip = page.locator('.tip-option[data-tip="10"]')
    assert "+€1.25 = €13.75" in await tip.inner_text()
    assert "+€0.50 = €13.00" in await page.locator('.tip-option[data-tip="roundup"]').inner_text()
    await page.screenshot(path=str(IMG / "counter-tip.png"))
    await tip.click()
    await page.wait_for_selector("#qr.active")
    await page.wait_for_function("document.getElementById('qr-img').naturalWidth > 0")
    assert await page.inner_text("#qr-total") == "€13.75"
    assert "sats" in await page.inner_text("#qr-sats")
    assert "€12.50 + tip €1.25" in await page.inner_text("#qr-split")
    assert "Expires in" in await page.inner_text("#qr-countdown")
    await page.screenshot(path=str(IMG / "counter-qr.png"))
    (invoice,) = await h.services.repo.list_invoices(MERCHANT_ID, limit=1)
    assert invoice.amount_minor == 1375 and invoice.description == "2 flat whites"
    assert invoice.gateway_session_id is not None
    await h.sandbox().pay(invoice.gateway_session_id)
    await page.wait_for_selector("#paid.active", timeout=10_000)
    assert await page.inner_text("#paid-total") == "€13.75"
    await page.wait_for_function(
        "document.getElementById('today').textContent.includes('Sales today: 1')"
    )
    await page.screenshot(path=str(IMG / "counter-paid.png"))
    paid = await h.services.repo.get_invoice(invoice.id)
    assert paid is not None and paid.status is InvoiceStatus.PAID
    await page.click("#new-sale")
    await page.wait_for_selector("#keypad.active")
    assert await page.inner_text("#amount") == "0.00"


async def test_the_customer_sees_that_invoice_live_without_telegram_js(
    counterbot: CounterBot, browser: Any
) -> None:
    """Opened from the invoice's Open button: the same QR and live status, for that invoice
    only; telegram-web-app.js absent, initData from the launch parameters in the URL."""
    h = counterbot.harness
    _, invoice = await h.invoice(h.merchant, "/pos 7 Cake")
    assert invoice.gateway_session_id is not None
    fragment = f"#tgWebAppData={quote(init_data(h.customer))}"
    page = await open_page(browser, f"{counterbot.base}?i={invoice.public_token}{fragment}", None)
    await page.wait_for_selector("#qr.active")
    assert await page.inner_text("#qr-total") == "€7.00"
    assert not await page.is_visible("#cancel")  # not theirs to cancel
    await h.sandbox().pay(invoice.gateway_session_id)
    await page.wait_for_selector("#paid.active", timeout=10_000)
    assert not await page.is_visible("#new-sale")


async def test_forged_init_data_gets_401_in_the_browser(counterbot: CounterBot, browser: Any) -> None:
    h = counterbot.harness
    forged = init_data(h.merchant, token="987654:not-the-bots-token")
    page = await open_page(browser, counterbot.base, forged)
    await page.wait_for_selector("#message.active")
    assert "401" in await page.inner_text("#message-text")
    status = await page.evaluate(
        """async (init) => (await fetch('api/sales', {method: 'POST',
              headers: {Authorization: 'tma ' + init, 'Content-Type': 'application/json'},
              body: JSON.stringify({amount: '5'})})).status""",
        forged,
    )
    assert status == 401
    assert await h.services.repo.count_invoices(MERCHANT_ID) == 0


async def test_the_page_speaks_the_merchants_language(counterbot: CounterBot, browser: Any) -> None:
    h = counterbot.harness
    page = await open_page(browser, counterbot.base, init_data(h.merchant2))  # German
    await page.wait_for_selector("#keypad.active")
    for key in "123456":
        await page.click(f'.keys button[data-key="{key}"]')
    assert await page.inner_text("#amount") == "1.234,56"
    assert await page.inner_text("#charge") == "Kassieren"
    await page.click("#charge")
    await page.wait_for_selector("#tip.active")
    assert await page.inner_text("#tip h1") == "Trinkgeld geben?"
    assert "+123,46\u00a0€ = 1.358,02\u00a0€" in await page.locator('.tip-option[data-tip="10"]').inner_text()
