"""One pace for everything sent to Telegram (bot/telegram/ratelimit.py): handler replies and the
outbox both pass python-telegram-bot's rate limiter, replies first, and a 429 pauses all."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from bot.telegram.ratelimit import TelegramRateLimiter
from tests.conftest import REAL_CHAT_INTERVAL, Harness

if TYPE_CHECKING:
    from testkit.telegram.models import RecordedRequest


async def test_replies_are_paced_at_the_global_rate(harness: Harness) -> None:
    """Ten commands at once: ten replies, no two closer than 1/TELEGRAM_MESSAGES_PER_SECOND."""
    await harness.start(
        telegram_messages_per_second=5, telegram_chat_interval_seconds=REAL_CHAT_INTERVAL
    )
    emu = harness.emu
    users = [harness.merchant, harness.customer, harness.stranger, harness.merchant2]
    await asyncio.gather(*(emu.send_message(users[n % 4], "/help") for n in range(10)))

    def replies() -> list[float]:
        return [r.ts for r in emu.requests if r.method == "sendMessage" and r.ok]

    await emu.wait_for(lambda: len(replies()) >= 10, timeout=15)
    times = sorted(replies())
    assert all(b - a >= 0.18 for a, b in itertools.pairwise(times)), times


async def test_a_reply_does_not_wait_behind_the_outbox(tillbot: Harness) -> None:
    """A backlog of notifications queued for the global rate: a command is answered first."""
    limiter = tillbot.services.notifier.limiter if tillbot.services.notifier else None
    assert isinstance(limiter, TelegramRateLimiter)
    limiter.pause(1.0)  # hold everything for a moment, as after a 429
    backlog = [asyncio.create_task(limiter.acquire(-100 - n)) for n in range(50)]
    await asyncio.sleep(0.05)
    emu = tillbot.emu
    asked = len(emu.requests)
    await emu.send_message(tillbot.merchant, "/help")
    await emu.wait_for(
        lambda: any(r.method == "sendMessage" and r.ok for r in emu.requests[asked:]), timeout=5
    )
    assert sum(t.done() for t in backlog) <= 5  # answered after at most a few of the 50
    for task in backlog:
        task.cancel()
    await asyncio.gather(*backlog, return_exceptions=True)


async def test_a_429_on_a_reply_pauses_and_the_reply_still_arrives(tillbot: Harness) -> None:
    emu = tillbot.emu
    emu.fail_next(1, status=429, retry_after=1, method="sendMessage")
    await emu.send_message(tillbot.merchant, "/help")

    def sends() -> list[RecordedRequest]:
        return [r for r in emu.requests if r.method == "sendMessage"]

    await emu.wait_for(lambda: any(r.ok for r in sends()), timeout=8)
    refused = next(r for r in sends() if r.status == 429)
    answered = next(r for r in sends() if r.ok and r.ts > refused.ts)
    assert answered.ts - refused.ts >= 1.0
    assert "/invoice" in str(answered.params.get("text"))
    assert tillbot.services.metrics.telegram_429 == 1


def test_a_waiting_reply_goes_before_the_outbox_backlog() -> None:
    now = [0.0]
    order: list[str] = []

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    limiter = TelegramRateLimiter(global_rate=10.0, monotonic=lambda: now[0], sleep=advancing_sleep)

    async def send(name: str, urgent: bool) -> None:
        await limiter.acquire(None, urgent=urgent)
        order.append(name)

    async def run() -> None:
        outbox = [asyncio.create_task(send(f"outbox-{i}", False)) for i in range(5)]
        await asyncio.sleep(0)  # the backlog queues first
        reply = asyncio.create_task(send("reply", True))
        await asyncio.gather(*outbox, reply)
        await limiter.shutdown()

    asyncio.run(run())
    assert order.index("reply") <= 2, order  # not behind the whole backlog
    assert now[0] >= 5 * 0.1 - 1e-9  # still one slot per 1/10 s for all six
