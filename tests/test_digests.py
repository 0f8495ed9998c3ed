"""Admin digests (issue 12): payments faster than an admin's chat takes messages (one a
second) are told in one message naming each payment exactly once, not a queue growing at
one message a second."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from bench.cluster import ADMIN_NAMES, admin_named
from bot.domain.models import InvoiceStatus
from tests.conftest import REAL_CHAT_INTERVAL, Harness

PAID_NOTICE = ADMIN_NAMES  # "Invoice #N paid: … · merchant M" alone, or "#N: … · merchant M"


async def test_a_burst_of_payments_is_one_digest_naming_each_payment_once(
    harness: Harness,
) -> None:
    # Digests form while the admin's chat waits out Telegram's real pace.
    tillbot = harness
    await tillbot.start(telegram_chat_interval_seconds=REAL_CHAT_INTERVAL)
    invoices = []
    for n in range(10):
        user = tillbot.merchant if n % 2 else tillbot.merchant2
        _, invoice = await tillbot.invoice(user, f"/invoice {n + 1}.25 EUR Order {n}")
        invoices.append(invoice)
    repo = tillbot.services.repo
    before = len(tillbot.emu.bot_messages(tillbot.admin))
    sandbox = tillbot.sandbox()
    await asyncio.gather(
        *(sandbox.pay(i.gateway_session_id) for i in invoices if i.gateway_session_id)
    )

    async def all_paid() -> bool:
        for invoice in invoices:
            current = await repo.get_invoice(invoice.id)
            if current is None or current.status is not InvoiceStatus.PAID:
                return False
        return True

    deadline = asyncio.get_running_loop().time() + 20
    while not await all_paid():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)

    def named() -> Counter[tuple[int, int]]:
        found: Counter[tuple[int, int]] = Counter()
        for message in tillbot.emu.bot_messages(tillbot.admin)[before:]:
            found.update(admin_named(message.content))
        return found

    expected = {(i.merchant_id, i.shown_number) for i in invoices}
    await tillbot.emu.wait_for(lambda: set(named()) >= expected, timeout=20)
    await asyncio.sleep(1.5)  # nothing more follows
    assert named() == Counter(expected)  # each payment named exactly once
    notices = tillbot.emu.bot_messages(tillbot.admin)[before:]
    assert len(notices) < len(invoices) / 2, [m.content for m in notices]
    digests = [m.content for m in notices if "payments received" in m.content]
    assert digests and all(len(PAID_NOTICE.findall(d)) >= 2 for d in digests)
    first = digests[0]
    count = int(re.search(r"(\d+) payments received", first).group(1))  # type: ignore[union-attr]
    assert count == len(PAID_NOTICE.findall(first))
    # every admin row is done (the merchants' edits still go at their chats' pace)
    rows = await repo.outbox_items()
    assert all(r.sent_at is not None for r in rows if r.chat_id == tillbot.admin.id)
