"""A gateway's callback is a hint: find the invoice, and re-read its status from the
gateway API, merged and paced so that replayed callbacks cost no extra gateway requests."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.domain.drafts import invoice_id_in, reference_for
from bot.domain.models import Invoice
from bot.domain.polling import CALLBACK_READS_PER_WINDOW
from bot.gateways.budget import BudgetDeferred, callback_requests
from bot.services.core import ServiceCore
from bot.services.sync import StatusSync


class CallbackService:
    """Callbacks of every gateway; remembers the re-reads in flight and recently begun."""

    def __init__(self, core: ServiceCore, sync: StatusSync) -> None:
        self.core = core
        self.repo = core.repo
        self.sync = sync
        # Callback re-reads: the one in flight per invoice, and when its last ones began.
        self._reads: dict[int, asyncio.Future[Invoice]] = {}
        self._read_at: dict[int, list[datetime]] = {}
        self._followup: set[int] = set()

    async def handle_callback(self, gateway_name: str, body: bytes, content_type: str) -> Invoice:
        """Find the invoice a callback names, re-read its status from the gateway API, and
        apply it. Raises ValueError (malformed), LookupError (unknown)."""
        gateway = self.core.gateways.get(gateway_name)
        if gateway is None:
            raise LookupError(gateway_name)
        try:
            hint = gateway.parse_callback(body, content_type)
        except RecursionError:  # JSON nested deeper than the parser goes: malformed
            raise ValueError("callback nested too deeply") from None
        invoice: Invoice | None = None
        if hint.session_id:
            invoice = await self.repo.get_invoice_by_session(gateway_name, hint.session_id)
        if invoice is None and hint.reference:
            invoice = await self._invoice_by_reference(hint.reference)
        if invoice is None or invoice.gateway != gateway_name:
            raise LookupError("unknown session")
        expected_payee = getattr(gateway, "payee_id", None)
        if hint.payee is not None and expected_payee is not None and hint.payee != expected_payee:
            raise LookupError("unknown payee")
        self.core.metrics.callback(gateway_name)
        return await self._refresh(invoice)

    async def _refresh(self, invoice: Invoice) -> Invoice:
        """Re-read an invoice for a callback, merged: callbacks arriving while a re-read is
        in flight share it; beyond CALLBACK_READS_PER_WINDOW re-reads within
        `callback_merge_window`, they bring the watcher's next poll forward to the end of
        that window instead (one read, however many callbacks). The read itself only uses
        spare gateway budget."""
        core = self.core
        running = self._reads.get(invoice.id)
        if running is not None:
            core.metrics.callback_merged(invoice.gateway)
            return await asyncio.shield(running)
        now = core.clock()
        window = core.policy.callback_merge_window
        recent = [at for at in self._read_at.get(invoice.id, ()) if now - at < window]
        if len(recent) >= CALLBACK_READS_PER_WINDOW:
            core.metrics.callback_merged(invoice.gateway)
            await self._poll_soon(invoice, recent[0] + window)
            return invoice
        self._forget_old_reads(now)
        self._read_at[invoice.id] = [*recent, now]
        self._followup.discard(invoice.id)
        read = asyncio.ensure_future(self._read(invoice))
        self._reads[invoice.id] = read
        read.add_done_callback(lambda done: self._read_done(invoice.id, done))
        return await asyncio.shield(read)

    def _read_done(self, invoice_id: int, done: asyncio.Future[Invoice]) -> None:
        self._reads.pop(invoice_id, None)
        if not done.cancelled():
            done.exception()  # retrieved: a caller that went away must not leave it unseen

    async def _read(self, invoice: Invoice) -> Invoice:
        with callback_requests():
            try:
                return await self.sync.refresh(invoice)
            except BudgetDeferred:
                self.core.metrics.callback_deferred(invoice.gateway)
                await self._poll_soon(invoice, self.core.clock())
                return invoice

    async def _poll_soon(self, invoice: Invoice, at: datetime) -> None:
        """Bring the watcher's next poll of an invoice it still watches (pending, or expired
        or cancelled and watched for a late payment) forward to `at`, once per merge window:
        it then reads the status paced like any poll."""
        if invoice.id in self._followup:
            return
        current = await self.repo.get_invoice(invoice.id)
        if current is None or current.next_poll_at is None or current.next_poll_at <= at:
            return
        self._followup.add(invoice.id)
        await self.repo.reschedule(invoice.id, next_poll_at=at, owner="", now=self.core.clock())

    def _forget_old_reads(self, now: datetime) -> None:
        if len(self._read_at) < 10_000:
            return
        window = self.core.policy.callback_merge_window
        for invoice_id, times in list(self._read_at.items()):
            if now - times[-1] >= window:
                del self._read_at[invoice_id]
                self._followup.discard(invoice_id)

    async def _invoice_by_reference(self, reference: str) -> Invoice | None:
        invoice_id = invoice_id_in(reference)
        if invoice_id is None:
            return None
        invoice = await self.repo.get_invoice(invoice_id)
        if invoice is None or reference_for(invoice) != reference:
            return None
        return invoice
