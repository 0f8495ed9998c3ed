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
    running = Cluster(tmp_path / "cluster", instances=2, chats=160)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
    running.emu.assert_no_violations()


async def test_two_instances_bursting_stay_inside_telegrams_limits(cluster: Cluster) -> None:
    await cluster.seed(160)
    await cluster.start_bots()
    result = await cluster.burst(timeout=60)
    assert result["finished"], result
    assert result["telegram_429"] == 0, result
    # One pace for both: together at most the one global rate (25 a second), not twice it.
    # (Paced apart, two instances reach about 35 a second and peaks of 48 in one second.)
    assert result["edits_per_second"] <= 30, result
    assert window_counts(cluster.paced_times(cluster.burst_started), 2.0) <= 2 * 30, result
    # The admin is told of each payment exactly once, in far fewer messages than payments.
    assert result["admin_payments_named"] == 160 and result["admin_payments_named_twice"] == 0
    assert result["admin_messages"] < 40, result


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
