"""One Telegram budget for all instances, with real processes on PostgreSQL (issue 12):
two instances bursting stay inside Telegram's limits with no 429 from the emulator, which
enforces them; a 429 seen by one instance pauses the other; the admin's digests name each
payment once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.cluster import Cluster, window_counts
from bench.stack import merchant_ids
from testkit.telegram.models import RateLimiter, RateLimits
from tests.storage_fixtures import require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    await require_postgres()
    running = Cluster(tmp_path / "cluster", instances=2, chats=120)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
    running.emu.assert_no_violations()


async def test_two_instances_bursting_stay_inside_telegrams_limits(cluster: Cluster) -> None:
    """80 invoices paid at once while 40 users send a command each: the round-robin front
    hands the commands to both instances, so both send at full speed together.

    Telegram's global limit is scaled down to 12 a second (the bots pace at 10), so that
    two instances pacing apart would overrun it even on a slow machine (20 a second, which
    empties its burst of 24 within 3 s). The burst absorbs the test process's own stalls
    on a busy machine (requests that arrived during a stall are stamped together)."""
    emu = cluster.emu
    emu.limits = RateLimits(global_per_second=12, global_burst=24)
    emu.limiter.limits = emu.limits
    cluster.env["TELEGRAM_MESSAGES_PER_SECOND"] = "10"
    await cluster.seed(80)
    await cluster.start_bots()
    users = merchant_ids(120)[80:]

    async def commands() -> None:
        await asyncio.sleep(1.0)  # while the first edits go out
        await asyncio.gather(*(emu.send_message(user, "/help") for user in users))
        await emu.wait_for(
            lambda: {r.params.get("chat_id") for r in emu.requests if r.ok} >= set(users),
            timeout=60,
        )

    result, _ = await asyncio.gather(cluster.burst(timeout=120), commands())
    assert result["finished"], result
    assert emu.stats.too_many_requests == 0, result
    # One pace for both: within what the limit allows in any 2 s (its rate and its burst),
    # far from the two rates of instances pacing apart.
    assert window_counts(cluster.paced_times(cluster.burst_started), 2.0) <= 2 * 12 + 24, result
    # The admin is told of each payment exactly once, in far fewer messages than payments.
    assert result["admin_payments_named"] == 80 and result["admin_payments_named_twice"] == 0
    assert result["admin_messages"] < 30, result


async def test_a_429_seen_by_one_instance_pauses_the_other(cluster: Cluster) -> None:
    await cluster.start_bots()
    emu = cluster.emu
    users = merchant_ids(9)
    emu.fail_next(1, status=429, retry_after=3, method="sendMessage")
    await emu.send_message(users[0], "/help")
    refused = await emu.wait_for(
        lambda: next((r for r in emu.requests if r.status == 429), None), timeout=10
    )
    await asyncio.sleep(0.3)  # the pause is in the database
    asked = time.monotonic()
    # Eight more commands, spread by the round-robin front over both instances.
    for user in users[1:]:
        await emu.send_message(user, "/help")
    await emu.wait_for(
        lambda: {r.params.get("chat_id") for r in emu.requests if r.ok and r.method == "sendMessage"}
        >= set(users),
        timeout=15,
    )
    replies = [r.ts for r in emu.requests if r.ok and r.method == "sendMessage"]
    assert asked - refused.ts < 1.0
    # Nothing went out before the pause ended, from either instance.
    assert min(replies) >= refused.ts + 3.0 - 0.25, (refused.ts, sorted(replies))
    deliveries = [r for r in emu.requests if r.method == "setWebhook"]
    assert len(deliveries) >= 2  # both instances were up


def test_the_emulator_enforces_telegrams_documented_limits() -> None:
    """30 a second per bot, one a second per private chat (a burst of three tolerated),
    20 a minute per group: the next message is refused with the wait it needs."""
    now = [1000.0]
    limiter = RateLimiter(RateLimits(), lambda: now[0])
    assert [limiter.acquire(1, True) for _ in range(4)] == [0, 0, 0, 1]
    now[0] += 1.0
    assert limiter.acquire(1, True) == 0 and limiter.acquire(1, True) == 1
    assert [limiter.acquire(-100, False) for _ in range(20)] == [0] * 20
    assert limiter.acquire(-100, False) == 3  # 20 a minute: one every 3 s
    now[0] += 3.0
    assert limiter.acquire(-100, False) == 0
    limiter.reset()
    refused = [limiter.acquire(n, True) for n in range(2, 33)]
    assert refused.count(0) == 30 and refused[-1] == 1  # the 31st in one instant
