"""One Telegram budget for all instances (bot/telegram/budget.py, storage/budget_sql.py):
bookings are atomic in the database, two limiters on one database keep one pace between
them, and a pause written by one holds back the other."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.telegram.budget import SharedBudget
from bot.telegram.ratelimit import TelegramRateLimiter
from tests.storage_fixtures import Backend, backend, repo  # noqa: F401

US = 1_000_000


async def test_bookings_follow_one_another_in_the_database(backend: Backend) -> None:  # noqa: F811
    one, two = await backend.open(), await backend.open()
    first, now, paused = await one.budget_take(3, 40_000)
    assert paused == 0 and abs(first - now) < 5 * US  # an idle budget starts now
    second, _, _ = await two.budget_take(2, 40_000)
    assert second == first + 3 * 40_000  # the other "instance" books after these three
    # A chat: the first message goes now, the next one a spacing later, whoever books it.
    chat_next, chat_now = await one.budget_chat("42", US)
    assert chat_next - chat_now == US
    again, _ = await two.budget_chat("42", US)
    assert again == chat_next + US
    other, other_now = await two.budget_chat("@shop", 3 * US)
    assert other - other_now == 3 * US  # chats are apart
    # Sent late: the chat's next slot moves on; never back.
    await one.budget_chat_sent("42", again + 5 * US)
    moved, _ = await two.budget_chat("42", US)
    assert moved == again + 6 * US
    await one.budget_chat_sent("42", 0)
    assert (await two.budget_chat("42", US))[0] == moved + US
    # A pause: the next booking of either comes after it.
    until, paused_at = await one.budget_pause(2 * US)
    assert until - paused_at == 2 * US
    after, _, seen = await two.budget_take(1, 40_000)
    assert seen == until and after >= until
    # Idle chats are forgotten; busy ones kept.
    assert await one.budget_prune(10 * US) == 0
    assert await one.budget_prune(-100 * US) == 2


async def test_two_limiters_on_one_database_keep_one_pace(backend: Backend) -> None:  # noqa: F811
    """Two "instances" sending to 40 chats each at once: together no faster than the one
    global rate, and with far fewer global bookings than messages (booked in batches)."""
    rate = 20.0
    limiters = []
    for _ in range(2):
        limiter = TelegramRateLimiter(global_rate=rate)
        limiter.share(SharedBudget(await backend.open(), global_rate=rate))
        limiters.append(limiter)
    sent: list[float] = []

    async def send(limiter: TelegramRateLimiter, chat: int) -> None:
        await limiter.acquire(chat)
        sent.append(time.monotonic())

    await asyncio.gather(
        *(send(limiters[n % 2], 1000 + n) for n in range(80)), return_exceptions=False
    )
    times = sorted(sent)
    # Any second holds at most rate + 1 sends (slots are 1/rate apart on one clock).
    most = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert most <= rate + 1, most
    assert times[-1] - times[0] >= (80 - 1) / rate * 0.95
    budgets = [limiter.budget for limiter in limiters]
    assert all(isinstance(b, SharedBudget) and b.batch == 4 for b in budgets)
    for limiter in limiters:
        await limiter.shutdown()


async def test_a_pause_seen_by_one_instance_holds_back_the_other(backend: Backend) -> None:  # noqa: F811
    first = TelegramRateLimiter(global_rate=25)
    first.share(SharedBudget(await backend.open(), global_rate=25))
    second = TelegramRateLimiter(global_rate=25)
    second.share(SharedBudget(await backend.open(), global_rate=25))
    await first.budget.pause(1.0)  # as after a 429 with retry_after 1
    asked = time.monotonic()
    await second.acquire(7)  # the other instance has never heard of it
    assert time.monotonic() - asked >= 0.9
    await first.shutdown()
    await second.shutdown()


def test_replies_in_a_private_chat_keep_its_pace_after_a_burst_of_two() -> None:
    """A flood of commands from one user: two answers at once, then one a second."""
    now = [0.0]

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    limiter = TelegramRateLimiter(global_rate=30.0, monotonic=lambda: now[0], sleep=advancing_sleep)
    times: list[float] = []

    async def run() -> None:
        for _ in range(5):
            await limiter.acquire(42, urgent=True)
            times.append(now[0])
        await limiter.shutdown()

    asyncio.run(run())
    assert times[1] - times[0] < 0.1, times  # the second answer at once
    # then one a second: the k-th no sooner than k - 1 seconds after the first
    assert all(t - times[0] >= k - 1 - 1e-9 for k, t in enumerate(times[2:], 2)), times
    assert all(b - a >= 1.0 - 0.1 for a, b in itertools.pairwise(times[1:])), times
