"""The watcher: a JobQueue job that polls the invoices that are due, within budgets.

Each tick claims the due invoices (an indexed read of what is due, nothing else: a tick
with nothing due does no gateway request and touches no invoice row), paces them per
gateway so that no gateway's request budget is exceeded (invoices beyond the budget are
rescheduled to their slot without a request), and checks the rest concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.domain.models import Invoice
from bot.services.payments import PaymentsService
from storage.base import Repository

log = logging.getLogger(__name__)


class Pacer:
    """Per gateway: a token bucket (one poll per `interval`, bursts of at most `burst`) and
    a queue tail, so that when more invoices are due than the budget allows, every invoice
    waits its turn in one FIFO round instead of the recently polled ones cutting in."""

    def __init__(self, burst: float = 2.0) -> None:
        self.burst = burst
        self._tokens: dict[str, float] = {}
        self._at: dict[str, datetime] = {}
        self._tail: dict[str, datetime] = {}

    def enqueue(self, gateway: str, interval: timedelta, now: datetime) -> datetime:
        """The next free slot at the end of the gateway's queue (and book it)."""
        slot = max(self._tail.get(gateway, now), now) + interval
        self._tail[gateway] = slot
        return slot

    def take(self, gateway: str, interval: timedelta | None, now: datetime) -> bool:
        """True when a poll of `gateway` may go now (and counts it)."""
        if not interval:
            return True
        last = self._at.get(gateway, now)
        refill = (now - last) / interval
        tokens = min(self.burst, self._tokens.get(gateway, 1.0) + max(refill, 0.0))
        self._at[gateway] = now
        if tokens >= 1.0:
            self._tokens[gateway] = tokens - 1.0
            return True
        self._tokens[gateway] = tokens
        return False


class Watcher:
    def __init__(
        self,
        payments: PaymentsService,
        repo: Repository,
        *,
        clock: Callable[[], datetime],
        owner: str,
        batch: int = 200,
        concurrency: int = 32,
        lease: timedelta = timedelta(seconds=60),
        poll_share: float = 0.8,
        tick: timedelta = timedelta(0),
        fence: Callable[[], bool] = lambda: True,
    ) -> None:
        self.payments = payments
        self.repo = repo
        self.clock = clock
        self.owner = owner
        self.batch = batch
        self.lease = lease
        self.poll_share = poll_share  # of a gateway's budget; the rest is for creating
        # Claim what falls due before the middle of the next tick: a poll due just after a
        # tick would otherwise wait a whole tick (1.25 s instead of 1 s at a counter).
        self.lookahead = tick / 2
        # False while another instance may take this one for dead: then nothing is claimed.
        self.fence = fence
        self.pacer = Pacer()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._running = False
        self.started_at = clock()
        self.last_tick: datetime | None = None
        self.ticks = 0

    async def resume(self) -> int:
        """At start: make every pending invoice due now, so none is forgotten."""
        resumed, after = 0, 0
        now = self.clock()
        while True:
            page = await self.repo.pending_invoices(limit=500, after_id=after)
            if not page:
                return resumed
            for invoice in page:
                if invoice.next_poll_at is None or invoice.next_poll_at > now + timedelta(
                    minutes=10
                ):
                    await self.repo.reschedule(invoice.id, next_poll_at=now, owner="", now=now)
                    resumed += 1
            after = page[-1].id

    def alive(self, now: datetime, stale_after: timedelta = timedelta(seconds=30)) -> bool:
        """Ticked recently (or started recently and not yet due its first tick)."""
        return now - (self.last_tick or self.started_at) < stale_after

    async def tick(self, _context: object = None) -> int:
        """One pass: returns how many invoices were checked at their gateway."""
        self.last_tick = self.clock()
        self.ticks += 1
        self.payments.metrics.watcher_tick()
        if self._running:
            return 0
        self._running = True
        try:
            return await self._pass()
        finally:
            self._running = False

    async def _pass(self) -> int:
        checked = 0
        while self.fence():
            now = self.clock()
            due = await self.repo.claim_due_invoices(
                now=now + self.lookahead, owner=self.owner, lease=self.lease, limit=self.batch
            )
            if not due:
                return checked
            to_check: list[tuple[Invoice, datetime | None]] = []
            for invoice in due:
                interval = self._interval(invoice.gateway)
                if interval is None:
                    to_check.append((invoice, None))
                elif self.pacer.take(invoice.gateway, interval, now):
                    # Its next poll goes to the end of the queue: once per round each.
                    to_check.append((invoice, self.pacer.enqueue(invoice.gateway, interval, now)))
                else:
                    # Over the gateway's budget: wait in the queue, without a request.
                    slot = self.pacer.enqueue(invoice.gateway, interval, now)
                    await self.repo.reschedule(
                        invoice.id, next_poll_at=slot, owner=self.owner, now=now
                    )
            await asyncio.gather(*(self._check(invoice, after) for invoice, after in to_check))
            checked += len(to_check)
            if len(due) < self.batch:
                return checked
        return checked

    def _interval(self, gateway_name: str) -> timedelta | None:
        gateway = self.payments.gateways.get(gateway_name)
        interval = gateway.request_interval if gateway is not None else None
        return interval / self.poll_share if interval else None

    async def _check(self, invoice: Invoice, not_before: datetime | None) -> None:
        async with self._semaphore:
            try:
                await self.payments.check(invoice, owner=self.owner, not_before=not_before)
            except Exception:  # one invoice must never stop the others; its lease lapses
                log.exception("checking invoice %s failed", invoice.id)
