"""The payment service: create invoices, apply gateway statuses, decide what to notify.

Imports no Telegram and no HTTP: it speaks to storage (the repository) and to gateways only
through their adapter interface, and describes notifications as outbox rows that the
notifier turns into Telegram messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.failpoints import crash_point
from bot.gateways.base import (
    Gateway,
    GatewayAuthError,
    GatewayComplianceBlocked,
    GatewayError,
    GatewayNotFound,
    PaymentState,
    SessionRequest,
    SessionStatus,
)
from bot.gateways.budget import BudgetDeferred, callback_requests
from bot.ids import parse_invoice_id
from bot.metrics import Metrics
from bot.money import AmountError, is_currency_code, parse_amount
from bot.text import strip_controls
from storage.base import Repository
from storage.models import (
    Invoice,
    InvoiceKind,
    InvoiceMessage,
    InvoiceStatus,
    MessageRole,
    NewInvoice,
    NewOutbox,
    OutboxEvent,
    OutboxKind,
    Transition,
    allowed_sources,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Which gateways serve a kind of payment, in order of preference.
KIND_GATEWAYS: dict[InvoiceKind, tuple[str, ...]] = {
    InvoiceKind.LIGHTNING: ("mion", "sandbox"),
    InvoiceKind.ONCHAIN: ("mixpay",),
}
# Two: a genuine callback right after a forged one (a status change) is still read at once.
CALLBACK_READS_PER_WINDOW = 2
# Longer than any creation can take (gateway timeout x retries): a pending invoice still
# without a gateway session after this was cut short and is failed by the watcher.
UNFINISHED_CREATION_AFTER = timedelta(minutes=10)


class InputError(ValueError):
    """A merchant's request cannot be done as written; `code` and `params` make the reply."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


class NotAllowed(PermissionError):
    """The user may not do this (not a merchant, not their invoice)."""


@dataclass(frozen=True, slots=True)
class PaymentPolicy:
    """The settings the service works by (built from Settings by the wiring)."""

    default_gateway: str
    default_currency: str = "EUR"
    max_amount: Decimal = Decimal("1000000")
    max_description_length: int = 200
    invoice_expiry: timedelta = timedelta(hours=1)
    pos_expiry: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(seconds=5)
    poll_max_interval: timedelta = timedelta(seconds=60)
    pos_poll_interval: timedelta = timedelta(seconds=1)
    callback_poll_interval: timedelta = timedelta(seconds=120)
    late_payment_watch: timedelta = timedelta(days=1)
    # A session is given up only after this many consecutive "no such session" answers
    # spread over at least `not_found_give_up_after` (a gateway's 404 can be transient).
    not_found_give_up_answers: int = 5
    not_found_give_up_after: timedelta = timedelta(minutes=5)
    renew_before: timedelta = timedelta(seconds=15)
    expiry_grace: timedelta = timedelta(seconds=30)
    admin_ids: frozenset[int] = frozenset()
    merchant_ids: frozenset[int] = frozenset()
    gateway_expiry: Mapping[str, timedelta] = field(default_factory=dict)
    # Callback re-reads of one invoice: at most CALLBACK_READS_PER_WINDOW within this long;
    # callbacks beyond are merged into one later read by the watcher (anyone can replay a
    # callback, and each would be a gateway request).
    callback_merge_window: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """What a merchant asked for, before validation."""

    amount_text: str
    description: str = ""
    currency: str | None = None
    gateway: str | None = None
    kind: InvoiceKind = InvoiceKind.CHECKOUT


def parse_invoice_args(
    args: Sequence[str], kind: InvoiceKind = InvoiceKind.CHECKOUT
) -> InvoiceDraft:
    """`12.50 Coffee`, `12 USD Lamp`, `EUR 12`: amount, optional currency, description."""
    words = [w for w in args if w]
    if not words:
        raise InputError("amount_missing")
    currency: str | None = None
    if len(words) > 1 and is_currency_code(words[0]) and not is_currency_code(words[1]):
        currency, words = words[0].upper(), [words[1], *words[2:]]
    amount, rest = words[0], words[1:]
    if rest and is_currency_code(rest[0]):
        currency, rest = rest[0].upper(), rest[1:]
    return InvoiceDraft(
        amount_text=amount, description=" ".join(rest), currency=currency, kind=kind
    )


def new_public_token() -> str:
    """An unguessable token for customer links (128 bits; letters, digits, - and _)."""
    return secrets.token_urlsafe(16)


def reference_for(invoice: Invoice) -> str:
    """Our invoice id as gateways see it: `tb-<id>-<8 hex>`; the suffix keeps references
    unique when a database is reset, without revealing the public token."""
    suffix = hashlib.sha256(invoice.public_token.encode()).hexdigest()[:8]
    return f"tb-{invoice.id}-{suffix}"


