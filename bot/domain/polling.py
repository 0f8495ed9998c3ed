"""When to look at an invoice again: the poll schedule, expiries, and the settings behind them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain.models import Invoice, InvoiceKind, InvoiceStatus
from bot.times import parse_time

# Two: a genuine callback right after a forged one (a status change) is still read at once.
CALLBACK_READS_PER_WINDOW = 2
# Longer than any creation can take (gateway timeout x retries): a pending invoice still
# without a gateway session after this was cut short and is failed by the watcher.
UNFINISHED_CREATION_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class PaymentPolicy:
    """The settings the services work by (built from Settings by the wiring)."""

    default_gateway: str
    default_currency: str = "EUR"
    max_amount: Decimal = Decimal("1000000")
    max_description_length: int = 200
    invoice_expiry: timedelta = timedelta(hours=1)
    pos_expiry: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(seconds=5)
    poll_max_interval: timedelta = timedelta(seconds=60)
    pos_poll_interval: timedelta = timedelta(seconds=0.5)
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


def expiry_for(policy: PaymentPolicy, gateway_name: str, kind: InvoiceKind) -> timedelta:
    """How long a new invoice stays payable: short at a counter, per gateway online."""
    if kind is InvoiceKind.LIGHTNING:
        return policy.pos_expiry
    return policy.gateway_expiry.get(gateway_name, policy.invoice_expiry)


def first_poll_delay(policy: PaymentPolicy, kind: InvoiceKind) -> timedelta:
    if kind is InvoiceKind.LIGHTNING:
        return policy.pos_poll_interval
    return policy.poll_interval


def poll_delay(policy: PaymentPolicy, invoice: Invoice, callbacks_on: bool) -> timedelta:
    """How long until the next poll of a pending invoice: 0.5 s at a counter; online fast
    then backing off; slow but never stopped when a callback is registered."""
    if invoice.kind is InvoiceKind.LIGHTNING:
        return policy.pos_poll_interval
    step = min(invoice.poll_count // 5, 6)
    delay: timedelta = min(policy.poll_interval * (2**step), policy.poll_max_interval)
    if callbacks_on:
        delay = max(delay, policy.callback_poll_interval)
    return delay


def next_poll_at(
    policy: PaymentPolicy, invoice: Invoice, now: datetime, callbacks_on: bool
) -> datetime | None:
    """When the watcher looks at an invoice next; None when it no longer watches it."""
    if invoice.status is InvoiceStatus.PENDING:
        at = now + poll_delay(policy, invoice, callbacks_on)
        attempt_end = parse_time(invoice.payment.get("attempt_expires_at"))
        if attempt_end is not None:
            at = min(at, max(attempt_end - policy.renew_before, now))
        if invoice.expires_at is not None and now < invoice.expires_at + policy.expiry_grace < at:
            at = invoice.expires_at + policy.expiry_grace
        return at
    if invoice.status in (
        InvoiceStatus.EXPIRED, InvoiceStatus.CANCELLED, InvoiceStatus.FAILED
    ) and invoice.gateway_session_id is not None:
        # Late payments: every invoice that left pending unpaid keeps being looked at,
        # slowly, for a while after we gave up (the customer may still pay the session).
        start = invoice.expires_at or invoice.updated_at
        if now < start + policy.late_payment_watch:
            return now + max(policy.poll_max_interval * 5, policy.callback_poll_interval)
    return None


def renewal_due(policy: PaymentPolicy, invoice: Invoice, now: datetime) -> bool:
    """A Lightning attempt about to expire on a still open invoice gets a new attempt."""
    expires = parse_time(invoice.payment.get("attempt_expires_at"))
    if invoice.payment.get("compliance_blocked"):
        return False  # asking again every tick cannot help until the customer acts
    if expires is None or expires - now > policy.renew_before:
        return False
    return invoice.expires_at is None or now < invoice.expires_at
