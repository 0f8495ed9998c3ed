"""A slow gateway gets feedback (issue 16, point 5), over HTTP against the Bot API emulator
and the Mion simulator with its fault controls: `/invoice` and `/pos` are answered at once
with a placeholder ("Creating invoice…") that is edited in place into the invoice or into a
friendly error; the attempt is bounded (INVOICE_CREATE_TIMEOUT_SECONDS); a resend of the
same command while it is under way is pointed to the first, not doubled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bot.domain.models import InvoiceStatus
from bot.i18n import t
from testkit.mion import MionSimulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import Harness

MION_KEY = "mion-key-SLOW-5d1e"
BOUND = 2.0  # INVOICE_CREATE_TIMEOUT_SECONDS in these tests


@dataclass
class SlowBot:
    h: Harness
    sim: MionSimulator

    def bot_messages(self, user: EmuUser) -> list[MessageRecord]:
        return self.h.emu.bot_messages(user, include_deleted=False)


@pytest.fixture
async def slow(harness: Harness) -> AsyncIterator[SlowBot]:
    sim = MionSimulator(api_key=MION_KEY)
    await sim.start()
    try:
        await harness.start(
            mion_api_url=sim.url,
            mion_api_key=MION_KEY,
            default_gateway="mion",
            gateway_timeout_seconds=10.0,  # one request alone would wait far longer
            gateway_max_retries=3,
            invoice_create_timeout_seconds=BOUND,
        )
        yield SlowBot(harness, sim)
    finally:
        await harness.stop()
        await sim.stop()


async def placeholder_of(slow: SlowBot, user: EmuUser, lang: str) -> MessageRecord:
    """The first answer: the placeholder, while the gateway still hangs."""
    return await slow.h.emu.wait_for_message(
        user, lambda m: m.content == t(lang, "creating_invoice"), timeout=BOUND / 2
    )


@pytest.mark.parametrize("who", ["merchant", "merchant2"])  # English, German
async def test_hanging_gateway_placeholder_becomes_a_friendly_error_in_place(
    slow: SlowBot, who: str
) -> None:
    h, sim = slow.h, slow.sim
    user = getattr(h, who)
    lang = "de" if who == "merchant2" else "en"
    sim.hang_next(5, seconds=30.0)
    await h.emu.send_message(user, "/invoice 12.50 Coffee")
    placeholder = await placeholder_of(slow, user, lang)
    busy = t(lang, "gateway_busy", gateway="Mion")
    await h.emu.wait_for(lambda: placeholder.content == busy, timeout=BOUND + 3)
    assert [m.message_id for m in slow.bot_messages(user)] == [placeholder.message_id]
    [invoice] = await h.services.repo.list_invoices(user.id, limit=5)
    assert invoice.status is InvoiceStatus.FAILED and invoice.gateway_session_id is None


async def test_slow_gateway_placeholder_becomes_the_invoice_in_place(slow: SlowBot) -> None:
    h, sim = slow.h, slow.sim
    sim.hang_next(1, seconds=1.0)  # slower than a reply, faster than the bound
    await h.emu.send_message(h.merchant, "/invoice 12.50 Coffee")
    placeholder = await placeholder_of(slow, h.merchant, "en")
    await h.emu.wait_for(lambda: "Invoice #" in placeholder.content, timeout=BOUND + 3)
    assert "waiting for payment" in placeholder.content and placeholder.buttons
    assert [m.message_id for m in slow.bot_messages(h.merchant)] == [placeholder.message_id]
    [invoice] = await h.services.repo.list_invoices(h.merchant.id, limit=5)
    [view] = await h.services.repo.messages_for(invoice.id)
    assert view.message_id == placeholder.message_id  # edited to PAID later: the one shown
    assert sim.create_count == 1


async def test_pos_placeholder_gives_way_to_the_qr_photo(slow: SlowBot) -> None:
    h, sim = slow.h, slow.sim
    sim.hang_next(1, seconds=1.0)
    await h.emu.send_message(h.merchant, "/pos 4.20 Tea")
    placeholder = await placeholder_of(slow, h.merchant, "en")
    photo = await h.emu.wait_for_message(h.merchant, lambda m: m.photo is not None, timeout=5)
    await h.emu.wait_for(lambda: placeholder.deleted, timeout=3)
    assert [m.message_id for m in slow.bot_messages(h.merchant)] == [photo.message_id]


async def test_a_resend_while_under_way_is_pointed_to_the_first(slow: SlowBot) -> None:
    h, sim = slow.h, slow.sim
    sim.hang_next(1, seconds=1.5)
    await h.emu.send_message(h.merchant, "/invoice 12.50 Coffee")
    placeholder = await placeholder_of(slow, h.merchant, "en")
    await h.emu.send_message(h.merchant, "/invoice   12.50 Coffee")  # the same command
    underway = await h.emu.wait_for_message(
        h.merchant, lambda m: m.content == t("en", "invoice_underway"), timeout=3
    )
    assert underway.reply_to_message_id == placeholder.message_id
    await h.emu.wait_for(lambda: "Invoice #" in placeholder.content, timeout=BOUND + 3)
    assert sim.create_count == 1
    assert len(await h.services.repo.list_invoices(h.merchant.id, limit=5)) == 1
    # Once answered, the same command is a new invoice (two coffees are two invoices).
    again = await h.command(h.merchant, "/invoice 12.50 Coffee")
    assert "Invoice #" in again.content and sim.create_count == 2
    # A different command is never taken for a resend.
    sim.hang_next(1, seconds=1.0)
    await h.emu.send_message(h.merchant, "/invoice 3 Tea")
    await h.emu.send_message(h.merchant, "/invoice 4 Tea")
    await h.emu.wait_for(lambda: sim.create_count == 4, timeout=BOUND + 3)
    assert not [
        m for m in slow.bot_messages(h.merchant) if m.content == t("en", "invoice_underway")
    ][1:]