class PaymentsService:
    """Everything that happens to an invoice, whichever path (command, poll, callback) asks."""

    def __init__(
        self,
        repo: Repository,
        gateways: Mapping[str, Gateway],
        policy: PaymentPolicy,
        *,
        clock: Clock,
        callback_url: Callable[[str], str | None] | None = None,
        on_outbox: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.repo = repo
        self.gateways = dict(gateways)
        self.policy = policy
        self.clock = clock
        self._callback_url = callback_url or (lambda _gateway: None)
        self._on_outbox = on_outbox or (lambda: None)
        self.metrics = metrics or Metrics()
        self._auth_alerted: set[str] = set()
        # Callback re-reads: the one in flight per invoice, and when its last ones began.
        self._callback_reads: dict[int, asyncio.Future[Invoice]] = {}
        self._callback_read_at: dict[int, list[datetime]] = {}
        self._callback_followup: set[int] = set()

    # -- roles ----------------------------------------------------------------------------
    def is_admin(self, user_id: int) -> bool:
        return user_id in self.policy.admin_ids

    async def is_merchant(self, user_id: int) -> bool:
        return (
            user_id in self.policy.admin_ids
            or user_id in self.policy.merchant_ids
            or await self.repo.is_merchant(user_id)
        )

    async def require_merchant(self, user_id: int) -> None:
        if not await self.is_merchant(user_id):
            raise NotAllowed("not a merchant")

    # -- gateways -------------------------------------------------------------------------
    def gateway(self, name: str) -> Gateway:
        return self.gateways[name]

    async def merchant_gateway(self, user_id: int) -> str:
        prefs = await self.repo.get_prefs(user_id)
        if prefs.gateway and prefs.gateway in self.gateways:
            return prefs.gateway
        return self.policy.default_gateway

    def gateway_for_kind(self, kind: InvoiceKind) -> str | None:
        """The gateway for /pos (Mion, else the sandbox's Lightning) or /onchain (MixPay
        with a payment asset); None when no configured gateway can take that kind."""
        for name in KIND_GATEWAYS.get(kind, tuple(self.gateways)):
            gw = self.gateways.get(name)
            if gw is not None and kind in gw.kinds:
                return name
        return None

    # -- creating -------------------------------------------------------------------------
    def validate(self, draft: InvoiceDraft, gateway_name: str) -> tuple[int, str, str, Gateway]:
        """Check a draft without side effects: (amount_minor, currency, description, gateway)."""
        gateway = self.gateways.get(gateway_name)
        if gateway is None:
            raise InputError(
                "gateway_unavailable", gateway=gateway_name, available=", ".join(self.gateways)
            )
        if draft.kind not in gateway.kinds:
            raise InputError("kind_unsupported", gateway=gateway.title)
        currency = (draft.currency or self._default_currency_for(gateway)).upper()
        if not gateway.accepts_currency(currency):
            raise InputError(
                "currency_unsupported",
                gateway=gateway.title,
                currency=currency,
                accepted=", ".join(gateway.currencies),
            )
        try:
            amount = parse_amount(draft.amount_text, currency, self.policy.max_amount)
        except AmountError as exc:
            raise InputError(f"amount_{exc.code}", **exc.params) from None
        description = strip_controls(draft.description)  # no NUL or terminal escapes stored
        if len(description) > self.policy.max_description_length:
            raise InputError("description_too_long", maximum=self.policy.max_description_length)
        return amount, currency, description, gateway

    def _default_currency_for(self, gateway: Gateway) -> str:
        if gateway.accepts_currency(self.policy.default_currency):
            return self.policy.default_currency
        return gateway.currencies[0] if gateway.currencies else self.policy.default_currency

    async def create_invoice(self, user_id: int, draft: InvoiceDraft) -> Invoice:
        """Validate, store a pending invoice, create its gateway session, and return it.

        Raises NotAllowed, InputError (nothing stored, nothing sent to a gateway), or
        GatewayError (the invoice is stored as failed with the reason).
        """
        await self.require_merchant(user_id)
        gateway_name = draft.gateway or await self.merchant_gateway(user_id)
        amount, currency, description, gateway = self.validate(draft, gateway_name)
        now = self.clock()
        expiry = self._expiry_for(gateway_name, draft.kind)
        invoice = await self.repo.create_invoice(
            NewInvoice(
                public_token=new_public_token(),
                merchant_id=user_id,
                amount_minor=amount,
                currency=currency,
                description=description,
                gateway=gateway_name,
                kind=draft.kind,
                created_at=now,
                expires_at=now + expiry,
                next_poll_at=now + UNFINISHED_CREATION_AFTER,
            )
        )
        request = SessionRequest(
            reference=reference_for(invoice),
            amount_minor=amount,
            currency=currency,
            description=description,
            kind=draft.kind,
            expires_in=expiry,
            callback_url=self._callback_url(gateway_name),
        )
        try:
            session = await gateway.create_session(request)
        except GatewayError as exc:
            self.metrics.gateway_request(gateway_name, "create", _outcome(exc))
            await self._fail_creation(invoice, exc)
            raise
        self.metrics.gateway_request(gateway_name, "create", "ok")
        invoice = await self.repo.attach_session(
            invoice.id,
            gateway_session_id=session.session_id,
            checkout_url=session.checkout_url,
            payment=dict(session.payment),
            expires_at=session.expires_at or invoice.expires_at,
            next_poll_at=now + self._first_delay(draft.kind, gateway),
            now=self.clock(),
        )
        await self._register_callback(gateway, invoice)
        return invoice

    def _expiry_for(self, gateway_name: str, kind: InvoiceKind) -> timedelta:
        if kind is InvoiceKind.LIGHTNING:
            return self.policy.pos_expiry
        return self.policy.gateway_expiry.get(gateway_name, self.policy.invoice_expiry)

    async def _fail_creation(self, invoice: Invoice, exc: GatewayError) -> None:
        if isinstance(exc, GatewayAuthError):
            await self._alert_auth(invoice.gateway, exc)
        await self.repo.transition(
            Transition(
                invoice_id=invoice.id,
                expected=frozenset({InvoiceStatus.PENDING}),
                new_status=InvoiceStatus.FAILED,
                at=self.clock(),
                raw_status="create_failed",
                failure_reason=exc.user_message[:500],
            )
        )

    async def _register_callback(self, gateway: Gateway, invoice: Invoice) -> None:
        url = self._callback_url(invoice.gateway)
        if not (url and gateway.supports_callbacks and invoice.gateway_session_id):
            return
        try:
            await gateway.register_callback(invoice.gateway_session_id, url)
        except GatewayError as exc:
            # Polling still watches the invoice; a lost webhook only costs latency.
            log.warning("webhook registration failed for invoice %s: %s", invoice.id, exc)

    def callbacks_on(self, invoice: Invoice) -> bool:
        gateway = self.gateways.get(invoice.gateway)
        return bool(gateway and gateway.supports_callbacks and self._callback_url(invoice.gateway))

    # -- messages -------------------------------------------------------------------------
    async def remember_message(
        self, message: InvoiceMessage, shown: InvoiceStatus
    ) -> InvoiceMessage:
        """Store a message that shows an invoice; if the invoice moved on while the message
        was being sent, queue an edit so it does not stay stale."""
        stored = await self.repo.add_message(message)
        current = await self.repo.get_invoice(message.invoice_id)
        if current is not None and current.status != shown and stored.id is not None:
            await self._enqueue(
                [
                    NewOutbox(
                        kind=OutboxKind.EDIT,
                        event=_event_for(current),
                        invoice_id=current.id,
                        chat_id=stored.chat_id,
                        message_row_id=stored.id,
                        dedupe_key=f"i{current.id}:catchup:{current.status}:m{stored.id}",
                    )
                ]
            )
        return stored

    async def invoice_for_customer(self, public_token: str) -> Invoice | None:
        if not public_token or len(public_token) > 64:
            return None
        return await self.repo.get_invoice_by_token(public_token)

    async def invoice_of(self, user_id: int, invoice_id: int) -> Invoice:
        """A merchant's own invoice (admins may see any); NotAllowed otherwise."""
        invoice = await self.repo.get_invoice(invoice_id)
        if invoice is None or (invoice.merchant_id != user_id and not self.is_admin(user_id)):
            raise NotAllowed("not your invoice")
        return invoice

    # -- watching -------------------------------------------------------------------------
    async def check(
        self, invoice: Invoice, owner: str = "", not_before: datetime | None = None
    ) -> Invoice:
        """Poll one claimed invoice: renew its attempt if due, read and apply its status, and
        schedule its next poll. GatewayErrors are handled here (backoff, auth alert)."""
        gateway = self.gateways.get(invoice.gateway)
        if invoice.gateway_session_id is None and invoice.status is InvoiceStatus.PENDING:
            return await self._unfinished_creation(invoice, owner)
        if gateway is None or invoice.gateway_session_id is None:
            await self.repo.reschedule(invoice.id, next_poll_at=None, owner=owner, now=self.clock())
            return invoice
        try:
            status = await gateway.get_status(invoice.gateway_session_id, reference_for(invoice))
        except GatewayError as exc:
            self.metrics.gateway_request(invoice.gateway, "status", _outcome(exc))
            await self._poll_failed(invoice, exc, owner)
            return invoice
        self.metrics.gateway_request(invoice.gateway, "status", "ok")
        self._auth_alerted.discard(invoice.gateway)
        if invoice.not_found_count:
            # Found again: only consecutive "no such session" answers count.
            await self.repo.record_not_found(invoice.id, count=0, since=None)
        updated = await self.apply_status(invoice, status)
        if updated.status is InvoiceStatus.PENDING and updated.kind is not InvoiceKind.CHECKOUT:
            updated = await self.renew_if_due(updated)
        if updated.status is invoice.status or updated.status is InvoiceStatus.PENDING:
            next_at = self.next_poll_at(updated)
            if next_at is not None and not_before is not None:
                next_at = max(next_at, not_before)
            await self.repo.reschedule(
                updated.id, next_poll_at=next_at, owner=owner, now=self.clock()
            )
        return updated

    async def _unfinished_creation(self, invoice: Invoice, owner: str) -> Invoice:
        """A pending invoice without a gateway session: its creation was cut short after the
        invoice was stored (storage failed, or the process died, around the gateway call).
        Nobody was shown a link, so nobody can pay it: once no creation can still be under
        way, it is failed (quietly: the merchant was told at the time) instead of staying
        open for ever."""
        now = self.clock()
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
        if isinstance(exc, GatewayAuthError):
            await self._alert_auth(invoice.gateway, exc)
        now = self.clock()
        if isinstance(exc, GatewayNotFound) and await self._gone(invoice, exc, now):
            return
        if invoice.status is not InvoiceStatus.PENDING:
            # Watched for a late payment: keep the slow pace, and stop when the watch ends.
            await self.repo.reschedule(
                invoice.id, next_poll_at=self.next_poll_at(invoice), owner=owner, now=now
            )
            return
        delay = self._delay(invoice) * 2
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            delay = max(delay, timedelta(seconds=float(retry_after)))
        await self.repo.reschedule(invoice.id, next_poll_at=now + delay, owner=owner, now=now)

    async def _gone(self, invoice: Invoice, exc: GatewayNotFound, now: datetime) -> bool:
        """Count one more consecutive "no such session" answer; give a pending session up
        (failed, and still watched for a late payment) only after several of them spread
        over minutes. True when the invoice was moved."""
        count = invoice.not_found_count + 1
        since = invoice.not_found_since or now
        await self.repo.record_not_found(invoice.id, count=count, since=since)
        if (
            invoice.status is not InvoiceStatus.PENDING
            or count < self.policy.not_found_give_up_answers
            or now - since < self.policy.not_found_give_up_after
        ):
            return False
        gone = SessionStatus(
            state=PaymentState.FAILED,
            raw_status="not_found",
            failure_reason=exc.user_message[:300],
        )
        moved = await self._move(replace(invoice, not_found_count=count), InvoiceStatus.FAILED, gone)
        return moved.status is not InvoiceStatus.PENDING

    async def _alert_mismatch(self, invoice: Invoice, status: SessionStatus) -> None:
        """Tell each admin once that a gateway reported a payment that does not match the
        invoice (payee, currency or amount): it was not booked."""
        got = {
            "payee": status.payee or "—",
            "currency": status.currency or "—",
            "amount_minor": status.amount_minor,
            "raw_status": status.raw_status,
        }
        await self._enqueue(
            [
                NewOutbox(
                    kind=OutboxKind.ADMIN,
                    event=OutboxEvent.MISMATCH,
                    invoice_id=invoice.id,
                    chat_id=admin,
                    payload=got,
                    dedupe_key=f"i{invoice.id}:mismatch:admin:{admin}",
                )
                for admin in sorted(self.policy.admin_ids)
            ]
        )

    async def _refund_due_after_close(self, invoice: Invoice, status: SessionStatus) -> None:
        """Money arrived for an invoice we had already closed (expired, cancelled) and the
        gateway failed the payment: the merchant and admins must refund it."""
        messages = await self.repo.messages_for(invoice.id)
        rows = self._notices(invoice, OutboxEvent.FAILED, messages, status)
        await self._enqueue([replace(r, dedupe_key=f"{r.dedupe_key}:refund") for r in rows])

    async def _alert_auth(self, gateway_name: str, exc: GatewayError) -> None:
        """Tell each admin once (per gateway and day) that a gateway rejects our credentials."""
        if gateway_name in self._auth_alerted:
            return
        self._auth_alerted.add(gateway_name)
        day = self.clock().date().isoformat()
        await self._enqueue(
            [
                NewOutbox(
                    kind=OutboxKind.ADMIN,
                    event=OutboxEvent.GATEWAY_AUTH,
                    chat_id=admin,
                    payload={"gateway": gateway_name, "message": exc.user_message[:300]},
                    dedupe_key=f"gwauth:{gateway_name}:{day}:{admin}",
                )
                for admin in sorted(self.policy.admin_ids)
            ]
        )

    async def report_setup(self, gateway_name: str, problems: Sequence[str]) -> None:
        """Tell each admin (once a day per problem) what a gateway's setup check found."""
        day = self.clock().date().isoformat()
        rows = []
        for problem in problems:
            digest = hashlib.sha256(problem.encode()).hexdigest()[:8]
            rows += [
                NewOutbox(
                    kind=OutboxKind.ADMIN,
                    event=OutboxEvent.GATEWAY_SETUP,
                    chat_id=admin,
                    payload={"gateway": gateway_name, "message": problem[:300]},
                    dedupe_key=f"gwsetup:{gateway_name}:{day}:{digest}:{admin}",
                )
                for admin in sorted(self.policy.admin_ids)
            ]
        await self._enqueue(rows)

    async def renew_if_due(self, invoice: Invoice) -> Invoice:
        """Request a new payment attempt shortly before the current one expires."""
        gateway = self.gateways.get(invoice.gateway)
        expires = _parse_time(invoice.payment.get("attempt_expires_at"))
        if gateway is None or not gateway.supports_renewal or invoice.gateway_session_id is None:
            return invoice
        if invoice.payment.get("compliance_blocked"):
            return invoice  # asking again every tick cannot help until the customer acts
        now = self.clock()
        if expires is None or expires - now > self.policy.renew_before:
            return invoice
        if invoice.expires_at is not None and now >= invoice.expires_at:
            return invoice
        try:
            session = await gateway.renew_payment(invoice.gateway_session_id, invoice.payment)
        except GatewayComplianceBlocked as exc:
            self.metrics.gateway_request(invoice.gateway, "renew", _outcome(exc))
            return await self._compliance_blocked(invoice, exc)
        except GatewayError as exc:
            self.metrics.gateway_request(invoice.gateway, "renew", _outcome(exc))
            log.warning("renewing the attempt of invoice %s failed: %s", invoice.id, exc)
            return invoice
        self.metrics.gateway_request(invoice.gateway, "renew", "ok")
        # What already arrived of an underpayment stays shown across renewals.
        kept: dict[str, Any] = {
            k: invoice.payment[k] for k in ("received", "due") if k in invoice.payment
        }
        updated = await self.repo.update_payment(
            invoice.id, {**kept, **session.payment}, self.clock()
        )
        token = hashlib.sha256(
            str(session.payment.get("ln_invoice") or session.payment.get("address") or now).encode()
        ).hexdigest()[:12]
        await self._enqueue(
            self._edits(
                updated,
                OutboxEvent.RENEWED,
                suffix=token,
                messages=await self.repo.messages_for(invoice.id),
            )
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
        updated = await self.repo.update_payment(invoice.id, payment, self.clock())
        await self._enqueue(
            [
                NewOutbox(
                    kind=OutboxKind.MERCHANT,
                    event=OutboxEvent.COMPLIANCE,
                    invoice_id=invoice.id,
                    chat_id=invoice.merchant_id,
                    payload={"reason": ", ".join(fields)} if fields else {},
                    dedupe_key=f"i{invoice.id}:compliance:merchant",
                ),
                *self._edits(
                    updated,
                    OutboxEvent.RENEWED,
                    suffix="compliance",
                    messages=await self.repo.messages_for(invoice.id),
                ),
            ]
        )
        return updated

    def _first_delay(self, kind: InvoiceKind, gateway: Gateway) -> timedelta:
        if kind is InvoiceKind.LIGHTNING:
            return self.policy.pos_poll_interval
        return self.policy.poll_interval

    def _delay(self, invoice: Invoice) -> timedelta:
        """How long until the next poll of a pending invoice: ~1 s at a counter; online fast
        then backing off; slow but never stopped when a callback is registered."""
        if invoice.kind is InvoiceKind.LIGHTNING:
            return self.policy.pos_poll_interval
        step = min(invoice.poll_count // 5, 6)
        delay: timedelta = min(self.policy.poll_interval * (2**step), self.policy.poll_max_interval)
        if self.callbacks_on(invoice):
            delay = max(delay, self.policy.callback_poll_interval)
        return delay

    def next_poll_at(self, invoice: Invoice) -> datetime | None:
        now = self.clock()
        if invoice.status is InvoiceStatus.PENDING:
            at = now + self._delay(invoice)
            attempt_end = _parse_time(invoice.payment.get("attempt_expires_at"))
            if attempt_end is not None:
                at = min(at, max(attempt_end - self.policy.renew_before, now))
            if (
                invoice.expires_at is not None
                and now < invoice.expires_at + self.policy.expiry_grace < at
            ):
                at = invoice.expires_at + self.policy.expiry_grace
            return at
        if invoice.status in (
            InvoiceStatus.EXPIRED, InvoiceStatus.CANCELLED, InvoiceStatus.FAILED
        ) and invoice.gateway_session_id is not None:
            # Late payments: every invoice that left pending unpaid keeps being looked at,
            # slowly, for a while after we gave up (the customer may still pay the session).
            start = invoice.expires_at or invoice.updated_at
            if now < start + self.policy.late_payment_watch:
                return now + max(
                    self.policy.poll_max_interval * 5, self.policy.callback_poll_interval
                )
        return None

    # -- applying a status ----------------------------------------------------------------
    async def apply_status(self, invoice: Invoice, status: SessionStatus) -> Invoice:
        """Move the invoice as the gateway's status says; notify through the outbox."""
        now = self.clock()
        state = status.state
        if state is PaymentState.PAID and not self._matches(invoice, status):
            await self._alert_mismatch(invoice, status)
            return invoice
        if state is PaymentState.PAID and not status.strict_match and _is_short(invoice, status):
            state = PaymentState.UNDERPAID
        if state is PaymentState.PAID:
            late = invoice.status is not InvoiceStatus.PENDING
            return await self._move(
                invoice, InvoiceStatus.PAID, status, late=late, paid_at=status.paid_at or now
            )
        if state is PaymentState.UNDERPAID:
            return await self._underpaid(invoice, status)
        if invoice.status is not InvoiceStatus.PENDING:
            if state is PaymentState.FAILED and status.refund_due:
                await self._refund_due_after_close(invoice, status)
            return invoice
        if state is PaymentState.EXPIRED:
            return await self._move(invoice, InvoiceStatus.EXPIRED, status)
        if state is PaymentState.FAILED:
            return await self._move(invoice, InvoiceStatus.FAILED, status)
        if state is PaymentState.CANCELLED:
            return await self._move(invoice, InvoiceStatus.CANCELLED, status)
        if (
            not status.processing
            and invoice.expires_at is not None
            and now > invoice.expires_at + self.policy.expiry_grace
        ):
            # The gateway still says pending long after our expiry: stop asking the customer
            # (a payment that still lands later is reported as late). Not while the gateway
            # says it is still at work (MixPay confirming, auditing): it ends those itself.
            return await self._move(invoice, InvoiceStatus.EXPIRED, status)
        if status.raw_status != invoice.raw_status:
            await self.repo.record_observation(invoice.id, raw_status=status.raw_status, now=now)
        return invoice

    def _matches(self, invoice: Invoice, status: SessionStatus) -> bool:
        """A status is about this invoice: payee and currency agree where the gateway says;
        with `strict_match`, payee, currency and amount must all be present and equal."""
        gateway = self.gateways.get(invoice.gateway)
        expected_payee = getattr(gateway, "payee_id", None)
        if status.strict_match and (
            status.payee is None
            or status.payee != expected_payee
            or status.currency is None
            or status.currency.upper() != invoice.currency.upper()
            or status.amount_minor != invoice.amount_minor
        ):
            log.warning("invoice %s: paid status does not match the invoice; ignored", invoice.id)
            return False
        if (
            status.payee is not None
            and expected_payee is not None
            and status.payee != expected_payee
        ):
            log.warning("invoice %s: status names another payee; ignored", invoice.id)
            return False
        if status.currency is not None and status.currency.upper() != invoice.currency.upper():
            log.warning("invoice %s: status in another currency; ignored", invoice.id)
            return False
        return True

    async def _move(
        self,
        invoice: Invoice,
        new_status: InvoiceStatus,
        status: SessionStatus,
        *,
        late: bool = False,
        paid_at: datetime | None = None,
    ) -> Invoice:
        # Compare-and-set on the exact status the notices are written for: a payment that
        # races a cancel (or an expiry) must be told as late, naming what it was.
        for _ in range(len(InvoiceStatus)):
            event = _event(new_status, late)
            messages = await self.repo.messages_for(invoice.id)
            now = self.clock()
            moved_preview = replace(invoice, status=new_status)
            outbox = [
                *self._edits(moved_preview, event, messages=messages),
                *self._notices(moved_preview, event, messages, status, previous=invoice.status),
            ]
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
            self.metrics.paid(updated)
        self._on_outbox()
        next_at = self.next_poll_at(updated)
        if next_at is not None:
            await self.repo.reschedule(updated.id, next_poll_at=next_at, owner="", now=now)
        return updated

    async def _underpaid(self, invoice: Invoice, status: SessionStatus) -> Invoice:
        if invoice.underpaid or invoice.status is InvoiceStatus.PAID:
            return invoice
        if status.received:
            # Shown on the invoice itself: what arrived, and what was due.
            shown = {"received": status.received, "due": status.due}
            payment = {**invoice.payment, **{k: v for k, v in shown.items() if v}}
            await self.repo.update_payment(invoice.id, payment, self.clock())
        await self.repo.record_observation(
            invoice.id, raw_status=status.raw_status, now=self.clock(), underpaid=True
        )
        updated = await self.repo.get_invoice(invoice.id) or invoice
        messages = await self.repo.messages_for(invoice.id)
        await self._enqueue(
            [
                *self._edits(updated, OutboxEvent.UNDERPAID, messages=messages),
                *self._notices(updated, OutboxEvent.UNDERPAID, messages, status),
            ]
        )
        return updated

    def _edits(
        self,
        invoice: Invoice,
        event: OutboxEvent,
        *,
        messages: Iterable[InvoiceMessage],
        suffix: str = "",
    ) -> list[NewOutbox]:
        return [
            NewOutbox(
                kind=OutboxKind.EDIT,
                event=event,
                invoice_id=invoice.id,
                chat_id=m.chat_id,
                message_row_id=m.id,
                dedupe_key=f"i{invoice.id}:{event}{suffix}:edit:m{m.id}",
            )
            for m in messages
            if m.id is not None
        ]

    def _notices(
        self,
        invoice: Invoice,
        event: OutboxEvent,
        messages: Sequence[InvoiceMessage],
        status: SessionStatus,
        previous: InvoiceStatus | None = None,
    ) -> list[NewOutbox]:
        detail = {
            "raw_status": status.raw_status,
            "reason": status.failure_reason,
            "detail": status.detail,
            "paid_amount_minor": status.paid_amount_minor,
            "received": status.received,
            "due": status.due,
            "refund_due": status.refund_due or None,
            "surplus": status.surplus,
            "surplus_status": status.surplus_status,
        }
        payload: dict[str, object] = {k: v for k, v in detail.items() if v is not None}
        if previous is not None:
            payload["previous"] = previous.value
        rows: list[NewOutbox] = []
        customers = sorted(
            {m.chat_id for m in messages if m.role is MessageRole.CUSTOMER and m.chat_id is not None}
        )
        if event is OutboxEvent.UNDERPAID and status.received:
            # The customer is told what arrived and that the rest is still due.
            rows += [
                NewOutbox(
                    kind=OutboxKind.RECEIPT,
                    event=event,
                    invoice_id=invoice.id,
                    chat_id=chat,
                    payload=payload,
                    dedupe_key=f"i{invoice.id}:underpaid:c{chat}",
                )
                for chat in customers
            ]
        if event in (OutboxEvent.PAID, OutboxEvent.LATE_PAID) and status.surplus:
            rows.append(
                NewOutbox(
                    kind=OutboxKind.MERCHANT,
                    event=OutboxEvent.OVERPAID,
                    invoice_id=invoice.id,
                    chat_id=invoice.merchant_id,
                    payload=payload,
                    dedupe_key=f"i{invoice.id}:overpaid:merchant",
                )
            )
        if event in (OutboxEvent.PAID, OutboxEvent.LATE_PAID):
            rows += [
                NewOutbox(
                    kind=OutboxKind.RECEIPT,
                    event=event,
                    invoice_id=invoice.id,
                    chat_id=chat,
                    payload=payload,
                    dedupe_key=f"i{invoice.id}:receipt:c{chat}",
                )
                for chat in customers
            ]
        if event in (
            OutboxEvent.PAID,
            OutboxEvent.LATE_PAID,
            OutboxEvent.UNDERPAID,
            OutboxEvent.FAILED,
        ):
            rows += [
                NewOutbox(
                    kind=OutboxKind.ADMIN,
                    event=event,
                    invoice_id=invoice.id,
                    chat_id=admin,
                    payload=payload,
                    dedupe_key=f"i{invoice.id}:{event}:admin:{admin}",
                )
                for admin in sorted(self.policy.admin_ids)
            ]
        if event in (OutboxEvent.LATE_PAID, OutboxEvent.UNDERPAID, OutboxEvent.FAILED) and (
            invoice.merchant_id not in self.policy.admin_ids
        ):
            rows.append(
                NewOutbox(
                    kind=OutboxKind.MERCHANT,
                    event=event,
                    invoice_id=invoice.id,
                    chat_id=invoice.merchant_id,
                    payload=payload,
                    dedupe_key=f"i{invoice.id}:{event}:merchant",
                )
            )
        return rows

    async def _enqueue(self, rows: Sequence[NewOutbox]) -> None:
        if rows and await self.repo.enqueue(rows, self.clock()):
            self._on_outbox()

    # -- callbacks ------------------------------------------------------------------------
    async def handle_callback(self, gateway_name: str, body: bytes, content_type: str) -> Invoice:
        """A gateway's callback is a hint: find the invoice, re-read the status from the
        gateway API, and apply it. Raises ValueError (malformed), LookupError (unknown)."""
        gateway = self.gateways.get(gateway_name)
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
        self.metrics.callback(gateway_name)
        return await self._callback_refresh(invoice)

    async def _callback_refresh(self, invoice: Invoice) -> Invoice:
        """Re-read an invoice for a callback, merged: callbacks arriving while a re-read is
        in flight share it; beyond CALLBACK_READS_PER_WINDOW re-reads within
        `callback_merge_window`, they bring the watcher's next poll forward to the end of
        that window instead (one read, however many callbacks). The read itself only uses
        spare gateway budget."""
        running = self._callback_reads.get(invoice.id)
        if running is not None:
            self.metrics.callback_merged(invoice.gateway)
            return await asyncio.shield(running)
        now = self.clock()
        window = self.policy.callback_merge_window
        recent = [at for at in self._callback_read_at.get(invoice.id, ()) if now - at < window]
        if len(recent) >= CALLBACK_READS_PER_WINDOW:
            self.metrics.callback_merged(invoice.gateway)
            await self._poll_soon(invoice, recent[0] + window)
            return invoice
        self._forget_old_callback_reads(now)
        self._callback_read_at[invoice.id] = [*recent, now]
        self._callback_followup.discard(invoice.id)
        read = asyncio.ensure_future(self._callback_read(invoice))
        self._callback_reads[invoice.id] = read
        read.add_done_callback(lambda done: self._callback_read_done(invoice.id, done))
        return await asyncio.shield(read)

    def _callback_read_done(self, invoice_id: int, done: asyncio.Future[Invoice]) -> None:
        self._callback_reads.pop(invoice_id, None)
        if not done.cancelled():
            done.exception()  # retrieved: a caller that went away must not leave it unseen

    async def _callback_read(self, invoice: Invoice) -> Invoice:
        with callback_requests():
            try:
                return await self.refresh(invoice)
            except BudgetDeferred:
                self.metrics.callback_deferred(invoice.gateway)
                await self._poll_soon(invoice, self.clock())
                return invoice

    async def _poll_soon(self, invoice: Invoice, at: datetime) -> None:
        """Bring the watcher's next poll of an invoice it still watches (pending, or expired
        or cancelled and watched for a late payment) forward to `at`, once per merge window:
        it then reads the status paced like any poll."""
        if invoice.id in self._callback_followup:
            return
        current = await self.repo.get_invoice(invoice.id)
        if current is None or current.next_poll_at is None or current.next_poll_at <= at:
            return
        self._callback_followup.add(invoice.id)
        await self.repo.reschedule(invoice.id, next_poll_at=at, owner="", now=self.clock())

    def _forget_old_callback_reads(self, now: datetime) -> None:
        if len(self._callback_read_at) < 10_000:
            return
        window = self.policy.callback_merge_window
        for invoice_id, times in list(self._callback_read_at.items()):
            if now - times[-1] >= window:
                del self._callback_read_at[invoice_id]
                self._callback_followup.discard(invoice_id)

    async def _invoice_by_reference(self, reference: str) -> Invoice | None:
        parts = reference.split("-")
        invoice_id = parse_invoice_id(parts[1]) if len(parts) == 3 and parts[0] == "tb" else None
        if invoice_id is None:
            return None
        invoice = await self.repo.get_invoice(invoice_id)
        if invoice is None or reference_for(invoice) != reference:
            return None
        return invoice

    async def refresh(self, invoice: Invoice) -> Invoice:
        """Re-read one invoice's status now (a callback, a button press); no rescheduling
        unless it moved."""
        gateway = self.gateways.get(invoice.gateway)
        if gateway is None or invoice.gateway_session_id is None:
            return invoice
        try:
            status = await gateway.get_status(invoice.gateway_session_id, reference_for(invoice))
        except GatewayError as exc:
            if not isinstance(exc, BudgetDeferred):  # deferred: nothing was sent
                self.metrics.gateway_request(invoice.gateway, "status", _outcome(exc))
            raise
        self.metrics.gateway_request(invoice.gateway, "status", "ok")
        return await self.apply_status(invoice, status)

    # -- merchant actions -----------------------------------------------------------------
    async def cancel(self, user_id: int, invoice_id: int) -> tuple[Invoice, bool]:
        """Cancel a pending invoice: at the gateway when it can, locally otherwise.
        Returns (invoice, cancelled_at_gateway)."""
        invoice = await self.invoice_of(user_id, invoice_id)
        if invoice.status is not InvoiceStatus.PENDING:
            raise InputError("not_pending", status=invoice.status.value)
        gateway = self.gateways.get(invoice.gateway)
        at_gateway = False
        if gateway is not None and gateway.supports_cancel and invoice.gateway_session_id:
            try:
                at_gateway = await gateway.cancel(invoice.gateway_session_id)
            except GatewayError as exc:
                log.warning(
                    "cancel at %s failed for invoice %s: %s", invoice.gateway, invoice.id, exc
                )
        status = SessionStatus(
            state=PaymentState.CANCELLED,
            raw_status="cancelled" if at_gateway else "cancelled_locally",
        )
        updated = await self._move(invoice, InvoiceStatus.CANCELLED, status)
        if updated.status is not InvoiceStatus.CANCELLED:
            raise InputError("not_pending", status=updated.status.value)
        return updated, at_gateway

    async def simulate_payment(self, invoice: Invoice) -> Invoice:
        """Sandbox: pay the session at the simulator, then learn of it like any payment."""
        gateway = self.gateways.get(invoice.gateway)
        if gateway is None or not gateway.can_simulate or invoice.gateway_session_id is None:
            raise InputError("cannot_simulate")
        if invoice.status is not InvoiceStatus.PENDING:
            return invoice
        await gateway.simulate_payment(invoice.gateway_session_id)
        return await self.refresh(invoice)


def _outcome(exc: GatewayError) -> str:
    return type(exc).__name__.removeprefix("Gateway").lower() or "error"


def _event(status: InvoiceStatus, late: bool) -> OutboxEvent:
    if status is InvoiceStatus.PAID:
        return OutboxEvent.LATE_PAID if late else OutboxEvent.PAID
    return OutboxEvent(status.value)


def _event_for(invoice: Invoice) -> OutboxEvent:
    if invoice.status is InvoiceStatus.PENDING:
        return OutboxEvent.UNDERPAID if invoice.underpaid else OutboxEvent.RENEWED
    return _event(invoice.status, invoice.late)


def _is_short(invoice: Invoice, status: SessionStatus) -> bool:
    return (
        status.amount_minor is not None
        and status.currency is not None
        and status.amount_minor < invoice.amount_minor
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
