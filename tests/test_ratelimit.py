"""One pace for everything sent to Telegram (bot/ratelimit.py): handler replies and the
outbox both pass python-telegram-bot's rate limiter, replies first, and a 429 pauses all."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from bot.ratelimit import TelegramRateLimiter
from tests.conftest import Harness

if TYPE_CHECKING:
    from bot.simulators.telegram_models import RecordedRequest


async def test_replies_to_one_chat_are_paced_one_a_second(tillbot: Harness) -> None:
    """Three commands at once from one private chat: three replies, a second apart, and the
    emulator (enforcing Telegram's limits) answers none of them 429."""
    emu = tillbot.emu
    emu.enforce_limits = True
    emu.limiter.reset()
    chat = tillbot.merchant.id
    for _ in range(3):
        await emu.send_message(tillbot.merchant, "/help")

    def replies() -> list[float]:
        return [
            r.ts for r in emu.requests
            if r.method == "sendMessage" and r.ok and r.params.get("chat_id") in (chat, str(chat))
        ]

    await emu.wait_for(lambda: len(replies()) >= 3, timeout=10)
    assert not [r for r in emu.requests if r.status == 429]
    times = replies()
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), times


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
