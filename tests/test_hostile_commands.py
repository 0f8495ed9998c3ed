"""Hostile input (issue 17): edited commands, ids in Unicode digits or out of range, lengths
counted as Telegram counts them, control characters in descriptions.

The real bot (the python-telegram-bot Application built by `bot.app`) runs against the Bot
API emulator over HTTP; the last test runs `python -m bot` as a process in webhook mode.
"""

from __future__ import annotations

import asyncio

from bot.simulators.telegram import BotApiEmulator
from tests.conftest import Harness
from tests.reliability_stats import record

pytest_plugins = ["tests.reliability_stats"]


async def quiet(emu: BotApiEmulator, seconds: float = 0.6) -> None:
    """Give the bot time to (wrongly) act on an update that should change nothing."""
    await asyncio.sleep(seconds)


# -- 2. edited messages ---------------------------------------------------------------------
async def test_an_edited_invoice_command_is_not_run_again(tillbot: Harness) -> None:
    h, emu = tillbot, tillbot.emu
    before = len(emu.bot_messages(h.merchant))
    sent = await emu.send_message(h.merchant, "/invoice 1250 Sofa")
    await emu.wait_for(lambda: len(emu.bot_messages(h.merchant)) > before, timeout=10)
    invoices = await h.services.repo.list_invoices(h.merchant.id, limit=10)
    assert len(invoices) == 1
    seen = len(emu.bot_messages(h.merchant))
    await emu.edit_message(h.merchant, sent, "/invoice 12.50 Sofa")
    hint = await emu.wait_for(
        lambda: emu.bot_messages(h.merchant)[seen:] and emu.bot_messages(h.merchant)[seen],
        timeout=10,
    )
    assert "edited" in hint.content and "new message" in hint.content
    await quiet(emu)
    assert len(await h.services.repo.list_invoices(h.merchant.id, limit=10)) == 1
    assert len(emu.bot_messages(h.merchant)) == seen + 1  # the hint, nothing else
    # in German, for a German merchant; an edited plain text is just an edit: no reply
    sent = await emu.send_message(h.merchant2, "/invoices")
    await emu.wait_for(lambda: emu.bot_messages(h.merchant2), timeout=10)
    seen2 = len(emu.bot_messages(h.merchant2))
    await emu.edit_message(h.merchant2, sent, "/invoice 5 Lampe")
    hint = await emu.wait_for(
        lambda: emu.bot_messages(h.merchant2)[seen2:] and emu.bot_messages(h.merchant2)[seen2],
        timeout=10,
    )
    assert "Bearbeitete Befehle" in hint.content
    plain = await emu.send_message(h.customer, "hello")
    await emu.wait_for(lambda: emu.bot_messages(h.customer), timeout=10)  # /help answer
    seen3 = len(emu.bot_messages(h.customer))
    await emu.edit_message(h.customer, plain, "hello again")
    await quiet(emu)
    assert len(emu.bot_messages(h.customer)) == seen3
    assert await h.services.repo.list_invoices(h.merchant2.id, limit=10) == []
    record("hostile input", tests=1, inputs=3)


async def test_an_edited_merchants_add_does_not_re_add_a_removed_merchant(
    tillbot: Harness,
) -> None:
    h, emu = tillbot, tillbot.emu
    repo = h.services.repo
    added = await emu.send_message(h.admin, "/merchants add 5555")
    await emu.wait_for_message(h.admin, lambda m: "5555 is now a merchant" in m.content)
    await emu.send_message(h.admin, "/merchants remove 5555")
    await emu.wait_for_message(h.admin, lambda m: "5555 is no longer" in m.content, timeout=10)
    assert not await repo.is_merchant(5555)
    seen = len(emu.bot_messages(h.admin))
    await emu.edit_message(h.admin, added, "/merchants add 5555")
    await emu.wait_for(lambda: len(emu.bot_messages(h.admin)) > seen, timeout=10)
    await quiet(emu)
    assert "edited" in emu.bot_messages(h.admin)[seen].content
    assert not await repo.is_merchant(5555)
    record("hostile input", tests=1, inputs=3)
