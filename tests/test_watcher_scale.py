"""The watcher at scale on a fake clock (issue 4): 10,000 pending invoices, gateway budgets
never exceeded, idle ticks that touch nothing; Telegram's limits; the awkward cases."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.domain.drafts import reference_for
from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice, OutboxEvent
from bot.domain.polling import PaymentPolicy
from bot.gateways.base import PaymentState, SessionStatus
from bot.gateways.budget import RequestBudget
from bot.gateways.mion import MionGateway
from bot.gateways.mixpay import MixPayGateway
from bot.services.payments import PaymentsService
from bot.services.watcher import Watcher
from bot.telegram.ratelimit import TelegramRateLimiter
from storage import open_repository
from storage.base import Repository
from testkit.mion import MionSimulator
from testkit.mixpay import DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator

ADMINS = frozenset({9001, 9002})
PENDING = 10_000
BUDGET = 50  # MIXPAY_REQUESTS_PER_MINUTE


class FakeClock:
    """One clock for everything: the service, the watcher, the budget and the simulator."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class World:
    clock: FakeClock
    repo: Repository
    sim: MixPaySimulator
    gateway: MixPayGateway
    payments: PaymentsService
    watcher: Watcher
    db_path: Path
    request_times: list[float]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = FakeClock()
    sim = MixPaySimulator(
        payee_id=DEFAULT_PAYEE_ID,
        clock=clock.now,
        rate_limit_time=clock.monotonic,
        rate_limit_per_minute=60,
    )
    await sim.start()
    times: list[float] = []

    async def record(_request: httpx.Request) -> None:
        times.append(clock.monotonic())

    # tmpfs: 20,000 fsync'ed seeding transactions would take minutes on a disk
    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    db_path = folder / "watcher.db"
    repo = await open_repository(f"sqlite:///{db_path}")
    client = httpx.AsyncClient(event_hooks={"request": [record]})
    gateway = MixPayGateway(
        client,
        payee_id=DEFAULT_PAYEE_ID,
        settlement_asset_id=USDT_ERC20,
        api_url=sim.url,
        budget=RequestBudget(BUDGET, clock=clock.monotonic, sleep=clock.sleep),
        sleep=clock.sleep,
        now=clock.now,
    )
    policy = PaymentPolicy(
        default_gateway="mixpay", admin_ids=ADMINS, invoice_expiry=timedelta(days=2)
    )
    payments = PaymentsService(repo, {"mixpay": gateway}, policy, clock=clock.now)
    watcher = Watcher(payments, repo, clock=clock.now, owner="w1")
    try:
        yield World(clock, repo, sim, gateway, payments, watcher, db_path, times)
    finally:
        await client.aclose()
        await repo.close()
        await sim.stop()
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


async def seed(world: World, count: int, due_in: timedelta) -> list[int]:
    """Pending MixPay invoices whose sessions exist at the simulator, due in `due_in`."""
    now = world.clock.now()
    ids = []
    for i in range(count):
        invoice = await world.repo.create_invoice(
            NewInvoice(
                public_token=f"tok{i:06d}x" * 2,
                merchant_id=1001,
                amount_minor=1000 + i,
                currency="USD",
                description="",
                gateway="mixpay",
                kind=InvoiceKind.CHECKOUT,
                created_at=now,
                expires_at=now + timedelta(days=2),
            )
        )
        session, _ = world.sim._create(
            {  # seed the fake's state without spending budget
                "payeeId": DEFAULT_PAYEE_ID,
                "orderId": reference_for(invoice),
                "quoteAmount": str((1000 + i) / 100),
                "quoteAssetId": "usd",
                "settlementAssetId": USDT_ERC20,
            },
            via="one_time_payment",
        )
        await world.repo.attach_session(
            invoice.id,
            gateway_session_id=session.trace_id,
            checkout_url=None,
            payment={},
            expires_at=None,
            next_poll_at=now + due_in,
            now=now,
        )
        ids.append(invoice.id)
    return ids


def data_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])


async def test_ten_thousand_pending_idle_tick_and_budget(world: World) -> None:
    await seed(world, PENDING, due_in=timedelta(hours=1))
    world.sim.clear_requests()
    watcher_conn = sqlite3.connect(world.db_path)
    before = int(watcher_conn.execute("PRAGMA data_version").fetchone()[0])

    # Idle: nothing due. No gateway request, no committed write to any row.
    for _ in range(20):
        assert await world.watcher.tick() == 0
        world.clock.t += 0.25
    assert world.sim.requests == [] and world.request_times == []
    assert int(watcher_conn.execute("PRAGMA data_version").fetchone()[0]) == before
    watcher_conn.close()

    # All 10,000 become due at once; ten fake minutes of ticks.
    world.clock.t += 3600
    start = world.clock.t
    checked = 0
    while world.clock.t < start + 600:
        checked += await world.watcher.tick()
        world.clock.t += 1.0
    times = world.request_times
    assert checked > 0 and len(times) == checked
    worst = max(sum(1 for t in times if w <= t < w + 60) for w in times)
    assert worst <= BUDGET, f"{worst} requests in one minute; budget {BUDGET}"
    assert world.sim.rate_limited_count == 0
    assert len(times) >= 0.7 * BUDGET * 10 * world.watcher.poll_share  # and the budget is used


