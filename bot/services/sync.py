"""Keeping statuses in sync: poll a claimed invoice, apply what the gateway says, renew
an expiring payment attempt, and write every transition together with its notices."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.domain import notices
from bot.domain.drafts import reference_for
from bot.domain.matching import is_short, matches
from bot.domain.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    OutboxEvent,
    Transition,
    allowed_sources,
)
from bot.domain.polling import UNFINISHED_CREATION_AFTER, poll_delay, renewal_due
from bot.failpoints import crash_point
from bot.gateways.base import (
    GatewayAuthError,
    GatewayComplianceBlocked,
    GatewayError,
    GatewayNotFound,
    PaymentState,
    SessionStatus,
)
from bot.gateways.budget import BudgetDeferred
from bot.services.alerts import Alerts
from bot.services.core import ServiceCore, outcome
from bot.services.ledger import LedgerBook

log = logging.getLogger(__name__)


class StatusSync:
    """Moves invoices as their gateways say, whichever path (poll, callback, button) asks."""

    def __init__(self, core: ServiceCore, alerts: Alerts) -> None:
        self.core = core
        self.repo = core.repo
        self.alerts = alerts
        self.ledger = LedgerBook(core.repo)

    # -- polling --------------------------------------------------------------------------
    async def check(
        self, invoice: Invoice, owner: str = "", not_before: datetime | None = None
    ) -> Invoice:
        """Poll one claimed invoice: renew its attempt if due, read and apply its status, and
        schedule its next poll. GatewayErrors are handled here (backoff, auth alert)."""
        core = self.core
        gateway = core.gateways.get(invoice.gateway)
        if invoice.gateway_session_id is None and invoice.status is InvoiceStatus.PENDING:
            return await self._unfinished_creation(invoice, owner)
        if gateway is None or invoice.gateway_session_id is None:
            await self.repo.reschedule(invoice.id, next_poll_at=None, owner=owner, now=core.clock())
            return invoice
        try:
            status = await gateway.get_status(invoice.gateway_session_id, reference_for(invoice))
        except GatewayError as exc:
            core.metrics.gateway_request(invoice.gateway, "status", outcome(exc))
            await self._poll_failed(invoice, exc, owner)
            return invoice
        core.metrics.gateway_request(invoice.gateway, "status", "ok")
        self.alerts.auth_works(invoice.gateway)
        if invoice.not_found_count:
            # Found again: only consecutive "no such session" answers count.
            await self.repo.record_not_found(invoice.id, count=0, since=None)
        updated = await self.apply_status(invoice, status)
        if updated.status is InvoiceStatus.PENDING and updated.kind is not InvoiceKind.CHECKOUT:
            updated = await self.renew_if_due(updated)
        if updated.status is invoice.status or updated.status is InvoiceStatus.PENDING:
            next_at = core.next_poll_at(updated)
            if next_at is not None and not_before is not None:
                next_at = max(next_at, not_before)
            await self.repo.reschedule(
                updated.id, next_poll_at=next_at, owner=owner, now=core.clock()
            )
        return updated

    async def refresh(self, invoice: Invoice) -> Invoice:
        """Re-read one invoice's status now (a callback, a button press); no rescheduling
        unless it moved."""
        core = self.core
        gateway = core.gateways.get(invoice.gateway)
        if gateway is None or invoice.gateway_session_id is None:
            return invoice
        try:
            status = await gateway.get_status(invoice.gateway_session_id, reference_for(invoice))
        except GatewayError as exc:
            if not isinstance(exc, BudgetDeferred):  # deferred: nothing was sent
                core.metrics.gateway_request(invoice.gateway, "status", outcome(exc))
            raise
        core.metrics.gateway_request(invoice.gateway, "status", "ok")
        return await self.apply_status(invoice, status)

    async def _unfinished_creation(self, invoice: Invoice, owner: str) -> Invoice:
        """A pending invoice without a gateway session: its creation was cut short after the
        invoice was stored (storage failed, or the process died, around the gateway call).
        Nobody was shown a link, so nobody can pay it: once no creation can still be under
        way, it is failed (quietly: the merchant was told at the time) instead of staying
        open for ever."""
        now = self.core.clock()
        if now - invoice.created_at < UNFINISHED_CREATION_AFTER:
            await self.repo.reschedule(
                invoice.id,
                next_poll_at=invoice.created_at + UNFINISHED_CREATION_AFTER,
                owner=owner,
                now=now,
            )
            return invoice
        log.warning("invoice %s was never attached to a gateway session: failed", invoice.id)
        failed = await self.repo.transition(
            Transition(
                invoice_id=invoice.id,
                expected=frozenset({InvoiceStatus.PENDING}),
                new_status=InvoiceStatus.FAILED,
                at=now,
                raw_status="not_created",
                failure_reason="the invoice could not be created",
            )
        )
        return failed or await self.repo.get_invoice(invoice.id) or invoice

    async def _poll_failed(self, invoice: Invoice, exc: GatewayError, owner: str) -> None:
        log.warning("status of invoice %s at %s failed: %s", invoice.id, invoice.gateway, exc)
        core = self.core
        if isinstance(exc, GatewayAuthError):
            await self.alerts.auth_failed(invoice.gateway, exc)
        now = core.clock()
        if isinstance(exc, GatewayNotFound) and await self._gone(invoice, exc, now):
            return
        if invoice.status is not InvoiceStatus.PENDING:
            # Watched for a late payment: keep the slow pace, and stop when the watch ends.
            await self.repo.reschedule(
                invoice.id, next_poll_at=core.next_poll_at(invoice), owner=owner, now=now
            )
            return
        delay = poll_delay(core.policy, invoice, core.callbacks_on(invoice)) * 2
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            delay = max(delay, timedelta(seconds=float(retry_after)))
        await self.repo.reschedule(invoice.id, next_poll_at=now + delay, owner=owner, now=now)

    async def _gone(self, invoice: Invoice, exc: GatewayNotFound, now: datetime) -> bool:
        """Count one more consecutive "no such session" answer; give a pending session up
        (failed, and still watched for a late payment) only after several of them spread
        over minutes. True when the invoice was moved."""
        policy = self.core.policy
        count = invoice.not_found_count + 1
        since = invoice.not_found_since or now
        await self.repo.record_not_found(invoice.id, count=count, since=since)
        if (
            invoice.status is not InvoiceStatus.PENDING
            or count < policy.not_found_give_up_answers
            or now - since < policy.not_found_give_up_after
        ):
            return False
        gone = SessionStatus(
            state=PaymentState.FAILED,
            raw_status="not_found",
            failure_reason=exc.user_message[:300],
        )
        moved = await self.move(replace(invoice, not_found_count=count), InvoiceStatus.FAILED, gone)
        return moved.status is not InvoiceStatus.PENDING

    # -- renewing a Lightning attempt -----------------------------------------------------
    async def renew_if_due(self, invoice: Invoice) -> Invoice:
        """Request a new payment attempt shortly before the current one expires."""
        core = self.core
        gateway = core.gateways.get(invoice.gateway)
        if gateway is None or not gateway.supports_renewal or invoice.gateway_session_id is None:
            return invoice
        now = core.clock()
        if not renewal_due(core.policy, invoice, now):
            return invoice
        try:
            session = await gateway.renew_payment(invoice.gateway_session_id, invoice.payment)
        except GatewayComplianceBlocked as exc:
            core.metrics.gateway_request(invoice.gateway, "renew", outcome(exc))
            return await self._compliance_blocked(invoice, exc)
        except GatewayError as exc:
            core.metrics.gateway_request(invoice.gateway, "renew", outcome(exc))
            log.warning("renewing the attempt of invoice %s failed: %s", invoice.id, exc)
            return invoice
        core.metrics.gateway_request(invoice.gateway, "renew", "ok")
        # What already arrived of an underpayment stays shown across renewals.
        kept: dict[str, Any] = {
            k: invoice.payment[k] for k in ("received", "due") if k in invoice.payment
        }
        updated = await self.repo.update_payment(
            invoice.id, {**kept, **session.payment}, core.clock()
        )
        token = hashlib.sha256(
            str(session.payment.get("ln_invoice") or session.payment.get("address") or now).encode()
        ).hexdigest()[:12]
        messages = await self.repo.messages_for(invoice.id)
        await core.enqueue(
            notices.edits(updated, OutboxEvent.RENEWED, suffix=token, messages=messages)
        )
        return updated

    async def _compliance_blocked(
        self, invoice: Invoice, exc: GatewayComplianceBlocked
    ) -> Invoice:
        """The gateway blocks new payment attempts until the customer gives more details:
        stop renewing (not every tick) and tell the merchant once which details are missing."""
        log.warning("invoice %s: %s", invoice.id, exc)
        fields = list(exc.missing_fields)
        payment = {**invoice.payment, "compliance_blocked": True, "missing_fields": fields}
        updated = await self.repo.update_payment(invoice.id, payment, self.core.clock())
        messages = await self.repo.messages_for(invoice.id)
        await self.core.enqueue(
            [
                notices.compliance_notice(invoice, fields),
                *notices.edits(
                    updated, OutboxEvent.RENEWED, suffix="compliance", messages=messages
                ),
            ]
        )
        return updated

    # -- applying a status ----------------------------------------------------------------
    async def apply_status(self, invoice: Invoice, status: SessionStatus) -> Invoice:
        """Move the invoice as the gateway's status says; notify through the outbox."""
        core = self.core
        now = core.clock()
        state = status.state
        expected_payee = getattr(core.gateways.get(invoice.gateway), "payee_id", None)
        if state is PaymentState.PAID and not matches(invoice, status, expected_payee):
            await self.alerts.mismatch(invoice, status)
            return invoice
        if state is PaymentState.PAID and not status.strict_match and is_short(invoice, status):
            state = PaymentState.UNDERPAID
        if state is PaymentState.PAID:
            late = invoice.status is not InvoiceStatus.PENDING
            return await self.move(
                invoice, InvoiceStatus.PAID, status, late=late, paid_at=status.paid_at or now
            )
        if state is PaymentState.UNDERPAID:
            return await self._underpaid(invoice, status)
        if invoice.status is not InvoiceStatus.PENDING:
            if state is PaymentState.FAILED and status.refund_due:
                await self._refund_due_after_close(invoice, status)
            return invoice
        if state is PaymentState.EXPIRED:
            return await self.move(invoice, InvoiceStatus.EXPIRED, status)
        if state is PaymentState.FAILED:
            return await self.move(invoice, InvoiceStatus.FAILED, status)
        if state is PaymentState.CANCELLED:
            return await self.move(invoice, InvoiceStatus.CANCELLED, status)
        if (
            not status.processing
            and invoice.expires_at is not None
            and now > invoice.expires_at + core.policy.expiry_grace
        ):
            # The gateway still says pending long after our expiry: stop asking the customer
            # (a payment that still lands later is reported as late). Not while the gateway
            # says it is still at work (MixPay confirming, auditing): it ends those itself.
            return await self.move(invoice, InvoiceStatus.EXPIRED, status)
        if status.raw_status != invoice.raw_status:
            await self.repo.record_observation(invoice.id, raw_status=status.raw_status, now=now)
        return invoice

    async def move(
        self,
        invoice: Invoice,
        new_status: InvoiceStatus,
        status: SessionStatus,
        *,
        late: bool = False,
        paid_at: datetime | None = None,
    ) -> Invoice:
        """Compare-and-set an invoice to `new_status`, its notices written in the same
        transaction; returns the invoice as it is after (moved, or as someone else left it)."""
        core = self.core
        # Compare-and-set on the exact status the notices are written for: a payment that
        # races a cancel (or an expiry) must be told as late, naming what it was.
        for _ in range(len(InvoiceStatus)):
            event = notices.event_for_move(new_status, late)
            messages = await self.repo.messages_for(invoice.id)
            now = core.clock()
            moved_preview = replace(invoice, status=new_status)
            outbox = [
                *notices.edits(moved_preview, event, messages=messages),
                *notices.notices(
                    moved_preview,
                    event,
                    messages,
                    status,
                    core.policy.admin_ids,
                    previous=invoice.status,
                ),
            ]
            entry = None
            if new_status is InvoiceStatus.PAID:
                entry = await self.ledger.entry_for(invoice, status, paid_in_full=True, now=now)
            crash_point("before_transition")
            updated = await self.repo.transition(
                Transition(
                    invoice_id=invoice.id,
                    expected=frozenset({invoice.status}) & allowed_sources(new_status),
                    new_status=new_status,
                    at=now,
                    raw_status=status.raw_status,
                    paid_at=paid_at,
                    failure_reason=status.failure_reason,
                    late=late,
                    outbox=tuple(outbox),
                    ledger=entry,
                )
            )
            crash_point("after_transition")
            if updated is not None:
                break
            current = await self.repo.get_invoice(invoice.id)
            if current is None or current.status not in allowed_sources(new_status):
                return current or invoice  # someone else moved it first: they notified
            invoice = current  # it moved under us (e.g. cancelled): decide again from it
            if new_status is InvoiceStatus.PAID:
                late = current.status is not InvoiceStatus.PENDING
        else:  # pragma: no cover - statuses only move forward, so this cannot loop on
            return await self.repo.get_invoice(invoice.id) or invoice
        if new_status is InvoiceStatus.PAID:
            core.metrics.paid(updated)
        # A message stored while this transition was being written saw the old status
        # (InvoiceService.remember_message) and was not among `messages`: catch it up now
        # that the new one is visible (the same dedupe key: never two edits).
        shown = {m.id for m in messages}
        missed = [m for m in await self.repo.messages_for(updated.id) if m.id not in shown]
        if missed:
            await core.enqueue([notices.catch_up_edit(updated, m) for m in missed])
        core.on_outbox()
        next_at = core.next_poll_at(updated)
        if next_at is not None:
            await self.repo.reschedule(updated.id, next_poll_at=next_at, owner="", now=now)
        return updated

    async def _underpaid(self, invoice: Invoice, status: SessionStatus) -> Invoice:
        if invoice.status is InvoiceStatus.PAID:
            return invoice
        core = self.core
        await self.ledger.book_underpayment(invoice, status, core.clock())  # more may arrive
        if invoice.underpaid:
            return invoice
        if status.received:
            # Shown on the invoice itself: what arrived, and what was due.
            shown = {"received": status.received, "due": status.due}
            payment = {**invoice.payment, **{k: v for k, v in shown.items() if v}}
            await self.repo.update_payment(invoice.id, payment, core.clock())
        await self.repo.record_observation(
            invoice.id, raw_status=status.raw_status, now=core.clock(), underpaid=True
        )
        updated = await self.repo.get_invoice(invoice.id) or invoice
        messages = await self.repo.messages_for(invoice.id)
        await core.enqueue(
            [
                *notices.edits(updated, OutboxEvent.UNDERPAID, messages=messages),
                *notices.notices(
                    updated, OutboxEvent.UNDERPAID, messages, status, core.policy.admin_ids
                ),
            ]
        )
        return updated

    async def _refund_due_after_close(self, invoice: Invoice, status: SessionStatus) -> None:
        """Money arrived for an invoice we had already closed (expired, cancelled) and the
        gateway failed the payment: the merchant and admins must refund it."""
        messages = await self.repo.messages_for(invoice.id)
        rows = notices.notices(
            invoice, OutboxEvent.FAILED, messages, status, self.core.policy.admin_ids
        )
        await self.core.enqueue([replace(r, dedupe_key=f"{r.dedupe_key}:refund") for r in rows])
