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

from bot.payments import PaymentsService
from storage.base import Repository
from storage.models import Invoice

log = logging.getLogger(__name__)


class Pacer:
    """Books request slots per gateway at the gateway's minimum spacing."""

    def __init__(self) -> None:
        self._next: dict[str, datetime] = {}

    def slot(self, gateway: str, interval: timedelta | None, now: datetime) -> datetime:
        if not interval:
            return now
        at = max(now, self._next.get(gateway, now))
        self._next[gateway] = at + interval
        return at


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
    ) -> None:
        self.payments = payments
        self.repo = repo
        self.clock = clock
        self.owner = owner
        self.batch = batch
        self.lease = lease
        self.poll_share = poll_share  # of a gateway's budget; the rest is for creating
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
        self.payments.metrics.watcher_ticks += 1
        if self._running:
            return 0
        self._running = True
        try:
            return await self._pass()
        finally:
            self._running = False

    async def _pass(self) -> int:
        checked = 0
        while True:
            now = self.clock()
            due = await self.repo.claim_due_invoices(
                now=now, owner=self.owner, lease=self.lease, limit=self.batch
            )
            if not due:
                return checked
            to_check: list[Invoice] = []
            for invoice in due:
                slot = self.pacer.slot(invoice.gateway, self._interval(invoice.gateway), now)
                if slot > now + timedelta(milliseconds=500):
                    await self.repo.reschedule(
                        invoice.id, next_poll_at=slot, owner=self.owner, now=now
                    )
                else:
                    to_check.append(invoice)
            await asyncio.gather(*(self._check(invoice) for invoice in to_check))
            checked += len(to_check)
            if len(due) < self.batch:
                return checked

    def _interval(self, gateway_name: str) -> timedelta | None:
        gateway = self.payments.gateways.get(gateway_name)
        interval = gateway.request_interval if gateway is not None else None
        return interval / self.poll_share if interval else None

    async def _check(self, invoice: Invoice) -> None:
        async with self._semaphore:
            try:
                await self.payments.check(invoice, owner=self.owner)
            except Exception:  # one invoice must never stop the others; its lease lapses
                log.exception("checking invoice %s failed", invoice.id)