async def test_a_paid_invoice_among_many_is_found_within_the_budget(world: World) -> None:
    ids = await seed(world, 300, due_in=timedelta(seconds=0))
    target = await world.repo.get_invoice(ids[-1])
    assert target is not None
    world.sim.pay(world.sim.session(reference_for(target)).id)
    start = world.clock.t
    while world.clock.t < start + 1200:
        await world.watcher.tick()
        world.clock.t += 1.0
        current = await world.repo.get_invoice(target.id)
        if current is not None and current.status is InvoiceStatus.PAID:
            break
    assert current is not None and current.status is InvoiceStatus.PAID
    # 300 invoices at 40 polls a minute (80 % of 50): the last is reached in ~7.5 minutes.
    assert world.clock.t - start <= 300 / (BUDGET * world.watcher.poll_share) * 60 + 30
    admin_rows = [i for i in await world.repo.outbox_items(target.id) if i.chat_id in ADMINS]
    assert len(admin_rows) == len(ADMINS)


async def test_payment_after_expiry_is_a_late_payment(world: World) -> None:
    [invoice_id] = await seed(world, 1, due_in=timedelta(seconds=0))
    invoice = await world.repo.get_invoice(invoice_id)
    assert invoice is not None
    expired = await world.payments.apply_status(
        invoice, SessionStatus(state=PaymentState.EXPIRED, raw_status="failed")
    )
    assert expired.status is InvoiceStatus.EXPIRED
    paid = await world.payments.apply_status(
        expired,
        SessionStatus(state=PaymentState.PAID, raw_status="success", paid_at=world.clock.now()),
    )
    assert paid.status is InvoiceStatus.PAID and paid.late
    events = [(i.event, i.chat_id) for i in await world.repo.outbox_items(invoice_id)]
    assert events.count((OutboxEvent.LATE_PAID, 9001)) == 1
    assert all(e is not OutboxEvent.PAID for e, _ in events)
    again = await world.payments.apply_status(
        paid, SessionStatus(state=PaymentState.PAID, raw_status="success")
    )
    assert again.status is InvoiceStatus.PAID
    assert len(await world.repo.outbox_items(invoice_id)) == len(events)


async def test_wrong_credentials_tell_the_admins_once(tmp_path: Path) -> None:
    sim = MionSimulator(api_key="right-key")
    await sim.start()
    repo = await open_repository(f"sqlite:///{tmp_path / 'auth.db'}")
    try:
        async with httpx.AsyncClient() as client:
            good = MionGateway(client, api_url=sim.url, api_key="right-key")
            bad = MionGateway(client, api_url=sim.url, api_key="wrong-key")
            clock = FakeClock()
            policy = PaymentPolicy(
                default_gateway="mion", admin_ids=ADMINS, merchant_ids=frozenset({1001})
            )
            creating = PaymentsService(repo, {"mion": good}, policy, clock=clock.now)
            from bot.domain.drafts import InvoiceDraft

            invoice = await creating.create_invoice(1001, InvoiceDraft("5", "Tea"))
            polling = PaymentsService(repo, {"mion": bad}, policy, clock=clock.now)
            for _ in range(5):
                invoice = await repo.get_invoice(invoice.id) or invoice
                await polling.check(invoice, owner="")
                clock.t += 10
            restarted = PaymentsService(repo, {"mion": bad}, policy, clock=clock.now)
            await restarted.check(invoice, owner="")
    finally:
        await sim.stop()
    alerts = [i for i in await repo.outbox_items() if i.event is OutboxEvent.GATEWAY_AUTH]
    await repo.close()
    assert sorted(i.chat_id for i in alerts) == sorted(ADMINS)
    assert "MION_API_KEY" in str(alerts[0].payload) or "key" in str(alerts[0].payload).lower()
    assert "wrong-key" not in str(alerts[0].payload)


def test_telegram_limiter_keeps_every_limit() -> None:
    now = [0.0]
    sent: list[tuple[float, int]] = []

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = TelegramRateLimiter(global_rate=25.0, monotonic=lambda: now[0], sleep=advancing_sleep)

    async def run() -> None:
        for chat in [1, 1, 1, -5, -5, 2, 3, 4, 5]:
            await limiter.acquire(chat)
            sent.append((now[0], chat))
        limiter.pause(10.0)
        await limiter.acquire(6)
        sent.append((now[0], 6))

    asyncio.run(run())
    times = {chat: [t for t, c in sent if c == chat] for chat in {c for _, c in sent}}
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times[1], times[1][1:], strict=False))
    assert times[-5][1] - times[-5][0] >= 3.0  # 20 a minute in a group
    ordered = [t for t, _ in sent]
    assert all(b - a >= 1 / 25 - 1e-9 for a, b in itertools.pairwise(ordered))
    assert sent[-1][0] - sent[-2][0] >= 10.0  # nothing before retry_after has passed
