"""The counter told by Mion's status webhook (issue 14, point 5), against a real
`python -m bot` process in webhook mode: a point-of-sale session registers the webhook at
Mion, and with polling slowed to 30 s only the webhook can explain the prompt edit to paid.
(How fast: `python -m bench`, figures in the README; no timing is asserted here.)"""

from __future__ import annotations

from bot.domain.polling import CALLBACK_READS_PER_WINDOW
from tests.test_hostile import Bot, bot

__all__ = ["bot"]  # the fixture, imported for pytest


async def test_a_counter_session_is_edited_to_paid_by_the_mion_webhook(bot: Bot) -> None:
    await bot.start(POS_POLL_INTERVAL_SECONDS="30")
    photo = await bot.command("/pos 4.20 Espresso")
    assert photo.photo is not None, photo.content
    [session] = list(bot.mion.sessions.values())
    assert session.retail_pos
    assert session.webhooks == [f"{bot.proc.env['PUBLIC_URL']}/webhooks/mion"]
    status_reads = [r for r in bot.mion.requests if r.method == "GET" and session.id in r.path]
    assert status_reads == []  # the first poll is 30 s away
    bot.mion.pay(session.id)
    await bot.emu.wait_for(lambda: "PAID" in photo.content, timeout=10)
    reads = [r for r in bot.mion.requests if r.method == "GET" and session.id in r.path]
    # Only the webhook's re-reads of the status (one a callback, merged beyond that).
    assert 1 <= len(reads) <= CALLBACK_READS_PER_WINDOW
